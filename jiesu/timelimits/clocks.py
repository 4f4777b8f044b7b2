"""Deadline arithmetic (时限, SPEC §4) on three clocks. Pure: no database, no web.

A limit is a `Duration` whose unit picks the clock it runs on:

- the wall clock (m, h, d): plain elapsed time; 1d is 24 hours;
- the working-day clock (wd): runs only on working days (the `WorkCalendar`, 调休 included), all
  24 hours of each, in the city's local time. 7wd from Friday 10:00 ends at 10:00 on the seventh
  working day after; a start on a day off starts counting at the next working day's 00:00;
- the working-hour clock (wh): runs only within the working hours of working days.

Suspended (挂起) time counts on no clock: `pauses` are real-time intervals `(paused_at,
resumed_at)`, with `resumed_at` None while the order is still suspended. A limit runs out at the
earliest instant its clock has counted it all, so 2wh from 15:30 is due at 17:30 the same day,
not at 09:00 the next one, and 1wd from Friday 00:00 is due at the end of Friday (Saturday 00:00).

The working-day and working-hour clocks read the local wall clock, so a working day is always 24
clock hours: across a daylight-saving change 7wd from 10:00 still ends at 10:00. An hour skipped
by a forward jump is counted at once; during an hour repeated by a backward jump the clock stands
still. Asia/Shanghai has neither. Inputs may be in any zone but must be aware; results are UTC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from jiesu.citypack.parse import Duration
from jiesu.timelimits.calendar import MAX_DAYS_SEARCHED, WorkCalendar

Window = tuple[time, time]
Pause = tuple[datetime, datetime | None]

DEFAULT_WORKING_HOURS: tuple[Window, ...] = (
    (time(9, 0), time(12, 0)),
    (time(13, 30), time(17, 30)),
)
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "wd": 86400, "wh": 3600}
WALL_UNITS = frozenset({"m", "h", "d"})

ZERO = timedelta(0)
DAY = timedelta(days=1)
MICROSECOND = timedelta(microseconds=1)


def limit_seconds(limit: Duration) -> int:
    """The limit's length in seconds on its own clock: 7wd is 7 x 86400 working-day seconds."""
    try:
        return UNIT_SECONDS[limit.unit] * limit.amount
    except KeyError:
        raise ValueError(f"unknown duration unit {limit.unit!r}") from None


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t.isoformat()}: time limits need aware datetimes")
    return t.astimezone(UTC)


class _WallClock:
    """Plain elapsed time. Positions are naive UTC datetimes."""

    def position(self, t: datetime) -> datetime:
        return _utc(t).replace(tzinfo=None)

    def instant(self, x: datetime) -> datetime:
        return x.replace(tzinfo=UTC)

    def measure(self, a: datetime, b: datetime) -> timedelta:
        return max(b - a, ZERO)

    def advance(self, a: datetime, amount: timedelta) -> datetime:
        return a + max(amount, ZERO)


class _LocalClock:
    """A clock that runs within daily windows on working days, read off the local wall clock.

    Positions are naive local datetimes, made monotonic: during the second pass through an hour
    repeated by a backward DST jump the position stays at the end of that hour.
    """

    def __init__(
        self, calendar: WorkCalendar, tz: ZoneInfo, windows: Sequence[tuple[timedelta, timedelta]]
    ) -> None:
        self.calendar = calendar
        self.tz = tz
        self.windows = tuple(windows)

    # -- between instants and positions --------------------------------------------------------

    def _offset_at(self, ts: int) -> timedelta | None:
        return datetime.fromtimestamp(ts, self.tz).utcoffset()

    def _transition(self, lo: datetime, hi: datetime) -> datetime:
        """The instant (UTC) in (lo, hi] where the zone's offset changes to hi's offset."""
        lo_ts, hi_ts = math.floor(lo.timestamp()), math.ceil(hi.timestamp())
        target = self._offset_at(hi_ts)
        while hi_ts - lo_ts > 1:
            mid = (lo_ts + hi_ts) // 2
            if self._offset_at(mid) == target:
                hi_ts = mid
            else:
                lo_ts = mid
        return datetime.fromtimestamp(hi_ts, UTC)

    @staticmethod
    def _repeat(loc: datetime) -> timedelta:
        """How far `loc` (local, aware) is into a repeated hour's second pass; ZERO if not."""
        if not loc.fold:
            return ZERO
        first, second = loc.replace(fold=0).utcoffset(), loc.utcoffset()
        if first is None or second is None or first <= second:
            return ZERO
        return first - second

    def position(self, t: datetime) -> datetime:
        u = _utc(t)
        loc = u.astimezone(self.tz)
        repeat = self._repeat(loc)
        if repeat:
            # The clock waits at the end of the repeated hour: the wall time the first pass ends.
            first_offset = loc.replace(fold=0).utcoffset() or ZERO
            jump = self._transition(u - repeat, u)
            return (jump + first_offset).replace(tzinfo=None)
        return loc.replace(tzinfo=None)

    def instant(self, x: datetime) -> datetime:
        """The earliest instant (UTC) whose position is at or past `x`."""
        first = x.replace(tzinfo=self.tz, fold=0).astimezone(UTC)
        if first.astimezone(self.tz).replace(tzinfo=None) != x:
            # x was skipped by a forward jump: the jump itself is the first instant past it.
            skipped_from = x.replace(tzinfo=self.tz, fold=1).astimezone(UTC)
            return self._transition(skipped_from, first)
        before = (first - MICROSECOND).astimezone(self.tz)
        repeat = self._repeat(before)
        if repeat:
            # x ends a repeated hour: the clock has stood at x since the backward jump.
            return first - repeat
        return first

    # -- counting ------------------------------------------------------------------------------

    def measure(self, a: datetime, b: datetime) -> timedelta:
        """Time counted in [a, b)."""
        total = ZERO
        day, last = a.date(), b.date()
        while day <= last:
            if self.calendar.is_workday(day):
                midnight = datetime.combine(day, time())
                for start, end in self.windows:
                    lo, hi = max(midnight + start, a), min(midnight + end, b)
                    if hi > lo:
                        total += hi - lo
            day += DAY
        return total

    def advance(self, a: datetime, amount: timedelta) -> datetime:
        """The earliest position x >= a with measure(a, x) == amount."""
        if amount <= ZERO:
            return a
        remaining = amount
        day: date = a.date()
        idle = 0
        while idle < MAX_DAYS_SEARCHED:
            counted = False
            if self.calendar.is_workday(day):
                midnight = datetime.combine(day, time())
                for start, end in self.windows:
                    lo, hi = max(midnight + start, a), midnight + end
                    if hi <= lo:
                        continue
                    if hi - lo >= remaining:
                        return lo + remaining
                    remaining -= hi - lo
                    counted = True
            idle = 0 if counted else idle + 1
            day += DAY
        raise ValueError("no working time within ten years: check the calendar overrides")


_Clock = _WallClock | _LocalClock


def _windows(working_hours: Sequence[Window]) -> tuple[tuple[timedelta, timedelta], ...]:
    def offset(t: time) -> timedelta:
        if t.tzinfo is not None:
            raise ValueError("working hours are local wall-clock times, without a time zone")
        return timedelta(
            hours=t.hour, minutes=t.minute, seconds=t.second, microseconds=t.microsecond
        )

    windows = tuple((offset(s), offset(e)) for s, e in working_hours)
    if not windows:
        raise ValueError("working hours must hold at least one window")
    previous_end = ZERO
    for start, end in windows:
        if not start < end:
            raise ValueError("each working-hours window must start before it ends")
        if start < previous_end:
            raise ValueError("working-hours windows must be in order and must not overlap")
        previous_end = end
    return windows


class Clocks:
    """The three clocks of one city: its calendar, its time zone and its working hours."""

    def __init__(
        self,
        calendar: WorkCalendar,
        tz: ZoneInfo,
        working_hours: Sequence[Window] = DEFAULT_WORKING_HOURS,
    ) -> None:
        self.calendar = calendar
        self.tz = tz
        self.working_hours = tuple(working_hours)
        self._wall = _WallClock()
        self._days = _LocalClock(calendar, tz, ((ZERO, DAY),))
        self._hours = _LocalClock(calendar, tz, _windows(self.working_hours))

    def clock(self, unit: str) -> _Clock:
        if unit in WALL_UNITS:
            return self._wall
        if unit == "wd":
            return self._days
        if unit == "wh":
            return self._hours
        raise ValueError(f"unknown duration unit {unit!r}")

    @staticmethod
    def limit_seconds(limit: Duration) -> int:
        return limit_seconds(limit)

    # -- pauses --------------------------------------------------------------------------------

    @staticmethod
    def _pauses(
        clock: _Clock, origin: datetime, pauses: Sequence[Pause]
    ) -> list[tuple[datetime, datetime | None]]:
        """Pauses as disjoint, sorted position intervals at or after `origin`; None: open."""
        spans: list[tuple[datetime, datetime | None]] = []
        for paused_at, resumed_at in pauses:
            if resumed_at is not None and _utc(resumed_at) < _utc(paused_at):
                raise ValueError(f"pause resumed ({resumed_at}) before it began ({paused_at})")
            lo = max(clock.position(paused_at), origin)
            hi = None if resumed_at is None else clock.position(resumed_at)
            if hi is not None and hi <= lo:
                continue
            spans.append((lo, hi))
        spans.sort(key=lambda span: span[0])
        merged: list[tuple[datetime, datetime | None]] = []
        for lo, hi in spans:
            if merged:
                last_lo, last_hi = merged[-1]
                if last_hi is None:
                    break  # an open pause swallows everything after it
                if lo <= last_hi:
                    merged[-1] = (last_lo, None if hi is None else max(last_hi, hi))
                    continue
            merged.append((lo, hi))
        return merged

    def _run(
        self, unit: str, start: datetime, amount: timedelta, pauses: Sequence[Pause]
    ) -> datetime | None:
        """When `amount` has been counted on `unit`'s clock from `start`, skipping pauses."""
        start_utc = _utc(start)
        if amount <= ZERO:
            return start_utc
        clock = self.clock(unit)
        x = clock.position(start)
        remaining = amount
        end: datetime | None = None
        for lo, hi in self._pauses(clock, x, pauses):
            if lo > x:
                counted = clock.measure(x, lo)
                if counted >= remaining:
                    end = clock.advance(x, remaining)
                    break
                remaining -= counted
            if hi is None:
                return None
            x = max(x, hi)
        if end is None:
            end = clock.advance(x, remaining)
        return max(clock.instant(end), start_utc)

    # -- the public arithmetic -----------------------------------------------------------------

    def elapsed(
        self, unit: str, start: datetime, end: datetime, pauses: Sequence[Pause] = ()
    ) -> float:
        """Seconds counted by `unit`'s clock from `start` to `end`, less paused time.

        0.0 when `end` is not after `start`.
        """
        clock = self.clock(unit)
        if _utc(end) <= _utc(start):
            return 0.0
        x, stop = clock.position(start), clock.position(end)
        total = ZERO
        for lo, hi in self._pauses(clock, x, pauses):
            if lo >= stop:
                break
            if lo > x:
                total += clock.measure(x, lo)
            x = stop if hi is None else max(x, hi)
            if x >= stop:
                break
        if x < stop:
            total += clock.measure(x, stop)
        return total.total_seconds()

    def due(
        self, start: datetime, limit: Duration, pauses: Sequence[Pause] = ()
    ) -> datetime | None:
        """When `limit` runs out (UTC), or None while stopped by an open pause before that."""
        return self._run(limit.unit, start, timedelta(seconds=limit_seconds(limit)), pauses)

    def at_fraction(
        self, start: datetime, limit: Duration, fraction: float, pauses: Sequence[Pause] = ()
    ) -> datetime | None:
        """When `fraction` of `limit` has been used: 0.8 for the 80% warning."""
        if not (math.isfinite(fraction) and fraction >= 0):
            raise ValueError(f"fraction must be a finite number >= 0, not {fraction!r}")
        amount = timedelta(seconds=limit_seconds(limit) * fraction)
        return self._run(limit.unit, start, amount, pauses)

    def progress(
        self, start: datetime, limit: Duration, now: datetime, pauses: Sequence[Pause] = ()
    ) -> float:
        """The share of `limit` used by `now`: 0.0 at the start, 1.0 when due, more when overdue.

        A zero limit is used up (1.0) from its start on.
        """
        total = limit_seconds(limit)
        used = self.elapsed(limit.unit, start, now, pauses)
        if total == 0:
            return 1.0 if _utc(now) >= _utc(start) else 0.0
        return used / total

    def remaining(
        self, start: datetime, limit: Duration, now: datetime, pauses: Sequence[Pause] = ()
    ) -> float:
        """Seconds left on `limit`'s own clock at `now`; negative once overdue."""
        return limit_seconds(limit) - self.elapsed(limit.unit, start, now, pauses)

    def due_with_extensions(
        self,
        start: datetime,
        limit: Duration,
        extensions: Sequence[Duration],
        pauses: Sequence[Pause] = (),
    ) -> datetime | None:
        """The due after approved extensions (延期): each runs on its own clock from the previous
        due, so 3wd moves the due by three working days. None while an open pause stops it."""
        due = self.due(start, limit, pauses)
        for extension in extensions:
            if due is None:
                return None
            due = self.due(due, extension, pauses)
        return due
