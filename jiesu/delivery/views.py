"""Delivery's routes: the admin's webhook subscribers and the delivery log, as API and as the
console's 系统管理 → 推送订阅 / 投递记录 pages. Every route names the `admin` permission."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jiesu.access.policy import Principal, mask_phone
from jiesu.db.base import utcnow
from jiesu.delivery import service
from jiesu.delivery.models import STATUSES, Delivery, WebhookSubscriber
from jiesu.delivery.service import DeliveryFilter, SubscriberIn
from jiesu.errors import DomainError, Invalid
from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.web.deps import DB, ReadSession, require, require_page
from jiesu.web.params import BigId, SmallId, form_day, form_page
from jiesu.web.templating import render, zh

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
console_router = APIRouter(prefix="/console/admin", include_in_schema=False)
Admin = Annotated[Principal, Depends(require("admin"))]
AdminPage = Annotated[Principal, Depends(require_page("admin"))]
PAGE = 50

STATUS_NAMES = {"pending": "等待投递", "sending": "投递中", "delivered": "已送达",
                "dead": "投递失败", "skipped": "未发送"}  # fmt: skip
CHANNEL_NAMES = {"webhook": "推送接口", "sms": "短信", "email": "电子邮件"}
DEADLINE_NAMES = {"warn": "临期提醒", "overdue": "超期提醒", "promise": "容缺补件提醒"}


def event_name(code: str) -> str:
    """An event type as people read it: 派单, 超期提醒, 工单的全部变化 …"""
    from jiesu.tickets.lifecycle import BY_NAME

    choices = dict(EVENT_CHOICES)
    if code in choices:
        return choices[code]
    family, _, name = code.partition(".")
    if family == "ticket" and name in BY_NAME:
        return BY_NAME[name].label
    if family == "deadline" and name in DEADLINE_NAMES:
        return DEADLINE_NAMES[name]
    return "受理" if code == "ticket.receive" else code


EVENT_CHOICES = (
    ("*", "全部事件"),
    ("ticket.*", "工单的全部变化"),
    ("ticket.receive", "受理"),
    ("ticket.dispatch", "派单"),
    ("ticket.accept", "签收"),
    ("ticket.reply", "答复"),
    ("ticket.audit", "审核"),
    ("ticket.evaluate", "回访评价"),
    ("ticket.close", "办结"),
    ("deadline.*", "时限提醒（全部）"),
    ("deadline.warn", "临期提醒"),
    ("deadline.overdue", "超期"),
)


# ---- shapes -----------------------------------------------------------------------------------


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: StrictStr = Field(min_length=1, max_length=100, description="名称")
    url: StrictStr = Field(min_length=1, max_length=500, description="推送地址")
    event_types: list[Annotated[StrictStr, Field(max_length=60)]] = Field(
        min_length=1,
        max_length=40,
        description="事件类型：ticket.<动作>、deadline.<类型>、ticket.*、*",
    )
    unit: StrictStr = Field("", max_length=40, description="只推送该单位及下级的工单（单位编码）")
    personal_data: StrictBool = Field(False, description="是否包含诉求人姓名和完整电话")
    active: StrictBool = True


class WebhookOut(BaseModel):
    id: int
    name: str
    url: str
    event_types: list[str]
    unit: str | None
    personal_data: bool
    active: bool
    created_at: datetime
    secret: str | None = Field(None, description="签名密钥，只在创建时返回一次")


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    ok: bool
    status_code: int | None
    detail: str
    duration_ms: int


class DeliveryOut(BaseModel):
    id: int
    idempotency_id: str
    number: str
    channel: str
    event_type: str
    address: str
    subscriber_id: int | None
    status: str
    attempts: int
    next_at: datetime | None
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    delivered_at: datetime | None
    log: list[AttemptOut] = []


class DeliveryPage(BaseModel):
    total: int
    page: int
    items: list[DeliveryOut]


def _unit_codes(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(Unit.id, Unit.code).where(Unit.id.in_(ids))).all())


def _unit_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(ids))).all())


def webhook_out(
    sub: WebhookSubscriber, codes: dict[int, str], *, secret: bool = False
) -> WebhookOut:
    return WebhookOut(
        id=sub.id, name=sub.name, url=sub.url, event_types=list(sub.event_types or []),
        unit=codes.get(sub.unit_id) if sub.unit_id else None, personal_data=sub.personal_data,
        active=sub.active, created_at=sub.created_at, secret=sub.secret if secret else None,
    )  # fmt: skip


def shown_address(d: Delivery, actor: Principal) -> str:
    """A phone or e-mail is personal: masked unless the viewer may reveal (the centre)."""
    if d.channel == "webhook" or actor.is_service_centre:
        return d.address
    if d.channel == "email" and "@" in d.address:
        user, _, host = d.address.partition("@")
        return f"{user[:1]}***@{host}"
    return mask_phone(d.address) or ""


# ---- API --------------------------------------------------------------------------------------


@router.get("/webhooks", response_model=list[WebhookOut], summary="推送订阅列表")
def list_webhooks(db: DB, _actor: Admin) -> list[WebhookOut]:
    with db.read() as session:
        subs = service.subscribers(db_session=session)
        codes = _unit_codes(session, {s.unit_id for s in subs if s.unit_id})
        return [webhook_out(s, codes) for s in subs]


@router.post("/webhooks", status_code=201, response_model=WebhookOut, summary="新建推送订阅")
def create_webhook(body: WebhookIn, db: DB, actor: Admin) -> WebhookOut:
    """The answer carries the signing secret (`whsec_…`) this once; keep it to verify."""
    with db.write() as session:
        sub = service.create_subscriber(SubscriberIn(**body.model_dump()), db_session=session,
                                        actor_id=actor.user_id, now=utcnow())  # fmt: skip
        codes = _unit_codes(session, {sub.unit_id} if sub.unit_id else set())
        return webhook_out(sub, codes, secret=True)


def _filter(status: str, channel: str, subscriber: int | None, number: str,
            day_from: str, day_to: str) -> DeliveryFilter:  # fmt: skip
    if status and status not in STATUSES:
        raise Invalid("投递状态无效 / unknown status", field="status")
    if channel and channel not in CHANNEL_NAMES:
        raise Invalid("渠道无效 / unknown channel", field="channel")
    tz = city_tz()
    start, end = form_day(day_from, field="from"), form_day(day_to, field="to")
    return DeliveryFilter(
        status=status, channel=channel, subscriber_id=subscriber, number=number.strip()[:16],
        day_from=datetime.combine(start, time(), tz) if start else None,
        day_to=datetime.combine(end, time(), tz) + timedelta(days=1) if end else None,
    )  # fmt: skip


def _deliveries(session: Session, f: DeliveryFilter, page: int, actor: Principal,
                *, log: bool) -> DeliveryPage:  # fmt: skip
    rows = session.execute(service.filtered(f).limit(PAGE).offset((page - 1) * PAGE)).all()
    logs = service.attempts_of([d.id for d, _ in rows], db_session=session) if log else {}
    items = [
        DeliveryOut(
            id=d.id,
            idempotency_id=f"msg_{d.id}",
            number=number,
            channel=d.channel,
            event_type=d.event_type,
            address=shown_address(d, actor),
            subscriber_id=d.subscriber_id,
            status=d.status,
            attempts=d.attempts,
            next_at=d.next_at if d.status == "pending" else None,
            last_error=d.last_error,
            last_status_code=d.last_status_code,
            created_at=d.created_at,
            delivered_at=d.delivered_at,
            log=[
                AttemptOut(
                    attempt=a.attempt,
                    at=a.at,
                    ok=a.ok,
                    status_code=a.status_code,
                    detail=a.detail,
                    duration_ms=a.duration_ms,
                )
                for a in logs.get(d.id, [])
            ],
        )
        for d, number in rows
    ]
    return DeliveryPage(total=service.count(f, db_session=session), page=page, items=items)


@router.get("/deliveries", response_model=DeliveryPage, summary="投递记录")
def list_deliveries(
    db: DB,
    actor: Admin,
    status: Annotated[str, Query(max_length=12)] = "",
    channel: Annotated[str, Query(max_length=12)] = "",
    subscriber: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    number: Annotated[str, Query(max_length=16)] = "",
    day_from: Annotated[str, Query(alias="from", max_length=10)] = "",
    day_to: Annotated[str, Query(alias="to", max_length=10)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> DeliveryPage:
    f = _filter(status, channel, subscriber, number, day_from, day_to)
    with db.read() as session:
        return _deliveries(session, f, page, actor, log=True)


@router.post("/deliveries/{delivery_id}/redeliver", response_model=DeliveryOut,
             summary="重新投递")  # fmt: skip
def redeliver_api(delivery_id: BigId, db: DB, actor: Admin) -> DeliveryOut:
    """A dead (or waiting) delivery goes out again on the worker's next round, with the same
    idempotency id (`webhook-id`)."""
    with db.write() as session:
        d = service.redeliver(delivery_id, db_session=session, now=utcnow())
        f = DeliveryFilter()
        number = session.execute(service.filtered(f).where(Delivery.id == d.id)).one()[1]
        return DeliveryOut(
            id=d.id, idempotency_id=f"msg_{d.id}", number=number, channel=d.channel,
            event_type=d.event_type, address=shown_address(d, actor),
            subscriber_id=d.subscriber_id, status=d.status, attempts=d.attempts,
            next_at=d.next_at, last_error=d.last_error, last_status_code=d.last_status_code,
            created_at=d.created_at, delivered_at=d.delivered_at,
        )  # fmt: skip


# ---- console ----------------------------------------------------------------------------------


def _frame(request: Request, actor: Principal, session: Session, section: str,
           **context: Any) -> dict[str, Any]:  # fmt: skip
    from jiesu.console.admin_views import _page

    return _page(request, actor, session, section, **context)


def _webhooks_page(request: Request, actor: Principal, session: Session, *,
                   secret: tuple[str, str] | None = None, flash: dict[str, str] | None = None,
                   status_code: int = 200) -> Response:  # fmt: skip
    subs = service.subscribers(db_session=session)
    codes = _unit_codes(session, {s.unit_id for s in subs if s.unit_id})
    dead = dict(
        session.execute(
            select(Delivery.subscriber_id, func.count())
            .where(Delivery.status == "dead", Delivery.subscriber_id.is_not(None))
            .group_by(Delivery.subscriber_id)
        ).all()
    )
    ctx = _frame(request, actor, session, "webhooks", subs=subs, codes=codes, dead=dead,
                 secret=secret, EVENT_CHOICES=EVENT_CHOICES, event_name=event_name,
                 unit_names=_unit_names(session, set(codes)))  # fmt: skip
    if flash:
        ctx["flash"] = flash
    return render(request, "console/webhook_list.html", ctx, status_code=status_code)


@console_router.get("/webhooks", response_class=HTMLResponse)
def webhooks_page(request: Request, actor: AdminPage, session: ReadSession) -> Response:
    return _webhooks_page(request, actor, session)


async def _form_in(request: Request) -> SubscriberIn:
    form = await request.form()
    types = [str(v) for v in form.getlist("event_types") if str(v)]
    extra = str(form.get("event_types_extra", ""))[:400]
    types += [t.strip() for t in extra.replace("，", ",").split(",") if t.strip()]
    return SubscriberIn(
        name=str(form.get("name", ""))[:100], url=str(form.get("url", ""))[:500],
        event_types=types[:40], unit=str(form.get("unit", "")).split(" ")[-1][:40],
        personal_data=form.get("personal_data") == "on", active=form.get("active") == "on",
    )  # fmt: skip


def _refused(request: Request, actor: Principal, db: Any, exc: DomainError) -> Response:
    with db.read() as session:
        return _webhooks_page(request, actor, session, status_code=exc.status,
                              flash={"kind": "error", "text": zh(exc.message)})  # fmt: skip


@console_router.post("/webhooks", response_class=HTMLResponse)
async def webhooks_create(request: Request, actor: AdminPage, db: DB) -> Response:
    data = await _form_in(request)
    try:
        with db.write() as session:
            sub = service.create_subscriber(data, db_session=session, actor_id=actor.user_id,
                                            now=utcnow())  # fmt: skip
            shown = (sub.name, sub.secret)
    except DomainError as exc:
        return _refused(request, actor, db, exc)
    with db.read() as session:
        return _webhooks_page(request, actor, session, secret=shown)


@console_router.post("/webhooks/{subscriber_id}", response_class=HTMLResponse)
async def webhooks_update(subscriber_id: SmallId, request: Request, actor: AdminPage,
                          db: DB) -> Response:  # fmt: skip
    data = await _form_in(request)
    try:
        with db.write() as session:
            service.update_subscriber(subscriber_id, data, db_session=session)
    except DomainError as exc:
        return _refused(request, actor, db, exc)
    return RedirectResponse("/console/admin/webhooks?done=saved", status_code=303)


@console_router.post("/webhooks/{subscriber_id}/rotate", response_class=HTMLResponse)
def webhooks_rotate(subscriber_id: SmallId, request: Request, actor: AdminPage,
                    db: DB) -> Response:  # fmt: skip
    with db.write() as session:
        secret = service.rotate_secret(subscriber_id, db_session=session, now=utcnow())
        name = service.get_subscriber(subscriber_id, db_session=session).name
    with db.read() as session:
        return _webhooks_page(request, actor, session, secret=(name, secret))


@console_router.post("/webhooks/{subscriber_id}/test", response_class=HTMLResponse)
def webhooks_test(subscriber_id: SmallId, request: Request, actor: AdminPage,
                  db: DB) -> Response:  # fmt: skip
    with db.read() as session:
        sub = service.get_subscriber(subscriber_id, db_session=session)
        session.expunge(sub)
    outcome = service.send_test(sub, now=utcnow())
    text = ("测试事件已送达：" if outcome.ok else "测试事件未送达：") + zh(outcome.detail)
    with db.read() as session:
        return _webhooks_page(request, actor, session,
                              flash={"kind": "ok" if outcome.ok else "error", "text": text})  # fmt: skip


@console_router.post("/webhooks/{subscriber_id}/redeliver", response_class=HTMLResponse)
def webhooks_redeliver(subscriber_id: SmallId, request: Request, actor: AdminPage,
                       db: DB) -> Response:  # fmt: skip
    with db.write() as session:
        service.get_subscriber(subscriber_id, db_session=session)
        n = service.redeliver_dead(subscriber_id, db_session=session, now=utcnow())
    with db.read() as session:
        return _webhooks_page(request, actor, session,
                              flash={"kind": "ok", "text": f"已安排重新投递 {n} 条失败的推送"})  # fmt: skip


@console_router.get("/deliveries", response_class=HTMLResponse)
def deliveries_page(request: Request, actor: AdminPage, session: ReadSession) -> Response:
    q = request.query_params
    sub_text = q.get("subscriber", "")
    subscriber = int(sub_text) if sub_text.isdigit() and 0 < int(sub_text) < 2**31 else None
    values = {k: q.get(k, "")[:20] for k in ("status", "channel", "number", "from", "to")}
    f = _filter(values["status"], values["channel"], subscriber, values["number"],
                values["from"], values["to"])  # fmt: skip
    page = form_page(q.get("page"), most=10_000)
    result = _deliveries(session, f, page, actor, log=True)
    query = {k: v for k, v in values.items() if v}
    if subscriber:
        query["subscriber"] = str(subscriber)
    ctx = _frame(
        request, actor, session, "deliveries", result=result, values=values,
        subscriber=subscriber, subs=service.subscribers(db_session=session),
        STATUS_NAMES=STATUS_NAMES, CHANNEL_NAMES=CHANNEL_NAMES, query=urlencode(query),
        event_name=event_name,
        page=page, PAGE=PAGE,
    )  # fmt: skip
    return render(request, "console/delivery_list.html", ctx)


@console_router.post("/deliveries/{delivery_id}/redeliver", response_class=HTMLResponse)
def deliveries_redeliver(delivery_id: BigId, request: Request, actor: AdminPage,
                         db: DB) -> Response:  # fmt: skip
    with db.write() as session:
        service.redeliver(delivery_id, db_session=session, now=utcnow())
    back = request.headers.get("referer", "")
    target = "/console/admin/deliveries"
    if "/console/admin/deliveries?" in back:
        target += "?" + back.split("?", 1)[1]
    return RedirectResponse(target, status_code=303)
