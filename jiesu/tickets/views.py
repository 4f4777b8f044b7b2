"""The ticket endpoints of the REST contract (SPEC §9)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from jiesu.access.policy import Principal
from jiesu.calls.service import link as link_call
from jiesu.db.base import utcnow
from jiesu.errors import Conflict, Forbidden, Invalid
from jiesu.intel.service import advise, stored_advice
from jiesu.ops.metrics import time_advice
from jiesu.tickets.actions import take_action
from jiesu.tickets.service import (
    TicketFilter,
    create_ticket,
    find_idempotent,
    get_ticket,
    list_tickets,
    number_ticket,
    reveal_requester,
    ticket_deadlines,
    ticket_out,
    total_capped,
)
from jiesu.tickets.shapes import (
    RequesterOut,
    TicketCreate,
    TicketOut,
    TicketPage,
    normalise_phone,
)
from jiesu.web.deps import DB, ReadSession, client_ip, require
from jiesu.web.params import MAX_PAGE, BigId, QueryDay

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])
Intake = Annotated[Principal, Depends(require("tickets.intake"))]
Reader = Annotated[Principal, Depends(require("tickets.read"))]
Actor = Annotated[Principal, Depends(require("tickets.act"))]
Revealer = Annotated[Principal, Depends(require("tickets.reveal"))]

IdempotencyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", max_length=200, description="重试时带同一值，不会重复建单"),
]


@router.post("", status_code=201, response_model=TicketOut, summary="受理诉求，建立工单")
def create(
    body: TicketCreate,
    db: DB,
    principal: Intake,
    response: Response,
    idempotency_key: IdempotencyHeader = None,
) -> TicketOut:
    if principal.channel and body.channel.value != principal.channel:
        raise Forbidden(
            f"此令牌只能受理「{principal.channel}」渠道的诉求 / this token is limited to channel "
            f"{principal.channel}"
        )
    key = idempotency_key.strip() if idempotency_key else None
    for attempt in range(2):
        try:
            with db.write() as session:
                if key and (
                    earlier := find_idempotent(key, body, actor=principal, db_session=session)
                ):
                    response.headers["Idempotent-Replayed"] = "true"
                    response.headers["Location"] = f"/api/v1/tickets/{earlier.id}"
                    out = ticket_out(earlier, principal)
                    out.suggestions = stored_advice(earlier.id, db_session=session)
                    return out
                ticket = create_ticket(
                    body, actor=principal, db_session=session, idempotency_key=key,
                    number_later=True,
                )  # fmt: skip
                if body.call_id:  # taken from a call the telephony reported: keep it
                    link_call(body.call_id, ticket, actor=principal, db_session=session)
                with time_advice():
                    advice = advise(ticket, actor=principal, db_session=session)
                # Last, so that the day's counter row is locked only until the commit just after.
                number_ticket(ticket, db_session=session)
                out = ticket_out(ticket, principal)
                out.suggestions = advice
            response.headers["Location"] = f"/api/v1/tickets/{ticket.id}"
            return out  # only now: the transaction has committed
        except IntegrityError:
            # A concurrent request with the same key won the race: answer with its ticket.
            if not key or attempt:
                raise
    raise AssertionError("unreachable")


@router.get("", response_model=TicketPage, summary="工单列表（按权限过滤）")
def index(
    session: ReadSession,
    principal: Reader,
    status: Annotated[list[str] | None, Query(description="状态，可多选")] = None,
    unit: Annotated[str | None, Query(max_length=40, description="单位编码（含下级）")] = None,
    category: Annotated[str | None, Query(max_length=20, description="分类编码（含下级）")] = None,
    text: Annotated[str | None, Query(max_length=100, description="编号、标题或内容")] = None,
    created_from: Annotated[QueryDay, Query(description="受理日期起（含）")] = None,
    created_to: Annotated[QueryDay, Query(description="受理日期止（含）")] = None,
    phone: Annotated[str | None, Query(max_length=30, description="诉求人电话")] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 20,
) -> TicketPage:
    if phone:
        if not principal.is_service_centre:
            raise Forbidden(
                "只有热线中心可按电话查询 / only the service centre may search by phone"
            )
        try:
            phone = normalise_phone(phone)
        except ValueError as exc:
            raise Invalid(str(exc), field="phone") from exc
    f = TicketFilter(status, unit, category, text, created_from, created_to, phone)
    rows, total = list_tickets(
        f, actor=principal, db_session=session, page=page, page_size=page_size
    )
    return TicketPage(
        items=[ticket_out(t, principal) for t in rows],
        total=total,
        total_capped=total_capped(total),
        page=page,
        page_size=page_size,
    )


@router.get("/{ticket_id}", response_model=TicketOut, summary="工单详情（含派单、时限与时间线）")
def show(
    ticket_id: BigId,
    session: ReadSession,
    principal: Reader,
) -> TicketOut:
    ticket = get_ticket(ticket_id, actor=principal, db_session=session)
    current = ticket_deadlines(ticket, db_session=session, now=utcnow())
    return ticket_out(ticket, principal, detail=True, deadlines=current)


ActionName = Annotated[
    str, Path(max_length=40, pattern=r"^[a-z_]+$", description="操作（见 docs/lifecycle.md）")
]


@router.post(
    "/{ticket_id}/actions/{action}",
    response_model=TicketOut,
    summary="对工单执行操作（派单、签收、办结…）",
)
def act(
    ticket_id: BigId,
    action: ActionName,
    db: DB,
    principal: Actor,
    body: Annotated[dict[str, Any], Body(default_factory=dict, description="该操作的字段")],
    if_match: Annotated[str | None, Header(alias="If-Match", max_length=20)] = None,
) -> TicketOut:
    """Illegal in this state → 409 saying why; not allowed → 403; bad field → 422 naming it;
    a stale `version` (body) or `If-Match` (header) → 409."""
    data = dict(body)
    version = data.pop("version", None)
    if if_match is not None:
        version = if_match.strip().strip('"').removeprefix("W/").strip('"')
        if not version.isdigit():
            raise Invalid(
                "If-Match 须为工单版本号 / If-Match must be the ticket version", field="If-Match"
            )
        version = int(version)
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise Invalid("version 须为整数 / version must be a whole number", field="version")
    try:
        with db.write() as session:
            ticket, _, current = take_action(
                ticket_id,
                action,
                data,
                actor=principal,
                db_session=session,
                expected_version=version,
            )
            out = ticket_out(ticket, principal, detail=True, deadlines=current)
    except (StaleDataError, IntegrityError) as exc:
        raise Conflict(
            "工单刚被他人更新，请刷新后重试 / the ticket was changed concurrently: reload and retry"
        ) from exc
    return out


@router.post(
    "/{ticket_id}/reveal",
    response_model=RequesterOut,
    summary="查看诉求人完整姓名和电话（记录在审计日志）",
)
def reveal(
    ticket_id: BigId,
    db: DB,
    principal: Revealer,
    request: Request,
) -> RequesterOut:
    """Only the service centre and the lead unit may; a confidential requester only to the
    centre. Each reveal is written to the audit log with who, when, from where."""
    with db.write() as session:
        return reveal_requester(
            ticket_id, actor=principal, db_session=session, ip=client_ip(request)
        )
