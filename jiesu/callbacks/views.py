"""Routes of 短信回访 (docs/callbacks.md).

- GET /r/{token}: the short link of the 回访邀请 SMS; it sends the browser on to the portal's
  rating page (/portal/link/{token}), where errors read as portal pages.
- GET/POST /portal/link/{token}: the order's number, title and checked reply and the rating form,
  no login and no tracking code (the signed token is the key); an expired token is 410, a forged
  one 404, a rated order says so (and a second rating is 409).
- POST /api/v1/sms/inbound: the SMS gateway posts each reply (JSON or form-encoded), with a
  system token scoped to channel `sms`; the answer is 200 `{"result": rated | queued |
  duplicate | opted_out}`.
- /console/callbacks/calls|replies|rated: the callback workbench's own tabs (the audited orders
  that need a call, the replies waiting for an agent, the orders rated by SMS or link).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from jiesu.access.policy import Principal
from jiesu.callbacks import links
from jiesu.callbacks import service as S
from jiesu.console.service import callback_tabs
from jiesu.console.views import frame, page
from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from jiesu.portal.service import NOTE_MAX, progress_of, rating_fields
from jiesu.tickets.lifecycle import SATISFACTION
from jiesu.tickets.models import Ticket
from jiesu.web.deps import DB, ReadSession, check_csrf, require
from jiesu.web.params import BigId
from jiesu.web.templating import render, zh

router = APIRouter(include_in_schema=False)
api_router = APIRouter(tags=["短信回访"])

CallbackAgent = page("workbench.callback")
Gateway = Annotated[Principal, Depends(require("sms.inbound"))]
DONE = {"sms_linked": "已关联工单并记录回访评价", "sms_handled": "已标记为处理完毕"}
TOKEN_MAX = 64  # longer than any token: refused before any work


# ---- the rating link ---------------------------------------------------------------------------


@router.get("/r/{token}")
def short_link(token: str) -> Response:
    if len(token) > TOKEN_MAX:
        token = token[:TOKEN_MAX]
    return RedirectResponse(f"/portal/link/{token}", status_code=303)


def _link_error(request: Request, exc: links.LinkError) -> HTMLResponse:
    if isinstance(exc, links.LinkExpired):
        message = "评价链接已过期。您仍可凭查询码在“查询进度”中评价，或拨打 12345 热线。"
        title = "链接已过期"
    else:
        message = "评价链接无效，请核对短信中的链接是否完整。"
        title = "链接无效"
    return render(request, "portal/rate_link_error.html",
                  {"title": title, "message": message, "status": exc.status},
                  status_code=exc.status)  # fmt: skip


def _ticket_id(token: str) -> int:
    return links.verify(token[:TOKEN_MAX], now=utcnow())


def _link_page(
    request: Request, db: Database, ticket_id: int, token: str, *, status_code: int = 200,
    flash: dict[str, str] | None = None, rating: dict[str, str] | None = None,
) -> HTMLResponse:  # fmt: skip
    with db.read() as session:
        ticket = session.scalar(
            select(Ticket).where(Ticket.id == ticket_id).options(selectinload(Ticket.events))
        )
        if ticket is None:
            return _link_error(request, links.LinkError("no such ticket"))
        view = progress_of(ticket, db_session=session)
    if view.can_rate:
        state = "open"
    elif view.satisfaction:
        state = "rated"
    else:
        state = "closed" if ticket.status in ("evaluated", "closed") else "not_yet"
    return render(
        request, "portal/rate_link.html",
        {"title": f"评价工单 {view.number}", "v": view, "token": token, "state": state,
         "flash": flash, "rating": rating or {}, "SATISFACTION": SATISFACTION,
         "note_max": NOTE_MAX},
        status_code=status_code,
    )  # fmt: skip


@router.get("/portal/link/{token}", response_class=HTMLResponse)
def link_page(request: Request, db: DB, token: str) -> Response:
    try:
        ticket_id = _ticket_id(token)
    except links.LinkError as exc:
        return _link_error(request, exc)
    return _link_page(request, db, ticket_id, token)


@router.post("/portal/link/{token}", response_class=HTMLResponse)
async def link_rate(request: Request, db: DB, token: str) -> Response:
    await check_csrf(request)
    try:
        ticket_id = _ticket_id(token)
    except links.LinkError as exc:
        return _link_error(request, exc)
    form = await request.form()
    values = {k: (v.strip()[: NOTE_MAX + 1] if isinstance(v := form.get(k), str) else "")
              for k in ("solved", "satisfaction", "note")}  # fmt: skip
    try:
        fields = rating_fields(values)
        with db.write() as session:
            S.rate_by_link(ticket_id, fields, db_session=session, now=utcnow())
    except (StaleDataError, IntegrityError):
        error: DomainError = Conflict("工单刚刚有更新，请刷新页面后再评价")
    except DomainError as exc:
        error = exc
    else:
        return _link_page(request, db, ticket_id, token,
                          flash={"kind": "ok", "text": "感谢您的评价！您的意见将帮助我们改进工作。"})  # fmt: skip
    flash = {"kind": "error", "text": zh(error.message)}
    return _link_page(request, db, ticket_id, token, status_code=error.status, flash=flash,
                      rating=values if isinstance(error, Invalid) else None)  # fmt: skip


# ---- the inbound SMS -----------------------------------------------------------------------


async def _body(request: Request) -> dict[str, Any]:
    """The gateway's fields, JSON or form-encoded; anything else is no fields at all."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        data = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise Invalid("请求体不是 JSON / the body is not JSON") from None
    if not isinstance(data, dict):
        raise Invalid("请求体须为 JSON 对象 / the body must be a JSON object")
    return data


def _answer(row: Any, result: str | None = None, **more: Any) -> JSONResponse:
    body = {"result": result or row.result, "reply": row.id, **more}
    return JSONResponse(body)


def _number(db: Database, ticket_id: int | None) -> dict[str, str]:
    if ticket_id is None:
        return {}
    with db.read() as session:
        number = session.scalar(select(Ticket.number).where(Ticket.id == ticket_id))
    return {"number": number} if number else {}


class InboundOut(BaseModel):
    result: Literal["rated", "queued", "duplicate", "opted_out"] = Field(
        description="rated 已评价 / queued 待人工回访 / duplicate 重复（未改变数据）/ opted_out 已退订"
    )
    reply: int = Field(description="短信回复记录编号")
    number: str | None = Field(None, description="评价（或重复评价）的工单编号")


INBOUND_BODY = {
    "type": "object",
    "required": ["id", "from", "text"],
    "properties": {
        "id": {"type": "string", "maxLength": 100, "description": "平台消息编号（幂等）"},
        "from": {"type": "string", "maxLength": 30, "description": "市民手机号"},
        "to": {"type": "string", "maxLength": 30, "description": "接收号码，可选"},
        "text": {"type": "string", "description": "短信内容"},
        "received_at": {"type": "string", "format": "date-time", "description": "接收时间，可选"},
    },
}


@api_router.post(
    "/api/v1/sms/inbound",
    response_model=InboundOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": INBOUND_BODY},
                "application/x-www-form-urlencoded": {"schema": INBOUND_BODY},
            },
        }
    },
    summary="短信平台推送市民回复（短信回访）",
    description="短信平台每收到一条上行短信即推送一次：`id`（平台消息编号，幂等）、`from`（手机号）、"
    "`to`（可选）、`text`、`received_at`（可选，ISO 8601）。JSON 或表单均可。须使用限定为短信渠道"
    "（sms）的系统令牌。回复 200：`result` 为 rated（已评价）、queued（待人工回访）、duplicate"
    "（重复，未改变任何数据）或 opted_out（已退订）。",
)
async def sms_inbound(request: Request, db: DB, gateway: Gateway) -> Response:
    if gateway.channel != "sms":
        raise Forbidden(
            "须使用限定为短信渠道（sms）的系统令牌 / a system token scoped to channel sms is required"
        )
    data = await _body(request)
    now = utcnow()
    try:
        message = S.inbound_of(data, now=now)
    except S.Refused as exc:
        names = {"id": "平台消息编号 id", "from": "发送号码 from", "text": "短信内容 text"}
        raise Invalid(f"{names[str(exc)]} 缺失或格式不正确 / `{exc}` is missing or invalid",
                      field=str(exc)) from None  # fmt: skip
    for attempt in range(3):
        try:
            with db.write() as session:
                row = S.seen(message.gateway_id, db_session=session)
                if row is not None:
                    return _answer(row, "duplicate", **_number(db, row.ticket_id))
                row = S.receive(message, db_session=session, now=now, queue_only=attempt == 2)
                answer = (row.id, row.result, row.ticket_id)
        except IntegrityError:  # the same id posted twice at once: the other one recorded it
            continue
        except (StaleDataError, DomainError):  # the order changed under us: read it again
            continue
        reply_id, result, ticket_id = answer
        return JSONResponse({"result": result, "reply": reply_id, **_number(db, ticket_id)})
    with db.read() as session:
        row = S.seen(message.gateway_id, db_session=session)
    if row is None:
        raise Conflict("短信回复暂未能记录，请稍后重试 / could not record the reply, retry")
    return _answer(row, "duplicate", **_number(db, row.ticket_id))


# ---- the workbench -------------------------------------------------------------------------


def _tabs(active: str) -> list[dict[str, Any]]:
    return [{"href": href, "label": label, "active": href == active}
            for href, label in callback_tabs()]  # fmt: skip


@router.get("/console/callbacks/calls", response_class=HTMLResponse)
def calls_page(request: Request, actor: CallbackAgent, session: ReadSession) -> Response:
    rows = S.need_a_call(db_session=session, now=utcnow())
    return render(request, "console/callbacks.html", frame(
        request, actor, session, title="回访评价", tabs=_tabs(request.url.path), view="calls",
        rows=rows, call_after=int(S.CALL_AFTER.total_seconds() // 3600)))  # fmt: skip


@router.get("/console/callbacks/rated", response_class=HTMLResponse)
def rated_page(request: Request, actor: CallbackAgent, session: ReadSession) -> Response:
    rows = S.rated_by_citizens(db_session=session)
    return render(request, "console/callbacks.html", frame(
        request, actor, session, title="回访评价", tabs=_tabs(request.url.path), view="rated",
        rows=rows))  # fmt: skip


def _replies_page(request: Request, actor: Principal, session: Any, *, status_code: int = 200,
                  flash: dict[str, str] | None = None) -> HTMLResponse:  # fmt: skip
    rows = S.queued_replies(db_session=session)
    context = frame(request, actor, session, title="回访评价", tabs=_tabs("/console/callbacks/replies"),
                    view="replies", rows=rows)  # fmt: skip
    done = DONE.get(request.query_params.get("done", ""))
    if flash or done:
        context["flash"] = flash or {"kind": "ok", "text": done}
    return render(request, "console/callbacks.html", context, status_code=status_code)


@router.get("/console/callbacks/replies", response_class=HTMLResponse)
def replies_page(request: Request, actor: CallbackAgent, session: ReadSession) -> Response:
    return _replies_page(request, actor, session)


@router.post("/console/callbacks/replies/{reply_id}/link", response_class=HTMLResponse)
async def link_reply(request: Request, reply_id: BigId, actor: CallbackAgent, db: DB) -> Response:
    form = await request.form()
    number = form.get("number")
    solved = form.get("solved")
    satisfaction = form.get("satisfaction")
    try:
        if not isinstance(number, str) or not number.strip():
            raise Invalid("请选择或填写要关联的工单编号 / choose the order", field="number")
        if solved not in ("yes", "no"):
            raise Invalid("请选择是否解决 / choose solved or not", field="solved")
        if satisfaction not in SATISFACTION:
            raise Invalid("请选择满意度 / choose the satisfaction", field="satisfaction")
        with db.write() as session:
            S.link_reply(reply_id, number[:32], solved=solved == "yes",
                         satisfaction=str(satisfaction), actor=actor, db_session=session,
                         now=utcnow())  # fmt: skip
    except (StaleDataError, IntegrityError):
        error: DomainError = Conflict("工单刚刚有更新，请重试 / the ticket changed, retry")
    except DomainError as exc:
        error = exc
    else:
        return RedirectResponse("/console/callbacks/replies?done=sms_linked", status_code=303)
    with db.read() as session:
        return _replies_page(request, actor, session, status_code=error.status,
                             flash={"kind": "error", "text": zh(error.message)})  # fmt: skip


@router.post("/console/callbacks/replies/{reply_id}/handled", response_class=HTMLResponse)
async def reply_handled(
    request: Request, reply_id: BigId, actor: CallbackAgent, db: DB
) -> Response:
    form = await request.form()
    note = form.get("note")
    try:
        with db.write() as session:
            S.mark_handled(reply_id, note if isinstance(note, str) else "", actor=actor,
                           db_session=session, now=utcnow())  # fmt: skip
    except NotFound:
        raise
    except DomainError as exc:
        with db.read() as session:
            return _replies_page(request, actor, session, status_code=exc.status,
                                 flash={"kind": "error", "text": zh(exc.message)})  # fmt: skip
    return RedirectResponse("/console/callbacks/replies?done=sms_handled", status_code=303)
