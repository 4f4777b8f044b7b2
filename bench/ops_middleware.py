"""The observability middleware's cost per request (jiesu/ops/middleware.py).

N GET /livez straight through the ASGI app (no socket, no server: what is measured is the app),
with and without `Observability`, the same app otherwise; then with the access line written as
`jiesu serve` writes it (JSON, to /dev/null). Medians of several runs, in µs per request.

    .venv/bin/python bench/ops_middleware.py [--requests 2000] [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("JIESU_ARGON2_PROFILE", "cheapest")


async def bare(scope: Any, receive: Any, send: Any) -> None:
    """The least an app can do: what the middleware alone costs shows against it."""
    scope["route"] = ROUTE
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


class _Route:
    path_format = "/livez"


ROUTE = _Route()


def build(with_middleware: bool) -> Any:
    from jiesu.db.engine import Database
    from jiesu.db.migrate import upgrade
    from jiesu.ops.middleware import Observability
    from jiesu.web.app import create_app

    url = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"
    upgrade(url)
    app = create_app(Database(url))
    if not with_middleware:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not Observability]
    return app


async def run(app: Any, n: int) -> float:
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/livez", "raw_path": b"/livez", "root_path": "",
        "query_string": b"", "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    took = time.perf_counter() - started
    assert statuses == [200] * n, set(statuses)
    return took / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    from jiesu.ops.logs import configure
    from jiesu.ops.middleware import Observability

    apps = {"without": build(False), "with": build(True),
            "bare": bare, "bare+middleware": Observability(bare)}  # fmt: skip
    loop = asyncio.new_event_loop()
    for app in apps.values():  # warm: imports, the middleware stack, the first requests
        loop.run_until_complete(run(app, 200))
    results: dict[str, list[float]] = {
        "bare": [],
        "bare+middleware": [],
        "without": [],
        "with": [],
        "with+json log": [],
    }
    devnull = open(os.devnull, "w")  # noqa: SIM115
    for _ in range(args.runs):  # interleaved: the machine's noise falls on each alike
        logging.getLogger().handlers.clear()
        logging.getLogger().setLevel(logging.WARNING)
        for name in ("bare", "bare+middleware", "without", "with"):
            results[name].append(loop.run_until_complete(run(apps[name], args.requests)))
        configure("json")
        sys_stderr, sys.stderr = sys.stderr, devnull
        try:
            logging.getLogger().handlers[0].setStream(devnull)  # type: ignore[attr-defined]
            results["with+json log"].append(
                loop.run_until_complete(run(apps["with"], args.requests))
            )
        finally:
            sys.stderr = sys_stderr
    medians = {k: statistics.median(v) for k, v in results.items()}
    for name, value in medians.items():
        base = medians["bare" if name.startswith("bare") else "without"]
        print(
            f"{name:>16}: {value:8.1f} µs/request  (+{value - base:6.1f} µs, ×{value / base:.2f})"
        )
    print(json.dumps({"requests": args.requests, "runs": args.runs, "median_us": medians,
                      "all_us": results}))  # fmt: skip


if __name__ == "__main__":
    main()
