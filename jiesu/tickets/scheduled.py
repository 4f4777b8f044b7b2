"""Durable timers done when they fall due: the worker's `run_due_jobs` (`jiesu/worker.py`).

The jobs are written by the change that calls for them (`timers.py`). The worker claims due
jobs — `FOR UPDATE SKIP LOCKED` on PostgreSQL, so several workers never take the same job; one
worker on SQLite — and does each one in the transaction that marks it done, checking first that
the deadline it warns about still stands. A worker killed at any moment loses nothing and
repeats nothing.

A change of the rules (calendar, tier limits) reschedules the orders it affects
(`rule_changes.py`); when they are many it queues one `rules` job, which each claim advances by
a batch of orders until it is done. A timer found stale (its due moved without a reschedule)
is cancelled and its order recomputed, so the timer of the due that stands exists.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.org.models import Unit
from jiesu.tickets import rule_changes
from jiesu.tickets.flows import timer_notices
from jiesu.tickets.models import Job, Ticket
from jiesu.tickets.service import ticket_deadlines
from jiesu.tickets.timers import DEADLINE_KINDS
from jiesu.timelimits.deadlines import PHASE_NAMES

log = logging.getLogger("jiesu.worker")
RETRY_AFTER = timedelta(minutes=5)
KIND_NAMES = {"warn": "即将超期（已用 80% 时限）", "overdue": "已超期"}


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
        rule_changes.work(job, db_session=db_session, now=now)
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
            rule_changes.recompute([ticket.id], db_session=db_session, now=now)
        return
    lead = ticket.lead_unit_id
    if job.payload.get("unit"):  # a report-in limit: the summoned unit is the one to warn
        lead = db_session.scalar(select(Unit.id).where(Unit.code == job.payload["unit"]))
    timer_notices(ticket, job, message, lead=lead, db_session=db_session, now=now)
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
