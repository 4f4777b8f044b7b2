#!/usr/bin/env python3
"""Exporting a million tickets stays under 300 MB of memory (issue 15, acceptance).

A throwaway PostgreSQL database (created here, dropped at the end unless --keep): the Beijing
demo pack, `generate()` for a few days of real-looking history (the template rows), then copies
of those rows with new ids and numbers (`INSERT … SELECT … generate_series`) up to --tickets.
The text-search GIN index is dropped in this throwaway database first (building it for a
million copies costs minutes and no export uses it).

Then every measurement in a process of its own, so that its peak resident memory (VmHWM from
/proc, the high-water mark since the process's exec) is the export's alone:

    baseline        the same imports and a database connection, no export
    cli csv|xlsx    `jiesu.exports.cli.run("tickets", …)` as the centre's admin: the service's
                    server-side cursor and the writer, to a file (what `jiesu export` does)
    http csv|xlsx   a real uvicorn server (own process) and GET /api/v1/exports/tickets.{fmt}
                    streamed to a file by httpx; the server's peak (VmHWM from /proc) is read
                    after the download; its peak after start-up and one small request is the
                    baseline of that column

    .venv/bin/python bench/export.py --tickets 1000000            # all of the above
    .venv/bin/python bench/export.py --url postgresql+psycopg://…/db --formats csv

The last line of stdout is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("JIESU_ARGON2_PROFILE", "cheapest")  # before anything imports jiesu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG = os.environ.get("JIESU_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
USER, PASSWORD = "admin", "demo12345"  # the Beijing pack's admin, in the service centre
GOAL_MB = 300


# ---- the database -----------------------------------------------------------------------------


def create_database() -> tuple[str, Any]:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    name = f"jiesu_bench_export_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    return PG.rsplit("/", 1)[0] + "/" + name, (admin, name)


def drop_database(handle: Any) -> None:
    from sqlalchemy import text

    admin, name = handle
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def populate(url: str, tickets: int, template_days: int, per_day: int) -> dict[str, Any]:
    from sqlalchemy import text

    from jiesu.citypack.load import load_pack
    from jiesu.citypack.parse import read_pack
    from jiesu.db.engine import Database
    from jiesu.db.migrate import upgrade
    from jiesu.demo.generate import DEFAULT_PACK, generate
    from jiesu.tickets.models import TEXT_INDEX, Ticket

    pack = read_pack(DEFAULT_PACK)
    if not pack.ok:
        raise SystemExit("\n".join(map(str, pack.errors)))
    upgrade(url)
    db = Database(url)
    started = time.perf_counter()
    try:
        with db.write() as s:
            load_pack(pack, db_session=s)
        made = generate(db, days=template_days, per_day=per_day)
        generated = time.perf_counter() - started
        columns = [c.name for c in Ticket.__table__.columns
                   if c.name not in ("id", "number", "created_at")]  # fmt: skip
        cols = ", ".join(columns)
        picked = ", ".join(f"t.{c}" for c in columns)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text(f"DROP INDEX IF EXISTS {TEXT_INDEX}"))
            have = c.execute(text("SELECT count(*), max(id) FROM ticket")).one()
            base, top = int(have[0]), int(have[1])
            missing = max(0, tickets - base)
            copies = -(-missing // base) if missing else 0
            copied = time.perf_counter()
            if missing:
                c.execute(text(
                    f"INSERT INTO ticket ({cols}, number, created_at) "
                    f"SELECT {picked}, 'B' || lpad((t.id + g * {top})::text, 12, '0'), "
                    f"t.created_at - make_interval(mins => g) "
                    f"FROM ticket t CROSS JOIN generate_series(1, {copies}) AS g "
                    f"WHERE t.id <= {top} LIMIT {missing}"))  # fmt: skip
            copy_s = time.perf_counter() - copied
            c.execute(text("VACUUM ANALYZE ticket"))
            total = c.execute(text("SELECT count(*) FROM ticket")).scalar_one()
        return {"tickets": int(total), "template_tickets": made.tickets,
                "generate_s": round(generated, 1), "copy_s": round(copy_s, 1)}  # fmt: skip
    finally:
        db.dispose()


# ---- measurements (each in a process of its own) ---------------------------------------------


def child(args: argparse.Namespace) -> None:
    """Runs in the measured process: prints one JSON line."""
    os.environ["JIESU_DATABASE_URL"] = args.url
    from sqlalchemy import text

    from jiesu.db.engine import Database
    from jiesu.exports.cli import run

    started = time.perf_counter()
    size = 0
    if args.child == "baseline":
        db = Database(args.url)
        with db.read() as s:
            s.execute(text("SELECT 1"))
        db.dispose()
    else:
        out = Path(args.output)
        run("tickets", args.child, USER, out)
        size = out.stat().st_size
        out.unlink()
    # VmHWM: this process's own peak since exec. (ru_maxrss would also count the image forked
    # from the parent before the exec: the parent's size after populating, 160 MB.)
    peak = vm_hwm_mb(os.getpid())
    print(json.dumps({"what": args.child, "seconds": round(time.perf_counter() - started, 1),
                      "peak_mb": round(peak, 1), "bytes": size}))  # fmt: skip


def measure_cli(url: str, what: str, tmp: Path) -> dict[str, Any]:
    out = tmp / f"tickets.{what}"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", what, "--url", url, "--output", str(out)],
        stdout=subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "JIESU_VAR_DIR": str(tmp)},
    )  # fmt: skip
    assert proc.stdout is not None
    output = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{what}: exit {proc.returncode}\n{output}")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["ru_maxrss_mb"] = round(usage.ru_maxrss / 1024, 1)  # includes the forked parent
    return result


def free_port() -> int:
    for _ in range(100):
        port = random.randint(20000, 32000)
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise SystemExit("no free port below 32768")


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc")


def measure_http(url: str, what: str, tmp: Path) -> dict[str, Any]:
    import httpx

    port = free_port()
    env = {**os.environ, "JIESU_DATABASE_URL": url, "JIESU_VAR_DIR": str(tmp),
           "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "jiesu.web.asgi:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        token = httpx.post(base + "/api/v1/auth/token",
                           json={"username": USER, "password": PASSWORD}).json()["access_token"]  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"}
        small = httpx.get(base + f"/api/v1/exports/tickets.{what}", params={"text": "不存在的词语"},
                          headers=headers, timeout=60)  # fmt: skip
        small.raise_for_status()
        before = vm_hwm_mb(proc.pid)
        out = tmp / f"http.{what}"
        started = time.perf_counter()
        first_byte = None
        with httpx.stream("GET", base + f"/api/v1/exports/tickets.{what}", headers=headers,
                          timeout=None) as r, out.open("wb") as f:  # fmt: skip
            r.raise_for_status()
            for chunk in r.iter_bytes():
                if first_byte is None:
                    first_byte = time.perf_counter() - started
                f.write(chunk)
        seconds = time.perf_counter() - started
        peak = vm_hwm_mb(proc.pid)
        size = out.stat().st_size
        out.unlink()
        return {"what": f"http {what}", "seconds": round(seconds, 1),
                "first_byte_s": round(first_byte or 0, 1), "server_peak_mb": round(peak, 1),
                "server_before_mb": round(before, 1), "bytes": size}  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tickets", type=int, default=1_000_000)
    p.add_argument("--template-days", type=int, default=4)
    p.add_argument("--per-day", type=int, default=5_000)
    p.add_argument("--url", help="an existing database: measure only")
    p.add_argument("--formats", default="csv,xlsx")
    p.add_argument("--paths", default="cli,http")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    handle = None
    info: dict[str, Any] = {}
    url = args.url
    if url is None:
        url, handle = create_database()
        info = populate(url, args.tickets, args.template_days, args.per_day)
        print(f"populated: {info}", file=sys.stderr)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(measure_cli(url, "baseline", Path(tmp)))
            for path in args.paths.split(","):
                for fmt in args.formats.split(","):
                    r = (measure_cli(url, fmt, Path(tmp)) if path == "cli"
                         else measure_http(url, fmt, Path(tmp)))  # fmt: skip
                    r.setdefault("what", f"{path} {fmt}")
                    r["what"] = f"{path} {fmt}"
                    print(r, file=sys.stderr)
                    results.append(r)
    finally:
        if handle is not None and not args.keep:
            drop_database(handle)
        elif handle is not None:
            print(f"kept: {url}", file=sys.stderr)
    peaks = [r.get("peak_mb") or r.get("server_peak_mb") or 0 for r in results]
    print(json.dumps({"machine": f"{platform.machine()} {os.cpu_count()} cores, "
                                 f"Python {platform.python_version()}",
                      "database": info, "results": results, "goal_mb": GOAL_MB,
                      "ok": max(peaks) < GOAL_MB}, ensure_ascii=False))  # fmt: skip


if __name__ == "__main__":
    main()
