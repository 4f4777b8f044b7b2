"""What one order counts for in the assessment (考评, SPEC §5), derived from its timeline. Pure.

An order's timeline says, for every unit that led it, what that unit did and when; `order_facts`
turns it into one `Fact` per unit: integer counters (whether it signed on time, made its first
contact within the limit, replied on time, was evaluated solved, the satisfaction points …) and
the city-local day the order counts in. The rollups are sums of these counters per unit and day;
the rates (`rates.py`) are ratios of the sums. Because the facts are a function of the timeline,
the rollups can be kept up to date action by action (subtract the order's old facts, add the new)
and recomputed from the events at any time with the same result.

The rules, in the order the code applies them:

- **Parts.** A unit leads an order from the `dispatch` (or `escalate`) that names it until an
  approved return (`review_return`, the part ends `returned`) or an escalation away (`escalated`).
  A reopen (`reopen`) starts another round of the same part. One fact per unit: a unit that
  leads twice (redispatched back to it) has its parts merged, counted once.
- **The day** is the city-local day the unit first got the order: the month of the assessment.
- **Counted** (`counted = 1`): the part did not end by an approved return or an escalation
  away, and no exemption (考核剔除) was approved for the order. Only counted parts enter the
  response, resolution and satisfaction rates; every part enters the return and dispatch-accuracy
  counts.
- **Response** (`responded`): the first contact in the first round of the part that stands (the
  unit's last) is within the contact limit. **On-time signing** (`accepted_on_time`) likewise.
- **Completion**: the reply that stands in the last round (a reply sent back by audit does not
  stand) is `replied`, and `replied_on_time` or `replied_late` against the complete limit
  (suspensions and approved extensions included, as `timelimits/deadlines.py` computes them).
- **Evaluation**: only the last round's last evaluation counts (a reopened order counts again when
  its new round is evaluated). An unreachable callback counts in `callbacks` but not in
  `evaluated`; `solved`, `satisfied_n` and one count per satisfaction level (`level_satisfied` …)
  come from a reached one. The facts keep the level, never its score: the pack's scores are
  applied when the rate is read (`rates.py`), so a change of scores needs no rebuild.
- **Contact pending**: a counted order whose first contact has not been made has its contact due
  in `contact_due` (`PAUSED` while suspended). Until that moment passes it is *pending*, not yet
  unresponded: the reader counts it live (`contact_due > now`) and leaves it out of the response
  rate's denominator.
- **Merged orders** (并单) were never dispatched: they have no unit part, only the centre's intake
  fact (`merged`); the master counts once.
- **The service centre** gets one fact per order on the day it was received: received, answered
  directly, transferred, rejected, merged, dispatched, and the approved returns (misdispatches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from jiesu.citypack.parse import SATISFACTION_LEVELS, Duration
from jiesu.timelimits.clocks import Clocks
from jiesu.timelimits.deadlines import Deadline, Step, deadlines

# Every counter of a unit's fact, in the order of the rollup's columns.
UNIT_COUNTERS: tuple[str, ...] = (
    "led",  # the unit led the order (any part)
    "counted",  # … and it counts in the three rates (not returned, escalated away or exempt)
    "accepted_on_time",
    "responded",  # first contact within the contact limit (响应)
    "replied",
    "replied_on_time",
    "replied_late",
    "extended",  # an extension was approved
    "return_requested",
    "return_approved",  # the centre agreed it was not this unit's (counts against dispatch)
    "return_rejected",
    "escalated_away",
    "exempted",  # an approved exemption (考核剔除) took it out of the rates
    "reopened",  # reopened at least once (重办)
    "audited",  # the reply passed the centre's audit (the callbacks' denominator)
    "callbacks",  # a callback or a citizen rating was recorded, reached or not
    "evaluated",  # the citizen was reached and gave a verdict
    "solved",
    "satisfied_n",  # evaluations with a satisfaction level
    *(f"level_{level}" for level in SATISFACTION_LEVELS),  # evaluations at each level
    "dissatisfied",  # dissatisfied or very dissatisfied
    "urged",  # urges (催办) received while leading
    "supervised",  # put under supervision (督办)
    "handling_seconds",  # from getting the order to the standing reply (wall clock)
)
CENTRE_COUNTERS: tuple[str, ...] = (
    "received",
    "answered",  # answered directly (直接答复)
    "transferred",
    "rejected",
    "merged",
    "dispatched",
    "misdispatched",  # approved returns: a unit was sent an order that was not its own
)
COUNTERS = UNIT_COUNTERS + tuple(c for c in CENTRE_COUNTERS if c not in UNIT_COUNTERS)
LEVELS = SATISFACTION_LEVELS
LEVEL_COUNTERS = {level: f"level_{level}" for level in LEVELS}
# The contact due of an order suspended before its first contact: pending until it resumes.
PAUSED = datetime(9999, 12, 31, tzinfo=UTC)

STARTS = ("dispatch", "escalate")
EVALUATIONS = ("evaluate", "rate")
DISSATISFIED = frozenset({"dissatisfied", "very_dissatisfied"})


@dataclass(frozen=True)
class Order:
    """The order as the facts need it: its timeline and a few columns."""

    steps: Sequence[Step]  # every event, in order; `unit` is the acting unit's code
    tier_limits: Mapping[str, Duration] | None  # accept/contact/complete of its current tier
    centre: str  # the service centre's unit code


@dataclass(frozen=True)
class Fact:
    """What one order counts for, for one unit, on one city-local day."""

    unit: str
    day: date
    counters: Mapping[str, int] = field(default_factory=dict)
    contact_due: datetime | None = None  # set while the first contact is still to be made

    def get(self, name: str) -> int:
        return self.counters.get(name, 0)


@dataclass
class _Part:
    unit: str
    start: int  # index of the step that gave it the order
    rounds: list[int]  # index of each round's start (dispatch/escalate, then each reopen)
    end: int | None = None  # index of the step that ended it
    ended: str | None = None  # returned | escalated


def parts(steps: Sequence[Step]) -> list[_Part]:
    """Each unit's stretches as the lead, in order."""
    out: list[_Part] = []
    current: _Part | None = None
    for i, s in enumerate(steps):
        if s.action == "dispatch" and s.data.get("lead"):
            current = _Part(str(s.data["lead"]), i, [i])
            out.append(current)
        elif s.action == "escalate" and s.data.get("to"):
            if current is not None and current.end is None:
                current.end, current.ended = i, "escalated"
            current = _Part(str(s.data["to"]), i, [i])
            out.append(current)
        elif s.action == "review_return" and s.data.get("approved"):
            if current is not None and current.end is None:
                current.end, current.ended = i, "returned"
            current = None
        elif s.action == "reopen" and current is not None and current.end is None:
            current.rounds.append(i)
    return out


def order_facts(
    order: Order,
    *,
    clocks: Clocks,
    tz: ZoneInfo,
) -> list[Fact]:
    """One fact for the service centre and one per unit that led the order."""
    steps = order.steps
    if not steps:
        return []
    facts = [_centre_fact(order, tz)]
    exempt = _exempt_units(steps)
    by_unit: dict[str, list[_Part]] = {}
    for part in parts(steps):
        by_unit.setdefault(part.unit, []).append(part)
    for unit, unit_parts in by_unit.items():
        facts.append(_unit_fact(order, unit, unit_parts, exempt, clocks=clocks, tz=tz))
    return facts


def _day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def _centre_fact(order: Order, tz: ZoneInfo) -> Fact:
    steps = order.steps
    actions = [s.action for s in steps]
    c = {
        "received": 1,
        "answered": int("answer" in actions),
        "transferred": int("transfer" in actions),
        "rejected": int("reject" in actions),
        "merged": int("merge" in actions),
        "dispatched": int("dispatch" in actions),
        "misdispatched": sum(
            1 for s in steps if s.action == "review_return" and s.data.get("approved")
        ),
    }
    return Fact(order.centre, _day(steps[0].at, tz), {k: v for k, v in c.items() if v})


def _exempt_units(steps: Sequence[Step]) -> dict[str, bool]:
    """Units whose exemption request was approved (the last review of each request decides)."""
    asked_by: str | None = None
    exempt: dict[str, bool] = {}
    for s in steps:
        if s.action == "request_exemption":
            asked_by = s.unit
        elif s.action == "review_exemption" and asked_by is not None:
            exempt[asked_by] = bool(s.data.get("approved"))
            asked_by = None
    return exempt


def _phase(ds: Sequence[Deadline], phase: str) -> Deadline | None:
    return next((d for d in ds if d.phase == phase), None)


def _on_time(d: Deadline | None) -> bool:
    if d is None or d.met_at is None:
        return False
    return d.due is None or d.met_at <= d.due


def _unit_fact(
    order: Order,
    unit: str,
    unit_parts: list[_Part],
    exempt: Mapping[str, bool],
    *,
    clocks: Clocks,
    tz: ZoneInfo,
) -> Fact:
    steps = order.steps
    first, last = unit_parts[0], unit_parts[-1]
    c: dict[str, int] = {"led": 1}
    within: list[int] = []  # indices of the steps taken while this unit led
    for p in unit_parts:
        within.extend(range(p.start, p.end if p.end is not None else len(steps)))
    mine = [steps[i] for i in within]
    if any(s.action == "request_return" and s.unit == unit for s in mine):
        c["return_requested"] = 1
    reviews = [steps[i] for i in within if steps[i].action == "review_return"]
    if any(p.ended == "returned" for p in unit_parts):
        c["return_approved"] = 1
    if any(not s.data.get("approved") for s in reviews):
        c["return_rejected"] = 1
    if last.ended == "escalated":
        c["escalated_away"] = 1
    if exempt.get(unit):
        c["exempted"] = 1
    c["urged"] = sum(1 for s in mine if s.action == "urge")
    if any(s.action == "supervise" for s in mine):
        c["supervised"] = 1
    if any(s.action == "review_extension" and s.data.get("approved") for s in mine):
        c["extended"] = 1
    if any(len(p.rounds) > 1 for p in unit_parts):
        c["reopened"] = 1
    counted = last.ended is None and not exempt.get(unit)
    contact_due: datetime | None = None
    if counted and order.tier_limits is not None:
        c["counted"] = 1
        # The first round of the part that stands decides signing and response.
        stop = last.rounds[1] if len(last.rounds) > 1 else None
        head = steps[:stop] if stop is not None else steps
        now = head[-1].at
        ds = deadlines(head, order.tier_limits, unit, clocks, now)
        c["accepted_on_time"] = int(_on_time(_phase(ds, "accept")))
        contact = _phase(ds, "contact")
        c["responded"] = int(_on_time(contact))
        if contact is not None and contact.met_at is None:
            contact_due = contact.due or PAUSED
        # The last round of the last part decides completion and the evaluation.
        tail = steps[last.rounds[-1] :]
        ds = deadlines(steps, order.tier_limits, unit, clocks, steps[-1].at)
        complete = _phase(ds, "complete")
        if complete is not None and complete.met_at is not None:
            c["replied"] = 1
            c["replied_on_time" if _on_time(complete) else "replied_late"] = 1
            c["handling_seconds"] = int((complete.met_at - steps[first.start].at).total_seconds())
        if any(s.action == "audit" and s.data.get("passed") for s in tail):
            c["audited"] = 1
        evaluation = next((s for s in reversed(tail) if s.action in EVALUATIONS), None)
        if evaluation is not None:
            c["callbacks"] = 1
            if evaluation.action == "rate" or evaluation.data.get("reached"):
                c["evaluated"] = 1
                c["solved"] = int(bool(evaluation.data.get("solved")))
                level = evaluation.data.get("satisfaction")
                if level in LEVEL_COUNTERS:
                    c["satisfied_n"] = 1
                    c[LEVEL_COUNTERS[str(level)]] = 1
                    c["dissatisfied"] = int(level in DISSATISFIED)
    counters = {k: v for k, v in c.items() if v}
    return Fact(unit, _day(steps[first.start].at, tz), counters, contact_due)
