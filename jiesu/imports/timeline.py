"""The timeline of an imported order: its ticket row, assignments and events. Pure.

An old system's row says how an order ended (its status), not each step; the timeline is made
to be one the lifecycle (`jiesu/tickets/lifecycle.py`) allows, step by step, so every reader —
the ticket page, the deadlines, the assessment — reads an imported order like any other:

- closed / evaluated / audited / replied / accepted / dispatched: receive → dispatch (the
  lead) → accept → contact → reply → audit (passed) → evaluate → [reopen → accept … for each
  re-dispatch round] → close, cut where the status says the order stood;
- answered: receive → answer → close; transferred: receive → transfer → close; rejected:
  receive → reject → close; received: receive alone.

Times the file gives are used (receive = created_at, the last reply = replied_at, close =
closed_at); the steps between are one minute apart, never before the step they follow. Events
are the system's (no actor), acting for the service centre or the lead unit. Without a
satisfaction in the file the evaluation is recorded as not reached (历史导入：无回访记录): it
counts as a callback but in neither the resolution nor the satisfaction rate. A reopen beyond
the lifecycle's last round escalates to the level above, as a live reopen would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

MAX_ROUNDS = 3  # jiesu.tickets.lifecycle.MAX_ROUNDS (checked by the tests)
STEP = timedelta(minutes=1)
HANDLED = ("dispatched", "accepted", "replied", "audited", "evaluated", "closed")
DEPTH = {s: i for i, s in enumerate(HANDLED)}
NO_CALLBACK = "历史导入：无回访记录"


@dataclass(frozen=True)
class UnitRef:
    id: int
    code: str
    kind: str
    parent_id: int | None


@dataclass
class City:
    """What the timelines need about the city, as plain values."""

    centre_id: int
    units: Mapping[int, UnitRef]
    escalation_unit: str | None  # the pack's escalation unit code
    unit_by_code: Mapping[str, int]
    due: Callable[[datetime, str | None], datetime | None]  # complete due of a round


@dataclass
class Built:
    ticket: dict[str, Any]
    assignments: list[dict[str, Any]]
    # the event table's columns in order (id and ticket id to fill), aware times, data a dict
    events: list[list[Any]]


def level_above(city: City, unit_id: int) -> int | None:
    """lifecycle.level_above on plain values: the parent, or the escalation unit above a unit
    under the city, or None for the escalation unit itself."""
    unit = city.units[unit_id]
    parent = city.units.get(unit.parent_id) if unit.parent_id else None
    if parent is not None and parent.kind != "city":
        return parent.id
    top = city.escalation_unit
    if top and top != unit.code and top in city.unit_by_code:
        return city.unit_by_code[top]
    return None


class _Walk:
    def __init__(self, city: City, ticket: dict[str, Any], source: str, external_id: str) -> None:
        self.city, self.ticket = city, ticket
        self.events: list[list[Any]] = []
        self.assignments: list[dict[str, Any]] = []
        self.state = "received"
        self.at: datetime = ticket["created_at"]
        self.source, self.external_id = source, external_id

    def ev(self, action: str, unit: int, after: str, *, at: datetime | None = None,
           note: str | None = None, data: dict[str, Any] | None = None) -> None:  # fmt: skip
        when = self.at + STEP if at is None or at <= self.at else at
        if not self.events:
            when = self.at
        self.events.append([
            None, None, len(self.events) + 1, action, when, None, unit,
            None if action == "receive" else self.state, after, note, data or {},
        ])  # fmt: skip
        self.state, self.at = after, when
        self.ticket["status"], self.ticket["updated_at"] = after, when

    def assign(self, unit_id: int, round_: int) -> dict[str, Any]:
        a = {"id": None, "ticket_id": None, "unit_id": unit_id, "role": "lead", "round": round_,
             "active": True, "dispatched_at": self.at, "accepted_at": None,
             "contacted_at": None, "replied_at": None, "ended_at": None,
             "end_reason": None}  # fmt: skip
        self.assignments.append(a)
        self.ticket["lead_unit_id"] = unit_id
        return a

    def end(self, a: dict[str, Any], reason: str) -> None:
        a["active"], a["ended_at"], a["end_reason"] = False, self.at, reason


def build(values: Mapping[str, Any], lead_id: int, number: str, tier: str | None,
          city: City, *, source: str, external_id: str) -> Built:  # fmt: skip
    """The ticket, assignments and events of one converted row (`mapping.Row.values`)."""
    centre = city.centre_id
    created: datetime = values["created_at"]
    ticket: dict[str, Any] = {
        "id": None, "number": number, "channel": values.get("channel") or "import",
        "request_type": values.get("request_type"), "category_id": values.get("category"),
        "title": values["title"], "content": values["content"],
        "requester_name": values.get("requester_name"),
        "requester_phone": values.get("requester_phone"), "requester_confidential": False,
        "address": values.get("address"), "lat": None, "lng": None,
        "district_id": values.get("district"), "street_id": values.get("street"),
        "status": "received", "tier": tier, "urgent": tier == "T2h", "lead_unit_id": None,
        "round": 1, "result": None, "solved": None, "satisfaction": None, "master_id": None,
        "created_by_id": None, "created_at": created, "updated_at": created, "closed_at": None,
        "due_at": None, "version": 1, "tracking_hash": None,
    }  # fmt: skip
    w = _Walk(city, ticket, source, external_id)
    w.ev("receive", centre, "received", at=created, note="历史工单导入",
         data={"channel": ticket["channel"], "source": source, "external_id": external_id})  # fmt: skip
    status = values.get("status") or "closed"
    reply = values.get("reply")
    closed_at = values.get("closed_at")
    if status == "answered":
        w.ev("answer", centre, "answered", at=values.get("replied_at"),
             data={"answer": reply or "（历史导入：无答复内容）", "callback": False})  # fmt: skip
    elif status == "transferred":
        to = values["transfer_to"]
        w.ev("transfer", centre, "transferred", note=f"已转{to}", data={"to": to})
    elif status == "rejected":
        w.ev(
            "reject",
            centre,
            "rejected",
            data={"reason": values["reject_reason"], "channel_advice": reply or "已告知法定途径"},
        )
    elif status in HANDLED:
        _handle(w, values, lead_id, status)
    if status in ("answered", "transferred", "rejected", "closed"):
        w.ev("close", centre, "closed", at=closed_at)
        ticket["closed_at"] = w.at
    ticket["version"] = len(w.events)
    return Built(ticket, w.assignments, w.events)


def _handle(w: _Walk, values: Mapping[str, Any], lead: int, status: str) -> None:
    city, ticket, centre = w.city, w.ticket, w.city.centre_id
    depth = DEPTH[status]
    rounds = 1 + int(values.get("reopens") or 0)
    code = city.units[lead].code
    w.ev("dispatch", centre, "dispatched",
         data={"lead": code, "co_handlers": [], "round": 1})  # fmt: skip
    due = city.due(w.at, ticket["tier"])
    if due is not None:
        w.events[-1][-1]["due_at"] = due.isoformat()
    ticket["due_at"] = due
    a = w.assign(lead, 1)
    result = values.get("result") or "solved"
    for round_ in range(1, rounds + 1):
        last = round_ == rounds
        if round_ > 1:
            before_lead = a["unit_id"]
            w.ev("reopen", centre, "dispatched", note=f"历史数据：第 {round_ - 1} 次重办",
                 data={"round": round_})  # fmt: skip
            w.end(a, "reopened")
            ticket["round"] = round_
            ticket["result"] = ticket["solved"] = ticket["satisfaction"] = None
            above = level_above(city, before_lead) if round_ > MAX_ROUNDS else None
            if above is not None:
                moved = {"from": city.units[before_lead].code, "to": city.units[above].code}
                w.events[-1][-1]["escalated"] = moved
                w.ev("escalate", centre, "dispatched",
                     note=f"重办已满 {round_ - 1} 轮，自动提级", data=moved)  # fmt: skip
                a = w.assign(above, round_)
            else:
                a = w.assign(before_lead, round_)
            ticket["due_at"] = city.due(w.at, ticket["tier"])
        if depth < DEPTH["accepted"] and last:
            return
        unit = a["unit_id"]
        w.ev("accept", unit, "accepted")
        a["accepted_at"] = w.at
        w.ev("contact", unit, "accepted", note="历史数据：已联系诉求人")
        a["contacted_at"] = w.at
        if depth < DEPTH["replied"] and last:
            return
        content = reply_text(values.get("reply")) if last else "（历史导入：本轮答复未记录）"
        data: dict[str, Any] = {"result": result if last else "partly_solved", "content": content}
        if data["result"] == "not_solvable":
            data["reason"] = "policy"
        w.ev("reply", unit, "replied", at=values.get("replied_at") if last else None, data=data)
        a["replied_at"] = w.at
        ticket["result"] = data["result"]
        if depth < DEPTH["audited"] and last:
            return
        w.ev("audit", centre, "audited", data={"passed": True})
        if depth < DEPTH["evaluated"] and last:
            return
        level = values.get("satisfaction") if last else None
        if level:
            solved = values.get("solved")
            if solved is None:
                solved = level not in ("dissatisfied", "very_dissatisfied")
            w.ev("evaluate", centre, "evaluated",
                 data={"reached": True, "solved": solved, "satisfaction": level})  # fmt: skip
            ticket["solved"], ticket["satisfaction"] = solved, level
        else:
            w.ev("evaluate", centre, "evaluated", note=NO_CALLBACK, data={"reached": False})


def reply_text(reply: str | None) -> str:
    """The file's reply as written (history is not edited), or a placeholder when it has none."""
    return reply or "（历史导入：无答复内容）"
