"""The rates of SPEC §5 from summed counters. Pure.

Every rate is a `Rate`: its numerator, its denominator and the value (None when the denominator
is 0 — "no orders" is not "0%"). The counters are the sums of the facts of `facts.py` over a unit
(or a group of units) and a period; `overdue_open` (orders still unreplied past their due now),
`contact_pending` (orders whose first contact is still within its limit now) and
`solved_grassroots` (solved by a street, community or grid) are added by the caller, since they
depend on the clock and on the unit tree.

Rules that can change are applied here, when a figure is read, never stored in the counters: the
satisfaction rate multiplies the count of each satisfaction level by the pack's current score
(`scores`), and the composite takes the current weights. So the stored counts never go stale.

| key | 中文 | numerator / denominator |
|---|---|---|
| response | 响应率 | first contact within the limit / (counted − contact still pending) |
| resolution | 解决率 | evaluated solved / evaluated |
| satisfaction | 满意率 | Σ count(level) × score(level) / evaluated |
| accept_on_time | 按时签收率 | signed within the limit / counted |
| complete_on_time | 按时办结率 | replied within the limit / replied |
| overdue | 超期率 | (replied late + open past due) / counted |
| extension | 延期率 | approved extension / counted |
| return | 退单率 | return requested / led |
| dispatch_accuracy | 派单准确率 | 1 − approved returns / led (centre: / dispatched) |
| reopen | 重办率 | reopened / counted |
| repeat | 重复诉求率 | merged as a repeat of the same event / received (centre) |
| direct_answer | 直接答复率 | answered directly / received (centre) |
| grassroots | 基层解决率 | solved by a street or below / solved |
| callback | 回访率 | callbacks (reached or not) / audited replies |
| avg_hours | 平均办理时长 | Σ hours from getting the order to the reply / replied |

The composite score (综合得分) is 100 × (w₁·响应率 + w₂·解决率 + w₃·满意率) with the weights of the
unit's kind (the pack's `weights`, `default` otherwise); it is None until all three rates exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jiesu.assessment.facts import LEVEL_COUNTERS
from jiesu.citypack.parse import DEFAULT_SCORES

DEFAULT_WEIGHTS = {"response": 0.10, "resolution": 0.45, "satisfaction": 0.45}


@dataclass(frozen=True)
class Rate:
    key: str
    numerator: float
    denominator: int
    value: float | None  # a fraction 0–1 (hours for avg_hours); None without a denominator

    @property
    def percent(self) -> str:
        return "—" if self.value is None else f"{self.value * 100:.2f}%"


@dataclass(frozen=True)
class Definition:
    key: str
    name: str
    numerator: tuple[str, ...]  # counters summed
    denominator: str
    complement: bool = False  # 1 − numerator / denominator
    scale: float = 1.0  # numerator ÷ scale (seconds → hours)
    higher_is_better: bool = True
    centre: bool = False  # a figure of the service centre, not of handling units
    scored: bool = False  # the numerator's counters are satisfaction levels, × the level's score
    less: tuple[str, ...] = ()  # counters taken off the denominator (live: pending contacts)


DEFINITIONS: tuple[Definition, ...] = (
    Definition("response", "响应率", ("responded",), "counted", less=("contact_pending",)),
    Definition("resolution", "解决率", ("solved",), "evaluated"),
    Definition("satisfaction", "满意率", tuple(LEVEL_COUNTERS.values()), "evaluated",
               scored=True),
    Definition("accept_on_time", "按时签收率", ("accepted_on_time",), "counted"),
    Definition("complete_on_time", "按时办结率", ("replied_on_time",), "replied"),
    Definition("overdue", "超期率", ("replied_late", "overdue_open"), "counted",
               higher_is_better=False),
    Definition("extension", "延期率", ("extended",), "counted", higher_is_better=False),
    Definition("return", "退单率", ("return_requested",), "led", higher_is_better=False),
    Definition("dispatch_accuracy", "派单准确率", ("return_approved",), "led", complement=True),
    Definition("reopen", "重办率", ("reopened",), "counted", higher_is_better=False),
    Definition("grassroots", "基层解决率", ("solved_grassroots",), "solved"),
    Definition("callback", "回访率", ("callbacks",), "audited"),
    Definition("avg_hours", "平均办理时长", ("handling_seconds",), "replied", scale=3600,
               higher_is_better=False),
    Definition("direct_answer", "直接答复率", ("answered",), "received", centre=True),
    Definition("repeat", "重复诉求率", ("merged",), "received", centre=True,
               higher_is_better=False),
    Definition("centre_dispatch_accuracy", "派单准确率", ("misdispatched",), "dispatched",
               complement=True, centre=True),
)  # fmt: skip
BY_KEY = {d.key: d for d in DEFINITIONS}
THREE = ("response", "resolution", "satisfaction")


def rate(
    definition: Definition, totals: Mapping[str, int | float],
    scores: Mapping[str, float] | None = None,
) -> Rate:  # fmt: skip
    """One rate; `scores` are the satisfaction levels' scores (the pack's; SPEC's by default)."""
    if definition.scored:
        scores = scores or DEFAULT_SCORES
        numerator = sum(
            totals.get(counter, 0) * float(scores.get(level, DEFAULT_SCORES[level]))
            for level, counter in LEVEL_COUNTERS.items()
        )
    else:
        numerator = sum(totals.get(name, 0) for name in definition.numerator)
    numerator /= definition.scale
    denominator = int(totals.get(definition.denominator, 0))
    denominator -= sum(int(totals.get(name, 0)) for name in definition.less)
    if denominator <= 0:
        return Rate(definition.key, numerator, denominator, None)
    value = numerator / denominator
    return Rate(
        definition.key, numerator, denominator, 1 - value if definition.complement else value
    )


def rates(
    totals: Mapping[str, int | float], *, centre: bool = False,
    scores: Mapping[str, float] | None = None,
) -> dict[str, Rate]:  # fmt: skip
    """Every unit rate (and with `centre`, the service centre's own) from summed counters."""
    return {d.key: rate(d, totals, scores) for d in DEFINITIONS if centre or not d.centre}


def weights_for(
    kind: str, weights: Mapping[str, Mapping[str, float]] | None
) -> Mapping[str, float]:
    weights = weights or {}
    return weights.get(kind) or weights.get("default") or DEFAULT_WEIGHTS


def composite(three: Mapping[str, Rate], weights: Mapping[str, float]) -> float | None:
    """100 × the weighted sum of the three rates; None until all three have a value."""
    values = [three[k].value for k in THREE]
    if any(v is None for v in values):
        return None
    return 100 * sum(weights[k] * v for k, v in zip(THREE, values, strict=True) if v is not None)


def add(into: dict[str, int], counters: Mapping[str, int], sign: int = 1) -> dict[str, int]:
    """Add (or with sign −1, subtract) counters into a running total, in place."""
    for name, value in counters.items():
        into[name] = into.get(name, 0) + sign * value
    return into
