"""Taking an action on a ticket: load it, ask the lifecycle table, apply the transition, then
its effects (timers, rollups, notices: `flows.after_transition`).

`take_action` runs inside the caller's unit of work: the ticket row, its assignments and the
new event change together or not at all. The facts the rules need (who leads, is a return
waiting, is the clock suspended …) are derived from the assignments and the timeline, never
stored twice. Concurrent actions on one ticket are serialised by the ticket's `version`
(optimistic lock): the loser gets a 409, never a silent overwrite.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from jiesu.access.policy import Principal
from jiesu.assessment.models import TicketLink
from jiesu.db.base import utcnow
from jiesu.errors import Conflict, Invalid
from jiesu.knowledge import uses as knowledge_uses
from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.taxonomy.models import Category
from jiesu.taxonomy.service import pack_settings
from jiesu.tickets import flows
from jiesu.tickets.flows import final_answer, notices_for
from jiesu.tickets.lifecycle import (
    Actor,
    TicketFacts,
    Transition,
    UnitRef,
    decide,
    escalation_refusal,
    level_above,
)
from jiesu.tickets.models import Assignment, Event, Ticket
from jiesu.tickets.service import get_ticket, ticket_deadlines, tier_for
from jiesu.timelimits.deadlines import Deadline

# The event pairs whose latest member says whether something is waiting.
PENDING = {
    "return_pending": ("request_return", ("review_return", "dispatch", "escalate")),
    "extension_pending": ("request_extension", ("review_extension",)),
    "suspended": ("suspend", ("resume",)),
    "promise_pending": ("accept_with_missing", ("fulfil_missing",)),
    "exemption_pending": ("request_exemption", ("review_exemption",)),
}


def facts_of(ticket: Ticket) -> TicketFacts:
    active = [a for a in ticket.assignments if a.active]
    lead = next((a for a in active if a.role == "lead"), None)
    flags = {}
    for flag, (opens, closes) in PENDING.items():
        last = next(
            (e.action for e in reversed(ticket.events) if e.action in (opens, *closes)), None
        )
        flags[flag] = last == opens
    review = next((e for e in reversed(ticket.events) if e.action == "review_exemption"), None)
    return TicketFacts(
        status=ticket.status,
        exempt=review is not None and bool(review.data.get("approved")),
        round=ticket.round,
        solved=ticket.solved,
        satisfaction=ticket.satisfaction,
        lead=lead.unit.code if lead else None,
        lead_path=lead.unit.path if lead else None,
        co_handlers=frozenset(a.unit.code for a in active if a.role == "co_handler"),
        summoned_pending=frozenset(
            a.unit.code for a in active if a.role == "summoned" and a.replied_at is None
        ),
        contacted=lead is not None and lead.contacted_at is not None,
        accepted=frozenset(
            a.unit.code for a in active if a.accepted_at is not None and a.role != "summoned"
        ),
        **flags,
    )


def actor_of(principal: Principal, *, db_session: Session) -> Actor:
    code = db_session.scalar(select(Unit.code).where(Unit.id == principal.unit_id))
    assert code is not None
    return Actor(
        user_id=principal.user_id,
        role=principal.role,
        unit=code,
        unit_path=principal.unit_path,
        is_centre=principal.is_service_centre,
    )


def take_action(
    ticket_id: int,
    name: str,
    data: dict[str, Any],
    *,
    actor: Principal,
    db_session: Session,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> tuple[Ticket, Event, list[Deadline]]:
    """Check and apply one action; the ticket, its new event and its deadlines now.

    Raises a lifecycle refusal (403/404/409/422) when the table does not allow it."""
    now = now or utcnow()
    ticket = get_ticket(ticket_id, actor=actor, db_session=db_session)
    if expected_version is not None and expected_version != ticket.version:
        raise Conflict(
            f"工单已被他人更新（版本 {ticket.version}，你的版本 {expected_version}），请刷新后重试"
            " / the ticket changed since you loaded it"
        )
    who = actor_of(actor, db_session=db_session)
    transition = decide(name, facts_of(ticket), who, data)
    before, previous_lead = ticket.status, ticket.lead_unit_id
    with db_session.no_autoflush:  # one action, one write of the ticket: one version step
        event_data = _apply(ticket, transition, who, db_session=db_session, now=now)
        event = _append(ticket, transition.action, before, transition.after, actor, now,
                        note=transition.data.get("note"), data=event_data)  # fmt: skip
        if "escalated" in event_data:  # a reopen beyond the last round goes to the level above
            _append(ticket, "escalate", ticket.status, "dispatched", None, now,
                    note=f"重办已满 {ticket.round - 1} 轮，自动提级", data=event_data["escalated"])  # fmt: skip
        current = ticket_deadlines(
            ticket, db_session=db_session, now=now, extra_units={actor.unit_id: who.unit}
        )
        complete = next((d for d in current if d.phase == "complete"), None)
        ticket.due_at = complete.due if complete else None
    db_session.flush()  # the version check happens here: a concurrent winner makes this fail
    # Timers, rollups, notices (flows.py); then what the change sets off on other orders.
    follow_ups = flows.after_transition(ticket, transition, event, current,
                                        previous_lead=previous_lead, db_session=db_session,
                                        now=now)  # fmt: skip
    for f in follow_ups:
        take_action(f.ticket_id, f.action, f.data, actor=actor, db_session=db_session, now=now)
    return ticket, event, current


def _append(
    ticket: Ticket, action: str, before: str, after: str, actor: Principal | None,
    at: datetime, *, note: str | None, data: dict[str, Any],
) -> Event:  # fmt: skip
    event = Event(
        ticket_id=ticket.id,
        seq=(ticket.events[-1].seq if ticket.events else 0) + 1,
        action=action,
        at=at,
        actor_id=actor.user_id if actor else None,
        actor_unit_id=actor.unit_id if actor else None,
        state_before=before,
        state_after=after,
        note=note,
        data=data,
    )
    ticket.events.append(event)
    ticket.status, ticket.updated_at = after, at
    return event


def _unit(code: str, field: str, *, db_session: Session) -> Unit:
    unit = db_session.scalar(select(Unit).where(Unit.code == code, Unit.active))
    if unit is None:
        raise Invalid(f"未知的单位 {code} / unknown unit", field=field)
    if unit.kind == "city":
        raise Invalid(f"{unit.name} 不是承办单位 / not a handling unit", field=field)
    if unit.function == "service_centre":  # it dispatches and checks; it never handles
        raise Invalid(
            f"{unit.name} 是热线中心，不承办工单 / the service centre does not handle orders",
            field=field,
        )
    return unit


def _assign(ticket: Ticket, unit: Unit, role: str, now: datetime) -> Assignment:
    assignment = Assignment(
        ticket_id=ticket.id, unit_id=unit.id, role=role, round=ticket.round, active=True,
        dispatched_at=now,
    )  # fmt: skip
    assignment.unit = unit
    ticket.assignments.append(assignment)
    return assignment


def _active(ticket: Ticket, unit_code: str, roles: tuple[str, ...]) -> Assignment | None:
    return next(
        (
            a
            for a in ticket.assignments
            if a.active and a.role in roles and a.unit.code == unit_code
        ),
        None,
    )


def _end(assignment: Assignment, reason: str, now: datetime) -> None:
    assignment.active, assignment.ended_at, assignment.end_reason = False, now, reason


def _end_handling(ticket: Ticket, reason: str, now: datetime) -> None:
    for a in ticket.assignments:
        if a.active:
            _end(a, reason, now)
    ticket.lead_unit_id = None


def _ref(unit: Unit) -> UnitRef:
    return UnitRef(unit.code, unit.kind, unit.path)


def _escalate(
    ticket: Ticket, to: str | None, lead: Assignment | None, *, db_session: Session,
    now: datetime,
) -> dict[str, Any] | None:  # fmt: skip
    """Hand the ticket to `to` (above `lead`), or to the level above `lead` (street → district;
    a unit under the city → the pack's escalation unit). None when nothing is above."""
    top = pack_settings(db_session=db_session).get("escalation_unit")
    top = str(top) if top is not None else None
    if to:
        target = _unit(to, "to", db_session=db_session)
        why = escalation_refusal(_ref(lead.unit), _ref(target), top) if lead else None
        if why:
            raise Invalid(why, field="to")
    else:
        assert lead is not None  # without a lead (pending_dispatch) the table requires `to`
        parent = lead.unit.parent
        above = level_above(_ref(lead.unit), _ref(parent) if parent else None, top)
        if above is None:
            return None
        target = _unit(above, "to", db_session=db_session)
    _end_handling(ticket, "escalated", now)
    _assign(ticket, target, "lead", now)
    ticket.lead_unit_id = target.id
    return {"from": lead.unit.code if lead else None, "to": target.code}


def _root_master(ticket: Ticket, number: str, *, db_session: Session) -> Ticket:
    """The order `number` names, or, when that one is merged itself, the order at the end of
    its chain: a repeat is always attached to an order that can still close."""
    master = db_session.scalar(select(Ticket).where(Ticket.number == number))
    if master is not None and master.id == ticket.id:
        raise Invalid("不能并入本工单自己 / an order cannot be merged into itself", field="master")
    seen: set[int] = set()
    while master is not None and master.status == "merged" and master.master_id is not None:
        if master.id in seen:  # a cycle cannot be made through this function; old data might
            break
        seen.add(master.id)
        master = db_session.get(Ticket, master.master_id)
    if master is None:
        raise Invalid(f"主工单 {number} 不存在 / no such master ticket", field="master")
    if master.id == ticket.id:
        raise Invalid(
            f"工单 {number} 已并入本工单，不能反向并单 / {number} is merged into this order",
            field="master",
        )
    if master.status in ("merged", "closed"):
        raise Conflict(
            f"主工单 {master.number} 已{'并单' if master.status == 'merged' else '关闭'} "
            f"/ the master is {master.status}"
        )
    return master


def _close_merged(ticket: Ticket, *, db_session: Session, now: datetime) -> int:
    """Close every order merged into `ticket`, and those merged into them, each with its event
    and its notice carrying the master's answer; how many were closed."""
    answer = final_answer(ticket)
    numbers = {ticket.id: ticket.number}
    frontier, closed = [ticket.id], 0
    while frontier:
        repeats = db_session.scalars(
            select(Ticket).where(Ticket.master_id.in_(frontier), Ticket.status == "merged")
            .order_by(Ticket.id).options(selectinload(Ticket.events))
        ).all()  # fmt: skip
        for repeat in repeats:
            assert repeat.master_id is not None
            data = {"master": ticket.number}
            if repeat.master_id != ticket.id:  # merged into an order merged into this one
                data["via"] = numbers[repeat.master_id]
            event = _append(repeat, "close", "merged", "closed", None, now,
                            note=f"随主工单 {ticket.number} 办结", data=data)  # fmt: skip
            repeat.closed_at = now
            numbers[repeat.id] = repeat.number
            # The master's reply reaches every merged requester.
            notices_for(repeat, event, ("requester",), previous_lead=None,
                        db_session=db_session, now=now, reply=answer)  # fmt: skip
        closed += len(repeats)
        frontier = [r.id for r in repeats]
    return closed


def _apply(
    ticket: Ticket, t: Transition, who: Actor, *, db_session: Session, now: datetime
) -> dict[str, Any]:
    """The transition's effects on the ticket and its assignments; returns the event's data."""
    data = {k: v for k, v in t.data.items() if k != "note"}
    name = t.action
    if name == "answer" and t.data.get("entry"):
        # Answered with a knowledge base entry: its answering version today, in the city's
        # calendar (422 naming `entry` when the code answers nothing today).
        entry_id, number = knowledge_uses.resolve_entry(
            t.data["entry"], db_session=db_session, today=now.astimezone(city_tz()).date()
        )
        data["entry_version"], data["entry_id"] = number, entry_id
    elif name == "dispatch":
        if t.data["lead"] in t.data.get("co_handlers", []):
            raise Invalid(
                "主办单位不能同时是协办单位 / the lead cannot co-handle", field="co_handlers"
            )
        lead = _unit(t.data["lead"], "lead", db_session=db_session)
        _assign(ticket, lead, "lead", now)
        ticket.lead_unit_id = lead.id
        for code in t.data.get("co_handlers", []):
            _assign(ticket, _unit(code, "co_handlers", db_session=db_session), "co_handler", now)
    elif name == "accept":
        assignment = _active(ticket, who.unit, ("lead", "co_handler"))
        assert assignment is not None
        assignment.accepted_at = now
    elif name == "contact":
        lead = _active(ticket, who.unit, ("lead",))
        assert lead is not None
        if lead.contacted_at is None:  # the first contact is the response
            lead.contacted_at = now
            data["first"] = True
    elif name == "review_extension" and t.data["approved"] and not t.data.get("days"):
        asked = next(e for e in reversed(ticket.events) if e.action == "request_extension")
        data["days"] = asked.data["days"]  # approved as asked
    elif name == "review_return" and t.data["approved"]:
        _end_handling(ticket, "returned", now)
    elif name == "whistle":
        units = [_unit(code, "units", db_session=db_session) for code in t.data["units"]]
        for unit in units:
            if _active(ticket, unit.code, ("lead", "co_handler", "summoned")):
                raise Conflict(f"{unit.name} 已在办理此工单 / already on this ticket")
            _assign(ticket, unit, "summoned", now)
    elif name == "report":
        summoned = _active(ticket, who.unit, ("summoned",))
        assert summoned is not None
        summoned.accepted_at = summoned.replied_at = now
    elif name == "reply":
        lead = _active(ticket, who.unit, ("lead",))
        assert lead is not None
        lead.replied_at = now
        ticket.result = t.data["result"]
    elif name == "audit" and not t.data["passed"]:
        for a in ticket.assignments:
            if a.active and a.role == "lead":
                a.replied_at = None
        ticket.result = None
    elif name == "evaluate":
        ticket.solved = t.data.get("solved") if t.data["reached"] else None
        ticket.satisfaction = t.data.get("satisfaction") if t.data["reached"] else None
    elif name == "rate":  # the portal's evaluation: the citizen was, by definition, reached
        ticket.solved, ticket.satisfaction = t.data["solved"], t.data["satisfaction"]
        data["reached"] = True
    elif name == "reopen":
        lead = next((a for a in ticket.assignments if a.active and a.role == "lead"), None)
        last = lead or next((a for a in reversed(ticket.assignments) if a.role == "lead"), None)
        _end_handling(ticket, "reopened", now)
        ticket.round = t.round
        ticket.result = ticket.solved = ticket.satisfaction = None
        data["round"] = t.round
        escalated = None
        if t.escalates and last is not None:
            escalated = _escalate(ticket, None, last, db_session=db_session, now=now)
        if escalated is not None:
            data["escalated"] = escalated
        elif last is not None:  # another round, or nothing above the unit: the same lead
            _assign(ticket, last.unit, "lead", now)
            ticket.lead_unit_id = last.unit_id
    elif name == "escalate":
        lead = next((a for a in ticket.assignments if a.active and a.role == "lead"), None)
        moved = _escalate(ticket, t.data.get("to"), lead, db_session=db_session, now=now)
        if moved is None:
            assert lead is not None
            raise Invalid(
                f"{lead.unit.name} 之上没有可提级的单位，请指定提级至（to）"
                " / nothing is above the lead: name the unit (to)",
                field="to",
            )
        data.update(moved)
    elif name == "recategorize":
        category = db_session.scalar(
            select(Category).where(Category.code == t.data["category"], Category.active)
        )
        if category is None:
            raise Invalid(
                f"未知的事项分类 {t.data['category']} / unknown category", field="category"
            )
        data["from"] = ticket.category.code if ticket.category else None
        data["tier_from"] = ticket.tier
        ticket.category_id, ticket.category = category.id, category
        ticket.tier = tier_for(category, ticket.request_type, db_session=db_session)
        data["tier"] = ticket.tier
    elif name == "merge":
        master = _root_master(ticket, t.data["master"], db_session=db_session)
        ticket.master_id = master.id
        if master.number != t.data["master"]:  # the named order is merged: its root is the master
            data["via"], data["master"] = t.data["master"], master.number
        data["master_id"] = master.id
    elif name == "answer_by_task":
        task = db_session.scalar(select(Ticket).where(Ticket.number == t.data["task"]))
        linked = task is not None and db_session.scalar(
            select(TicketLink.linked_id).where(TicketLink.ticket_id == task.id,
                                        TicketLink.linked_id == ticket.id)
        )  # fmt: skip
        if task is None or task.channel != "proactive" or not linked:
            raise Invalid(f"工单 {t.data['task']} 不是关联本工单的主动治理任务 / not a proactive "
                          "task linked to this order", field="task")  # fmt: skip
        if task.status not in ("audited", "evaluated", "closed"):
            raise Conflict("主动治理任务的办理结果尚未审核 / the task's reply is not audited yet")
        data["task_id"] = task.id
        for a in ticket.assignments:
            if a.active and a.role == "lead":
                a.accepted_at = a.accepted_at or now
                a.replied_at = now
        ticket.result = t.data["result"]
    elif name == "close":
        ticket.closed_at = now
        data["merged_closed"] = _close_merged(ticket, db_session=db_session, now=now)
    return data
