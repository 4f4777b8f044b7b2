"""Backup and restore (`jiesu/db/backup.py`, `jiesu db backup|restore`): a small history with its
files, backed up and restored into a fresh database and var dir on each backend, comes back row
for row (tickets, events), figure for figure (the month's 三率) and byte for byte (uploads,
knowledge imports, secret.key: a rating link signed before still verifies); a damaged archive is
refused before anything is written; the first format (a bare database file) still restores;
SQLite's copy is consistent while another connection writes; a restore refuses a non-empty target
or differing files without --force, and a backup from newer code."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from typer.testing import CliRunner

from jiesu.assessment import service as A
from jiesu.callbacks import links
from jiesu.cli import app as cli_app
from jiesu.db.backup import (
    MANIFEST,
    BackupError,
    backup,
    backup_database,
    has_tables,
    libpq,
    restore,
    revision_of,
    verify,
)
from jiesu.db.engine import Database
from jiesu.db.migrate import upgrade
from jiesu.demo.generate import generate
from jiesu.settings import city_tz, get_settings
from jiesu.tickets.models import Event, Ticket
from tests.conftest import IN_CI, TINY_PACK, PgDatabases, require_backend

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


def put_files(var: Path) -> dict[str, bytes]:
    """The var dir's files as a deployment has them: photos by checksum, a knowledge file awaiting
    review, the signing key. Returns them by relative path."""
    files = {}
    for i in range(5):
        data = os.urandom(3000 + i * 1000)
        digest = hashlib.sha256(data).hexdigest()
        files[f"uploads/{digest[:2]}/{digest}"] = data
    files["knowledge_imports/" + "ab" * 32 + ".xlsx"] = b"PK\x03\x04 not really a workbook"
    for rel, data in files.items():
        (var / rel).parent.mkdir(parents=True, exist_ok=True)
        (var / rel).write_bytes(data)
    (var / "jiesu.sqlite3-wal").write_bytes(b"never in the archive: the database is its own member")
    return files


def use_var_dir(monkeypatch: pytest.MonkeyPatch, var: Path) -> None:
    monkeypatch.setenv("JIESU_VAR_DIR", str(var))
    get_settings.cache_clear()


def test_a_history_comes_back_row_for_row_figure_for_figure_and_byte_for_byte(
    backend: str, db: Database, target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_pg_tools(backend)
    monkeypatch.delenv("JIESU_SECRET_KEY", raising=False)
    generate(db, days=6, per_day=20, now=HISTORY_END, pack_dir=TINY_PACK, seed=17)
    tickets, events = rows(db, Ticket.__table__), rows(db, Event.__table__)
    three = figures(db)
    assert len(tickets) > 50 and len(events) > len(tickets)
    assert any(r.orders for group in three for r in group)
    old_var = tmp_path / "old" / "var"
    files = put_files(old_var)
    use_var_dir(monkeypatch, old_var)
    token = links.sign(tickets[0][0], now=HISTORY_END)  # creates secret.key, as the worker does
    assert (old_var / "secret.key").is_file()

    out = tmp_path / "backups" / "jiesu.backup"
    backup(db.url, out, var_dir=old_var)
    assert out.stat().st_size > 0 and not (out.parent / "jiesu.backup.partial").exists()
    assert out.stat().st_mode & 0o077 == 0  # it holds the key and personal data: owner only
    assert [p.name for p in out.parent.iterdir()] == ["jiesu.backup"]  # no scratch left behind
    manifest = verify(out)
    assert manifest["counts"]["ticket"] == len(tickets) and manifest["secret_key"] == "file"
    assert {f["path"] for f in manifest["files"]} == {*files, "secret.key"}

    new_var = tmp_path / "new" / "var"
    done = restore(out, target, var_dir=new_var)

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
    for rel, data in files.items():
        assert (new_var / rel).read_bytes() == data
    assert (new_var / "secret.key").read_bytes() == (old_var / "secret.key").read_bytes()
    assert (new_var / "secret.key").stat().st_mode & 0o777 == 0o600
    assert not (new_var / "jiesu.sqlite3-wal").exists()
    assert sorted(p.name for p in new_var.iterdir() if p.name.startswith(".")) == []
    assert (done.files, done.files_same) == (len(files) + 1, 0)

    shutil.rmtree(old_var)  # the old machine is gone: the link verifies with the restored key
    try:
        use_var_dir(monkeypatch, tmp_path / "keyless" / "var")  # a machine with a key of its own
        with pytest.raises(links.LinkError):
            links.verify(token, now=HISTORY_END)
        use_var_dir(monkeypatch, new_var)
        assert links.verify(token, now=HISTORY_END) == tickets[0][0]
    finally:
        get_settings.cache_clear()


def damage(archive: Path, member: str) -> None:
    """Flip one byte of `member`'s data in place (the archive's index stays readable)."""
    with tarfile.open(archive) as tar:
        offset = tar.getmember(member).offset_data
    with open(archive, "r+b") as f:
        f.seek(offset + 10)
        byte = f.read(1)
        f.seek(offset + 10)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_damaged_archive_is_refused_before_anything_is_written(
    backend: str, db: Database, target: str, tmp_path: Path
) -> None:
    require_pg_tools(backend)
    put_files(tmp_path / "var")
    out = tmp_path / "b.backup"
    backup(db.url, out, var_dir=tmp_path / "var")
    photo = next(f["path"] for f in verify(out)["files"] if f["path"].startswith("uploads/"))
    damage(out, "files/" + photo)
    new_var = tmp_path / "new_var"
    with pytest.raises(BackupError, match="checksum"):
        verify(out)
    with pytest.raises(BackupError, match="checksum"):
        restore(out, target, var_dir=new_var)
    assert not has_tables(target)
    assert not new_var.exists() or not any(new_var.rglob("*"))


def test_a_truncated_archive_or_a_foreign_tar_is_refused(
    backend: str, db: Database, target: str, tmp_path: Path
) -> None:
    require_pg_tools(backend)
    out = tmp_path / "b.backup"
    backup(db.url, out)
    half = tmp_path / "half.backup"
    half.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    with pytest.raises(BackupError, match="truncated"):
        restore(half, target)
    foreign = tmp_path / "foreign.tar"
    with tarfile.open(foreign, "w") as tar:
        tar.add(__file__, arcname="something.py")
    with pytest.raises(BackupError, match="manifest"):
        restore(foreign, target)
    assert not has_tables(target)


def test_a_manifest_path_out_of_the_var_dir_is_refused(
    backend: str, db: Database, target: str, tmp_path: Path
) -> None:
    require_pg_tools(backend)
    out = tmp_path / "b.backup"
    backup(db.url, out)
    with tarfile.open(out) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST).read())  # type: ignore[union-attr]
        database = tar.extractfile(manifest["database"]["path"]).read()  # type: ignore[union-attr]
    evil = tmp_path / "evil.backup"
    payload = b"ssh-rsa AAAA..."
    manifest["files"] = [{"path": "../../.ssh/authorized_keys", "size": len(payload),
                          "sha256": hashlib.sha256(payload).hexdigest()}]  # fmt: skip
    with tarfile.open(evil, "w") as tar:
        for name, data in ((manifest["database"]["path"], database),
                           ("files/../../.ssh/authorized_keys", payload),
                           (MANIFEST, json.dumps(manifest).encode())):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    var = tmp_path / "deep" / "er" / "var"
    with pytest.raises(BackupError, match="unsafe"):
        restore(evil, target, var_dir=var)
    assert not (tmp_path / "deep" / ".ssh").exists() and not has_tables(target)


def test_files_that_differ_are_kept_unless_force_and_identical_ones_are_left_alone(
    backend: str, db: Database, target: str, tmp_path: Path
) -> None:
    require_pg_tools(backend)
    files = put_files(tmp_path / "var")
    out = tmp_path / "b.backup"
    backup(db.url, out, var_dir=tmp_path / "var")
    new_var = tmp_path / "new_var"
    photo = next(rel for rel in files if rel.startswith("uploads/"))
    (new_var / photo).parent.mkdir(parents=True)
    (new_var / photo).write_bytes(b"another photo under that name")
    into = target
    with pytest.raises(BackupError, match="--force"):
        restore(out, into, var_dir=new_var)
    assert not has_tables(target)  # refused before the database too
    assert (new_var / photo).read_bytes() == b"another photo under that name"
    done = restore(out, into, var_dir=new_var, force=True)
    assert (new_var / photo).read_bytes() == files[photo] and done.files == len(files)
    again = restore(out, into, var_dir=new_var, force=True)
    assert (again.files, again.files_same) == (0, len(files))


def test_a_key_from_the_environment_is_named_in_the_manifest_not_stored(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIESU_SECRET_KEY", "the-city-s-shared-key")
    out = tmp_path / "b.backup"
    backup(db.url, out, var_dir=tmp_path / "var")
    assert verify(out)["secret_key"] == "env"
    assert b"the-city-s-shared-key" not in out.read_bytes()


def test_a_backup_of_the_first_format_still_restores(
    backend: str, db: Database, target: str, tmp_path: Path
) -> None:
    """Before the archive, `jiesu db backup` wrote the bare database file: those still restore
    (the database only; the files beside it were copied by hand)."""
    require_pg_tools(backend)
    generate(db, days=2, per_day=10, now=HISTORY_END, pack_dir=TINY_PACK, seed=3)
    tickets = rows(db, Ticket.__table__)
    bare = tmp_path / "old-format.backup"
    backup_database(db.url, bare)
    with open(bare, "rb") as f:
        assert f.read(5) in (b"SQLit", b"PGDMP")
    with pytest.raises(BackupError, match="first format"):
        verify(bare)
    done = restore(bare, target, var_dir=tmp_path / "var")
    assert done.manifest is None and done.files == 0 and not (tmp_path / "var").exists()
    restored = Database(target)
    try:
        assert rows(restored, Ticket.__table__) == tickets
    finally:
        restored.dispose()


def test_restore_refuses_a_non_empty_target_without_force(
    backend: str, db: Database, target: str, tmp_path: Path
) -> None:
    require_pg_tools(backend)
    out = tmp_path / "b.backup"
    backup(db.url, out)
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
    out = tmp_path / "future.backup"
    backup(f"sqlite:///{source}", out)
    into = tmp_path / "into.sqlite3"
    with pytest.raises(BackupError, match="9999_from_the_future"):
        restore(out, f"sqlite:///{into}")
    assert not into.exists()  # nothing was written


def test_an_old_backup_is_upgraded_to_head(tmp_path: Path) -> None:
    source = tmp_path / "old.sqlite3"
    upgrade(f"sqlite:///{source}", "0020_knowledge")
    out = tmp_path / "old.backup"
    backup(f"sqlite:///{source}", out)
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
            copy = tmp_path / f"copy{i}.sqlite3"
            backup_database(f"sqlite:///{path}", copy)
            copies.append(copy)
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


def test_a_postgresql_backup_taken_under_writes_counts_exactly_what_it_dumped(
    pg: PgDatabases | None, templates: Any, tmp_path: Path
) -> None:
    """The manifest's counts are read in the snapshot pg_dump dumps (pg_export_snapshot), so
    they equal what comes back even while the app writes; the restore compares them."""
    require_backend("postgresql")
    require_pg_tools("postgresql")
    assert pg is not None
    source = pg.create(templates.get("postgresql", True))
    db = Database(pg.url(source))
    generate(db, days=2, per_day=20, now=HISTORY_END, pack_dir=TINY_PACK, seed=5)
    with db.read() as s:
        ticket = s.execute(select(Ticket.id).order_by(Ticket.id)).scalars().first()
        seq = s.execute(
            text("SELECT max(seq) FROM event WHERE ticket_id = :t"), {"t": ticket}
        ).scalar_one()
    stop, written = threading.Event(), [0]

    def write() -> None:  # one note event per transaction, as fast as it goes
        n = seq
        engine = create_engine(pg.url(source))  # type: ignore[union-attr]
        with engine.connect() as c:
            while not stop.is_set():
                n += 1
                c.execute(text("INSERT INTO event (ticket_id, seq, action, at, state_after, data) "
                               "VALUES (:t, :n, 'note', now(), 'x', '{}')"), {"t": ticket, "n": n})  # fmt: skip
                c.commit()
                written[0] += 1
        engine.dispose()

    writer = threading.Thread(target=write)
    writer.start()
    name = f"test_restore_writes_{os.getpid()}"
    try:
        while written[0] < 20:
            stop.wait(0.01)
        out = tmp_path / "busy.backup"
        backup(db.url, out)
        during = written[0]
        while written[0] < during + 20:  # the writes go on after the dump
            stop.wait(0.01)
    finally:
        stop.set()
        writer.join()
    manifest = verify(out)
    with db.read() as s:
        live = s.execute(text("SELECT count(*) FROM event")).scalar_one()
    assert manifest["counts"]["event"] < live
    pg.drop(name)
    with pg.admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        done = restore(out, pg.url(name))  # raises when the counts differ from the manifest's
        assert done.counts["事件 events"] == manifest["counts"]["event"]
    finally:
        db.dispose()
        pg.drop(name)
        pg.drop(source)


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
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, templates: Any, var_dir: Path
) -> None:
    source = tmp_path / "live.sqlite3"
    shutil.copyfile(templates.get("sqlite", True), source)
    monkeypatch.setenv("JIESU_DATABASE_URL", f"sqlite:///{source}")
    monkeypatch.delenv("JIESU_SECRET_KEY", raising=False)
    files = put_files(var_dir)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        r = runner.invoke(cli_app, ["db", "backup", str(tmp_path / "b.backup")])
        assert r.exit_code == 0, r.output
        assert "用户 users:" in r.output and f"files: {len(files)}" in r.output
        r = runner.invoke(cli_app, ["db", "restore", "--check", str(tmp_path / "b.backup")])
        assert r.exit_code == 0 and "校验通过 / verified" in r.output, r.output
        r = runner.invoke(cli_app, ["db", "restore", str(tmp_path / "b.backup")])
        assert r.exit_code == 1 and "--force" in r.output
        into = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        fresh_var = tmp_path / "fresh_var"
        r = runner.invoke(cli_app, ["db", "restore", str(tmp_path / "b.backup"), "--into", into,
                                    "--var-dir", str(fresh_var)])  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "工单 tickets: 0" in r.output and "用户 users:" in r.output
        said = " ".join(r.output.split())  # as read, whatever the terminal's width
        assert "Alembic: " in said and f"{len(files)} written, 0 already there" in said
        assert all((fresh_var / rel).read_bytes() == data for rel, data in files.items())
        damage(tmp_path / "b.backup", "files/" + next(iter(files)))
        r = runner.invoke(cli_app, ["db", "restore", "--check", str(tmp_path / "b.backup")])
        assert r.exit_code == 1 and "checksum" in r.output
    finally:
        get_settings.cache_clear()
