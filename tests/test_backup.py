"""Backup and restore (`jiesu/db/backup.py`, `jiesu db backup|restore`): a small history backed
up and restored into a fresh database on each backend comes back row for row (tickets, events)
and figure for figure (the month's 三率); SQLite's copy is consistent while another connection
writes; a restore refuses a non-empty target without --force and a backup from newer code."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from jiesu.assessment import service as A
from jiesu.cli import app as cli_app
from jiesu.db.backup import BackupError, backup, libpq, restore, revision_of
from jiesu.db.engine import Database
from jiesu.db.migrate import upgrade
from jiesu.demo.generate import generate
from jiesu.settings import city_tz, get_settings
from jiesu.tickets.models import Event, Ticket
from tests.conftest import IN_CI, TINY_PACK, PgDatabases

HISTORY_END = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # a pinned clock: any hour, any date
MONTH = f"{HISTORY_END.astimezone(city_tz()):%Y-%m}"


def require_pg_tools(backend: str) -> None:
    if backend != "postgresql" or (shutil.which("pg_dump") and shutil.which("pg_restore")):
        return
    message = "pg_dump/pg_restore not found (apt-get install postgresql-client)"
    if IN_CI:
        pytest.fail(f"{message}: CI=true makes the backup round trip mandatory", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def target(backend: str, pg: PgDatabases | None, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty restore target: a file, or a separately named scratch database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored' / 'jiesu.sqlite3'}"
        return
    assert pg is not None
    name = f"test_restore_{os.getpid()}"
    pg.drop(name)
    with pg.admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield pg.url(name)
    finally:
        pg.drop(name)


def rows(db: Database, table: Any) -> list[tuple[Any, ...]]:
    with db.read() as s:
        return [tuple(r) for r in s.execute(select(table).order_by(table.c.id)).all()]


def figures(db: Database) -> list[Any]:
    with db.read() as s:
        return [A.rankings(MONTH, group, db_session=s, now=HISTORY_END, live=True).rows
                for group in ("district", "street", "department")]  # fmt: skip


def test_a_history_comes_back_row_for_row_and_figure_for_figure(
    backend: str, db: Database, target: str, tmp_path: Path
) -> None:
    require_pg_tools(backend)
    generate(db, days=6, per_day=20, now=HISTORY_END, pack_dir=TINY_PACK, seed=17)
    tickets, events = rows(db, Ticket.__table__), rows(db, Event.__table__)
    three = figures(db)
    assert len(tickets) > 50 and len(events) > len(tickets)
    assert any(r.orders for group in three for r in group)

    out = backup(db.url, tmp_path / "backups" / "jiesu.backup")
    assert out.stat().st_size > 0 and not (out.parent / "jiesu.backup.partial").exists()
    done = restore(out, target)

    restored = Database(target)
    try:
        assert rows(restored, Ticket.__table__) == tickets
        assert rows(restored, Event.__table__) == events
        assert figures(restored) == three
        assert done.counts["工单 tickets"] == len(tickets)
        assert done.counts["事件 events"] == len(events)
        assert done.counts["用户 users"] > 0
        assert done.revision == done.head == revision_of(target) and not done.upgraded
    finally:
        restored.dispose()


def test_restore_refuses_a_non_empty_target_without_force(
    backend: str, db: Database, target: str, tmp_path: Path
) -> None:
    require_pg_tools(backend)
    out = backup(db.url, tmp_path / "b.backup")
    restore(out, target)
    with pytest.raises(BackupError, match="--force"):
        restore(out, target)
    with pytest.raises(BackupError, match="--force"):
        restore(out, db.url)  # the live database itself
    again = restore(out, target, force=True)
    assert again.counts["用户 users"] > 0


def test_restore_refuses_a_backup_from_newer_code(tmp_path: Path) -> None:
    source = tmp_path / "src.sqlite3"
    upgrade(f"sqlite:///{source}")
    with sqlite3.connect(source) as c:
        c.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    out = backup(f"sqlite:///{source}", tmp_path / "future.backup")
    into = tmp_path / "into.sqlite3"
    with pytest.raises(BackupError, match="9999_from_the_future"):
        restore(out, f"sqlite:///{into}")
    assert not into.exists()  # nothing was written


def test_an_old_backup_is_upgraded_to_head(tmp_path: Path) -> None:
    source = tmp_path / "old.sqlite3"
    upgrade(f"sqlite:///{source}", "0020_knowledge")
    out = backup(f"sqlite:///{source}", tmp_path / "old.backup")
    done = restore(out, f"sqlite:///{tmp_path / 'new.sqlite3'}")
    assert done.revision == "0020_knowledge" and done.upgraded
    assert revision_of(f"sqlite:///{tmp_path / 'new.sqlite3'}") == done.head != "0020_knowledge"


def test_a_sqlite_backup_taken_while_another_connection_writes_is_consistent(
    tmp_path: Path,
) -> None:
    path = tmp_path / "busy.sqlite3"
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE pair (id INTEGER PRIMARY KEY, n INTEGER, side TEXT, pad TEXT)")
    stop = threading.Event()
    written = [0]

    def write() -> None:
        w = sqlite3.connect(path, timeout=60, isolation_level=None)
        n = 0
        while not stop.is_set() or n < 200:
            w.execute("BEGIN IMMEDIATE")
            for side in ("a", "b"):  # one transaction writes both halves of a pair
                w.execute("INSERT INTO pair (n, side, pad) VALUES (?, ?, ?)", (n, side, "x" * 500))
            w.execute("COMMIT")
            n += 1
            written[0] = n
        w.close()

    writer = threading.Thread(target=write)
    writer.start()
    copies = []
    try:
        while written[0] < 50:
            stop.wait(0.01)
        for i in range(5):
            copies.append(backup(f"sqlite:///{path}", tmp_path / f"copy{i}.sqlite3"))
    finally:
        stop.set()
        writer.join()
    seen = []
    for copy in copies:
        with sqlite3.connect(copy) as c:
            assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            a = c.execute("SELECT count(*) FROM pair WHERE side = 'a'").fetchone()[0]
            b = c.execute("SELECT count(*) FROM pair WHERE side = 'b'").fetchone()[0]
            top = c.execute("SELECT coalesce(max(n), -1) FROM pair").fetchone()[0]
        assert a == b == top + 1  # whole transactions only, none half-copied, none missing
        seen.append(a)
    assert seen == sorted(seen) and seen[0] >= 50 and seen[-1] <= written[0]


def test_libpq_form_keeps_the_password_off_the_command_line() -> None:
    uri, env = libpq("postgresql+psycopg://jie su:p%40ss@db.example:5433/jiesu?sslmode=require")
    assert uri == "postgresql://jie%20su@db.example:5433/jiesu?sslmode=require"
    assert "p@ss" not in uri and env["PGPASSWORD"] == "p@ss"
    with pytest.raises(BackupError, match="PostgreSQL"):
        libpq("sqlite:///x.sqlite3")


def test_missing_tools_are_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackupError, match=r"pg_dump.*postgresql-client"):
        backup("postgresql+psycopg://postgres@127.0.0.1:5432/nowhere", tmp_path / "x.backup")


def test_the_cli_backs_up_and_restores_and_says_what_came_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, templates: Any
) -> None:
    source = tmp_path / "live.sqlite3"
    shutil.copyfile(templates.get("sqlite", True), source)
    monkeypatch.setenv("JIESU_DATABASE_URL", f"sqlite:///{source}")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        r = runner.invoke(cli_app, ["db", "backup", str(tmp_path / "b.backup")])
        assert r.exit_code == 0, r.output
        r = runner.invoke(cli_app, ["db", "restore", str(tmp_path / "b.backup")])
        assert r.exit_code == 1 and "--force" in r.output
        into = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        r = runner.invoke(cli_app, ["db", "restore", str(tmp_path / "b.backup"), "--into", into])
        assert r.exit_code == 0, r.output
        assert "工单 tickets: 0" in r.output and "用户 users:" in r.output
        assert "Alembic: " in r.output
    finally:
        get_settings.cache_clear()
