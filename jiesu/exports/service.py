"""The row sources of the exports: each list as the user sees it, with the same filters, the
same visibility and the same masking, as an `Export` whose rows stream from the database.

An `Export` is prepared in the request (filters validated, names resolved: a wrong filter is a
422 before any byte is sent) and its `rows(session)` is read later, from a session that lives as
long as the download: one server-side cursor (`yield_per`), plain columns rather than ORM
objects, related names (units, categories) looked up from small dictionaries read once. So a
million tickets never sit in memory.

- tickets: the console's search and workbench queues (`TicketFilter`, as `list_tickets` reads it)
  and GET /api/v1/tickets; the requester is masked as in every list (`masked_requester`).
- rankings: the month's 三率 table of a kind of unit, as /console/assessment and
  GET /api/v1/metrics/units show it (a unit sees the units of its own tree).
- warnings: the reader's warnings, as `analysis.service.listing` scopes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from jiesu.access.policy import Principal
from jiesu.analysis import service as warnings_service
from jiesu.assessment import service as A
from jiesu.assessment.rates import BY_KEY
from jiesu.db.base import utcnow
from jiesu.errors import Forbidden, Invalid
from jiesu.exports.writers import Column
from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.taxonomy.models import Category
from jiesu.tickets.models import STATUS_NAMES, Ticket
from jiesu.tickets.service import (
    TicketFilter,
    filtered,
    masked_requester,
    ticket_order,
)
from jiesu.tickets.shapes import normalise_phone
from jiesu.web.labels import CHANNEL_NAMES, REQUEST_TYPE_NAMES

BATCH = 2_000  # rows per fetch from the server-side cursor

# The console's workbenches (console/service.queues) and the permission each page names.
WORKBENCHES = {
    "dispatch": "workbench.dispatch",
    "inbox": "workbench.unit",
    "callbacks": "workbench.callback",
    "supervision": "workbench.supervision",
}
BENCH_TITLES = {"dispatch": "派单审核", "inbox": "承办工单", "callbacks": "回访评价",
                "supervision": "督查督办"}  # fmt: skip


@dataclass
class Export:
    """One list, ready to be written: `rows(session)` streams it."""

    name: str  # tickets | rankings | warnings | deliveries
    title: str  # the sheet's name, in Chinese
    filename: str  # without the extension
    columns: list[Column]
    rows: Callable[[Session], Iterator[Sequence[Any]]]
    filters: dict[str, Any] = field(default_factory=dict)  # for the audit log


def _today_text(now: datetime | None = None) -> str:
    return f"{(now or utcnow()).astimezone(city_tz()):%Y%m%d}"


# ---- tickets -------------------------------------------------------------------------------

TICKET_COLUMNS = [
    Column("工单编号", 16),
    Column("受理时间", 17),
    Column("渠道", 10),
    Column("诉求类型", 9),
    Column("事项分类", 30),
    Column("标题", 30),
    Column("诉求内容", 60),
    Column("诉求人", 9),
    Column("电话", 14),
    Column("地址", 30),
    Column("区", 12),
    Column("街道（乡镇）", 14),
    Column("状态", 10),
    Column("主办单位", 20),
    Column("轮次", 6),
    Column("办结时限", 17),
    Column("结束时间", 17),
]


def api_filter(
    actor: Principal,
    *,
    status: list[str] | None = None,
    unit: str | None = None,
    category: str | None = None,
    text: str | None = None,
    created_from: Any = None,
    created_to: Any = None,
    phone: str | None = None,
) -> TicketFilter:
    """The filter of GET /api/v1/tickets, with its rule that only the centre searches by phone."""
    if phone:
        if not actor.is_service_centre:
            raise Forbidden(
                "只有热线中心可按电话查询 / only the service centre may search by phone"
            )
        try:
            phone = normalise_phone(phone)
        except ValueError as exc:
            raise Invalid(str(exc), field="phone") from exc
    return TicketFilter(status, unit, category, text, created_from, created_to, phone)


def ticket_query(
    f: TicketFilter, *, actor: Principal, db_session: Session, now: datetime | None = None
) -> Select[Any]:
    """The tickets of `f` that the actor may see, in the list's order: the conditions of
    `tickets.service.list_tickets` (which pages them; this streams them all)."""
    stmt, _ = filtered(f, actor=actor, db_session=db_session, now=now)
    return stmt.order_by(*ticket_order(f.sort))


_TICKET_FIELDS = (
    Ticket.number, Ticket.created_at, Ticket.channel, Ticket.request_type, Ticket.category_id,
    Ticket.title, Ticket.content, Ticket.requester_name, Ticket.requester_phone,
    Ticket.requester_confidential, Ticket.address, Ticket.district_id, Ticket.street_id,
    Ticket.status, Ticket.lead_unit_id, Ticket.round, Ticket.due_at, Ticket.closed_at,
)  # fmt: skip


def ticket_rows(stmt: Select[Any], session: Session) -> Iterator[list[Any]]:
    """The rows of a ticket query as people read them, streamed."""
    units = dict(session.execute(select(Unit.id, Unit.name)).all())
    cats = dict(session.execute(select(Category.id, Category.full_name)).all())
    query = stmt.with_only_columns(*_TICKET_FIELDS).execution_options(yield_per=BATCH)
    for t in session.execute(query):
        # The list's masking rule, on the plain row: name and phone masked, a confidential
        # requester left out whole (the page shows 保密).
        who = masked_requester(cast(Ticket, t))
        yield [
            t.number,
            t.created_at,
            CHANNEL_NAMES.get(t.channel, t.channel),
            REQUEST_TYPE_NAMES.get(t.request_type or "", ""),
            cats.get(t.category_id, "") if t.category_id else "未分类",
            t.title,
            t.content,
            "保密" if who.confidential else (who.name or ""),
            who.phone or "",
            t.address or "",
            units.get(t.district_id, "") if t.district_id else "",
            units.get(t.street_id, "") if t.street_id else "",
            STATUS_NAMES.get(t.status, t.status),
            units.get(t.lead_unit_id, "") if t.lead_unit_id else "",
            t.round,
            t.due_at,
            t.closed_at,
        ]


def _filter_record(f: TicketFilter) -> dict[str, Any]:
    return {k: (str(v) if not isinstance(v, list | bool | str) else v)
            for k, v in f.__dict__.items() if v and not (k == "sort" and v == "-created")}  # fmt: skip


def tickets(
    f: TicketFilter,
    *,
    actor: Principal,
    db_session: Session,
    bench: str | None = None,
    queue_label: str | None = None,
    now: datetime | None = None,
) -> Export:
    stmt = ticket_query(f, actor=actor, db_session=db_session, now=now)
    title = BENCH_TITLES.get(bench or "", "工单")
    name = "_".join(x for x in (title, queue_label, _today_text(now)) if x)
    return Export(
        name="tickets", title=title, filename=name, columns=TICKET_COLUMNS,
        rows=lambda session: ticket_rows(stmt, session),
        filters={**_filter_record(f), **({"bench": bench} if bench else {})},
    )  # fmt: skip


# ---- rankings ------------------------------------------------------------------------------

KINDS = {"district": "区", "street": "街道（乡镇）", "department": "部门", "company": "企业"}
# The columns of the assessment page, in its order (console/analysis_views.COLUMNS).
RATE_KEYS = ("response", "resolution", "satisfaction", "accept_on_time", "complete_on_time",
             "overdue", "extension", "return", "dispatch_accuracy", "reopen", "callback",
             "avg_hours")  # fmt: skip


def ranking_columns() -> list[Column]:
    rates = [Column(f"{BY_KEY[k].name}（{'小时' if k == 'avg_hours' else '%'}）", 12)
             for k in RATE_KEYS]  # fmt: skip
    return [Column("名次", 6), Column("单位", 24), Column("单位编码", 12), Column("工单", 8),
            Column("待响应", 8), *rates, Column("综合得分", 10),
            Column("较上月名次变化（正数为上升）", 14), Column("专班", 6),
            Column("样本不足", 8)]  # fmt: skip


def _month(period: str | None, now: datetime | None = None) -> str:
    from jiesu.web.params import form_month  # the pages' own check of a month

    if period:
        return form_month(period)
    return f"{(now or utcnow()).astimezone(city_tz()):%Y-%m}"


def rankings(
    period: str | None,
    kind: str | None,
    *,
    live: bool = False,
    actor: Principal,
    db_session: Session,
    console: bool = False,
    now: datetime | None = None,
) -> Export:
    """The 三率 table. `console`: as /console/assessment shows it (a unit admin: the units under
    their own, their district's streets by default); else as GET /api/v1/metrics/units (a unit:
    itself and the units under it)."""
    month = _month(period, now)
    units = A.unit_index(db_session=db_session)
    own = None if actor.is_service_centre else units.by_id.get(actor.unit_id)
    if not actor.is_service_centre and own is None:
        raise Forbidden("没有所属单位 / no unit")
    if console:
        if kind not in KINDS:
            kind = "street" if own is not None and own.kind == "district" else "district"
    elif kind not in KINDS:
        raise Invalid(f"kind 须为 {' / '.join(KINDS)} / unknown kind", field="kind")
    assert kind is not None
    ranking = A.rankings(month, kind, db_session=db_session, live=live, now=now)
    rows = list(ranking.rows)
    if own is not None:
        rows = [r for r in rows if (u := units.by_code.get(r.code)) and u.path.startswith(own.path)
                and not (console and u.id == own.id)]  # fmt: skip

    def pct(rate: Any, key: str) -> float | None:
        if rate is None or rate.value is None:
            return None
        value = float(rate.value)
        return round(value, 1) if key == "avg_hours" else round(value * 100, 2)

    def stream(session: Session) -> Iterator[list[Any]]:
        for r in rows:
            yield [r.rank if r.rank else "—", r.name, r.code, r.orders, r.pending,
                   *(pct(r.rates.get(k), k) for k in RATE_KEYS),
                   round(r.composite, 2) if r.composite is not None else None,
                   r.change, "是" if r.task_force else "", "是" if r.small_sample else ""]  # fmt: skip

    basis = "公布数据" if ranking.basis == "frozen" else "实时数据"
    return Export(
        name="rankings", title=f"考评排名{month}", columns=ranking_columns(), rows=stream,
        filename=f"考评排名_{KINDS[kind]}_{month}_{basis}",
        filters={"period": month, "kind": kind, "live": live},
    )  # fmt: skip


# ---- warnings ------------------------------------------------------------------------------

WARNING_COLUMNS = [Column("日期", 11), Column("类型", 12), Column("预警", 36),
                   Column("主要数据", 40), Column("说明", 60), Column("依据工单（件）", 10),
                   Column("状态", 14), Column("评分", 8)]  # fmt: skip
EVERY_WARNING = 1_000_000


def warnings(
    status: str | None,
    kind: str | None,
    *,
    actor: Principal,
    db_session: Session,
    console: bool = False,
    now: datetime | None = None,
) -> Export:
    """The warnings the reader may see (their tree; evidence counted as they may open it)."""
    if console and status not in warnings_service.STATUS_NAMES:
        status = "open"  # as the page does
    names, statuses = warnings_service.KIND_NAMES, warnings_service.STATUS_NAMES
    found = warnings_service.listing(reader=actor, db_session=db_session, status=status,
                                     kind=kind or None, limit=EVERY_WARNING)  # fmt: skip

    def stream(session: Session) -> Iterator[list[Any]]:
        for w in found:
            lines = warnings_service.figure_lines(w.kind, w.figures)
            yield [w.day, names.get(w.kind, w.kind), w.title,
                   "；".join(f"{label}：{sentence}" for label, sentence in lines),
                   w.explanation, len(w.evidence), statuses.get(w.status, w.status),
                   round(w.score, 2)]  # fmt: skip

    label = statuses.get(status or "", "全部")
    return Export(
        name="warnings", title="预警", columns=WARNING_COLUMNS, rows=stream,
        filename="_".join(x for x in ("预警", label, names.get(kind or "", ""),
                                       _today_text(now)) if x),
        filters={"status": status, "kind": kind},
    )  # fmt: skip


# ---- deliveries (the delivery log, jiesu/delivery; admin only) ----------------------------------

DELIVERY_COLUMNS = [Column("创建时间", 17), Column("工单编号", 16), Column("渠道", 10),
                    Column("事件", 18), Column("接收方", 28), Column("订阅方", 16),
                    Column("状态", 10), Column("尝试次数", 8), Column("下次尝试", 17),
                    Column("送达时间", 17), Column("最后状态码", 10), Column("最后错误", 40),
                    Column("幂等标识", 14)]  # fmt: skip


def mask_email(address: str) -> str:
    """z***@example.com: the first character of the mailbox and the domain."""
    local, at, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if at else "***"


def masked_address(channel: str, address: str) -> str:
    """A delivery's addressee in a file: phones and e-mails always masked (a file travels
    further than a page), a webhook's address without its query string (it may carry a key)."""
    from jiesu.access.policy import mask_phone

    if channel == "sms":
        return mask_phone(address) or ""
    if channel == "email":
        return mask_email(address)
    return address.split("?", 1)[0]


def delivery_filter(
    *,
    status: str | None = None,
    channel: str | None = None,
    subscriber: str | int | None = None,
    number: str | None = None,
    day_from: str | None = None,
    day_to: str | None = None,
) -> Any:
    """The delivery log page's filter from its query string, checked as the page checks it."""
    from jiesu.delivery.views import _filter

    sub = str(subscriber or "")
    subscriber_id = int(sub) if sub.isdigit() and 0 < int(sub) < 2**31 else None
    return _filter((status or "")[:20], (channel or "")[:20], subscriber_id,
                   (number or "")[:20], (day_from or "")[:20], (day_to or "")[:20])  # fmt: skip


def deliveries(
    f: Any, *, actor: Principal, db_session: Session, now: datetime | None = None
) -> Export:
    """The delivery log with the page's filter (`delivery.service.filtered`), newest first."""
    from jiesu.delivery import service as D
    from jiesu.delivery.models import WebhookSubscriber
    from jiesu.delivery.views import CHANNEL_NAMES as CHANNELS
    from jiesu.delivery.views import STATUS_NAMES as STATUSES

    if actor.role != "admin":
        raise Forbidden("仅系统管理员可导出投递记录 / admin only")
    stmt = D.filtered(f)

    def stream(session: Session) -> Iterator[list[Any]]:
        names = dict(session.execute(select(WebhookSubscriber.id, WebhookSubscriber.name)).all())
        for d, number in session.execute(stmt.execution_options(yield_per=BATCH)):
            yield [d.created_at, number, CHANNELS.get(d.channel, d.channel), d.event_type,
                   masked_address(d.channel, d.address),
                   names.get(d.subscriber_id, "") if d.subscriber_id else "",
                   STATUSES.get(d.status, d.status), d.attempts,
                   d.next_at if d.status == "pending" else None, d.delivered_at,
                   d.last_status_code, d.last_error or "", f"msg_{d.id}"]  # fmt: skip
            session.expunge(d)  # a log of millions: the identity map does not grow with it

    record = {k: str(v) for k, v in f.__dict__.items() if v}
    return Export(
        name="deliveries", title="投递记录", columns=DELIVERY_COLUMNS, rows=stream,
        filename="_".join(x for x in ("投递记录", STATUSES.get(f.status, ""), _today_text(now))
                          if x),
        filters=record,
    )  # fmt: skip


# ---- by name (the CLI) ---------------------------------------------------------------------

# The permission each list names: the same as its page's.
PERMISSION = {
    "tickets": "tickets.read",
    "rankings": "assessment.view",
    "warnings": "warnings.view",
    "deliveries": "admin",
}


def build(name: str, *, actor: Principal, db_session: Session, **options: Any) -> Export:
    """An export by its list's name, with the API's filters (`jiesu export`)."""
    if name == "tickets":
        sort = options.pop("sort", "-created")
        f = api_filter(actor, **options)
        f.sort = sort
        return tickets(f, actor=actor, db_session=db_session)
    if name == "rankings":
        return rankings(options.get("period"), options.get("kind"), live=bool(options.get("live")),
                        actor=actor, db_session=db_session)  # fmt: skip
    if name == "warnings":
        return warnings(options.get("status"), options.get("kind"), actor=actor,
                        db_session=db_session)  # fmt: skip
    if name == "deliveries":
        return deliveries(delivery_filter(**options), actor=actor, db_session=db_session)
    raise Invalid(f"没有这个列表 {name} / unknown list", field="list")
