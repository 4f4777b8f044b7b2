"""When the rules a deadline is computed from change, the orders they affect follow.

Two kinds of change move deadlines that were computed before: the working-day calendar (an
admin's 调休 entry, a pack's calendar.csv) and a tier's phase limits (a pack load). Deadlines
are derived, never stored, but three things are kept from them: `ticket.due_at` (the overdue
list and the due-soon queue read it), the pending timers (`timers.py`) and the assessment's
facts (on time or late). `propagate` brings them up to date for every order the change can
touch, doing for each exactly what an action does after its event: recompute the deadlines,
store the completion due, reschedule, refresh the facts.

Which orders a change touches:

- **a calendar change** for local days D1…D2 moves a deadline only if its clock ran (or still
  runs) across those days. An order's facts are judged against its timeline, so they depend
  only on the days between its first and last event: the orders created before the end of D2
  with an event since the start of D1. The timers and `due_at` of an open order depend on the
  days before each unmet due: the open orders whose `due_at`, or whose overdue timer, is at or
  after the start of D1. Both sets are read by index (events by (action, at), tickets by
  (status, due_at), jobs by (status, run_at)), so a change to next year's holidays touches the
  few orders due then and costs milliseconds, whatever the history.
- **a tier's limits** judge every order of that tier, closed or not (its facts).

Tier rules are not compared: an order keeps the tier it got at intake (or by a recategorisation,
recorded in its timeline); new rules apply to new orders.

Up to `INLINE_LIMIT` orders are brought up to date in the transaction that makes the change;
more are queued as one durable `rules` job (no ticket of its own) that the worker works through
`BATCH` orders per claim, in order of id, walking the same selection widened to every open
order. Each recomputation reads the rules current when it runs, so an action taken meanwhile
and the job agree; running one twice changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, false, or_, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from jiesu.assessment import service as assessment
from jiesu.db.base import utcnow
from jiesu.settings import city_tz
from jiesu.taxonomy.service import city_clocks, pack_settings
from jiesu.tickets.lifecycle import BY_NAME, OPEN
from jiesu.tickets.models import Assignment, Event, Job, Ticket
from jiesu.tickets.service import ticket_deadlines
from jiesu.tickets.timers import schedule
from jiesu.timelimits.tiers import EVERY_TIER, NO_TIER

# Measured on the Beijing demo (docs/benchmarks.md, "Rule changes"): 1.4–3 ms an order on a
# loaded two-core machine, so up to 500 orders keep the change's transaction near a second.
INLINE_LIMIT = 500
BATCH = 500
KIND = "rules"
# Every action an event can record: the lifecycle's, and the three the system appends itself.
EVENT_ACTIONS = tuple(sorted({*BY_NAME, "receive", "escalate", "close"}))


@dataclass(frozen=True)
class RuleChange:
    """What changed: local days of the calendar (first, last) and/or tiers whose limits
    changed (`timelimits.tiers.changed_tiers`)."""

    days: tuple[date, date] | None = None
    tiers: frozenset[str] = frozenset()

    @classmethod
    def calendar(cls, days: Iterable[date]) -> RuleChange:
        ordered = sorted(days)
        return cls(days=(ordered[0], ordered[-1]) if ordered else None)

    def __bool__(self) -> bool:
        return self.days is not None or bool(self.tiers)

    def as_payload(self) -> dict[str, Any]:
        return {
            "days": [d.isoformat() for d in self.days] if self.days else None,
            "tiers": sorted(self.tiers),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> RuleChange:
        days = payload.get("days")
        return cls(
            days=(date.fromisoformat(days[0]), date.fromisoformat(days[1])) if days else None,
            tiers=frozenset(payload.get("tiers") or ()),
        )

    def _bounds(self) -> tuple[datetime, datetime]:
        assert self.days is not None
        tz = city_tz()
        edge = timedelta(days=2)  # the first and last days representable, in any zone
        first = datetime.combine(max(self.days[0], date.min + edge), time(0), tz)
        last = min(self.days[1], date.max - edge)
        return first, datetime.combine(last + timedelta(days=1), time(0), tz)


@dataclass(frozen=True)
class Outcome:
    """What `propagate` did: the orders recomputed now, or the job that will."""

    recomputed: int = 0
    queued: int = 0  # orders found, left to the worker's `rules` job
    job_key: str | None = None


def affected(change: RuleChange, *, db_session: Session) -> list[int]:
    """The ids of the orders the change can touch, in order, read by index."""
    ids: set[int] = set()
    if change.days is not None:
        start, end = change._bounds()
        active = (
            select(Event.ticket_id)
            .where(Event.action.in_(EVENT_ACTIONS), Event.at >= start)
            .distinct()
        )
        ids.update(
            db_session.scalars(
                select(Ticket.id).where(Ticket.id.in_(active), Ticket.created_at < end)
            )
        )
        ids.update(
            db_session.scalars(
                select(Ticket.id).where(
                    Ticket.status.in_(OPEN), Ticket.due_at >= start, Ticket.created_at < end
                )
            )
        )
        ids.update(
            db_session.scalars(
                select(Job.ticket_id)
                .join(Ticket, Ticket.id == Job.ticket_id)
                .where(
                    Job.status.in_(("pending", "done")),
                    Job.run_at >= start,
                    Job.kind == "overdue",
                    Ticket.status.in_(OPEN),
                    Ticket.created_at < end,
                )
            )
        )
    if change.tiers:
        ids.update(db_session.scalars(select(Ticket.id).where(_tier_condition(change.tiers))))
    return sorted(ids)


def _tier_condition(tiers: frozenset[str]) -> Any:
    if EVERY_TIER in tiers:
        return Ticket.id.isnot(None)
    named = sorted(t for t in tiers if t != NO_TIER)
    condition = Ticket.tier.in_(named) if named else false()
    return or_(condition, Ticket.tier.is_(None)) if NO_TIER in tiers else condition


def _walk_condition(change: RuleChange) -> Any:
    """The queued job's selection: `affected`'s, widened to every open order, so that it can
    be walked in order of id (one pass over the primary key for the whole job)."""
    parts = []
    if change.days is not None:
        start, end = change._bounds()
        parts.append(
            and_(Ticket.created_at < end, or_(Ticket.updated_at >= start, Ticket.status.in_(OPEN)))
        )
    if change.tiers:
        parts.append(_tier_condition(change.tiers))
    return or_(*parts) if parts else false()


def recompute(ids: Sequence[int], *, db_session: Session, now: datetime | None = None) -> int:
    """Bring the orders' `due_at`, timers and facts up to date with the current rules, as an
    action does after its event (without a version step: nothing happened to the order)."""
    now = now or utcnow()
    settings = pack_settings(db_session=db_session)
    clocks = city_clocks(db_session=db_session)
    ctx = assessment.context(db_session=db_session)
    done = 0
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        tickets = db_session.scalars(
            select(Ticket)
            .where(Ticket.id.in_(chunk))
            .order_by(Ticket.id)
            .options(
                selectinload(Ticket.assignments).selectinload(Assignment.unit),
                selectinload(Ticket.events),
            )
        ).all()
        jobs: dict[int, list[Job]] = {t.id: [] for t in tickets}
        for job in db_session.scalars(select(Job).where(Job.ticket_id.in_(chunk))):
            jobs[job.ticket_id or 0].append(job)
        with db_session.no_autoflush:  # the new timers go in once per batch
            for ticket in tickets:
                current = ticket_deadlines(
                    ticket, db_session=db_session, now=now, settings=settings, clocks=clocks
                )
                complete = next((d for d in current if d.phase == "complete"), None)
                due = complete.due if complete else None
                if ticket.due_at != due:
                    db_session.execute(
                        update(Ticket).where(Ticket.id == ticket.id).values(due_at=due),
                        execution_options={"synchronize_session": False},
                    )
                    set_committed_value(ticket, "due_at", due)
                schedule(ticket, current, db_session=db_session, existing_jobs=jobs[ticket.id])
                assessment.refresh(ticket, db_session=db_session, ctx=ctx)
                done += 1
        db_session.flush()
    return done


def propagate(
    change: RuleChange, *, db_session: Session, now: datetime | None = None,
    inline_limit: int | None = None,
) -> Outcome:  # fmt: skip
    """Call in the transaction that changes the rules, after the change is written (and
    `bump_reference` called): the affected orders follow now, or a queued job makes them."""
    if not change:
        return Outcome()
    db_session.flush()
    ids = affected(change, db_session=db_session)
    if len(ids) <= (INLINE_LIMIT if inline_limit is None else inline_limit):
        return Outcome(recomputed=recompute(ids, db_session=db_session, now=now))
    now = now or utcnow()
    key = f"{KIND}:{uuid.uuid4().hex}"
    db_session.add(
        Job(
            key=key, kind=KIND, ticket_id=None, phase=None, run_at=now, status="pending",
            attempts=0, payload=change.as_payload() | {"after": ids[0] - 1, "done": 0},
        )
    )  # fmt: skip
    return Outcome(queued=len(ids), job_key=key)


def work(job: Job, *, db_session: Session, now: datetime) -> None:
    """One claim of a queued `rules` job: the next `BATCH` orders; done after the last."""
    change = RuleChange.from_payload(job.payload)
    after = int(job.payload.get("after") or 0)
    ids = list(
        db_session.scalars(
            select(Ticket.id)
            .where(Ticket.id > after, _walk_condition(change))
            .order_by(Ticket.id)
            .limit(BATCH)
        )
    )
    recompute(ids, db_session=db_session, now=now)
    payload = dict(job.payload)
    payload["done"] = int(payload.get("done") or 0) + len(ids)
    if ids:
        payload["after"] = ids[-1]
    job.payload = payload  # a new value: JSON columns do not track changes inside
    if len(ids) < BATCH:
        job.status, job.done_at = "done", now


def pending(*, db_session: Session) -> int:
    """How many rule changes are still being worked through (the admin sees it)."""
    return len(
        db_session.scalars(select(Job.id).where(Job.kind == KIND, Job.status == "pending")).all()
    )
