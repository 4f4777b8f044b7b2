#!/usr/bin/env python3
"""How fast the console's pages render with ~100,000 tickets, on SQLite and PostgreSQL.

Acceptance (issue: console pages): the unit inbox and the ticket page render in ≤ 150 ms p95
with 100,000 tickets in the database, on both databases.

Per backend: a fresh database, the Beijing demo pack, `generate()` for 20 days × tickets/20 a
day; one handler user added to the street with the most open tickets in its inbox (the demo's
streets get tickets at random, so a fixed demo user would not be the worst case). Then a real
`uvicorn` server in its own process (the client must not share the server's GIL) and one
keep-alive `httpx` client, serial requests, after a warm-up:

    healthz            GET /healthz (the baseline: routing + one SELECT)
    inbox              GET /console/inbox                (busiest street's handler, todo tab)
    ticket (street)    GET /console/tickets/{id}         (200 random ids that handler sees)
    ticket (centre)    GET /console/tickets/{id}         (dispatcher1, 200 random ids)
    dispatch           GET /console/dispatch             (dispatcher1, pending tab)
    search p1 / p50    GET /console/tickets[?page=50]    (dispatcher1: every ticket)
    api ticket         GET /api/v1/tickets/{id}          (dispatcher1's bearer token, same ids)

Each page: median, p95, p99 over --requests requests (ids cycled), and p95 ÷ the healthz p95 of
the same run. The whole set is measured --runs times; the summary is the median of the p95s.

    .venv/bin/python bench/console_pages.py --tickets 100000 --backend both --runs 3

`--url` measures an existing database instead (nothing generated, nothing dropped); `--keep`
leaves the generated database in place and prints its URL. The last line of stdout is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("JIESU_ARGON2_PROFILE", "cheapest")  # before anything imports jiesu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

from jiesu.auth.passwords import hash_password  # noqa: E402
from jiesu.citypack.load import load_pack  # noqa: E402
from jiesu.citypack.parse import read_pack  # noqa: E402
from jiesu.db.engine import Database  # noqa: E402
from jiesu.db.migrate import upgrade  # noqa: E402
from jiesu.demo.generate import DEFAULT_PACK, generate  # noqa: E402
from jiesu.org.models import Unit, User  # noqa: E402
from jiesu.tickets.models import Assignment, Ticket  # noqa: E402

PG = os.environ.get("JIESU_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PASSWORD = "demo12345"
BENCH_USER = "bench.handler"
INBOX_STATES = ("dispatched", "accepted")  # the inbox's todo tab (console/service.py queues)
LIMIT_MS = 150.0


# ---- databases --------------------------------------------------------------------------------


def fresh(backend: str, tmp: Path) -> tuple[str, Any]:
    if backend == "sqlite":
        return f"sqlite:///{tmp / f'{uuid.uuid4().hex}.sqlite3'}", None
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    name = f"jiesu_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    return PG.rsplit("/", 1)[0] + "/" + name, (admin, name)


def drop(handle: Any) -> None:
    if handle is None:
        return
    admin, name = handle
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def populate(url: str, tickets: int, days: int) -> dict[str, Any]:
    pack = read_pack(DEFAULT_PACK)
    if not pack.ok:
        raise SystemExit("\n".join(map(str, pack.errors)))
    upgrade(url)
    db = Database(url)
    try:
        with db.write() as s:
            load_pack(pack, db_session=s)
        r = generate(db, days=days, per_day=max(1, round(tickets / days)))
        # As a deployment runs: PostgreSQL's autovacuum analyses the new rows within a minute
        # (done here at once, so every run sees the same plans); nothing runs ANALYZE on SQLite,
        # and with sqlite_stat1 the planner misjudges the skewed status column (docs/benchmarks.md).
        if db.dialect == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE"))
        return {"tickets": r.tickets, "events": r.events, "assignments": r.assignments,
                "generate_s": round(r.seconds, 1)}  # fmt: skip
    finally:
        db.dispose()


def busiest_street(db: Database) -> tuple[Unit, int]:
    """The street unit with the most tickets in its inbox's todo tab."""
    with db.read() as s:
        n = func.count(func.distinct(Assignment.ticket_id))
        row = s.execute(
            select(Unit, n)
            .join(Assignment, Assignment.unit_id == Unit.id)
            .join(Ticket, Ticket.id == Assignment.ticket_id)
            .where(Unit.kind == "street", Assignment.active, Ticket.status.in_(INBOX_STATES))
            .group_by(Unit.id)
            .order_by(n.desc())
            .limit(1)
        ).first()
        if row is None:
            raise SystemExit("no street has open tickets: generate history first")
        return row[0], row[1]


def inbox_count(db: Database, unit_id: int) -> int:
    with db.read() as s:
        return s.scalar(
            select(func.count(func.distinct(Assignment.ticket_id)))
            .join(Ticket, Ticket.id == Assignment.ticket_id)
            .where(Assignment.unit_id == unit_id, Assignment.active,
                   Ticket.status.in_(INBOX_STATES))
        ) or 0  # fmt: skip


def ensure_bench_user(db: Database, unit: Unit) -> None:
    """A handler of `unit` (the demo's street users sit on fixed streets, not the busiest)."""
    with db.write() as s:
        user = s.scalar(select(User).where(User.username == BENCH_USER))
        if user is None:
            s.add(User(username=BENCH_USER, name="压测承办人", role="handler", unit_id=unit.id,
                       password_hash=hash_password(PASSWORD), active=True))  # fmt: skip
        else:
            user.unit_id, user.active = unit.id, True


def visible_ids(db: Database, unit: Unit | None, k: int, rng: random.Random) -> list[int]:
    """k random ticket ids: any ticket (unit None), or those `unit` has a part in."""
    with db.read() as s:
        if unit is None:
            ids = list(s.scalars(select(Ticket.id)))
        else:
            below = select(Unit.id).where(Unit.path.startswith(unit.path))
            ids = list(
                s.scalars(
                    select(Assignment.ticket_id).where(Assignment.unit_id.in_(below)).distinct()
                )
            )
    return rng.sample(ids, min(k, len(ids)))


# ---- the server ------------------------------------------------------------------------------


def free_port() -> int:
    for _ in range(100):
        port = random.randint(20000, 32000)
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise SystemExit("no free port below 32768")


class Server:
    """`uvicorn jiesu.web.asgi:app` in its own process on a port below 32768."""

    def __init__(self, url: str, var_dir: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "JIESU_DATABASE_URL": url, "JIESU_VAR_DIR": str(var_dir),
               "JIESU_ARGON2_PROFILE": "cheapest", "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": str(ROOT)}  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "jiesu.web.asgi:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=env,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited with {self.proc.returncode}")
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit("the server did not answer /healthz within 60 s")

    def cpu_seconds(self) -> float:
        """The server process's CPU time so far (user + system), from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


CSRF_FIELD = re.compile(r'name="csrf_token"\s+value="([^"]+)"')


def console_client(base: str, username: str) -> httpx.Client:
    c = httpx.Client(base_url=base, timeout=60)
    page = c.get("/login")
    page.raise_for_status()
    m = CSRF_FIELD.search(page.text)
    if not m:
        raise SystemExit("no csrf_token field on /login")
    r = c.post("/login", data={"username": username, "password": PASSWORD,
                               "csrf_token": m.group(1)})  # fmt: skip
    if r.status_code != 303 or "jiesu_session" not in c.cookies:
        raise SystemExit(f"sign-in as {username} failed: {r.status_code} {r.text[:200]}")
    return c


def api_client(base: str, username: str) -> httpx.Client:
    r = httpx.post(base + "/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    r.raise_for_status()
    token = r.json()["access_token"]
    return httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"})


# ---- measuring -------------------------------------------------------------------------------


@dataclass
class Page:
    name: str
    client: httpx.Client
    paths: list[str]
    must_contain: str | None = None  # a sanity check on the first answer
    samples: list[list[float]] = field(default_factory=list)  # ms, one list per run
    cpu_ms: list[float] = field(default_factory=list)  # the server's CPU per request, per run


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def measure(page: Page, n: int, warmup: int) -> list[float]:
    paths = page.paths
    for i in range(warmup):
        r = page.client.get(paths[i % len(paths)])
        if r.status_code != 200:
            raise SystemExit(f"{page.name}: {paths[i % len(paths)]} answered {r.status_code}")
        if i == 0 and page.must_contain and page.must_contain not in r.text:
            raise SystemExit(f"{page.name}: the page lacks {page.must_contain!r}")
    out = []
    for i in range(n):
        path = paths[i % len(paths)]
        t0 = time.perf_counter()
        r = page.client.get(path)
        _ = r.content
        out.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{page.name}: {path} answered {r.status_code}")
    return out


def bench_backend(backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    handle = None
    info: dict[str, Any] = {"backend": backend}
    if args.url:
        url = args.url
    else:
        url, handle = fresh(backend, tmp)
        print(f"[{backend}] generating ~{args.tickets:,} tickets …", file=sys.stderr)
        info.update(populate(url, args.tickets, args.days))
    server = None
    try:
        db = Database(url)
        with db.read() as s:
            info["tickets_in_db"] = s.scalar(select(func.count()).select_from(Ticket))
            dhm = s.scalar(select(Unit).where(Unit.code == "110101001"))
        street, todo = busiest_street(db)
        ensure_bench_user(db, street)
        info["inbox_user"] = {"username": BENCH_USER, "unit": street.code, "unit_name": street.name,
                              "todo": todo, "donghuamen_todo": inbox_count(db, dhm.id) if dhm
                              else None}  # fmt: skip
        street_ids = visible_ids(db, street, args.sample, rng)
        all_ids = visible_ids(db, None, args.sample, rng)
        db.dispose()
        server = Server(url, tmp)
        handler = console_client(server.base, BENCH_USER)
        centre = console_client(server.base, "dispatcher1")
        api = api_client(server.base, "dispatcher1")
        plain = httpx.Client(base_url=server.base, timeout=60)
        pages = [
            Page("healthz", plain, ["/healthz"]),
            Page("inbox", handler, ["/console/inbox"], "承办工单"),
            Page("ticket (street)", handler, [f"/console/tickets/{i}" for i in street_ids]),
            Page("ticket (centre)", centre, [f"/console/tickets/{i}" for i in all_ids]),
            Page("dispatch", centre, ["/console/dispatch"], "派单审核"),
            Page("search p1", centre, ["/console/tickets"], "工单查询"),
            Page("search p50", centre, ["/console/tickets?page=50"], "工单查询"),
            Page("api ticket", api, [f"/api/v1/tickets/{i}" for i in all_ids]),
        ]
        for run in range(args.runs):
            print(f"[{backend}] run {run + 1}/{args.runs} …", file=sys.stderr)
            for p in pages:
                cpu = server.cpu_seconds()
                p.samples.append(measure(p, args.requests, args.warmup))
                # Includes the warm-up requests' share; robust to other load on the machine.
                used = server.cpu_seconds() - cpu
                p.cpu_ms.append(1000 * used / (args.requests + args.warmup))
        for c in (handler, centre, api, plain):
            c.close()
    finally:
        if server:
            server.stop()
        if args.keep or args.url:
            if not args.url:
                print(f"[{backend}] kept: {url}", file=sys.stderr)
        else:
            drop(handle)
    base_p95 = [pct(s, 95) for s in pages[0].samples]
    rows = []
    for p in pages:
        p95s = [pct(s, 95) for s in p.samples]
        rows.append({
            "page": p.name,
            "requests": len(p.samples[0]),
            "median_ms": round(statistics.median(statistics.median(s) for s in p.samples), 1),
            "p95_ms": round(statistics.median(p95s), 1),
            "p99_ms": round(statistics.median(pct(s, 99) for s in p.samples), 1),
            "p95_runs_ms": [round(x, 1) for x in p95s],
            "server_cpu_ms": round(statistics.median(p.cpu_ms), 1),
            "x_healthz_p95": round(statistics.median(
                a / b for a, b in zip(p95s, base_p95, strict=True)), 1),
        })  # fmt: skip
    info["pages"] = rows
    accept = {r["page"]: r["p95_ms"] for r in rows
              if r["page"] in ("inbox", "ticket (street)", "ticket (centre)")}  # fmt: skip
    info["acceptance"] = {"limit_ms": LIMIT_MS, "holds": all(v <= LIMIT_MS for v in accept.values()),
                          "p95_ms": accept}  # fmt: skip
    return info


def print_table(info: dict[str, Any]) -> None:
    u = info["inbox_user"]
    print(f"\n{info['backend']}: {info['tickets_in_db']:,} tickets; inbox user {u['username']} at "
          f"{u['unit']} {u['unit_name']} ({u['todo']:,} in its todo tab; 东华门 has "
          f"{u['donghuamen_todo']:,})")  # fmt: skip
    print(
        f"{'page':18s} {'median':>8s} {'p95':>8s} {'p99':>8s} {'p95/healthz':>11s} "
        f"{'server CPU':>10s}  p95 per run"
    )
    for r in info["pages"]:
        runs = " · ".join(f"{x:.1f}" for x in r["p95_runs_ms"])
        print(f"{r['page']:18s} {r['median_ms']:8.1f} {r['p95_ms']:8.1f} {r['p99_ms']:8.1f} "
              f"{r['x_healthz_p95']:10.1f}× {r['server_cpu_ms']:10.1f}  {runs}")  # fmt: skip
    a = info["acceptance"]
    print(
        f"acceptance (inbox and ticket page ≤ {a['limit_ms']:.0f} ms p95): "
        f"{'holds' if a['holds'] else 'FAILS'}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickets", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--requests", type=int, default=300, help="per page and run")
    ap.add_argument("--warmup", type=int, default=20, help="requests per page before measuring")
    ap.add_argument("--sample", type=int, default=200, help="ticket ids per ticket page")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--url", help="measure this existing database (one backend)")
    ap.add_argument("--keep", action="store_true", help="keep the generated database")
    args = ap.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    if args.url:
        backends = ["postgresql" if args.url.startswith("postgresql") else "sqlite"]
    machine = {
        "node": platform.node(), "arch": platform.machine(), "cores": os.cpu_count(),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
    }  # fmt: skip
    print(f"machine: {machine['node']} {machine['arch']}, {machine['cores']} cores, "
          f"Python {machine['python']}, SQLite {machine['sqlite']}")  # fmt: skip
    print(f"workload: {args.tickets:,} tickets, {args.runs} runs × {args.requests} serial "
          f"requests per page (after {args.warmup} warm-up), median of the runs' p95")  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        # A kept SQLite database must outlive the temporary directory.
        place = Path(tempfile.mkdtemp(prefix="jiesu-bench-")) if args.keep else Path(tmp)
        for backend in backends:
            info = bench_backend(backend, args, place)
            print_table(info)
            results.append(info)
    print(json.dumps({"machine": machine, "args": vars(args), "results": results},
                     ensure_ascii=False))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
