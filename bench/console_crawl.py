#!/usr/bin/env python3
"""Every console page a role can reach, timed on an existing (large) database.

Where `console_pages.py` times a fixed set of pages against a goal, this walks the console the
way its users would and reports the slowest pages, to find the ones that do not scale. For each
user: sign in, start at /console, follow the links of every page (breadth first, GET only, at
most --pages pages per user and three ticket pages; no exports, downloads or sign-out), time
each page --repeat times after one warm-up and keep the median. A few API reads follow as the
dispatcher. Nothing is generated: point it at a database kept by another bench, e.g.

    .venv/bin/python bench/intel.py --only intake --tickets 1000000 --backend postgresql --keep
    .venv/bin/python bench/console_crawl.py --url postgresql+psycopg://…/jiesu_bench_NNNNNNNN

The server is a real uvicorn process (console_pages.Server) with the demo users' password.
Printed: every page over --show ms, then the slowest of each kind of page (ids and query values
folded). The last line of stdout is JSON.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from console_pages import Server, api_client, console_client  # the same server and sign-in

USERS = (
    "dispatcher1,supervisor1,analyst1,callback1,admin,dongcheng.supervisor,"
    "donghuamen.handler,zjw.admin,heating.admin"
)
API = (
    "/api/v1/tickets?status=accepted",
    "/api/v1/tickets?status=received&status=pending_dispatch",
    "/api/v1/warnings",
    "/api/v1/tickets?text=噪音",
)
HREF = re.compile(r'href="(/console[^"#]*)"')
SKIP = re.compile(r"logout|\.pdf|\.xlsx|\.csv|export|download|/print")
TICKET = re.compile(r"/console/tickets/\d+")


def timed(client: Any, path: str, repeat: int) -> tuple[int, float, str]:
    first = client.get(path)
    if first.status_code != 200:
        return first.status_code, 0.0, ""
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.get(path).raise_for_status()
        samples.append((time.perf_counter() - t0) * 1000)
    return 200, statistics.median(samples), first.text


def crawl(base: str, user: str, pages: int, repeat: int) -> list[dict[str, Any]]:
    client = console_client(base, user)
    client.follow_redirects = True
    seen: set[str] = set()
    queue = ["/console"]
    tickets = 0
    out = []
    try:
        while queue and len(seen) < pages:
            path = html.unescape(queue.pop(0))
            if path in seen or SKIP.search(path):
                continue
            if TICKET.search(path):
                tickets += 1
                if tickets > 3:
                    continue
            seen.add(path)
            status, ms, text = timed(client, path, repeat)
            out.append({"user": user, "path": path, "status": status, "ms": round(ms, 1)})
            for link in HREF.findall(text):
                link = html.unescape(link)
                if link not in seen and link not in queue:
                    queue.append(link)
    finally:
        client.close()
    return out


def kind(path: str) -> str:
    return re.sub(r"=[^&]*", "=", re.sub(r"/\d+", "/N", path))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the database to measure (not changed, but "
                    "the sign-ins write sessions)")  # fmt: skip
    ap.add_argument("--users", default=USERS, help="comma-separated demo users")
    ap.add_argument("--pages", type=int, default=70, help="most pages per user")
    ap.add_argument("--repeat", type=int, default=3, help="timed requests per page (median)")
    ap.add_argument("--show", type=float, default=100.0, help="list pages slower than this (ms)")
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(args.url, Path(tmp))
        try:
            for user in args.users.split(","):
                found = crawl(server.base, user.strip(), args.pages, args.repeat)
                print(f"[crawl] {user}: {len(found)} pages", file=sys.stderr, flush=True)
                rows += found
            api = api_client(server.base, "dispatcher1")
            for path in API:
                status, ms, _ = timed(api, path, args.repeat)
                rows.append({"user": "api:dispatcher1", "path": path, "status": status,
                             "ms": round(ms, 1)})  # fmt: skip
            api.close()
        finally:
            server.stop()
    failed = [r for r in rows if r["status"] != 200]
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["status"] == 200:
            by_kind[kind(r["path"])].append(r)
    kinds = sorted(
        ({"kind": k, "pages": len(v), "max_ms": max(x["ms"] for x in v),
          "median_ms": round(statistics.median(x["ms"] for x in v), 1),
          "slowest": max(v, key=lambda x: x["ms"])["user"]} for k, v in by_kind.items()),
        key=lambda k: -k["max_ms"],
    )  # fmt: skip
    print(f"{len(rows)} pages, {len(failed)} not 200 {[(r['user'], r['path']) for r in failed]}")
    print(f"\nslowest of each kind (ms, median of {args.repeat}):")
    print(f"{'max':>8s} {'median':>8s} {'pages':>5s}  {'slowest for':22s} kind")
    for k in kinds:
        if k["max_ms"] >= args.show / 4:
            print(f"{k['max_ms']:8.1f} {k['median_ms']:8.1f} {k['pages']:5d}  {k['slowest']:22s} "
                  f"{k['kind']}")  # fmt: skip
    print(json.dumps({"url": args.url, "pages": len(rows), "failed": failed, "kinds": kinds,
                      "slow": [r for r in rows if r["ms"] > args.show]}, ensure_ascii=False))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
