"""Monthly rankings (排名) of units of one kind. Pure.

The rules:

- A unit is ranked by its composite score (综合得分, `rates.composite`), highest first; ties
  share a rank and the next rank is skipped (competition ranking: 1, 2, 2, 4). Within a tie the
  list shows the higher resolution rate, then satisfaction, then the code first.
- A unit with fewer counted orders than the city's `small_sample` (the pack's, 30 in Beijing) is
  listed, marked small sample (样本不足), and not ranked: 3 orders are not judged like 3,000.
  So is a unit whose rates cannot be computed yet (no evaluation).
- The change against last month is last month's rank minus this month's (positive = moved up);
  None when it was not ranked last month.
- The bottom `bottom` ranked units (the pack's `task_force` per kind) are flagged for a special
  task force (专班), never more than half of those ranked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jiesu.assessment.rates import THREE, Rate, composite, rates

DEFAULT_BOTTOM = {"district": 3, "street": 10, "department": 5, "company": 3}


@dataclass(frozen=True)
class Entry:
    code: str
    name: str
    kind: str
    totals: Mapping[str, int]


@dataclass(frozen=True)
class Ranked:
    code: str
    name: str
    kind: str
    orders: int  # counted orders (the rates' denominator)
    rates: Mapping[str, Rate]
    composite: float | None
    rank: int | None
    previous_rank: int | None = None
    change: int | None = None
    task_force: bool = False
    small_sample: bool = False
    pending: int = 0  # orders whose first contact is still within its limit (not in 响应率 yet)


def rank(
    entries: Sequence[Entry],
    *,
    weights: Mapping[str, float],
    small_sample: int,
    previous: Mapping[str, int] | None = None,
    bottom: int = 0,
    scores: Mapping[str, float] | None = None,
) -> list[Ranked]:
    """The ranked list (ranked units first, then the unranked ones by orders); `scores` are the
    satisfaction levels' scores and `weights` the kind's, both as they stand when read."""
    previous = previous or {}
    scored = []
    unranked = []
    for e in entries:
        r = rates(e.totals, scores=scores)
        score = composite({k: r[k] for k in THREE}, weights)
        orders = int(e.totals.get("counted", 0))
        if orders < small_sample or score is None:
            unranked.append((e, r, score, orders))
        else:
            scored.append((e, r, score, orders))

    def order_key(item: tuple[Entry, dict[str, Rate], float, int]) -> tuple[float | str, ...]:
        e, r, score, _ = item
        return (-round(score, 9), -(r["resolution"].value or 0), -(r["satisfaction"].value or 0),
                e.code)  # fmt: skip

    scored.sort(key=order_key)
    out: list[Ranked] = []
    flagged = min(bottom, len(scored) // 2)
    last_score: float | None = None
    last_rank = 0
    for position, (e, r, score, orders) in enumerate(scored, start=1):
        current = (
            last_rank if last_score is not None and round(score, 9) == last_score else position
        )
        last_score, last_rank = round(score, 9), current
        before = previous.get(e.code)
        out.append(Ranked(
            e.code, e.name, e.kind, orders, r, score, current, before,
            None if before is None else before - current,
            task_force=position > len(scored) - flagged,
            pending=int(e.totals.get("contact_pending", 0)),
        ))  # fmt: skip
    unranked.sort(key=lambda item: (-item[3], item[0].code))
    for e, r, score, orders in unranked:
        before = previous.get(e.code)
        out.append(Ranked(e.code, e.name, e.kind, orders, r, score, None, before, None,
                          small_sample=orders < small_sample,
                          pending=int(e.totals.get("contact_pending", 0))))  # fmt: skip
    return out
