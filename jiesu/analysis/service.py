"""Early warnings from the database, and proactive tasks (主动治理) made from them.

`scan(day)` feeds the pure detectors of `detect.py` with what they need, read through indexes
and rollups only (a Beijing month is two million orders; nothing here reads them all):

- bursts: the intake rollup's street × top-category and district × top-category counts for the
  last nine weeks and last year's same weeks; the evidence is the day's orders of that street
  (or district) and category;
- repeats: callers with 3+ orders, and addresses with 3+ orders in one category, in the last 30
  days (found by grouping in the database), then windowed by the detector;
- bounces: orders with 3+ return requests or 3+ dispatches/escalations in the last 90 days (the
  event index by action and time);
- inaction: the units' last three months from the assessment rollups;
- emerging topics: the words of the last 7 days' orders against the 28 days before (a sample of
  at most `TOPIC_SAMPLE` orders per window, spread evenly by id);
- monthly themes (每月一题): the six months' leaf-category counts from the intake rollup.

Each signal is stored once by its key (a second scan updates its figures and evidence, never its
status). A warning becomes a **proactive task**: an order of channel `proactive`, taken in by the
centre with the warning's explanation, linked to its evidence orders (`ticket_link`), dispatched
to the area's street (or the unit concerned) like any order, and tracked to closure by the same
lifecycle. More orders of the same common problem can be linked to the task later (举一反三).

Reading is scoped to the reader's tree (`listing`, `get_warning`, `open_counts`, `links`): the
centre reads everything; anyone else the warnings about a place or unit in their tree, with only
the evidence orders they may open; city-wide warnings (topics, themes) are the centre's alone.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from jiesu.access.policy import Principal
from jiesu.analysis import detect
from jiesu.assessment.models import IntakeRollup, MetricFact, TicketLink, Warning
from jiesu.assessment.service import (
    category_index,
    month_bounds,
    previous_month,
    unit_index,
    unit_totals,
)
from jiesu.db.base import utcnow
from jiesu.errors import Conflict, Invalid, NotFound
from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.taxonomy.service import pack_settings
from jiesu.tickets.models import Event, Ticket
from jiesu.tickets.service import visible
from jiesu.tickets.shapes import TicketCreate
from jiesu.web.labels import WARNING_KIND_NAMES

KIND_NAMES = WARNING_KIND_NAMES
STATUS_NAMES = {"open": "待处置", "task": "已立主动治理任务", "dismissed": "已排除"}
TOPIC_SAMPLE = 20_000
_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)


def _start(day: date) -> datetime:
    return datetime.combine(day, time(0), city_tz())


def address_key(address: str | None) -> str | None:
    """An address with spaces and punctuation removed (the same place written twice)."""
    if not address:
        return None
    key = _PUNCT.sub("", address)
    return key or None


# ---- reading what the detectors need -------------------------------------------------------


def _series(db_session: Session, start: date, end: date) -> dict[tuple[str, str], dict[date, int]]:
    """(area code, top category) → day → count, for streets and for districts."""
    units = unit_index(db_session=db_session)
    out: dict[tuple[str, str], dict[date, int]] = defaultdict(dict)
    rows = db_session.execute(
        select(
            IntakeRollup.day,
            IntakeRollup.district_id,
            IntakeRollup.dim,
            IntakeRollup.key,
            IntakeRollup.n,
        ).where(IntakeRollup.dim.in_(("street_top", "top")), IntakeRollup.day.between(start, end))
    )
    for day, district_id, dim, key, n in rows:
        if not n:
            continue
        if dim == "street_top":
            street, _, top = key.partition(":")
            area = street
        else:
            district = units.by_id.get(district_id)
            if district is None or not key:
                continue
            area, top = district.code, key
        counts = out[(area, top)]
        counts[day] = counts.get(day, 0) + n
    return out


def _orders(db_session: Session, where: Sequence[Any], limit: int = 5_000) -> list[detect.Order]:
    units = unit_index(db_session=db_session)
    categories = category_index(db_session=db_session)
    tz = city_tz()
    rows = db_session.execute(
        select(
            Ticket.id,
            Ticket.number,
            Ticket.created_at,
            Ticket.category_id,
            Ticket.district_id,
            Ticket.street_id,
            Ticket.requester_phone,
            Ticket.address,
            Ticket.title,
            Ticket.content,
            Ticket.status,
            Ticket.lead_unit_id,
        )
        .where(*where)
        .order_by(Ticket.id)
        .limit(limit)
    ).all()
    out = []
    for r in rows:
        category = categories.get(r.category_id) if r.category_id else None
        district = units.by_id.get(r.district_id) if r.district_id else None
        street = units.by_id.get(r.street_id) if r.street_id else None
        area = street or district
        out.append(
            detect.Order(
                id=r.id, number=r.number, day=r.created_at.astimezone(tz).date(),
                category=category.code if category else None,
                category_top=category.top if category else None,
                category_name=category.name if category else None,
                district=district.code if district else None,
                street=street.code if street else None,
                area_name=(f"{district.name}{street.name}" if district and street
                           else area.name if area else None),
                phone=r.requester_phone, address_key=address_key(r.address),
                text=f"{r.title}\n{r.content}", has_lead=r.lead_unit_id is not None,
                open=r.status not in ("closed", "merged", "answered", "transferred", "rejected"),
            )
        )  # fmt: skip
    return out


def _burst_evidence(db_session: Session, signal: detect.Signal, day: date) -> tuple[int, ...]:
    units = unit_index(db_session=db_session)
    categories = category_index(db_session=db_session)
    area = units.by_code.get(signal.area or "")
    if area is None:
        return ()
    column = Ticket.street_id if area.kind == "street" else Ticket.district_id
    rows = db_session.execute(
        select(Ticket.id, Ticket.category_id).where(
            column == area.id,
            Ticket.created_at >= _start(day),
            Ticket.created_at < _start(day + timedelta(days=1)),
        )
    )
    return tuple(
        tid for tid, cid in rows
        if cid is not None and (c := categories.get(cid)) is not None and c.top == signal.category
    )  # fmt: skip


def _repeat_candidates(
    db_session: Session, day: date, *, window_days: int = 30, min_orders: int = 3
) -> list[detect.Order]:
    """Orders of the last 30 days whose caller, or whose address and category, came 3+ times:
    each group found by grouping in the database, its orders read by a join (an OR of many
    address/category pairs made PostgreSQL scan for 100 s at 6 million orders)."""
    since = _start(day - timedelta(days=window_days - 1))
    until = _start(day + timedelta(days=1))
    window = (Ticket.created_at >= since, Ticket.created_at < until)
    phones = (
        select(Ticket.requester_phone.label("phone"))
        .where(*window, Ticket.requester_phone.is_not(None))
        .group_by(Ticket.requester_phone)
        .having(func.count() >= min_orders)
        .limit(5_000)
        .subquery()
    )
    places = (
        select(Ticket.address.label("address"), Ticket.category_id.label("category_id"))
        .where(*window, Ticket.address.is_not(None), Ticket.category_id.is_not(None))
        .group_by(Ticket.address, Ticket.category_id)
        .having(func.count() >= min_orders)
        .limit(5_000)
        .subquery()
    )
    by_phone = select(Ticket.id).join(phones, phones.c.phone == Ticket.requester_phone)
    by_place = select(Ticket.id).join(
        places, (places.c.address == Ticket.address) & (places.c.category_id == Ticket.category_id)
    )
    ids = set()
    for stmt in (by_phone, by_place):
        ids.update(int(i) for i in db_session.scalars(stmt.where(*window).limit(50_000)))
    if not ids:
        return []
    out: list[detect.Order] = []
    chunked = sorted(ids)
    for i in range(0, len(chunked), 5_000):
        out += _orders(db_session, [Ticket.id.in_(chunked[i : i + 5_000])], limit=5_000)
    return out


def _bounce_candidates(
    db_session: Session, day: date, *, min_returns: int = 3, min_units: int = 3
) -> list[detect.Order]:
    since = _start(day - timedelta(days=89))
    until = _start(day + timedelta(days=1))
    returns = {
        int(tid): int(n)
        for tid, n in db_session.execute(
            select(Event.ticket_id, func.count())
            .where(Event.action == "request_return", Event.at >= since, Event.at < until)
            .group_by(Event.ticket_id)
            .having(func.count() >= min_returns)
        )
    }
    moved = {
        tid
        for (tid,) in db_session.execute(
            select(Event.ticket_id)
            .where(Event.action.in_(("dispatch", "escalate")), Event.at >= since, Event.at < until)
            .group_by(Event.ticket_id)
            .having(func.count() >= min_units)
        )
    }
    ids = set(returns) | moved
    if not ids:
        return []
    units = unit_index(db_session=db_session)
    centre = units.centre.id if units.centre else -1
    led: dict[int, int] = defaultdict(int)
    for tid, unit_id in db_session.execute(
        select(MetricFact.ticket_id, MetricFact.unit_id).where(
            MetricFact.ticket_id.in_(ids), MetricFact.led > 0
        )
    ):
        if unit_id != centre:
            led[tid] += 1
    orders = _orders(db_session, [Ticket.id.in_(ids)])
    return [
        detect.Order(**{**o.__dict__, "returns": returns.get(o.id, 0), "units_led": led[o.id]})
        for o in orders
    ]


def _unit_months(db_session: Session, month: str, span: int = 3) -> list[detect.UnitMonth]:
    units = unit_index(db_session=db_session)
    out = []
    months = [month]
    for _ in range(span - 1):
        months.insert(0, previous_month(months[0]))
    for m in months:
        start, end = month_bounds(m)
        for unit_id, t in unit_totals(start, end, db_session=db_session).items():
            unit = units.by_id.get(unit_id)
            if unit is None or unit.kind in ("city",) or not t.get("counted"):
                continue
            out.append(detect.UnitMonth(
                unit=unit.code, unit_name=unit.name, month=m, dispatched=t.get("counted", 0),
                overdue=t.get("replied_late", 0), returns=t.get("return_requested", 0),
                evaluated=t.get("evaluated", 0), dissatisfied=t.get("dissatisfied", 0),
            ))  # fmt: skip
    return out


def _sample(db_session: Session, start: date, end: date,
            district_id: int | None = None) -> list[detect.Order]:  # fmt: skip
    """An even sample of the window's orders (of one district's, when given)."""
    window: tuple[Any, ...] = (Ticket.created_at >= _start(start),
                               Ticket.created_at < _start(end + timedelta(1)))  # fmt: skip
    if district_id is not None:
        window += (Ticket.district_id == district_id,)
    n = db_session.scalar(select(func.count()).select_from(Ticket).where(*window)) or 0
    if not n:
        return []
    step = max(1, n // TOPIC_SAMPLE)
    where = [*window]
    if step > 1:
        where.append(Ticket.id % step == 0)
    return _orders(db_session, where, limit=TOPIC_SAMPLE)


def _themes_input(db_session: Session, month: str, months: int = 6,
                  district_id: int | None = None) -> dict[str, dict[str, int]]:  # fmt: skip
    """Month → leaf category → requests, for six months (of one district's, when given)."""
    first = month
    for _ in range(months - 1):
        first = previous_month(first)
    start, _ = month_bounds(first)
    _, end = month_bounds(month)
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    where = [IntakeRollup.dim == "category", IntakeRollup.day.between(start, end)]
    if district_id is not None:
        where.append(IntakeRollup.district_id == district_id)
    for day, key, n in db_session.execute(
        select(IntakeRollup.day, IntakeRollup.key, IntakeRollup.n).where(*where)
    ):
        out[f"{day:%Y-%m}"][key] += n
    return {m: dict(v) for m, v in out.items()}


# ---- scanning --------------------------------------------------------------------------------

_DIVISION_SUFFIXES = ("街道办事处", "地区办事处", "街道办", "街道", "地区", "镇", "乡", "区", "县",
                      "市", "社区", "村")  # fmt: skip


def place_names(*, db_session: Session) -> frozenset[str]:
    """Every name of a place the city knows: its units (districts, streets, communities, and
    their names without the suffix: 三间房地区 → 三间房), and the gazetteer's roads, estates,
    landmarks and aliases. A topic is never one of these alone."""
    from jiesu.intel.models import Place

    names: set[str] = set()
    for (name,) in db_session.execute(select(Unit.name)):
        names.add(name)
        for suffix in _DIVISION_SUFFIXES:
            if name.endswith(suffix) and len(name) - len(suffix) >= 2:
                names.add(name[: -len(suffix)])
    for name, aliases in db_session.execute(select(Place.name, Place.aliases)):
        names.add(name)
        names.update(a for a in aliases or [] if isinstance(a, str))
    return frozenset(n for n in names if len(n) >= 2)


def _explained_by_streets(found: Sequence[detect.Signal], units: Any) -> list[detect.Signal]:
    """A district's burst that one of its streets' bursts in the same category accounts for (at
    least half of the excess) is the same news twice: keep the street's."""
    excess: dict[tuple[str, str], float] = defaultdict(float)
    for s in found:
        unit = units.by_code.get(s.area or "")
        if unit is not None and unit.kind == "street" and s.category:
            district = units.district_of(unit)
            if district is not None:
                gap = float(s.figures.get("observed", 0)) - float(s.figures.get("expected", 0))
                excess[(district.code, s.category)] += gap
    kept = []
    for s in found:
        unit = units.by_code.get(s.area or "")
        if unit is not None and unit.kind == "district" and s.category:
            gap = float(s.figures.get("observed", 0)) - float(s.figures.get("expected", 0))
            if gap > 0 and excess.get((unit.code, s.category), 0) >= gap / 2:
                continue
        kept.append(s)
    return kept


def _not_bursts(topics: Sequence[detect.Signal],
                found: Sequence[detect.Signal]) -> list[detect.Signal]:  # fmt: skip
    """A topic whose orders are mostly a burst's (a storm's fallen trees) is the burst's news."""
    burst = {i for s in found if s.kind == "burst" for i in s.evidence}
    return [t for t in topics if len(set(t.evidence) & burst) * 2 < len(t.evidence)]


def detect_all(day: date, *, db_session: Session) -> list[detect.Signal]:
    """Every detector for `day` (a city-local date), evidence filled."""
    units = unit_index(db_session=db_session)
    categories = category_index(db_session=db_session)
    area_names = {u.code: u.name for u in units.by_id.values()}
    top_names = {c.code: c.name for c in categories.values()}
    signals: list[detect.Signal] = []
    start = day - timedelta(days=7 * 9)
    series = _series(db_session, start, day)
    last_year = _series(db_session, start - timedelta(days=371), day - timedelta(days=350))
    limits = dict(pack_settings(db_session=db_session).get("warnings") or {})
    found = detect.bursts(series, day, area_names=area_names, category_names=top_names,
                          last_year=last_year or None,
                          min_count=limits.get("burst_min_count", 10),
                          min_ratio=float(limits.get("burst_min_ratio", 1.5)))  # fmt: skip
    for s in _explained_by_streets(found, units):
        signals.append(detect.Signal(**{**s.__dict__, "evidence": _burst_evidence(db_session, s,
                                                                                   day)}))  # fmt: skip
    window, least = limits.get("repeat_window_days", 30), limits.get("repeat_min_orders", 3)
    signals += detect.repeats(
        _repeat_candidates(db_session, day, window_days=window, min_orders=least),
        window_days=window, min_orders=least,
    )  # fmt: skip
    returns, units_led = limits.get("bounce_min_returns", 3), limits.get("bounce_min_units", 3)
    signals += detect.bounces(
        _bounce_candidates(db_session, day, min_returns=returns, min_units=units_led),
        min_returns=returns, min_units=units_led,
    )  # fmt: skip
    month = f"{day:%Y-%m}"
    signals += detect.inaction(_unit_months(db_session, previous_month(month)),
                               previous_month(month),
                               min_dispatched=limits.get("inaction_min_dispatched", 20))  # fmt: skip
    recent = _sample(db_session, day - timedelta(days=6), day)
    baseline = _sample(db_session, day - timedelta(days=34), day - timedelta(days=7))
    if recent and baseline:
        found_topics = detect.topics(recent, baseline, places=place_names(db_session=db_session))
        signals += _not_bursts(found_topics, signals)
    signals += detect.themes(_themes_input(db_session, previous_month(month)),
                             previous_month(month), names=top_names)  # fmt: skip
    return signals


def store(signals: Sequence[detect.Signal], day: date, *, db_session: Session) -> dict[str, int]:
    """Insert new warnings, refresh known ones (never their status); counts by kind of new ones."""
    units = unit_index(db_session=db_session)
    known = {
        w.key: w
        for w in db_session.scalars(
            select(Warning).where(Warning.key.in_([s.key for s in signals]))
        )
    } if signals else {}  # fmt: skip
    new: dict[str, int] = defaultdict(int)
    for s in signals:
        area = units.by_code.get(s.area or "")
        unit = units.by_code.get(s.unit or "")
        values = {
            "kind": s.kind, "day": day, "title": s.title[:200], "explanation": s.explanation,
            "score": float(s.score), "area_unit_id": area.id if area else None,
            "unit_id": unit.id if unit else None, "category_code": s.category,
            "figures": {k: float(v) for k, v in s.figures.items()}, "evidence": list(s.evidence),
        }  # fmt: skip
        row = known.get(s.key)
        if row is None:
            db_session.add(Warning(key=s.key, status="open", created_at=utcnow(), **values))
            new[s.kind] += 1
        else:
            for k, v in values.items():
                if k != "day":
                    setattr(row, k, v)
    db_session.flush()
    return dict(new)


def scan(day: date, *, db_session: Session) -> dict[str, int]:
    """Detect and store the day's warnings; the new ones by kind."""
    return store(detect_all(day, db_session=db_session), day, db_session=db_session)


def scan_recent(today: date, *, days: int = 3, db_session: Session) -> dict[str, int]:
    """`scan` each of the `days` days ending `today`, oldest first (what the hourly scan would
    have found had it been running: a fresh demo's, or after the worker was down); new by kind."""
    total: dict[str, int] = defaultdict(int)
    for back in range(days - 1, -1, -1):
        for kind, n in scan(today - timedelta(days=back), db_session=db_session).items():
            total[kind] += n
    return dict(total)


# ---- reading and handling --------------------------------------------------------------------


# Who reads a warning (SPEC §1: visibility follows the org tree). The service centre reads every
# warning. Anyone else reads the warnings that concern their tree (the place or the unit concerned
# is their unit or under it) and, within one, only the evidence orders `tickets.service.visible`
# lets them open; the count shown is the count of those. A city-wide warning (an emerging topic,
# a monthly theme: no place, no unit) is the centre's alone: its figures are the city's.


@dataclass(frozen=True)
class WarningView:
    """A warning as one reader may see it: `evidence` holds only the orders they may open."""

    id: int
    kind: str
    key: str
    day: date
    title: str
    explanation: str
    score: float
    status: str
    area_unit_id: int | None
    unit_id: int | None
    category_code: str | None
    figures: dict[str, Any]
    evidence: tuple[int, ...]
    task_ticket_id: int | None
    note: str | None


def unit_reader(unit: Any) -> Principal:
    """What a unit's own people read (a report built for a district shows what they may see)."""
    return Principal(user_id=0, username="", name=unit.name, role="analyst", unit_id=unit.id,
                     unit_path=unit.path, unit_function=unit.function)  # fmt: skip


def in_tree(stmt: Select[Any], reader: Principal) -> Select[Any]:
    """Warnings about the reader's tree (all of them for the service centre)."""
    if reader.is_service_centre:
        return stmt
    under = select(Unit.id).where(Unit.path.startswith(reader.unit_path))
    return stmt.where(or_(Warning.area_unit_id.in_(under), Warning.unit_id.in_(under)))


def visible_ids(ids: Iterable[int], reader: Principal, *, db_session: Session) -> set[int]:
    """Those of the orders `ids` the reader may open (the org tree, `tickets.service.visible`)."""
    wanted = sorted({int(i) for i in ids})
    if reader.is_service_centre or not wanted:
        return set(wanted)
    out: set[int] = set()
    for i in range(0, len(wanted), 5_000):
        chunk = wanted[i : i + 5_000]
        out.update(db_session.scalars(visible(select(Ticket.id).where(Ticket.id.in_(chunk)),
                                              reader)))  # fmt: skip
    return out


HIDDEN_NUMBER = "（他单位工单）"


def _redacted(rows: Sequence[Warning], allowed: set[int], *,
              db_session: Session) -> list[tuple[str, str]]:  # fmt: skip
    """Each warning's title and explanation with the numbers of its evidence orders outside
    `allowed` replaced by HIDDEN_NUMBER."""
    hidden = sorted({int(i) for w in rows for i in w.evidence or []} - allowed)
    numbers: dict[int, str] = {}
    for i in range(0, len(hidden), 5_000):
        chunk = select(Ticket.id, Ticket.number).where(Ticket.id.in_(hidden[i : i + 5_000]))
        numbers.update((int(tid), str(number)) for tid, number in db_session.execute(chunk))
    out = []
    for w in rows:
        title, explanation = w.title, w.explanation
        for i in w.evidence or []:
            if int(i) in numbers:
                title = title.replace(numbers[int(i)], HIDDEN_NUMBER)
                explanation = explanation.replace(numbers[int(i)], HIDDEN_NUMBER)
        out.append((title, explanation))
    return out


def as_read(rows: Sequence[Warning], reader: Principal, *,
            db_session: Session) -> list[WarningView]:  # fmt: skip
    """The warnings as the reader may see them: the evidence (and the task) they may open, and
    the numbers of any other evidence order taken out of the title and explanation (a repeat
    caller's orders can lie in several districts)."""
    ids: list[int] = []
    for w in rows:
        ids += [int(i) for i in w.evidence or []]
        if w.task_ticket_id is not None:
            ids.append(w.task_ticket_id)
    seen = visible_ids(ids, reader, db_session=db_session)
    wording = _redacted(rows, seen, db_session=db_session)
    return [
        WarningView(
            id=w.id, kind=w.kind, key=w.key, day=w.day, title=title, explanation=explanation,
            score=w.score, status=w.status, area_unit_id=w.area_unit_id, unit_id=w.unit_id,
            category_code=w.category_code, figures=dict(w.figures or {}),
            evidence=tuple(int(i) for i in (w.evidence or []) if int(i) in seen),
            task_ticket_id=w.task_ticket_id if w.task_ticket_id in seen else None, note=w.note,
        )
        for w, (title, explanation) in zip(rows, wording, strict=True)
    ]  # fmt: skip


def listing(*, reader: Principal, db_session: Session, status: str | None = "open",
            kind: str | None = None, limit: int = 200) -> list[WarningView]:  # fmt: skip
    """The warnings the reader may see, newest first, each with the evidence they may open."""
    stmt = in_tree(select(Warning), reader)
    if status:
        stmt = stmt.where(Warning.status == status)
    if kind:
        stmt = stmt.where(Warning.kind == kind)
    rows = db_session.scalars(stmt.order_by(Warning.day.desc(), Warning.score.desc()).limit(limit))
    return as_read(list(rows), reader, db_session=db_session)


def open_counts(*, reader: Principal, db_session: Session) -> dict[str, int]:
    """Open warnings by kind, of those the reader may see."""
    stmt = in_tree(select(Warning.kind, func.count()).where(Warning.status == "open"), reader)
    return {k: int(n) for k, n in db_session.execute(stmt.group_by(Warning.kind))}


def _warning(warning_id: int, reader: Principal, *, db_session: Session) -> Warning:
    """The warning, if the reader may see it; NotFound otherwise (the same answer as a missing
    one, so ids cannot be probed)."""
    warning = db_session.scalar(in_tree(select(Warning).where(Warning.id == warning_id), reader))
    if warning is None:
        raise NotFound("没有这条预警 / no such warning")
    return warning  # type: ignore[no-any-return]


def get_warning(warning_id: int, *, reader: Principal, db_session: Session) -> WarningView:
    return as_read([_warning(warning_id, reader, db_session=db_session)], reader,
                  db_session=db_session)[0]  # fmt: skip


def evidence(warning: WarningView, *, db_session: Session, limit: int = 100) -> list[Ticket]:
    """The evidence orders of a warning as read (`get_warning`/`listing`: already scoped)."""
    ids = list(warning.evidence)[:limit]
    if not ids:
        return []
    return list(db_session.scalars(select(Ticket).where(Ticket.id.in_(ids)).order_by(Ticket.id)))


def _n(value: Any) -> str:
    """A figure as people write it: whole numbers without decimals, others to one place."""
    v = float(value)
    return f"{v:.0f}" if v == int(v) else f"{v:.1f}"


def _pct(value: Any) -> str:
    return f"{float(value) * 100:.1f}%"


_RATE_LABELS = {"overdue": "超期率", "returns": "退单率", "dissatisfied": "不满意率"}


def figure_lines(kind: str, figures: dict[str, Any]) -> list[tuple[str, str]]:
    """A warning's figures as (label, Chinese sentence) pairs, never raw keys: a figure this
    does not know is left out (the explanation says it too)."""
    f = {k: v for k, v in (figures or {}).items() if v is not None}
    out: list[tuple[str, str]] = []
    if kind == "burst" and "observed" in f:
        expected = float(f.get("expected", 0))
        out.append(("当日诉求", f"{_n(f['observed'])} 件，" + (
            f"为预期 {_n(expected)} 件的 {float(f.get('ratio', 0)):.1f} 倍" if expected >= 1
            else "平常几乎没有（预期不足 1 件）")))  # fmt: skip
        if "threshold" in f:
            out.append(("预警阈值", f"{_n(f['threshold'])} 件"))
        if "weekday_median" in f:
            out.append(("常态水平", f"前 {_n(f.get('weeks', 8))} 周同一星期中位数 "
                                    f"{_n(f['weekday_median'])} 件，近 7 日日均 "
                                    f"{_n(f.get('recent_mean', 0))} 件"))  # fmt: skip
        if "seasonal" in f:
            out.append(("季节因素", f"按去年同期季节系数 {float(f.get('seasonal_factor', 1)):.2f} "
                                    f"推算 {_n(f['seasonal'])} 件"))  # fmt: skip
    elif kind == "repeat" and "orders" in f:
        out.append(("重复诉求", f"{_n(f.get('days', 0))} 天内诉求 {_n(f['orders'])} 件"))
    elif kind == "bounce":
        if "returns" in f:
            out.append(("申请退单", f"{_n(f['returns'])} 次"))
        if "units_led" in f:
            out.append(("先后主办", f"{_n(f['units_led'])} 个单位"))
    elif kind == "inaction":
        for rate, label in _RATE_LABELS.items():
            if f"{rate}_latest" in f:
                out.append((label, f"由 {_pct(f.get(f'{rate}_first', 0))} 升至 "
                                   f"{_pct(f[f'{rate}_latest'])}（当月全市单位中位数 "
                                   f"{_pct(f.get(f'{rate}_median', 0))}）"))  # fmt: skip
        if "dispatched" in f:
            out.append(("当月派单", f"{_n(f['dispatched'])} 件"))
    elif kind == "topic" and "recent_docs" in f:
        out.append(("近 7 日诉求", f"{_n(f.get('recent_size', 0))} 件中 {_n(f['recent_docs'])} 件"
                                   "提到该话题"))  # fmt: skip
        out.append(("此前 28 日", f"{_n(f.get('baseline_size', 0))} 件中 "
                                  f"{_n(f.get('baseline_docs', 0))} 件"))  # fmt: skip
        out.append(("与常态相比", f"按此前比例预期 {_n(f.get('expected', 0))} 件，为预期的 "
                                  f"{float(f.get('ratio', 0)):.1f} 倍"))  # fmt: skip
    elif kind == "theme" and "total" in f:
        out.append(("持续高发", f"近 {_n(f.get('months', 6))} 个月中有 "
                                f"{_n(f.get('months_in_top', 0))} 个月位列全市诉求量前十"))  # fmt: skip
        out.append(("诉求总量", f"{_n(f['total'])} 件"))
    return out


@dataclass(frozen=True)
class EvidenceRow:
    """One evidence order as the warning page lists it."""

    id: int
    number: str
    title: str
    category: str
    place: str
    status: str
    created_at: datetime


def evidence_rows(tickets: Sequence[Ticket], *, db_session: Session) -> list[EvidenceRow]:
    """The evidence orders with their category's and place's names."""
    units = unit_index(db_session=db_session)
    categories = category_index(db_session=db_session)
    rows = []
    for t in tickets:
        category = categories.get(t.category_id) if t.category_id else None
        district = units.by_id.get(t.district_id) if t.district_id else None
        street = units.by_id.get(t.street_id) if t.street_id else None
        place = "".join(u.name for u in (district, street) if u is not None)
        rows.append(EvidenceRow(id=t.id, number=t.number, title=t.title,
                                category=category.name if category else "未分类",
                                place=place or "—", status=t.status,
                                created_at=t.created_at))  # fmt: skip
    return rows


def suggested_lead(warning: Warning | WarningView, *, db_session: Session) -> str | None:
    """The unit concerned, or the area's street (a district's own area: the district)."""
    units = unit_index(db_session=db_session)
    for unit_id in (warning.unit_id, warning.area_unit_id):
        if unit_id is not None and unit_id in units.by_id:
            return units.by_id[unit_id].code
    return None


def create_task(
    warning_id: int, *, actor: Principal, db_session: Session, lead: str | None = None,
    note: str | None = None,
) -> Ticket:  # fmt: skip
    """Turn a warning into a proactive task: an order the centre takes in, linked to the
    warning's evidence, dispatched to `lead` (or the suggested unit) when the actor dispatches.
    The actor acts only on a warning they may read, and links only the evidence they may open."""
    from jiesu.tickets.actions import take_action
    from jiesu.tickets.service import create_ticket

    warning = _warning(warning_id, actor, db_session=db_session)
    if warning.status != "open":
        raise Conflict(
            f"该预警{STATUS_NAMES.get(warning.status, warning.status)} / already handled"
        )
    units = unit_index(db_session=db_session)
    area = units.by_id.get(warning.area_unit_id) if warning.area_unit_id else None
    category = None
    if warning.category_code and any(
        c.code == warning.category_code for c in category_index(db_session=db_session).values()
    ):
        category = warning.category_code
    # The task is worded as both the actor and its lead unit may read the warning: the numbers of
    # evidence orders outside either's tree are taken out of its title and content.
    allowed = visible_ids(warning.evidence or [], actor, db_session=db_session)
    going_to = units.by_code.get(lead or suggested_lead(warning, db_session=db_session) or "")
    if going_to is not None:
        allowed &= visible_ids(warning.evidence or [], unit_reader(going_to), db_session=db_session)
    title, explanation = _redacted([warning], allowed, db_session=db_session)[0]
    content = f"【主动治理·{KIND_NAMES.get(warning.kind, warning.kind)}】{explanation}"
    if note:
        content += f"\n处置要求：{note}"
    data = TicketCreate(
        channel="proactive", title=f"主动治理：{title}"[:200], content=content[:4000],
        category_code=category, request_type="report",
        street=area.code if area is not None and area.kind == "street" else None,
    )  # fmt: skip
    ticket = create_ticket(data, actor=actor, db_session=db_session, proactive_task=True)
    now = utcnow()
    allowed = visible_ids(warning.evidence or [], actor, db_session=db_session)
    for linked in dict.fromkeys(warning.evidence or []):
        if linked != ticket.id and int(linked) in allowed:
            db_session.add(TicketLink(ticket_id=ticket.id, linked_id=int(linked), kind="evidence",
                                      created_at=now, created_by_id=actor.user_id))  # fmt: skip
    warning.status, warning.task_ticket_id = "task", ticket.id
    warning.handled_by_id, warning.handled_at = actor.user_id, now
    warning.note = note
    db_session.flush()
    lead = lead or suggested_lead(warning, db_session=db_session)
    if lead and actor.role in ("dispatcher", "admin"):
        take_action(ticket.id, "dispatch", {"lead": lead, "note": "主动治理任务"}, actor=actor,
                    db_session=db_session)  # fmt: skip
    return ticket


def dismiss(warning_id: int, note: str, *, actor: Principal, db_session: Session) -> Warning:
    warning = _warning(warning_id, actor, db_session=db_session)
    if warning.status != "open":
        raise Conflict("该预警已处置 / already handled")
    if len(note.strip()) < 4:
        raise Invalid("排除预警须说明理由 / say why the warning is dismissed", field="note")
    warning.status, warning.note = "dismissed", note.strip()
    warning.handled_by_id, warning.handled_at = actor.user_id, utcnow()
    return warning


def link_orders(task_id: int, numbers: Sequence[str], *, actor: Principal,
                db_session: Session) -> int:  # fmt: skip
    """Link more orders of the same common problem to a proactive task (举一反三): the task and
    the orders must all be ones the actor may open (any other is answered as missing)."""
    task = db_session.scalar(visible(select(Ticket).where(Ticket.id == task_id), actor))
    if task is None or task.channel != "proactive":
        raise NotFound("没有这个主动治理任务 / no such proactive task")
    found = {
        str(number): int(tid)
        for number, tid in db_session.execute(
            visible(select(Ticket.number, Ticket.id).where(Ticket.number.in_(numbers)), actor)
        )
    }
    missing = [n for n in numbers if n not in found]
    if missing:
        raise Invalid(f"工单不存在：{'、'.join(missing)} / no such orders", field="numbers")
    have = set(
        db_session.scalars(select(TicketLink.linked_id).where(TicketLink.ticket_id == task_id))
    )
    added = 0
    for number in numbers:
        linked = found[number]
        if linked in have or linked == task_id:
            continue
        db_session.add(TicketLink(ticket_id=task_id, linked_id=linked, kind="common",
                                  created_at=utcnow(), created_by_id=actor.user_id))  # fmt: skip
        have.add(linked)
        added += 1
    return added


def links(ticket_id: int, *, reader: Principal,
          db_session: Session) -> tuple[list[Ticket], list[Ticket]]:  # fmt: skip
    """The orders a task is linked to, and the tasks an order is linked to: those the reader may
    open (a task's evidence can lie outside the tree of the unit that handles the task)."""
    linked = db_session.scalars(visible(
        select(Ticket).join(TicketLink, TicketLink.linked_id == Ticket.id)
        .where(TicketLink.ticket_id == ticket_id).order_by(Ticket.id), reader)
    ).all()  # fmt: skip
    tasks = db_session.scalars(visible(
        select(Ticket).join(TicketLink, TicketLink.ticket_id == Ticket.id)
        .where(TicketLink.linked_id == ticket_id).order_by(Ticket.id), reader)
    ).all()  # fmt: skip
    return list(linked), list(tasks)
