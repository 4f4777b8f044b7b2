"""Shared fixtures: a tiny city on SQLite and on PostgreSQL, each test on a fresh database.

Every test that takes `db` (or `client`, `empty_url`) runs once per backend. A template database
is built once per session (migrated, tiny pack loaded) and copied for each test: a file copy on
SQLite, `CREATE DATABASE … TEMPLATE` on PostgreSQL. With CI=true the PostgreSQL runs are
mandatory; elsewhere they skip with a message when 127.0.0.1:5432 does not answer.
"""

from __future__ import annotations

import os

os.environ.setdefault("JIESU_ARGON2_PROFILE", "cheapest")  # before jiesu.auth.passwords loads

import shutil
import socket
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import cast

import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from jiesu.access.policy import Principal
from jiesu.auth.service import principal_of
from jiesu.citypack.load import load_pack
from jiesu.citypack.parse import read_pack
from jiesu.db.engine import Database
from jiesu.db.migrate import upgrade
from jiesu.org.models import Unit, User
from jiesu.settings import get_settings
from jiesu.web.app import create_app

TESTS = Path(__file__).parent
TINY_PACK = TESTS / "packs" / "tiny"
SHARED_DATA = TESTS.parent.parent / "shared" / "data"
PG_ADMIN_URL = os.environ.get(
    "JIESU_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The any-hour check (tests/test_any_hour.py) runs the clock-sensitive modules with the whole
# process's clock starting at this instant (ISO 8601 with its offset), the server threads included.
TEST_NOW = os.environ.get("JIESU_TEST_NOW", "")
BACKENDS = ["sqlite", "postgresql"]
PASSWORD = "secret123"  # every tiny-pack user's


@pytest.fixture(scope="session", autouse=True)
def pinned_clock() -> Iterator[datetime | None]:
    """With JIESU_TEST_NOW set, the session starts at that instant and the clock runs on from it
    (`time.time`, `datetime.now`, in every thread; `time.monotonic` is left alone)."""
    if not TEST_NOW:
        yield None
        return
    start = datetime.fromisoformat(TEST_NOW)
    if start.tzinfo is None:
        raise pytest.UsageError(f"JIESU_TEST_NOW needs an offset, e.g. +08:00: {TEST_NOW!r}")
    with time_machine.travel(start, tick=True):
        yield start


def _pg_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


def require_backend(backend: str) -> None:
    if backend != "postgresql" or _pg_answers():
        return
    message = "PostgreSQL at 127.0.0.1:5432 does not answer"
    if IN_CI:
        pytest.fail(f"{message}: CI=true makes the PostgreSQL tests mandatory", pytrace=False)
    pytest.skip(f"{message}; start it (trust auth, user postgres) to run the PostgreSQL tests")


class PgDatabases:
    """Creates and drops throwaway databases on the local PostgreSQL server."""

    def __init__(self) -> None:
        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.prefix = f"jiesu_t_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.count = 0

    def url(self, name: str) -> str:
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    def create(self, template: str | None = None) -> str:
        self.count += 1
        name = f"{self.prefix}_{self.count}"
        with self.admin.connect() as c:
            c.execute(
                text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
            )
        return name

    def drop(self, name: str) -> None:
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg() -> Iterator[PgDatabases | None]:
    if not _pg_answers():
        yield None
        return
    dbs = PgDatabases()
    yield dbs
    with dbs.admin.connect() as c:
        names = (
            c.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                {"p": dbs.prefix + "%"},
            )
            .scalars()
            .all()
        )
    for name in names:
        dbs.drop(name)
    dbs.admin.dispose()


def _prepare(url: str, *, with_pack: bool) -> None:
    upgrade(url)
    if with_pack:
        db = Database(url)
        with db.write() as session:
            load_pack(read_pack(TINY_PACK), db_session=session)
        db.dispose()


class Templates:
    """Lazily built template databases, one per (backend, contents)."""

    def __init__(self, tmp: Path, pg: PgDatabases | None) -> None:
        self.tmp, self.pg = tmp, pg
        self.built: dict[tuple[str, bool], str] = {}

    def get(self, backend: str, with_pack: bool) -> str:
        key = (backend, with_pack)
        if key not in self.built:
            if backend == "sqlite":
                path = self.tmp / f"template_{int(with_pack)}.sqlite3"
                _prepare(f"sqlite:///{path}", with_pack=with_pack)
                self.built[key] = str(path)
            else:
                assert self.pg is not None
                name = self.pg.create()
                _prepare(self.pg.url(name), with_pack=with_pack)
                self.built[key] = name
        return self.built[key]

    def fresh_url(self, backend: str, with_pack: bool, tmp_path: Path) -> Iterator[str]:
        template = self.get(backend, with_pack)
        if backend == "sqlite":
            target = tmp_path / "jiesu.sqlite3"
            shutil.copyfile(template, target)
            yield f"sqlite:///{target}"
        else:
            assert self.pg is not None
            name = self.pg.create(template)
            try:
                yield self.pg.url(name)
            finally:
                self.pg.drop(name)


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory, pg: PgDatabases | None) -> Templates:
    return Templates(tmp_path_factory.mktemp("templates"), pg)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    require_backend(request.param)
    return str(request.param)


@pytest.fixture
def db_url(backend: str, templates: Templates, tmp_path: Path) -> Iterator[str]:
    """A fresh database with the schema and the tiny city loaded."""
    yield from templates.fresh_url(backend, True, tmp_path)


@pytest.fixture
def empty_url(backend: str, templates: Templates, tmp_path: Path) -> Iterator[str]:
    """A fresh database with the schema and nothing in it."""
    yield from templates.fresh_url(backend, False, tmp_path)


@pytest.fixture
def bare_url(backend: str, pg: PgDatabases | None, tmp_path: Path) -> Iterator[str]:
    """A fresh database without even a schema (for migration tests)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'bare.sqlite3'}"
        return
    assert pg is not None
    name = pg.create()
    try:
        yield pg.url(name)
    finally:
        pg.drop(name)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def pg_db(templates: Templates, tmp_path: Path) -> Iterator[Database]:
    """A fresh PostgreSQL database with the test pack (mandatory in CI, like every PG test)."""
    require_backend("postgresql")
    urls = cast(Generator[str, None, None], templates.fresh_url("postgresql", True, tmp_path))
    db = Database(next(urls))
    try:
        yield db
    finally:
        db.dispose()
        urls.close()


@pytest.fixture
def empty_db(empty_url: str) -> Iterator[Database]:
    """A fresh database with the schema and nothing in it."""
    database = Database(empty_url)
    yield database
    database.dispose()


@pytest.fixture
def client(db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(db), raise_server_exceptions=False) as c:
        yield c


def token_for(client: TestClient, username: str, password: str = PASSWORD) -> str:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def auth(client: TestClient, username: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(client, username)}"}


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it lives in ../shared/data beside the repo)")
    return path


@contextmanager
def tiny_city(
    backend: str, templates: Templates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Database]]:
    """A tiny city on `backend` that lives as long as the `with` (a module-scoped world)."""
    require_backend(backend)
    tmp: Path = tmp_path_factory.mktemp("city")
    urls = cast(Generator[str, None, None], templates.fresh_url(backend, True, tmp))
    db = Database(next(urls))
    try:
        with TestClient(create_app(db), raise_server_exceptions=False) as client:
            yield client, db
    finally:
        db.dispose()
        urls.close()


def principal(db: Database, username: str = "agent1") -> Principal:
    """The signed-in identity of one of the city's users (for calling services directly)."""
    with db.read() as s:
        user, unit = s.execute(
            select(User, Unit).join(Unit, Unit.id == User.unit_id).where(User.username == username)
        ).one()
        return principal_of(user, unit)


@pytest.fixture
def var_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """JIESU_VAR_DIR (uploads, reports) under this test's own directory, never the repository's."""
    target = tmp_path / "var"
    monkeypatch.setenv("JIESU_VAR_DIR", str(target))
    get_settings.cache_clear()
    yield target
    get_settings.cache_clear()
