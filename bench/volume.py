#!/usr/bin/env python3
"""Volume: intake, console pages, the monthly ranking and report at 1, 3, 6 and 12 M orders.

One PostgreSQL database grown step by step (issue 17 §3). The first million is the demo
history (`jiesu demo init --days 365 --per-day 2740`: one year of realistic orders with their
assignments, events, knowledge uses, assessment facts and rollups). Each further million is a
clone of that year shifted whole years back, written inside PostgreSQL with `INSERT … SELECT`
(new ids, new numbers, every time and day moved by the same years), so each step adds older
years as a real archive grows: tickets, assignments, events, kb_use, metric_fact, intake_fact,
metric_rollup, intake_rollup and the day counters are cloned together, and the rollups stay the
sums of the facts. Foreign keys are consistent by construction; the clone runs with
`session_replication_role = replica` (PostgreSQL's own switch for bulk copies) so the row-by-row
foreign-key triggers do not run — every index (the text search's GIN included) is maintained.

At each size, serially after a warm-up (in-process TestClient, one client):

    healthz           GET /healthz (the baseline of the same run: routing + one SELECT)
    create            POST /api/v1/tickets (agent1; bodies from the history, new phones)
    centre list p1    GET /console/tickets            (dispatcher1: every ticket)
    centre list deep  GET /console/tickets?page=200
    street inbox      GET /console/inbox              (a street handler, todo tab)
    street list p1    GET /console/tickets            (the same handler: its street's tickets)
    street list deep  GET /console/tickets?page=50
    ticket page       GET /console/tickets/{id}       (dispatcher1, random ids of all years)
    by phone          GET /api/v1/tickets?phone=…     (dispatcher1, phones of the history)
    by text           GET /console/tickets?text=…     (dispatcher1, two-to-four-character words)
    ranking           assessment.rankings(last month, street)  (in-process, no HTTP)
    monthly report    reports.build("monthly", last month)     (HTML + PDF + XLSX)

plus table and index sizes (pg_total_relation_size) and the time each growth step took.

    .venv/bin/python bench/volume.py --db postgresql://postgres@127.0.0.1:5432/c_volume \
        --sizes 1,3,6,12 [--requests 40] [--creates 200] [--measure-only]

Prints a table per size and, as the last line of stdout, JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("JIESU_ARGON2_PROFILE", "cheapest")  # before anything imports jiesu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from intake_bodies import intake_body  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import Connection, Engine  # noqa: E402

PASSWORD = "demo12345"
STREET_USER = "jianwai.handler"  # 建外街道 (朝阳): the busiest district's demo street
CENTRE_USER = "dispatcher1"
AGENT = "agent1"
SEED_DAYS, SEED_PER_DAY = 365, 2740  # ≈ 1,000,000 orders in one year
CSRF_FIELD = re.compile(r'name="csrf_token"\s+value="([^"]+)"')

# What each clone copies, and how: column -> SQL expression (`k` = years back, `:t` etc. the
# id offsets). Times move by whole years, days too (the base year has no 29 February).
ID_OFFSETS = {"ticket": "t", "assignment": "a", "event": "e", "kb_use": "u", "intake_rollup": "r"}
TICKET_REFS = {
    ("ticket", "master_id"),
    ("assignment", "ticket_id"),
    ("event", "ticket_id"),
    ("kb_use", "ticket_id"),
    ("metric_fact", "ticket_id"),
    ("intake_fact", "ticket_id"),
}
CLONED = (
    "ticket",
    "assignment",
    "event",
    "kb_use",
    "metric_fact",
    "intake_fact",
    "metric_rollup",
    "intake_rollup",
)
# Only the base year's closed orders are cloned: an archive year holds finished work (the
# base's few open orders would otherwise pile up, still open, in every older year's inboxes).
BASE_IDS = "bench_volume_base_ids"
BASE_OF = {
    "ticket": f"id IN (SELECT id FROM {BASE_IDS})",
    **dict.fromkeys(("assignment", "event", "kb_use", "metric_fact", "intake_fact"), f"ticket_id IN (SELECT id FROM {BASE_IDS})"),
}  # fmt: skip
# The rollups of those orders, summed from their facts once at the first clone, are added into
# the rollup rows of each clone's days (the rollups are the sums of the facts).
SNAPSHOT = {"metric_rollup": "bench_volume_base_metric_rollup",
            "intake_rollup": "bench_volume_base_intake_rollup"}  # fmt: skip
CONFLICT = {"metric_rollup": "(unit_id, day)", "intake_rollup": "(day, district_id, dim, key)"}


def pg_url(url: str) -> str:
    """SQLAlchemy's psycopg 3 URL for a plain postgresql:// one."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg://", url)


# ---- growing ---------------------------------------------------------------------------------


def ensure_meta(conn: Connection) -> None:
    conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS bench_volume_clone (years int PRIMARY KEY, base bigint,"
            " first_day date, tickets bigint, seconds float, done_at timestamptz DEFAULT now())"
        )
    )


def seed(url: str) -> float:
    """The first million: the demo history through the product's own command."""
    env = {**os.environ, "JIESU_DATABASE_URL": pg_url(url)}
    started = time.perf_counter()
    subprocess.run(
        [str(ROOT / ".venv/bin/jiesu"), "demo", "init", "--days", str(SEED_DAYS),
         "--per-day", str(SEED_PER_DAY)],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    return time.perf_counter() - started


def _columns(conn: Connection, table: str) -> list[tuple[str, str]]:
    return [
        (str(n), str(t))
        for n, t in conn.execute(
            text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = :t ORDER BY ordinal_position"
            ),
            {"t": table},
        )
    ]


def _expr(table: str, column: str, kind: str) -> str:
    if column == "id" and table in ID_OFFSETS:
        return f"id + :{ID_OFFSETS[table]}"
    if (table, column) in TICKET_REFS:
        return f"{column} + :t"
    if table == "ticket" and column == "number":  # YYYYMMDD + sequence: the day moves
        return (
            "to_char(to_date(left(number, 8), 'YYYYMMDD') - make_interval(years => :k), "
            "'YYYYMMDD') || substr(number, 9)"
        )
    if kind.startswith("timestamp"):
        return f"{column} - make_interval(years => :k)"
    if kind == "date":
        return f"({column} - make_interval(years => :k))::date"
    return column


def snapshot_base(conn: Connection, base: int) -> None:
    """The base year's closed orders and the rollups of their facts, kept for every clone."""
    for table in (BASE_IDS, *SNAPSHOT.values()):
        conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    conn.execute(
        text(
            f"CREATE TABLE {BASE_IDS} AS SELECT id FROM ticket WHERE id <= :base"
            " AND status = 'closed'"
        ),
        {"base": base},
    )
    conn.execute(text(f"ALTER TABLE {BASE_IDS} ADD PRIMARY KEY (id)"))
    counters = [n for n, _ in _columns(conn, "metric_rollup") if n not in ("unit_id", "day")]
    sums = ", ".join(f"sum({c})::bigint AS {c}" for c in counters)
    conn.execute(
        text(
            f"CREATE TABLE {SNAPSHOT['metric_rollup']} AS SELECT unit_id, day, {sums}"
            f" FROM metric_fact WHERE ticket_id IN (SELECT id FROM {BASE_IDS})"
            " GROUP BY unit_id, day"
        )
    )
    conn.execute(
        text(
            f"CREATE TABLE {SNAPSHOT['intake_rollup']} AS SELECT row_number() OVER () AS id,"
            " day, district_id, dim, key, n FROM (SELECT day, district_id, dim, key,"
            " count(*)::int AS n FROM (SELECT f.day, f.district_id,"
            " split_part(k, ':', 1) AS dim, substr(k, strpos(k, ':') + 1) AS key"
            f" FROM intake_fact f, jsonb_array_elements_text(f.keys) AS k"
            f" WHERE f.ticket_id IN (SELECT id FROM {BASE_IDS})) AS e"
            " GROUP BY day, district_id, dim, key) AS g"
        )
    )


def clone_year(engine: Engine, years: int) -> dict[str, Any]:
    """Copy the base year `years` years back, in one transaction."""
    started = time.perf_counter()
    with engine.begin() as conn:
        ensure_meta(conn)
        row = conn.execute(text("SELECT base, first_day FROM bench_volume_clone LIMIT 1")).first()
        if row is None:
            base = int(conn.execute(text("SELECT max(id) FROM ticket")).scalar_one())
            first_day = conn.execute(
                text("SELECT min(day) FROM metric_rollup")
            ).scalar_one() or date.today() - timedelta(days=SEED_DAYS)
            snapshot_base(conn, base)
        else:
            base, first_day = int(row[0]), row[1]
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("SET LOCAL synchronous_commit = off"))
        conn.execute(text("SET LOCAL work_mem = '64MB'"))
        offsets = {
            key: int(conn.execute(text(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar_one())
            for table, key in ID_OFFSETS.items()
        }
        params = {**offsets, "k": years, "base": base, "first_day": first_day}
        rows: dict[str, int] = {}
        for table in CLONED:
            cols = _columns(conn, table)
            names = ", ".join(n for n, _ in cols)
            exprs = ", ".join(_expr(table, n, t) for n, t in cols)
            if table in SNAPSHOT:
                adds = ", ".join(
                    f"{n} = {table}.{n} + excluded.{n}"
                    for n, t in cols
                    if t in ("integer", "bigint") and n not in ("id", "unit_id", "district_id")
                )
                sql = (
                    f"INSERT INTO {table} ({names}) SELECT {exprs} FROM {SNAPSHOT[table]} "
                    f"ON CONFLICT {CONFLICT[table]} DO UPDATE SET {adds}"
                )
            else:
                sql = (
                    f"INSERT INTO {table} ({names}) SELECT {exprs} FROM {table} "
                    f"WHERE {BASE_OF[table]}"
                )
            t0 = time.perf_counter()
            rows[table] = conn.execute(text(sql), params).rowcount
            print(f"  clone -{years}y {table}: {rows[table]:,} rows in "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
        conn.execute(
            text(
                "INSERT INTO ticket_counter (day, last) SELECT to_char(to_date(day, 'YYYYMMDD')"
                " - make_interval(years => :k), 'YYYYMMDD'), last FROM ticket_counter"
                " WHERE day >= to_char(CAST(:first_day AS date), 'YYYYMMDD')"
                " AND day <= to_char(CAST(:first_day AS date) + 366, 'YYYYMMDD')"
                " ON CONFLICT (day) DO UPDATE SET last = greatest(ticket_counter.last,"
                " excluded.last)"
            ),
            params,
        )
        for table in ID_OFFSETS:
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                )
            )
        seconds = time.perf_counter() - started
        conn.execute(
            text(
                "INSERT INTO bench_volume_clone (years, base, first_day, tickets, seconds) "
                "VALUES (:k, :base, :first_day, :n, :s)"
            ),
            {**params, "n": rows["ticket"], "s": seconds},
        )
    return {"years": years, "rows": rows, "seconds": round(seconds, 1)}


def vacuum_analyze(engine: Engine) -> float:
    """What autovacuum does after a bulk insert (visibility map for index-only counts, fresh
    statistics), done at once so every size is measured on the same footing."""
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in (*CLONED, "ticket_counter"):
            conn.execute(text(f"VACUUM (ANALYZE) {table}"))
    return time.perf_counter() - started


def ticket_count(engine: Engine) -> int:
    """Orders in the database; 0 for an empty one (no schema yet: the bench seeds it)."""
    with engine.connect() as conn:
        if conn.execute(text("SELECT to_regclass('ticket')")).scalar_one() is None:
            return 0
        return int(conn.execute(text("SELECT count(*) FROM ticket")).scalar_one())


def clones_done(engine: Engine) -> int:
    with engine.begin() as conn:
        ensure_meta(conn)
        return int(
            conn.execute(
                text("SELECT coalesce(max(years), 0) FROM bench_volume_clone")
            ).scalar_one()
        )


# ---- sizes -----------------------------------------------------------------------------------


def sizes(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid),"
                " pg_total_relation_size(c.oid), c.reltuples::bigint FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                " AND c.relkind = 'r' ORDER BY pg_total_relation_size(c.oid) DESC LIMIT 12"
            )
        ).all()
        indexes = conn.execute(
            text(
                "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index"
                " WHERE indrelid = 'ticket'::regclass ORDER BY 2 DESC"
            )
        ).all()
        total = int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    return {
        "database_bytes": total,
        "tables": {
            r[0]: {"table": int(r[1]), "indexes": int(r[2]), "total": int(r[3]), "rows": int(r[4])}
            for r in rows
        },
        "ticket_indexes": {str(n): int(b) for n, b in indexes},
    }


# ---- measuring -------------------------------------------------------------------------------


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def summary(samples: list[float]) -> dict[str, Any]:
    return {
        "n": len(samples),
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(pct(samples, 95), 1),
        "max_ms": round(max(samples), 1),
    }


def console_login(client: Any, username: str) -> None:
    page = client.get("/login")
    m = CSRF_FIELD.search(page.text)
    if not m:
        raise SystemExit("no csrf_token on /login")
    r = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": m.group(1)},
        follow_redirects=False,
    )
    if r.status_code != 303:
        raise SystemExit(f"sign-in as {username} failed: {r.status_code}")


def bearer(client: Any, username: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def timed_gets(client: Any, paths: list[str], n: int, warmup: int, **kw: Any) -> list[float]:
    for i in range(warmup):
        r = client.get(paths[i % len(paths)], **kw)
        if r.status_code != 200:
            raise SystemExit(f"{paths[i % len(paths)]} answered {r.status_code}: {r.text[:200]}")
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        r = client.get(paths[i % len(paths)], **kw)
        out.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{paths[i % len(paths)]} answered {r.status_code}")
    return out


def material(engine: Engine, n: int, rng: random.Random) -> dict[str, Any]:
    """Bodies, ids, phones and words drawn from the whole history (TABLESAMPLE: no full scan)."""
    with engine.connect() as conn:
        total = conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = 'ticket'"))
        share = min(100.0, 100.0 * 4 * n / max(float(total.scalar_one()), 1.0))
        rows = conn.execute(
            text(
                "SELECT t.id, t.title, t.content, t.address, t.requester_phone, c.code,"
                f" t.request_type FROM ticket t TABLESAMPLE BERNOULLI ({share:.6f}) REPEATABLE (7)"
                " LEFT JOIN category c ON c.id = t.category_id WHERE t.channel <> 'proactive'"
            )
        ).all()
    rng.shuffle(rows)
    bodies = [
        intake_body(rng, title, content, address, request_type, category)
        for _id, title, content, address, _phone, category, request_type in rows[:n]
    ]
    words = []
    for r in rows:
        for w in re.findall(r"[\u4e00-\u9fff]{2,4}", r[1] or ""):
            words.append(w)
    rng.shuffle(words)
    return {
        "bodies": bodies,
        "ids": [int(r[0]) for r in rows],
        "phones": [r[4] for r in rows if r[4]],
        "words": list(dict.fromkeys(words))[:50],
    }


def last_month(today: date) -> str:
    return f"{today.replace(day=1) - timedelta(days=1):%Y-%m}"


def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    os.environ["JIESU_DATABASE_URL"] = pg_url(url)
    from fastapi.testclient import TestClient

    from jiesu.assessment.service import rankings
    from jiesu.db.engine import Database
    from jiesu.reports.build import build
    from jiesu.settings import city_tz, get_settings
    from jiesu.web.app import create_app

    get_settings.cache_clear()
    rng = random.Random(args.seed)
    db = Database(pg_url(url))
    mat = material(db.engine, max(args.creates + 20, args.requests * 2), rng)
    n, w = args.requests, args.warmup
    out: dict[str, Any] = {}
    with (
        TestClient(create_app(db)) as api,
        TestClient(create_app(db)) as centre,
        TestClient(create_app(db)) as street,
    ):
        agent = bearer(api, AGENT)
        lead = bearer(api, CENTRE_USER)
        console_login(centre, CENTRE_USER)
        console_login(street, STREET_USER)
        bodies = mat["bodies"]
        for body in bodies[:10]:  # warm: models, caches, prepared statements
            api.post("/api/v1/tickets", json=body, headers=agent).raise_for_status()
        creates = []
        for body in bodies[10 : 10 + args.creates]:
            t0 = time.perf_counter()
            r = api.post("/api/v1/tickets", json=body, headers=agent)
            creates.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 201:
                raise SystemExit(f"create answered {r.status_code}: {r.text[:300]}")
        out["create"] = summary(creates)
        pages = [
            ("healthz", api, ["/healthz"], {}),  # the baseline: routing + one SELECT
            ("centre list p1", centre, ["/console/tickets"], {}),
            ("centre list deep", centre, [f"/console/tickets?page={args.deep}"], {}),
            ("street inbox", street, ["/console/inbox"], {}),
            ("street list p1", street, ["/console/tickets"], {}),
            ("street list deep", street, ["/console/tickets?page=50"], {}),
            ("ticket page", centre, [f"/console/tickets/{i}" for i in mat["ids"][:n]], {}),
            ("by phone", api, [f"/api/v1/tickets?phone={p}" for p in mat["phones"][:n]],
             {"headers": lead}),
            ("by text", centre, [f"/console/tickets?text={x}" for x in mat["words"][:n]], {}),
        ]  # fmt: skip
        for name, client, paths, kw in pages:
            print(f"  {name} …", file=sys.stderr, flush=True)
            out[name] = summary(timed_gets(client, paths, n, w, **kw))
    period = last_month(datetime.now(city_tz()).date())
    times = []
    for _ in range(args.heavy_runs):
        with db.read() as s:
            t0 = time.perf_counter()
            rankings(period, "street", db_session=s)
            times.append((time.perf_counter() - t0) * 1000)
    out["ranking"] = summary(times)
    times = []
    for _ in range(args.heavy_runs):
        t0 = time.perf_counter()
        with db.write() as s:
            build("monthly", period, db_session=s)
        times.append((time.perf_counter() - t0) * 1000)
    out["monthly report"] = summary(times)
    db.dispose()
    return out


# ---- the run ---------------------------------------------------------------------------------


def print_size(entry: dict[str, Any]) -> None:
    s = entry["sizes"]
    print(
        f"\n{entry['tickets']:,} tickets (grown in {entry['grow_s']:.0f} s, vacuum/analyze "
        f"{entry['vacuum_s']:.0f} s); database {s['database_bytes'] / 2**30:.2f} GiB"
    )
    print(f"{'operation':18s} {'p50 ms':>9s} {'p95 ms':>9s} {'max ms':>9s} {'n':>5s}")
    for name, r in entry["measure"].items():
        print(f"{name:18s} {r['p50_ms']:9.1f} {r['p95_ms']:9.1f} {r['max_ms']:9.1f} {r['n']:5d}")
    for table, t in list(s["tables"].items())[:8]:
        print(
            f"  {table:16s} {t['rows']:>12,} rows  table {t['table'] / 2**30:6.2f} GiB  "
            f"indexes {t['indexes'] / 2**30:6.2f} GiB"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="postgresql://… (grown in place)")
    ap.add_argument("--sizes", default="1,3,6,12", help="millions of orders, ascending")
    ap.add_argument("--requests", type=int, default=40, help="per page")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--creates", type=int, default=200)
    ap.add_argument("--heavy-runs", type=int, default=2, help="ranking and report builds")
    ap.add_argument("--deep", type=int, default=200, help="the centre list's deep page")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--measure-only", action="store_true", help="no growing: the current size")
    args = ap.parse_args()
    engine = create_engine(pg_url(args.db))
    machine = {"node": platform.node(), "arch": platform.machine(), "cores": os.cpu_count(),
               "python": platform.python_version()}  # fmt: skip
    with engine.connect() as conn:
        machine["postgresql"] = conn.execute(text("SHOW server_version")).scalar_one()
        machine["shared_buffers"] = conn.execute(text("SHOW shared_buffers")).scalar_one()
    print(f"machine: {machine}")
    results = []
    seed_s = 0.0
    if ticket_count(engine) == 0:
        seed_s = seed(args.db)
    targets = [float(x) for x in args.sizes.split(",")] if not args.measure_only else [0.0]
    for target in targets:
        grow_s, steps = 0.0, []
        if target:
            base = ticket_count(engine) / (clones_done(engine) + 1)
            while ticket_count(engine) < target * 1e6 * 0.97:
                step = clone_year(engine, clones_done(engine) + 1)
                steps.append(step)
                grow_s += step["seconds"]
                if ticket_count(engine) + base > target * 1e6 * 1.2:
                    break
        vac = vacuum_analyze(engine) if steps or target == targets[0] else 0.0
        count = ticket_count(engine)
        print(f"measuring at {count:,} tickets …", file=sys.stderr, flush=True)
        entry = {"target_m": target, "tickets": count, "grow_s": round(grow_s, 1),
                 "clones": steps, "vacuum_s": round(vac, 1), "sizes": sizes(engine),
                 "measure": measure(args.db, args)}  # fmt: skip
        print_size(entry)
        results.append(entry)
    engine.dispose()
    print(json.dumps({"machine": machine, "args": vars(args), "seed_s": round(seed_s, 1),
                      "results": results}, ensure_ascii=False, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
