"""Reading the city's settings and calendar as the rules modules need them."""

from __future__ import annotations

from datetime import date
from typing import Any

import chinese_calendar
from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.taxonomy.models import CalendarOverride, Category, CitySetting, DispatchRule
from jiesu.taxonomy.routing import Catalogue, Rule, UnitInfo
from jiesu.timelimits.calendar import WorkCalendar
from jiesu.timelimits.clocks import Clocks


def pack_settings(*, db_session: Session) -> dict[str, Any]:
    """The loaded pack's settings (tiers, tier rules, weights …); empty before any pack."""
    row = db_session.get(CitySetting, "pack")
    return dict(row.value) if row is not None else {}


def city_clocks(*, db_session: Session) -> Clocks:
    """Clocks on the official calendar under the city's overrides (pack and admin)."""
    overrides = {o.day: o.kind == "workday" for o in db_session.scalars(select(CalendarOverride))}
    return Clocks(WorkCalendar(overrides), city_tz())


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
