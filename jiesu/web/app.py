"""The FastAPI application: routers, error answers, request size limit, health.

Every error leaves as JSON `{"error", "message", "field"?}` with a bilingual message: domain errors
with their own status, validation errors as 422 naming the field, oversize bodies as 413, routing
errors as 404/405. No request can produce a 500 by being malformed.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jiesu import __version__
from jiesu.assessment.views import router as assessment_router
from jiesu.auth.views import admin_router as tokens_router
from jiesu.auth.views import router as auth_router
from jiesu.callbacks.views import api_router as callbacks_api
from jiesu.callbacks.views import router as callbacks_router
from jiesu.calls.views import console_router as calls_console_router
from jiesu.calls.views import router as calls_router
from jiesu.console.admin_views import router as admin_router
from jiesu.console.admin_views import unit_router
from jiesu.console.analysis_views import router as analysis_router
from jiesu.console.lookup import router as lookup_router
from jiesu.console.views import login_redirect
from jiesu.console.views import router as console_router
from jiesu.dashboard.views import router as dashboard_router
from jiesu.db.engine import Database, from_settings
from jiesu.delivery.views import console_router as delivery_console
from jiesu.delivery.views import router as delivery_api
from jiesu.errors import DomainError
from jiesu.exports.views import api as exports_api
from jiesu.exports.views import router as exports_router
from jiesu.knowledge.call_views import router as knowledge_call_router
from jiesu.knowledge.learn_views import router as knowledge_learn_router
from jiesu.knowledge.pages import router as knowledge_pages
from jiesu.knowledge.views import router as knowledge_api
from jiesu.notices.views import router as notices_console
from jiesu.open311.views import admin_router as open311_admin
from jiesu.open311.views import router as open311_router
from jiesu.ops.health import router as ops_router
from jiesu.ops.middleware import Observability
from jiesu.org.views import router as org_router
from jiesu.portal.service import SUBMIT_BODY_LIMIT
from jiesu.portal.views import router as portal_router
from jiesu.settings import city_tz
from jiesu.taxonomy.service import calendar_warnings
from jiesu.taxonomy.views import router as taxonomy_router
from jiesu.tickets.views import router as tickets_router
from jiesu.web.deps import LoginRequired
from jiesu.web.headers import SecurityHeaders, policy, script_hashes

log = logging.getLogger("jiesu.web")

MAX_BODY_BYTES = 256 * 1024
STATIC_DIR = Path(__file__).resolve().parent / "static"
# Paths that take more: the portal's form with up to 3 photos of 2 MB each; the knowledge
# base's XLSX import (admin), a workbook of up to 20 MB.
LARGER_BODIES = {"/portal/submit": SUBMIT_BODY_LIMIT, "/console/knowledge/import": 20 * 1024**2}


# A NUL in text: PostgreSQL refuses it (a 500 if it got that far), SQLite would store it. Nor
# can PostgreSQL store a lone UTF-16 surrogate, which JSON can spell (`\ud800`).
_NUL = re.compile(rb"\x00")
_NUL_IN_QUERY = re.compile(rb"%00|\x00")
# `\u0000` or a surrogate escape, after an even number of backslashes (`\\u0000` is text): only
# then is the body parsed to look closer.
_SUSPECT_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u(?:0000|[dD][89a-fA-F])")
# Paths whose multipart body carries files (photos are full of NUL bytes); they check their own
# text fields. Elsewhere a multipart body is text, checked like any other.
FILE_PATHS = frozenset(LARGER_BODIES)


class InputGuard:
    """Refuses what no endpoint should see, before any endpoint runs.

    - a body over `limit` bytes: 413, whether or not it declares its length (the body is read
      up to the limit first, then handed on);
    - a NUL character in the query string or the body: 422, whether raw, escaped in JSON
      (`\\u0000`) or percent-encoded in a form (`%00`); so is a JSON string holding a lone
      surrogate (`\\ud800`), which no database text can hold.
    """

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY_BYTES, larger: dict[str, int] | None = None
    ) -> None:
        self.app, self.default = app, limit
        self.larger = larger if larger is not None else LARGER_BODIES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.default)
        if _NUL_IN_QUERY.search(scope.get("query_string", b"")):
            await _nul_answer("query", html=scope["path"].startswith(HTML_PREFIXES))(
                scope, receive, send
            )
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        html = scope["path"].startswith(HTML_PREFIXES)
        if (
            declared is not None
            and declared.isdigit()
            and (len(declared) > 12 or int(declared) > limit)
        ):
            await _too_large(limit, html=html)(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(limit, html=html)(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"").lower()
        if not (content_type.startswith(b"multipart/") and scope["path"] in FILE_PATHS) and (
            _unstorable(body, content_type)
        ):
            await _nul_answer("body", html=html)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _unstorable(body: bytes, content_type: bytes) -> bool:
    """Whether the body holds text no database column can store: a NUL (raw, `%00` in a form,
    `\\u0000` in JSON) or, in JSON, a lone surrogate."""
    if _NUL.search(body):
        return True
    if content_type.startswith(b"application/x-www-form-urlencoded"):
        return b"%00" in body
    if not _SUSPECT_ESCAPE.search(body):
        return False
    try:
        parsed = json.loads(body)
    except ValueError:  # not JSON after all: the endpoint answers for its shape
        return False
    return _bad_text(parsed)


def _bad_text(value: Any) -> bool:
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_bad_text(k) or _bad_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_bad_text(v) for v in value)
    return False


NUL_MESSAGE = "请求中含有空字符（NUL）或无法识别的字符，无法处理 / the request contains a NUL or unencodable character"


def _nul_answer(field: str, *, html: bool = False) -> Response:
    if html:  # a page, not JSON, for someone in a browser
        return HTMLResponse(
            "<!doctype html><html lang=zh-CN><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            "<title>无法处理</title><link rel=stylesheet href='/static/app.css'>"
            "<body class=portal><main class=portal-main><div class='flash flash-error'>"
            "提交的内容中含有无法识别的控制字符（如空字符），请删除后重试。"
            "</div><p><a href='/portal' data-back>返回</a></p></main>"
            "<script src='/static/app.js' defer></script></body></html>",
            status_code=422,
        )
    return JSONResponse(
        {"error": "invalid", "message": NUL_MESSAGE, "field": field}, status_code=422
    )


def _too_large(limit: int, *, html: bool = False) -> Response:
    if html:  # a page, not JSON, for someone in a browser
        from jiesu.web.validation import size_text

        text = f"提交的内容过大（上限 {size_text(limit)}），请减少或压缩照片后重试。"
        return HTMLResponse(
            "<!doctype html><html lang=zh-CN><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>内容过大</title><link rel=stylesheet href='/static/app.css'>"
            f"<body class=portal><main class=portal-main><div class='flash flash-error'>{text}"
            "</div><p><a href='/portal/submit' data-back>返回</a></p></main>"
            "<script src='/static/app.js' defer></script></body></html>",
            status_code=413,
        )
    return JSONResponse(
        {
            "error": "too_large",
            "message": f"请求内容过大（上限 {limit // 1024} KB）/ request body over {limit // 1024} KB",
        },
        status_code=413,
    )


class FieldError(BaseModel):
    """One bad value of a 422: `loc`, `type` and `field` for programs (as pydantic names them),
    `message` for people (Chinese, the field named by its label: `web/validation`)."""

    field: str = Field(description="出错的字段（点号连接的路径），如 requester.phone")
    loc: list[str | int] | None = Field(None, description='pydantic 的位置，如 ["body", "content"]')
    message: str = Field(description="中文说明，以字段的中文名称呼，如“请填写诉求内容”")
    type: str = Field(description="pydantic 的错误类型，如 missing、string_too_long")


class ErrorOut(BaseModel):
    """Every error answer of the API (4xx): a code, a bilingual message (Chinese first) and, for
    bad input, the field to fix."""

    error: str = Field(description="invalid | not_found | forbidden | conflict | unauthorized …")
    message: str = Field(description="中文说明 / English")
    field: str | None = None
    fields: list[FieldError] | None = None


# Documented for every operation instead of FastAPI's own 422 shape, which the API never sends.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorOut, "description": "请求有误、无权或不存在（JSON，中英文说明）"}
}


HTTP_MESSAGES = {
    400: ("bad_request", "请求内容无法解析 / the request body could not be parsed"),
    404: ("not_found", "没有这个地址 / no such path"),
    405: ("method_not_allowed", "该地址不支持此请求方法 / method not allowed here"),
}


HTML_PREFIXES = ("/console", "/login", "/logout", "/portal")


def _wants_html(request: Request) -> bool:
    return request.url.path.startswith(HTML_PREFIXES)


def _html_error(request: Request, status: int, message: str) -> Response:
    """Errors on pages answer as pages (Chinese, with a way back), never as raw JSON."""
    from jiesu.web.templating import render, zh

    portal = request.url.path.startswith("/portal")
    template = "portal/error.html" if portal else "console/error.html"
    return render(request, template, {"title": "出错了", "status": status,
                                      "message": zh(message)}, status_code=status)  # fmt: skip


def _http_answer(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code, message = HTTP_MESSAGES.get(exc.status_code, ("http_error", str(exc.detail)))
    if _wants_html(request):
        return _html_error(request, exc.status_code, message)
    return JSONResponse(
        {"error": code, "message": message},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation_answer(request: Request, exc: Exception) -> Response:
    """A 422 in Chinese (`web/validation`): each field's `message` names it by its label; the
    machine-readable `loc`, `type` and `field` stay as pydantic gives them."""
    assert isinstance(exc, RequestValidationError)
    from jiesu.web.validation import message

    fields = [
        {
            "field": "body" if e["type"] == "json_invalid" else _field_name(tuple(e["loc"])),
            "loc": list(e["loc"]),
            "message": message(e),
            "type": e["type"],
        }
        for e in exc.errors()
    ]
    summary = "；".join(dict.fromkeys(str(f["message"]) for f in fields[:5]))
    if _wants_html(request):  # the page says what to fix, by the fields' labels
        return _html_error(request, 422, f"请求参数有误：{summary}")
    return JSONResponse(
        {
            "error": "invalid",
            "message": f"请求参数有误：{summary}",
            "field": fields[0]["field"] if fields else None,
            "fields": fields,
        },
        status_code=422,
    )


def _domain_answer(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    if isinstance(exc, LoginRequired):
        return login_redirect(request)
    wait = getattr(exc, "retry_after", None)
    if _wants_html(request):
        page = _html_error(request, exc.status, exc.message)
        if wait:
            page.headers["Retry-After"] = str(wait)
        return page
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    if exc.field:
        body["field"] = exc.field
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
    if wait:
        headers["Retry-After"] = str(wait)
    return JSONResponse(body, status_code=exc.status, headers=headers or None)


def create_app(db: Database | None = None) -> FastAPI:
    app = FastAPI(
        title="jiesu 接诉即办",
        version=__version__,
        description="12345 市民服务热线 接诉即办 平台 API",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # served below from the vendored Swagger UI, not a CDN
        redoc_url=None,
    )
    app.state.db = db or from_settings()
    app.add_exception_handler(RequestValidationError, _validation_answer)
    app.add_exception_handler(DomainError, _domain_answer)
    app.add_exception_handler(StarletteHTTPException, _http_answer)
    routers = (auth_router, tokens_router, org_router, taxonomy_router, tickets_router,
               console_router, admin_router, unit_router, portal_router,
               dashboard_router, analysis_router, assessment_router, lookup_router)  # fmt: skip
    app.include_router(open311_admin)  # before the admin's /console/admin/{section}
    app.include_router(notices_console)  # 通知设置: before it too
    app.include_router(delivery_console)  # 推送订阅, 投递记录: before it too
    app.include_router(delivery_api, responses=ERROR_RESPONSES)  # webhooks, deliveries
    for router in routers:
        app.include_router(router, responses=ERROR_RESPONSES)
    app.include_router(callbacks_api, responses=ERROR_RESPONSES)  # the SMS gateway's replies
    app.include_router(callbacks_router)  # the rating link, the callback workbench's tabs
    app.include_router(open311_router)  # GeoReport v2: answers and errors in its own formats
    app.include_router(calls_router, responses=ERROR_RESPONSES)  # the call centre's telephony
    app.include_router(calls_console_router)  # the agent's pop (Server-Sent Events)
    app.include_router(exports_api, responses=ERROR_RESPONSES)  # downloads of any list
    app.include_router(exports_router)
    app.include_router(knowledge_api, responses=ERROR_RESPONSES)  # 知识库 API
    app.include_router(knowledge_call_router)  # the intake form's knowledge panel
    app.include_router(knowledge_learn_router)  # suggested entries
    app.include_router(knowledge_pages)  # 知识库 pages
    app.include_router(ops_router)  # /livez, /readyz, /metrics (jiesu/ops/health.py)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return _api_docs(app)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC_DIR / "favicon.ico", media_type="image/x-icon")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/console")

    @app.get("/healthz", tags=["ops"], summary="健康检查")
    def health(request: Request) -> dict[str, Any]:
        database: Database = request.app.state.db
        with database.read() as session:
            session.execute(text("SELECT 1"))
            today = datetime.now(city_tz()).date()
            warnings = calendar_warnings(db_session=session, today=today)
        return {
            "status": "ok",
            "database": database.dialect,
            "version": __version__,
            "warnings": warnings,
        }

    app.add_middleware(InputGuard)
    app.add_middleware(SecurityHeaders)  # the guard's answers carry the headers too
    # Outermost: every answer (the guard's 413/422 included) gets its request id, access line
    # and metrics (jiesu/ops/middleware.py).
    app.add_middleware(Observability)
    return app


SWAGGER = "/static/vendor/swagger-ui"


def _api_docs(app: FastAPI) -> HTMLResponse:
    """The API's Swagger UI from the app's own files; its one inline script (the page's setup,
    written by FastAPI) is allowed by its hash, nothing else inline."""
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "",
        title=f"{app.title} · API 文档",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from outside
    )
    html = bytes(page.body).decode()
    csp = policy(script_src=" ".join(["'self'", *script_hashes(html)]))
    return HTMLResponse(html, headers={"Content-Security-Policy": csp})
