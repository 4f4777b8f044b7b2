#!/usr/bin/env python3
"""The load bench (issue 17 §2): jiesu under a realistic mix, with two baselines in the same run.

What runs, all on loopback against one PostgreSQL:

- `jiesu serve --workers 2` and one `jiesu worker` on a fresh database (`b1_load_<pid>`, dropped
  at the end unless --keep) set up as `jiesu demo init` does it: migrations, the Beijing pack,
  the demo knowledge base, --history-days × --per-day tickets of history through the demo
  generator's bulk path, the intake models trained on it. The set-up is timed and reported apart.
- a closed-loop client: asyncio + one `httpx.AsyncClient`, --concurrency connections, each task
  sending one request after the other; the first --warmup seconds are not counted. httpx costs
  ~2 ms of client CPU a request here (a core at 500/s): `--client lean` sends the same requests
  on bare asyncio streams (`LeanClient`) for a fraction of it.

Each run (--runs, medians reported) measures these phases, --duration seconds each:

1. `intake_alone`: only `POST /api/v1/tickets` (the figure the goal is about: ≥ 500 creates/s,
   p99 ≤ 100 ms, within 3× the minimal endpoint);
2. `mix` (left out with --only create), operations in these proportions (`Mix`):

       create         40  POST /api/v1/tickets as agent1..3: a demo history ticket's title,
                          content and address, a random mobile phone and name; half of them
                          with the history's category and request type, half without
       read           20  GET /api/v1/tickets/{id} as supervisor1 (history ids and the run's)
       list_street    10  GET /api/v1/tickets?status=dispatched&status=accepted as the
                          street's handler (donghuamen.handler, 东华门街道)
       list_centre    10  GET /api/v1/tickets?status=received&page=1..5 as supervisor1
       action         12  the next step of a ticket the history or the run left received
                          (受理, not yet dispatched): dispatch to 东华门街道 (dispatcher1),
                          accept, contact, reply (donghuamen.handler); reported per action
                          (`action:accept` …), the furthest along first
       console_inbox   8  GET /console/inbox with the handler's console session cookie

3. `minimal_endpoint` (`bench/load_baseline.py`): a FastAPI app inserting one row of a ticket's
   width, served by the same supervisor with 2 workers, same client, same bodies;
4. `raw_postgres`: --concurrency threads, each its own psycopg connection, one-row
   `INSERT …; COMMIT` transactions of the same row.

Ratios (from the same run, then the median of the runs): jiesu creates/s ÷ minimal creates/s,
jiesu create p99 ÷ minimal p99, minimal creates/s ÷ raw transactions/s. The server side: CPU %
(100 % = one core) of the app workers, the job worker, this database's PostgreSQL backends,
the client and the whole machine per phase (from /proc), and the app workers' RSS before and
after; the load average before and after.

    .venv/bin/python bench/load.py --db postgresql://postgres@127.0.0.1:5432/postgres \\
        --duration 30 --concurrency 16 --runs 3 [--only create] [--skip-baselines]

--db names the PostgreSQL server (its database is only used to create and drop the bench's);
--url measures an existing database instead (migrated to head, nothing generated or dropped;
one kept with --keep, say). The last line of stdout is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("JIESU_ARGON2_PROFILE", "cheapest")  # before anything imports jiesu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
import psycopg  # noqa: E402
from intake_bodies import intake_body  # noqa: E402
from load_baseline import URL_ENV, Body, create_tables, raw_insert_sql, row_of  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

WEIGHTS: dict[str, int] = {
    "create": 40,
    "read": 20,
    "list_street": 10,
    "list_centre": 10,
    "action": 12,
    "console_inbox": 8,
}
PASSWORD = "demo12345"  # the demo pack's users
AGENTS = ("agent1", "agent2", "agent3")
DISPATCHER = "dispatcher1"
SUPERVISOR = "supervisor1"
HANDLER = "donghuamen.handler"
STREET = "110101001"  # 东华门街道, the handler's unit
# The lifecycle's main path as the API takes it (tests/test_actions_api.py): who, which action,
# which body.
STEPS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("dispatch", DISPATCHER, {"lead": STREET}),
    ("accept", HANDLER, {}),
    ("contact", HANDLER, {"note": "已电话联系诉求人，约定上门查看"}),
    ("reply", HANDLER, {"result": "solved", "content": "已安排人员现场处理完毕，并电话回访确认"}),
)
ERRORS_SHOWN = 3  # bodies printed per operation and phase
QUEUE_MAX = 5_000  # tickets waiting for their next action


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ---- /proc -------------------------------------------------------------------------------------

CLK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """A process's CPU time so far (user + system), or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except FileNotFoundError:
        return None
    return None


def _cmdline(pid: str) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """The worker processes a supervisor spawned (multiprocessing's spawn_main)."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
        if ppid == pid and "spawn_main" in _cmdline(p):
            out.append(int(p))
    return sorted(out)


def pg_backends(dbname: str) -> list[int]:
    """This database's PostgreSQL backends ("postgres: 15/main: user DB host(port) state")."""
    needle = f" {dbname} "
    return [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and (c := _cmdline(p)).startswith("postgres:") and needle in c
    ]


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class CpuWatch:
    """CPU % (100 = one core) of groups of processes over a phase."""

    def __init__(self, groups: dict[str, list[int]], dbname: str) -> None:
        self.groups = groups
        self.dbname = dbname
        self.wall = time.perf_counter()
        self.machine = machine_ticks()
        self.start = {pid: cpu_seconds(pid) or 0.0 for pids in groups.values() for pid in pids}
        self.pg = {pid: cpu_seconds(pid) or 0.0 for pid in pg_backends(dbname)}
        self.client = time.process_time()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall
        out: dict[str, float] = {}
        for name, pids in self.groups.items():
            used = sum((cpu_seconds(p) or self.start[p]) - self.start[p] for p in pids)
            out[f"{name}_cpu_pct"] = round(100 * used / wall, 1)
        used = 0.0
        for pid in set(self.pg) | set(pg_backends(self.dbname)):
            now = cpu_seconds(pid)
            if now is not None:
                used += now - self.pg.get(pid, 0.0)  # a new backend: all of its time is ours
        out["postgres_cpu_pct"] = round(100 * used / wall, 1)
        out["client_cpu_pct"] = round(100 * (time.process_time() - self.client) / wall, 1)
        busy, total = machine_ticks()
        cores = os.cpu_count() or 1
        out["machine_busy_pct"] = round(
            100 * cores * (busy - self.machine[0]) / max(1, total - self.machine[1]), 1
        )
        out["seconds"] = round(wall, 2)
        return out


class WindowWatch(threading.Thread):
    """A CpuWatch over the measured window only [t0, t1] (perf_counter), warm-up left out."""

    def __init__(self, groups: dict[str, list[int]], dbname: str, t0: float, t1: float) -> None:
        super().__init__(daemon=True)
        self.groups, self.dbname, self.t0, self.t1 = groups, dbname, t0, t1
        self.result: dict[str, float] = {}
        self.start()

    def run(self) -> None:
        time.sleep(max(0.0, self.t0 - time.perf_counter()))
        watch = CpuWatch(self.groups, self.dbname)
        time.sleep(max(0.0, self.t1 - time.perf_counter()))
        self.result = watch.stop()

    def per_request(self, ops: dict[str, dict[str, Any]]) -> dict[str, float]:
        """The window's CPU %, and CPU ms per request (all operations) for each group."""
        self.join()
        out = dict(self.result)
        count = sum(o["count"] for o in ops.values())
        wall = out.pop("seconds", 0.0)
        for key in list(out):
            if key.endswith("_cpu_pct") and count:
                ms = out[key] / 100 * wall * 1000 / count
                out[key.removesuffix("_pct") + "_ms_per_request"] = round(ms, 2)
        return out


# ---- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    """A free port in 21000–31999 (below the ephemeral range), picked from the pid."""
    rng = random.Random(os.getpid() * 7919 + time.time_ns())
    for _ in range(200):
        port = rng.randint(21000, 31999)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit("no free port in 21000–31999")


class Proc:
    """A child process with its output in a log file, stopped with SIGTERM."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self.log_file = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self.log_file, stderr=subprocess.STDOUT
        )
        self.pid = self.proc.pid

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise SystemExit(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def wait_http(proc: Proc, url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"{proc.name} did not answer {url} within {timeout:.0f} s:\n{proc.tail()}")


def wait_idle(proc: Proc, timeout: float, below_pct: float = 5.0) -> float:
    """Until the process uses under `below_pct` of a core over 2 s (the job worker's first
    round at start: reports owed, warnings scan, knowledge jobs); the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        proc.check()
        before = cpu_seconds(proc.pid) or 0.0
        time.sleep(2.0)
        if 100 * ((cpu_seconds(proc.pid) or 0.0) - before) / 2.0 < below_pct:
            break
    return round(time.monotonic() - started, 1)


# ---- the database ------------------------------------------------------------------------------


def sqlalchemy_url(url: str) -> str:
    u = make_url(url)
    return str(u.set(drivername="postgresql+psycopg")) if u.drivername == "postgresql" else url


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(server: str, name: str) -> str:
    admin = create_engine(sqlalchemy_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(sqlalchemy_url(server)).set(database=name).render_as_string(hide_password=False)


def drop_database(server: str, name: str) -> None:
    admin = create_engine(sqlalchemy_url(server), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def jiesu_env(url: str, var_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "JIESU_DATABASE_URL": url,
        "JIESU_VAR_DIR": str(var_dir),
        "JIESU_ARGON2_PROFILE": "cheapest",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }


def jiesu_cli() -> str:
    return str(Path(sys.executable).with_name("jiesu"))


def set_up(url: str, args: argparse.Namespace, env: dict[str, str], logs: Path) -> dict[str, Any]:
    """`jiesu demo init` with the bench's history, then statistics as autovacuum would have."""
    started = time.perf_counter()
    argv = [jiesu_cli(), "demo", "init", "--days", str(args.history_days),
            "--per-day", str(args.per_day)]  # fmt: skip
    with (logs / "demo_init.log").open("wb") as out:
        rc = subprocess.run(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        ).returncode
    if rc:
        raise SystemExit(f"jiesu demo init failed ({rc}):\n{(logs / 'demo_init.log').read_text()}")
    init_s = time.perf_counter() - started
    started = time.perf_counter()
    analyse(url)
    return {"demo_init_s": round(init_s, 1), "analyse_s": round(time.perf_counter() - started, 1)}


def analyse(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text("VACUUM ANALYZE"))
    engine.dispose()


@dataclass
class Material:
    """What the client sends: bodies from the history, ids to read, tickets to act on."""

    bodies: list[dict[str, Any]]
    read_ids: list[int]
    # Per step of STEPS, the tickets whose next step it is; the furthest along go first, so
    # that tickets walk the whole path instead of all waiting at the first step.
    pending: list[deque[int]]
    tickets: int


def material(url: str, rng: random.Random, sample: int = 1_000) -> Material:
    engine = create_engine(url)
    with engine.connect() as c:
        tickets = int(c.execute(text("SELECT count(*) FROM ticket")).scalar() or 0)
        rows = c.execute(
            text(
                "SELECT t.title, t.content, t.address, t.request_type, c.code FROM ticket t "
                "LEFT JOIN category c ON c.id = t.category_id "
                "WHERE t.channel <> 'proactive' ORDER BY random() LIMIT :n"
            ),
            {"n": sample},
        ).all()
        read_ids = list(
            c.execute(text("SELECT id FROM ticket ORDER BY random() LIMIT :n"), {"n": sample})
            .scalars()
        )  # fmt: skip
        pending = list(
            c.execute(
                text("SELECT id FROM ticket WHERE status = 'received' ORDER BY random() LIMIT 500")
            ).scalars()
        )
    engine.dispose()
    if not rows:
        raise SystemExit("the database has no tickets to take bodies from")
    bodies = [intake_body(rng, *row) for row in rows]
    steps = [deque(pending)] + [deque() for _ in STEPS[1:]]
    return Material(bodies, read_ids, steps, tickets)


# ---- signing in --------------------------------------------------------------------------------

CSRF_FIELD = re.compile(r'name="csrf_token"\s+value="([^"]+)"')


def api_token(base: str, username: str) -> dict[str, str]:
    r = httpx.post(
        base + "/api/v1/auth/token", json={"username": username, "password": PASSWORD}, timeout=60
    )
    if r.status_code != 200:
        raise SystemExit(f"sign-in as {username}: {r.status_code} {r.text[:300]}")
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def console_cookie(base: str, username: str) -> dict[str, str]:
    with httpx.Client(base_url=base, timeout=60) as c:
        page = c.get("/login")
        m = CSRF_FIELD.search(page.text)
        if page.status_code != 200 or not m:
            raise SystemExit(f"/login answered {page.status_code} without a csrf_token field")
        data = {"username": username, "password": PASSWORD, "csrf_token": m.group(1)}
        r = c.post("/login", data=data)
        session = c.cookies.get("jiesu_session")
        if r.status_code != 303 or not session:
            raise SystemExit(f"console sign-in as {username}: {r.status_code} {r.text[:300]}")
        return {"Cookie": f"jiesu_session={session}"}


# ---- the client --------------------------------------------------------------------------------


@dataclass
class OpStats:
    samples: list[float] = field(default_factory=list)  # ms
    errors: int = 0
    shown: int = 0


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def summarise(stats: dict[str, OpStats], seconds: float) -> dict[str, dict[str, Any]]:
    out = {}
    for name in sorted(stats):
        s = stats[name]
        x = s.samples
        out[name] = {
            "count": len(x),
            "per_s": round(len(x) / seconds, 1),
            "p50_ms": round(pct(x, 50), 1) if x else None,
            "p95_ms": round(pct(x, 95), 1) if x else None,
            "p99_ms": round(pct(x, 99), 1) if x else None,
            "errors": s.errors,
        }
    return out


class Recorder:
    """Requests that start inside the measured window are counted (in-flight ones at its end
    finish and count: a closed loop never has more than --concurrency of them)."""

    def __init__(self, phase: str, t0: float, t1: float) -> None:
        self.phase = phase
        self.t0 = t0
        self.t1 = t1
        self.stats: dict[str, OpStats] = {}

    def add(self, op: str, started: float, ms: float, status: int, body: str) -> None:
        if started < self.t0:
            return
        s = self.stats.setdefault(op, OpStats())
        if 200 <= status < 400:
            s.samples.append(ms)
            return
        s.errors += 1
        if s.shown < ERRORS_SHOWN:
            s.shown += 1
            log(f"[{self.phase}] {op}: {status or 'no answer'} {body[:400]}")


@dataclass
class Jiesu:
    """Who signs in as whom, and what they send."""

    agents: list[dict[str, str]]
    dispatcher: dict[str, str]
    supervisor: dict[str, str]
    handler: dict[str, str]
    handler_console: dict[str, str]
    material: Material


class Mix:
    """The next operation by smooth weighted round robin (as nginx spreads its upstreams): the
    weights hold exactly over every 100 requests and each operation comes back evenly spaced,
    so even a short run has every operation in its proportion (random draws would leave an
    8 % operation out of a 40-request smoke run one time in thirty)."""

    def __init__(self, weights: dict[str, int]) -> None:
        self.weights = weights
        self.total = sum(weights.values())
        self.current = dict.fromkeys(weights, 0)

    def next(self) -> str:
        for op, w in self.weights.items():
            self.current[op] += w
        op = max(self.current, key=lambda k: self.current[k])
        self.current[op] -= self.total
        return op


class LeanResponse:
    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)

    async def aread(self) -> bytes:
        return self.content


class LeanClient:
    """One keep-alive HTTP/1.1 connection on asyncio streams (`--client lean`).

    httpx costs the client ~2 ms of CPU a request on this machine: at the goal's 500 creates/s
    the client alone would take one of the two cores the servers need. This client writes the
    request and reads the status, the headers and a Content-Length or chunked body, nothing
    more (no redirects, no cookies jar, no pool: one per connection, closed loop), for a small
    fraction of that. Same requests, same headers, same measurement."""

    def __init__(self, base: str) -> None:
        u = httpx.URL(base)
        self.host, self.port = u.host, u.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None
    ) -> LeanResponse:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        body = b"" if json is None else _json_bytes(json)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Length: {len(body)}"]  # fmt: skip
        if json is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split(" ", 2)[1])
            fields = {
                k.strip().lower(): v.strip()
                for k, v in (h.split(":", 1) for h in header_lines if ":" in h)
            }
            if "content-length" in fields:
                content = await self.reader.readexactly(int(fields["content-length"]))
            elif fields.get("transfer-encoding", "").lower() == "chunked":
                parts = []
                while size := int((await self.reader.readline()).split(b";")[0], 16):
                    parts.append(await self.reader.readexactly(size))
                    await self.reader.readline()
                await self.reader.readline()
                content = b"".join(parts)
            else:
                content = await self.reader.read()
                fields["connection"] = "close"
        except BaseException:
            await self.aclose()  # the stream is out of step: a new connection next time
            raise
        if fields.get("connection", "").lower() == "close":
            await self.aclose()
        return LeanResponse(status, content)

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


async def _send(client: Any, method: str, path: str, **kw: Any) -> tuple[int, str, Any]:
    """(status, the body when it is an error, the response); status 0: no answer."""
    try:
        r = await client.request(method, path, **kw)
        await r.aread()
        return r.status_code, "" if r.status_code < 400 else r.text, r
    except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        return 0, f"{type(exc).__name__}: {exc}", None


async def jiesu_request(
    client: Any, j: Jiesu, op: str, rng: random.Random, agent: dict[str, str]
) -> tuple[str, int, str, float]:
    """One request of the mix: (the operation's name, status, error body, ms)."""
    m = j.material
    if op == "action" and not any(m.pending):
        op = "read"  # nothing waits for an action yet
    started = time.perf_counter()
    if op == "create":
        status, body, r = await _send(
            client, "POST", "/api/v1/tickets", json=rng.choice(m.bodies), headers=agent
        )
        ms = (time.perf_counter() - started) * 1000
        if r is not None and status == 201:
            out = r.json()
            if len(m.read_ids) < 20_000:
                m.read_ids.append(out["id"])
            if out.get("status") == "received" and len(m.pending[0]) < QUEUE_MAX:
                m.pending[0].append(out["id"])
        return op, status, body, ms
    if op == "action":
        step = max(k for k, q in enumerate(m.pending) if q)
        tid = m.pending[step].popleft()
        action, who, payload = STEPS[step]
        headers = j.dispatcher if who == DISPATCHER else j.handler
        path = f"/api/v1/tickets/{tid}/actions/{action}"
        status, body, _ = await _send(client, "POST", path, json=payload, headers=headers)
        if status == 200 and step + 1 < len(STEPS):
            m.pending[step + 1].append(tid)
        return f"action:{action}", status, body, (time.perf_counter() - started) * 1000
    if op == "read":
        path, headers = f"/api/v1/tickets/{rng.choice(m.read_ids)}", j.supervisor
    elif op == "list_street":
        path, headers = "/api/v1/tickets?status=dispatched&status=accepted&page_size=20", j.handler
    elif op == "list_centre":
        page = rng.randint(1, 5)
        path = f"/api/v1/tickets?status=received&page={page}&page_size=20"
        headers = j.supervisor
    elif op == "console_inbox":
        path, headers = "/console/inbox", j.handler_console
    else:
        raise ValueError(f"unknown operation {op}")
    status, body, _ = await _send(client, "GET", path, headers=headers)
    return op, status, body, (time.perf_counter() - started) * 1000


async def jiesu_task(
    client: Any, j: Jiesu, mix: Mix, rec: Recorder, rng: random.Random, index: int
) -> None:
    agent = j.agents[index % len(j.agents)]
    while (now := time.perf_counter()) < rec.t1:
        op, status, body, ms = await jiesu_request(client, j, mix.next(), rng, agent)
        rec.add(op, now, ms, status, body)


async def minimal_task(
    client: Any, bodies: list[dict[str, Any]], rec: Recorder, rng: random.Random
) -> None:
    while (now := time.perf_counter()) < rec.t1:
        status, body, _ = await _send(client, "POST", "/tickets", json=rng.choice(bodies))
        rec.add("create", now, (time.perf_counter() - now) * 1000, status, body)


async def _run_tasks(base: str, concurrency: int, make: Any, lean: bool = False) -> None:
    """`concurrency` tasks: on one httpx.AsyncClient pooling as many connections, or each on
    its own LeanClient connection."""
    if lean:
        clients = [LeanClient(base) for _ in range(concurrency)]
        try:
            await asyncio.gather(*(make(c, i) for i, c in enumerate(clients)))
        finally:
            for c in clients:
                await c.aclose()
        return
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        await asyncio.gather(*(make(client, i) for i in range(concurrency)))


def prime(base: str, j: Jiesu, rounds: int = 3) -> tuple[float, int]:
    """Every operation a few times over 8 fresh connections before anything is measured: a
    new app worker loads the intake models, the templates and its pool on its first requests
    (seconds on this machine), which a short warm-up would otherwise count. The seconds taken
    and the errors (shown on stderr)."""
    started = time.perf_counter()
    mix = Mix(WEIGHTS)
    left = [rounds * sum(WEIGHTS.values()) // min(WEIGHTS.values())]
    rec = Recorder("prime", 0.0, 0.0)  # errors are shown, nothing is measured

    async def task(client: Any, i: int) -> None:
        rng = random.Random(i)
        while left[0] > 0:
            left[0] -= 1
            now = time.perf_counter()
            op, status, body, ms = await jiesu_request(client, j, mix.next(), rng, j.agents[0])
            rec.add(op, now, ms, status, body)

    asyncio.run(_run_tasks(base, 8, task))
    return round(time.perf_counter() - started, 1), sum(o.errors for o in rec.stats.values())


def http_phase(
    phase: str, base: str, args: argparse.Namespace, make: Any, groups: dict[str, list[int]],
    dbname: str,
) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:  # fmt: skip
    """The operations' figures and the server side's CPU over the measured window."""
    t0 = time.perf_counter() + args.warmup
    rec = Recorder(phase, t0, t0 + args.duration)
    watch = WindowWatch(groups, dbname, t0, t0 + args.duration)
    lean = args.client == "lean"
    asyncio.run(_run_tasks(base, args.concurrency, lambda c, i: make(c, i, rec), lean))
    ops = summarise(rec.stats, args.duration)
    return ops, watch.per_request(ops)


def raw_phase(
    url: str, args: argparse.Namespace, bodies: list[dict[str, Any]], dbname: str
) -> tuple[dict[str, Any], dict[str, float]]:
    """One-row transactions straight through psycopg, one thread and connection each; the
    connections open before the CPU watch starts and close after it stops (their backends'
    CPU is read from /proc while they live)."""
    sql = raw_insert_sql()
    rows = [row_of(Body.model_validate(b), datetime.now(UTC)) for b in bodies]
    conns = [psycopg.connect(libpq_url(url)) for _ in range(args.concurrency)]
    t0 = time.perf_counter() + args.warmup
    rec = Recorder("raw_postgres", t0, t0 + args.duration)
    watch = WindowWatch({}, dbname, t0, t0 + args.duration)
    lock = threading.Lock()

    def worker(i: int, conn: psycopg.Connection[Any]) -> None:
        rng = random.Random(args.seed + i)
        samples: list[tuple[float, float, int, str]] = []
        while (now := time.perf_counter()) < rec.t1:
            row = dict(rng.choice(rows))
            row["number"] = f"R{i:02d}{time.perf_counter_ns() % 10**13:013d}"
            try:
                conn.execute(sql, row, prepare=True)
                conn.commit()
                samples.append((now, (time.perf_counter() - now) * 1000, 200, ""))
            except psycopg.Error as exc:
                conn.rollback()
                samples.append((now, (time.perf_counter() - now) * 1000, 0, str(exc)))
        with lock:
            for started, ms, status, body in samples:
                rec.add("create", started, ms, status, body)

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(conns)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ops = summarise(rec.stats, args.duration)
        cpu = watch.per_request(ops)
    finally:
        for c in conns:
            c.close()
    return ops, cpu


# ---- the run -----------------------------------------------------------------------------------


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per key, the median over the runs (nested dicts key by key; counts and errors summed
    would hide a bad run, so they are medians too, except errors: the total)."""
    out: dict[str, Any] = {}
    keys = {k for r in runs for k in r}
    for k in sorted(keys):
        vals = [r[k] for r in runs if k in r]
        if isinstance(vals[0], dict):
            out[k] = median_of(vals)
        elif k == "errors":
            out[k] = sum(vals)
        else:
            nums = [v for v in vals if v is not None]
            out[k] = round(statistics.median(nums), 2) if nums else None
    return out


def ratios(jiesu: dict[str, Any], minimal: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    return {
        "jiesu_per_s_vs_minimal": div(jiesu.get("per_s"), minimal.get("per_s")),
        "jiesu_p99_vs_minimal": div(jiesu.get("p99_ms"), minimal.get("p99_ms")),
        "minimal_per_s_vs_raw": div(minimal.get("per_s"), raw.get("per_s")),
    }


def print_ops(title: str, ops: dict[str, Any]) -> None:
    print(f"\n{title}")
    print(f"  {'operation':18s} {'count':>8s} {'per s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} "
          f"{'p99 ms':>8s} {'errors':>7s}")  # fmt: skip
    for name, o in ops.items():
        f = [f"{o[k]:.1f}" if o[k] is not None else "-" for k in ("p50_ms", "p95_ms", "p99_ms")]
        print(f"  {name:18s} {o['count']:8.0f} {o['per_s']:8.1f} {f[0]:>8s} {f[1]:>8s} "
              f"{f[2]:>8s} {o['errors']:7d}")  # fmt: skip


@dataclass
class Target:
    """What one run measures: jiesu's server, the minimal endpoint's, the database."""

    args: argparse.Namespace
    url: str
    dbname: str
    base: str
    minimal_base: str | None
    jiesu: Jiesu
    groups: dict[str, list[int]]  # jiesu's app workers and job worker
    minimal_workers: list[int]


def jiesu_phase(
    t: Target, run: dict[str, Any], n: int, phase: str, weights: dict[str, int]
) -> None:
    args = t.args
    log(f"run {n + 1}/{args.runs}: {phase} …")
    mix = Mix(weights)  # one for all connections: the whole client keeps the weights

    def task(c: Any, i: int, rec: Recorder) -> Any:
        rng = random.Random(args.seed * 1000 + n * 100 + i)
        return jiesu_task(c, t.jiesu, mix, rec, rng, i)

    run[phase], run["server"][phase] = http_phase(phase, t.base, args, task, t.groups, t.dbname)


def one_run(t: Target, n: int) -> dict[str, Any]:
    """Intake alone, the mix, then the two baselines, and the ratios of this run."""
    args = t.args
    run: dict[str, Any] = {"server": {}}
    jiesu_phase(t, run, n, "intake_alone", {"create": 1})
    if args.only != "create":
        jiesu_phase(t, run, n, "mix", WEIGHTS)
    if t.minimal_base is None:
        return run
    log(f"run {n + 1}/{args.runs}: minimal_endpoint …")
    bodies = t.jiesu.material.bodies

    def task(c: Any, i: int, rec: Recorder) -> Any:
        return minimal_task(c, bodies, rec, random.Random(args.seed * 1000 + n * 100 + i))

    groups = {"app_workers": t.minimal_workers}
    ops, run["server"]["minimal_endpoint"] = http_phase(
        "minimal_endpoint", t.minimal_base, args, task, groups, t.dbname
    )
    run["minimal_endpoint"] = ops.get("create", {})
    log(f"run {n + 1}/{args.runs}: raw_postgres …")
    raw, run["server"]["raw_postgres"] = raw_phase(t.url, args, bodies, t.dbname)
    run["raw_postgres"] = raw.get("create", {})
    run["ratios"] = ratios(
        run["intake_alone"].get("create", {}), run["minimal_endpoint"], run["raw_postgres"]
    )
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--db",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="the PostgreSQL server (its database creates and drops the bench's)",
    )
    ap.add_argument("--url", help="measure this existing database (migrated, nothing generated)")
    ap.add_argument("--keep", action="store_true", help="keep the generated database")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per measured phase")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds before each phase counts")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument(
        "--client",
        choices=("httpx", "lean"),
        default="httpx",
        help="httpx.AsyncClient, or LeanClient (a fraction of httpx's client CPU)",
    )
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--only", choices=("create",), help="intake alone (no mix)")
    ap.add_argument("--skip-baselines", action="store_true")
    ap.add_argument("--history-days", type=int, default=10)
    ap.add_argument("--per-day", type=int, default=1_000)
    ap.add_argument("--workers", type=int, default=2, help="app worker processes")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    machine = {
        "node": platform.node(), "cores": os.cpu_count(), "python": platform.python_version(),
        "loadavg_before": loadavg(), "note": "shared machine: other engineers' work runs too",
    }  # fmt: skip
    log(f"machine: {machine['node']}, {machine['cores']} cores, load {machine['loadavg_before']}")
    setup: dict[str, Any] = {}
    name = None
    if args.url:
        url = sqlalchemy_url(args.url)
    else:
        name = f"b1_load_{os.getpid()}"
        url = create_database(args.db, name)
    dbname = make_url(url).database or ""
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="b1-load-") as tmp:
        logs = Path(tmp)
        env = jiesu_env(url, logs)
        try:
            if args.url:
                subprocess.run([jiesu_cli(), "db", "upgrade"], cwd=ROOT, env=env, check=True,
                               stdout=subprocess.DEVNULL)  # fmt: skip
            else:
                log(f"set-up: {name}, {args.history_days} days × {args.per_day:,} tickets …")
                setup.update(set_up(url, args, env, logs))
            create_tables(url)
            mat = material(url, rng)
            setup.update({"database": dbname, "tickets": mat.tickets})
            engine = create_engine(url)
            with engine.connect() as c:
                machine["postgres"] = c.execute(text("SHOW server_version")).scalar()
            engine.dispose()
            started = time.perf_counter()
            port = free_port()
            serve = Proc("serve", [jiesu_cli(), "serve", "--workers", str(args.workers),
                                   "--port", str(port)], env, logs)  # fmt: skip
            procs.append(serve)
            worker = Proc("worker", [jiesu_cli(), "worker"], env, logs)
            procs.append(worker)
            base = f"http://127.0.0.1:{port}"
            minimal, mbase = None, ""
            if not args.skip_baselines:  # started alongside: both import for seconds
                while (mport := free_port()) == port:
                    pass
                minimal = Proc("minimal", [sys.executable, str(ROOT / "bench/load_baseline.py"),
                                           "--port", str(mport), "--workers", str(args.workers)],
                               {**env, URL_ENV: url}, logs)  # fmt: skip
                procs.append(minimal)
                mbase = f"http://127.0.0.1:{mport}"
            wait_http(serve, base + "/healthz")
            if minimal is not None:
                wait_http(minimal, mbase + "/healthz")
            setup["servers_start_s"] = round(time.perf_counter() - started, 1)
            setup["worker_settle_s"] = wait_idle(worker, timeout=240)
            app_workers = children(serve.pid)
            if len(app_workers) != args.workers:
                raise SystemExit(f"jiesu serve runs {len(app_workers)} workers, not {args.workers}")
            j = Jiesu(
                agents=[api_token(base, a) for a in AGENTS],
                dispatcher=api_token(base, DISPATCHER),
                supervisor=api_token(base, SUPERVISOR),
                handler=api_token(base, HANDLER),
                handler_console=console_cookie(base, HANDLER),
                material=mat,
            )
            setup["prime_s"], setup["prime_errors"] = prime(base, j)
            rss_before = [rss_mb(p) for p in app_workers]
            groups = {"app_workers": app_workers, "job_worker": [worker.pid]}
            target = Target(args, url, dbname, base, mbase if minimal else None, j, groups,
                            children(minimal.pid) if minimal else [])  # fmt: skip
            runs = [one_run(target, n) for n in range(args.runs)]
            serve.check()
            worker.check()
            rss_after = [rss_mb(p) for p in app_workers]
        finally:
            for p in procs:
                p.stop()
            if name and not args.keep:
                drop_database(args.db, name)
            elif name:
                log(f"kept: {url}")
    med = median_of(runs)
    machine["loadavg_after"] = loadavg()
    operations = med["mix"] if "mix" in med else med["intake_alone"]
    result = {
        "operations": operations,
        "intake_alone": med["intake_alone"],
        "baselines": {k: med[k] for k in ("minimal_endpoint", "raw_postgres") if k in med},
        "ratios": med.get("ratios", {}),
        "server": {**med["server"], "app_workers_rss_mb": {"before": rss_before,
                                                           "after": rss_after}},
        "setup": setup,
        "machine": machine,
        "args": {k: v for k, v in vars(args).items() if k not in ("db", "url")},
        "runs": runs,
        "weights": WEIGHTS if args.only != "create" else {"create": 1},
    }  # fmt: skip
    print_report(result, args)
    print(json.dumps(result, ensure_ascii=False))
    return 0


def print_report(r: dict[str, Any], args: argparse.Namespace) -> None:
    m = r["machine"]
    s = r["setup"]
    print(f"machine: {m['node']}, {m['cores']} cores (shared), Python {m['python']}, "
          f"PostgreSQL {m.get('postgres')}; load average {m['loadavg_before']} → "
          f"{m['loadavg_after']}")  # fmt: skip
    print(f"database: {s['database']}, {s['tickets']:,} tickets; set-up "
          + ", ".join(f"{k} {v}" for k, v in s.items() if k.endswith("_s")))  # fmt: skip
    print(f"{args.concurrency} connections ({args.client} client), {args.duration:.0f} s per "
          f"phase after {args.warmup:.0f} s warm-up, {args.runs} run(s): medians")  # fmt: skip
    print_ops("intake alone (POST /api/v1/tickets)", r["intake_alone"])
    if "mix" in r["runs"][0]:
        print_ops("mix (" + ", ".join(f"{k} {v}" for k, v in WEIGHTS.items()) + ")",
                  r["operations"])  # fmt: skip
    for name, b in r["baselines"].items():
        print_ops(name.replace("_", " "), {"create": b})
    if r["ratios"]:
        x = r["ratios"]
        print(f"\nratios: jiesu creates/s ÷ minimal {x['jiesu_per_s_vs_minimal']}, "
              f"jiesu p99 ÷ minimal p99 {x['jiesu_p99_vs_minimal']}, "
              f"minimal ÷ raw {x['minimal_per_s_vs_raw']}")  # fmt: skip
    print("\nCPU over the measured window: % (100 = one core) | ms per request")
    for phase, cpu in r["server"].items():
        if phase == "app_workers_rss_mb":
            continue
        pcts = ", ".join(f"{k.removesuffix('_cpu_pct')} {v}" for k, v in cpu.items()
                         if k.endswith("_pct"))  # fmt: skip
        per = ", ".join(f"{k.removesuffix('_cpu_ms_per_request')} {v}" for k, v in cpu.items()
                        if k.endswith("_per_request"))  # fmt: skip
        print(f"  {phase:18s} {pcts} | {per}")
    rss = r["server"]["app_workers_rss_mb"]
    print(f"app workers' RSS MB: before {rss['before']}, after {rss['after']}")


if __name__ == "__main__":
    sys.exit(main())
