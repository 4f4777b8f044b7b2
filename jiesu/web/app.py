"""The FastAPI application: routers, error answers, request size limit, health.

Every error leaves as JSON `{"error", "message", "field"?}` with a bilingual message: domain errors
with their own status, validation errors as 422 naming the field, oversize bodies as 413. No
request can produce a 500 by being malformed.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jiesu import __version__
from jiesu.auth.views import router as auth_router
from jiesu.db.engine import Database
from jiesu.errors import DomainError
from jiesu.org.views import router as org_router
from jiesu.settings import get_settings
from jiesu.taxonomy.views import router as taxonomy_router
from jiesu.tickets.views import router as tickets_router

log = logging.getLogger("jiesu.web")

MAX_BODY_BYTES = 256 * 1024


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, whether or not they declare a length."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(self.limit)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.limit)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {
            "error": "too_large",
            "message": f"请求内容过大（上限 {limit // 1024} KB）/ request body over {limit // 1024} KB",
        },
        status_code=413,
    )


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation_answer(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [
        {"field": _field_name(tuple(e["loc"])), "message": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return JSONResponse(
        {
            "error": "invalid",
            "message": f"请求参数有误 / invalid request — {summary}",
            "field": fields[0]["field"] if fields else None,
            "fields": fields,
        },
        status_code=422,
    )


def _domain_answer(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    if exc.field:
        body["field"] = exc.field
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(body, status_code=exc.status, headers=headers)


def create_app(db: Database | None = None) -> FastAPI:
    app = FastAPI(
        title="jiesu 接诉即办",
        version=__version__,
        description="12345 市民服务热线 接诉即办 平台 API",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.db = db or Database(get_settings().database_url)
    app.add_exception_handler(RequestValidationError, _validation_answer)
    app.add_exception_handler(DomainError, _domain_answer)
    for router in (auth_router, org_router, taxonomy_router, tickets_router):
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/api/docs")

    @app.get("/healthz", tags=["ops"], summary="健康检查")
    def health(request: Request) -> dict[str, str]:
        database: Database = request.app.state.db
        with database.read() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok", "database": database.dialect, "version": __version__}

    app.add_middleware(BodyLimit)
    return app
