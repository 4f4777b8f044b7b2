"""The call centre's queries and writes (keyword-only `db_session=`, never commits).

- `register`: an incoming call from the telephony, idempotent on its call id;
- `attach_recording`, `end`: what the telephony adds later (also after the order exists);
- `link`: an order taken from a call keeps it (console intake and API intake alike);
- `new_for_agent`: what an agent's open console pops (polled by the event stream);
- `caller_history`: the caller's earlier orders, open ones first, then the latest closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jiesu.access.policy import Principal, mask_phone
from jiesu.calls.models import Call
from jiesu.calls.shapes import CallIn, CallOut
from jiesu.errors import Conflict, Invalid, NotFound
from jiesu.org.models import User
from jiesu.settings import city_tz
from jiesu.tickets.models import Ticket
from jiesu.tickets.service import visible

# A call pops only while it is fresh: an agent who opens the console later, or whose stream
# reconnects after a long break, is not shown calls that ended long ago.
POP_WINDOW = timedelta(minutes=10)
# The caller's screen: every open order (newest first, at most this many) and the latest closed.
HISTORY_OPEN = 10
HISTORY_CLOSED = 5
# The caller's view of an order: these states are finished (answered on the call, transferred,
# refused, rated, merged into another, closed); every other state is still being handled.
FINISHED = frozenset({"answered", "transferred", "rejected", "evaluated", "merged", "closed"})


def _agent(username: str, *, db_session: Session) -> User:
    user = db_session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        raise Invalid(
            f"坐席「{username}」不是本系统的在用账号（按用户名匹配） / unknown agent {username!r}",
            field="agent",
        )
    return user


def register(data: CallIn, *, db_session: Session, now: datetime) -> tuple[Call, bool]:
    """(the call, whether it is new). The same call id again answers the stored call; the same
    id with another caller or agent is a conflict (the telephony reused an id)."""
    earlier = db_session.scalar(select(Call).where(Call.call_id == data.call_id))
    if earlier is not None:
        if earlier.caller != data.caller or earlier.agent != data.agent:
            raise Conflict(
                "此通话编号已登记为另一通来电（主叫或坐席不同） / this call id was already "
                "registered with another caller or agent",
                field="call_id",
            )
        return earlier, False
    agent = _agent(data.agent, db_session=db_session)
    call = Call(
        call_id=data.call_id, caller=data.caller, called=data.called, agent=data.agent,
        agent_id=agent.id, started_at=data.started_at or now, created_at=now,
    )  # fmt: skip
    db_session.add(call)
    db_session.flush()
    return call, True


def get_call(call_id: str, *, db_session: Session) -> Call:
    call = db_session.scalar(select(Call).where(Call.call_id == call_id))
    if call is None:
        raise NotFound("没有这个通话编号的来电 / no such call")
    return call


def attach_recording(call_id: str, url: str, *, db_session: Session) -> Call:
    """The recording's address; sent again, the newer address replaces the older."""
    call = get_call(call_id, db_session=db_session)
    call.recording_url = url
    return call


def end(call_id: str, ended_at: datetime, *, db_session: Session) -> Call:
    call = get_call(call_id, db_session=db_session)
    if call.ended_at is None:  # the first report of the hang-up stands (retries change nothing)
        call.ended_at = max(ended_at, call.started_at)
    return call


def link(call_id: str, ticket: Ticket, *, actor: Principal, db_session: Session) -> Call:
    """An order taken from a call keeps it. A call belongs to one order; an order may have
    several calls (the citizen calls again about it). The console passes the agent the call
    was routed to; the API passes whoever may take in phone requests."""
    call = db_session.scalar(select(Call).where(Call.call_id == call_id).with_for_update())
    if call is None:
        raise Invalid("没有这个通话编号的来电 / no such call", field="call_id")
    if actor.via == "session" and call.agent_id != actor.user_id and actor.role != "admin":
        raise Invalid(
            "这通来电不是转给您的 / this call was routed to another agent", field="call_id"
        )
    if call.ticket_id is not None and call.ticket_id != ticket.id:
        raise Conflict(
            "这通来电已建立过工单 / an order was already taken from this call", field="call_id"
        )
    call.ticket_id = ticket.id
    return call


def calls_of(ticket_id: int, *, db_session: Session) -> list[Call]:
    """The calls an order was taken from or talked about (来电记录), oldest first."""
    return list(
        db_session.scalars(select(Call).where(Call.ticket_id == ticket_id).order_by(Call.id))
    )


def latest_id(agent_id: int, *, db_session: Session) -> int:
    """The newest call addressed to this agent so far (0: none): a page rendered now pops only
    the calls after it."""
    return int(db_session.scalar(select(func.max(Call.id)).where(Call.agent_id == agent_id)) or 0)


def new_for_agent(
    agent_id: int, after: int, *, db_session: Session, now: datetime, limit: int = 5
) -> list[Call]:
    """Calls addressed to this agent after id `after`, fresh and not yet taken as an order
    (served by the index on agent_id, id)."""
    return list(
        db_session.scalars(
            select(Call)
            .where(
                Call.agent_id == agent_id,
                Call.id > after,
                Call.ticket_id.is_(None),
                Call.created_at >= now - POP_WINDOW,
            )
            .order_by(Call.id)
            .limit(limit)
        )
    )


def pending_for_agent(call_id: str, agent_id: int, *, db_session: Session) -> Call | None:
    """The call an intake page was opened for (`/console/intake?call=…`): only the agent's
    own, and only while no order has been taken from it."""
    return db_session.scalar(
        select(Call).where(
            Call.call_id == call_id, Call.agent_id == agent_id, Call.ticket_id.is_(None)
        )
    )


def caller_history(phone: str, *, actor: Principal, db_session: Session) -> list[Ticket]:
    """The caller's earlier orders the actor may see: open ones first (newest first), then the
    latest closed ones."""
    mine = visible(select(Ticket), actor).where(Ticket.requester_phone == phone)
    is_open = Ticket.status.not_in(sorted(FINISHED))
    open_rows = db_session.scalars(
        mine.where(is_open).order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(HISTORY_OPEN)
    ).all()
    closed_rows = db_session.scalars(
        mine.where(~is_open)
        .order_by(Ticket.created_at.desc(), Ticket.id.desc())
        .limit(HISTORY_CLOSED)
    ).all()
    return [*open_rows, *closed_rows]


@dataclass(frozen=True)
class HistoryRow:
    """One earlier order as the popped intake shows it (nothing personal in it)."""

    id: int
    number: str
    title: str
    status: str
    open: bool
    created_at: datetime


def history_rows(tickets: list[Ticket]) -> list[HistoryRow]:
    return [
        HistoryRow(t.id, t.number, t.title, t.status, t.status not in FINISHED, t.created_at)
        for t in tickets
    ]


def call_out(call: Call, reader: Principal, *, db_session: Session) -> CallOut:
    """The call as the API answers it: times in the city's zone, like the tickets."""
    zone = city_tz()
    number = (
        db_session.scalar(select(Ticket.number).where(Ticket.id == call.ticket_id))
        if call.ticket_id is not None
        else None
    )
    return CallOut(
        call_id=call.call_id,
        caller=call.caller if reader.is_service_centre else mask_phone(call.caller),
        called=call.called, agent=call.agent, started_at=call.started_at.astimezone(zone),
        ended_at=call.ended_at.astimezone(zone) if call.ended_at else None,
        ticket_id=call.ticket_id, ticket_number=number, recording_url=call.recording_url,
    )  # fmt: skip


__all__ = [
    "FINISHED",
    "POP_WINDOW",
    "HistoryRow",
    "attach_recording",
    "call_out",
    "caller_history",
    "calls_of",
    "end",
    "get_call",
    "history_rows",
    "latest_id",
    "link",
    "new_for_agent",
    "pending_for_agent",
    "register",
]
