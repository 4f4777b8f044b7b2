"""The parameter types every router shares, so that no path or query value reaches the database
or the calendar arithmetic outside the range it can hold.

- ids: `BigId` for the tables keyed by BIGINT (tickets, warnings, reports, attachments),
  `SmallId` for those keyed by INTEGER (users, units, tokens, models); a larger number would
  overflow the database's integer (a 500 on PostgreSQL), so it is refused as 422 before;
- dates: `EARLIEST` … `LATEST` (2000-01-01 … 2100-12-31), the days a filter or a period may name; the
  calendar arithmetic around year 1 or 9999 would overflow;
- months: `YYYY-MM` within the same years;
- offsets and counts: at most `MAX_OFFSET`, far past any real list, well inside BIGINT.

The console reads some values from the query string by hand (its filter bar keeps the user's
text): `form_day`, `form_month` and `form_page` parse those with the same ranges and raise
`Invalid` naming the field by its label (`web/validation.LABELS`).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator

from jiesu.errors import Invalid
from jiesu.web.validation import label_of

BIGINT_MAX = 2**63 - 1
INTEGER_MAX = 2**31 - 1
EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)  # the days any date parameter may name
MAX_OFFSET = 10**9
MAX_PAGE = 100_000
_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")  # ASCII digits only
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PAGE = re.compile(r"[0-9]{1,9}")
FILTER_LABELS = {"from": "受理日期起", "to": "受理日期止"}  # the filter bar's names

BigId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="编号")]
SmallId = Annotated[int, Path(ge=1, le=INTEGER_MAX, description="编号")]


def in_day_range(day: date | None) -> date | None:
    if day is not None and not EARLIEST <= day <= LATEST:
        raise ValueError(f"日期须在 {EARLIEST} 至 {LATEST} 之间 / date out of range")
    return day


def in_month_range(period: str | None) -> str | None:
    if period is not None and not _month_ok(period):
        raise ValueError(
            f"月份须在 {EARLIEST.year}-01 至 {LATEST.year}-12 之间 / month out of range"
        )
    return period


def _month_ok(text: str) -> bool:
    m = _MONTH.fullmatch(text)
    return m is not None and EARLIEST.year <= int(m.group(1)) <= LATEST.year


def form_day(text: str, *, field: str) -> date | None:
    """A date typed in a form or the filter bar: empty → None; malformed or out of range →
    Invalid naming the field."""
    text = text.strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text) if _DAY.fullmatch(text) else None
    except ValueError:
        day = None
    label = label_of(field, FILTER_LABELS)
    if day is None:
        raise Invalid(f"{label}须为日期，如 2026-10-01 / {field}: not a date", field=field)
    if not EARLIEST <= day <= LATEST:
        raise Invalid(f"{label}须在 {EARLIEST} 至 {LATEST} 之间 / {field}: date out of range",
                      field=field)  # fmt: skip
    return day


def form_month(text: str, *, field: str = "period") -> str:
    """A month `YYYY-MM` in the years `EARLIEST` … `LATEST`; Invalid naming the field."""
    if not _month_ok(text):
        raise Invalid(f"{label_of(field)}须为 {EARLIEST.year}-01 至 {LATEST.year}-12 之间的月份，如 2026-10 "
                      f"/ {field}: not a month in range", field=field)  # fmt: skip
    return text


def form_page(text: str | None, *, field: str = "page", most: int = MAX_PAGE) -> int:
    """A page number from the query string: absent → 1; anything but 1 … `most` → Invalid."""
    if text is None or text == "":
        return 1
    number = int(text) if _PAGE.fullmatch(text) else 0
    if not 1 <= number <= most:
        raise Invalid(f"{label_of(field)}须为 1 至 {most} 之间的整数 / {field}: not a page number",
                      field=field)  # fmt: skip
    return number


QueryDay = Annotated[date | None, AfterValidator(in_day_range)]
Month = Annotated[
    str | None,
    Query(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", description="月份 YYYY-MM（默认本月）"),
    AfterValidator(in_month_range),
]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="跳过的条数")]
