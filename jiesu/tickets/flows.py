"""The side effects of a change to a ticket: the notices it owes, written to the outbox in the
change's own transaction (so a crash loses neither the change nor its notice)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.org.models import Unit
from jiesu.tickets.lifecycle import BY_NAME, STATES
from jiesu.tickets.models import Event, Outbox, Ticket


def centre_id(db_session: Session) -> int | None:
    return db_session.scalar(
        select(Unit.id).where(Unit.function == "service_centre", Unit.active).limit(1)
    )


def notices_for(
    ticket: Ticket, event: Event, recipients: tuple[str, ...], *, previous_lead: int | None,
    db_session: Session, now: datetime, reply: dict[str, str] | None = None,
) -> list[Outbox]:  # fmt: skip
    """Outbox rows for `event`; `recipients` come from the lifecycle table's `notify`.

    `reply` (the answer or reply text and where it came from) goes to the requester with it."""
    label = BY_NAME[event.action].label if event.action in BY_NAME else "受理"
    message = f"工单 {ticket.number}「{ticket.title}」{label}，当前状态：{STATES[ticket.status]}"
    base: dict[str, Any] = {
        "action": event.action,
        "number": ticket.number,
        "status": ticket.status,
        "message": message,
    }
    rows: list[Outbox] = []

    def add(recipient: str, unit_id: int | None, **extra: Any) -> None:
        rows.append(
            Outbox(
                ticket_id=ticket.id, event=event, recipient=recipient, unit_id=unit_id,
                payload={**base, **extra}, created_at=now, attempts=0,
            )
        )  # fmt: skip

    for recipient in recipients:
        if recipient == "requester":
            if ticket.requester_phone:
                add("requester", None, phone=ticket.requester_phone, **(reply or {}))
        elif recipient == "unit":
            lead = ticket.lead_unit_id or previous_lead
            if lead:
                add("unit", lead)
            if event.action == "dispatch":
                for a in ticket.assignments:
                    if a.active and a.role == "co_handler":
                        add("unit", a.unit_id)
        elif recipient == "lead":
            if ticket.lead_unit_id:
                add("lead", ticket.lead_unit_id)
        elif recipient == "summoned":
            summoned = set(event.data.get("units", []))
            for a in ticket.assignments:
                if a.active and a.role == "summoned" and a.unit.code in summoned:
                    add("summoned", a.unit_id)
        elif recipient in ("centre", "supervisor"):
            add(recipient, centre_id(db_session))
        elif recipient == "discipline":
            unit = db_session.scalar(
                select(Unit.id).where(Unit.function == "discipline", Unit.active).limit(1)
            )
            add("discipline", unit or centre_id(db_session))
    db_session.add_all(rows)
    return rows


def final_answer(ticket: Ticket) -> dict[str, str] | None:
    """The answer the citizen gets: the last reply that stood, or the direct answer."""
    for e in reversed(ticket.events):
        if e.action == "audit" and e.data.get("passed") is False:
            continue
        if e.action == "reply":
            return {"reply": str(e.data.get("content", "")), "reply_from": ticket.number}
        if e.action == "answer_by_task":  # 举一反三: the proactive task's reply
            return {"reply": str(e.data.get("content", "")),
                    "reply_from": str(e.data.get("task", ticket.number))}  # fmt: skip
        if e.action == "answer":
            return {"reply": str(e.data.get("answer", "")), "reply_from": ticket.number}
    return None
