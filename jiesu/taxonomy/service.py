"""Reading the city's settings and calendar as the rules modules need them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.settings import city_tz
from jiesu.taxonomy.models import CalendarOverride, CitySetting
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
