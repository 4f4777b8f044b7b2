"""What the load balancer, systemd and Prometheus ask a jiesu process (docs/operations.md).

- `GET /livez`: the process answers (no database): restart it when this fails.
- `GET /readyz`: the database answers and its schema is at the code's Alembic head, or ahead of
  it (a revision this code does not know: a rolling upgrade ran `jiesu db upgrade` first and the
  old servers keep serving until they are replaced — migrations expand before they contract,
  docs/operations.md); otherwise 503 with the reason (Chinese and English): send it no traffic
  (the database is down, never migrated, or behind the code). The heads are read from the
  migration scripts once.
- `GET /metrics`: Prometheus text (`metrics.exposition`), only to peers in
  `JIESU_METRICS_ALLOW`; anyone else gets the same 404 as a path that does not exist.

`/healthz` (the console's and the tests' check, with the calendar warnings) stays in web/app.py.
None of these is in the OpenAPI schema.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from starlette.exceptions import HTTPException

from jiesu.ops import metrics
from jiesu.settings import get_settings

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def _scripts() -> Any:
    from alembic.script import ScriptDirectory

    from jiesu.db.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://"))


@lru_cache(maxsize=1)
def code_heads() -> frozenset[str]:
    """The Alembic head(s) of the migrations shipped with this code."""
    return frozenset(_scripts().get_heads())


@lru_cache(maxsize=1)
def code_revisions() -> frozenset[str]:
    """Every revision this code's migrations know."""
    return frozenset(script.revision for script in _scripts().walk_revisions())


def readiness(db: Any) -> tuple[bool, dict[str, Any]]:
    """(ready, the answer's body): the database answers and is at the code's head."""
    heads = code_heads()
    try:
        with db.read() as session:
            session.execute(text("SELECT 1"))
            try:
                found = set(session.scalars(text("SELECT version_num FROM alembic_version")))
            except Exception:  # no alembic_version: never migrated
                found = set()
    except Exception as exc:
        return False, {
            "status": "unavailable",
            "reason": "database",
            "message": "数据库无法连接 / the database does not answer",
            "detail": type(exc).__name__,
        }
    if found and not found & code_revisions():
        # Ahead of the code: a newer release migrated the database (expand first) while this
        # server still runs; it stays in service until the rolling restart replaces it.
        return True, {"status": "ready", "revision": sorted(heads), "database_ahead": sorted(found)}
    if found != heads:
        return False, {
            "status": "unavailable",
            "reason": "schema",
            "message": "数据库结构版本与程序不一致，请执行 jiesu db upgrade / the database schema "
            "is not at the code's migration head: run `jiesu db upgrade`",
            "database_revision": sorted(found),
            "code_revision": sorted(heads),
        }
    return True, {"status": "ready", "revision": sorted(heads)}


@router.get("/livez")
async def livez() -> dict[str, str]:
    """On the event loop, not the thread pool: it answers while every thread waits on the
    database (that is readiness's business, and a restart would not cure it)."""
    return {"status": "alive"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    ready, body = readiness(request.app.state.db)
    return JSONResponse(body, status_code=200 if ready else 503)


@lru_cache(maxsize=8)
def _networks(
    allowed: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(a, strict=False) for a in allowed)


def may_scrape(peer: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether the peer address is in one of the allowed networks."""
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:  # a test client's "testclient", a unix socket
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(allowed))


@router.get("/metrics")
def metrics_endpoint(request: Request) -> Response:
    peer = request.client.host if request.client else None
    if not may_scrape(peer, get_settings().metrics_allow):
        raise HTTPException(404)
    body, content_type = metrics.exposition(request.app.state.db)
    return Response(body, media_type=content_type)
