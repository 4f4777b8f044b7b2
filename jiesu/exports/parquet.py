"""`jiesu export parquet OUT`: the city's assessment facts and anonymised orders as Parquet, for
the province's analysis (docs/province.md; the job in `jiesu/province/spark_job.py`).

What is written, under OUT (Hive partitioning, so Spark, DuckDB and pyarrow read the city and
the month from the path):

- `facts/city=<code>/month=<YYYY-MM>/part-00000.parquet`: one row per (order, unit) fact, the
  counters `assessment/facts.py` computes, exactly the rows jiesu sums for its figures: the
  month's published copy (`frozen_fact`) when the month is frozen, else the live facts with the
  two clock-dependent counts (`contact_pending`, `overdue_open`) taken at `as_of` (the export's
  moment) the way `assessment/service.live_totals` takes them.
- `orders/city=…/month=…/part-00000.parquet`: one row per order received that month (city time):
  codes, UTC timestamps, durations, the rating. Never the requester's name, phone or address, nor
  the coordinates; the title and content only with `with_text`, phones masked
  (`notices.sms.mask_text`) and the requester's own name and phone starred.
- `units/city=…/units.parquet`, `categories/city=…/categories.parquet`: the reference tables
  (retired units included: old facts name them).
- `rules/city=…/rules.parquet`: per exported month the rules its figures are read with (the
  satisfaction scores, the weights per unit kind, the small-sample threshold, the task-force
  sizes): a frozen month's as published, the others' as the pack now stands.

Every file carries `schema_version`, its table, the city and `as_of` in its Parquet metadata.
The rows stream: one server-side cursor per month (`yield_per`), `batch_size` rows per record
batch, one `ParquetWriter` open at a time; memory grows with the batch, not the history.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jiesu.access.policy import mask_name, mask_phone
from jiesu.assessment import service as A
from jiesu.assessment.facts import COUNTERS
from jiesu.assessment.models import FrozenFact, MetricFact, MonthFreeze
from jiesu.db.base import utcnow
from jiesu.notices.sms import mask_text
from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.taxonomy.models import Category
from jiesu.taxonomy.service import pack_settings
from jiesu.tickets.models import Assignment, Ticket

SCHEMA_VERSION = "1"
BATCH = 10_000  # rows per record batch (and per Parquet row group): ~200 MB peak, measured
RULE_KEYS = A.RULE_KEYS  # satisfaction_scores, weights, small_sample, task_force

_UTC_TS = pa.timestamp("us", tz="UTC")

FACT_SCHEMA = pa.schema(
    [
        pa.field("ticket_id", pa.int64(), nullable=False),
        pa.field("number", pa.string()),
        pa.field("unit_code", pa.string(), nullable=False),
        pa.field("unit_name", pa.string()),
        pa.field("unit_kind", pa.string()),
        pa.field("unit_function", pa.string()),
        pa.field("parent_code", pa.string()),
        pa.field("district_code", pa.string()),
        pa.field("unit_active", pa.bool_()),
        pa.field("is_centre", pa.bool_(), nullable=False),
        pa.field("day", pa.date32(), nullable=False),
        pa.field("basis", pa.string(), nullable=False),
        pa.field("contact_due", _UTC_TS),
        pa.field("contact_pending", pa.int32(), nullable=False),
        pa.field("overdue_open", pa.int32(), nullable=False),
        *(pa.field(c, pa.int64() if c == "handling_seconds" else pa.int32(), nullable=False)
          for c in COUNTERS),
    ]
)  # fmt: skip

ORDER_SCHEMA = pa.schema(
    [
        pa.field("ticket_id", pa.int64(), nullable=False),
        pa.field("number", pa.string(), nullable=False),
        pa.field("created_at", _UTC_TS, nullable=False),
        pa.field("closed_at", _UTC_TS),
        pa.field("due_at", _UTC_TS),
        pa.field("first_contact_at", _UTC_TS),
        pa.field("respond_seconds", pa.int64()),
        pa.field("close_seconds", pa.int64()),
        pa.field("channel", pa.string()),
        pa.field("request_type", pa.string()),
        pa.field("category_code", pa.string()),
        pa.field("category_path", pa.string()),
        pa.field("district_code", pa.string()),
        pa.field("street_code", pa.string()),
        pa.field("lead_unit_code", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("tier", pa.string()),
        pa.field("urgent", pa.bool_()),
        pa.field("round", pa.int32()),
        pa.field("result", pa.string()),
        pa.field("solved", pa.bool_()),
        pa.field("satisfaction", pa.string()),
        pa.field("master_id", pa.int64()),
    ]
)
TEXT_FIELDS = [pa.field("title", pa.string()), pa.field("content", pa.string())]

UNIT_SCHEMA = pa.schema(
    [
        pa.field("code", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("function", pa.string()),
        pa.field("parent_code", pa.string()),
        pa.field("district_code", pa.string()),
        pa.field("path", pa.string()),
        pa.field("active", pa.bool_()),
        pa.field("is_centre", pa.bool_()),
    ]
)
CATEGORY_SCHEMA = pa.schema(
    [
        pa.field("code", pa.string(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("parent_code", pa.string()),
        pa.field("top_code", pa.string()),
        pa.field("level", pa.int32()),
        pa.field("full_name", pa.string()),
        pa.field("active", pa.bool_()),
    ]
)
RULE_SCHEMA = pa.schema(
    [
        pa.field("month", pa.string(), nullable=False),
        pa.field("basis", pa.string(), nullable=False),
        pa.field("frozen_at", _UTC_TS),
        pa.field("timezone", pa.string()),
        pa.field("satisfaction_scores", pa.string()),  # JSON {level: score}
        pa.field("weights", pa.string()),  # JSON {kind | default: {response, resolution, …}}
        pa.field("small_sample", pa.int32()),
        pa.field("task_force", pa.string()),  # JSON {kind: n}
    ]
)


@dataclass
class Stats:
    """What one export wrote."""

    city: str
    as_of: datetime
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0
    months: list[str] = field(default_factory=list)


def _meta(schema: pa.Schema, table: str, city: str, as_of: datetime) -> pa.Schema:
    return schema.with_metadata({
        "schema_version": SCHEMA_VERSION, "table": table, "city": city,
        "as_of": as_of.astimezone(UTC).isoformat(), "producer": "jiesu export parquet",
    })  # fmt: skip


def _months(first: date, last: date) -> list[str]:
    out, (y, m) = [], (first.year, first.month)
    while (y, m) <= (last.year, last.month):
        out.append(f"{y}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _utc(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class _Partition:
    """One partition's file, written batch by batch; replaced whole on a re-export."""

    def __init__(self, directory: Path, schema: pa.Schema, name: str = "part-00000.parquet"):
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        self.schema = schema
        self.writer = pq.ParquetWriter(directory / name, schema, compression="zstd")
        self.rows = 0

    def write(self, columns: Mapping[str, list[Any]]) -> None:
        n = len(next(iter(columns.values()))) if columns else 0
        if n:
            self.writer.write_batch(pa.record_batch(
                [pa.array(columns[f.name], type=f.type) for f in self.schema],
                schema=self.schema))  # fmt: skip
            self.rows += n

    def close(self) -> None:
        self.writer.close()


def _columns(schema: pa.Schema) -> dict[str, list[Any]]:
    return {f.name: [] for f in schema}


def month_bounds_utc(period: str) -> tuple[datetime, datetime]:
    """The month's first and next month's first instant, city time, in UTC."""
    start, end = A.month_bounds(period)
    tz = city_tz()
    return (datetime.combine(start, time(), tz).astimezone(UTC),
            datetime.combine(end + timedelta(days=1), time(), tz).astimezone(UTC))  # fmt: skip


# ---- the export --------------------------------------------------------------------------------


def export(
    out: Path, *, db_session: Session, first: str | None = None, last: str | None = None,
    city: str | None = None, with_text: bool = False, now: datetime | None = None,
    batch_size: int = BATCH,
) -> Stats:  # fmt: skip
    """Write the city's facts, orders, units, categories and rules under `out` for the months
    `first` … `last` (YYYY-MM, inclusive; all months with data by default)."""
    as_of = _utc(now) or utcnow()
    settings = pack_settings(db_session=db_session)
    code = city or str(settings.get("code") or "")
    if not code:
        raise ValueError("no city code: load a city pack or pass --city")
    stats = Stats(code, as_of)
    units = A.unit_index(db_session=db_session)
    lo, hi = db_session.execute(select(func.min(MetricFact.day), func.max(MetricFact.day))).one()
    flo, fhi = db_session.execute(select(func.min(FrozenFact.day), func.max(FrozenFact.day))).one()
    tlo, thi = db_session.execute(select(func.min(Ticket.created_at),
                                         func.max(Ticket.created_at))).one()  # fmt: skip
    tz = city_tz()
    days = [d for d in (lo, hi, flo, fhi) if d is not None]
    days += [_utc(t).astimezone(tz).date() for t in (tlo, thi) if t is not None]  # type: ignore[union-attr]
    months = _months(min(days), max(days)) if days else []
    months = [m for m in months if (first is None or m >= first) and (last is None or m <= last)]
    frozen = {
        f.period: f
        for f in db_session.scalars(select(MonthFreeze).where(MonthFreeze.period.in_(months)))
    }
    for period in months:
        n = _facts(out, code, period, frozen.get(period), units, db_session, as_of, batch_size)
        m = _orders(out, code, period, with_text, db_session, as_of, batch_size)
        stats.rows["facts"] = stats.rows.get("facts", 0) + n
        stats.rows["orders"] = stats.rows.get("orders", 0) + m
        stats.files += int(n > 0) + int(m > 0)
        if n or m:
            stats.months.append(period)
    stats.rows["units"] = _units(out, code, units, as_of)
    stats.rows["categories"] = _categories(out, code, db_session, as_of)
    stats.rows["rules"] = _rules(out, code, stats.months, frozen, settings, as_of)
    stats.files += 3
    return stats


def _facts(
    out: Path, city: str, period: str, frozen: MonthFreeze | None, units: A.UnitIndex,
    db_session: Session, as_of: datetime, batch_size: int,
) -> int:  # fmt: skip
    start, end = A.month_bounds(period)
    if frozen is not None:
        t = FrozenFact.__table__
        stmt = (
            select(t.c.ticket_id, Ticket.number, t.c.unit_id, t.c.day, t.c.contact_pending,
                   t.c.overdue_open, *[t.c[c] for c in COUNTERS])
            .join(Ticket, Ticket.id == t.c.ticket_id)
            .where(t.c.period == period)
            .order_by(t.c.day, t.c.ticket_id, t.c.unit_id)
        )  # fmt: skip
    else:
        t = MetricFact.__table__
        stmt = (
            select(t.c.ticket_id, Ticket.number, t.c.unit_id, t.c.day, t.c.contact_due,
                   Ticket.status, Ticket.due_at, Ticket.lead_unit_id, *[t.c[c] for c in COUNTERS])
            .join(Ticket, Ticket.id == t.c.ticket_id)
            .where(t.c.day.between(start, end))
            .order_by(t.c.day, t.c.ticket_id, t.c.unit_id)
        )  # fmt: skip
    schema = _meta(FACT_SCHEMA, "facts", city, as_of)
    part: _Partition | None = None
    centre = units.centre.id if units.centre is not None else None
    result = db_session.execute(stmt.execution_options(yield_per=batch_size))
    for rows in result.partitions(batch_size):
        cols = _columns(schema)
        for r in rows:
            m = r._mapping
            unit = units.by_id.get(int(m["unit_id"]))
            district = units.district_of(unit) if unit is not None else None
            parent = units.by_id.get(unit.parent_id) if unit and unit.parent_id else None
            if frozen is not None:
                contact_due, pending, overdue = None, int(m["contact_pending"]), int(
                    m["overdue_open"])  # fmt: skip
            else:
                contact_due = _utc(m["contact_due"])
                counted = bool(m["counted"])
                pending = int(counted and contact_due is not None and contact_due > as_of)
                due = _utc(m["due_at"])
                overdue = int(
                    counted and not m["replied"] and m["status"] in A.OPEN
                    and due is not None and due < as_of and m["lead_unit_id"] == m["unit_id"]
                )  # fmt: skip
            cols["ticket_id"].append(int(m["ticket_id"]))
            cols["number"].append(m["number"])
            cols["unit_code"].append(unit.code if unit else f"#{m['unit_id']}")
            cols["unit_name"].append(unit.name if unit else None)
            cols["unit_kind"].append(unit.kind if unit else None)
            cols["unit_function"].append(unit.function if unit else None)
            cols["parent_code"].append(parent.code if parent else None)
            cols["district_code"].append(district.code if district else None)
            cols["unit_active"].append(unit.active if unit else None)
            cols["is_centre"].append(m["unit_id"] == centre)
            cols["day"].append(m["day"])
            cols["basis"].append("frozen" if frozen is not None else "live")
            cols["contact_due"].append(contact_due)
            cols["contact_pending"].append(pending)
            cols["overdue_open"].append(overdue)
            for c in COUNTERS:
                cols[c].append(int(m[c] or 0))
        if part is None:
            part = _Partition(out / "facts" / f"city={city}" / f"month={period}", schema)
        part.write(cols)
    if part is None:
        return 0
    part.close()
    return part.rows


def _first_contacts(start: datetime, end: datetime) -> Any:
    return (
        select(Assignment.ticket_id, func.min(Assignment.contacted_at).label("first_contact"))
        .join(Ticket, Ticket.id == Assignment.ticket_id)
        .where(Ticket.created_at >= start, Ticket.created_at < end)
        .group_by(Assignment.ticket_id)
        .subquery()
    )


def _orders(
    out: Path, city: str, period: str, with_text: bool, db_session: Session, as_of: datetime,
    batch_size: int,
) -> int:  # fmt: skip
    start, end = month_bounds_utc(period)
    contacts = _first_contacts(start, end)
    unit_codes = dict(db_session.execute(select(Unit.id, Unit.code)).all())
    cats = {
        i: (c, n)
        for i, c, n in db_session.execute(select(Category.id, Category.code, Category.full_name))
    }
    cols_sql = [
        Ticket.id, Ticket.number, Ticket.created_at, Ticket.closed_at, Ticket.due_at,
        contacts.c.first_contact, Ticket.channel, Ticket.request_type, Ticket.category_id,
        Ticket.district_id, Ticket.street_id, Ticket.lead_unit_id, Ticket.status, Ticket.tier,
        Ticket.urgent, Ticket.round, Ticket.result, Ticket.solved, Ticket.satisfaction,
        Ticket.master_id,
    ]  # fmt: skip
    if with_text:
        cols_sql += [Ticket.title, Ticket.content, Ticket.requester_name, Ticket.requester_phone]
    stmt = (
        select(*cols_sql)
        .outerjoin(contacts, contacts.c.ticket_id == Ticket.id)
        .where(Ticket.created_at >= start, Ticket.created_at < end)
        .order_by(Ticket.id)
    )
    base = ORDER_SCHEMA
    if with_text:
        for f in TEXT_FIELDS:
            base = base.append(f)
    schema = _meta(base, "orders", city, as_of)
    part: _Partition | None = None
    result = db_session.execute(stmt.execution_options(yield_per=batch_size))
    for rows in result.partitions(batch_size):
        cols = _columns(schema)
        for r in rows:
            created, closed = _utc(r.created_at), _utc(r.closed_at)
            contact = _utc(r.first_contact)
            cat = cats.get(r.category_id) if r.category_id is not None else None
            cols["ticket_id"].append(int(r.id))
            cols["number"].append(r.number)
            cols["created_at"].append(created)
            cols["closed_at"].append(closed)
            cols["due_at"].append(_utc(r.due_at))
            cols["first_contact_at"].append(contact)
            cols["respond_seconds"].append(
                int((contact - created).total_seconds()) if contact and created else None
            )
            cols["close_seconds"].append(
                int((closed - created).total_seconds()) if closed and created else None
            )
            cols["channel"].append(r.channel)
            cols["request_type"].append(r.request_type)
            cols["category_code"].append(cat[0] if cat else None)
            cols["category_path"].append(cat[1] if cat else None)
            cols["district_code"].append(unit_codes.get(r.district_id))
            cols["street_code"].append(unit_codes.get(r.street_id))
            cols["lead_unit_code"].append(unit_codes.get(r.lead_unit_id))
            cols["status"].append(r.status)
            cols["tier"].append(r.tier)
            cols["urgent"].append(bool(r.urgent))
            cols["round"].append(r.round)
            cols["result"].append(r.result)
            cols["solved"].append(r.solved)
            cols["satisfaction"].append(r.satisfaction)
            cols["master_id"].append(r.master_id)
            if with_text:
                cols["title"].append(scrub(r.title, r.requester_name, r.requester_phone))
                cols["content"].append(scrub(r.content, r.requester_name, r.requester_phone))
        if part is None:
            part = _Partition(out / "orders" / f"city={city}" / f"month={period}", schema)
        part.write(cols)
    if part is None:
        return 0
    part.close()
    return part.rows


def scrub(text: str | None, name: str | None, phone: str | None) -> str | None:
    """A text fit to leave the city: phone-like digit runs masked (`mask_text`), the requester's
    own phone and name starred wherever they appear (a name is not recognised in general)."""
    if text is None:
        return None
    if phone:
        digits = "".join(ch for ch in phone if ch.isdigit())
        if len(digits) >= 5:
            text = text.replace(phone, mask_phone(phone) or "").replace(
                digits, mask_phone(digits) or ""
            )
    text = mask_text(text)
    if name and len(name) >= 2:
        text = text.replace(name, mask_name(name) or "")
    return text


def _single(out: Path, table: str, city: str, schema: pa.Schema, rows: Sequence[dict[str, Any]],
            as_of: datetime) -> int:  # fmt: skip
    directory = out / table / f"city={city}"
    part = _Partition(directory, _meta(schema, table, city, as_of), f"{table}.parquet")
    cols = _columns(schema)
    for row in rows:
        for f in schema:
            cols[f.name].append(row.get(f.name))
    if rows:
        part.write(cols)
    part.close()
    return len(rows)


def _units(out: Path, city: str, units: A.UnitIndex, as_of: datetime) -> int:
    rows = []
    for u in sorted(units.by_id.values(), key=lambda u: u.code):
        parent = units.by_id.get(u.parent_id) if u.parent_id else None
        district = units.district_of(u)
        codes = [units.by_id[int(p)].code for p in u.path.strip("/").split("/")
                 if p and int(p) in units.by_id]  # fmt: skip
        rows.append({
            "code": u.code, "name": u.name, "kind": u.kind, "function": u.function,
            "parent_code": parent.code if parent else None,
            "district_code": district.code if district else None,
            "path": "/" + "/".join(codes) + "/", "active": u.active,
            "is_centre": units.centre is not None and u.id == units.centre.id,
        })  # fmt: skip
    return _single(out, "units", city, UNIT_SCHEMA, rows, as_of)


def _categories(out: Path, city: str, db_session: Session, as_of: datetime) -> int:
    index = A.category_index(db_session=db_session)
    rows = []
    codes = dict(db_session.execute(select(Category.id, Category.code)).all())
    found = db_session.execute(select(Category.id, Category.code, Category.name,
                                      Category.parent_id, Category.level, Category.full_name,
                                      Category.active).order_by(Category.code)).all()  # fmt: skip
    for i, code, name, parent, level, full, active in found:
        rows.append({"code": code, "name": name, "parent_code": codes.get(parent) if parent else None,
                     "top_code": index[i].top if i in index else None, "level": level,
                     "full_name": full, "active": active})  # fmt: skip
    return _single(out, "categories", city, CATEGORY_SCHEMA, rows, as_of)


def _rules(out: Path, city: str, months: Sequence[str], frozen: Mapping[str, MonthFreeze],
           settings: Mapping[str, Any], as_of: datetime) -> int:  # fmt: skip
    rows = []
    for period in months:
        f = frozen.get(period)
        rules = {**settings, **((f.settings or {}) if f is not None else {})}
        rows.append({
            "month": period, "basis": "frozen" if f is not None else "live",
            "frozen_at": _utc(f.frozen_at) if f is not None else None,
            "timezone": str(city_tz()),
            "satisfaction_scores": json.dumps(rules.get("satisfaction_scores") or {},
                                              ensure_ascii=False, sort_keys=True),
            "weights": json.dumps(rules.get("weights") or {}, ensure_ascii=False,
                                  sort_keys=True),
            "small_sample": int(rules.get("small_sample", 30)),
            "task_force": json.dumps(rules.get("task_force") or {}, sort_keys=True),
        })  # fmt: skip
    return _single(out, "rules", city, RULE_SCHEMA, rows, as_of)


def month_arg(value: str | None) -> str | None:
    """'2026-10' checked, or None."""
    if value is None:
        return None
    datetime.strptime(value, "%Y-%m")
    return value


def iter_files(out: Path) -> Iterator[Path]:
    yield from sorted(out.rglob("*.parquet"))
