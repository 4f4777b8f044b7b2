#!/usr/bin/env python3
"""What the demo knowledge base adds to `jiesu demo init` (issue 16), on SQLite.

Each run starts from a fresh SQLite database with the Beijing pack loaded, then times
`load_demo_base` (publishing the pack's demo entries with their past and the search index) and
`generate` (DAYS days at PER_DAY tickets a day, rollups off) with the base loaded, against the
same history without a base (the stories then answer without entries: the code path before the
knowledge base). The figures are medians of RUNS runs; the last line of stdout is JSON.

    .venv/bin/python bench/demo_knowledge.py [--days 10] [--per-day 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from jiesu.citypack.load import load_pack  # noqa: E402
from jiesu.citypack.parse import read_pack  # noqa: E402
from jiesu.db.engine import Database  # noqa: E402
from jiesu.db.migrate import upgrade  # noqa: E402
from jiesu.demo.generate import DEFAULT_PACK, generate  # noqa: E402
from jiesu.demo.knowledge import load_demo_base  # noqa: E402
from jiesu.knowledge.models import KnowledgeUse  # noqa: E402

NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def one(days: int, per_day: int, *, base: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        db = Database(url)
        with db.write() as s:
            load_pack(read_pack(DEFAULT_PACK), db_session=s)
        out: dict[str, float] = {}
        if base:
            start = time.perf_counter()
            out["entries"] = load_demo_base(db, DEFAULT_PACK, now=NOW)
            out["load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        result = generate(db, days=days, per_day=per_day, now=NOW, metrics=False)
        out["generate_s"] = time.perf_counter() - start
        out["tickets"] = result.tickets
        with db.read() as s:
            out["uses"] = s.scalar(select(func.count()).select_from(KnowledgeUse)) or 0
        db.dispose()
        return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--per-day", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
    for _ in range(args.runs):
        for name in runs:
            runs[name].append(one(args.days, args.per_day, base=name == "with"))
            print(name, runs[name][-1], flush=True)
    summary = {
        name: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        for name, rows in runs.items()
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
