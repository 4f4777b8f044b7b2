"""The timers an order's deadlines call for, written in the change's own transaction
(`flows.after_transition`, rule changes, the demo's open orders): one `warn` job at 80% and one
`overdue` job at the due of each phase not yet met and not suspended, keyed so the same warning
is never made twice; pending jobs that no longer apply are cancelled. The worker does them when
they fall due (`scheduled.py`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.citypack.parse import Duration
from jiesu.taxonomy.service import city_clocks
from jiesu.tickets.models import Event, Job, Ticket
from jiesu.timelimits.deadlines import Deadline

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
    for key, stale in existing.items():
        if stale.status == "pending" and stale.kind in DEADLINE_KINDS and key not in wanted:
            stale.status = "cancelled"
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
