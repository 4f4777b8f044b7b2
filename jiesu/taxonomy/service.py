"""Reading the city's settings and calendar as the rules modules need them."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

import chinese_calendar
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.taxonomy.models import CalendarOverride, Category, CitySetting, DispatchRule
from jiesu.taxonomy.routing import Catalogue, Rule, UnitInfo
from jiesu.timelimits.calendar import WorkCalendar
from jiesu.timelimits.clocks import Clocks

# ---- reference data, read once per change --------------------------------------------------
# Units, categories, the dispatch catalogue, the pack's settings and the calendar change a few
# times a year (a pack load, an admin edit) but every page and every intake reads them. Each
# process keeps what it built under a fingerprint of those tables, taken in one small query
# per use; writers that change a row in place without a timestamp (pack load, calendar days)
# call `bump_reference`. A time limit bounds what a change made behind our back could cost.

REFERENCE_KEY = "reference"
REFERENCE_TTL_S = 60.0
T = TypeVar("T")
_built: dict[tuple[str, str], tuple[tuple[Any, ...], float, Any]] = {}


def bump_reference(*, db_session: Session) -> None:
    """Tell every process that reference data changed (in the caller's transaction)."""
    db_session.info.pop(REFERENCE_KEY, None)
    row = db_session.get(CitySetting, REFERENCE_KEY)
    if row is None:
        db_session.add(CitySetting(key=REFERENCE_KEY, value=uuid.uuid4().hex))
    else:
        row.value = uuid.uuid4().hex


def _fingerprint(db_session: Session) -> tuple[Any, ...]:
    """Taken once per session (a request's unit of work), however many things it reads."""
    known = db_session.info.get(REFERENCE_KEY)
    if known is None:
        known = db_session.info[REFERENCE_KEY] = _take_fingerprint(db_session)
    return known  # type: ignore[no-any-return]


def _take_fingerprint(db_session: Session) -> tuple[Any, ...]:
    def stats(table: Any, *cols: Any) -> Any:
        return select(*cols).select_from(table).scalar_subquery()

    row = db_session.execute(
        select(
            stats(Unit, func.count()),
            stats(Unit, func.max(Unit.updated_at)),
            stats(Category, func.count()),
            stats(Category, func.max(Category.updated_at)),
            stats(DispatchRule, func.count()),
            stats(CalendarOverride, func.count()),
            stats(CitySetting, func.max(CitySetting.updated_at)),
            # the mark itself: two changes in the same clock tick (a pinned test clock, a
            # coarse one) leave the times equal, never the mark
            select(CitySetting.value).where(CitySetting.key == REFERENCE_KEY).scalar_subquery(),
        )
    ).one()
    return (str(db_session.get_bind().url), *row)


def cached(name: str, build: Callable[[], T], *, db_session: Session) -> T:
    """`build()`'s result, made again only when the reference tables changed. What it returns
    is shared by every request of the process: plain values, never ORM rows."""
    key = (str(db_session.get_bind().url), name)
    mark = _fingerprint(db_session)
    hit = _built.get(key)
    now = time.monotonic()
    if hit is not None and hit[0] == mark and hit[1] > now:
        return hit[2]  # type: ignore[no-any-return]
    value = build()
    if len(_built) > 1_000:  # test runs make many databases; a server has one
        _built.clear()
    _built[key] = (mark, now + REFERENCE_TTL_S, value)
    return value


def pack_settings(*, db_session: Session) -> dict[str, Any]:
    """The loaded pack's settings (tiers, tier rules, weights …); empty before any pack."""

    def build() -> dict[str, Any]:
        row = db_session.get(CitySetting, "pack")
        return dict(row.value) if row is not None else {}

    return dict(cached("pack_settings", build, db_session=db_session))


def city_clocks(*, db_session: Session) -> Clocks:
    """Clocks on the official calendar under the city's overrides (pack and admin)."""

    def build() -> Clocks:
        overrides = {
            o.day: o.kind == "workday" for o in db_session.scalars(select(CalendarOverride))
        }
        return Clocks(WorkCalendar(overrides), city_tz())

    return cached("city_clocks", build, db_session=db_session)


def calendar_warnings(*, db_session: Session, today: date) -> list[str]:
    """Years about to be used (this one and the next) that the official calendar package does not
    know and that have no overrides yet: working days there fall back to Monday–Friday."""
    years_with_overrides = {o.day.year for o in db_session.scalars(select(CalendarOverride))}
    warnings = []
    for year in (today.year, today.year + 1):
        try:
            chinese_calendar.is_workday(date(year, 1, 2))
        except NotImplementedError:
            if year not in years_with_overrides:
                warnings.append(
                    f"{year} 年的节假日与调休安排尚未录入：该年工作日暂按周一至周五计算，"
                    f"请按国务院办公厅公布的安排录入日历 / the {year} holiday schedule is missing:"
                    " working days fall back to Monday–Friday until it is entered"
                )
    return warnings


def load_catalogue(*, db_session: Session) -> Catalogue:
    """The dispatch catalogue (派单目录) over the active units, ready for `Catalogue.route`."""
    return cached("catalogue", lambda: _build_catalogue(db_session), db_session=db_session)


@dataclass(frozen=True)
class UnitOption:
    """A unit as a picker or a label needs it."""

    code: str
    name: str
    kind: str


def unit_options(*, db_session: Session) -> dict[str, UnitOption]:
    """Every active unit by code (names for labels, and the dispatch pickers)."""

    def build() -> dict[str, UnitOption]:
        rows = db_session.execute(
            select(Unit.code, Unit.name, Unit.kind).where(Unit.active).order_by(Unit.code)
        )
        return {code: UnitOption(code, name, kind) for code, name, kind in rows}

    return cached("unit_options", build, db_session=db_session)


def _build_catalogue(db_session: Session) -> Catalogue:
    units = list(db_session.scalars(select(Unit).where(Unit.active)))
    code_of = {u.id: u.code for u in units}
    infos = {
        u.code: UnitInfo(u.code, u.kind, code_of.get(u.parent_id or -1), u.function) for u in units
    }
    cat_code = dict(db_session.execute(select(Category.id, Category.code)).all())
    rules = [
        Rule(
            cat_code[r.category_id],
            r.route,
            r.function,
            code_of.get(r.unit_id or -1),
            code_of.get(r.district_id or -1),
            r.note,
        )
        for r in db_session.scalars(select(DispatchRule).where(DispatchRule.active))
        if r.category_id in cat_code
    ]
    return Catalogue(rules, infos)
