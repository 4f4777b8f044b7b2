"""The working-day calendar: the State Council holiday schedule, including make-up working days
(调休上班), from the `chinesecalendar` package, under the city's own overrides.

The package only knows the years it was released for. For a later year the calendar falls back
to Monday–Friday and records the year in `uncovered_years`, so the admin can be warned to enter
that year's schedule as overrides; it never raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import chinese_calendar

MAX_DAYS_SEARCHED = 3660  # ten years: a guard against an override table with no working day


class WorkCalendar:
    def __init__(self, overrides: Mapping[date, bool] | None = None) -> None:
        """`overrides` maps a day to True (a working day) or False (a day off)."""
        self.overrides = dict(overrides or {})
        self.uncovered_years: set[int] = set()
        self._cache: dict[date, bool] = {}

    def is_workday(self, day: date) -> bool:
        cached = self._cache.get(day)
        if cached is not None:
            return cached
        if day in self.overrides:
            result = self.overrides[day]
        else:
            try:
                result = bool(chinese_calendar.is_workday(day))
            except NotImplementedError:
                self.uncovered_years.add(day.year)
                result = day.weekday() < 5
        self._cache[day] = result
        return result


def changed_days(old: Mapping[date, bool], new: Mapping[date, bool]) -> list[date]:
    """The days whose kind (working day or day off) differs between two override tables, in
    order: an override that says what the official calendar already says changes nothing."""
    before, after = WorkCalendar(old), WorkCalendar(new)
    return sorted(d for d in old.keys() | new.keys() if before.is_workday(d) != after.is_workday(d))
