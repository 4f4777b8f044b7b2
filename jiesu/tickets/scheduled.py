"""Durable timers: time-limit warnings scheduled from the deadlines and done by `jiesu worker`.

Every action reschedules its ticket: one `warn` job at 80% and one `overdue` job at the due of
each phase not yet met and not suspended, keyed so the same warning is never made twice, and
pending jobs that no longer apply are cancelled. The worker claims due jobs — `FOR UPDATE SKIP
LOCKED` on PostgreSQL, so several workers never take the same job; one worker on SQLite — and
does each one in the transaction that marks it done, checking first that the deadline it warns
about still stands. A worker killed at any moment loses nothing and repeats nothing.

A change of the rules (calendar, tier limits) reschedules the orders it affects
(`rule_changes.py`); when they are many it queues one `rules` job, which each claim advances by
a batch of orders until it is done. A timer found stale (its due moved without a reschedule)
is cancelled and its order recomputed, so the timer of the due that stands exists.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from jiesu.citypack.parse import Duration
from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.org.models import Unit
from jiesu.taxonomy.service import city_clocks
from jiesu.tickets.flows import centre_id
from jiesu.tickets.models import Event, Job, Outbox, Ticket
from jiesu.tickets.service import ticket_deadlines
from jiesu.timelimits.deadlines import PHASE_NAMES, Deadline

log = logging.getLogger("jiesu.worker")
RETRY_AFTER = timedelta(minutes=5)
KIND_NAMES = {"warn": "即将超期（已用 80% 时限）", "overdue": "已超期"}
DEADLINE_KINDS = ("warn", "overdue")  # what `schedule` manages; other kinds live on their own


def job_key(ticket: Ticket, d: Deadline, kind: str) -> str:
    assert d.due is not None
    phase = f"{d.phase}:{d.unit}" if d.unit else d.phase
    return f"{ticket.id}:{ticket.round}:{phase}:{kind}:{d.due.isoformat()}"


def schedule(
    ticket: Ticket, current: list[Deadline], *, db_session: Session,
    existing_jobs: list[Job] | None = None,
) -> None:  # fmt: skip
    """Make the ticket's pending jobs match its current deadlines (`existing_jobs`: the
    ticket's jobs, when the caller read them for many tickets at once)."""
    wanted: dict[str, tuple[str, Deadline, datetime]] = {}
    for d in current:
        if d.met_at is not None or d.paused or d.due is None or ticket.status == "closed":
            continue
        if d.warn_at is not None:
            wanted[job_key(ticket, d, "warn")] = ("warn", d, d.warn_at)
        wanted[job_key(ticket, d, "overdue")] = ("overdue", d, d.due)
    if existing_jobs is None:
        existing_jobs = list(db_session.scalars(select(Job).where(Job.ticket_id == ticket.id)))
    existing = {j.key: j for j in existing_jobs}
    for key, job in existing.items():
        if job.status == "pending" and job.kind in DEADLINE_KINDS and key not in wanted:
            job.status = "cancelled"
    for key, (kind, d, run_at) in wanted.items():
        job = existing.get(key)
        if job is None:
            db_session.add(
                Job(
                    key=key, kind=kind, ticket_id=ticket.id, phase=d.phase, run_at=run_at,
                    status="pending", attempts=0,
                    payload={"due": d.due.isoformat() if d.due else None, "round": ticket.round,
                             "unit": d.unit},
                )
            )  # fmt: skip
        elif job.status == "cancelled":  # the deadline came back (e.g. resumed)
            job.status = "pending"


def track_promise(ticket: Ticket, event: Event, days: int, *, db_session: Session) -> None:
    """容缺受理: tell the centre if the promised document is still missing after `days`."""
    due = city_clocks(db_session=db_session).due(event.at, Duration(days, "wd"))
    assert due is not None
    db_session.add(
        Job(
            key=f"{ticket.id}:promise:{event.seq}", kind="promise", ticket_id=ticket.id,
            phase=None, run_at=due, status="pending", attempts=0,
            payload={"due": due.isoformat(), "missing": event.data.get("missing")},
        )
    )  # fmt: skip


def _promise_open(ticket: Ticket) -> bool:
    last = next(
        (e.action for e in reversed(ticket.events)
         if e.action in ("accept_with_missing", "fulfil_missing")),
        None,
    )  # fmt: skip
    return last == "accept_with_missing" and ticket.status != "closed"


def _still_stands(job: Job, ticket: Ticket, *, db_session: Session, now: datetime) -> bool:
    if ticket.status == "closed" or ticket.round != job.payload.get("round"):
        return False
    current = {
        (d.phase, d.unit): d for d in ticket_deadlines(ticket, db_session=db_session, now=now)
    }
    d = current.get((job.phase or "", job.payload.get("unit")))
    return (
        d is not None
        and d.met_at is None
        and not d.paused
        and d.due is not None
        and d.due.isoformat() == job.payload.get("due")
    )


def _do(job: Job, *, db_session: Session, now: datetime) -> None:
    if job.kind == "rules":  # a rule change worked through in batches: no ticket, no notice
        from jiesu.tickets.rule_changes import work

        work(job, db_session=db_session, now=now)
        return
    ticket = db_session.get(Ticket, job.ticket_id)
    assert ticket is not None
    if job.kind == "promise":
        stands = _promise_open(ticket)
        message = (
            f"工单 {ticket.number} 容缺受理承诺补交的材料（{job.payload.get('missing')}）"
            f"到期仍未补交，承诺期限 {job.payload['due']}"
        )
    else:
        stands = _still_stands(job, ticket, db_session=db_session, now=now)
        message = (
            f"工单 {ticket.number}「{ticket.title}」{PHASE_NAMES[job.phase or 'complete']}时限"
            f"{KIND_NAMES[job.kind]}，时限至 {job.payload['due']}"
        )
    if not stands:
        job.status, job.done_at = "cancelled", now
        if job.kind in DEADLINE_KINDS and ticket.status != "closed":
            # The rules moved the due behind the timers' back (a calendar written straight into
            # the table, an action that raced a rule change): bring the order up to date, so
            # that its timers stand again.
            from jiesu.tickets.rule_changes import recompute

            recompute([ticket.id], db_session=db_session, now=now)
        return
    payload = {"kind": job.kind, "phase": job.phase, "number": ticket.number,
               "due": job.payload["due"], "message": message}  # fmt: skip
    lead = ticket.lead_unit_id
    if job.payload.get("unit"):  # a report-in limit: the summoned unit is the one to warn
        lead = db_session.scalar(select(Unit.id).where(Unit.code == job.payload["unit"]))
    for recipient, unit in (("unit", lead), ("centre", centre_id(db_session))):
        if unit is not None:
            db_session.add(
                Outbox(
                    ticket_id=ticket.id,
                    job_id=job.id,
                    recipient=recipient,
                    unit_id=unit,
                    payload=payload,
                    created_at=now,
                    attempts=0,
                )
            )
    job.status, job.done_at = "done", now


def run_due_jobs(db: Database, *, now: datetime | None = None, batch: int = 20) -> int:
    """Claim and do up to `batch` due jobs, each in its own savepoint; returns how many."""
    now = now or utcnow()
    with db.write() as session:
        stmt = (
            select(Job)
            .where(Job.status == "pending", Job.run_at <= now)
            .order_by(Job.run_at, Job.id)
            .limit(batch)
        )
        if db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        jobs = session.scalars(stmt).all()
        for job in jobs:
            job.attempts += 1
            try:
                with session.begin_nested():
                    _do(job, db_session=session, now=now)
            except Exception as exc:  # one bad job must not stop the others
                log.exception("job %s failed", job.key)
                session.execute(
                    update(Job)
                    .where(Job.id == job.id)
                    .values(last_error=str(exc)[:500], run_at=now + RETRY_AFTER)
                )
        return len(jobs)


PERIODIC_EVERY_S = 600.0  # reports owed and the warnings scan: checked every ten minutes


def work(db: Database, *, interval: float = 5.0, once: bool = False) -> None:
    """The worker loop: do due jobs; sleep `interval` seconds when there are none. Every ten
    minutes (and at start) it also builds the reports that are owed and scans for warnings."""
    from jiesu.reports.build import run_schedule

    last = -PERIODIC_EVERY_S
    while True:
        if time.monotonic() - last >= PERIODIC_EVERY_S:
            last = time.monotonic()
            try:
                run_schedule(db)
            except Exception:  # the timers must keep running whatever a report does
                log.exception("scheduled reports or warnings failed")
        done = run_due_jobs(db)
        if done:
            log.info("did %d jobs", done)
        elif once:
            return
        else:
            time.sleep(interval)
