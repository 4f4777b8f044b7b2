#!/usr/bin/env python3
"""How long `jiesu db backup` and `jiesu db restore` take on a realistic deployment, and how big
the archive is.

The database is prepared beforehand (e.g. `jiesu demo generate --days 20 --per-day 5000`: ~100k
tickets, ~560k events); the var dir gets PHOTOS random (incompressible, like JPEG) files of
PHOTO_KB each under uploads/. Each run backs up to a fresh archive and restores into a fresh
database and var dir; the figure is the median of RUNS runs. The baseline in the same run is the
bare tool: `pg_dump -Fc` / `pg_restore --single-transaction` (PostgreSQL) or the SQLite backup API
alone (SQLite), so jiesu's own share (checksums, the tar, gzip for SQLite, counts) shows.

    .venv/bin/python bench/backup.py --sqlite /path/jiesu.sqlite3 \
        --pg postgresql+psycopg://postgres@127.0.0.1:5432/NAME [--photos 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from jiesu.db.backup import backup, libpq, restore


def photos(var: Path, n: int, kb: int) -> int:
    total = 0
    for i in range(n):
        data = os.urandom(kb * 1024)
        name = f"{i:064x}"
        (var / "uploads" / name[:2]).mkdir(parents=True, exist_ok=True)
        (var / "uploads" / name[:2] / name).write_bytes(data)
        total += len(data)
    (var / "secret.key").write_text(os.urandom(32).hex() + "\n")
    return total


def pg_scratch(admin_url: str, name: str, *, create: bool = True) -> str:
    """A fresh empty database `name` (or, create=False, none: dropped)."""
    admin = create_engine(admin_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if create:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def timed(fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def run(kind: str, url: str, var: Path, tmp: Path, runs: int) -> dict[str, object]:
    out: dict[str, list[float]] = {"backup_s": [], "restore_s": [], "tool_backup_s": [],
                                   "tool_restore_s": []}  # fmt: skip
    size = tool_size = 0
    for i in range(runs):
        archive = tmp / f"{kind}{i}.backup"
        out["backup_s"].append(timed(backup, url, archive, var_dir=var))
        size = archive.stat().st_size
        new_var = tmp / f"var_{kind}{i}"
        if kind == "sqlite":
            into = f"sqlite:///{new_var / 'jiesu.sqlite3'}"
        else:
            into = pg_scratch(url, f"pF_restore_{i}")
        out["restore_s"].append(timed(restore, archive, into, var_dir=new_var))
        # the bare tools, same data, same run
        bare = tmp / f"{kind}{i}.bare"
        if kind == "sqlite":
            src_path = url.removeprefix("sqlite:///")

            def sqlite_copy(src_path: str = src_path, dst_path: Path = bare) -> None:
                src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True)
                dst = sqlite3.connect(dst_path)
                with dst:
                    src.backup(dst)
                dst.close()
                src.close()

            out["tool_backup_s"].append(timed(sqlite_copy))
            target = tmp / f"bare_restored{i}.sqlite3"
            out["tool_restore_s"].append(timed(shutil.copyfile, bare, target))
            target.unlink()
        else:
            uri, env = libpq(url)
            dump = ["pg_dump", "-Fc", "--no-owner", "--no-privileges", f"--file={bare}",
                    f"--dbname={uri}"]  # fmt: skip
            out["tool_backup_s"].append(timed(subprocess.run, dump, env=env, check=True))
            scratch = pg_scratch(url, f"pF_bare_{i}")
            suri, senv = libpq(scratch)
            load = ["pg_restore", "--no-owner", "--no-privileges", "--single-transaction",
                    f"--dbname={suri}", str(bare)]  # fmt: skip
            out["tool_restore_s"].append(timed(subprocess.run, load, env=senv, check=True))
            pg_scratch(url, f"pF_bare_{i}", create=False)
            pg_scratch(url, f"pF_restore_{i}", create=False)
        tool_size = bare.stat().st_size
        archive.unlink()
        bare.unlink()
        shutil.rmtree(new_var, ignore_errors=True)
        print(kind, i, {k: round(v[-1], 2) for k, v in out.items()}, flush=True)
    result: dict[str, object] = {k: round(statistics.median(v), 2) for k, v in out.items()}
    result["runs"] = {k: [round(x, 2) for x in v] for k, v in out.items()}
    result["archive_bytes"], result["tool_bytes"] = size, tool_size
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sqlite")
    ap.add_argument("--pg")
    ap.add_argument("--photos", type=int, default=1000)
    ap.add_argument("--photo-kb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="jiesu_backup_bench_", dir="/tmp") as t:
        tmp = Path(t)
        var = tmp / "var"
        files_bytes = photos(var, args.photos, args.photo_kb)
        results["files"] = {"count": args.photos + 1, "bytes": files_bytes}
        if args.sqlite:
            results["sqlite"] = run("sqlite", f"sqlite:///{args.sqlite}", var, tmp, args.runs)
        if args.pg:
            results["postgresql"] = run("postgresql", args.pg, var, tmp, args.runs)
    results["machine"] = f"{os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}"
    print(json.dumps(results))


if __name__ == "__main__":
    main()
