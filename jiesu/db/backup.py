"""Backup and restore of a deployment (`jiesu db backup|restore`): its database and the files
beside it, in one archive.

The archive is a plain tar (photos and `pg_dump` output are compressed already) holding:
- `database.sqlite3.gz` (SQLite's online backup API: the app and the worker go on writing, the
  copy is one moment; `PRAGMA integrity_check`ed, then gzip level 1: a third of the size) or `database.pgdump` (`pg_dump --format=custom --no-owner --no-privileges`);
- `files/…`: the var dir's `uploads/` (orders' photos), `knowledge_imports/` (knowledge files
  awaiting review) and `secret.key` (signs the rating links: without it, links already sent stop
  verifying);
- `manifest.json`, last: jiesu's version, the Alembic revision, the counts of tickets, events,
  knowledge entries and users *in the same snapshot as the dump*, and a SHA-256 and size for the
  database and every file.
The database is taken before the files: a photo is written before its row commits, so every row
of the snapshot finds its file in the archive (a later file without a row is harmless).

Restore reads the manifest, checks every member against it (nothing is written when one
differs), refuses a target database that holds tables and files that differ from the backup's
unless `force`, then restores the database (`pg_restore --clean --if-exists --single-transaction`,
or SQLite's backup API), moves the files into place and compares the restored counts with the
manifest's. A backup older than the code is upgraded to head; one from newer code is refused.

The previous format, a bare SQLite file or a bare `pg_dump` custom file, still restores (database
only). The password of a PostgreSQL URL reaches `pg_dump`/`pg_restore` through `PGPASSWORD`,
never on a command line.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, make_url

from jiesu import __version__
from jiesu.db.engine import make_engine
from jiesu.db.migrate import alembic_config, upgrade
from jiesu.settings import REPO_ROOT

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_MAGIC = b"PGDMP"
ARCHIVE_FORMAT = "jiesu-backup"
ARCHIVE_VERSION = 2  # 1: the bare database file of the first `jiesu db backup`
MANIFEST = "manifest.json"
DB_MEMBER = {"sqlite": "database.sqlite3.gz", "postgresql": "database.pgdump"}
FILES = "files/"
# What of the var dir a deployment cannot lose; the database file itself is the other member.
VAR_ITEMS = ("uploads", "knowledge_imports", "secret.key")
SECRET_KEY = "secret.key"
# What a restore reports back: (label, table).
COUNTED = (("工单 tickets", "ticket"), ("事件 events", "event"),
           ("知识条目 kb entries", "kb_entry"), ("用户 users", "app_user"))  # fmt: skip
_CHUNK = 1 << 20
_SAFE_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


class BackupError(Exception):
    """A backup or restore that cannot go on; the message is Chinese / English."""


@dataclass
class Restored:
    revision: str | None  # the backup's revision
    head: str
    upgraded: bool
    counts: dict[str, int] = field(default_factory=dict)
    version: int = 1  # the backup's format: 1 database file only, 2 the archive
    manifest: dict[str, Any] | None = None
    files: int = 0  # files written into the var dir
    files_same: int = 0  # files already there with the backup's bytes
    var_dir: Path | None = None


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _Hashing:
    """A file read through once by `tarfile.addfile`, hashed on the way (no second read)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.digest = f, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.digest.update(data)
        return data


# ---- backup -----------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """What a database backup holds: its revision and counts, read in the dump's snapshot."""

    backend: str
    revision: str | None
    counts: dict[str, int]  # by table


def backup_database(url: str, out: Path) -> Snapshot:
    """Write the database alone to `out` (SQLite file or pg_dump custom), with what it holds."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        source = _sqlite_path(url)
        if not source.exists():
            raise BackupError(f"数据库文件不存在 / no database file at {source}")
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=60)
        dst = sqlite3.connect(out)
        try:
            with dst:
                src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            names = {r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            found = {t: int(dst.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0])
                     for _, t in COUNTED if t in names}  # fmt: skip
            return Snapshot("sqlite", _sqlite_revision(dst), found)
        finally:
            dst.close()
            src.close()
    if backend == "postgresql":
        return _pg_dump(url, out)
    raise BackupError(f"不支持的数据库 / unsupported database: {backend}")


def _pg_dump(url: str, out: Path) -> Snapshot:
    """pg_dump of an exported snapshot, counted in that same snapshot: the manifest's counts are
    exactly the dump's, whatever the app writes meanwhile."""
    uri, env = libpq(url)
    pg_dump = _tool("pg_dump")
    engine = make_engine(url)
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
            names = set(inspect(conn).get_table_names())
            found = {t: int(conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one())
                     for _, t in COUNTED if t in names}  # fmt: skip
            revision = (conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                        if "alembic_version" in names else None)  # fmt: skip
            _run([pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                  f"--snapshot={snapshot}", f"--file={out}", f"--dbname={uri}"], env)  # fmt: skip
            conn.rollback()
    finally:
        engine.dispose()
    return Snapshot("postgresql", revision, found)


def code_commit() -> str | None:
    """The git commit of the code taking the backup, when it runs from a checkout: what a
    newcomer checks out to restore it (the version number alone does not say)."""
    if not (REPO_ROOT / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def var_files(var_dir: Path) -> list[Path]:
    """The var dir's files a deployment cannot lose, relative to it, in a stable order."""
    found: list[Path] = []
    for item in VAR_ITEMS:
        path = var_dir / item
        if path.is_file():
            found.append(Path(item))
        elif path.is_dir():
            found.extend(sorted(p.relative_to(var_dir) for p in path.rglob("*")
                                if p.is_file() and not p.is_symlink()
                                and not p.name.startswith(".")))  # fmt: skip
    return found


def backup(url: str, out: Path, *, var_dir: Path | None = None) -> dict[str, Any]:
    """Write the archive of the database at `url` and, when `var_dir` is given, its files.

    The archive is written whole under `OUT.partial` and renamed: a file named OUT is complete.
    Returns the manifest."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix=".jiesu-backup-", dir=out.parent) as tmp:
            backend = make_url(url).get_backend_name()
            staged = Path(tmp) / "database"
            snap = backup_database(url, staged)  # before the files: see the module's docstring
            if backend == "sqlite":  # pg_dump's custom format is compressed already
                with closing(sqlite3.connect(staged)) as copy:
                    _sqlite_check(copy, "integrity_check")  # now, while the original exists
                with open(staged, "rb") as raw, gzip.open(staged.with_suffix(".gz"), "wb", 1) as z:
                    shutil.copyfileobj(raw, z, _CHUNK)
                staged.unlink()
                staged = staged.with_suffix(".gz")
            manifest: dict[str, Any] = {
                "format": ARCHIVE_FORMAT, "version": ARCHIVE_VERSION, "jiesu": __version__,
                "commit": code_commit(),
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "backend": snap.backend, "alembic": snap.revision, "counts": snap.counts,
                "secret_key": "none", "files": [],
            }  # fmt: skip
            # Owner-only: it holds the signing key and the citizens' personal data.
            partial.touch(mode=0o600)
            with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
                manifest["database"] = _add(tar, staged, DB_MEMBER[backend])
                if var_dir is not None:
                    for rel in var_files(var_dir):
                        with suppress(FileNotFoundError):  # a knowledge import just committed
                            manifest["files"].append(
                                _add(tar, var_dir / rel, FILES + rel.as_posix(), rel.as_posix())
                            )
                    if (var_dir / SECRET_KEY).is_file():
                        manifest["secret_key"] = "file"
                if os.environ.get("JIESU_SECRET_KEY", "").strip():
                    manifest["secret_key"] = "env"  # the key in use is not in any file
                body = json.dumps(manifest, ensure_ascii=False, indent=1).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mtime, info.mode = (
                    len(body),
                    int(datetime.now(UTC).timestamp()),
                    0o644,
                )
                tar.addfile(info, io.BytesIO(body))
            os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return manifest


def _add(tar: tarfile.TarFile, path: Path, name: str, label: str | None = None) -> dict[str, Any]:
    with open(path, "rb") as f:
        info = tar.gettarinfo(arcname=name, fileobj=f)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        hashing = _Hashing(f)
        tar.addfile(info, hashing)
    return {"path": label or name, "size": info.size, "sha256": hashing.digest.hexdigest()}


# ---- reading a backup -------------------------------------------------------------------------


def kind_of(file: Path) -> str:
    """`sqlite` or `postgresql` (a bare database file, the first format), or `archive`."""
    with open(file, "rb") as f:
        head = f.read(512)
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PG_MAGIC):
        return "postgresql"
    if head[257:262] == b"ustar":
        return "archive"
    raise BackupError(f"不是 jiesu 备份文件 / not a backup this tool wrote: {file}")


@contextmanager
def _reading(file: Path) -> Iterator[tarfile.TarFile]:
    """The archive open for reading; a cut or mangled one is a BackupError, not a traceback."""
    try:
        with tarfile.open(file, "r:") as tar:
            yield tar
    except (tarfile.TarError, EOFError) as e:
        raise BackupError(f"备份文件不完整或已损坏 / the archive {file} is truncated or damaged: "
                          f"{e}; nothing was restored") from e  # fmt: skip


def read_manifest(tar: tarfile.TarFile, file: Path) -> dict[str, Any]:
    try:
        member = tar.getmember(MANIFEST)
        raw = tar.extractfile(member)
        assert raw is not None
        manifest: dict[str, Any] = json.loads(raw.read())
    except (KeyError, AssertionError, ValueError) as e:
        raise BackupError(f"备份中没有清单，文件不完整 / no readable manifest in {file}: the "
                          "archive is incomplete or not one jiesu wrote") from e  # fmt: skip
    if manifest.get("format") != ARCHIVE_FORMAT:
        raise BackupError(f"不是 jiesu 备份文件 / not a backup this tool wrote: {file}")
    if int(manifest.get("version", 0)) > ARCHIVE_VERSION:
        raise BackupError(f"备份格式 {manifest.get('version')} 比本程序新，请先升级程序 / the "
                          "backup's format is newer than this code: upgrade the code first")  # fmt: skip
    return manifest


def _expected(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Member name → its manifest entry; refuses a path that could leave the var dir."""
    database = manifest["database"]
    expected = {str(database["path"]): database}
    for entry in manifest["files"]:
        rel = str(entry["path"])
        if not _SAFE_PATH.fullmatch(rel) or ".." in rel.split("/") or \
                rel.split("/")[0] not in VAR_ITEMS:  # fmt: skip
            raise BackupError(f"备份中的文件路径不安全 / an unsafe path in the backup: {rel!r}")
        expected[FILES + rel] = entry
    return expected


def _members(
    tar: tarfile.TarFile, file: Path, manifest: dict[str, Any]
) -> Iterator[tuple[tarfile.TarInfo, dict[str, Any]]]:
    expected = _expected(manifest)
    seen = set()
    for member in tar:
        if member.name == MANIFEST:
            continue
        entry = expected.get(member.name)
        if entry is None or not member.isfile():
            raise BackupError(f"备份中有清单外的内容 / {member.name!r} in {file} is not in the "
                              "manifest")  # fmt: skip
        seen.add(member.name)
        yield member, entry
    missing = sorted(set(expected) - seen)
    if missing:
        raise BackupError(f"备份缺少 {len(missing)} 个文件 / {len(missing)} member(s) of the "
                          f"manifest missing from {file}, e.g. {missing[0]}")  # fmt: skip


def _copy_checked(
    tar: tarfile.TarFile, member: tarfile.TarInfo, entry: dict[str, Any], to: IO[bytes] | None
) -> None:
    source = tar.extractfile(member)
    assert source is not None
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if to is not None:
            to.write(chunk)
    if size != int(entry["size"]) or digest.hexdigest() != entry["sha256"]:
        raise BackupError(f"校验和不符，备份已损坏 / checksum mismatch: {entry['path']} is "
                          "damaged in the backup; nothing was restored")  # fmt: skip


def verify(file: Path) -> dict[str, Any]:
    """Check every member of an archive against its manifest; writes nothing. The manifest."""
    file = Path(file)
    if kind_of(file) != "archive":
        raise BackupError(f"{file} 是旧格式（仅数据库），没有清单可校验 / {file} is a database-only "
                          "backup of the first format: it has no manifest to verify")  # fmt: skip
    with _reading(file) as tar:
        manifest = read_manifest(tar, file)
        for member, entry in _members(tar, file, manifest):
            _copy_checked(tar, member, entry, None)
    return manifest


# ---- restore ----------------------------------------------------------------------------------


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


def restore(file: Path, into: str, *, force: bool = False, var_dir: Path | None = None) -> Restored:
    """Restore the backup `file` into the database `into` (and its files into `var_dir` when
    given), then bring the database to the code's head."""
    file = Path(file)
    if not file.is_file():
        raise BackupError(f"找不到备份文件 / no backup file at {file}")
    kind = kind_of(file)
    if kind == "archive":
        return _restore_archive(file, into, force=force, var_dir=var_dir)
    _check_target(kind, into, force)
    revision = _restore_sqlite(file, into) if kind == "sqlite" else _restore_pg(file, into)
    return _finish(into, revision, Restored(revision, "", False))


def _check_target(kind: str, into: str, force: bool) -> None:
    target = make_url(into).get_backend_name()
    if kind != target:
        raise BackupError(f"{kind} 的备份不能恢复到 {target} / a {kind} backup cannot be "
                          f"restored into {target}")  # fmt: skip
    if has_tables(into) and not force:
        raise BackupError(f"目标数据库不为空，加 --force 覆盖 / the target already holds tables: "
                          f"{_safe(into)}; add --force to overwrite it")  # fmt: skip


def _finish(into: str, revision: str | None, done: Restored) -> Restored:
    head = _check_revision(into, revision)
    done.head, done.upgraded = head, revision != head
    if done.upgraded:
        upgrade(into, "head")
    done.counts = counts(into)
    return done


@contextmanager
def _staging(near: Path | None) -> Iterator[Path]:
    """A scratch folder on the var dir's file system when there is one (files then move into
    place with a rename), else the system's temporary folder."""
    if near is not None:
        near.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".jiesu-restore-", dir=near) as tmp:
        yield Path(tmp)


def _restore_archive(file: Path, into: str, *, force: bool, var_dir: Path | None) -> Restored:
    with _reading(file) as tar:
        manifest = read_manifest(tar, file)
        backend = str(manifest["backend"])
        _check_target(backend, into, force)
        _check_revision(into, manifest.get("alembic"))  # before anything is written
        clashes = []
        if var_dir is not None:
            for entry in manifest["files"]:
                path = var_dir / entry["path"]
                if path.exists() and (path.stat().st_size != entry["size"]
                                      or _sha256(path) != entry["sha256"]):  # fmt: skip
                    clashes.append(entry["path"])
        if clashes and not force:
            raise BackupError(
                f"数据目录 {var_dir} 中已有 {len(clashes)} 个不同的文件（如 {clashes[0]}），加 --force "
                f"覆盖 / {len(clashes)} file(s) in {var_dir} differ from the backup's, e.g. "
                f"{clashes[0]}; add --force to overwrite them"
            )
        with _staging(var_dir) as stage:
            staged_db = stage / "database"
            files: list[tuple[Path, Path]] = []
            for member, entry in _members(tar, file, manifest):  # every checksum, first
                if member.name == manifest["database"]["path"]:
                    dest = staged_db
                elif var_dir is None:
                    _copy_checked(tar, member, entry, None)
                    continue
                else:
                    dest = stage / "files" / entry["path"]
                    files.append((dest, var_dir / entry["path"]))
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "wb") as f:
                    _copy_checked(tar, member, entry, f)
            if manifest["database"]["path"].endswith(".gz"):
                with gzip.open(staged_db, "rb") as z, open(stage / "database.raw", "wb") as raw:
                    shutil.copyfileobj(z, raw, _CHUNK)
                staged_db.unlink()
                staged_db = stage / "database.raw"
            if backend == "sqlite":
                revision = _restore_sqlite(staged_db, into, "quick_check")
            else:
                revision = _restore_pg(staged_db, into)
            done = Restored(revision, "", False, version=int(manifest["version"]),
                            manifest=manifest, var_dir=var_dir)  # fmt: skip
            for staged, final in files:
                if final.exists() and _sha256(final) == _sha256(staged):
                    done.files_same += 1
                    continue
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(staged, 0o600 if final.name == SECRET_KEY else 0o644)
                os.replace(staged, final)
                done.files += 1
    _finish(into, revision, done)
    _compare_counts(manifest, into)
    return done


def _compare_counts(manifest: dict[str, Any], into: str) -> None:
    now = counts(into, by_table=True)
    wrong = [f"{t}: {n:,} → {now[t]:,}" for t, n in manifest.get("counts", {}).items()
             if t in now and now[t] != n]  # fmt: skip
    if wrong:
        raise BackupError("恢复后的数量与备份清单不符 / the restored counts differ from the "
                          "backup's manifest: " + "; ".join(wrong))  # fmt: skip


def _sqlite_check(conn: sqlite3.Connection, pragma: str) -> None:
    verdict = [r[0] for r in conn.execute(f"PRAGMA {pragma}").fetchall()]
    if verdict != ["ok"]:
        raise BackupError(f"数据库文件已损坏 / the database fails PRAGMA {pragma}: "
                          + "; ".join(map(str, verdict[:5])))  # fmt: skip


def _restore_sqlite(file: Path, into: str, check: str = "integrity_check") -> str | None:
    """Copy a checked SQLite file into `into`. An archive's copy was integrity-checked when it
    was taken and its bytes are proven by the checksum: the quick check (a ninth of the time at
    100k tickets, 1.5 s against 13.6 s) then suffices; a bare file of the first format gets the
    full one."""
    src = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
    try:
        _sqlite_check(src, check)
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


def counts(url: str, *, by_table: bool = False) -> dict[str, int]:
    engine = make_engine(url)
    try:
        names = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            return {table if by_table else label:
                    int(conn.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())
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
