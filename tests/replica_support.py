"""A real PostgreSQL primary and hot standby, streaming, for tests/test_replica.py.

A throw-away cluster of the PostgreSQL installed on the machine (initdb, then pg_basebackup -R
of it for the standby), on two free ports below the kernel's temporary range, run as the
`postgres` system user (PostgreSQL refuses to run as root), in a temporary directory, stopped
and removed at the end. The machine's own server at 5432 is not touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cluster_support import free_ports

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Cluster:
    primary_url: str
    standby_url: str
    base: Path


def _bindir() -> Path | None:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        path = Path(out.stdout.strip())
        if (path / "initdb").exists():
            return path
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


def _unavailable(why: str) -> None:
    message = f"no throw-away PostgreSQL primary and standby: {why}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true makes the replica tests mandatory)", pytrace=False)
    pytest.skip(message)


def _as_postgres(*cmd: str | Path) -> list[str]:
    args = [str(c) for c in cmd]
    return args if os.getuid() != 0 else ["runuser", "-u", "postgres", "--", *args]


def _run(*cmd: str | Path) -> None:
    done = subprocess.run(_as_postgres(*cmd), capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed: {done.stderr or done.stdout}")


def _wait_ready(bindir: Path, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ok = subprocess.run([bindir / "pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                            capture_output=True, check=False)  # fmt: skip
        if ok.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"PostgreSQL on port {port} did not start")


@contextmanager
def streaming_cluster() -> Iterator[Cluster]:
    bindir = _bindir()
    if bindir is None:
        _unavailable("initdb not found (install postgresql)")
    assert bindir is not None
    if os.getuid() == 0 and (shutil.which("runuser") is None or _no_user("postgres")):
        _unavailable("running as root without runuser and a `postgres` user")
    base = Path(tempfile.mkdtemp(prefix="jiesu-replica-"))
    os.chmod(base, 0o755)
    if os.getuid() == 0:
        shutil.chown(base, "postgres")
    p_port, s_port = free_ports(2)
    started: list[Path] = []
    try:
        try:
            _start(bindir, base, p_port, s_port, started)
        except RuntimeError as exc:
            _unavailable(str(exc))
        yield Cluster(
            primary_url=f"postgresql+psycopg://postgres@127.0.0.1:{p_port}/postgres",
            standby_url=f"postgresql+psycopg://postgres@127.0.0.1:{s_port}/postgres",
            base=base,
        )
    finally:
        for data in reversed(started):
            subprocess.run(_as_postgres(bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop"),
                           capture_output=True, check=False, timeout=60)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


def _start(bindir: Path, base: Path, p_port: int, s_port: int, started: list[Path]) -> None:
    """initdb the primary, start it, copy it into a standby (pg_basebackup -R), start that."""
    primary, standby = base / "primary", base / "standby"
    _run(bindir / "initdb", "-D", primary, "-U", "postgres", "-A", "trust", "--no-sync",
         "-E", "UTF8", "--locale", "C")  # fmt: skip
    with open(primary / "postgresql.conf", "a") as conf:
        conf.write(f"\nport = {p_port}\nlisten_addresses = '127.0.0.1'\n"
                   f"unix_socket_directories = '{base}'\nfsync = off\n"
                   "wal_level = replica\nmax_wal_senders = 4\n")  # fmt: skip
    with open(primary / "pg_hba.conf", "a") as hba:
        hba.write("\nhost replication all 127.0.0.1/32 trust\n")
    _run(bindir / "pg_ctl", "-D", primary, "-l", base / "primary.log", "-w", "start")
    started.append(primary)
    _wait_ready(bindir, p_port)
    _run(bindir / "pg_basebackup", "-h", "127.0.0.1", "-p", str(p_port), "-U", "postgres",
         "-D", standby, "-R", "-X", "stream", "--no-sync")  # fmt: skip
    with open(standby / "postgresql.conf", "a") as conf:
        conf.write(f"\nport = {s_port}\nhot_standby = on\n")
    _run(bindir / "pg_ctl", "-D", standby, "-l", base / "standby.log", "-w", "start")
    started.append(standby)
    _wait_ready(bindir, s_port)


def _no_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return True
    return False
