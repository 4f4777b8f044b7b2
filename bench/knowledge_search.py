#!/usr/bin/env python3
"""The knowledge base's search speed over a large base (issue 16: ≤ 50 ms p95 at 50,000
entries, SQLite and PostgreSQL).

A fresh database per backend (SQLite in a temporary file; PostgreSQL: a throwaway database made
from --pg-admin-url, dropped after), migrated, the tiny test pack for units, then --entries
published entries: the demo base (`citypacks/beijing/demo_knowledge/*.yaml`) and synthetic ones
written from the pack's `demo_texts.yaml` (titles with their slots filled and a policy word,
callers' sentences as questions, two or three sentences as the answer, the category's keywords),
written in bulk; `search.reindex_all` builds the index (timed). Then --queries realistic
queries (callers' sentences from demo_texts cut to 5–40 characters, and the relevance set's
queries) run one at a time through `search.search(limit=5)`, after a warm-up; p50/p95/p99 in ms,
each the median over --runs passes. The last line of stdout is JSON.

    .venv/bin/python bench/knowledge_search.py --entries 50000 --backend both --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from sqlalchemy import create_engine, insert, select, text  # noqa: E402

from jiesu.citypack.load import load_pack  # noqa: E402
from jiesu.citypack.parse import read_pack  # noqa: E402
from jiesu.db.engine import Database  # noqa: E402
from jiesu.db.migrate import upgrade  # noqa: E402
from jiesu.knowledge import search as S  # noqa: E402
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeVersion  # noqa: E402
from jiesu.org.models import Unit  # noqa: E402

PACK = ROOT / "citypacks" / "beijing"
TINY = ROOT / "tests" / "packs" / "tiny"
RELEVANCE = ROOT / "tests" / "data" / "knowledge_relevance"
TODAY = date(2026, 3, 10)
NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
SUFFIXES = ["办理指南", "政策解答", "常见问题", "办理流程", "注意事项", "申请条件", "咨询答复"]
SLOT = re.compile(r"\{(\w+)\}")


def _fill(s: str, texts: dict[str, Any], rng: random.Random) -> str:
    def one(m: re.Match[str]) -> str:
        key = m.group(1)
        pool = {
            "community": texts.get("places") or ["和平里小区"],
            "road": texts.get("roads") or ["朝阳路"],
            "company": texts.get("companies") or ["某公司"],
            "street": ["和平里街道", "望京街道", "中关村街道", "鲁谷街道"],
            "district": ["朝阳区", "海淀区", "丰台区", "东城区", "西城区"],
            "place": texts.get("places") or ["和平里小区"],
        }.get(key)
        if pool:
            return str(rng.choice(pool))
        return str(rng.randint(2, 30))

    return SLOT.sub(one, s)


def _sentences(s: str) -> list[str]:
    return [x for x in re.split(r"(?<=[。！？；])", s) if x.strip()]


def demo_entries() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((PACK / "demo_knowledge").glob("*.yaml")):
        for e in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            if isinstance(e, dict) and e.get("title") and e.get("answer"):
                out.append(e)
    return out


def synthetic(n: int, rng: random.Random) -> list[dict[str, Any]]:
    texts = yaml.safe_load((PACK / "demo_texts.yaml").read_text(encoding="utf-8"))
    cats = [k for k, v in texts.items() if re.fullmatch(r"\d{4}", str(k)) and isinstance(v, dict)]
    keywords: dict[str, list[str]] = {}
    for line in (PACK / "categories.csv").read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.split(",")
        if len(parts) >= 7:
            keywords[parts[0]] = [w for w in parts[6].split("|") if w]
    out = []
    for _ in range(n):
        cat = rng.choice(cats)
        block = texts[cat]
        contents = block.get("contents") or ["请咨询相关部门。"]
        title = _fill(rng.choice(block.get("titles") or ["政策咨询"]), texts, rng)
        title = title + rng.choice(SUFFIXES)
        answer = "".join(
            _fill(
                rng.choice(texts[rng.choice([cat, cat, rng.choice(cats)])]["contents"]), texts, rng
            )
            for _ in range(rng.randint(2, 3))
        )[:400]
        questions = [
            _sentences(_fill(rng.choice(contents), texts, rng))[0][:40]
            for _ in range(rng.randint(2, 4))
        ]
        kws = keywords.get(cat) or keywords.get(cat[:2]) or []
        out.append(
            {
                "title": title[:200],
                "answer": answer,
                "questions": questions,
                "keywords": rng.sample(kws, min(3, len(kws))),
                "category": cat,
            }
        )
    return out


def queries(n: int, rng: random.Random) -> list[str]:
    texts = yaml.safe_load((PACK / "demo_texts.yaml").read_text(encoding="utf-8"))
    pool: list[str] = []
    for k, v in texts.items():
        if re.fullmatch(r"\d{4}", str(k)) and isinstance(v, dict):
            pool.extend(v.get("contents") or [])
    out: list[str] = []
    for path in sorted(RELEVANCE.glob("*.yaml")) if RELEVANCE.exists() else []:
        for item in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            if isinstance(item, dict) and item.get("q"):
                out.append(str(item["q"]))
    rng.shuffle(out)
    out = out[: n // 2]
    while len(out) < n:
        s = _fill(rng.choice(pool), texts, rng)
        length = rng.randint(5, 40)
        start = rng.choice([0, 0, max(0, rng.randint(0, max(0, len(s) - length)))])
        out.append(s[start : start + length])
    return out


def build(db: Database, entries: list[dict[str, Any]], rng: random.Random) -> float:
    """Writes the entries in bulk, then reindexes; the reindex's seconds."""
    with db.write() as session:
        load_pack(read_pack(TINY), db_session=session)
    with db.write() as session:
        owners = list(session.scalars(select(Unit.id)))
        rows_e, rows_v = [], []
        for i, e in enumerate(entries, start=1):
            owner = rng.choice(owners)
            published = NOW - timedelta(days=rng.randint(1, 900))
            valid_to = TODAY + timedelta(days=rng.randint(-20, 900)) if rng.random() < 0.4 else None
            common = {
                "title": e["title"],
                "category_code": str(e.get("category") or "") or None,
                "owner_unit_id": owner,
                "valid_from": date(2024, 1, 1),
                "valid_to": valid_to,
                "created_at": published,
                "updated_at": published,
                "published_at": published,
            }
            rows_e.append(
                {
                    **common,
                    "id": i,
                    "code": str(e.get("code") or f"KB-BENCH-{i:06d}"),
                    "status": "published",
                    "published_version_id": i,
                    "use_count": int(rng.paretovariate(1.5)) - 1,
                    "demo": True,
                    "revision": 1,
                    "open_flags": 0,
                }
            )
            rows_v.append(
                {
                    **common,
                    "id": i,
                    "entry_id": i,
                    "number": 1,
                    "state": "published",
                    "answer": e["answer"],
                    "keywords": list(e.get("keywords") or []),
                    "questions": list(e.get("questions") or []),
                }
            )
        for start in range(0, len(rows_e), 5000):
            session.execute(insert(KnowledgeEntry), rows_e[start : start + 5000])
            session.execute(insert(KnowledgeVersion), rows_v[start : start + 5000])
    t0 = time.perf_counter()
    with db.write() as session:
        n = S.reindex_all(db_session=session)
    seconds = time.perf_counter() - t0
    assert n == len(entries), (n, len(entries))
    if db.dialect == "postgresql":
        with db.write() as session:
            session.execute(text("ANALYZE"))
    return seconds


def measure(db: Database, qs: list[str], runs: int) -> dict[str, Any]:
    with db.read() as session:
        for q in qs[:20]:  # warm-up: caches, jieba, the synonym groups
            S.search(q, db_session=session, today=TODAY)
    p50s, p95s, p99s, found = [], [], [], 0
    for _ in range(runs):
        times = []
        with db.read() as session:
            for q in qs:
                t0 = time.perf_counter()
                hits = S.search(q, db_session=session, today=TODAY, limit=5)
                times.append((time.perf_counter() - t0) * 1000)
                found += bool(hits)
        times.sort()
        p50s.append(statistics.median(times))
        p95s.append(times[int(len(times) * 0.95) - 1])
        p99s.append(times[int(len(times) * 0.99) - 1])
    return {
        "p50_ms": round(statistics.median(p50s), 2),
        "p95_ms": round(statistics.median(p95s), 2),
        "p99_ms": round(statistics.median(p99s), 2),
        "p95_each_run_ms": [round(x, 2) for x in p95s],
        "queries_with_hits": round(found / (runs * len(qs)), 3),
    }


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    demo = demo_entries()
    entries = demo + synthetic(max(0, args.entries - len(demo)), rng)
    qs = queries(args.queries, random.Random(args.seed + 1))
    drop = None
    if args.url:
        url = args.url
    elif backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="kb_bench_")
        url = f"sqlite:///{folder}/kb.sqlite3"
    else:
        admin = create_engine(args.pg_admin_url, isolation_level="AUTOCOMMIT")
        name = f"jiesu_kb_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = args.pg_admin_url.rsplit("/", 1)[0] + "/" + name

        def drop() -> None:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    if args.url:
        url, drop = args.url, None
    if args.keep:
        drop = None
        print(f"{backend}: kept at {url}", file=sys.stderr)
    try:
        db = Database(url)
        reindex_s = total_s = 0.0
        if not args.url:
            upgrade(url)
            t0 = time.perf_counter()
            reindex_s = build(db, entries, rng)
            total_s = time.perf_counter() - t0
        result = measure(db, qs, args.runs)
        result.update(
            backend=backend,
            entries=len(entries),
            demo_entries=len(demo),
            queries=len(qs),
            reindex_s=round(reindex_s, 1),
            load_and_reindex_s=round(total_s, 1),
        )
        db.dispose()
        return result
    finally:
        if drop is not None:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=50000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--pg-admin-url",
        default=os.environ.get(
            "JIESU_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the database; print its URL")
    parser.add_argument("--url", help="measure this database again (built with --keep)")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = []
    for backend in backends:
        r = run_backend(backend, args)
        print(
            f"{backend}: {r['entries']} entries, reindex {r['reindex_s']} s; "
            f"{r['queries']} queries × {args.runs}: p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms, "
            f"p99 {r['p99_ms']} ms (p95 per run {r['p95_each_run_ms']})",
            file=sys.stderr,
        )
        results.append(r)
    print(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(),
                "results": results,
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
