"""Keeping the assessment's facts and rollups, and reading the rates, rankings and drill-downs.

Write side: `refresh(ticket)` runs in the transaction of every action (`tickets/actions.py`) and
intake (`tickets/service.create_ticket`, `intel/service`): it recomputes the order's facts from
its timeline (`facts.py`), compares them with the stored ones and applies only the difference to
the rollups (one upsert per unit and day touched). `refresh_intake(ticket)` does the same for the
intake counts. `rebuild()` recomputes everything from the events; the result must equal what the
actions maintained.

Read side: `unit_totals` sums the rollups per unit over a period; `rankings` ranks a kind of unit
for a month against the month before; `scope_rates` gives the rates of a district (everything
under it) or the city; `drill` lists the orders behind a figure.
"""

from __future__ import annotations

import calendar as pycalendar
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from jiesu.assessment import facts as F
from jiesu.assessment.models import IntakeFact, IntakeRollup, MetricFact, MetricRollup
from jiesu.assessment.ranking import DEFAULT_BOTTOM, Entry, Ranked, rank
from jiesu.assessment.rates import Rate, add, rates, weights_for
from jiesu.db.base import utcnow
from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.taxonomy.models import Category
from jiesu.taxonomy.service import cached, city_clocks, pack_settings
from jiesu.tickets.models import Event, Ticket
from jiesu.timelimits.deadlines import Step
from jiesu.timelimits.tiers import phase_limits

GRASSROOTS = frozenset({"street", "community", "grid"})
COUNTER_COLUMNS = F.COUNTERS


# ---- reference ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitRow:
    id: int
    code: str
    name: str
    kind: str
    path: str
    parent_id: int | None
    function: str | None
    active: bool


@dataclass(frozen=True)
class UnitIndex:
    by_id: Mapping[int, UnitRow]
    by_code: Mapping[str, UnitRow]
    centre: UnitRow | None

    def district_of(self, unit: UnitRow) -> UnitRow | None:
        """The district a unit is in (itself for a district), by its path."""
        for part in unit.path.strip("/").split("/"):
            row = self.by_id.get(int(part)) if part else None
            if row is not None and row.kind == "district":
                return row
        return None


def unit_index(*, db_session: Session) -> UnitIndex:
    """Every unit, active or not (old facts name units that may have been retired)."""

    def build() -> UnitIndex:
        rows = [
            UnitRow(*r)
            for r in db_session.execute(
                select(
                    Unit.id,
                    Unit.code,
                    Unit.name,
                    Unit.kind,
                    Unit.path,
                    Unit.parent_id,
                    Unit.function,
                    Unit.active,
                )
            )
        ]
        centre = next((r for r in rows if r.function == "service_centre" and r.active), None)
        return UnitIndex({r.id: r for r in rows}, {r.code: r for r in rows}, centre)

    return cached("assessment_units", build, db_session=db_session)


@dataclass(frozen=True)
class CategoryRow:
    id: int
    code: str
    name: str
    top: str  # the top-level category's code
    seven_haves: tuple[str, ...]
    five_qualities: tuple[str, ...]


def category_index(*, db_session: Session) -> Mapping[int, CategoryRow]:
    def build() -> dict[int, CategoryRow]:
        rows = db_session.execute(
            select(
                Category.id,
                Category.code,
                Category.name,
                Category.parent_id,
                Category.seven_haves,
                Category.five_qualities,
            )
        ).all()
        parent = {r[0]: r[3] for r in rows}
        code = {r[0]: r[1] for r in rows}
        inherited: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}

        def top(i: int) -> int:
            seen = 0
            while parent.get(i) is not None and seen < 10:
                i, seen = parent[i], seen + 1  # type: ignore[assignment]
            return i

        for r in rows:  # a sub-category without its own 七有/五性 takes its parents'
            i: int | None = r[0]
            seven: tuple[str, ...] = ()
            five: tuple[str, ...] = ()
            by_id = {x[0]: x for x in rows}
            while i is not None and not (seven and five):
                row = by_id[i]
                seven = seven or tuple(row[4] or ())
                five = five or tuple(row[5] or ())
                i = row[3]
            inherited[r[0]] = (seven, five)
        return {
            r[0]: CategoryRow(r[0], r[1], r[2], code[top(r[0])], *inherited[r[0]]) for r in rows
        }

    return cached("assessment_categories", build, db_session=db_session)


# ---- facts of one order --------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What computing facts needs, read once per transaction (or once per rebuild)."""

    units: UnitIndex
    categories: Mapping[int, CategoryRow]
    settings: Mapping[str, Any]
    clocks: Any
    tz: Any

    def limits(self, tier: str | None) -> Any:
        tier = tier or self.settings.get("default_tier")
        tiers = self.settings.get("tiers") or {}
        return phase_limits(tiers, tier) if tier in tiers else None


def context(*, db_session: Session) -> Context:
    return Context(
        unit_index(db_session=db_session),
        category_index(db_session=db_session),
        pack_settings(db_session=db_session),
        city_clocks(db_session=db_session),
        city_tz(),
    )


def compute(
    tier: str | None, events: Iterable[tuple[str, datetime, int | None, Mapping[str, Any]]],
    ctx: Context,
) -> dict[int, tuple[date, dict[str, int]]]:  # fmt: skip
    """The order's facts by unit id, from its events (action, at, acting unit id, data)."""
    if ctx.units.centre is None:
        return {}
    by_id = ctx.units.by_id
    steps = [
        Step(action, at, by_id[u].code if u is not None and u in by_id else None, data)
        for action, at, u, data in events
    ]
    order = F.Order(steps, ctx.limits(tier), ctx.units.centre.code)
    scores = ctx.settings.get("satisfaction_scores") or {}
    out: dict[int, tuple[date, dict[str, int]]] = {}
    for fact in F.order_facts(order, clocks=ctx.clocks, tz=ctx.tz, scores=scores):
        unit = ctx.units.by_code.get(fact.unit)
        if unit is not None:
            out[unit.id] = (fact.day, dict(fact.counters))
    return out


@dataclass(frozen=True)
class _Statements:
    """The write path's statements, built once per dialect: executed with parameters only, so
    an action pays for no statement construction (measured: it was most of the cost)."""

    stored: Any
    insert_fact: Any
    update_fact: Any
    delete_fact: Any
    bump: Any
    bump_intake: Any
    intake_row: Any


_statements: dict[str, _Statements] = {}


def _dialect_insert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert


def _prepared(db_session: Session) -> _Statements:
    dialect = db_session.get_bind().dialect.name
    known = _statements.get(dialect)
    if known is not None:
        return known
    fact, rollup, intake = MetricFact.__table__, MetricRollup.__table__, IntakeRollup.__table__
    this = (fact.c.ticket_id == bindparam("t")) & (fact.c.unit_id == bindparam("u"))
    bump = _dialect_insert(dialect)(rollup)
    bump = bump.on_conflict_do_update(
        index_elements=["unit_id", "day"],
        set_={c: rollup.c[c] + bump.excluded[c] for c in COUNTER_COLUMNS},
    )
    bump_intake = _dialect_insert(dialect)(intake)
    bump_intake = bump_intake.on_conflict_do_update(
        index_elements=["day", "district_id", "dim", "key"],
        set_={"n": intake.c.n + bump_intake.excluded.n},
    )
    made = _Statements(
        stored=select(fact.c.unit_id, fact.c.day, *[fact.c[c] for c in COUNTER_COLUMNS]).where(
            fact.c.ticket_id == bindparam("t")
        ),
        insert_fact=insert(fact),
        update_fact=update(fact).where(this).values(
            {"day": bindparam("d"), **{c: bindparam(f"v_{c}") for c in COUNTER_COLUMNS}}
        ),
        delete_fact=delete(fact).where(this),
        bump=bump,
        bump_intake=bump_intake,
        intake_row=select(
            IntakeFact.__table__.c.day, IntakeFact.__table__.c.district_id,
            IntakeFact.__table__.c["keys"],
        ).where(IntakeFact.__table__.c.ticket_id == bindparam("t")),
    )  # fmt: skip
    _statements[dialect] = made
    return made


def _stored(ticket_id: int, db_session: Session) -> dict[int, tuple[date, dict[str, int]]]:
    rows = db_session.connection().execute(_prepared(db_session).stored, {"t": ticket_id})
    return {
        r[0]: (r[1], {c: v for c, v in zip(COUNTER_COLUMNS, r[2:], strict=True) if v}) for r in rows
    }


def refresh(
    ticket: Ticket, *, db_session: Session, ctx: Context | None = None,
    events: Sequence[Event] | None = None,
) -> None:  # fmt: skip
    """Bring the order's facts and the rollups up to date with its timeline (call after the
    action's event is appended, in its transaction; `events` when they are not on the ticket)."""
    ctx = ctx or context(db_session=db_session)
    timeline = ticket.events if events is None else events
    new = compute(ticket.tier, ((e.action, e.at, e.actor_unit_id, e.data) for e in timeline), ctx)
    old = _stored(ticket.id, db_session)
    if new == old:
        return
    sql = _prepared(db_session)
    conn = db_session.connection()
    for unit_id in old.keys() | new.keys():
        before, after = old.get(unit_id), new.get(unit_id)
        if before == after:
            continue
        key = {"t": ticket.id, "u": unit_id}
        if after is None:
            conn.execute(sql.delete_fact, key)
        elif before is None:
            conn.execute(sql.insert_fact, {"ticket_id": ticket.id, "unit_id": unit_id,
                                           "day": after[0]}
                         | {c: after[1].get(c, 0) for c in COUNTER_COLUMNS})  # fmt: skip
        else:
            conn.execute(sql.update_fact, key | {"d": after[0]}
                         | {f"v_{c}": after[1].get(c, 0) for c in COUNTER_COLUMNS})  # fmt: skip
        if before is not None and after is not None and before[0] == after[0]:
            _bump(conn, sql, unit_id, after[0], add(dict(after[1]), before[1], -1))
        else:
            if before is not None:
                _bump(conn, sql, unit_id, before[0], add({}, before[1], -1))
            if after is not None:
                _bump(conn, sql, unit_id, after[0], after[1])


def _bump(conn: Any, sql: _Statements, unit_id: int, day: date, delta: Mapping[str, int]) -> None:
    if not any(delta.values()):
        return
    conn.execute(sql.bump, {"unit_id": unit_id, "day": day}
                 | {c: delta.get(c, 0) for c in COUNTER_COLUMNS})  # fmt: skip


# ---- intake counts ---------------------------------------------------------------------------


def intake_keys(
    *, street: str | None, category: CategoryRow | None, channel: str, request_type: str | None
) -> list[str]:
    """What one request counts for in the intake rollup (with its district and day)."""
    keys = ["all:", f"channel:{channel}", f"type:{request_type or ''}"]
    keys.append(f"street:{street or ''}")
    if category is not None:
        keys += [f"top:{category.top}", f"category:{category.code}"]
        if street:
            keys.append(f"street_top:{street}:{category.top}")
    else:
        keys.append("top:")
    return keys


def _intake_of(ticket: Ticket, ctx: Context) -> tuple[date, int, list[str]]:
    street = ctx.units.by_id.get(ticket.street_id) if ticket.street_id else None
    category = ctx.categories.get(ticket.category_id) if ticket.category_id else None
    day = ticket.created_at.astimezone(ctx.tz).date()
    keys = intake_keys(street=street.code if street else None, category=category,
                       channel=ticket.channel, request_type=ticket.request_type)  # fmt: skip
    return day, ticket.district_id or 0, keys


def refresh_intake(ticket: Ticket, *, db_session: Session, ctx: Context | None = None) -> None:
    """Count the request in (or move it between counts after a change of category or place)."""
    ctx = ctx or context(db_session=db_session)
    day, district, keys = _intake_of(ticket, ctx)
    row = (
        db_session.connection().execute(_prepared(db_session).intake_row, {"t": ticket.id}).first()
    )
    if row is not None and (row[0], row[1], list(row[2])) == (day, district, keys):
        return
    if row is None:
        db_session.execute(
            insert(IntakeFact).values(ticket_id=ticket.id, day=day, district_id=district, keys=keys)
        )
    else:
        db_session.execute(
            update(IntakeFact)
            .where(IntakeFact.ticket_id == ticket.id)
            .values(day=day, district_id=district, keys=keys)
        )
        for key in row[2]:
            _bump_intake(db_session, row[0], row[1], key, -1)
    for key in keys:
        _bump_intake(db_session, day, district, key, 1)


def _bump_intake(db_session: Session, day: date, district: int, key: str, n: int) -> None:
    dim, _, value = key.partition(":")
    db_session.connection().execute(
        _prepared(db_session).bump_intake,
        {"day": day, "district_id": district, "dim": dim, "key": value, "n": n},
    )


# ---- rebuild -----------------------------------------------------------------------------------


def _batches(db_session: Session, size: int) -> Iterator[list[Any]]:
    last = 0
    cols = (Ticket.id, Ticket.tier, Ticket.created_at, Ticket.channel, Ticket.request_type,
            Ticket.category_id, Ticket.district_id, Ticket.street_id)  # fmt: skip
    while True:
        rows = db_session.execute(
            select(*cols).where(Ticket.id > last).order_by(Ticket.id).limit(size)
        ).all()
        if not rows:
            return
        last = rows[-1][0]
        yield rows


def rebuild(
    *, db_session: Session, batch: int = 5_000, progress: Callable[[int], None] | None = None
) -> dict[str, int]:
    """Recompute every fact and rollup from the events (in the caller's transaction)."""
    ctx = context(db_session=db_session)
    for table in (MetricFact, MetricRollup, IntakeFact, IntakeRollup):
        db_session.execute(delete(table))
    rollup: dict[tuple[int, date], dict[str, int]] = defaultdict(dict)
    intake: dict[tuple[date, int, str], int] = defaultdict(int)
    n_tickets = n_facts = 0
    for rows in _batches(db_session, batch):
        first, last = rows[0][0], rows[-1][0]
        events: dict[int, list[tuple[str, datetime, int | None, Any]]] = defaultdict(list)
        for tid, action, at, unit, data in db_session.execute(
            select(Event.ticket_id, Event.action, Event.at, Event.actor_unit_id, Event.data)
            .where(Event.ticket_id.between(first, last))
            .order_by(Event.ticket_id, Event.seq)
        ):
            events[tid].append((action, at, unit, data))
        fact_rows = []
        intake_rows = []
        for tid, tier, created, channel, rtype, category_id, district_id, street_id in rows:
            for unit_id, (day, counters) in compute(tier, events.get(tid, ()), ctx).items():
                fact_rows.append({"ticket_id": tid, "unit_id": unit_id, "day": day}
                                 | {c: counters.get(c, 0) for c in COUNTER_COLUMNS})  # fmt: skip
                add(rollup[(unit_id, day)], counters)
            street = ctx.units.by_id.get(street_id) if street_id else None
            category = ctx.categories.get(category_id) if category_id else None
            day = created.astimezone(ctx.tz).date()
            keys = intake_keys(street=street.code if street else None, category=category,
                               channel=channel, request_type=rtype)  # fmt: skip
            intake_rows.append(
                {"ticket_id": tid, "day": day, "district_id": district_id or 0, "keys": keys}
            )
            for key in keys:
                intake[(day, district_id or 0, key)] += 1
        if fact_rows:
            db_session.execute(insert(MetricFact), fact_rows)
        db_session.execute(insert(IntakeFact), intake_rows)
        n_tickets += len(rows)
        n_facts += len(fact_rows)
        if progress:
            progress(n_tickets)
    if rollup:
        db_session.execute(
            insert(MetricRollup),
            [
                {"unit_id": u, "day": d} | {c: counters.get(c, 0) for c in COUNTER_COLUMNS}
                for (u, d), counters in rollup.items()
            ],
        )
    if intake:
        db_session.execute(
            insert(IntakeRollup),
            [
                {
                    "day": d,
                    "district_id": dist,
                    "dim": key.partition(":")[0],
                    "key": key.partition(":")[2],
                    "n": n,
                }
                for (d, dist, key), n in intake.items()
            ],
        )
    return {"tickets": n_tickets, "facts": n_facts, "rollups": len(rollup), "intake": len(intake)}


def snapshot(*, db_session: Session) -> dict[str, Any]:
    """The rollups as plain values without all-zero rows (to compare maintained and rebuilt)."""
    cols = [getattr(MetricRollup, c) for c in COUNTER_COLUMNS]
    metric = {}
    for r in db_session.execute(select(MetricRollup.unit_id, MetricRollup.day, *cols)):
        counters = {c: v for c, v in zip(COUNTER_COLUMNS, r[2:], strict=True) if v}
        if counters:
            metric[(r[0], r[1])] = counters
    intake = {
        (r[0], r[1], r[2], r[3]): r[4]
        for r in db_session.execute(
            select(
                IntakeRollup.day,
                IntakeRollup.district_id,
                IntakeRollup.dim,
                IntakeRollup.key,
                IntakeRollup.n,
            )
        )
        if r[4]
    }
    return {"metric": metric, "intake": intake}


# ---- reading -----------------------------------------------------------------------------------


def month_bounds(period: str) -> tuple[date, date]:
    """'2026-10' → (2026-10-01, 2026-10-31)."""
    year, month = (int(x) for x in period.split("-"))
    return date(year, month, 1), date(year, month, pycalendar.monthrange(year, month)[1])


def previous_month(period: str) -> str:
    year, month = (int(x) for x in period.split("-"))
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def unit_totals(start: date, end: date, *, db_session: Session) -> dict[int, dict[str, int]]:
    """Every unit's summed counters over the days start … end (inclusive)."""
    cols = [func.sum(getattr(MetricRollup, c)) for c in COUNTER_COLUMNS]
    out: dict[int, dict[str, int]] = {}
    for r in db_session.execute(
        select(MetricRollup.unit_id, *cols)
        .where(MetricRollup.day.between(start, end))
        .group_by(MetricRollup.unit_id)
    ):
        out[r[0]] = {c: int(v or 0) for c, v in zip(COUNTER_COLUMNS, r[1:], strict=True)}
    return out


def open_overdue(start: date, end: date, *, db_session: Session, now: datetime | None = None
                 ) -> dict[int, int]:  # fmt: skip
    """Orders led by each unit, got in the period, still unreplied past their due now.

    Two indexed steps rather than one join: the open orders past due (few, by the status/due
    index), then their facts by primary key. As one join PostgreSQL misjudged the first set and
    scanned every fact (0.4 s with 3 million orders; docs/benchmarks.md)."""
    now = now or utcnow()
    memo_key = ("open_overdue", start, end, now.replace(second=0, microsecond=0))
    known = db_session.info.get(memo_key)
    if known is not None:  # the four rankings of one page or report ask the same
        return dict(known)
    lead = {
        int(tid): int(unit)
        for tid, unit in db_session.execute(
            select(Ticket.id, Ticket.lead_unit_id).where(
                Ticket.status.in_(("dispatched", "accepted")), Ticket.due_at < now,
                Ticket.lead_unit_id.is_not(None),
            )
        )
    }  # fmt: skip
    out: dict[int, int] = defaultdict(int)
    ids = list(lead)
    for i in range(0, len(ids), 5_000):
        chunk = ids[i : i + 5_000]
        for tid, unit in db_session.execute(
            select(MetricFact.ticket_id, MetricFact.unit_id).where(
                MetricFact.ticket_id.in_(chunk), MetricFact.day.between(start, end),
                MetricFact.counted == 1, MetricFact.replied == 0,
            )
        ):  # fmt: skip
            if lead.get(tid) == unit:
                out[unit] += 1
    db_session.info[memo_key] = dict(out)
    return dict(out)


def _with_live(
    totals: dict[int, dict[str, int]], overdue: Mapping[int, int], units: UnitIndex
) -> dict[int, dict[str, int]]:
    for unit_id, t in totals.items():
        t["overdue_open"] = overdue.get(unit_id, 0)
        unit = units.by_id.get(unit_id)
        t["solved_grassroots"] = t.get("solved", 0) if unit and unit.kind in GRASSROOTS else 0
    return totals


def scope_totals(
    totals: Mapping[int, Mapping[str, int]], scope: UnitRow | None, units: UnitIndex
) -> dict[str, int]:
    """The sum over every unit under `scope` (the city when None), the centre excluded."""
    out: dict[str, int] = {}
    for unit_id, t in totals.items():
        unit = units.by_id.get(unit_id)
        if unit is None or (units.centre is not None and unit_id == units.centre.id):
            continue
        if scope is None or unit.path.startswith(scope.path):
            add(out, t)
    return out


@dataclass(frozen=True)
class Rankings:
    period: str
    group: str  # district | street | department | company
    rows: list[Ranked]


def _entries_for(
    group: str, totals: Mapping[int, Mapping[str, int]], units: UnitIndex
) -> list[Entry]:
    """Districts are judged on everything under them; the other kinds unit by unit."""
    entries = []
    candidates = [u for u in units.by_id.values() if u.kind == group and u.active]
    if group == "department" and units.centre is not None:
        candidates = [u for u in candidates if u.function not in ("service_centre", "discipline")]
    for unit in candidates:
        if group == "district":
            t = scope_totals(totals, unit, units)
        else:
            t = dict(totals.get(unit.id, {}))
        if t.get("led", 0) or group == "district":
            entries.append(Entry(unit.code, unit.name, unit.kind, t))
    return entries


def rankings(
    period: str, group: str, *, db_session: Session, now: datetime | None = None
) -> Rankings:
    """The month's ranking of one kind of unit, with the change against the month before."""
    settings = pack_settings(db_session=db_session)
    units = unit_index(db_session=db_session)
    small = int(settings.get("small_sample", 30))
    bottom = int((settings.get("task_force") or {}).get(group, DEFAULT_BOTTOM.get(group, 0)))
    weights = weights_for(group, settings.get("weights"))
    start, end = month_bounds(period)
    totals = _with_live(unit_totals(start, end, db_session=db_session),
                        open_overdue(start, end, db_session=db_session, now=now), units)  # fmt: skip
    p_start, p_end = month_bounds(previous_month(period))
    before = _with_live(unit_totals(p_start, p_end, db_session=db_session), {}, units)
    previous_list = rank(_entries_for(group, before, units), weights=weights, small_sample=small)
    previous = {r.code: r.rank for r in previous_list if r.rank is not None}
    rows = rank(_entries_for(group, totals, units), weights=weights, small_sample=small,
                previous=previous, bottom=bottom)  # fmt: skip
    return Rankings(period, group, rows)


def scope_rates(
    start: date, end: date, *, db_session: Session, scope: str | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, Rate], dict[str, int]]:  # fmt: skip
    """Every rate of a district (a unit code: everything under it) or of the city, with the
    centre's own figures when the scope is the city."""
    units = unit_index(db_session=db_session)
    totals = _with_live(unit_totals(start, end, db_session=db_session),
                        open_overdue(start, end, db_session=db_session, now=now), units)  # fmt: skip
    unit = units.by_code.get(scope) if scope else None
    summed = scope_totals(totals, unit, units)
    if scope is None and units.centre is not None:
        centre = totals.get(units.centre.id, {})
        for c in F.CENTRE_COUNTERS:
            summed[c] = centre.get(c, 0)
    return rates(summed, centre=scope is None), summed


# ---- drill-down --------------------------------------------------------------------------------

# Which orders are behind a figure: (the counter that must be set, or unset with a "!").
DRILL: dict[str, tuple[str, ...]] = {
    "led": ("led",),
    "counted": ("counted",),
    "responded": ("responded",),
    "not_responded": ("counted", "!responded"),
    "evaluated": ("evaluated",),
    "solved": ("solved",),
    "unsolved": ("evaluated", "!solved"),
    "dissatisfied": ("dissatisfied",),
    "late": ("replied_late",),
    "extended": ("extended",),
    "returned": ("return_requested",),
    "misdispatched": ("return_approved",),
    "reopened": ("reopened",),
    "exempted": ("exempted",),
    "not_accepted_on_time": ("counted", "!accepted_on_time"),
}


def drill(
    unit_code: str, start: date, end: date, what: str, *, db_session: Session,
    limit: int = 200, offset: int = 0,
) -> tuple[int, list[Ticket]]:  # fmt: skip
    """The orders behind one figure of one unit (a district: everything under it)."""
    units = unit_index(db_session=db_session)
    unit = units.by_code.get(unit_code)
    if unit is None or what not in DRILL:
        return 0, []
    if unit.kind == "district" or unit.kind == "city":
        unit_ids = select(Unit.id).where(Unit.path.startswith(unit.path))
        where_unit: Any = MetricFact.unit_id.in_(unit_ids)
    else:
        where_unit = MetricFact.unit_id == unit.id
    conditions = [where_unit, MetricFact.day.between(start, end)]
    for name in DRILL[what]:
        column = getattr(MetricFact, name.lstrip("!"))
        conditions.append(column == 0 if name.startswith("!") else column > 0)
    ids = select(MetricFact.ticket_id).where(and_(*conditions))
    total = db_session.scalar(select(func.count()).select_from(ids.subquery())) or 0
    # The page is cut from the facts, sorted whole, then its orders are read. Asked for
    # `ORDER BY id LIMIT` over `Ticket.id IN (facts)`, or even over the facts alone, PostgreSQL
    # walked an index in id order and tested each row (1.1 million facts, 300 ms for a district
    # with a million tickets); `ticket_id + 0` is the id in an order no index supplies, so the
    # month's facts are found by (unit_id, day) and sorted. A district's figure adds up its
    # units' facts, so an order two of its streets handled counts twice in `total` and is
    # listed once.
    tid = (MetricFact.ticket_id + 0).label("tid")
    page = ids.with_only_columns(tid).distinct().order_by(tid).limit(limit).offset(offset)
    tickets = db_session.scalars(
        select(Ticket).where(Ticket.id.in_(page.scalar_subquery())).order_by(Ticket.id)
    ).all()
    return total, list(tickets)


__all__ = [
    "Context",
    "Rankings",
    "context",
    "drill",
    "rankings",
    "rebuild",
    "refresh",
    "refresh_intake",
    "scope_rates",
    "snapshot",
    "unit_totals",
]
