#!/usr/bin/env python3
"""How fast `jiesu demo generate` writes history, on SQLite and PostgreSQL.

Each run starts from a fresh database with the Beijing demo pack loaded and writes DAYS days at
PER_DAY tickets a day (tickets with their assignments and events). The figure is the median of
RUNS runs; as a baseline measured in the same run, the same stories are also told without
writing (`story only`), so the write path's share shows.

    .venv/bin/python bench/demo_generate.py [--days 20] [--per-day 5000] [--runs 3] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from jiesu.citypack.load import load_pack  # noqa: E402
from jiesu.citypack.parse import read_pack  # noqa: E402
from jiesu.db.engine import Database  # noqa: E402
from jiesu.db.migrate import upgrade  # noqa: E402
from jiesu.demo.generate import DEFAULT_PACK, generate, load_context  # noqa: E402
from jiesu.demo.story import Storyteller, daily_count  # noqa: E402
from jiesu.tickets.numbering import format_number  # noqa: E402

PG = os.environ.get("JIESU_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def fresh(backend: str, tmp: Path) -> tuple[str, object]:
    if backend == "sqlite":
        path = tmp / f"{uuid.uuid4().hex}.sqlite3"
        return f"sqlite:///{path}", None
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    name = f"jiesu_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    return PG.rsplit("/", 1)[0] + "/" + name, (admin, name)


def drop(handle: object) -> None:
    if handle is None:
        return
    admin, name = handle  # type: ignore[misc]
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def story_only(db: Database, days: int, per_day: int, now: datetime) -> float:
    ctx = load_context(db, DEFAULT_PACK)
    rng = random.Random(1)
    teller = Storyteller(ctx, rng, now)
    last = now.astimezone(ctx.tz).date()
    n, started = 0, time.perf_counter()
    for d in range(days):
        day = last - timedelta(days=d)
        for i in range(daily_count(per_day, day, rng)):
            created = teller.created_at(day)
            if created <= now:
                teller.tell(n, format_number(day, i + 1), day, created)
                n += 1
    return n / (time.perf_counter() - started)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--per-day", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--workers", type=int, default=None, help="story processes (default: auto)")
    args = ap.parse_args()
    pack = read_pack(DEFAULT_PACK)
    if not pack.ok:
        raise SystemExit("\n".join(map(str, pack.errors)))
    now = datetime.now(UTC)
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"workload: {args.days} days x ~{args.per_day} tickets/day, {args.runs} runs each, median"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            rates, events, baseline = [], [], []
            for _ in range(args.runs):
                url, handle = fresh(backend, Path(tmp))
                try:
                    upgrade(url)
                    db = Database(url)
                    with db.write() as s:
                        load_pack(pack, db_session=s)
                    baseline.append(story_only(db, args.days, args.per_day, now))
                    r = generate(
                        db, days=args.days, per_day=args.per_day, now=now, workers=args.workers
                    )
                    rates.append(r.tickets / r.seconds)
                    events.append(r.events / r.seconds)
                    db.dispose()
                finally:
                    drop(handle)
            med, base = statistics.median(rates), statistics.median(baseline)
            print(
                f"{backend:10s} {med:8,.0f} tickets/s  ({statistics.median(events):,.0f} events/s; "
                f"runs: {', '.join(f'{x:,.0f}' for x in rates)}); story only {base:,.0f} tickets/s; "
                f"writing costs {100 * (1 - med / base):.0f}% of the time"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
