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
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    and_,
    bindparam,
    case,
    delete,
    event,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from jiesu.assessment import facts as F
from jiesu.assessment.models import (
    FrozenFact,
    IntakeFact,
    IntakeRollup,
    MetricFact,
    MetricRollup,
    MonthFreeze,
)
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


FactRow = tuple[date, dict[str, int], datetime | None]  # day, counters, contact due


def compute(
    tier: str | None, events: Iterable[tuple[str, datetime, int | None, Mapping[str, Any]]],
    ctx: Context,
) -> dict[int, FactRow]:  # fmt: skip
    """The order's facts by unit id, from its events (action, at, acting unit id, data)."""
    if ctx.units.centre is None:
        return {}
    by_id = ctx.units.by_id
    steps = [
        Step(action, at, by_id[u].code if u is not None and u in by_id else None, data)
        for action, at, u, data in events
    ]
    order = F.Order(steps, ctx.limits(tier), ctx.units.centre.code)
    out: dict[int, FactRow] = {}
    for fact in F.order_facts(order, clocks=ctx.clocks, tz=ctx.tz):
        unit = ctx.units.by_code.get(fact.unit)
        if unit is not None:
            out[unit.id] = (fact.day, dict(fact.counters), fact.contact_due)
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
        stored=select(fact.c.unit_id, fact.c.day, fact.c.contact_due,
                      *[fact.c[c] for c in COUNTER_COLUMNS]).where(
            fact.c.ticket_id == bindparam("t")
        ),
        insert_fact=insert(fact),
        update_fact=update(fact).where(this).values(
            {"day": bindparam("d"), "contact_due": bindparam("due"),
             **{c: bindparam(f"v_{c}") for c in COUNTER_COLUMNS}}
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


def _stored(ticket_id: int, db_session: Session) -> dict[int, FactRow]:
    rows = db_session.connection().execute(_prepared(db_session).stored, {"t": ticket_id})
    return {
        r[0]: (r[1], {c: v for c, v in zip(COUNTER_COLUMNS, r[3:], strict=True) if v}, _utc(r[2]))
        for r in rows
    }


def _utc(at: datetime | None) -> datetime | None:
    """A stored time read through a Core statement: SQLite hands it back naive (UTC)."""
    if at is None or at.tzinfo is not None:
        return at
    return at.replace(tzinfo=UTC)


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
                                           "day": after[0], "contact_due": after[2]}
                         | {c: after[1].get(c, 0) for c in COUNTER_COLUMNS})  # fmt: skip
        else:
            conn.execute(sql.update_fact, key | {"d": after[0], "due": after[2]}
                         | {f"v_{c}": after[1].get(c, 0) for c in COUNTER_COLUMNS})  # fmt: skip
        if before is not None and after is not None and before[0] == after[0]:
            _bump(db_session, sql, unit_id, after[0], add(dict(after[1]), before[1], -1))
        else:
            if before is not None:
                _bump(db_session, sql, unit_id, before[0], add({}, before[1], -1))
            if after is not None:
                _bump(db_session, sql, unit_id, after[0], after[1])


def _bump(
    db_session: Session, sql: _Statements, unit_id: int, day: date, delta: Mapping[str, int]
) -> None:
    if not any(delta.values()):
        return
    pending = _pending(db_session)
    if pending is not None:
        add(pending.metric.setdefault((unit_id, day), {}), delta)
        return
    db_session.connection().execute(sql.bump, {"unit_id": unit_id, "day": day}
                                    | {c: delta.get(c, 0) for c in COUNTER_COLUMNS})  # fmt: skip


# ---- deferred increments ---------------------------------------------------------------------


@dataclass
class _Pending:
    """A transaction's rollup increments not written yet, summed by row."""

    metric: dict[tuple[int, date], dict[str, int]]
    intake: dict[tuple[date, int, str, str], int]


_PENDING = "jiesu_rollup_pending"


def _pending(db_session: Session) -> _Pending | None:
    return db_session.info.get(_PENDING)  # type: ignore[no-any-return]


def defer_rollups(db_session: Session) -> None:
    """Until `apply_rollups` (at the latest, the commit), sum this transaction's rollup
    increments in memory instead of writing them.

    Every create bumps the same rows: the centre's (unit, day) row and the district's intake
    counts ("all", its channel …). An upsert locks its row until commit, so bumped at intake's
    start they were held through the suggestions and made creates of one district (and the
    centre's row: of the whole city) wait for each other. Written at the end, summed (a place
    found by the suggestions moves the counts: −1 and +1 cancel out) and in key order (two
    transactions never lock the same rows in opposite orders: no deadlock), they are held for
    the few statements before commit. The counts stay exact: the same increments, later. The
    sums live in the session's `info`, dropped if the transaction rolls back."""
    if _PENDING in db_session.info:
        return
    db_session.info[_PENDING] = _Pending({}, {})
    if not db_session.info.get(_HOOKED):
        db_session.info[_HOOKED] = True
        event.listen(db_session, "before_commit", lambda s: apply_rollups(db_session=s))
        event.listen(db_session, "after_rollback", lambda s: s.info.pop(_PENDING, None))


_HOOKED = "jiesu_rollup_hooked"


def apply_rollups(*, db_session: Session) -> None:
    """Write the increments `defer_rollups` kept: one upsert per row touched, in key order."""
    pending = db_session.info.pop(_PENDING, None)
    if pending is None:
        return
    sql = _prepared(db_session)
    conn = db_session.connection()
    metric = [
        {"unit_id": unit_id, "day": day} | {c: delta.get(c, 0) for c in COUNTER_COLUMNS}
        for (unit_id, day), delta in sorted(pending.metric.items())
        if any(delta.values())
    ]
    intake = [
        {"day": day, "district_id": district, "dim": dim, "key": key, "n": n}
        for (day, district, dim, key), n in sorted(pending.intake.items())
        if n
    ]
    # The metric rows first, then the intake rows, as an action's `refresh` (then
    # `refresh_intake`) locks them: the same order everywhere, no deadlock.
    for row in metric:  # one at a time: an executemany may reorder, and order is the point
        conn.execute(sql.bump, row)
    if intake and db_session.get_bind().dialect.name == "postgresql":
        # One statement for all of them (their keys are distinct), in key order: the hot
        # metric row above is held for one round trip fewer per row.
        table = IntakeRollup.__table__
        stmt = _dialect_insert("postgresql")(table).values(intake)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["day", "district_id", "dim", "key"],
            set_={"n": table.c.n + stmt.excluded.n},
        ))  # fmt: skip
    else:
        for row in intake:
            conn.execute(sql.bump_intake, row)


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
    pending = _pending(db_session)
    if pending is not None:
        row = (day, district, dim, value)
        pending.intake[row] = pending.intake.get(row, 0) + n
        return
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
            for unit_id, (day, counters, due) in compute(tier, events.get(tid, ()), ctx).items():
                fact_rows.append({"ticket_id": tid, "unit_id": unit_id, "day": day,
                                  "contact_due": due}
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
    # The published months are a record, not derived from today's events: a rebuild leaves
    # them as they are, and the comparison shows it.
    frozen = {
        str(p): int(n)
        for p, n in db_session.execute(
            select(FrozenFact.period, func.count()).group_by(FrozenFact.period)
        )
    }
    return {"metric": metric, "intake": intake, "frozen": frozen}


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


OPEN = ("dispatched", "accepted")  # the statuses in which an order past its due is overdue


def _open_overdue_facts(start: date, end: date, now: datetime, db_session: Session
                        ) -> list[tuple[int, int]]:  # fmt: skip
    """(order, unit) of the facts behind `overdue_open`: counted, unreplied, the unit still leads
    it and it is open past its due now.

    Two indexed steps rather than one join: the open orders past due (few, by the status/due
    index), then their facts by primary key. As one join PostgreSQL misjudged the first set and
    scanned every fact (0.4 s with 3 million orders; docs/benchmarks.md)."""
    lead = {
        int(tid): int(unit)
        for tid, unit in db_session.execute(
            select(Ticket.id, Ticket.lead_unit_id).where(
                Ticket.status.in_(OPEN), Ticket.due_at < now, Ticket.lead_unit_id.is_not(None),
            )
        )
    }  # fmt: skip
    out: list[tuple[int, int]] = []
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
                out.append((int(tid), int(unit)))
    return out


def open_overdue(start: date, end: date, *, db_session: Session, now: datetime | None = None
                 ) -> dict[int, int]:  # fmt: skip
    """Orders led by each unit, got in the period, still unreplied past their due now."""
    now = now or utcnow()
    memo_key = ("open_overdue", start, end, now.replace(second=0, microsecond=0))
    known = db_session.info.get(memo_key)
    if known is not None:  # the four rankings of one page or report ask the same
        return dict(known)
    out: dict[int, int] = defaultdict(int)
    for _, unit in _open_overdue_facts(start, end, now, db_session):
        out[unit] += 1
    db_session.info[memo_key] = dict(out)
    return dict(out)


def contact_pending(start: date, end: date, *, db_session: Session,
                    now: datetime | None = None) -> dict[int, int]:  # fmt: skip
    """Orders of each unit, got in the period, whose first contact is still within its limit
    now (pending: neither responded nor unresponded yet). Few rows, by the contact_due index."""
    now = now or utcnow()
    return {
        int(unit): int(n)
        for unit, n in db_session.execute(
            select(MetricFact.unit_id, func.count())
            .where(MetricFact.contact_due > now, MetricFact.day.between(start, end),
                   MetricFact.counted == 1)
            .group_by(MetricFact.unit_id)
        )
    }  # fmt: skip


def _with_live(
    totals: dict[int, dict[str, int]], overdue: Mapping[int, int], units: UnitIndex,
    pending: Mapping[int, int] | None = None,
) -> dict[int, dict[str, int]]:  # fmt: skip
    for unit_id, t in totals.items():
        t["overdue_open"] = overdue.get(unit_id, 0)
        t["contact_pending"] = (pending or {}).get(unit_id, 0)
        _grassroots(unit_id, t, units)
    return totals


def _grassroots(unit_id: int, t: dict[str, int], units: UnitIndex) -> None:
    unit = units.by_id.get(unit_id)
    t["solved_grassroots"] = t.get("solved", 0) if unit and unit.kind in GRASSROOTS else 0


def live_totals(start: date, end: date, *, db_session: Session, now: datetime | None = None
                ) -> dict[int, dict[str, int]]:  # fmt: skip
    """Every unit's counters over the days, with the live counts (past due, contact pending)."""
    now = now or utcnow()
    return _with_live(unit_totals(start, end, db_session=db_session),
                      open_overdue(start, end, db_session=db_session, now=now),
                      unit_index(db_session=db_session),
                      contact_pending(start, end, db_session=db_session, now=now))  # fmt: skip


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


# ---- published months ----------------------------------------------------------------------
#
# The pack's `assessment: {cutoff_day: N}` closes month M at the end of day N of month M+1 (city
# time). Then `freeze_due` (the worker, `jiesu metrics freeze`) copies M's facts into
# `frozen_fact` once, with the orders open past due and the contacts still pending at that
# moment and the scores, weights and sample rules then in force. A frozen month's ranking, its
# figures and its drill-downs read the copy: what arrives later (a late evaluation, an approved
# exemption, a calendar change) changes the month's live figures, never what was published, and
# counts nowhere else (`late: own_month`, the only choice so far). `rebuild` leaves the copies
# alone: they are a record of what was published, not derived from today's events.

RULE_KEYS = ("satisfaction_scores", "weights", "small_sample", "task_force")


def cutoff_of(period: str, settings: Mapping[str, Any]) -> datetime | None:
    """When the month closes (UTC), or None when the pack sets no cut-off."""
    day = (settings.get("assessment") or {}).get("cutoff_day")
    if not day:
        return None
    year, month = (int(x) for x in period.split("-"))
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    end_of_day = datetime(year, month, int(day), tzinfo=city_tz()) + timedelta(days=1)
    return end_of_day.astimezone(UTC)


def next_month(period: str) -> str:
    year, month = (int(x) for x in period.split("-"))
    return f"{year + 1}-01" if month == 12 else f"{year}-{month + 1:02d}"


def frozen_month(period: str, *, db_session: Session) -> MonthFreeze | None:
    return db_session.get(MonthFreeze, period)


def freeze(period: str, *, db_session: Session, now: datetime | None = None) -> MonthFreeze:
    """Copy the month's facts as they stand now (once: a frozen month is never frozen again)."""
    now = now or utcnow()
    known = frozen_month(period, db_session=db_session)
    if known is not None:
        return known
    settings = pack_settings(db_session=db_session)
    row = MonthFreeze(period=period, frozen_at=now,
                      settings={k: settings[k] for k in RULE_KEYS if k in settings})  # fmt: skip
    db_session.add(row)
    db_session.flush()
    start, end = month_bounds(period)
    fact = MetricFact.__table__
    pending = case((fact.c.contact_due > now, 1), else_=0)
    columns = ["period", "ticket_id", "unit_id", "day", "overdue_open", "contact_pending",
               *COUNTER_COLUMNS]  # fmt: skip
    db_session.execute(
        insert(FrozenFact).from_select(
            columns,
            select(literal(period, String(7)), fact.c.ticket_id, fact.c.unit_id, fact.c.day,
                   literal(0, Integer()), pending, *[fact.c[c] for c in COUNTER_COLUMNS])
            .where(fact.c.day.between(start, end)),
        )
    )  # fmt: skip
    late = _open_overdue_facts(start, end, now, db_session)
    if late:
        db_session.execute(
            update(FrozenFact.__table__)
            .where(FrozenFact.__table__.c.period == period,
                   FrozenFact.__table__.c.ticket_id == bindparam("t"),
                   FrozenFact.__table__.c.unit_id == bindparam("u"))
            .values(overdue_open=1),
            [{"t": t, "u": u} for t, u in late],
        )  # fmt: skip
    return row


def freeze_due(now: datetime | None = None, *, db_session: Session) -> list[str]:
    """Freeze the months whose cut-off has passed since the last one frozen (the latest closed
    month the first time: months before were never published). What the worker runs."""
    now = now or utcnow()
    settings = pack_settings(db_session=db_session)
    month = f"{now.astimezone(city_tz()):%Y-%m}"
    closed = None
    for _ in range(3):  # the latest month whose cut-off has passed (the cut-off is ≤ day 28)
        month = previous_month(month)
        cutoff = cutoff_of(month, settings)
        if cutoff is None:
            return []
        if cutoff <= now:
            closed = month
            break
    if closed is None:
        return []
    last = db_session.scalar(select(func.max(MonthFreeze.period)))
    todo = [closed]
    if last is not None:
        todo = []
        month = next_month(last)
        while month <= closed:
            todo.append(month)
            month = next_month(month)
    for period in todo:
        freeze(period, db_session=db_session, now=now)
    return todo


def frozen_totals(period: str, *, db_session: Session) -> dict[int, dict[str, int]]:
    """Every unit's counters of a frozen month as published (the live counts included)."""
    memo_key = ("frozen_totals", period)
    known = db_session.info.get(memo_key)
    if known is not None:  # the four rankings of one page or report ask the same
        return {u: dict(t) for u, t in known.items()}
    names = (*COUNTER_COLUMNS, "overdue_open", "contact_pending")
    cols = [func.sum(getattr(FrozenFact, c)) for c in names]
    units = unit_index(db_session=db_session)
    out: dict[int, dict[str, int]] = {}
    for r in db_session.execute(
        select(FrozenFact.unit_id, *cols).where(FrozenFact.period == period)
        .group_by(FrozenFact.unit_id)
    ):  # fmt: skip
        t = {c: int(v or 0) for c, v in zip(names, r[1:], strict=True)}
        _grassroots(r[0], t, units)
        out[r[0]] = t
    db_session.info[memo_key] = {u: dict(t) for u, t in out.items()}
    return out


@dataclass(frozen=True)
class MonthFigures:
    """A month's counters per unit and the rules to read them with, published or live."""

    period: str
    totals: dict[int, dict[str, int]]
    rules: Mapping[str, Any]  # satisfaction_scores, weights, small_sample, task_force
    basis: str  # frozen | live
    frozen_at: datetime | None
    cutoff: datetime | None  # when the month closes (closed), None without a cut-off


def month_figures(period: str, *, db_session: Session, now: datetime | None = None,
                  live: bool = False) -> MonthFigures:  # fmt: skip
    """The published figures of a frozen month (unless `live`), else the live ones."""
    settings = pack_settings(db_session=db_session)
    cutoff = cutoff_of(period, settings)
    frozen = None if live else frozen_month(period, db_session=db_session)
    if frozen is not None:
        return MonthFigures(period, frozen_totals(period, db_session=db_session),
                            {**settings, **(frozen.settings or {})}, "frozen", frozen.frozen_at,
                            cutoff)  # fmt: skip
    start, end = month_bounds(period)
    totals = live_totals(start, end, db_session=db_session, now=now)
    return MonthFigures(period, totals, settings, "live", None, cutoff)


def scores_of(rules: Mapping[str, Any]) -> Mapping[str, float] | None:
    return rules.get("satisfaction_scores") or None


@dataclass(frozen=True)
class Rankings:
    period: str
    group: str  # district | street | department | company
    rows: list[Ranked]
    basis: str = "live"  # frozen (as published at the cut-off) | live
    frozen_at: datetime | None = None
    cutoff: datetime | None = None


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


def _ranked(group: str, figures: MonthFigures, units: UnitIndex,
            previous: Mapping[str, int] | None = None) -> list[Ranked]:  # fmt: skip
    rules = figures.rules
    small = int(rules.get("small_sample", 30))
    bottom = int((rules.get("task_force") or {}).get(group, DEFAULT_BOTTOM.get(group, 0)))
    return rank(_entries_for(group, figures.totals, units),
                weights=weights_for(group, rules.get("weights")), small_sample=small,
                previous=previous, bottom=bottom if previous is not None else 0,
                scores=scores_of(rules))  # fmt: skip


def rankings(
    period: str, group: str, *, db_session: Session, now: datetime | None = None,
    live: bool = False,
) -> Rankings:  # fmt: skip
    """The month's ranking of one kind of unit, with the change against the month before: as
    published when the month is frozen (unless `live`), else live. The month before counts as
    published when it was frozen, else from its rollups without the live counts."""
    units = unit_index(db_session=db_session)
    figures = month_figures(period, db_session=db_session, now=now, live=live)
    before_period = previous_month(period)
    if frozen_month(before_period, db_session=db_session) is not None:
        before = month_figures(before_period, db_session=db_session, now=now)
    else:
        p_start, p_end = month_bounds(before_period)
        before = MonthFigures(before_period, _with_live(
            unit_totals(p_start, p_end, db_session=db_session), {}, units),
            pack_settings(db_session=db_session), "live", None, None)  # fmt: skip
    previous = {r.code: r.rank for r in _ranked(group, before, units) if r.rank is not None}
    rows = _ranked(group, figures, units, previous)
    return Rankings(period, group, rows, figures.basis, figures.frozen_at, figures.cutoff)


def scope_rates(
    start: date, end: date, *, db_session: Session, scope: str | None = None,
    now: datetime | None = None, period: str | None = None,
) -> tuple[dict[str, Rate], dict[str, int]]:  # fmt: skip
    """Every rate of a district (a unit code: everything under it) or of the city, with the
    centre's own figures when the scope is the city. With `period` (a month) a frozen month's
    published figures are read instead of the days' live ones."""
    units = unit_index(db_session=db_session)
    if period is not None:
        figures = month_figures(period, db_session=db_session, now=now)
        totals, rules = figures.totals, figures.rules
    else:
        totals = live_totals(start, end, db_session=db_session, now=now)
        rules = pack_settings(db_session=db_session)
    unit = units.by_code.get(scope) if scope else None
    summed = scope_totals(totals, unit, units)
    if scope is None and units.centre is not None:
        centre = totals.get(units.centre.id, {})
        for c in F.CENTRE_COUNTERS:
            summed[c] = centre.get(c, 0)
    return rates(summed, centre=scope is None, scores=scores_of(rules)), summed


# ---- drill-down --------------------------------------------------------------------------------

# Which orders are behind a figure: (the counter that must be set, or unset with a "!").
# `overdue`, `pending` and `response_counted` also depend on the clock (see `_live_condition`).
DRILL: dict[str, tuple[str, ...]] = {
    "led": ("led",),
    "counted": ("counted",),
    "responded": ("responded",),
    "response_counted": ("counted",),  # … less the pending contacts: the response's denominator
    "not_responded": ("counted", "!responded"),  # … less the pending contacts
    "pending": ("counted",),  # the first contact still within its limit
    "accepted_on_time": ("accepted_on_time",),
    "not_accepted_on_time": ("counted", "!accepted_on_time"),
    "replied": ("replied",),
    "replied_on_time": ("replied_on_time",),
    "late": ("replied_late",),
    "overdue": ("counted",),  # replied late, or open past due now
    "evaluated": ("evaluated",),
    "solved": ("solved",),
    "unsolved": ("evaluated", "!solved"),
    "dissatisfied": ("dissatisfied",),
    **{counter: (counter,) for counter in F.LEVEL_COUNTERS.values()},
    "extended": ("extended",),
    "returned": ("return_requested",),
    "misdispatched": ("return_approved",),
    "reopened": ("reopened",),
    "exempted": ("exempted",),
    "audited": ("audited",),
    "callbacks": ("callbacks",),
}
# Each rate's numerator and denominator as drill-downs (satisfaction: one per level).
RATE_DRILL: dict[str, tuple[str | None, str]] = {
    "response": ("responded", "response_counted"),
    "resolution": ("solved", "evaluated"),
    "satisfaction": (None, "evaluated"),
    "accept_on_time": ("accepted_on_time", "counted"),
    "complete_on_time": ("replied_on_time", "replied"),
    "overdue": ("overdue", "counted"),
    "extension": ("extended", "counted"),
    "return": ("returned", "led"),
    "dispatch_accuracy": ("misdispatched", "led"),
    "reopen": ("reopened", "counted"),
    "callback": ("callbacks", "audited"),
    "avg_hours": (None, "replied"),
}


def _live_condition(what: str, table: Any, now: datetime, frozen: bool) -> Any:
    """The clock's part of a drill-down: on a frozen month, the flags copied at the cut-off."""
    if frozen:
        if what == "pending":
            return table.contact_pending > 0
        if what in ("response_counted", "not_responded"):
            return table.contact_pending == 0
        if what == "overdue":
            return or_(table.replied_late > 0, table.overdue_open > 0)
        return None
    if what == "pending":
        return table.contact_due > now
    if what in ("response_counted", "not_responded"):
        return or_(table.contact_due.is_(None), table.contact_due <= now)
    if what == "overdue":
        past_due = exists().where(
            Ticket.id == table.ticket_id, Ticket.status.in_(OPEN), Ticket.due_at < now,
            Ticket.lead_unit_id == table.unit_id,
        )  # fmt: skip
        return or_(table.replied_late > 0, and_(table.replied == 0, past_due))
    return None


def drill(
    unit_code: str, start: date, end: date, what: str, *, db_session: Session,
    limit: int = 200, offset: int = 0, now: datetime | None = None, period: str | None = None,
) -> tuple[int, list[Ticket]]:  # fmt: skip
    """The orders behind one figure of one unit (a district: everything under it). With
    `period` (a month) a frozen month lists the orders as published."""
    now = now or utcnow()
    units = unit_index(db_session=db_session)
    unit = units.by_code.get(unit_code)
    if unit is None or what not in DRILL:
        return 0, []
    frozen = period is not None and frozen_month(period, db_session=db_session) is not None
    table: Any = FrozenFact if frozen else MetricFact
    if unit.kind == "district" or unit.kind == "city":
        unit_ids = select(Unit.id).where(Unit.path.startswith(unit.path))
        where_unit: Any = table.unit_id.in_(unit_ids)
    else:
        where_unit = table.unit_id == unit.id
    conditions = [where_unit]
    conditions.append(table.period == period if frozen else table.day.between(start, end))
    for name in DRILL[what]:
        column = getattr(table, name.lstrip("!"))
        conditions.append(column == 0 if name.startswith("!") else column > 0)
    live = _live_condition(what, table, now, frozen)
    if live is not None:
        conditions.append(live)
    ids = select(table.ticket_id).where(and_(*conditions))
    total = db_session.scalar(select(func.count()).select_from(ids.subquery())) or 0
    # The page is cut from the facts, sorted whole, then its orders are read. Asked for
    # `ORDER BY id LIMIT` over `Ticket.id IN (facts)`, or even over the facts alone, PostgreSQL
    # walked an index in id order and tested each row (1.1 million facts, 300 ms for a district
    # with a million tickets); `ticket_id + 0` is the id in an order no index supplies, so the
    # month's facts are found by (unit_id, day) and sorted. A district's figure adds up its
    # units' facts, so an order two of its streets handled counts twice in `total` and is
    # listed once.
    tid = (table.ticket_id + 0).label("tid")
    page = ids.with_only_columns(tid).distinct().order_by(tid).limit(limit).offset(offset)
    tickets = db_session.scalars(
        select(Ticket).where(Ticket.id.in_(page.scalar_subquery())).order_by(Ticket.id)
    ).all()
    return total, list(tickets)


__all__ = [
    "Context",
    "MonthFigures",
    "Rankings",
    "context",
    "drill",
    "freeze",
    "freeze_due",
    "month_figures",
    "rankings",
    "rebuild",
    "refresh",
    "refresh_intake",
    "scope_rates",
    "snapshot",
    "unit_totals",
]
