#!/usr/bin/env python3
"""How fast `jiesu import` checks and writes historical orders, on SQLite and PostgreSQL.

A CSV of ROWS rows shaped like Fuzhou's river requests (district, river, request_type, channel,
title, content, date, reply, redispatch_count; the same mix of types, channels and re-dispatch
counts) is generated once; each run starts from a fresh database with tests/packs/fuzhou loaded,
checks the file (validate only) and commits it with docs/examples/import/fuzhou_river_requests.yaml
(tickets, assignments, events, the external ids, and the assessment's facts and rollups). The
figures are rows per second, median of RUNS runs; the commit's share without the facts is shown.

    .venv/bin/python bench/import_orders.py [--rows 100000] [--runs 3] [--backend postgresql]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from jiesu.citypack.load import load_pack  # noqa: E402
from jiesu.citypack.parse import read_pack  # noqa: E402
from jiesu.db.engine import Database  # noqa: E402
from jiesu.db.migrate import upgrade  # noqa: E402
from jiesu.imports import service  # noqa: E402
from jiesu.imports.mapping import load_mapping  # noqa: E402
from jiesu.tickets.models import Event, Ticket  # noqa: E402

PG = os.environ.get("JIESU_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PACK = ROOT / "tests" / "packs" / "fuzhou"
MAPPING = ROOT / "docs" / "examples" / "import" / "fuzhou_river_requests.yaml"
DISTRICTS = {"仓山区": 743, "晋安区": 222, "台江区": 174, "鼓楼区": 56, "马尾区": 8}
TYPES = {"投诉": 1006, "咨询": 140, "建议": 39, "举报": 14, "求助": 4}
CHANNELS = {"网站": 557, "电话": 479, "e福州app": 69, "微信": 33, "12345app": 26, "qq": 20,
            "短信": 8, "微博": 7, "邮件": 3}  # fmt: skip
REDISPATCH = {0: 839, 1: 258, 2: 79, 3: 21, 4: 2, 5: 2, 6: 1, 7: 1}
RIVERS = ["龙津河", "跃进河", "金港河", "洋里溪", "瀛洲河", "东郊河", "浦上河", "三捷河"]
WORDS = "河道黑臭垃圾漂浮污水直排清淤整治护岸步道绿化施工围挡噪声异味蚊虫水质"


def generate(path: Path, rows: int, seed: int = 15) -> None:
    rng = random.Random(seed)

    def pick(weights: dict) -> object:
        return rng.choices(list(weights), list(weights.values()))[0]

    start = date(2016, 1, 1)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["district", "river", "request_type", "channel", "title", "content", "date",
                    "reply", "redispatch_count"])  # fmt: skip
        for i in range(rows):
            river = rng.choice(RIVERS)
            body = "".join(rng.choices(WORDS, k=rng.randint(40, 160)))
            w.writerow([
                pick(DISTRICTS), river, pick(TYPES), pick(CHANNELS), f"关于{river}的诉求{i}",
                f"{river}{body}", (start + timedelta(days=rng.randrange(1826))).isoformat(),
                "您好，您反映的问题已转相关单位核实处理，" + body[:40], pick(REDISPATCH),
            ])  # fmt: skip


def fresh(backend: str, tmp: Path) -> tuple[str, object]:
    if backend == "sqlite":
        return f"sqlite:///{tmp / (uuid.uuid4().hex + '.sqlite3')}", None
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


def one_run(backend: str, tmp: Path, data: Path) -> dict[str, float]:
    url, handle = fresh(backend, tmp)
    try:
        upgrade(url)
        db = Database(url)
        with db.write() as s:
            load_pack(read_pack(PACK), db_session=s)
        mapping = load_mapping(MAPPING)
        t0 = time.perf_counter()
        with db.read() as s:
            report = service.check(data, mapping, db_session=s)
        t1 = time.perf_counter()
        assert not report.errors, report.errors[:5]
        with db.write() as s:
            service.commit(report, mapping, db_session=s)
        t2 = time.perf_counter()
        with db.read() as s:
            tickets = s.scalar(select(func.count()).select_from(Ticket))
            events = s.scalar(select(func.count()).select_from(Event))
        assert tickets == report.rows, (tickets, report.rows)
        db.dispose()
        return {"check": t1 - t0, "commit": t2 - t1, "rows": report.rows, "events": events,
                "facts": service.LAST_TIMINGS.get("facts", 0.0)}  # fmt: skip
    finally:
        drop(handle)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = ap.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        data = tmp / "orders.csv"
        generate(data, args.rows)
        print(f"{args.rows:,} rows ({data.stat().st_size / 1e6:.1f} MB CSV); "
              f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")  # fmt: skip
        for backend in backends:
            runs = [one_run(backend, tmp, data) for _ in range(args.runs)]
            check = statistics.median(r["check"] for r in runs)
            commit = statistics.median(r["commit"] for r in runs)
            facts = statistics.median(r["facts"] for r in runs)
            print(f"{backend}: check {args.rows / check:,.0f} rows/s ({check:.2f} s); "
                  f"commit {args.rows / commit:,.0f} rows/s ({commit:.2f} s, of which facts and "
                  f"rollups {facts:.2f} s); {runs[0]['events']:,} events; "
                  f"runs {[round(r['commit'], 2) for r in runs]}")  # fmt: skip


if __name__ == "__main__":
    main()
