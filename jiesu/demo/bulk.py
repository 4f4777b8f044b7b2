"""The bulk path's writing: a day's stories written in one transaction for the whole load, on
the driver alone (executemany on SQLite, COPY on PostgreSQL), foreign keys checked set-based at
the end. Used by `generate.py` (the history) and `plant.py` (the planted warning events)."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from queue import Queue
from threading import Thread
from typing import Any

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from jiesu.db.engine import WRITE, Database
from jiesu.knowledge.models import KnowledgeUse
from jiesu.tickets.models import Assignment, Event, Ticket, TicketCounter


def sqlite_stamp(t: datetime) -> str:
    """How SQLAlchemy's SQLite DateTime stores a time: naive UTC text, "2026-11-20 06:00:00.5"."""
    if t.tzinfo is UTC:  # the stories' times: drop the "+00:00"
        return t.isoformat(" ")[:-6]
    return t.astimezone(UTC).replace(tzinfo=None).isoformat(" ")


class Writer:
    """Bulk inserts for one connection: executemany on SQLite, COPY on PostgreSQL.

    Rows come as dicts or as sequences in the table's column order, with times already stamped
    for this database (`sqlite_stamp` on SQLite, aware datetimes on PostgreSQL), so writing is
    the driver's work alone, done in C with the GIL released while the database works.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self.raw: Any = conn.connection.driver_connection

    def write(self, table: Table, rows: list[Any]) -> None:
        if not rows:
            return
        columns = [c.name for c in table.columns]
        if isinstance(rows[0], dict):
            row_of = itemgetter(*columns)
            rows = [row_of(r) for r in rows]
        if self.pg:
            sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
            with self.raw.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" * len(columns))
        self.raw.executemany(
            f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})", rows
        )


@dataclass
class DayStories:
    """One day's tickets with their assignments and events, ids local to the day (0, 1, …)."""

    key: str  # YYYYMMDD
    last: int  # the day's last ticket sequence number
    tickets: list[dict[str, Any]]
    assignments: list[dict[str, Any]]
    events: list[list[Any]]
    uses: list[dict[str, Any]] = field(default_factory=list)  # kb_use: answered with an entry


class BulkLoad:
    """One transaction for the whole load, per-row foreign-key checks suspended and every foreign
    key verified set-based before commit (what pg_restore does).

    On PostgreSQL the foreign keys of the ticket tables are dropped and re-added inside the
    transaction (DDL is transactional: a failure restores them); this takes the ticket tables for
    the load's duration, so run it with the server stopped, as `jiesu demo init` does. On SQLite,
    `foreign_keys` is switched off for the connection and `foreign_key_check` run at the end.

    `threaded`: rows are handed to a writer thread, so this process tells the next day's stories
    while the database server works (PostgreSQL: the server is the other busy process). SQLite
    works inside this process, where a writer thread would only fight for the GIL; there the
    stories come from a worker process instead (`_Tellers`).
    """

    def __init__(self, db: Database, ids: tuple[int, int, int], *, threaded: bool = False) -> None:
        self.db = db
        self.ticket_id, self.assignment_id, self.event_id = ids
        self.stack = ExitStack()
        self.use_id = 0  # the next kb_use id, read on entering
        self.queue: Queue[DayStories | None] | None = Queue(maxsize=2) if threaded else None
        self.error: BaseException | None = None

    def __enter__(self) -> BulkLoad:
        self.conn = self.stack.enter_context(self.db.engine.connect().execution_options(**WRITE))
        self.pg = self.conn.dialect.name == "postgresql"
        self.writer = Writer(self.conn)
        if not self.pg:
            self.writer.raw.execute("PRAGMA foreign_keys=OFF")  # outside any transaction
            self.stack.callback(self.writer.raw.execute, "PRAGMA foreign_keys=ON")
        self.stack.enter_context(self.conn.begin())
        self.use_id = 1 + int(
            self.conn.execute(select(func.coalesce(func.max(KnowledgeUse.id), 0))).scalar() or 0
        )
        self.keys = _drop_foreign_keys(self.conn) if self.pg else []
        if self.queue is not None:
            self.thread = Thread(target=self._drain, name="demo-writer", daemon=True)
            self.thread.start()
        return self

    def put(self, day: DayStories) -> None:
        if self.queue is None:
            self._write(day)
            return
        if self.error is not None:
            raise RuntimeError("the demo writer failed") from self.error
        self.queue.put(day)

    def _drain(self) -> None:
        assert self.queue is not None
        try:
            while (day := self.queue.get()) is not None:
                self._write(day)
        except BaseException as exc:
            self.error = exc
            while self.queue.get() is not None:  # let the producer finish
                pass

    def _write(self, day: DayStories) -> None:
        """Give the day's rows their ids and write them."""
        base = self.ticket_id
        for t in day.tickets:
            t["id"] += base
        for a in day.assignments:
            a["id"], a["ticket_id"] = self.assignment_id, a["ticket_id"] + base
            self.assignment_id += 1
        for e in day.events:
            e[0], e[1] = self.event_id, e[1] + base
            self.event_id += 1
        for u in day.uses:
            u["id"], u["ticket_id"] = self.use_id, u["ticket_id"] + base
            self.use_id += 1
        self.ticket_id += len(day.tickets)
        self.writer.write(Ticket.__table__, day.tickets)  # type: ignore[arg-type]
        self.writer.write(Assignment.__table__, day.assignments)  # type: ignore[arg-type]
        self.writer.write(Event.__table__, day.events)  # type: ignore[arg-type]
        self.writer.write(KnowledgeUse.__table__, day.uses)  # type: ignore[arg-type]
        if day.last:
            _bump_counter(self.conn, day.key, day.last)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.queue is not None:
            self.queue.put(None)
            self.thread.join()
            if self.error is not None and exc_type is None:
                exc_type, exc, tb = type(self.error), self.error, self.error.__traceback__
        if exc_type is None:
            try:
                if self.pg:
                    _restore_foreign_keys(self.conn, self.keys)
                else:
                    broken = self.conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise ValueError(f"foreign keys broken by the load: {broken[:5]}")
            except BaseException as failure:
                self.stack.__exit__(type(failure), failure, failure.__traceback__)
                raise
        self.stack.__exit__(exc_type, exc, tb)
        if exc is not None and exc is self.error:
            raise RuntimeError(f"demo history not written: {exc}") from exc


BULK_TABLES = ("ticket", "assignment", "event", "kb_use")


def _drop_foreign_keys(conn: Connection) -> list[tuple[str, str, str]]:
    keys = conn.exec_driver_sql(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'f' AND conrelid::regclass::text IN ('ticket', 'assignment', 'event')"
    ).all()
    for table, name, _ in keys:
        conn.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    return [(str(t), str(n), str(d)) for t, n, d in keys]


def _restore_foreign_keys(conn: Connection, keys: list[tuple[str, str, str]]) -> None:
    """Re-adding a foreign key checks every row in one pass, not row by row."""
    for table, name, definition in keys:
        conn.exec_driver_sql(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for table in BULK_TABLES:
        conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
        )


def _bump_counter(conn: Connection, day: str, last: int) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(TicketCounter).values(day=day, last=last)
    stmt = stmt.on_conflict_do_update(
        index_elements=[TicketCounter.day],
        set_={"last": func.max(TicketCounter.last, stmt.excluded.last)}
        if conn.dialect.name == "sqlite"
        else {"last": func.greatest(TicketCounter.last, stmt.excluded.last)},
    )
    conn.execute(stmt)
