"""A ticket's deadlines, derived from its timeline. Pure.

The phase limits of SPEC §4 run from the moment a unit got the ticket in this round (the last
`dispatch`, `reopen` or `escalate`): sign within the accept limit, first contact within the
contact limit, reply within the complete limit. Suspended time (`suspend` … `resume`) does not
count; each approved extension moves the complete limit by its working days; a reply sent back
by audit starts the complete limit running again. Nothing here is stored: the same timeline
always gives the same deadlines, so they are recomputed, never patched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jiesu.citypack.parse import Duration
from jiesu.timelimits.clocks import Clocks, Pause

STARTS = ("dispatch", "reopen", "escalate")
WARN_AT = 0.8  # SPEC §4: a warning at 80% of each limit, another at the limit
PHASE_NAMES = {"accept": "签收", "contact": "联系诉求人", "complete": "办结", "report": "报到"}


@dataclass(frozen=True)
class Step:
    """One timeline entry as the deadlines need it."""

    action: str
    at: datetime
    unit: str | None  # the acting unit's code
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Deadline:
    phase: str  # accept | contact | complete
    limit: Duration
    start: datetime
    due: datetime | None  # None while suspended with time left
    met_at: datetime | None
    remaining_seconds: float  # on the limit's own clock; negative when overdue
    progress: float  # 1.0 = the limit has run out
    paused: bool
    warn_at: datetime | None = None  # 80% of the limit (none once extended: the due moved late)
    unit: str | None = None  # for `report`: the summoned unit that must report in

    @property
    def overdue(self) -> bool:
        late = self.met_at is not None and self.due is not None and self.met_at > self.due
        return late or (self.met_at is None and self.progress >= 1.0)


def deadlines(
    steps: Sequence[Step], limits: Mapping[str, Duration], lead: str | None, clocks: Clocks,
    now: datetime,
) -> list[Deadline]:  # fmt: skip
    """The current round's deadlines for the lead unit `lead` (none before dispatch)."""
    start_index = next(
        (i for i in range(len(steps) - 1, -1, -1) if steps[i].action in STARTS), None
    )
    if start_index is None or lead is None:
        return []
    start = steps[start_index].at
    since = steps[start_index + 1 :]
    pauses: list[Pause] = []
    for step in since:
        if step.action == "suspend":
            pauses.append((step.at, None))
        elif step.action == "resume" and pauses and pauses[-1][1] is None:
            pauses[-1] = (pauses[-1][0], step.at)
    extensions = [
        Duration(int(s.data.get("days") or 0), "wd")
        for s in since
        if s.action == "review_extension" and s.data.get("approved") and s.data.get("days")
    ]
    met = {
        "accept": next((s.at for s in since if s.action == "accept" and s.unit == lead), None),
        "contact": next((s.at for s in since if s.action == "contact" and s.unit == lead), None),
        "complete": _replied(since),
    }
    out = []
    for phase in ("accept", "contact", "complete"):
        limit = limits[phase]
        extra = extensions if phase == "complete" else []
        due = clocks.due_with_extensions(start, limit, extra, pauses)
        until = met[phase] or now
        used = clocks.elapsed(limit.unit, start, until, pauses)
        if due is None:  # suspended with time left: what was left when the clock stopped
            remaining = clocks.limit_seconds(limit) - used
        elif until <= due:
            remaining = clocks.elapsed(limit.unit, until, due, pauses)
        else:
            remaining = -clocks.elapsed(limit.unit, due, until, pauses)
        paused = met[phase] is None and bool(pauses) and pauses[-1][1] is None
        out.append(
            Deadline(
                phase=phase, limit=limit, start=start, due=due, met_at=met[phase],
                remaining_seconds=remaining,
                progress=used / (used + remaining) if used + remaining > 0 else 1.0,
                paused=paused,
                warn_at=None if extra else clocks.at_fraction(start, limit, WARN_AT, pauses),
            )
        )  # fmt: skip
    return out


def report_deadlines(
    steps: Sequence[Step], limit: Duration, clocks: Clocks, now: datetime
) -> list[Deadline]:
    """Each summoned unit's report-in limit (吹哨报到), from the whistle that summoned it."""
    out = []
    for i, step in enumerate(steps):
        if step.action != "whistle":
            continue
        for unit in step.data.get("units", []):
            met = next(
                (s.at for s in steps[i + 1 :] if s.action == "report" and s.unit == unit), None
            )
            due = clocks.due(step.at, limit)
            assert due is not None  # no pauses
            used = clocks.elapsed(limit.unit, step.at, met or now)
            total = clocks.limit_seconds(limit)
            out.append(
                Deadline(
                    phase="report", limit=limit, start=step.at, due=due, met_at=met,
                    remaining_seconds=total - used, progress=used / total if total else 1.0,
                    paused=False, warn_at=clocks.at_fraction(step.at, limit, WARN_AT), unit=unit,
                )
            )  # fmt: skip
    return out


def _replied(since: Sequence[Step]) -> datetime | None:
    """The reply that stands: the last one, unless an audit sent it back afterwards."""
    replied = None
    for step in since:
        if step.action == "reply":
            replied = step.at
        elif step.action == "audit" and step.data.get("passed") is False:
            replied = None
    return replied
