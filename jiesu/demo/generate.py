"""`jiesu demo generate`: write the demo city's history in bulk.

Reads the loaded city (units, categories, dispatch catalogue, users, calendar) once, lets a
`Storyteller` tell each ticket's story, and writes tickets, assignments and events with the
fastest path each database has: one `executemany` per table on SQLite, `COPY` on PostgreSQL. One
transaction per day, so an interrupted run keeps whole days; ticket numbers continue each day's
sequence (and the counters are moved past them), so later intake never collides.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from queue import Queue
from threading import Thread
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from jiesu.citypack.parse import Duration
from jiesu.db.base import UTCDateTime, utcnow
from jiesu.db.engine import WRITE, Database
from jiesu.demo.story import CategoryChoice, Context, Place, Storyteller, daily_count
from jiesu.demo.texts import TextBank
from jiesu.org.models import Unit, User
from jiesu.settings import REPO_ROOT, city_tz
from jiesu.taxonomy.models import CalendarOverride, Category, CitySetting, DispatchRule
from jiesu.taxonomy.routing import Catalogue, Rule, UnitInfo
from jiesu.tickets.models import Assignment, Event, Ticket, TicketCounter
from jiesu.tickets.numbering import format_number
from jiesu.timelimits.calendar import WorkCalendar

DEFAULT_PACK = REPO_ROOT / "citypacks" / "beijing"
# Rough resident weights of Beijing's districts, so Chaoyang gets more tickets than Yanqing.
DISTRICT_WEIGHT = {
    "110101": 7, "110102": 11, "110105": 34, "110106": 20, "110107": 6, "110108": 31,
    "110109": 4, "110111": 13, "110112": 18, "110113": 13, "110114": 22, "110115": 20,
    "110116": 4, "110117": 4, "110118": 5, "110119": 3,
}  # fmt: skip


@dataclass
class Result:
    tickets: int
    events: int
    assignments: int
    seconds: float


def load_context(db: Database, pack_dir: Path) -> Context:
    """Read what the stories need from the loaded city."""
    with db.read() as s:
        units = list(s.scalars(select(Unit).where(Unit.active)))
        by_id = {u.id: u for u in units}
        settings = s.get(CitySetting, "pack")
        if settings is None or not units:
            raise SystemExit("no city loaded: run `jiesu citypack load DIR` first")
        pack = settings.value
        categories = list(s.scalars(select(Category).where(Category.active)))
        rules = list(s.scalars(select(DispatchRule).where(DispatchRule.active)))
        users = list(s.scalars(select(User).where(User.active)))
        overrides = {o.day: o.kind == "workday" for o in s.scalars(select(CalendarOverride))}
    code_of = {u.id: u.code for u in units}
    infos = {
        u.code: UnitInfo(u.code, u.kind, code_of.get(u.parent_id or -1), u.function) for u in units
    }
    cat_code = {c.id: c.code for c in categories}
    catalogue = Catalogue(
        [
            Rule(
                cat_code[r.category_id],
                r.route,
                r.function,
                code_of.get(r.unit_id or -1),
                code_of.get(r.district_id or -1),
                r.note,
            )
            for r in rules
            if r.category_id in cat_code
        ],
        infos,
    )
    places, weights, neighbours = [], [], {}
    for street in (u for u in units if u.kind == "street"):
        district = by_id.get(street.parent_id or -1)
        if district is None:
            continue
        places.append(
            Place(district.id, district.name, district.code, street.id, street.name, street.code)
        )
        neighbours.setdefault(district.code, []).append(street.code)
    counts: dict[str, int] = {}
    for p in places:
        counts[p.district_code] = counts.get(p.district_code, 0) + 1
    for p in places:
        weights.append(DISTRICT_WEIGHT.get(p.district_code, 5) / counts[p.district_code])
    bank = TextBank.from_pack(pack_dir)
    children = Counter(c.parent_id for c in categories if c.parent_id)
    choices = []
    for c in categories:
        if c.level < 2:
            continue
        texts = bank.for_category(c.code, c.name, c.keywords)
        # A second-level category shares its weight with its own children.
        group = children[c.id] if c.level == 2 else children[c.parent_id]
        texts = replace(texts, weight=texts.weight / (group + 1))
        choices.append(CategoryChoice(c.id, c.code, c.effective_tier, texts))
    service_centre = next((u for u in units if u.function == "service_centre"), None)
    if service_centre is None:
        raise SystemExit("the city has no service centre unit (function service_centre)")
    by_role: dict[str, list[int]] = {}
    handlers: dict[int, list[int]] = {}
    for user in users:
        by_role.setdefault(user.role, []).append(user.id)
        if user.role in ("handler", "unit_admin"):
            handlers.setdefault(user.unit_id, []).append(user.id)
    fallback = [u.id for u in users if u.unit_id == service_centre.id] or [None]
    tiers = {
        name: {phase: Duration.parse(v) for phase, v in phases.items()}
        for name, phases in pack["tiers"].items()
    }
    return Context(
        tz=city_tz(),
        places=places,
        place_weights=weights,
        categories=choices,
        catalogue=catalogue,
        unit_ids={u.code: u.id for u in units},
        tiers=tiers,
        calendar=WorkCalendar(overrides),
        texts=bank,
        agents=by_role.get("agent") or fallback,  # type: ignore[arg-type]
        dispatchers=by_role.get("dispatcher") or fallback,  # type: ignore[arg-type]
        callback_agents=by_role.get("callback_agent") or fallback,  # type: ignore[arg-type]
        handlers=handlers,
        service_centre_id=service_centre.id,
        neighbours={p.street_code: neighbours[p.district_code] for p in places},
    )


class _Writer:
    """Bulk inserts for one connection: executemany on SQLite, COPY on PostgreSQL."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"

    def write(self, table: Table, rows: list[Any]) -> None:
        """Write rows given as dicts, or as sequences in the table's column order."""
        if not rows:
            return
        columns = [c.name for c in table.columns]
        if isinstance(rows[0], dict):
            row_of = itemgetter(*columns)
            values: list[Any] = [row_of(r) for r in rows]
        else:
            values = rows
        if self.pg:
            raw = self.conn.connection.driver_connection
            sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
            with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[union-attr]
                for row in values:
                    copy.write_row(row)
            return
        # SQLite keeps naive UTC text; only the datetime columns need converting.
        times = [i for i, c in enumerate(table.columns) if isinstance(c.type, UTCDateTime)]
        for n, row in enumerate(values):
            row = list(row)
            for i in times:
                if row[i] is not None:
                    row[i] = row[i].astimezone(UTC).replace(tzinfo=None).isoformat(" ")
            values[n] = tuple(row)
        marks = ", ".join("?" * len(columns))
        self.conn.exec_driver_sql(
            f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})", values
        )


class _BulkLoad:
    """One transaction for the whole load, per-row foreign-key checks suspended and every foreign
    key verified set-based before commit (what pg_restore does). Rows are written by a thread
    of their own, so the database works while the next day's stories are told.

    On PostgreSQL the foreign keys of the ticket tables are dropped and re-added inside the
    transaction (DDL is transactional: a failure restores them); this takes the ticket tables for
    the load's duration, so run it with the server stopped, as `jiesu demo init` does. On SQLite,
    `foreign_keys` is switched off for the connection and `foreign_key_check` run at the end.
    """

    TABLES = ("ticket", "assignment", "event")

    def __init__(self, db: Database) -> None:
        self.db = db
        self.queue: Queue[Any] = Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = Thread(target=self._run, name="demo-writer", daemon=True)

    def __enter__(self) -> _BulkLoad:
        self.thread.start()
        return self

    def put(self, batch: tuple[list[Any], list[Any], list[Any], str, int]) -> None:
        if self.error is not None:
            raise RuntimeError("the demo writer failed") from self.error
        self.queue.put(batch)

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.queue.put(None if exc_type is None else _ABORT)
        self.thread.join()
        if self.error is not None and exc_type is None:
            raise RuntimeError(f"demo history not written: {self.error}") from self.error

    def _run(self) -> None:
        try:
            with self.db.engine.connect().execution_options(**WRITE) as conn:
                raw = conn.connection.driver_connection
                pg = conn.dialect.name == "postgresql"
                if not pg:
                    raw.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
                try:
                    self._load(conn, pg)
                finally:
                    if not pg:
                        raw.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
        except BaseException as exc:
            self.error = exc
            while self.queue.get() not in (None, _ABORT):  # let the producer finish
                pass

    def _load(self, conn: Connection, pg: bool) -> None:
        writer = _Writer(conn)
        with conn.begin() as tx:
            keys = self._suspend_foreign_keys(conn) if pg else []
            while (batch := self.queue.get()) is not None:
                if batch is _ABORT:
                    tx.rollback()
                    return
                tickets, assignments, events, day, last = batch
                writer.write(Ticket.__table__, tickets)  # type: ignore[arg-type]
                writer.write(Assignment.__table__, assignments)  # type: ignore[arg-type]
                writer.write(Event.__table__, events)  # type: ignore[arg-type]
                if last:
                    _bump_counter(conn, day, last)
            if pg:
                for table, name, definition in keys:
                    conn.exec_driver_sql(
                        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'
                    )
                for table in self.TABLES:
                    conn.exec_driver_sql(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
                    )
            else:
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise ValueError(f"foreign keys broken by the load: {broken[:5]}")

    def _suspend_foreign_keys(self, conn: Connection) -> list[tuple[str, str, str]]:
        keys = conn.exec_driver_sql(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid::regclass::text IN ('ticket', 'assignment', 'event')"
        ).all()
        for table, name, _ in keys:
            conn.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        return [tuple(k) for k in keys]  # type: ignore[misc]


_ABORT = object()


def generate(
    db: Database,
    *,
    days: int,
    per_day: int,
    seed: int = 12345,
    end: date | None = None,
    now: datetime | None = None,
    pack_dir: Path = DEFAULT_PACK,
    progress: bool = False,
) -> Result:
    """Write `days` days of history ending on `end` (default today, city time) for the loaded city."""
    started = time.perf_counter()
    ctx = load_context(db, pack_dir)
    now = now or utcnow()
    last_day = end or now.astimezone(ctx.tz).date()
    rng = random.Random(seed)
    teller = Storyteller(ctx, rng, now)
    day_list = [last_day - timedelta(days=n) for n in range(days - 1, -1, -1)]
    plan = [(d, daily_count(per_day, d, rng)) for d in day_list]
    total = sum(n for _, n in plan)
    n_tickets = n_events = n_assignments = 0
    bar = Progress(
        TextColumn("[bold]演示数据[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), disable=not progress,
    )  # fmt: skip
    with db.read() as session:
        ticket_id, assignment_id, event_id = (
            int(session.scalar(select(func.coalesce(func.max(t.id), 0))) or 0) + 1
            for t in (Ticket, Assignment, Event)
        )
        keys = [f"{d:%Y%m%d}" for d, _ in plan]
        counters = dict(
            session.execute(
                select(TicketCounter.day, TicketCounter.last).where(TicketCounter.day.in_(keys))
            ).all()
        )
    with bar, _BulkLoad(db) as load:
        task = bar.add_task("tickets", total=total)
        for day, count in plan:
            key = f"{day:%Y%m%d}"
            seq = counters.get(key, 0)
            tickets, assignments, events = [], [], []
            for created in sorted(teller.created_at(day) for _ in range(count)):
                if created > now:
                    break
                seq += 1
                story = teller.tell(ticket_id, format_number(day, seq), day, created)
                tickets.append(story.ticket)
                for a in story.assignments:
                    a["id"] = assignment_id
                    assignment_id += 1
                    assignments.append(a)
                for e in story.events:
                    e[0] = event_id
                    event_id += 1
                events.extend(story.events)
                ticket_id += 1
            load.put((tickets, assignments, events, key, seq))
            n_tickets += len(tickets)
            n_events += len(events)
            n_assignments += len(assignments)
            bar.advance(task, count)
    return Result(n_tickets, n_events, n_assignments, time.perf_counter() - started)


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
