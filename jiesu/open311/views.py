"""Open311 GeoReport v2 under /open311/v2/ (docs/open311.md), and the admin's page for the keys.

Every endpoint answers in the format its suffix names (`.json` or `.xml`), errors included, in
the specification's shape (`[{"code": 400, "description": …}]`, `<errors><error>…`). Reading is
public as the specification has it; `POST requests` needs an `api_key` (403 without). These
routes name no staff permission (no sign-in): tests/test_permissions.py lists /open311 as public.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jiesu.access.policy import Principal
from jiesu.auth import counters
from jiesu.auth.limits import seconds
from jiesu.console.admin_views import SECTIONS
from jiesu.console.views import frame
from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.errors import DomainError
from jiesu.intel.service import advise
from jiesu.open311 import service
from jiesu.open311.models import Open311Key
from jiesu.open311.shapes import (
    FORMATS,
    MAX_RESULTS,
    Open311Error,
    comma_list,
    errors_content,
    parse_datetime,
    positive,
    split_format,
    to_xml,
    window,
)
from jiesu.settings import city_tz
from jiesu.tickets.service import create_ticket, number_ticket
from jiesu.web.deps import DB, get_db, require_page
from jiesu.web.params import SmallId
from jiesu.web.templating import render, zh

PREFIX = "/open311/v2"
router = APIRouter(prefix=PREFIX, tags=["open311"], include_in_schema=False)
admin_router = APIRouter(prefix="/console/admin/open311", include_in_schema=False)
Admin = Annotated[Principal, Depends(require_page("admin"))]
RESOURCES = ("discovery", "services", "requests", "tokens", "servicerequestupdates")


def answer(fmt: str, root: str, content: Any, status: int = 200) -> Response:
    if fmt == "xml":
        return Response(to_xml(root, content), status_code=status,
                        media_type="text/xml; charset=utf-8")  # fmt: skip
    return Response(orjson.dumps(content), status_code=status,
                    media_type="application/json; charset=utf-8")  # fmt: skip


def error(fmt: str, exc: Open311Error) -> Response:
    response = answer(fmt, "errors", errors_content(exc.code, exc.description), exc.code)
    if exc.retry_after:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _guarded(fmt: str, work: Callable[[], Response]) -> Response:
    try:
        return work()
    except Open311Error as exc:
        return error(fmt, exc)
    except DomainError as exc:  # a rule of intake refused it: the spec's 400 (403 for a role)
        code = 403 if exc.status in (401, 403) else 404 if exc.status == 404 else 400
        return error(fmt, Open311Error(code, exc.message))


def _format_of(suffix: str) -> str:
    return suffix if suffix in FORMATS else "json"


def _checked(fmt: str) -> None:
    if fmt not in FORMATS:
        raise Open311Error(400, f"不支持的格式 {fmt[:10]}，请用 .json 或 .xml / unsupported format")


def _base_url(request: Request) -> str:
    public = os.environ.get("JIESU_PUBLIC_URL", "").rstrip("/")
    return (public or str(request.base_url).rstrip("/")) + PREFIX


def _query(request: Request, db: Database, fmt: str) -> None:
    _checked(fmt)
    with db.read() as session:
        service.check_jurisdiction(request.query_params.get("jurisdiction_id"), db_session=session)


def _extensions(request: Request) -> bool:
    return request.query_params.get("extensions", "").lower() in ("true", "1", "yes")


# ---- discovery and services -----------------------------------------------------------------


@router.get("/discovery.{fmt}")
def discovery(fmt: str, request: Request) -> Response:
    db = get_db(request)

    def work() -> Response:
        _checked(fmt)
        with db.read() as session:
            content = service.discovery(db_session=session, base_url=_base_url(request),
                                        tz=city_tz())  # fmt: skip
        return answer(fmt, "discovery", content)

    return _guarded(_format_of(fmt), work)


@router.get("/services.{fmt}")
def service_list(fmt: str, request: Request) -> Response:
    db = get_db(request)

    def work() -> Response:
        _query(request, db, fmt)
        with db.read() as session:
            return answer(fmt, "services", service.services(db_session=session))

    return _guarded(_format_of(fmt), work)


@router.get("/services/{name}")
def service_definition(name: str, request: Request) -> Response:
    db = get_db(request)
    fmt = _format_of(name.rpartition(".")[2])

    def work() -> Response:
        code, f = split_format(name)
        _query(request, db, f)
        with db.read() as session:
            return answer(f, "service_definition", service.definition(code, db_session=session))

    return _guarded(fmt, work)


# ---- requests ---------------------------------------------------------------------------------


@router.post("/requests.{fmt}")
async def create_request(fmt: str, request: Request) -> Response:
    db = get_db(request)
    try:
        items = list((await request.form()).multi_items())
    except Exception:
        return error(_format_of(fmt), Open311Error(400, "请求体无法解析 / unreadable form body"))
    posted = service.read_form([(k, v) for k, v in items if isinstance(v, str)])

    def work() -> Response:
        _checked(fmt)
        now = utcnow()
        with db.read() as session:
            service.check_jurisdiction(posted.fields.get("jurisdiction_id"), db_session=session)
            given = posted.fields.get("api_key") or request.query_params.get("api_key")
            principal, key = service.key_principal(given, db_session=session)
            code = (posted.fields.get("service_code") or "").strip()
            if not code:
                raise Open311Error(400, "缺少 service_code / service_code is required")
            category = service.service(code, db_session=session)
            data = service.ticket_input(posted, category, db_session=session)
            service.media_url(posted)
        with db.write() as session:
            wait = counters.take(service.RATE_SCOPE, str(key.id), service.CREATE_BUDGET,
                                 db_session=session, now=now)  # fmt: skip
        if wait is not None:
            raise Open311Error(429, "提交过于频繁，请稍后再试 / too many requests for this key",
                               retry_after=seconds(wait))  # fmt: skip
        with db.write() as session:
            key_row = session.get(Open311Key, key.id)
            assert key_row is not None
            ticket = create_ticket(data, actor=principal, db_session=session, now=now,
                                   number_later=True)  # fmt: skip
            advise(ticket, actor=principal, db_session=session, now=now)
            kept = service.keep_request(ticket, posted, key_row, db_session=session, now=now)
            number_ticket(ticket, db_session=session)  # last: the day's counter row is hot
            content = service.created(ticket, kept)
        return answer(fmt, "service_requests", content, 201)

    return _guarded(_format_of(fmt), work)


def _request_query(request: Request) -> service.RequestQuery:
    tz = city_tz()
    p = request.query_params
    statuses = comma_list(p.get("status"))
    if any(s not in ("open", "closed") for s in statuses):
        raise Open311Error(400, "status 只能是 open 或 closed / status must be open or closed")
    start = parse_datetime(p.get("start_date"), "start_date", tz=tz)
    end = parse_datetime(p.get("end_date"), "end_date", tz=tz)
    after = parse_datetime(p.get("updated_after"), "updated_after", tz=tz)
    before = parse_datetime(p.get("updated_before"), "updated_before", tz=tz)
    # Asked by update time alone: no window on the request time (a client catching up).
    by_update = (after or before) and not (start or end)
    return service.RequestQuery(
        ids=comma_list(p.get("service_request_id")),
        codes=comma_list(p.get("service_code")),
        window=None if by_update else window(start, end, now=utcnow()),
        statuses=statuses,
        updated_after=after,
        updated_before=before,
        page=positive(p.get("page"), "page", default=1, most=100_000),
        page_size=positive(p.get("page_size"), "page_size", default=MAX_RESULTS, most=MAX_RESULTS),
    )


@router.get("/requests.{fmt}")
def request_list(fmt: str, request: Request) -> Response:
    db = get_db(request)

    def work() -> Response:
        _query(request, db, fmt)
        q = _request_query(request)
        with db.read() as session:
            content = service.find_requests(q, db_session=session, tz=city_tz(), now=utcnow(),
                                            extensions=_extensions(request))  # fmt: skip
        return answer(fmt, "service_requests", content)

    return _guarded(_format_of(fmt), work)


@router.get("/requests/{name}")
def request_one(name: str, request: Request) -> Response:
    db = get_db(request)

    def work() -> Response:
        number, f = split_format(name)
        _query(request, db, f)
        with db.read() as session:
            content = service.one_request(number, db_session=session, tz=city_tz(), now=utcnow(),
                                          extensions=_extensions(request))  # fmt: skip
        return answer(f, "service_requests", content)

    return _guarded(_format_of(name.rpartition(".")[2]), work)


@router.get("/tokens/{name}")
def token(name: str, request: Request) -> Response:
    db = get_db(request)

    def work() -> Response:
        value, f = split_format(name)
        _query(request, db, f)
        with db.read() as session:
            return answer(f, "service_requests", service.token(value, db_session=session))

    return _guarded(_format_of(name.rpartition(".")[2]), work)


@router.get("/servicerequestupdates.{fmt}")
def request_updates(fmt: str, request: Request) -> Response:
    db = get_db(request)

    def work() -> Response:
        _query(request, db, fmt)
        tz, p = city_tz(), request.query_params
        w = window(parse_datetime(p.get("start_date"), "start_date", tz=tz),
                   parse_datetime(p.get("end_date"), "end_date", tz=tz), now=utcnow())  # fmt: skip
        page = positive(p.get("page"), "page", default=1, most=100_000)
        size = positive(p.get("page_size"), "page_size", default=MAX_RESULTS, most=MAX_RESULTS)
        with db.read() as session:
            content = service.updates(w, db_session=session, tz=tz, page=page, page_size=size)
        return answer(fmt, "service_request_updates", content)

    return _guarded(_format_of(fmt), work)


@router.api_route("/{rest:path}", methods=["GET", "POST"])
def unknown(rest: str) -> Response:
    """Anything else under /open311/v2/: the specification's 404, or a 400 when only the
    format suffix is wrong or missing."""
    head = rest.split("/", 1)[0]
    stem, _, suffix = head.partition(".")
    fmt = _format_of(rest.rpartition(".")[2])
    if stem in RESOURCES and (not suffix or suffix not in FORMATS):
        return error(fmt, Open311Error(400, "请以 .json 或 .xml 结尾 / use the .json or .xml "
                                            "format suffix"))  # fmt: skip
    return error(fmt, Open311Error(404, "没有这个 Open311 资源 / no such Open311 resource"))


# ---- the admin's page: 系统管理 → Open311 接入 -------------------------------------------------


def _page(request: Request, actor: Principal, session: Any, **context: Any) -> dict[str, Any]:
    tabs = [{"href": f"/console/admin/{key}", "label": label, "active": key == "open311"}
            for key, label in SECTIONS]  # fmt: skip
    return frame(request, actor, session, title="系统管理 · Open311 接入", tabs=tabs,
                 rows=service.keys(db_session=session),
                 endpoint=_base_url(request), **context)  # fmt: skip


@admin_router.get("", response_class=HTMLResponse)
def keys_page(request: Request, actor: Admin, db: DB) -> Response:
    with db.read() as session:
        return render(request, "console/open311_keys.html", _page(request, actor, session))


@admin_router.post("", response_class=HTMLResponse)
async def key_issue(request: Request, actor: Admin, db: DB) -> Response:
    form = await request.form()
    name, username = str(form.get("name") or ""), str(form.get("username") or "")
    try:
        with db.write() as session:
            value, row = service.issue_key(name, username, by=actor, db_session=session,
                                           now=utcnow())  # fmt: skip
            issued = {"name": row.name, "value": value}
    except DomainError as exc:
        with db.read() as session:
            ctx = _page(request, actor, session, typed={"name": name, "username": username})
        ctx["flash"] = {"kind": "error", "text": zh(exc.message)}
        return render(request, "console/open311_keys.html", ctx, status_code=exc.status)
    with db.read() as session:  # the value is shown once, on this page, never again
        ctx = _page(request, actor, session, issued=issued)
    return render(request, "console/open311_keys.html", ctx, status_code=201)


@admin_router.post("/{key_id}/revoke", response_class=HTMLResponse)
def key_revoke(key_id: SmallId, request: Request, actor: Admin, db: DB) -> Response:
    with db.write() as session:
        service.revoke_key(key_id, by=actor, db_session=session, now=utcnow())
    return RedirectResponse("/console/admin/open311?done=saved", status_code=303)
