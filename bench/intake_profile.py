#!/usr/bin/env python3
"""Where a ticket create's time goes (issue 17 §2): profile the intake in-process.

Runs N creates through the real API path (`POST /api/v1/tickets`, FastAPI's TestClient, the
app as `jiesu serve` builds it) against a PostgreSQL database that already holds a realistic
history (`jiesu demo init --days 14 --per-day 1000` in it: the Beijing pack, ~14k tickets, the
intake models trained on them). Bodies are the history's own titles, contents and addresses
(the demo generator's texts), half with the agent's category and request type, half without,
each with a random mobile number, as `bench/load.py` sends them.

- `--mode profile` (default): one thread, stdlib cProfile around the creates (CPU time; `--clock
  wall` for wall time); prints the top functions by cumulative and by own time, and the SQL statements per create (count and time,
  from SQLAlchemy's cursor events), grouped by statement.
- `--mode concurrent`: `--threads` threads (16) each creating in a loop for `--seconds`; a
  sampler reads `pg_stat_activity` every 10 ms and counts the sessions waiting on a lock, by
  the statement they wait in: the serialisation points. Prints creates/s and p50/p95/p99 too
  (in-process, one Python process: its GIL bounds the throughput; the figure that counts is
  `bench/load.py --only create`'s).

    .venv/bin/python bench/intake_profile.py --url postgresql+psycopg://postgres@127.0.0.1:5432/DB \\
        [--mode profile|concurrent] [--creates 300] [--threads 16] [--seconds 20] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import re
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("JIESU_ARGON2_PROFILE", "cheapest")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fastapi.testclient import TestClient  # noqa: E402
from intake_bodies import intake_body  # noqa: E402
from sqlalchemy import create_engine, event, text  # noqa: E402

AGENTS = ("agent1", "agent2", "agent3")
PASSWORD = "demo12345"


def bodies(url: str, n: int, rng: random.Random) -> list[dict[str, Any]]:
    engine = create_engine(url)
    with engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT t.title, t.content, t.address, t.request_type, c.code FROM ticket t "
                "LEFT JOIN category c ON c.id = t.category_id "
                "WHERE t.channel <> 'proactive' ORDER BY random() LIMIT :n"
            ),
            {"n": n},
        ).all()
    engine.dispose()
    out = [intake_body(rng, *row) for row in rows]
    if not out:
        raise SystemExit("the database has no tickets: run `jiesu demo init` on it first")
    return out


def app_client(url: str) -> TestClient:
    os.environ["JIESU_DATABASE_URL"] = url
    from jiesu.settings import get_settings
    from jiesu.web.app import create_app

    get_settings.cache_clear()
    return TestClient(create_app())


def token(client: TestClient, username: str, password: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    if r.status_code != 200:
        raise SystemExit(f"cannot sign in as {username}: {r.status_code} {r.text[:200]}")
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


_NUMBERS = re.compile(r"\b\d+\b|'[^']*'")


class SqlCounter:
    """Statements executed (count, seconds) grouped by their text, numbers blanked."""

    def __init__(self) -> None:
        self.by_statement: dict[str, list[float]] = defaultdict(list)
        self._local = threading.local()

    def attach(self, engine: Any) -> None:
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self._local.start = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        key = " ".join(_NUMBERS.sub("?", statement).split())[:110]
        self.by_statement[key].append(time.perf_counter() - self._local.start)

    def reset(self) -> None:
        self.by_statement.clear()

    def report(self, creates: int, top: int) -> str:
        count = sum(len(v) for v in self.by_statement.values())
        seconds = sum(sum(v) for v in self.by_statement.values())
        lines = [
            f"SQL per create: {count / creates:.1f} statements, "
            f"{seconds / creates * 1000:.2f} ms (client-side, driver included)"
        ]
        ranked = sorted(self.by_statement.items(), key=lambda kv: -sum(kv[1]))[:top]
        for stmt, times in ranked:
            lines.append(
                f"  {len(times) / creates:5.2f}/create {sum(times) / creates * 1000:7.3f} ms  {stmt}"
            )
        return "\n".join(lines)


def engine_of(client: TestClient) -> Any:
    return client.app.state.db.engine  # type: ignore[attr-defined]


def direct_create(db: Any, bearer: str, body: dict[str, Any]) -> Any:
    """One create as `POST /api/v1/tickets` runs it, in this thread (cProfile sees one thread;
    TestClient runs the app in others): the token's principal, the view function itself, the
    answer's JSON. Only the HTTP parsing and routing are left out."""
    from fastapi import Response

    from jiesu.auth.service import principal_for_token
    from jiesu.tickets.shapes import TicketCreate
    from jiesu.tickets.views import create

    with db.read() as session:
        principal = principal_for_token(bearer, db_session=session)
    out = create(TicketCreate.model_validate(body), db, principal, Response(), None)
    return out.model_dump_json()


def profile_mode(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    material = bodies(args.url, args.creates + 20, rng)
    with app_client(args.url) as client:
        headers = token(client, AGENTS[0], args.password)
        bearer = headers["Authorization"].removeprefix("Bearer ")
        db = client.app.state.db  # type: ignore[attr-defined]
        sql = SqlCounter()
        sql.attach(db.engine)
        for body in material[:20]:  # warm: caches, models, prepared statements
            direct_create(db, bearer, body)
        sql.reset()
        # CPU time by default: on a shared machine the waits for PostgreSQL (and for a core)
        # would otherwise fill the top of the list; --clock wall shows them.
        profiler = cProfile.Profile(time.process_time if args.clock == "cpu" else time.perf_counter)
        started = time.perf_counter()
        cpu = time.process_time()
        profiler.enable()
        for body in material[20 : 20 + args.creates]:
            direct_create(db, bearer, body)
        profiler.disable()
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        sql_s = sum(sum(v) for v in sql.by_statement.values())
    n = args.creates
    print(f"{n} creates, one at a time: {wall / n * 1000:.2f} ms each (wall), "
          f"{cpu / n * 1000:.2f} ms CPU in this process (profiler on), "
          f"{sql_s / n * 1000:.2f} ms in SQL statements")  # fmt: skip
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.strip_dirs().sort_stats(order).print_stats(args.top)
        print(f"\n---- top {args.top} by {order} ----")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))
    print("\n---- SQL ----")
    print(sql.report(n, args.top))


def concurrent_mode(args: argparse.Namespace) -> None:
    rng = random.Random(11)
    material = bodies(args.url, 2_000, rng)
    waits: Counter[str] = Counter()
    samples = 0
    latencies: list[float] = []
    errors = 0
    stop = threading.Event()
    lock = threading.Lock()
    with app_client(args.url) as first:
        headers = [token(first, AGENTS[i % len(AGENTS)], args.password) for i in range(3)]
        for body in material[:10]:
            first.post("/api/v1/tickets", json=body, headers=headers[0])

        def worker(i: int) -> None:
            nonlocal errors
            local = random.Random(i)
            while not stop.is_set():
                body = local.choice(material)
                t0 = time.perf_counter()
                r = first.post("/api/v1/tickets", json=body, headers=headers[i % 3])
                dt = time.perf_counter() - t0
                with lock:
                    if r.status_code == 201:
                        latencies.append(dt)
                    else:
                        errors += 1

        def sampler() -> None:
            nonlocal samples
            engine = create_engine(args.url, isolation_level="AUTOCOMMIT")
            with engine.connect() as c:
                while not stop.is_set():
                    rows = c.execute(
                        text(
                            "SELECT wait_event_type, left(regexp_replace(query, '\\s+', ' ', "
                            "'g'), 70) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND pid <> pg_backend_pid() AND state = 'active'"
                        )
                    ).all()
                    samples += 1
                    for kind, query in rows:
                        waits[f"{kind or 'CPU'}: {query}"] += 1
                    time.sleep(0.01)
            engine.dispose()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
        watch = threading.Thread(target=sampler)
        started = time.perf_counter()
        for t in (*threads, watch):
            t.start()
        time.sleep(args.seconds)
        stop.set()
        for t in (*threads, watch):
            t.join()
        wall = time.perf_counter() - started
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    print(f"{args.threads} threads, {wall:.1f} s: {len(lat)} creates, {len(lat) / wall:.1f}/s, "
          f"p50 {pct(0.5):.0f} ms, p95 {pct(0.95):.0f} ms, p99 {pct(0.99):.0f} ms, "
          f"errors {errors}")  # fmt: skip
    print(f"\nactive PostgreSQL sessions by what they do ({samples} samples, mean per sample):")
    for what, n in waits.most_common(args.top):
        print(f"  {n / max(samples, 1):5.2f}  {what}")
    if lat:
        print(f"mean latency {statistics.mean(lat) * 1000:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a PostgreSQL database after demo init")
    parser.add_argument("--mode", choices=("profile", "concurrent"), default="profile")
    parser.add_argument("--creates", type=int, default=300)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="the profile's")
    parser.add_argument("--password", default=PASSWORD, help="the demo users' password")
    args = parser.parse_args()
    if args.mode == "profile":
        profile_mode(args)
    else:
        concurrent_mode(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
