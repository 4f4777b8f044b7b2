"""Backup and restore of the deployment's database (`jiesu db backup|restore`).

SQLite: an online, consistent copy through SQLite's backup API (readers and writers go on; in WAL
mode the copy is one snapshot). Restore checks the copy (`PRAGMA integrity_check`, its Alembic
revision) and copies it into place with the same API.

PostgreSQL: `pg_dump --format=custom --no-owner --no-privileges`, restored with
`pg_restore --clean --if-exists --no-owner --no-privileges` in one transaction. The SQLAlchemy URL
is turned into a libpq URI without the password; the password goes through `PGPASSWORD`, never on
a command line.

A restore refuses a target that already holds tables unless `force`, refuses a backup from newer
code (a revision this code does not know), and upgrades a backup older than the code to head.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, make_url

from jiesu.db.engine import make_engine
from jiesu.db.migrate import alembic_config, upgrade

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_MAGIC = b"PGDMP"
# What a restore reports back: (label, table).
COUNTED = (("工单 tickets", "ticket"), ("事件 events", "event"),
           ("知识条目 kb entries", "kb_entry"), ("用户 users", "app_user"))  # fmt: skip


class BackupError(Exception):
    """A backup or restore that cannot go on; the message is Chinese / English."""


@dataclass
class Restored:
    revision: str | None  # the backup's revision
    head: str
    upgraded: bool
    counts: dict[str, int] = field(default_factory=dict)


# ---- URLs and tools ---------------------------------------------------------------------------


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and the environment that carries it."""
    u: URL = make_url(url)
    if u.get_backend_name() != "postgresql":
        raise BackupError(f"不是 PostgreSQL 地址 / not a PostgreSQL URL: {_safe(url)}")
    user = quote(u.username or "", safe="")
    host = u.host or ""
    netloc = (f"{user}@" if user else "") + host + (f":{u.port}" if u.port else "")
    query = {k: v if isinstance(v, str) else v[-1] for k, v in u.query.items()}
    uri = f"postgresql://{netloc}/{quote(u.database or '', safe='')}"
    if query:
        uri += "?" + urlencode(query)
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if u.password is not None:
        env["PGPASSWORD"] = str(u.password)
    return uri, env


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"找不到 {name}，请安装 PostgreSQL 客户端（Debian：apt-get install postgresql-client）"
            f" / {name} not found: install the PostgreSQL client tools "
            "(Debian: apt-get install postgresql-client)"
        )
    return path


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(
            f"{Path(args[0]).name} 失败 / failed (exit {done.returncode}): {done.stderr.strip()}"
        )
    return done.stdout


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("SQLite 内存库无法备份或恢复 / an in-memory SQLite cannot be backed up")
    return Path(database)


# ---- backup -----------------------------------------------------------------------------------


def backup(url: str, out: Path) -> Path:
    """Write a consistent backup of the database at `url` to `out` (written whole, then moved)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    backend = make_url(url).get_backend_name()
    try:
        if backend == "sqlite":
            source = _sqlite_path(url)
            if not source.exists():
                raise BackupError(f"数据库文件不存在 / no database file at {source}")
            src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=60)
            dst = sqlite3.connect(partial)
            try:
                with dst:
                    src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                dst.close()
                src.close()
        elif backend == "postgresql":
            uri, env = libpq(url)
            _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                  f"--file={partial}", f"--dbname={uri}"], env)  # fmt: skip
        else:
            raise BackupError(f"不支持的数据库 / unsupported database: {backend}")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


# ---- restore ----------------------------------------------------------------------------------


def kind_of(file: Path) -> str:
    with open(file, "rb") as f:
        head = f.read(16)
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PG_MAGIC):
        return "postgresql"
    raise BackupError(f"不是 jiesu 备份文件 / not a backup this tool wrote: {file}")


def _check_revision(url: str, revision: str | None) -> str:
    """The code's head; refuses a backup whose revision the code does not know."""
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_current_head()
    assert head is not None
    if revision is None:
        raise BackupError("备份中没有 Alembic 版本，不是 jiesu 数据库 / the backup holds no Alembic "
                          "revision: not a jiesu database")  # fmt: skip
    try:
        script.get_revision(revision)
    except CommandError as e:
        raise BackupError(
            f"备份的版本 {revision} 比本程序新，请先升级程序 / the backup's revision {revision} is "
            "unknown to this code (taken by a newer jiesu?): upgrade the code first"
        ) from e
    return head


def _sqlite_revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else str(row[0])


def _pg_revision(file: Path, env: dict[str, str]) -> str | None:
    sql = _run([_tool("pg_restore"), "--data-only", "--table=alembic_version", "--file=-",
                str(file)], env)  # fmt: skip
    lines = sql.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("COPY ") and "alembic_version" in line and i + 1 < len(lines):
            value = lines[i + 1].strip()
            return None if value == "\\." else value
    return None


def has_tables(url: str) -> bool:
    if make_url(url).get_backend_name() == "sqlite" and not _sqlite_path(url).exists():
        return False
    engine = make_engine(url)
    try:
        return bool(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def restore(file: Path, into: str, *, force: bool = False) -> Restored:
    """Restore the backup `file` into the database `into` and bring it to the code's head."""
    file = Path(file)
    if not file.is_file():
        raise BackupError(f"找不到备份文件 / no backup file at {file}")
    kind = kind_of(file)
    target = make_url(into).get_backend_name()
    if kind != target:
        raise BackupError(f"{kind} 的备份不能恢复到 {target} / a {kind} backup cannot be "
                          f"restored into {target}")  # fmt: skip
    if has_tables(into) and not force:
        raise BackupError(f"目标数据库不为空，加 --force 覆盖 / the target already holds tables: "
                          f"{_safe(into)}; add --force to overwrite it")  # fmt: skip
    revision = _restore_sqlite(file, into) if kind == "sqlite" else _restore_pg(file, into)
    head = _check_revision(into, revision)
    upgraded = revision != head
    if upgraded:
        upgrade(into, "head")
    return Restored(revision, head, upgraded, counts(into))


def _restore_sqlite(file: Path, into: str) -> str | None:
    src = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    try:
        verdict = [r[0] for r in src.execute("PRAGMA integrity_check").fetchall()]
        if verdict != ["ok"]:
            raise BackupError("备份文件已损坏 / the backup fails PRAGMA integrity_check: "
                              + "; ".join(map(str, verdict[:5])))  # fmt: skip
        revision = _sqlite_revision(src)
        _check_revision(into, revision)  # before anything is overwritten
        path = _sqlite_path(into)
        path.parent.mkdir(parents=True, exist_ok=True)
        dst = sqlite3.connect(path, timeout=60)
        try:
            with dst:
                src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    return revision


def _restore_pg(file: Path, into: str) -> str | None:
    uri, env = libpq(into)
    _run([_tool("pg_restore"), "--list", str(file)], env)  # a readable archive
    revision = _pg_revision(file, env)
    _check_revision(into, revision)  # before anything is overwritten
    _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
          "--single-transaction", "--exit-on-error", f"--dbname={uri}", str(file)], env)  # fmt: skip
    return revision


def counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        names = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            return {label: int(conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())
                    for label, table in COUNTED if table in names}  # fmt: skip
    finally:
        engine.dispose()


def revision_of(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
