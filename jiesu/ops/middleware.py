"""The request's observability, one pure ASGI middleware (the outermost): its request id, its
access line and its metrics.

- **Request id**: the request's `X-Request-ID` when it is 1–64 of `[A-Za-z0-9._-]` (a proxy's or
  a client's, so one id follows a request through nginx and jiesu), else a new uuid4 hex. It is
  echoed on the response and set in `logs.REQUEST_ID` while the request runs: every line logged
  meanwhile carries it (threads included: Starlette copies the context into its thread pool).
- **Access line** (logger `jiesu.access`, instead of uvicorn's, which carries the query string):
  method, route template, path, status, duration_ms, client, request_id. The path is left out
  when it holds a secret (a rating link's token) or matched no route (anything a client typed).
- **Metrics**: `metrics.observe_request` by route template, and the in-flight gauge.

Cheap on purpose: it runs on every request (docs/benchmarks.md has its cost per request).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jiesu.ops import metrics
from jiesu.ops.logs import REQUEST_ID

HEADER = b"x-request-id"
UNMATCHED = "unmatched"  # the route label of a request no route matched (404s)
SECRET_PARAMS = frozenset({"token"})  # a path holding one is logged by its route only
_VALID_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")

access = logging.getLogger("jiesu.access")


def request_id_from(headers: list[tuple[bytes, bytes]] | Any) -> str:
    """The request's own id when it is well formed, else a new one."""
    for name, value in headers:
        if name == HEADER:
            if _VALID_ID.fullmatch(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


def route_of(scope: Scope) -> str:
    """The matched route's template (`/api/v1/tickets/{ticket_id}`), or `unmatched`.

    FastAPI's routes leave themselves in `scope["route"]`; Starlette's plain ones (the OpenAPI
    document, the static mount) only their endpoint, found once in the router's table."""
    route = scope.get("route")
    if route is None:
        endpoint, router = scope.get("endpoint"), scope.get("router")
        if endpoint is None or router is None:
            return UNMATCHED
        return _by_endpoint(router).get(id(endpoint), UNMATCHED)
    return _template(route)


def _template(route: Any) -> str:
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else UNMATCHED


_endpoints: dict[int, dict[int, str]] = {}


def _by_endpoint(router: Any) -> dict[int, str]:
    found = _endpoints.get(id(router))
    if found is None:
        found = {}
        for route in getattr(router, "routes", ()):
            for target in (getattr(route, "endpoint", None), getattr(route, "app", None)):
                if target is not None:
                    found.setdefault(id(target), _template(route))
        _endpoints[id(router)] = found
    return found


class Observability:
    """Request id, access line and metrics for every HTTP request (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope["headers"])
        token = REQUEST_ID.set(request_id)
        echoed = (HEADER, request_id.encode("ascii"))
        status = 500  # unless a response starts: the app failed before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        metrics.HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            metrics.HTTP_IN_FLIGHT.dec()
            seconds = time.perf_counter() - started
            route = route_of(scope)
            method = scope["method"]
            metrics.observe_request(method, route, status, seconds)
            duration_ms = round(seconds * 1000, 2)
            fields: dict[str, Any] = {"method": method, "route": route}
            if route != UNMATCHED and not SECRET_PARAMS.intersection(scope.get("path_params", ())):
                fields["path"] = scope["path"]
            fields["status"] = status
            fields["duration_ms"] = duration_ms
            client = scope.get("client")
            if client:
                fields["client"] = f"{client[0]}:{client[1]}"
            access.info("%s %s %d %.1f ms", method, route, status, duration_ms, extra=fields)
            REQUEST_ID.reset(token)
