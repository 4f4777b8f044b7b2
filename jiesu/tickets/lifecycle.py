"""The life of a work order (SPEC §3): every action of 接诉即办 as one table. Pure.

Read `ACTIONS` top to bottom and you have read the workflow: for each action, the states it
applies to, who may take it (role, and relation to the ticket's units), the fields it needs, the
state it leads to, and its effects (deadlines started, stopped, paused or moved; who is
notified). `decide()` checks one attempted action against the table and returns the
`Transition` the service layer then applies in one transaction: nothing here touches a
database. `docs/lifecycle.md` is generated from this table (`jiesu docs lifecycle`).

The checks run in a fixed order, each with its own answer: an unknown action (404), a role that
may never take it (403), a ticket outside the actor's part (403), the wrong state (409, saying
which states allow it), a missing or bad field (422, naming it; also a field that another field
makes required, such as the reason of a not-solvable reply), a guard such as "a return is
already waiting" (409).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from jiesu.errors import Conflict, Forbidden, Invalid, NotFound

# ---- states --------------------------------------------------------------------------------

STATES: dict[str, str] = {
    "received": "已受理",
    "answered": "直接答复",
    "transferred": "转警转急",
    "rejected": "不予受理",
    "pending_dispatch": "待派单",
    "dispatched": "已派单",
    "accepted": "已签收",
    "replied": "已办结反馈",
    "audited": "已审核",
    "evaluated": "已评价",
    "merged": "已并单",
    "closed": "已关闭",
}
# A ticket in hand: a unit or the centre still owes the citizen something.
OPEN = frozenset({"received", "pending_dispatch", "dispatched", "accepted", "replied", "audited"})
IN_UNIT = frozenset({"dispatched", "accepted"})  # the clock runs against the lead unit

REJECT_REASONS = {
    "litigation": "属诉讼范围",
    "arbitration": "属仲裁范围",
    "discipline": "属纪检监察范围",
    "disclosure": "属政府信息公开申请",
    "petition": "已进入信访程序",
    "public_order": "违反公序良俗",
    "out_of_scope": "不属于政府职责范围",
}
TRANSFER_TO = {"110": "公安", "119": "消防", "120": "急救", "122": "交警"}
REPLY_RESULTS = {"solved": "已解决", "partly_solved": "部分解决", "not_solvable": "无法解决"}
NOT_SOLVABLE_REASONS = {
    "policy": "政策法规不允许",
    "coordination": "需超出本单位的协调",
    "unreasonable": "诉求不合理且已解释",
}
SATISFACTION = {
    "very_satisfied": "非常满意",
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "dissatisfied": "不满意",
    "very_dissatisfied": "非常不满意",
}
WINDOW_CAUSES = {
    "policy": "政策法规不允许",
    "coordination": "需多方协调",
    "misconduct": "工作人员吃拿卡要",  # goes to the discipline/supervision unit
}
# 考核剔除: reasons an order may be taken out of a unit's assessment, with the centre's approval.
EXEMPTION_REASONS = {
    "force_majeure": "不可抗力",
    "unreasonable": "诉求明显不合理",
    "malicious": "恶意或重复骚扰诉求",
    "beyond_powers": "超出本市事权",
    "policy": "现行政策法规无法解决",
    "misdispatch": "非本单位职责且已如实反馈",
}
# The states in which an order's assessment can still be questioned (考核剔除): from dispatch on,
# closed included — the monthly figures are settled after the order is.
ASSESSED = frozenset({"dispatched", "accepted", "replied", "audited", "evaluated", "closed"})
MAX_ROUNDS = 3  # a reopen beyond the third round escalates
# How a citizen rated (短信回访): on the portal with the tracking code, by the signed link in
# the 回访邀请 SMS, or by answering that SMS (jiesu/callbacks)
RATE_VIA = {"portal": "市民门户", "link": "短信链接", "sms": "短信回复"}
# The levels of an evaluation that count as satisfied: a solved order rated so is not reopened
# unless a supervisor gives the reason.
SATISFIED = frozenset({"very_satisfied", "satisfied", "basically_satisfied"})


# ---- who -----------------------------------------------------------------------------------


class Relation(StrEnum):
    """How the actor stands to the ticket (checked after the role)."""

    centre = "centre"  # the actor's unit is the service centre
    lead = "lead"  # the actor's unit leads the ticket (主办)
    party = "party"  # leads or co-handles it (主办/协办)
    summoned = "summoned"  # was summoned by a whistle and has not reported yet (吹哨报到)
    lead_or_centre = "lead_or_centre"
    over_lead = "over_lead"  # the centre, or a unit above the lead (a district over its street)


RELATION_NAMES = {
    Relation.centre: "热线中心",
    Relation.lead: "主办单位",
    Relation.party: "主办或协办单位",
    Relation.summoned: "被吹哨单位",
    Relation.lead_or_centre: "主办单位或热线中心",
    Relation.over_lead: "热线中心或主办单位的上级",
}

UNIT_ROLES = frozenset({"handler", "unit_admin"})
SUPERVISORS = frozenset({"supervisor", "admin"})


@dataclass(frozen=True)
class Actor:
    user_id: int
    role: str
    unit: str  # unit code
    unit_path: str  # materialised path of ids, "/1/17/254/"
    is_centre: bool


@dataclass(frozen=True)
class TicketFacts:
    """What the rules need to know about a ticket, as plain values."""

    status: str
    round: int = 1
    lead: str | None = None  # unit code
    lead_path: str | None = None
    co_handlers: frozenset[str] = frozenset()
    summoned_pending: frozenset[str] = frozenset()  # summoned, not yet reported
    return_pending: bool = False
    extension_pending: bool = False
    suspended: bool = False
    contacted: bool = False  # the lead has contacted the requester in this round
    accepted: frozenset[str] = frozenset()  # units that signed in this round
    promise_pending: bool = False  # 容缺: a missing document is still owed
    master: bool = False  # other tickets are merged into this one
    exemption_pending: bool = False  # an exemption request awaits the centre's review
    exempt: bool = False  # an exemption (考核剔除) has been approved
    solved: bool | None = None  # the last evaluation of this round (None: none, or unreached)
    satisfaction: str | None = None

    @property
    def solved_and_satisfied(self) -> bool:
        return self.solved is True and self.satisfaction in SATISFIED


# ---- fields --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    kind: str  # text | bool | choice | unit | units | int | ticket | entry (a knowledge base code)
    required: bool = True
    choices: Mapping[str, str] | None = None
    min_length: int = 0
    max_length: int = 2000
    low: int | None = None
    high: int | None = None

    def describe(self) -> str:
        text = f"`{self.name}` {self.label}"
        if self.choices:
            text += "（" + " / ".join(f"{k} {v}" for k, v in self.choices.items()) + "）"
        return text if self.required else text + "，可选"


def note(required: bool = False, min_length: int = 0) -> Field:
    return Field("note", "说明", "text", required=required, min_length=min_length)


@dataclass(frozen=True)
class FieldRule:
    """A field that another field (or the ticket's state) makes required, or contradicts.

    Checked with the fields, after each has been validated alone: a broken rule is a 422 naming
    `field`, before any guard (409) runs."""

    field: str
    text: str  # how the rule reads in docs/lifecycle.md
    broken: Callable[[TicketFacts, dict[str, Any]], str | None]  # why not, or None


# ---- actions -------------------------------------------------------------------------------

Next = str | Callable[[TicketFacts, dict[str, Any], "Actor"], str]
Guard = Callable[[TicketFacts, dict[str, Any], "Actor"], str | None]  # why not, or None


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    states: frozenset[str]
    roles: frozenset[str]
    relation: Relation
    next: Next  # the state after; "=" keeps the state
    fields: tuple[Field, ...] = ()
    guards: tuple[Guard, ...] = ()
    effects: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()
    why: str = ""  # the rule in one sentence, for docs/lifecycle.md
    next_label: str = ""  # how `next` reads when it is a function
    field_rules: tuple[FieldRule, ...] = ()  # fields required or refused by other fields


def _not_yet_accepted(f: TicketFacts, _d: dict[str, Any], a: Actor) -> str | None:
    return "本单位已签收 / this unit has signed already" if a.unit in f.accepted else None


def _promise_pending(f: TicketFacts, _d: dict[str, Any], _a: Actor) -> str | None:
    return None if f.promise_pending else "没有待补交的材料 / no missing document is owed"


def _no_promise_pending(f: TicketFacts, _d: dict[str, Any], _a: Actor) -> str | None:
    return "已有待补交的材料 / a missing document is already owed" if f.promise_pending else None


def _no_return_pending(f: TicketFacts, _d: dict[str, Any], _a: Actor) -> str | None:
    return "已有退单申请待审核 / a return request is already waiting" if f.return_pending else None


def _return_pending(f: TicketFacts, _d: dict[str, Any], _a: Actor) -> str | None:
    return None if f.return_pending else "没有待审核的退单申请 / no return request is waiting"


def _no_extension_pending(f: TicketFacts, _d: dict[str, Any], _a: Actor) -> str | None:
    if f.extension_pending:
        return "已有延期申请待审核 / an extension request is already waiting"
    return None


def _extension_pending(f: TicketFacts, _d: dict[str, Any], _a: Actor) -> str | None:
    return None if f.extension_pending else "没有待审核的延期申请 / no extension request is waiting"


def _not_suspended(f: TicketFacts, _d: dict[str, Any], _a: Actor) -> str | None:
    return (
        "工单已挂起，请先恢复 / the ticket is suspended: resume it first" if f.suspended else None
    )


def _suspended(f: TicketFacts, _d: dict[str, Any], _a: Actor) -> str | None:
    return None if f.suspended else "工单未挂起 / the ticket is not suspended"


def _all_reported(f: TicketFacts, _d: dict[str, Any], _a: Actor) -> str | None:
    if f.summoned_pending:
        waiting = ", ".join(sorted(f.summoned_pending))
        return f"被吹哨单位尚未报到：{waiting} / summoned units have not reported: {waiting}"
    return None


def _contacted(f: TicketFacts, _d: dict[str, Any], _a: Actor) -> str | None:
    if not f.contacted:
        return "请先联系诉求人 / contact the requester before replying"
    return None


def _reason_matches_result(_f: TicketFacts, d: dict[str, Any]) -> str | None:
    if d.get("result") == "not_solvable":
        if not d.get("reason"):
            return (
                "请填写无法解决原因：办理结果为无法解决时必填 "
                "/ reason is required when result is not_solvable"
            )
    elif d.get("reason"):
        result = d.get("result")
        return (
            f"无法解决原因只用于办理结果为无法解决的情况，与所选办理结果矛盾 "
            f"/ reason contradicts result {result}"
        )
    return None


def _solved_when_reached(_f: TicketFacts, d: dict[str, Any]) -> str | None:
    if d.get("reached") and d.get("solved") is None:
        return "请选择是否解决：接通回访须记录 / solved is required when reached is true"
    return None


def _satisfaction_when_reached(_f: TicketFacts, d: dict[str, Any]) -> str | None:
    if d.get("reached") and d.get("satisfaction") is None:
        return "请选择满意度：接通回访须记录 / satisfaction is required when reached is true"
    return None


def _note_when_sent_back(_f: TicketFacts, d: dict[str, Any]) -> str | None:
    if d.get("passed") is False and not d.get("note"):
        return "请填写说明：审核退回须说明原因 / note is required when passed is false"
    return None


def _to_when_nobody_leads(f: TicketFacts, d: dict[str, Any]) -> str | None:
    if f.status == "pending_dispatch" and not d.get("to"):
        return (
            "请选择提级至：待派单的工单没有主办单位，提级须指定单位 "
            "/ to is required: a pending_dispatch order has no lead to escalate from"
        )
    return None


def _reason_when_satisfied(f: TicketFacts, d: dict[str, Any]) -> str | None:
    if f.solved_and_satisfied and not d.get("reason"):
        return (
            "请填写重办理由：诉求人评价已解决且满意，重办须由督办员说明理由 "
            "/ reason is required to reopen an order rated solved and satisfied"
        )
    return None


def _supervisor_when_satisfied(f: TicketFacts, _d: dict[str, Any], a: Actor) -> str | None:
    if f.solved_and_satisfied and a.role not in SUPERVISORS:
        return (
            "诉求人评价已解决且满意，只有督办员可说明理由后重办 "
            "/ only a supervisor may reopen an order rated solved and satisfied"
        )
    return None


def _not_to_itself(f: TicketFacts, d: dict[str, Any], _a: Actor) -> str | None:
    units = set(d.get("units") or []) | ({d["to"]} if d.get("to") else set())
    if f.lead and f.lead in units:
        return "不能向本单位吹哨或提级 / a unit cannot summon or escalate to itself"
    return None


def _no_exemption_pending(f: TicketFacts, _d: dict[str, Any], _a: Actor) -> str | None:
    if f.exemption_pending:
        return "已有考核剔除申请待审核 / an exemption request is already waiting"
    return "已批准考核剔除 / the exemption is already approved" if f.exempt else None


def _exemption_pending(f: TicketFacts, _d: dict[str, Any], _a: Actor) -> str | None:
    return (
        None
        if f.exemption_pending
        else "没有待审核的考核剔除申请 / no exemption request is waiting"
    )


def _after_return_review(f: TicketFacts, d: dict[str, Any], _a: Actor) -> str:
    return "pending_dispatch" if d["approved"] else f.status


def _after_audit(_f: TicketFacts, d: dict[str, Any], _a: Actor) -> str:
    return "audited" if d["passed"] else "accepted"


def _after_accept(f: TicketFacts, _d: dict[str, Any], a: Actor) -> str:
    return "accepted" if f.status == "dispatched" and a.unit == f.lead else f.status


CENTRE_INTAKE = frozenset({"agent", "dispatcher", "admin"})
DISPATCHERS = frozenset({"dispatcher", "admin"})

ACTIONS: tuple[Action, ...] = (
    Action(
        "answer", "直接答复", frozenset({"received"}), frozenset({"agent", "admin"}),
        Relation.centre, "answered",
        fields=(Field("answer", "答复内容", "text", min_length=5),
                Field("entry", "知识库条目", "entry", required=False, max_length=32), note()),
        effects=("record the answer; with `entry`, the entry's answering version is linked "
                 "(`entry`, `entry_version`) and its use counted",), notify=("requester",),
        why="A consultation answered on the call from the knowledge base.",
    ),
    Action(
        "transfer", "转警转急", frozenset({"received"}), CENTRE_INTAKE, Relation.centre,
        "transferred", fields=(Field("to", "转至", "choice", choices=TRANSFER_TO), note()),
        why="An emergency goes to 110/119/120/122 at once; which one is recorded.",
    ),
    Action(
        "reject", "不予受理", frozenset({"received"}), CENTRE_INTAKE, Relation.centre,
        "rejected",
        fields=(Field("reason", "不予受理原因", "choice", choices=REJECT_REASONS),
                Field("channel_advice", "告知的法定途径", "text", min_length=4)),
        notify=("requester",),
        why="Out of scope: the reason code is required and the citizen is told the legal "
        "channel once (一次性告知).",
    ),
    Action(
        "accept_with_missing", "容缺受理", frozenset({"received", "pending_dispatch"}),
        CENTRE_INTAKE, Relation.centre, "=",
        fields=(Field("missing", "所缺材料", "text", min_length=2),
                Field("promised_days", "承诺补交天数", "int", low=1, high=30)),
        guards=(_no_promise_pending,),
        effects=("track the promise: the centre is told if it is still open after promised_days "
                 "working days",),
        why="Taken in with a secondary document missing, on a written promise to bring it.",
    ),
    Action(
        "fulfil_missing", "补齐材料", OPEN, CENTRE_INTAKE | UNIT_ROLES, Relation.lead_or_centre,
        "=", fields=(note(),), guards=(_promise_pending,),
        effects=("end the tracked promise",),
        why="The promised document has been brought: the promise is kept.",
    ),
    Action(
        "dispatch", "派单", frozenset({"received", "pending_dispatch"}), CENTRE_INTAKE,
        Relation.centre, "dispatched",
        fields=(Field("lead", "主办单位", "unit"),
                Field("co_handlers", "协办单位", "units", required=False), note()),
        guards=(_not_to_itself,),
        effects=("assign lead (+ co-handlers)", "start accept, contact and complete limits"),
        notify=("unit",),
        why="Straight to the one unit that must act (直派), optionally with co-handlers.",
    ),
    Action(
        "accept", "签收", IN_UNIT, UNIT_ROLES, Relation.party, _after_accept,
        next_label="accepted (lead) / unchanged (co-handler)", guards=(_not_yet_accepted,),
        effects=("stop the accept limit",),
        why="The unit signs for the ticket; for the lead this moves it to accepted.",
    ),
    Action(
        "request_return", "申请退单", IN_UNIT, UNIT_ROLES, Relation.lead, "=",
        fields=(Field("reason", "退单理由", "text", min_length=4),),
        guards=(_no_return_pending,), notify=("centre",),
        why="The lead says it is not its jurisdiction; the clock keeps running meanwhile.",
    ),
    Action(
        "review_return", "审核退单", IN_UNIT, DISPATCHERS, Relation.centre, _after_return_review,
        next_label="pending_dispatch (approved) / unchanged (rejected)",
        fields=(Field("approved", "是否同意", "bool"), note()),
        guards=(_return_pending,),
        effects=("approved: end the lead's part, stop its limits; counts against dispatch "
                 "accuracy", "rejected: back to the unit, clock running; counts against the unit"),
        notify=("unit",),
        why="Approved → back to the dispatch queue for redispatch (改派); rejected → the unit "
        "handles it.",
    ),
    Action(
        "contact", "联系诉求人", frozenset({"accepted"}), UNIT_ROLES, Relation.lead, "=",
        fields=(note(required=True, min_length=4),),
        effects=("stop the contact limit (the first contact decides the response rate)",),
        why="The unit reaches the citizen; the first contact is the response (响应).",
    ),
    Action(
        "request_extension", "申请延期", frozenset({"accepted"}), UNIT_ROLES, Relation.lead,
        "=",
        fields=(Field("days", "延期工作日", "int", low=1, high=30),
                Field("reason", "延期理由", "text", min_length=4)),
        guards=(_no_extension_pending, _not_suspended), notify=("centre",),
        why="More time, with a reason; the centre decides.",
    ),
    Action(
        "review_extension", "审核延期", frozenset({"accepted"}), DISPATCHERS | SUPERVISORS,
        Relation.centre, "=",
        fields=(Field("approved", "是否同意", "bool"),
                Field("days", "批准工作日", "int", required=False, low=1, high=30), note()),
        guards=(_extension_pending,),
        effects=("approved: move the complete limit by the days granted",),
        notify=("unit",),
        why="An approved extension moves the deadline; a rejected one leaves it.",
    ),
    Action(
        "suspend", "挂起", IN_UNIT, UNIT_ROLES | DISPATCHERS, Relation.lead_or_centre, "=",
        fields=(Field("reason", "挂起原因", "text", min_length=4),),
        guards=(_not_suspended,), effects=("pause every running limit",), notify=("centre",),
        why="Waiting for the citizen or a third party: the clock stops.",
    ),
    Action(
        "resume", "恢复", IN_UNIT, UNIT_ROLES | DISPATCHERS, Relation.lead_or_centre, "=",
        fields=(note(),), guards=(_suspended,), effects=("resume the paused limits",),
        why="The clock runs again from where it stopped.",
    ),
    Action(
        "whistle", "吹哨", frozenset({"accepted"}), UNIT_ROLES, Relation.lead, "=",
        fields=(Field("units", "被吹哨单位", "units"), note(required=True, min_length=4)),
        guards=(_not_to_itself,),
        effects=("summon each unit", "start each unit's report-in limit"),
        notify=("summoned",),
        why="The lead summons departments it needs; each must report in (报到) within its limit.",
    ),
    Action(
        "report", "报到", frozenset({"accepted"}), UNIT_ROLES, Relation.summoned, "=",
        fields=(note(required=True, min_length=4),),
        effects=("stop this unit's report-in limit", "record its part"), notify=("lead",),
        why="A summoned unit reports in and submits its part; the lead replies for all.",
    ),
    Action(
        "reply", "办结反馈", frozenset({"accepted"}), UNIT_ROLES, Relation.lead, "replied",
        fields=(Field("result", "办理结果", "choice", choices=REPLY_RESULTS),
                Field("reason", "无法解决原因", "choice", required=False,
                      choices=NOT_SOLVABLE_REASONS),
                Field("content", "办理情况", "text", min_length=10)),
        field_rules=(FieldRule("reason", "`reason` required when `result` is not_solvable, "
                               "refused with any other result", _reason_matches_result),),
        guards=(_not_suspended, _contacted, _all_reported),
        effects=("stop the complete limit",), notify=("centre",),
        why="An honest result code — solved, partly solved, or not solvable with its reason — "
        "never just 'closed'.",
    ),
    Action(
        "audit", "审核", frozenset({"replied"}), DISPATCHERS, Relation.centre, _after_audit,
        next_label="audited (passed) / accepted (sent back)",
        fields=(Field("passed", "是否通过", "bool"), note()),
        field_rules=(FieldRule("note", "`note` required when `passed` is false",
                               _note_when_sent_back),),
        effects=("sent back: the complete limit runs again",), notify=("unit",),
        why="The centre checks the reply; a poor one goes back to the unit.",
    ),
    Action(
        "evaluate", "回访评价", frozenset({"audited"}),
        frozenset({"callback_agent", "admin"}), Relation.centre, "evaluated",
        fields=(Field("reached", "是否接通", "bool"),
                Field("solved", "是否解决", "bool", required=False),
                Field("satisfaction", "满意度", "choice", required=False, choices=SATISFACTION),
                note()),
        field_rules=(
            FieldRule("solved", "`solved` required when `reached` is true", _solved_when_reached),
            FieldRule("satisfaction", "`satisfaction` required when `reached` is true",
                      _satisfaction_when_reached),
        ),
        effects=("counts in the resolution and satisfaction rates",),
        why="The citizen says whether it was solved and how satisfied — or could not be reached.",
    ),
    Action(
        "rate", "市民评价", frozenset({"audited"}), frozenset({"citizen"}), Relation.centre,
        "evaluated",
        fields=(Field("solved", "是否解决", "bool"),
                Field("satisfaction", "满意度", "choice", choices=SATISFACTION),
                Field("note", "意见建议", "text", required=False, max_length=500),
                Field("via", "评价途径", "choice", required=False, choices=RATE_VIA)),
        effects=("counts in the resolution and satisfaction rates, as a callback would",),
        why="The citizen rates the checked reply on the portal (tracking code), by the signed "
        "link of the callback invitation or by answering it by SMS: the callback is then not "
        "needed.",
    ),
    Action(
        "reopen", "重办", frozenset({"evaluated"}),
        frozenset({"callback_agent", "dispatcher", "supervisor", "admin"}), Relation.centre,
        "dispatched",
        fields=(note(required=True, min_length=4),
                Field("reason", "重办理由", "text", required=False, min_length=4)),
        field_rules=(FieldRule("reason", "`reason` required when the order was rated solved "
                               "and satisfied", _reason_when_satisfied),),
        guards=(_supervisor_when_satisfied,),
        effects=("round + 1 to the same lead", "restart accept, contact and complete limits",
                 f"beyond round {MAX_ROUNDS}: escalate to the level above (the pack's "
                 "escalation unit above a unit under the city; the escalation unit itself "
                 "keeps it)"),
        notify=("unit",),
        why="Unsolved or dissatisfied: another round for the unit; the round number is kept. "
        "An order rated solved and satisfied is reopened only by a supervisor, with the reason.",
    ),
    Action(
        "escalate", "提级", IN_UNIT | frozenset({"pending_dispatch"}),
        SUPERVISORS | DISPATCHERS | frozenset({"unit_admin"}), Relation.over_lead,
        "dispatched",
        fields=(Field("to", "提级至", "unit", required=False),
                Field("reason", "提级原因", "text", min_length=4)),
        field_rules=(FieldRule("to", "`to` required in pending_dispatch (nobody leads)",
                               _to_when_nobody_leads),),
        guards=(_not_to_itself,),
        effects=("end the lead's part",
                 "the level above (or `to`, which must be above the lead) leads; above a unit "
                 "under the city, the pack's escalation unit",
                 "restart accept, contact and complete limits"),
        notify=("unit", "supervisor"),
        why="Beyond the unit's powers (超事权): street → district → city department; never "
        "down or sideways.",
    ),
    Action(
        "urge", "催办", OPEN - {"received"}, SUPERVISORS, Relation.over_lead, "=",
        fields=(note(required=True, min_length=4),), notify=("unit",),
        why="A supervisor urges the unit; every urge is counted and shown.",
    ),
    Action(
        "supervise", "督办", OPEN - {"received"}, SUPERVISORS, Relation.over_lead, "=",
        fields=(note(required=True, min_length=4),), effects=("mark as supervised (督办件)",),
        notify=("unit", "supervisor"),
        why="The ticket is put under supervision.",
    ),
    Action(
        "recategorize", "改分类", OPEN, CENTRE_INTAKE, Relation.centre, "=",
        fields=(Field("category", "事项分类编码", "text", max_length=20), note()),
        effects=("new category and tier", "recompute every limit from the new tier"),
        why="A wrong category is corrected; the time limits follow the new category's tier "
        "(and the correction becomes training data for dispatch).",
    ),
    Action(
        "request_exemption", "申请考核剔除", ASSESSED, UNIT_ROLES,
        Relation.lead, "=",
        fields=(Field("reason", "剔除理由", "choice", choices=EXEMPTION_REASONS),
                note(required=True, min_length=10)),
        guards=(_no_exemption_pending,), notify=("centre",),
        why="An order the unit could not fairly be judged on (force majeure, a malicious or "
        "plainly unreasonable demand …) is taken out of its assessment only with the centre's "
        "approval, the evidence written down.",
    ),
    Action(
        "review_exemption", "审核考核剔除", ASSESSED, SUPERVISORS, Relation.centre, "=",
        fields=(Field("approved", "是否同意", "bool"), note()),
        guards=(_exemption_pending,),
        effects=("approved: the order leaves the unit's response, resolution and satisfaction "
                 "rates",),
        notify=("unit",),
        why="The centre decides; an approved exemption is shown on the order and in the "
        "assessment's drill-down, never silently.",
    ),
    Action(
        "merge", "并单", frozenset({"received", "pending_dispatch"}), CENTRE_INTAKE,
        Relation.centre, "merged",
        fields=(Field("master", "主工单编号", "ticket"), note()),
        effects=("attach to the root master (a merged master is followed to the order it is "
                 "merged into); closes with it and gets its reply",),
        why="A repeat of the same event is attached to a master ticket.",
    ),
    Action(
        "answer_by_task", "举一反三办结", frozenset({"received", "pending_dispatch", "dispatched",
                                                   "accepted"}),
        DISPATCHERS, Relation.centre, "audited",
        fields=(Field("task", "主动治理任务编号", "ticket"),
                Field("result", "办理结果", "choice", choices=REPLY_RESULTS),
                Field("content", "办理情况", "text", min_length=10)),
        effects=("the task (a proactive task linked to this order, its reply audited) answers "
                 "it: the lead's part is replied now, its limits stop",),
        notify=("requester", "unit"),
        why="举一反三: a common problem handled once by a proactive task answers every order "
        "linked to it; each order is still called back and rated.",
    ),
    Action(
        "close", "关闭", frozenset({"answered", "transferred", "rejected", "evaluated"}),
        frozenset({"agent", "dispatcher", "callback_agent", "admin"}), Relation.centre, "closed",
        fields=(note(),),
        effects=("close every ticket merged into this one, transitively, each with its event",),
        notify=("requester",),
        why="The end: after the answer, the transfer, the rejection or the evaluation.",
    ),
)  # fmt: skip

BY_NAME: dict[str, Action] = {a.name: a for a in ACTIONS}


# ---- deciding --------------------------------------------------------------------------------


class UnknownAction(NotFound):
    pass


class NotAllowed(Forbidden):
    pass


class WrongState(Conflict):
    pass


class BadField(Invalid):
    pass


class GuardFailed(Conflict):
    pass


Refusal = UnknownAction | NotAllowed | WrongState | BadField | GuardFailed


@dataclass(frozen=True)
class Transition:
    action: str
    before: str
    after: str
    data: dict[str, Any]  # the validated fields
    effects: tuple[str, ...] = ()
    notify: tuple[str, ...] = ()
    escalates: bool = False  # a reopen beyond MAX_ROUNDS
    round: int = 1


def relation_holds(relation: Relation, actor: Actor, facts: TicketFacts) -> bool:
    lead = facts.lead is not None and actor.unit == facts.lead
    if relation is Relation.centre:
        return actor.is_centre
    if relation is Relation.lead:
        return lead
    if relation is Relation.party:
        return lead or actor.unit in facts.co_handlers
    if relation is Relation.summoned:
        return actor.unit in facts.summoned_pending
    if relation is Relation.lead_or_centre:
        return lead or actor.is_centre
    if relation is Relation.over_lead:
        if actor.is_centre:
            return True
        if facts.lead_path is None:
            return False
        # A unit admin may escalate its own ticket (超事权); supervisors act on units below.
        return facts.lead_path.startswith(actor.unit_path) and (actor.role != "unit_admin" or lead)
    raise AssertionError(relation)


def _check_field(f: Field, value: Any) -> Any:
    if f.kind == "bool":
        if not isinstance(value, bool):
            raise BadField(f"{f.label}须为“是”或“否” / {f.name} must be a boolean", field=f.name)
        return value
    if f.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadField(f"{f.label}须为整数 / {f.name} must be a whole number", field=f.name)
        if (f.low is not None and value < f.low) or (f.high is not None and value > f.high):
            raise BadField(
                f"{f.label}须在 {f.low}–{f.high} 之间 / {f.name} out of range", field=f.name
            )
        return value
    if f.kind == "units":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise BadField(
                f"{f.label}须为单位 / {f.name} must be a list of unit codes", field=f.name
            )
        if f.required and not value:
            raise BadField(
                f"请选择{f.label}，至少一个单位 / {f.name} needs at least one unit", field=f.name
            )
        if len(set(value)) != len(value):
            raise BadField(f"{f.label}中有重复的单位 / {f.name} repeats a unit", field=f.name)
        return value
    if not isinstance(value, str):
        raise BadField(f"{f.label}须为文字 / {f.name} must be text", field=f.name)
    value = value.strip()
    if f.kind == "choice":
        assert f.choices is not None
        if value not in f.choices:
            allowed = ", ".join(f.choices)
            names = "、".join(f.choices.values())
            raise BadField(f"{f.label}须为{names}之一 / {f.name} must be one of {allowed}",
                           field=f.name)  # fmt: skip
        return value
    if len(value) < max(f.min_length, 1 if f.required else 0):
        raise BadField(
            f"{f.label}至少 {max(f.min_length, 1)} 个字 / {f.name} too short", field=f.name
        )
    if len(value) > f.max_length:
        raise BadField(f"{f.label}不能超过 {f.max_length} 个字 / {f.name} too long", field=f.name)
    return value


def validate_fields(action: Action, data: Mapping[str, Any]) -> dict[str, Any]:
    known = {f.name for f in action.fields} | {"version"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadField(
            f"{action.label}不接受这些项目 / {action.name}: unknown field(s) {', '.join(unknown)}",
            field=unknown[0],
        )
    clean: dict[str, Any] = {}
    for f in action.fields:
        value = data.get(f.name)
        if value is None or value == "":
            if f.required:
                raise BadField(f"请填写{f.label} / {f.name} is required", field=f.name)
            continue
        clean[f.name] = _check_field(f, value)
    return clean


def decide(
    name: str, facts: TicketFacts, actor: Actor, data: Mapping[str, Any] | None = None
) -> Transition:
    """Check `actor` taking action `name` on a ticket in `facts`; the transition or a Refusal."""
    action = BY_NAME.get(name)
    if action is None:
        raise UnknownAction(f"没有这个操作：{name} / unknown action")
    if actor.role not in action.roles:
        raise NotAllowed(
            f"{action.label}不是当前角色可做的操作 / {name}: not allowed for this role"
        )
    if not relation_holds(action.relation, actor, facts):
        who = RELATION_NAMES[action.relation]
        raise NotAllowed(f"{action.label}只能由{who}办理 / only the {action.relation.value} may")
    if facts.status not in action.states:
        allowed = "、".join(STATES[s] for s in sorted(action.states))
        raise WrongState(
            f"工单处于「{STATES.get(facts.status, facts.status)}」，不能{action.label}；"
            f"可{action.label}的状态：{allowed} / not allowed in state {facts.status}"
        )
    clean = validate_fields(action, data or {})
    for rule in action.field_rules:
        why = rule.broken(facts, clean)
        if why:
            raise BadField(why, field=rule.field)
    for guard in action.guards:
        reason = guard(facts, clean, actor)
        if reason:
            raise GuardFailed(reason)
    after = facts.status if action.next == "=" else (
        action.next if isinstance(action.next, str) else action.next(facts, clean, actor)
    )  # fmt: skip
    new_round = facts.round + 1 if name == "reopen" else facts.round
    return Transition(
        action=name,
        before=facts.status,
        after=after,
        data=clean,
        effects=action.effects,
        notify=action.notify,
        escalates=name == "reopen" and new_round > MAX_ROUNDS,
        round=new_round,
    )


def available(facts: TicketFacts, actor: Actor) -> list[Action]:
    """The actions `actor` could take now (role, relation, state and data-free guards hold):
    what the console offers on a ticket page. Fields are checked when the form comes back."""
    out = []
    for action in ACTIONS:
        if actor.role not in action.roles or facts.status not in action.states:
            continue
        if not relation_holds(action.relation, actor, facts):
            continue
        if any(guard(facts, {}, actor) for guard in action.guards):
            continue
        out.append(action)
    return out


# ---- escalation: where "the level above" is ---------------------------------------------------

DIVISIONS = frozenset({"city", "district", "street", "community", "grid"})


@dataclass(frozen=True)
class UnitRef:
    """A unit as the escalation rules see it: its code, kind and materialised path."""

    code: str
    kind: str
    path: str  # "/1/17/254/" (ids or codes: only the depth counts)

    @property
    def level(self) -> int:
        """Smaller is higher: the city 0, its departments and companies 1, a district 2, a
        district's departments 3, a street 4 … (a unit is always below the unit it hangs under)."""
        depth = self.path.strip("/").count("/")
        return 2 * depth if self.kind in DIVISIONS else 2 * depth - 1


def level_above(lead: UnitRef, parent: UnitRef | None, escalation_unit: str | None) -> str | None:
    """Who takes an order escalated from `lead` when nobody names the unit: the parent, or,
    where the parent is the city itself, the pack's escalation unit. None for the escalation
    unit itself (nothing is above it: a reopen leaves the order with it)."""
    if parent is not None and parent.kind != "city":
        return parent.code
    if escalation_unit and escalation_unit != lead.code:
        return escalation_unit
    return None


def escalation_refusal(lead: UnitRef, target: UnitRef, escalation_unit: str | None) -> str | None:
    """Why `target` cannot take an order escalated from `lead`, or None: escalation goes up —
    to a unit of a higher level, or to the escalation unit — never down or sideways."""
    if target.code == escalation_unit or target.level < lead.level:
        return None
    return (
        f"提级只能提到上级单位：{target.code} 不高于主办单位 {lead.code} "
        f"/ escalation goes up: {target.code} is not above {lead.code}"
    )


# ---- the generated document ------------------------------------------------------------------


def next_label(action: Action) -> str:
    if action.next == "=":
        return "unchanged"
    return action.next if isinstance(action.next, str) else action.next_label


def render_markdown() -> str:
    """docs/lifecycle.md, generated from ACTIONS (`jiesu docs lifecycle`; a test keeps it fresh)."""
    out = [
        "# The life of a work order",
        "",
        "Generated from `jiesu/tickets/lifecycle.py` by `jiesu docs lifecycle`; do not edit.",
        "",
        "## States",
        "",
        "| state | 中文 | open |",
        "|---|---|---|",
    ]
    out += [f"| `{s}` | {cn} | {'yes' if s in OPEN else ''} |" for s, cn in STATES.items()]
    out += [
        "",
        "## Actions",
        "",
        "| action | 中文 | from | to | who | fields | effects |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in ACTIONS:
        states = ", ".join(f"`{s}`" for s in sorted(a.states))
        who = ", ".join(sorted(a.roles)) + f" · {a.relation.value}"
        fields = "; ".join([*(f.describe() for f in a.fields), *(r.text for r in a.field_rules)])
        fields = fields or "—"
        effects = "; ".join([*a.effects, *(f"notify {n}" for n in a.notify)]) or "—"
        out.append(
            f"| `{a.name}` | {a.label} | {states} | {next_label(a)} | {who} | {fields} | {effects} |"
        )
    out += ["", "## Why each action exists", ""]
    out += [f"- **{a.name}** ({a.label}): {a.why}" for a in ACTIONS]
    out += ["", "## Diagram", "", "```mermaid", "stateDiagram-v2", "    [*] --> received"]
    edges: dict[tuple[str, str], list[str]] = {}
    for a in ACTIONS:
        targets = _targets(a)
        for s in sorted(a.states):
            for t in targets or [s]:
                if t != s:
                    edges.setdefault((s, t), []).append(a.name)
    for (s, t), names in edges.items():
        out.append(f"    {s} --> {t}: {' / '.join(names)}")
    out += ["    merged --> closed: with its master", "    closed --> [*]", "```", ""]
    return "\n".join(out)


def possible_after(action: Action, before: str) -> set[str]:
    """Every state `action` can lead to from `before` (for checking recorded histories)."""
    if before not in action.states:
        return set()
    if action.next == "=":
        return {before}
    if isinstance(action.next, str):
        return {action.next}
    labels = (t.strip().split(" ")[0] for t in action.next_label.split("/"))
    return {before if t == "unchanged" else t for t in labels}


def _targets(a: Action) -> list[str]:
    if a.next == "=":
        return []
    if isinstance(a.next, str):
        return [a.next]
    named = (t.strip().split(" ")[0] for t in a.next_label.split("/"))
    return [t for t in named if t in STATES]
