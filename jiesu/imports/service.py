"""Import of historical orders (docs/import.md): read a file, check every row, write in bulk.

`check` reads the file (xlsx with python-calamine, CSV with the csv module: UTF-8, UTF-8 with
BOM or GB18030), converts every row through the mapping and lists every error (row, column,
reason); it writes nothing. `commit` writes what `check` accepted in the caller's transaction:
new rows become tickets with a lifecycle-valid timeline (`timeline.py`), written with the demo's
bulk writer (COPY on PostgreSQL, executemany on SQLite), and their assessment facts and rollups
added as the live path would have left them; a row seen before (same source and external id) is
left alone when unchanged, and otherwise updates the order's descriptive columns with an
`import_update` event (its timeline stays: events are append-only).
"""

from __future__ import annotations

import csv
import io
import multiprocessing as mp
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from jiesu.assessment import service as assessment
from jiesu.assessment.models import IntakeFact, MetricFact
from jiesu.assessment.rates import add
from jiesu.citypack.parse import Duration
from jiesu.db.base import utcnow
from jiesu.demo.bulk import Writer, sqlite_stamp
from jiesu.imports import timeline
from jiesu.imports.mapping import (
    DESCRIPTIVE,
    Converter,
    Error,
    Lookup,
    Mapping_,
    Row,
)
from jiesu.imports.models import ImportedOrder
from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.taxonomy.models import Category, RequestType
from jiesu.taxonomy.service import city_clocks, load_catalogue, pack_settings
from jiesu.tickets.models import Assignment, Event, Ticket, TicketCounter
from jiesu.tickets.numbering import format_number
from jiesu.tickets.service import tier_for

Progress = Callable[[int], None]  # rows done so far
LAST_TIMINGS: dict[str, float] = {}  # the last commit's phases in seconds (for the bench)


@dataclass
class Report:
    rows: int = 0
    errors: list[Error] = field(default_factory=list)
    warnings: list[Error] = field(default_factory=list)
    valid: list[Row] = field(default_factory=list)
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    committed: bool = False

    @property
    def bad_rows(self) -> int:
        return len({line for line, _, _ in self.errors})


# ---- reading ----------------------------------------------------------------------------------


def decode(data: bytes, encoding: str | None = None) -> str:
    """The file's text: the mapping's encoding, else UTF-8 (with or without BOM), else GB18030."""
    if encoding:
        return data.decode(encoding)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")


def read_rows(
    path: Path, mapping: Mapping_
) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """The header and the rows (line number as a spreadsheet shows it: the header is row 1)."""
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls", ".ods"):
        from python_calamine import CalamineWorkbook

        book = CalamineWorkbook.from_path(str(path))
        sheet = (book.get_sheet_by_name(mapping.sheet) if isinstance(mapping.sheet, str)
                 else book.get_sheet_by_index(mapping.sheet or 0))  # fmt: skip
        rows = sheet.to_python(skip_empty_area=False)
        header = [str(h).strip() for h in rows[0]] if rows else []

        def sheet_rows() -> Iterator[tuple[int, dict[str, Any]]]:
            for i, values in enumerate(rows[1:], start=2):
                if all(v == "" or v is None for v in values):
                    continue
                yield i, dict(zip(header, values, strict=False))

        return header, sheet_rows()
    content = decode(path.read_bytes(), mapping.encoding)
    reader = csv.reader(io.StringIO(content, newline=""))
    header = [h.strip() for h in next(reader, [])]

    def csv_rows() -> Iterator[tuple[int, dict[str, Any]]]:
        for i, values in enumerate(reader, start=2):
            if not any(v.strip() for v in values):
                continue
            yield i, dict(zip(header, values, strict=False))

    return header, csv_rows()


# ---- the city's names -------------------------------------------------------------------------


def lookup(*, db_session: Session) -> Lookup:
    units = list(db_session.scalars(select(Unit).where(Unit.active)))
    districts: dict[str, int] = {}
    streets: dict[tuple[int, str], int] = {}
    streets_any: dict[str, list[int]] = defaultdict(list)
    handling: dict[str, int] = {}
    for u in units:
        known = [u.code, u.name, *([u.short_name] if u.short_name else []), *(u.aliases or [])]
        if u.kind == "district":
            for n in known:
                districts.setdefault(n, u.id)
        if u.kind == "street" and u.parent_id:
            for n in known:
                streets.setdefault((u.parent_id, n), u.id)
                streets_any[n].append(u.id)
        if u.kind != "city" and u.function != "service_centre":
            for n in [u.code, u.name, *([u.short_name] if u.short_name else [])]:
                handling.setdefault(n, u.id)
    categories: dict[str, int] = {}
    names: dict[str, list[int]] = defaultdict(list)
    for c in db_session.scalars(select(Category).where(Category.active)):
        categories[c.code] = c.id
        names[c.name].append(c.id)
    ambiguous = {n for n, ids in names.items() if len(ids) > 1 and n not in categories}
    for n, ids in names.items():
        if len(ids) == 1:
            categories.setdefault(n, ids[0])
    types: dict[str, str] = {}
    for t in db_session.scalars(select(RequestType).where(RequestType.active)):
        types[t.code] = t.code
        types[t.name] = t.code
    return Lookup(districts, streets, dict(streets_any), categories, ambiguous, handling, types)


# ---- checking ---------------------------------------------------------------------------------


def check(
    path: Path, mapping: Mapping_, *, db_session: Session, tz: ZoneInfo | None = None,
    progress: Progress | None = None, source: str | None = None,
) -> Report:  # fmt: skip
    """Read and convert every row; every error listed. Writes nothing. `source`: the lineage
    the rows will be written under (default the mapping's)."""
    report = Report()
    header, rows = read_rows(path, mapping)
    missing = sorted(c for c in mapping.columns() if c not in header)
    if missing:
        report.errors += [(1, c, "文件中没有这一列") for c in missing]
        return report
    converter = Converter(mapping, lookup(db_session=db_session), tz or city_tz())
    numbers: dict[str, int] = {}
    ids: dict[str, int] = {}
    for line, raw in rows:
        report.rows += 1
        row, errors = converter.convert(line, raw)
        if row is not None:
            first = ids.setdefault(row.external_id, line)
            if first != line:
                errors = [(line, converter._col("external_id"), f"外部编号与第 {first} 行重复")]
            number = row.values.get("number")
            if number and numbers.setdefault(number, line) != line:
                errors = [(line, converter._col("number"),
                           f"工单编号与第 {numbers[number]} 行重复")]  # fmt: skip
        if errors:
            report.errors += errors
        elif row is not None:
            report.valid.append(row)
        if progress and report.rows % 1000 == 0:
            progress(report.rows)
    if progress:
        progress(report.rows)
    _check_numbers(report, source or mapping.source, converter, db_session)
    return report


def _check_numbers(report: Report, source: str, conv: Converter, db_session: Session) -> None:
    """A mapped ticket number must not belong to an order this source did not make."""
    wanted = {r.values["number"]: r for r in report.valid if r.values.get("number")}
    if not wanted:
        return
    mine = set(db_session.scalars(
        select(Ticket.number).join(ImportedOrder, ImportedOrder.ticket_id == Ticket.id)
        .where(ImportedOrder.source == source)
    ))  # fmt: skip
    taken: set[str] = set()
    numbers = list(wanted)
    for start in range(0, len(numbers), 5000):
        chunk = numbers[start : start + 5000]
        taken.update(db_session.scalars(select(Ticket.number).where(Ticket.number.in_(chunk))))
    bad = {wanted[n].line for n in taken - mine}
    if bad:
        report.errors += [
            (line, conv._col("number"), "工单编号已被其他工单使用") for line in sorted(bad)
        ]
        report.valid = [r for r in report.valid if r.line not in bad]


# ---- writing ----------------------------------------------------------------------------------


@dataclass
class _City:
    built: timeline.City
    catalogue: Any
    codes: dict[int, str]
    categories: dict[int, Category]
    tiers: dict[tuple[int | None, str | None], str | None]


def _city(db_session: Session) -> _City:
    units = list(db_session.scalars(select(Unit).where(Unit.active)))
    refs = {u.id: timeline.UnitRef(u.id, u.code, u.kind, u.parent_id) for u in units}
    centre = next((u for u in units if u.function == "service_centre"), None)
    if centre is None:
        raise ValueError("城市没有热线中心单位 / the city has no service centre unit")
    settings = pack_settings(db_session=db_session)
    clocks = city_clocks(db_session=db_session)
    tz = city_tz()
    limits = {
        name: Duration.parse(phases["complete"])
        for name, phases in (settings.get("tiers") or {}).items()
        if "complete" in phases
    }
    memo: dict[tuple[date, str], tuple[datetime, datetime]] = {}

    def due(start: datetime, tier: str | None) -> datetime | None:
        limit = limits.get(tier or "")
        if limit is None:
            return None
        if limit.unit == "wd":  # within one working day the due moves with its start
            day = start.astimezone(tz).date()
            if clocks.calendar.is_workday(day):
                anchor = memo.get((day, tier or ""))
                if anchor is None:
                    anchored = clocks.due(start, limit)
                    if anchored is None:
                        return None
                    anchor = memo[(day, tier or "")] = (start, anchored)
                return anchor[1] + (start - anchor[0])
        return clocks.due(start, limit)

    built = timeline.City(
        centre_id=centre.id, units=refs, escalation_unit=settings.get("escalation_unit"),
        unit_by_code={u.code: u.id for u in units}, due=due,
    )  # fmt: skip
    categories = {c.id: c for c in db_session.scalars(select(Category))}
    return _City(built, load_catalogue(db_session=db_session), {u.id: u.code for u in units},
                 categories, {})  # fmt: skip


def lead_of(values: Mapping[str, Any], city: _City) -> int:
    """The lead: the mapped unit, else the dispatch catalogue's, else the street, the district."""
    if values.get("lead"):
        return int(values["lead"])
    category = city.categories.get(values.get("category") or -1)
    district, street = values.get("district"), values.get("street")
    if category is not None:
        route = city.catalogue.route(category.code, city.codes.get(district or -1),
                                     city.codes.get(street or -1))  # fmt: skip
        if route is not None and route.unit in city.built.unit_by_code:
            return city.built.unit_by_code[route.unit]
    return int(street or district or 0)


def _tier(values: Mapping[str, Any], city: _City, db_session: Session) -> str | None:
    key = (values.get("category"), values.get("request_type"))
    if key not in city.tiers:
        category = city.categories.get(key[0] or -1)
        city.tiers[key] = tier_for(category, key[1], db_session=db_session)
    return city.tiers[key]


def _ids(session: Session, table: str, n: int) -> list[int]:
    """`n` fresh ids for `table` (PostgreSQL: from its sequence; SQLite: past the largest, under
    the write lock the transaction holds)."""
    if n == 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return list(session.execute(
            text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                 "FROM generate_series(1, :n)"), {"n": n},
        ).scalars())  # fmt: skip
    start = int(session.execute(text(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar_one())
    return list(range(start + 1, start + n + 1))


def commit(
    report: Report, mapping: Mapping_, *, db_session: Session, source: str | None = None,
    now: datetime | None = None, progress: Progress | None = None,
) -> Report:  # fmt: skip
    """Write the valid rows of a checked file in the caller's transaction (see the module)."""
    now = now or utcnow()
    source = source or mapping.source
    existing = {
        ext: (oid, tid, row_hash, tl_hash)
        for oid, ext, tid, row_hash, tl_hash in db_session.execute(
            select(ImportedOrder.id, ImportedOrder.external_id, ImportedOrder.ticket_id,
                   ImportedOrder.row_hash, ImportedOrder.timeline_hash)
            .where(ImportedOrder.source == source)
        )
    }  # fmt: skip
    new: list[Row] = []
    changed: list[tuple[Row, tuple[int, int, str, str]]] = []
    for row in report.valid:
        seen = existing.get(row.external_id)
        if seen is None:
            new.append(row)
        elif seen[2] == row.row_hash:
            report.unchanged += 1
        else:
            changed.append((row, seen))
    db_session.flush()
    if new:
        _write_new(new, mapping, source, db_session, now, progress)
    report.created = len(new)
    for row, seen in changed:
        _update(row, seen, source, report, db_session, now)
    report.updated = len(changed)
    report.committed = True
    return report


def _numbers(rows: list[Row], tz: ZoneInfo, db_session: Session) -> list[str]:
    """The file's numbers, or the next of each order's own day (the day counters moved on)."""
    days: dict[str, list[int]] = defaultdict(list)
    out: list[str] = [""] * len(rows)
    for i, row in enumerate(rows):
        if row.values.get("number"):
            out[i] = row.values["number"]
        else:
            days[f"{row.values['created_at'].astimezone(tz):%Y%m%d}"].append(i)
    if not days:
        return out
    last = dict(db_session.execute(
        select(TicketCounter.day, TicketCounter.last).where(TicketCounter.day.in_(list(days)))
    ).all())  # fmt: skip
    bumps = []
    for day, indexes in days.items():
        seq = last.get(day, 0)
        the_day = date(int(day[:4]), int(day[4:6]), int(day[6:]))
        for i in indexes:
            seq += 1
            out[i] = format_number(the_day, seq)
        bumps.append({"day": day, "last": seq})
    dialect_insert = sqlite_insert if _sqlite(db_session) else pg_insert
    stmt = dialect_insert(TicketCounter)
    biggest = func.max if _sqlite(db_session) else func.greatest
    stmt = stmt.on_conflict_do_update(
        index_elements=[TicketCounter.day],
        set_={"last": biggest(TicketCounter.last, stmt.excluded.last)},
    )
    db_session.execute(stmt, bumps)
    return out


def _sqlite(db_session: Session) -> bool:
    return db_session.get_bind().dialect.name == "sqlite"


TICKET_TIMES = ("created_at", "updated_at", "closed_at", "due_at")
ASSIGNMENT_TIMES = ("dispatched_at", "accepted_at", "contacted_at", "replied_at", "ended_at")


TEXTS = frozenset({"content", "answer", "channel_advice", "external_id", "source", "channel"})


def _facts(
    tier: str | None, events: list[list[Any]], ctx: Any, memo: dict[Any, dict[int, Any]]
) -> dict[int, Any]:
    """`assessment.compute` of one timeline, once per distinct timeline: imported orders of one
    day, lead and path have the same timeline but for their texts, which no fact reads."""
    key = (tier, *((e[3], e[4], e[6], orjson.dumps({k: v for k, v in e[10].items()
                                                     if k not in TEXTS},
                                                    option=orjson.OPT_SORT_KEYS))
                   for e in events))  # fmt: skip
    found = memo.get(key)
    if found is None:
        steps = ((e[3], e[4], e[6], e[10]) for e in events)
        found = memo[key] = assessment.compute(tier, steps, ctx)
    return found


PARALLEL_FROM = 5_000  # rows: fewer are worked out here (starting workers costs more)
_forked: tuple[list[timeline.Built], Any] | None = None  # what forked workers inherit


def _facts_of(bounds: tuple[int, int]) -> list[dict[int, Any]]:
    assert _forked is not None, "not a forked worker"
    built, ctx = _forked
    memo: dict[Any, dict[int, Any]] = {}
    return [_facts(b.ticket["tier"], b.events, ctx, memo) for b in built[bounds[0] : bounds[1]]]


def _all_facts(built: list[timeline.Built], ctx: Any) -> list[dict[int, Any]]:
    """Every order's facts, in order: in forked worker processes (one per core, up to 8) for a
    big file, since the assessment's facts are most of an import's work (docs/benchmarks.md).
    The workers only compute: they inherit the timelines and never touch the database."""
    global _forked
    n, workers = len(built), min(os.cpu_count() or 1, 8)
    if n < PARALLEL_FROM or workers < 2 or "fork" not in mp.get_all_start_methods():
        memo: dict[Any, dict[int, Any]] = {}
        return [_facts(b.ticket["tier"], b.events, ctx, memo) for b in built]
    step = -(-n // (workers * 4))
    _forked = (built, ctx)
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_facts_of, [(i, min(i + step, n)) for i in range(0, n, step)])
    finally:
        _forked = None
    return [facts for part in parts for facts in part]


def _write_new(
    rows: list[Row], mapping: Mapping_, source: str, db_session: Session, now: datetime,
    progress: Progress | None,
) -> None:  # fmt: skip
    tz = city_tz()
    city = _city(db_session)
    ctx = assessment.context(db_session=db_session)
    numbers = _numbers(rows, tz, db_session)
    built = []
    for row, number in zip(rows, numbers, strict=True):
        lead = lead_of(row.values, city)
        tier = _tier(row.values, city, db_session)
        built.append(timeline.build(row.values, lead, number, tier, city.built, source=source,
                                    external_id=row.external_id))  # fmt: skip
    ticket_ids = _ids(db_session, "ticket", len(built))
    assignment_ids = _ids(db_session, "assignment", sum(len(b.assignments) for b in built))
    event_ids = _ids(db_session, "event", sum(len(b.events) for b in built))
    order_ids = _ids(db_session, "imported_order", len(built))
    stamp: Callable[[datetime], Any] = sqlite_stamp if _sqlite(db_session) else (lambda t: t)
    tickets, assignments, events, orders = [], [], [], []
    fact_rows, intake_rows = [], []
    rollup: dict[tuple[int, date], dict[str, int]] = defaultdict(dict)
    intake: dict[tuple[date, int, str], int] = defaultdict(int)
    a_ids, e_ids = iter(assignment_ids), iter(event_ids)
    now_stamp = stamp(now.astimezone(UTC))
    started = time.perf_counter()
    for b, tid, facts in zip(built, ticket_ids, _all_facts(built, ctx), strict=True):
        t = b.ticket
        # the assessment's facts, from the timeline as the live path would have left them
        for unit_id, (day, counters, due) in facts.items():
            fact_rows.append({"ticket_id": tid, "unit_id": unit_id, "day": day,
                              "contact_due": due}
                             | {c: counters.get(c, 0) for c in assessment.COUNTER_COLUMNS})  # fmt: skip
            add(rollup[(unit_id, day)], counters)
        street = ctx.units.by_id.get(t["street_id"]) if t["street_id"] else None
        category = ctx.categories.get(t["category_id"]) if t["category_id"] else None
        day = t["created_at"].astimezone(ctx.tz).date()
        keys = assessment.intake_keys(street=street.code if street else None, category=category,
                                      channel=t["channel"], request_type=t["request_type"])  # fmt: skip
        intake_rows.append({"ticket_id": tid, "day": day, "district_id": t["district_id"] or 0,
                            "keys": keys})  # fmt: skip
        for key in keys:
            intake[(day, t["district_id"] or 0, key)] += 1
    facts_seconds = time.perf_counter() - started
    for b, tid, oid, row in zip(built, ticket_ids, order_ids, rows, strict=True):
        t = b.ticket
        # the rows, stamped for the bulk writer
        t["id"] = tid
        for key in TICKET_TIMES:
            if t[key] is not None:
                t[key] = stamp(t[key])
        tickets.append(t)
        for a in b.assignments:
            a["id"], a["ticket_id"] = next(a_ids), tid
            for key in ASSIGNMENT_TIMES:
                if a[key] is not None:
                    a[key] = stamp(a[key])
            assignments.append(a)
        for e in b.events:
            e[0], e[1], e[4] = next(e_ids), tid, stamp(e[4])
            e[10] = orjson.dumps(e[10]).decode()
            events.append(e)
        orders.append([oid, source, row.external_id, tid, row.row_hash, row.timeline_hash,
                       now_stamp, now_stamp])  # fmt: skip
    writer = Writer(db_session.connection())
    writer.write(Ticket.__table__, tickets)  # type: ignore[arg-type]
    if progress:
        progress(len(rows) // 3)
    writer.write(Assignment.__table__, assignments)  # type: ignore[arg-type]
    writer.write(Event.__table__, events)  # type: ignore[arg-type]
    writer.write(ImportedOrder.__table__, orders)  # type: ignore[arg-type]
    if progress:
        progress(2 * len(rows) // 3)
    started = time.perf_counter()
    for f in fact_rows:
        if f["contact_due"] is not None:
            f["contact_due"] = stamp(f["contact_due"])
        if _sqlite(db_session):
            f["day"] = f["day"].isoformat()
    for r in intake_rows:
        r["keys"] = orjson.dumps(r["keys"]).decode()
        if _sqlite(db_session):
            r["day"] = r["day"].isoformat()
    writer.write(MetricFact.__table__, fact_rows)  # type: ignore[arg-type]
    writer.write(IntakeFact.__table__, intake_rows)  # type: ignore[arg-type]
    # the rollups: the live path's upserts (add to what is there), many rows a statement
    sql = assessment._prepared(db_session)
    conn = db_session.connection()
    columns = assessment.COUNTER_COLUMNS
    bumps = [{"unit_id": unit_id, "day": day} | {c: counters.get(c, 0) for c in columns}
             for (unit_id, day), counters in rollup.items() if any(counters.values())]  # fmt: skip
    if bumps:  # executemany of the one cached statement (compiling a VALUES list is slower)
        conn.execute(sql.bump, bumps)
    counts = [{"day": day, "district_id": district, "dim": key.partition(":")[0],
               "key": key.partition(":")[2], "n": n}
              for (day, district, key), n in intake.items()]  # fmt: skip
    if counts:
        conn.execute(sql.bump_intake, counts)
    LAST_TIMINGS["facts"] = facts_seconds + time.perf_counter() - started
    if progress:
        progress(len(rows))


FIELD_NAMES = {"title": "标题", "content": "内容", "request_type": "诉求类型", "channel": "渠道",
               "district": "区县", "street": "街乡镇", "address": "地址",
               "requester_name": "诉求人姓名", "requester_phone": "诉求人电话"}  # fmt: skip
COLUMN_OF = {"district": "district_id", "street": "street_id"}


def _update(row: Row, seen: tuple[int, int, str, str], source: str, report: Report,
            db_session: Session, now: datetime) -> None:  # fmt: skip
    """A changed row: the order's descriptive columns follow the file, with an event saying so;
    a changed timeline is reported (events are append-only), never rewritten."""
    order_id, ticket_id, _, timeline_hash = seen
    ticket = db_session.get(Ticket, ticket_id)
    assert ticket is not None
    changed = []
    for name in DESCRIPTIVE:
        value = row.values.get(name)
        if name == "channel":
            value = value or "import"
        column = COLUMN_OF.get(name, name)
        if getattr(ticket, column) != value:
            setattr(ticket, column, value)
            changed.append(name)
    if changed:
        centre = db_session.scalar(select(Unit.id).where(Unit.function == "service_centre"))
        last = db_session.scalar(select(func.max(Event.seq)).where(Event.ticket_id == ticket_id))
        db_session.add(Event(
            ticket_id=ticket_id, seq=(last or 0) + 1, action="import_update", at=now,
            actor_id=None, actor_unit_id=centre, state_before=ticket.status,
            state_after=ticket.status,
            note="重新导入，更新了" + "、".join(FIELD_NAMES[n] for n in changed),
            data={"source": source, "external_id": row.external_id, "changed": changed},
        ))  # fmt: skip
        ticket.updated_at = now
        db_session.flush()
        assessment.refresh_intake(ticket, db_session=db_session)
    if row.timeline_hash != timeline_hash:
        report.warnings.append((row.line, "", f"工单 {ticket.number} 的办理过程与上次导入不同："
                                "时间线只增不改，未改写（只更新了描述字段）"))  # fmt: skip
    order = db_session.get(ImportedOrder, order_id)
    assert order is not None
    order.row_hash, order.updated_at = row.row_hash, now
    db_session.flush()
