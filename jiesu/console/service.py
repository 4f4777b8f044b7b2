"""What the console's pages need beyond the ticket services: workbench queues and their counts,
the ticket page's facts and possible actions, dispatch suggestions, and turning an HTML form
into an action's fields. Services take `db_session=` and never commit."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jiesu.access.permissions import HOME, allows
from jiesu.access.policy import Principal
from jiesu.db.base import utcnow
from jiesu.intel.service import stored_advice
from jiesu.intel.shapes import IntakeAdvice
from jiesu.knowledge.call import AnswerBasis, answer_basis
from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.taxonomy.models import Category
from jiesu.taxonomy.routing import Catalogue
from jiesu.taxonomy.service import UnitOption, calendar_warnings, load_catalogue, unit_options
from jiesu.tickets.actions import actor_of, facts_of
from jiesu.tickets.lifecycle import BY_NAME, WINDOW_CAUSES, Action, TicketFacts, available
from jiesu.tickets.models import Attachment, Ticket
from jiesu.tickets.service import TicketFilter, get_ticket, list_tickets, ticket_deadlines
from jiesu.timelimits.deadlines import Deadline
from jiesu.web.labels import CHANNEL_NAMES
from jiesu.web.templating import tier_text

PAGE_SIZE = 20
SOON = timedelta(hours=24)  # "due within a day" on the supervisor's warning list


@dataclass(frozen=True)
class Queue:
    """One tab of a workbench: a named ticket filter."""

    key: str
    label: str
    filter: TicketFilter


def queues(workbench: str) -> list[Queue]:
    if workbench == "dispatch":
        return [
            Queue("pending", "待派单", TicketFilter(status=["received", "pending_dispatch"],
                                                    sort="created")),
            Queue("returns", "退单审核", TicketFilter(waiting="return", sort="-updated")),
            Queue("extensions", "延期审核", TicketFilter(waiting="extension", sort="-updated")),
            Queue("audit", "办结审核", TicketFilter(status=["replied"], sort="-updated")),
        ]  # fmt: skip
    if workbench == "inbox":
        return [
            Queue("todo", "待办工单", TicketFilter(status=["dispatched", "accepted"], mine=True,
                                                   sort="due")),
            Queue("summoned", "吹哨报到", TicketFilter(status=["accepted"], summoned=True,
                                                       sort="due")),
            Queue("replied", "已反馈", TicketFilter(status=["replied", "audited"], mine=True,
                                                    sort="-updated")),
        ]  # fmt: skip
    if workbench == "callbacks":
        return [
            Queue("callback", "待回访", TicketFilter(status=["audited"], sort="-updated")),
            Queue("close", "待关闭", TicketFilter(status=["evaluated", "answered"],
                                                  sort="-updated")),
        ]  # fmt: skip
    if workbench == "supervision":
        return [
            Queue("overdue", "已超期", TicketFilter(overdue=True, sort="due")),
            Queue("warning", "24小时内到期", TicketFilter(due_within=SOON, sort="due")),
            Queue("supervised", "督办件", TicketFilter(supervised=True, sort="-updated")),
            Queue("exemptions", "考核剔除审核", TicketFilter(waiting="exemption", sort="-updated")),
        ]
    raise KeyError(workbench)


# The callback workbench's tabs beyond its ticket queues (jiesu/callbacks/views.py): the orders
# that need a call, the SMS replies waiting for an agent, the orders rated by SMS or link.
CALLBACK_PAGES = (
    ("/console/callbacks/calls", "需电话回访"),
    ("/console/callbacks/replies", "短信待处理"),
    ("/console/callbacks/rated", "短信/链接已评价"),
)


def callback_tabs() -> list[tuple[str, str]]:
    """(href, label) of every tab of the callback workbench, its queues first."""
    return [(f"/console/callbacks?tab={q.key}", q.label) for q in queues("callbacks")] + list(
        CALLBACK_PAGES
    )


def queue_count(q: Queue, *, actor: Principal, db_session: Session) -> int:
    _, total = list_tickets(q.filter, actor=actor, db_session=db_session, page=1, page_size=1)
    return total


# ---- the navigation ----------------------------------------------------------------------

NAV = (
    ("/console/intake", "受理登记", "workbench.intake", None),
    ("/console/dispatch", "派单审核", "workbench.dispatch", "dispatch"),
    ("/console/inbox", "承办工单", "workbench.unit", "inbox"),
    ("/console/callbacks", "回访评价", "workbench.callback", "callbacks"),
    ("/console/supervision", "督查督办", "workbench.supervision", "supervision"),
    ("/console/tickets", "工单查询", "tickets.read", None),
    ("/console/knowledge", "知识库", "knowledge.read", None),
    ("/console/dashboard", "数据大屏", "dashboard.view", None),
    ("/console/assessment", "考评排名", "assessment.view", None),
    ("/console/warnings", "预警治理", "warnings.view", None),
    ("/console/reports", "分析报告", "reports.view", None),
    ("/console/unit/users", "本单位人员", "unit.users", None),
    ("/console/admin/users", "系统管理", "admin", None),
)


# The badges are a hint (the workbench itself shows the live count), so each user's are kept for
# a few seconds: a page view, a ticket page and the next list in a row count the queue once.
BADGE_TTL_S = 15.0
_badges: dict[tuple[str, int, str], tuple[float, int]] = {}


def _badge_key(actor: Principal, workbench: str, db_session: Session) -> tuple[str, int, str]:
    return (str(db_session.get_bind().url), actor.user_id, workbench)


def forget_badges(actor: Principal) -> None:
    """After the user acts, their badges count again on the next page."""
    for key in [k for k in _badges if k[1] == actor.user_id]:
        _badges.pop(key, None)


def _badge(actor: Principal, workbench: str, *, db_session: Session) -> int:
    key = _badge_key(actor, workbench, db_session)
    now = time.monotonic()
    hit = _badges.get(key)
    if hit and hit[0] > now:
        return hit[1]
    count = queue_count(queues(workbench)[0], actor=actor, db_session=db_session)
    _remember_badge(key, count, now=now)
    return count


def _remember_badge(key: tuple[str, int, str], count: int, *, now: float) -> None:
    if len(_badges) > 50_000:  # many users over a long day: start again rather than grow
        _badges.clear()
    _badges[key] = (now + BADGE_TTL_S, count)


@dataclass
class NavItem:
    href: str
    label: str
    active: bool
    count: int | None = None


def navigation(
    actor: Principal,
    current: str,
    *,
    db_session: Session,
    counts: bool = True,
    known: Mapping[str, int] | None = None,
) -> list[NavItem]:
    """The menu for this role, each workbench with the size of its first queue. `known` gives
    counts the page has already made (a workbench's first tab counts itself), so the badge
    does not cost a second count of the same rows."""
    items = []
    for href, label, permission, workbench in NAV:
        if not allows(permission, actor.role):
            continue
        count = None
        if counts and workbench:
            if known and workbench in known:
                count = known[workbench] or None
                key = _badge_key(actor, workbench, db_session)
                _remember_badge(key, known[workbench], now=time.monotonic())
            else:
                count = _badge(actor, workbench, db_session=db_session) or None
        active = current == href or (current.startswith(href + "/") and href != "/console")
        items.append(NavItem(href, label, active, count))
    return items


# ---- the calendar nobody has entered ------------------------------------------------------

CALENDAR_PAGE = "/console/admin/calendar"


def calendar_notices(actor: Principal, path: str, *, db_session: Session) -> list[str]:
    """The years about to be used whose holidays nobody has entered (the same check as
    /healthz), in Chinese, on the home page of the admin and the centre's staff and on the
    admin's 调休日历: their working-day limits fall back to Monday–Friday until entered."""
    if actor.role != "admin" and not actor.is_service_centre:
        return []
    if path not in (HOME.get(actor.role), CALENDAR_PAGE):
        return []
    today = datetime.now(city_tz()).date()
    return [
        message.split(" / ", 1)[0]
        for message in calendar_warnings(db_session=db_session, today=today)
    ]


# ---- the ticket page ---------------------------------------------------------------------


@dataclass
class TicketView:
    ticket: Ticket
    facts: TicketFacts
    deadlines: list[Deadline]
    actions: list[Action]
    can_reveal: bool
    attachments: list[Attachment]
    suggestion: Suggestion | None = None
    units: list[Unit] = field(default_factory=list)  # for unit pickers, when a form has one
    unit_names: dict[str, str] = field(default_factory=dict)  # codes in the timeline
    advice: IntakeAdvice | None = None  # what intake intelligence suggested (centre only)
    lines: dict[int, list[Line]] = field(default_factory=dict)  # the timeline, by event id
    primary: str | None = None  # the action the panel opens: the viewer's likely next step
    more: frozenset[str] = frozenset()  # rarely used actions, behind 更多操作
    assignment_states: dict[int, str] = field(default_factory=dict)  # by assignment id
    basis: AnswerBasis | None = None  # 答复依据: the knowledge base entry it was answered with


@dataclass(frozen=True)
class Suggestion:
    unit: str
    unit_name: str
    reason: str


def ticket_view(ticket_id: int, *, actor: Principal, db_session: Session) -> TicketView:
    ticket = get_ticket(ticket_id, actor=actor, db_session=db_session)
    facts = facts_of(ticket)
    actions = [a for a in available(facts, actor_of(actor, db_session=db_session))
               if a.name not in SYSTEM_ONLY]  # fmt: skip
    if not allows("tickets.act", actor.role):
        actions = []
    view = TicketView(
        ticket=ticket,
        facts=facts,
        deadlines=ticket_deadlines(ticket, db_session=db_session, now=utcnow()),
        actions=actions,
        can_reveal=actor.sees_identity(
            confidential=ticket.requester_confidential, lead_unit_id=ticket.lead_unit_id
        ),
        attachments=list(
            db_session.scalars(select(Attachment).where(Attachment.ticket_id == ticket.id))
        ),
    )
    view.unit_names = unit_names_for(ticket, db_session=db_session)
    view.lines = timeline(
        list(ticket.events), view.unit_names, timeline_names(ticket, db_session=db_session)
    )
    view.assignment_states = {a.id: assignment_state(a, ticket.status) for a in ticket.assignments}
    view.basis = answer_basis(ticket.events, db_session=db_session)
    if actor.is_service_centre:
        view.advice = stored_advice(ticket.id, db_session=db_session)
    view.primary, view.more = arrange(actions)
    if any(a.name == "dispatch" for a in actions):
        view.suggestion = suggest_lead(ticket, db_session=db_session)
    return view


# The likely next step, best first: the panel opens the first action the viewer may take now
# (`lifecycle.available` has already applied role, relation, state and the data-free guards,
# so one ranking serves every state and role: after dispatch the unit sees 签收, after the
# reply the centre 审核, the callback agent 回访评价 …). A pending request outranks the
# routine step (a return or an extension waits for the centre's answer).
LIKELY_NEXT: tuple[str, ...] = (
    "resume",  # suspended: nothing else moves until it runs again
    "review_return",
    "review_extension",
    "review_exemption",
    "report",  # a summoned unit reports in
    "accept",
    "reply",  # offered only once the requester was contacted and every summoned unit reported
    "contact",
    "dispatch",
    "answer",
    "audit",
    "evaluate",
    "close",
    "fulfil_missing",
    "urge",
)
# Actions a person takes now and then, not on the main path: behind 更多操作.
# Taken by the system, never offered on the page: a linked order is answered by its proactive
# task when the task's reply passes the audit (`tickets/flows.linked_answers`).
SYSTEM_ONLY = frozenset({"answer_by_task"})
RARELY_USED = frozenset(
    {"suspend", "request_exemption", "reopen", "accept_with_missing", "escalate", "merge"}
)


def arrange(actions: list[Action]) -> tuple[str | None, frozenset[str]]:
    """The action the panel opens for this viewer, and those it keeps behind 更多操作."""
    names = {a.name for a in actions}
    primary = next((n for n in LIKELY_NEXT if n in names), None)
    return primary, frozenset(n for n in names if n in RARELY_USED and n != primary)


def handling_units(*, db_session: Session) -> list[UnitOption]:
    """Every unit a ticket can be sent to, streets first, then departments and companies (not
    the city, nor the service centre: the lifecycle refuses both as a handler)."""
    order = {"street": 0, "district": 1, "department": 2, "company": 3, "community": 4}
    centre = set(db_session.scalars(select(Unit.code).where(Unit.function == "service_centre")))
    units = [
        u
        for u in unit_options(db_session=db_session).values()
        if u.kind != "city" and u.code not in centre
    ]
    return sorted(units, key=lambda u: (order.get(u.kind, 9), u.code))


def suggest_lead(
    ticket: Ticket, *, db_session: Session, catalogue: Catalogue | None = None
) -> Suggestion | None:
    """The dispatch catalogue's lead for this ticket's category and place, with its reason."""
    if ticket.category is None:
        return None
    district = ticket.district.code if ticket.district else None
    street = ticket.street.code if ticket.street else None
    catalogue = catalogue or load_catalogue(db_session=db_session)
    route = catalogue.route(ticket.category.code, district, street)
    if route is None:
        return None
    unit = unit_options(db_session=db_session).get(route.unit)
    return Suggestion(route.unit, unit.name if unit else route.unit, route.reason)


# ---- forms ------------------------------------------------------------------------------


class FormValues(Mapping[str, list[str]]):
    """An HTML form as name → every value sent under it."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._d: dict[str, list[str]] = {}
        for k, v in items:
            self._d.setdefault(k, []).append(v)

    def __getitem__(self, key: str) -> list[str]:
        return self._d[key]

    def __iter__(self) -> Any:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def items_list(self) -> list[tuple[str, str]]:
        return [(k, v) for k, vs in self._d.items() for v in vs]

    def first(self, key: str, default: str = "") -> str:
        values = self._d.get(key)
        return values[0].strip() if values else default


_SMALL_INT = re.compile(r"-?[0-9]{1,9}")


def small_int(text: str) -> int | None:
    """A whole number as typed in a form, or None ("²" and 5000-digit strings are not)."""
    return int(text) if _SMALL_INT.fullmatch(text.strip()) else None


def form_to_fields(action: Action, form: FormValues) -> dict[str, Any]:
    """An action form's values as the lifecycle table's typed fields. Nothing is validated
    here beyond the shape: `decide()` gives the same answers as for the API."""
    data: dict[str, Any] = {}
    for f in action.fields:
        values = [v.strip() for v in form.get(f.name, []) if v.strip()]
        if f.kind == "units":  # codes, names or picker labels: `lookup.resolve_fields` decides
            if values:
                data[f.name] = values
            continue
        if not values:
            continue
        value = values[0]
        if f.kind == "bool":
            data[f.name] = {"true": True, "false": False}.get(value, value)
        elif f.kind == "int":
            number = small_int(value)
            data[f.name] = number if number is not None else value
        else:
            data[f.name] = value
    return data


@dataclass(frozen=True)
class CategoryOption:
    code: str
    name: str
    level: int


def categories(*, db_session: Session) -> list[CategoryOption]:
    """The active categories for a picker: three columns, not whole rows (every list page and
    the intake form draw one)."""
    rows = db_session.execute(
        select(Category.code, Category.name, Category.level)
        .where(Category.active)
        .order_by(Category.code)
    )
    return [CategoryOption(code, name, level) for code, name, level in rows]


def count_tickets(*, db_session: Session) -> int:
    return db_session.scalar(select(func.count()).select_from(Ticket)) or 0


# ---- the timeline, readable ----------------------------------------------------------------

EXTRA_LABELS = {
    "receive": "受理",
    "rate": "市民评价",
    "escalate": "提级",
    "import_update": "导入更新",
}
BOOL_WORDS = {
    "approved": ("同意", "不同意"),
    "passed": ("通过", "退回重办"),
    "reached": ("已接通", "未接通"),
    "solved": ("已解决", "未解决"),
}


def action_label(name: str) -> str:
    action = BY_NAME.get(name)
    return action.label if action else EXTRA_LABELS.get(name, name)


@dataclass(frozen=True)
class Line:
    """One line under an event in the timeline: 事项分类：燃气泄漏 with its code drawn small."""

    text: str
    label: str = ""
    code: str = ""  # shown small beside the name, never alone
    muted: bool = False

    def __str__(self) -> str:
        return f"{self.label}：{self.text}" if self.label else self.text


# Fields whose label in the action table names the code, not the thing (the timeline names it).
TIMELINE_LABELS = {"category": "事项分类"}


def event_lines(
    event: Any, unit_names: Mapping[str, str], names: Mapping[str, str] | None = None
) -> list[Line]:
    """An event's note and fields as short Chinese lines: every value by its name (units,
    categories, tiers, choices, yes/no), the code only small beside it; each text once."""
    names = names or {}
    action = BY_NAME.get(event.action)
    data = event.data or {}
    lines: list[Line] = []
    if event.action == "receive" and data.get("channel"):
        lines.append(Line(CHANNEL_NAMES.get(data["channel"], data["channel"]), "渠道"))
    if event.action == "receive" and data.get("window_cause"):
        cause = data["window_cause"]
        lines.append(Line(WINDOW_CAUSES.get(cause, str(cause)), "办不成事原因"))
    for f in action.fields if action else ():
        if f.name == "note" or f.name not in data or data[f.name] in (None, "", []):
            continue
        value = data[f.name]
        label, code = TIMELINE_LABELS.get(f.name, f.label), ""
        if f.kind == "bool":
            yes, no = BOOL_WORDS.get(f.name, ("是", "否"))
            text = yes if value else no
        elif f.kind == "choice" and f.choices:
            text = f.choices.get(value, str(value))
        elif f.kind == "unit":
            text = unit_names.get(value, str(value))
        elif f.kind == "units":
            text = "、".join(unit_names.get(v, v) for v in value)
        elif f.kind == "entry" and data.get("entry_version"):
            text = f"{value} 第 {data['entry_version']} 版"
        elif f.name == "category":
            text, code = names.get(f"category:{value}", str(value)), str(value)
            if data.get("from"):
                was = data["from"]
                text += f"（原为{names.get(f'category:{was}', str(was))}）"
        else:
            text = str(value)
        lines.append(Line(text, label, code))
    if event.action == "recategorize" and data.get("tier"):
        text = tier_text(data["tier"])
        if data.get("tier_from") and data["tier_from"] != data["tier"]:
            text += f"（原为{tier_text(data['tier_from'])}）"
        lines.append(Line(text, "处置层级"))
    if (
        event.action == "escalate"
        and data.get("to")
        and not any(x.label == "提级至" for x in lines)
    ):
        lines.append(Line(unit_names.get(data["to"], data["to"]), "提级至"))
    if event.action == "merge" and data.get("via"):
        lines.append(Line(f"{data['via']} 已并入 {data.get('master', '')}，并入其主工单", "说明"))
    if event.note and all(event.note.strip() != x.text for x in lines):
        lines.append(Line(event.note))
    return lines


def timeline(
    events: list[Any], unit_names: Mapping[str, str], names: Mapping[str, str] | None = None
) -> dict[int, list[Line]]:
    """Every event's lines (by event id). A note repeated word for word by a later event of the
    same kind (the dispatch catalogue's reason on each dispatch of a returned or reopened order)
    is written out once; later it reads 说明同 12-05 13:10 派单 (where it was written)."""
    seen: dict[tuple[str, str], Any] = {}  # (action, note) → when it was first written
    out: dict[int, list[Line]] = {}
    for e in events:
        lines = event_lines(e, unit_names, names)
        first = seen.get((e.action, e.note.strip())) if e.note else None
        if first is not None:
            when = first.astimezone(city_tz()).strftime("%m-%d %H:%M")
            lines = [
                Line(f"说明同 {when} {action_label(e.action)}", muted=True)
                if x.text == e.note and not x.label
                else x
                for x in lines
            ]
        if e.note:
            seen.setdefault((e.action, e.note.strip()), e.at)
        out[e.id] = lines
    return out


ASSIGNMENT_ENDS = {
    "returned": "已退单",
    "escalated": "已提级",
    "redispatched": "已改派",
    "closed": "已结束",
    "reopened": "已转下一轮",
}
AFTER_REPLY = {
    "replied": "已反馈，待审核",
    "audited": "已反馈，待回访",
    "evaluated": "已反馈，待关闭",
}


def assignment_state(a: Any, ticket_status: str) -> str:
    """What one unit's part in the order stands at: its own end if it ended (退单, 提级 …),
    else the order's state as that unit sees it — 待签收, 办理中, 已反馈 …, 已办结 once the
    order is closed (an assignment stays active through the close: it led the order to it)."""
    if not a.active:
        return ASSIGNMENT_ENDS.get(a.end_reason or "", "已结束")
    if ticket_status == "closed":
        return "已办结" if a.replied_at or a.role == "lead" else "已结束"
    if ticket_status == "merged":
        return "已并单"
    if ticket_status in ("answered", "transferred", "rejected"):
        return "已结束"
    if a.replied_at:
        return AFTER_REPLY.get(ticket_status, "已反馈")
    if a.accepted_at:
        return "办理中"
    return "待签收"


def timeline_names(ticket: Ticket, *, db_session: Session) -> dict[str, str]:
    """The names the timeline shows for codes other than units: categories (category:CODE)."""
    codes: set[str] = set()
    for e in ticket.events:
        if e.action == "recategorize":
            for key in ("category", "from"):
                if isinstance((e.data or {}).get(key), str):
                    codes.add(e.data[key])
    if not codes:
        return {}
    rows = db_session.execute(select(Category.code, Category.name).where(Category.code.in_(codes)))
    return {f"category:{code}": name for code, name in rows}


def unit_names_for(ticket: Ticket, *, db_session: Session) -> dict[str, str]:
    codes: set[str] = {a.unit.code for a in ticket.assignments}
    for e in ticket.events:
        for key in ("lead", "to", "from"):
            if isinstance((e.data or {}).get(key), str):
                codes.add(e.data[key])
        for key in ("co_handlers", "units"):
            codes.update(v for v in (e.data or {}).get(key) or [] if isinstance(v, str))
    if not codes:
        return {}
    return dict(db_session.execute(select(Unit.code, Unit.name).where(Unit.code.in_(codes))).all())
