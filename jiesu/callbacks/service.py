"""短信回访: an inbound SMS reply becomes the `rate` action on the right order, or waits for a
callback agent; the rating link rates the same way; the callback workbench's lists.

Which order a reply answers: the sender's orders (requester phone) that are `audited` and whose
回访邀请 went out (an outbox row to the requester with notice `callback_invite`). Exactly one →
it is rated (`via="sms"`); none or several → the reply is queued (待人工回访). A rating reply from
a phone whose invited orders are all rated already is a duplicate and changes nothing. Every
function takes `db_session=` and never commits: the caller's `db.write()` does.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jiesu.access.policy import Principal, mask_phone
from jiesu.callbacks import replies
from jiesu.callbacks.models import SmsReply
from jiesu.errors import Conflict, Invalid, NotFound
from jiesu.portal.service import citizen_principal, portal_principal
from jiesu.tickets.actions import take_action
from jiesu.tickets.models import Event, Outbox, Ticket
from jiesu.tickets.shapes import normalise_phone

INVITE = "callback_invite"
# An order still audited this long after its invitation went out needs a call (电话回访).
CALL_AFTER = timedelta(hours=48)
LIST_LIMIT = 200
TEXT_MAX = 500


class Refused(Exception):
    """Input the gateway sent that cannot be a reply at all (no id, no sender)."""


@dataclass(frozen=True)
class Inbound:
    """One SMS as the gateway posts it."""

    gateway_id: str
    phone: str  # normalised
    text: str
    received_at: datetime
    to: str | None = None


def inbound_of(data: dict[str, Any], *, now: datetime) -> Inbound:
    """The gateway's JSON or form fields, checked; `Refused` with the reason in words."""
    gateway_id = data.get("id")
    if isinstance(gateway_id, int) and not isinstance(gateway_id, bool):
        gateway_id = str(gateway_id)
    if not isinstance(gateway_id, str) or not gateway_id.strip() or len(gateway_id) > 100:
        raise Refused("id")
    sender = data.get("from")
    if isinstance(sender, int) and not isinstance(sender, bool):
        sender = str(sender)
    if not isinstance(sender, str) or len(sender) > 30:
        raise Refused("from")
    try:
        phone = normalise_phone(sender)
    except ValueError:
        raise Refused("from") from None
    text = data.get("text", "")
    if not isinstance(text, str):
        raise Refused("text")
    # control characters (NUL …) dropped; every kind of space kept as the citizen typed it
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C" or c in "\n\t")
    text = text[:TEXT_MAX]
    to = data.get("to")
    to = to[:30] if isinstance(to, str) else None
    received = _when(data.get("received_at"), now=now)
    return Inbound(gateway_id.strip(), phone, text, received, to)


def _when(value: Any, *, now: datetime) -> datetime:
    """The gateway's time when it is a sane ISO time with a zone, else the time we got it."""
    if not isinstance(value, str) or len(value) > 40:
        return now
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return now
    if parsed.tzinfo is None or abs(parsed - now) > timedelta(days=30):
        return now
    return parsed


# ---- which order ----------------------------------------------------------------------------


def invited(ticket_ids: list[int], *, db_session: Session) -> dict[int, datetime]:
    """Of `ticket_ids`, those whose 回访邀请 went out, with the time of the latest."""
    if not ticket_ids:
        return {}
    rows = db_session.execute(
        select(Outbox.ticket_id, Outbox.payload, Outbox.created_at).where(
            Outbox.ticket_id.in_(ticket_ids), Outbox.recipient == "requester"
        )
    ).all()
    out: dict[int, datetime] = {}
    for ticket_id, payload, created_at in rows:
        if isinstance(payload, dict) and payload.get("notice") == INVITE:
            out[ticket_id] = max(created_at, out.get(ticket_id, created_at))
    return out


def undeliverable(ticket_ids: list[int], *, db_session: Session) -> set[int]:
    """Of `ticket_ids`, those whose 回访邀请 never reached the phone: every SMS of it ended dead
    (the gateway refused it N times) or skipped (opted out)."""
    if not ticket_ids:
        return set()
    from jiesu.delivery.models import Delivery

    rows = db_session.execute(
        select(Delivery.ticket_id, Delivery.status, Outbox.payload)
        .join(Outbox, Outbox.id == Delivery.outbox_id)
        .where(Delivery.ticket_id.in_(ticket_ids), Delivery.channel == "sms",
               Outbox.recipient == "requester")
    ).all()  # fmt: skip
    states: dict[int, set[str]] = {}
    for ticket_id, status, payload in rows:
        if isinstance(payload, dict) and payload.get("notice") == INVITE:
            states.setdefault(ticket_id, set()).add(status)
    return {t for t, seen in states.items() if seen and seen <= {"dead", "skipped"}}


def phone_orders(phone: str, *, db_session: Session) -> list[Ticket]:
    """The phone's orders that a reply could answer (audited) or repeat (rated)."""
    return list(
        db_session.scalars(
            select(Ticket)
            .where(
                Ticket.requester_phone == phone,
                Ticket.status.in_(("audited", "evaluated", "closed")),
            )
            .order_by(Ticket.id.desc())
            .limit(50)
        )
    )


@dataclass
class Match:
    open: list[Ticket] = field(default_factory=list)  # audited, invited: awaiting the rating
    rated: list[Ticket] = field(default_factory=list)  # invited, rated already
    audited: list[Ticket] = field(default_factory=list)  # every audited order of the phone


def match(phone: str, *, db_session: Session) -> Match:
    orders = phone_orders(phone, db_session=db_session)
    sent = invited([t.id for t in orders], db_session=db_session)
    found = Match()
    for t in orders:
        if t.status == "audited":
            found.audited.append(t)
            if t.id in sent:
                found.open.append(t)
        elif t.id in sent and t.satisfaction:
            found.rated.append(t)
    return found


# ---- an inbound reply -----------------------------------------------------------------------


def seen(gateway_id: str, *, db_session: Session) -> SmsReply | None:
    return db_session.scalar(select(SmsReply).where(SmsReply.gateway_id == gateway_id))


def receive(
    message: Inbound, *, db_session: Session, now: datetime, queue_only: bool = False
) -> SmsReply:
    """Record one reply and do what it says; the stored row (its `result`). `queue_only`: just
    keep it for an agent (when doing what it says failed twice)."""
    reply = replies.parse(message.text)
    row = SmsReply(
        gateway_id=message.gateway_id, phone=message.phone, to=message.to,
        text=message.text, received_at=message.received_at, created_at=now, kind=reply.kind,
        satisfaction=reply.satisfaction, solved=reply.solved, result="queued", status="queued",
        candidates=[],
    )  # fmt: skip
    found = match(message.phone, db_session=db_session)
    row.candidates = [t.id for t in found.audited]
    if queue_only:
        pass
    elif reply.kind == "opt_out":
        from jiesu.notices.service import opt_out  # P2's opt-out list

        opt_out(message.phone, db_session=db_session, now=now, source="sms")
        row.result, row.status = "opted_out", "done"
    elif reply.kind == "rating" and len(found.open) == 1:
        ticket = found.open[0]
        _rate(ticket.id, reply, message.text, db_session=db_session, now=now)
        row.result, row.status, row.ticket_id = "rated", "done", ticket.id
    elif reply.kind == "rating" and not found.open and found.rated:
        row.result, row.status, row.ticket_id = "duplicate", "done", found.rated[0].id
    db_session.add(row)
    db_session.flush()
    return row


def _rate(
    ticket_id: int, reply: replies.Reply, text: str, *, db_session: Session, now: datetime
) -> None:
    fields: dict[str, Any] = {"solved": reply.solved, "satisfaction": reply.satisfaction,
                              "via": "sms"}  # fmt: skip
    words = text.strip()
    if replies.normalise(words) not in replies.DIGITS and words:
        fields["note"] = words[:500]  # the citizen's own words, kept with the rating
    actor = citizen_principal(portal_principal(db_session=db_session))
    take_action(ticket_id, "rate", fields, actor=actor, db_session=db_session, now=now)


# ---- the rating link ------------------------------------------------------------------------


def rate_by_link(ticket_id: int, fields: dict[str, Any], *, db_session: Session,
                 now: datetime) -> Ticket:  # fmt: skip
    """The citizen's rating from the signed link: the portal's `rate`, with `via="link"`."""
    ticket = db_session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound("链接对应的工单不存在 / no such ticket")
    if ticket.status != "audited":
        raise Conflict(
            "该工单已评价，感谢您的反馈 / already rated"
            if ticket.satisfaction
            else "该工单当前不能评价 / the ticket cannot be rated now"
        )
    actor = citizen_principal(portal_principal(db_session=db_session))
    data = {**fields, "via": "link"}
    take_action(ticket_id, "rate", data, actor=actor, db_session=db_session, now=now)
    return ticket


# ---- the workbench --------------------------------------------------------------------------


@dataclass(frozen=True)
class RatedRow:
    ticket_id: int
    number: str
    title: str
    via: str
    at: datetime
    solved: bool | None
    satisfaction: str | None
    text: str | None  # the SMS as received, or the note left on the link page


def rated_by_citizens(*, db_session: Session, limit: int = LIST_LIMIT) -> list[RatedRow]:
    """The latest ratings made by SMS or by the link (newest first)."""
    events = db_session.execute(
        select(Event, Ticket.number, Ticket.title)
        .join(Ticket, Ticket.id == Event.ticket_id)
        .where(Event.action == "rate")
        .order_by(Event.id.desc())
        .limit(limit * 4)
    ).all()
    picked = [(e, n, t) for e, n, t in events if (e.data or {}).get("via") in ("sms", "link")]
    picked = picked[:limit]
    texts: dict[int, str] = {}
    ids = [e.ticket_id for e, _, _ in picked if (e.data or {}).get("via") == "sms"]
    if ids:
        for ticket_id, text in db_session.execute(
            select(SmsReply.ticket_id, SmsReply.text)
            .where(SmsReply.ticket_id.in_(ids), SmsReply.result == "rated")
            .order_by(SmsReply.id)
        ):
            if ticket_id is not None:
                texts[ticket_id] = text
    out = []
    for e, number, title in picked:
        data = e.data or {}
        via = str(data.get("via"))
        said = texts.get(e.ticket_id) if via == "sms" else (str(data.get("note") or "") or None)
        out.append(RatedRow(e.ticket_id, number, title, via, e.at, data.get("solved"),
                            data.get("satisfaction"), said))  # fmt: skip
    return out


@dataclass(frozen=True)
class CallRow:
    ticket_id: int
    number: str
    title: str
    audited_at: datetime
    reason: str  # why a person must call: in Chinese


def need_a_call(*, db_session: Session, now: datetime, limit: int = LIST_LIMIT) -> list[CallRow]:
    """Audited orders nobody has rated that an agent must call: no phone, no invitation, an
    invitation that could not be delivered, or one sent more than CALL_AFTER ago (oldest
    first)."""
    tickets = list(
        db_session.scalars(
            select(Ticket)
            .where(Ticket.status == "audited")
            .order_by(Ticket.updated_at, Ticket.id)
            .limit(limit * 4)
        )
    )
    ids = [t.id for t in tickets]
    sent = invited(ids, db_session=db_session)
    failed = undeliverable(ids, db_session=db_session)
    out: list[CallRow] = []
    for t in tickets:
        if not t.requester_phone:
            reason = "无联系电话，需人工回访"
        elif t.id not in sent:
            reason = "未发送短信回访邀请"
        elif t.id in failed:
            reason = "短信回访邀请未能送达（发送失败或已退订）"
        elif now - sent[t.id] >= CALL_AFTER:
            hours = int((now - sent[t.id]).total_seconds() // 3600)
            reason = f"邀请已发出 {hours} 小时未评价"
        else:
            continue
        out.append(CallRow(t.id, t.number, t.title, t.updated_at, reason))
        if len(out) >= limit:
            break
    return out


@dataclass(frozen=True)
class QueuedRow:
    id: int
    phone: str  # masked
    text: str
    received_at: datetime
    reading: str  # what the parser made of it, in Chinese
    candidates: list[tuple[int, str, str]]  # (id, number, title) of the phone's audited orders


READINGS = {"rating": "评价", "opt_out": "退订", "unparseable": "无法识别"}


def queued_replies(*, db_session: Session, limit: int = LIST_LIMIT) -> list[QueuedRow]:
    """Replies waiting for a callback agent (待人工回访), oldest first."""
    from jiesu.tickets.lifecycle import SATISFACTION

    rows = list(
        db_session.scalars(
            select(SmsReply)
            .where(SmsReply.status == "queued")
            .order_by(SmsReply.received_at, SmsReply.id)
            .limit(limit)
        )
    )
    out = []
    for r in rows:
        orders = phone_orders(r.phone, db_session=db_session)
        candidates = [(t.id, t.number, t.title) for t in orders if t.status == "audited"]
        reading = READINGS.get(r.kind, r.kind)
        if r.kind == "rating" and r.satisfaction:
            reading = f"评价：{SATISFACTION.get(r.satisfaction, r.satisfaction)}"
            reading += "（已解决）" if r.solved else "（未解决）"
            reading += "；未找到唯一待评价工单" if len(candidates) != 1 else ""
        out.append(QueuedRow(r.id, mask_phone(r.phone) or "", r.text, r.received_at, reading,
                             candidates))  # fmt: skip
    return out


def queued_count(*, db_session: Session) -> int:
    return (
        db_session.scalar(
            select(func.count()).select_from(SmsReply).where(SmsReply.status == "queued")
        )
        or 0
    )


def _queued(reply_id: int, *, db_session: Session) -> SmsReply:
    row = db_session.get(SmsReply, reply_id)
    if row is None:
        raise NotFound("短信回复不存在 / no such reply")
    if row.status != "queued":
        raise Conflict("该短信回复已处理 / the reply was handled already")
    return row


def link_reply(
    reply_id: int, number: str, *, solved: bool, satisfaction: str, actor: Principal,
    db_session: Session, now: datetime,
) -> Ticket:  # fmt: skip
    """The agent links a queued reply to an order: its callback (`evaluate`, reached) with the
    rating the agent read from the reply."""
    row = _queued(reply_id, db_session=db_session)
    ticket = db_session.scalar(select(Ticket).where(Ticket.number == number.strip()))
    if ticket is None:
        raise Invalid("请选择或填写要关联的工单编号 / choose the order", field="number")
    note = f"短信回复：{row.text}"[:2000]
    data = {"reached": True, "solved": solved, "satisfaction": satisfaction, "note": note}
    take_action(ticket.id, "evaluate", data, actor=actor, db_session=db_session, now=now)
    row.status, row.ticket_id = "linked", ticket.id
    row.handled_by_id, row.handled_at = actor.user_id, now
    return ticket


def mark_handled(
    reply_id: int, note: str, *, actor: Principal, db_session: Session, now: datetime
) -> None:
    row = _queued(reply_id, db_session=db_session)
    row.status = "handled"
    row.handled_by_id, row.handled_at = actor.user_id, now
    row.handled_note = note.strip()[:500] or None
