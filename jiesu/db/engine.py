"""Engines and sessions for both backends.

SQLite is the embedded default: WAL journal, a busy timeout, foreign keys on, and write
transactions opened with ``BEGIN IMMEDIATE`` so that two writers queue on the database lock
instead of failing when a read lock cannot be upgraded. PostgreSQL runs through psycopg 3 with
READ COMMITTED; code that needs serialisation takes row locks explicitly.

Services take ``db_session=`` and never commit; the caller owns the unit of work
(`Database.write()` / `Database.read()`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from jiesu.db.replica import DEFAULT_MAX_LAG_S, REPLICA_CONNECT_TIMEOUT_S, Replica
from jiesu.ops.metrics import ANALYSIS_READS

WRITE = {"jiesu_write": True}
READ_ONLY = {"postgresql_readonly": True}


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": 60, "check_same_thread": False}, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        url = str(parsed.set(drivername="postgresql+psycopg"))
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("jiesu_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """One engine and its session factory; the app, the CLI and the tests each hold one.
    `analysis_url`: a read replica for `analysis()` sessions (`jiesu.db.replica`)."""

    def __init__(
        self,
        url: str,
        *,
        analysis_url: str | None = None,
        max_lag_s: float = DEFAULT_MAX_LAG_S,
        **engine_kwargs: Any,
    ) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.replica: Replica | None = None
        if analysis_url:
            parsed, kwargs = make_url(analysis_url), dict(engine_kwargs)
            if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
                # A replica host that does not answer fails fast, and its reads go to the primary.
                kwargs.setdefault("connect_args", {"connect_timeout": REPLICA_CONNECT_TIMEOUT_S})
            self.replica = Replica(make_engine(analysis_url, **kwargs), max_lag_s=max_lag_s)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A unit of work that writes: commits on success, rolls back on any error."""
        with self.sessions() as session:
            session.connection(execution_options=WRITE)
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    @contextmanager
    def analysis(self, *, fresh: bool = False) -> Iterator[Session]:
        """A read-only session for what may lag a few seconds (dashboards, rankings, reports,
        exports): on the read replica where one is set, current and answering, else on the
        primary. `fresh`: the replica must first have replayed all the primary has committed
        (a reader right after its own writes)."""
        on_replica = self.replica is not None and self.replica.serves(
            self.engine if fresh else None
        )
        engine = self.replica.engine if on_replica and self.replica else self.engine
        ANALYSIS_READS.labels("replica" if on_replica else "primary").inc()
        with Session(engine, expire_on_commit=False) as session:
            # A standby is read-only by itself, and refuses to be told (psycopg would reset the
            # pooled connection with BEGIN READ WRITE): only the primary is told.
            if not on_replica and engine.dialect.name == "postgresql":
                session.connection(execution_options=READ_ONLY)
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        if self.replica is not None:
            self.replica.engine.dispose()


def from_settings() -> Database:
    """The database the settings name (JIESU_DATABASE_URL, and JIESU_ANALYSIS_DATABASE_URL with
    JIESU_ANALYSIS_MAX_LAG for analysis reads)."""
    from jiesu.settings import get_settings

    s = get_settings()
    return Database(s.database_url, analysis_url=s.analysis_url, max_lag_s=s.analysis_max_lag_s)
