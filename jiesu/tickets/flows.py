"""The effects of a change to a ticket, in one place (as Netflix Dispatch's `flows`): intake
(`after_receive`) and every action (`after_transition`) apply here, in the change's own
transaction, what it owes besides the change itself —

- the timers its deadlines call for (`timers.schedule`, the 容缺受理 promise);
- the assessment's facts and rollups (`assessment.refresh`, `refresh_intake`);
- the notices, written to the outbox (so a crash loses neither the change nor its notice; the
  worker delivers them, `jiesu/worker.py`), each with its `notice` kind (docs/architecture.md);
- a consultation answered with a knowledge base entry: the entry's use (`knowledge.uses`, the
  one knowledge module the ticket package imports);
- the actions it sets off: 举一反三, a proactive task's audited reply answers its linked orders.
  Those are returned (`FollowUp`) for `actions.take_action` to take, so that this module never
  imports the actions module that calls it.

A timer that falls due writes its notices here too (`timer_notices`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.assessment import service as assessment
from jiesu.assessment.models import TicketLink
from jiesu.knowledge import uses as knowledge_uses
from jiesu.org.models import Unit
from jiesu.tickets.lifecycle import BY_NAME, STATES, Transition
from jiesu.tickets.models import Event, Job, Outbox, Ticket
from jiesu.tickets.timers import schedule, track_promise
from jiesu.timelimits.deadlines import Deadline

# The requester's notices (the SMS templates are per kind, docs/architecture.md):
RECEIPT = "receipt"  # 受理回执: number and tracking code
ANSWER = "answer"  # 直接答复 / 转办 / 不予受理: what the centre told at intake
REPLY = "reply"  # 办结答复: the reply, once the centre's audit passed it
CALLBACK_INVITE = "callback_invite"  # 回访邀请: rate the reply (sent with REPLY)
CLOSE = "close"  # closed: short, no reply text if REPLY carried it
# Orders a proactive task's audited reply answers (举一反三): those still waiting for a reply.
ANSWERABLE = frozenset({"received", "pending_dispatch", "dispatched", "accepted"})


@dataclass(frozen=True)
class FollowUp:
    """An action a change sets off on another order, taken by the same actor at the same time."""

    ticket_id: int
    action: str
    data: dict[str, Any]


def centre_id(db_session: Session) -> int | None:
    return db_session.scalar(
        select(Unit.id).where(Unit.function == "service_centre", Unit.active).limit(1)
    )


# ---- the change's effects --------------------------------------------------------------------


def after_receive(
    ticket: Ticket, event: Event, *, db_session: Session, now: datetime,
    tracking_code: str | None = None,
) -> None:  # fmt: skip
    """Intake's effects: the 受理回执 (with the tracking code in clear, its only appearance), a
    misconduct complaint's notice to discipline, the rollups. No timer: the limits start at
    dispatch."""
    # The acknowledgement with the ticket number (GB/T 33358: online requests within 3 minutes).
    notices_for(ticket, event, ("requester",), previous_lead=None, db_session=db_session,
                now=now, tracking_code=tracking_code)  # fmt: skip
    if event.data.get("window_cause") == "misconduct":  # 吃拿卡要 goes to discipline, supervision
        notices_for(
            ticket, event, ("discipline",), previous_lead=None, db_session=db_session, now=now
        )
    db_session.flush()
    assessment.refresh(ticket, db_session=db_session, events=[event])
    assessment.refresh_intake(ticket, db_session=db_session)


def after_transition(
    ticket: Ticket, transition: Transition, event: Event, current: list[Deadline], *,
    previous_lead: int | None, db_session: Session, now: datetime,
) -> list[FollowUp]:  # fmt: skip
    """An action's effects, after its change is flushed: the timers of its `current`
    deadlines, the rollups, the notices; returns the actions it sets off on other orders."""
    schedule(ticket, current, db_session=db_session)
    if transition.action == "accept_with_missing":
        track_promise(ticket, event, transition.data["promised_days"], db_session=db_session)
    assessment.refresh(ticket, db_session=db_session)  # the rollups follow the timeline
    if transition.action == "recategorize":
        assessment.refresh_intake(ticket, db_session=db_session)
    if transition.action == "answer" and event.data.get("entry_id"):  # answered with an entry
        knowledge_uses.record_use(
            int(event.data["entry_id"]), int(event.data["entry_version"]), ticket_id=ticket.id,
            user_id=event.actor_id, db_session=db_session, now=now,
        )  # fmt: skip
    passed = transition.action == "audit" and bool(transition.data.get("passed"))
    recipients = transition.notify
    if passed and "requester" not in recipients:  # 办结答复 and 回访邀请
        recipients = ("requester", *recipients)
    if recipients:
        answer = final_answer(ticket) if "requester" in recipients else None
        if transition.action == "close" and answer and _reply_told(ticket, answer, db_session):
            answer = None  # told at the audit: the closing notice stays short
        notices_for(ticket, event, recipients, previous_lead=previous_lead,
                    db_session=db_session, now=now, reply=answer)  # fmt: skip
        db_session.flush()
    if passed and ticket.channel == "proactive":
        return linked_answers(ticket, db_session=db_session)
    return []


def linked_answers(task: Ticket, *, db_session: Session) -> list[FollowUp]:
    """举一反三: when a proactive task's reply passes the centre's audit, every order linked to it
    that is still waiting for a reply is answered by it (`answer_by_task`, an event in its own
    timeline naming the task: the lead's part replied, the citizen notified) and goes on to the
    callback and rating like any audited order. Orders already replied or closed keep their own
    answer."""
    reply = next((e for e in reversed(task.events) if e.action == "reply"), None)
    if reply is None:
        return []
    result = str(reply.data.get("result") or "solved")
    content = f"{reply.data.get('content', '')}（由主动治理任务 {task.number} 举一反三统一办理）"
    linked = db_session.scalars(
        select(Ticket.id)
        .join(TicketLink, TicketLink.linked_id == Ticket.id)
        .where(TicketLink.ticket_id == task.id, Ticket.status.in_(ANSWERABLE))
        .order_by(Ticket.id)
    ).all()
    data = {"task": task.number, "result": result, "content": content}
    return [FollowUp(int(i), "answer_by_task", dict(data)) for i in linked]


# ---- notices ---------------------------------------------------------------------------------


def requester_notices(event: Event) -> tuple[str, ...]:
    """The notice kinds the requester gets for `event` (when the table notifies them)."""
    if event.action == "receive":
        return (RECEIPT,)
    if event.action in ("answer", "transfer", "reject"):
        return (ANSWER,)
    if event.action == "answer_by_task" or (event.action == "audit" and event.data.get("passed")):
        return (REPLY, CALLBACK_INVITE)  # the order goes on to the callback and the rating
    if event.action == "close":
        return (CLOSE,)
    return (event.action,)


def notices_for(
    ticket: Ticket, event: Event, recipients: tuple[str, ...], *, previous_lead: int | None,
    db_session: Session, now: datetime, reply: dict[str, str] | None = None,
    tracking_code: str | None = None,
) -> list[Outbox]:  # fmt: skip
    """Outbox rows for `event`; `recipients` come from the lifecycle table's `notify`.

    `reply` (the answer or reply text and where it came from) goes to the requester with the
    answer, reply and closing notices; `tracking_code` with the receipt."""
    label = BY_NAME[event.action].label if event.action in BY_NAME else "受理"
    message = f"工单 {ticket.number}「{ticket.title}」{label}，当前状态：{STATES[ticket.status]}"
    base: dict[str, Any] = {
        "action": event.action,
        "notice": event.action,
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
            if not ticket.requester_phone:
                continue
            for notice in requester_notices(event):
                extra: dict[str, Any] = {"notice": notice, "phone": ticket.requester_phone}
                if notice in (ANSWER, REPLY, CLOSE) and reply:
                    extra.update(reply)
                if notice == RECEIPT and tracking_code:
                    extra["tracking_code"] = tracking_code
                if notice == CALLBACK_INVITE:
                    extra["message"] = f"工单 {ticket.number} 已办结，请对办理结果进行评价"
                add("requester", None, **extra)
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


def timer_notices(
    ticket: Ticket, job: Job, message: str, *, lead: int | None, db_session: Session,
    now: datetime,
) -> None:  # fmt: skip
    """A timer that fell due (warn, overdue, promise) tells the unit `lead` and the centre."""
    payload = {"kind": job.kind, "notice": job.kind, "phase": job.phase, "number": ticket.number,
               "due": job.payload["due"], "message": message}  # fmt: skip
    for recipient, unit in (("unit", lead), ("centre", centre_id(db_session))):
        if unit is not None:
            db_session.add(
                Outbox(
                    ticket_id=ticket.id, job_id=job.id, recipient=recipient, unit_id=unit,
                    payload=payload, created_at=now, attempts=0,
                )
            )  # fmt: skip


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


def _reply_told(ticket: Ticket, answer: dict[str, str], db_session: Session) -> bool:
    """Whether the requester was already sent this reply as the 办结答复."""
    sent = db_session.scalars(
        select(Outbox.payload).where(Outbox.ticket_id == ticket.id, Outbox.recipient == "requester")
    )
    return any(p.get("notice") == REPLY and p.get("reply") == answer["reply"] for p in sent)
