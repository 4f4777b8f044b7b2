"""Time limits (SPEC §4): the working-day calendar, the three clocks, pauses, extensions, tiers."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jiesu.citypack.parse import Duration
from jiesu.timelimits.calendar import WorkCalendar
from jiesu.timelimits.clocks import DEFAULT_WORKING_HOURS, Clocks, limit_seconds
from jiesu.timelimits.tiers import choose_tier, phase_limits

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
BEIJING_PACK = Path(__file__).parent.parent / "citypacks" / "beijing" / "pack.yaml"
PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def D(text: str) -> Duration:
    return Duration.parse(text)


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SH)


def local(t: datetime | None, tz: ZoneInfo = SH) -> datetime:
    assert t is not None
    return t.astimezone(tz)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(n) for n in range((last - first).days + 1)]


# The official schedule, read from chinese_calendar itself rather than typed in from memory.
def _official(around: date, span: int = 21) -> tuple[list[date], list[date]]:
    """(the run of days off around `around`, the weekend make-up working days near it)."""
    holidays = [around]
    while not chinese_calendar.is_workday(holidays[0] - timedelta(1)):
        holidays.insert(0, holidays[0] - timedelta(1))
    while not chinese_calendar.is_workday(holidays[-1] + timedelta(1)):
        holidays.append(holidays[-1] + timedelta(1))
    near = days(around - timedelta(span), around + timedelta(span))
    makeups = [d for d in near if d.weekday() >= 5 and chinese_calendar.is_workday(d)]
    return holidays, makeups


NATIONAL_DAY_2025, NATIONAL_DAY_2025_MAKEUPS = _official(date(2025, 10, 4))
SPRING_2026, SPRING_2026_MAKEUPS = _official(date(2026, 2, 19))


@pytest.fixture
def clocks() -> Clocks:
    return Clocks(WorkCalendar(), SH)


# -- the official calendar ---------------------------------------------------------------------


def test_official_calendar_has_the_2025_national_day_schedule() -> None:
    assert days(date(2025, 10, 1), date(2025, 10, 8)) == NATIONAL_DAY_2025
    assert [date(2025, 9, 28), date(2025, 10, 11)] == NATIONAL_DAY_2025_MAKEUPS
    cal = WorkCalendar()
    assert not any(cal.is_workday(d) for d in NATIONAL_DAY_2025)
    assert all(cal.is_workday(d) for d in NATIONAL_DAY_2025_MAKEUPS)
    assert cal.uncovered_years == set()


def test_official_calendar_has_the_2026_spring_festival_schedule() -> None:
    assert days(date(2026, 2, 15), date(2026, 2, 23)) == SPRING_2026
    assert [date(2026, 2, 14), date(2026, 2, 28)] == SPRING_2026_MAKEUPS
    cal = WorkCalendar()
    assert not any(cal.is_workday(d) for d in SPRING_2026)
    assert all(cal.is_workday(d) for d in SPRING_2026_MAKEUPS)  # both Saturdays


def test_uncovered_year_falls_back_to_weekdays_and_is_recorded() -> None:
    cal = WorkCalendar()
    assert cal.is_workday(date(2027, 1, 1))  # a Friday: the package does not know New Year 2027
    assert not cal.is_workday(date(2027, 1, 2))
    assert cal.uncovered_years == {2027}


def test_overrides_beat_the_official_calendar() -> None:
    cal = WorkCalendar({date(2025, 10, 8): True, date(2025, 10, 9): False})
    assert cal.is_workday(date(2025, 10, 8))
    assert not cal.is_workday(date(2025, 10, 9))


# -- the working-day clock ---------------------------------------------------------------------


def test_7wd_from_friday_before_national_day_ends_13_october_same_time(clocks: Clocks) -> None:
    due = clocks.due(sh(2025, 9, 26, 10), D("7wd"))
    assert local(due) == sh(2025, 10, 13, 10)
    assert due is not None and due.tzinfo is UTC


def test_wd_counts_make_up_working_day_on_a_sunday(clocks: Clocks) -> None:
    # Saturday 27 September is off; Sunday 28 September is a make-up working day.
    assert local(clocks.due(sh(2025, 9, 27, 10), D("1wd"))) == sh(2025, 9, 29)


def test_wd_start_on_a_holiday_counts_from_next_working_day_midnight(clocks: Clocks) -> None:
    start = sh(2025, 10, 3, 15)
    assert local(clocks.due(start, D("1wd"))) == sh(2025, 10, 10)  # all of 9 October
    # 9, 10, 11 (make-up Saturday), 13, 14, 15, 16 October
    assert local(clocks.due(start, D("7wd"))) == sh(2025, 10, 17)
    assert clocks.elapsed("wd", start, sh(2025, 10, 9)) == 0
    assert clocks.elapsed("wd", start, sh(2025, 10, 9, 6)) == 6 * 3600


def test_wd_start_on_a_weekend_counts_from_monday(clocks: Clocks) -> None:
    assert local(clocks.due(sh(2025, 9, 20, 23, 59), D("2wd"))) == sh(2025, 9, 24)


def test_wd_limit_running_out_at_midnight_is_due_at_the_end_of_that_day(
    clocks: Clocks,
) -> None:
    # Friday 19 September 00:00 + 1wd: due at the end of Friday, not on Monday.
    assert local(clocks.due(sh(2025, 9, 19), D("1wd"))) == sh(2025, 9, 20)


def test_wd_across_spring_festival_2026(clocks: Clocks) -> None:
    # Fri 13 Feb 10:00: 14 h on Friday, the make-up Saturday 14 Feb, then nothing until 24 Feb.
    start = sh(2026, 2, 13, 10)
    assert local(clocks.due(start, D("2wd"))) == sh(2026, 2, 24, 10)
    assert local(clocks.due(start, D("3wd"))) == sh(2026, 2, 25, 10)
    # 24, 25, 26, 27 and the make-up Saturday 28 February
    assert local(clocks.due(sh(2026, 2, 23, 12), D("5wd"))) == sh(2026, 3, 1)


def test_15wd_into_uncovered_2027_is_sane_and_marks_the_year(clocks: Clocks) -> None:
    start = sh(2026, 12, 20, 9)
    due = local(clocks.due(start, D("15wd")))
    assert timedelta(days=19) <= due - start <= timedelta(days=25)
    assert due == sh(2027, 1, 9)  # Mon–Fri in 2027, 1 January counted as a plain Friday
    assert 2027 in clocks.calendar.uncovered_years
    assert clocks.elapsed("wd", start, due) == 15 * 86400


def test_far_uncovered_years_never_raise() -> None:
    clocks = Clocks(WorkCalendar(), SH)
    start = sh(2031, 6, 6, 9)
    assert local(clocks.due(start, D("60wd"))) > start
    assert clocks.elapsed("wh", sh(2028, 1, 1), sh(2031, 1, 1)) > 0
    assert {2028, 2029, 2030, 2031} <= clocks.calendar.uncovered_years


def test_pack_holiday_override_in_2027_shifts_the_due_by_one_working_day() -> None:
    start = sh(2026, 12, 20, 9)
    plain = Clocks(WorkCalendar(), SH).due(start, D("15wd"))
    declared = Clocks(WorkCalendar({date(2027, 1, 1): False}), SH).due(start, D("15wd"))
    assert plain is not None and declared is not None
    assert local(declared) == sh(2027, 1, 12)  # 1 January skipped: one more working day
    assert Clocks(WorkCalendar(), SH).elapsed("wd", plain, declared) == 86400


def test_override_make_up_working_day_counts() -> None:
    clocks = Clocks(WorkCalendar({date(2025, 9, 20): True}), SH)
    assert local(clocks.due(sh(2025, 9, 19, 10), D("1wd"))) == sh(2025, 9, 20, 10)


def test_a_calendar_without_any_working_day_raises_instead_of_looping() -> None:
    never = {date(2025, 1, 1) + timedelta(n): False for n in range(3700)}
    with pytest.raises(ValueError, match="no working time"):
        Clocks(WorkCalendar(never), SH).due(sh(2025, 1, 1), D("1wd"))


# -- the working-hour clock --------------------------------------------------------------------


def test_default_working_hours() -> None:
    assert ((time(9), time(12)), (time(13, 30), time(17, 30))) == DEFAULT_WORKING_HOURS


def test_2wh_across_lunch(clocks: Clocks) -> None:
    assert local(clocks.due(sh(2025, 9, 24, 11), D("2wh"))) == sh(2025, 9, 24, 14, 30)


def test_2wh_started_at_lunch_starts_counting_after_lunch(clocks: Clocks) -> None:
    assert local(clocks.due(sh(2025, 9, 24, 12, 30), D("2wh"))) == sh(2025, 9, 24, 15, 30)


def test_2wh_started_before_office_hours(clocks: Clocks) -> None:
    assert local(clocks.due(sh(2025, 9, 24, 7), D("2wh"))) == sh(2025, 9, 24, 11)


def test_2wh_running_out_at_closing_time_is_due_that_evening(clocks: Clocks) -> None:
    assert local(clocks.due(sh(2025, 9, 24, 15, 30), D("2wh"))) == sh(2025, 9, 24, 17, 30)


def test_2wh_after_closing_time_is_due_next_morning(clocks: Clocks) -> None:
    assert local(clocks.due(sh(2025, 9, 24, 17, 30), D("2wh"))) == sh(2025, 9, 25, 11)


def test_2wh_across_a_weekend(clocks: Clocks) -> None:
    assert local(clocks.due(sh(2025, 9, 19, 16, 30), D("2wh"))) == sh(2025, 9, 22, 10)


def test_2wh_across_a_holiday(clocks: Clocks) -> None:
    assert local(clocks.due(sh(2025, 9, 30, 16, 30), D("2wh"))) == sh(2025, 10, 9, 10)


def test_a_working_day_has_7_working_hours(clocks: Clocks) -> None:
    assert clocks.elapsed("wh", sh(2025, 9, 24), sh(2025, 9, 25)) == 7 * 3600
    assert clocks.elapsed("wh", sh(2025, 9, 27), sh(2025, 9, 28)) == 0  # a Saturday
    assert local(clocks.due(sh(2025, 9, 24, 9), D("7wh"))) == sh(2025, 9, 24, 17, 30)


def test_custom_working_hours() -> None:
    clocks = Clocks(WorkCalendar(), SH, ((time(8), time(12)), (time(14), time(18))))
    assert local(clocks.due(sh(2025, 9, 24, 11), D("2wh"))) == sh(2025, 9, 24, 15)
    assert clocks.elapsed("wh", sh(2025, 9, 24), sh(2025, 9, 25)) == 8 * 3600


@pytest.mark.parametrize(
    "hours",
    [
        (),
        ((time(12), time(9)),),
        ((time(9), time(12)), (time(11), time(17))),
        ((time(13), time(17)), (time(9), time(12))),
        ((time(9, tzinfo=SH), time(12)),),
    ],
)
def test_bad_working_hours_are_refused(hours: tuple[tuple[time, time], ...]) -> None:
    with pytest.raises(ValueError):
        Clocks(WorkCalendar(), SH, hours)


# -- the wall clock ----------------------------------------------------------------------------


def test_2h_is_plain_elapsed_time_even_on_a_holiday(clocks: Clocks) -> None:
    assert local(clocks.due(sh(2025, 10, 1, 23), D("2h"))) == sh(2025, 10, 2, 1)


def test_24h_ignores_weekends_and_holidays(clocks: Clocks) -> None:
    assert local(clocks.due(sh(2025, 9, 30, 20), D("24h"))) == sh(2025, 10, 1, 20)
    assert local(clocks.due(sh(2025, 9, 27, 8), D("24h"))) == sh(2025, 9, 28, 8)


def test_minutes_and_calendar_days(clocks: Clocks) -> None:
    assert local(clocks.due(sh(2025, 9, 24, 23, 50), D("15m"))) == sh(2025, 9, 25, 0, 5)
    assert local(clocks.due(sh(2025, 9, 30, 9), D("3d"))) == sh(2025, 10, 3, 9)


def test_inputs_in_any_zone_give_the_same_due(clocks: Clocks) -> None:
    start = sh(2025, 9, 26, 10)
    for zone in (UTC, NY, ZoneInfo("Europe/Berlin")):
        assert clocks.due(start.astimezone(zone), D("7wd")) == clocks.due(start, D("7wd"))
        assert clocks.due(start.astimezone(zone), D("2wh")) == clocks.due(start, D("2wh"))


def test_naive_datetimes_are_refused(clocks: Clocks) -> None:
    with pytest.raises(ValueError, match="naive"):
        clocks.due(datetime(2025, 9, 26, 10), D("7wd"))
    with pytest.raises(ValueError, match="naive"):
        clocks.elapsed("h", sh(2025, 9, 26), datetime(2025, 9, 27))


def test_unknown_unit_is_refused(clocks: Clocks) -> None:
    with pytest.raises(ValueError, match="unit"):
        clocks.elapsed("y", sh(2025, 9, 26), sh(2025, 9, 27))
    with pytest.raises(ValueError, match="unit"):
        limit_seconds(Duration(1, "y"))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("2h", 7200), ("3d", 259200), ("7wd", 604800), ("2wh", 7200), ("0h", 0)],
)
def test_limit_seconds(clocks: Clocks, text: str, seconds: int) -> None:
    assert clocks.limit_seconds(D(text)) == limit_seconds(D(text)) == seconds


def test_zero_limit_is_due_at_the_start(clocks: Clocks) -> None:
    start = sh(2025, 10, 3, 15)  # a holiday
    assert local(clocks.due(start, D("0wd"))) == start
    assert clocks.progress(start, D("0wd"), start) == 1.0


# -- pauses (挂起) -----------------------------------------------------------------------------


def test_a_3_hour_pause_moves_a_24h_due_by_3_hours(clocks: Clocks) -> None:
    start = sh(2025, 9, 24, 10)
    pause = (sh(2025, 9, 24, 12), sh(2025, 9, 24, 15))
    assert local(clocks.due(start, D("24h"), [pause])) == sh(2025, 9, 25, 13)
    assert clocks.elapsed("h", start, sh(2025, 9, 25, 13), [pause]) == 24 * 3600


def test_a_pause_over_a_weekend_does_not_skip_the_weekend_twice(clocks: Clocks) -> None:
    start = sh(2025, 9, 15, 10)  # Monday
    assert local(clocks.due(start, D("7wd"))) == sh(2025, 9, 24, 10)
    # Friday 18:00 to Monday 09:00 holds 6 + 9 = 15 working-day hours.
    pause = (sh(2025, 9, 19, 18), sh(2025, 9, 22, 9))
    assert local(clocks.due(start, D("7wd"), [pause])) == sh(2025, 9, 25, 1)
    # A pause inside the weekend costs nothing.
    weekend = (sh(2025, 9, 20, 10), sh(2025, 9, 21, 20))
    assert local(clocks.due(start, D("7wd"), [weekend])) == sh(2025, 9, 24, 10)


def test_a_pause_over_lunch_does_not_move_a_wh_due(clocks: Clocks) -> None:
    pause = (sh(2025, 9, 24, 12), sh(2025, 9, 24, 13, 30))
    assert local(clocks.due(sh(2025, 9, 24, 11), D("2wh"), [pause])) == sh(2025, 9, 24, 14, 30)


def test_an_open_pause_stops_the_clock(clocks: Clocks) -> None:
    start = sh(2025, 9, 24, 10)
    pauses = [(sh(2025, 9, 24, 12), None)]
    assert clocks.due(start, D("24h"), pauses) is None
    assert clocks.at_fraction(start, D("24h"), 0.8, pauses) is None
    assert clocks.elapsed("h", start, sh(2025, 12, 1), pauses) == 2 * 3600
    assert clocks.progress(start, D("24h"), sh(2025, 12, 1), pauses) == pytest.approx(2 / 24)
    assert clocks.due_with_extensions(start, D("24h"), [D("3wd")], pauses) is None


def test_an_open_pause_after_the_due_does_not_matter(clocks: Clocks) -> None:
    start = sh(2025, 9, 24, 10)
    pauses = [(sh(2025, 9, 24, 12), None)]
    assert local(clocks.due(start, D("2h"), pauses)) == sh(2025, 9, 24, 12)
    assert local(clocks.due(start, D("1h"), pauses)) == sh(2025, 9, 24, 11)


def test_pauses_before_the_start_count_only_from_the_start(clocks: Clocks) -> None:
    start = sh(2025, 9, 24, 10)
    before = (sh(2025, 9, 23, 10), sh(2025, 9, 23, 12))
    straddling = (sh(2025, 9, 24, 9), sh(2025, 9, 24, 11))
    assert local(clocks.due(start, D("2h"), [before])) == sh(2025, 9, 24, 12)
    assert local(clocks.due(start, D("2h"), [straddling])) == sh(2025, 9, 24, 13)


def test_overlapping_and_unsorted_pauses_count_once(clocks: Clocks) -> None:
    start = sh(2025, 9, 24, 10)
    pauses = [
        (sh(2025, 9, 24, 13), sh(2025, 9, 24, 14)),
        (sh(2025, 9, 24, 11), sh(2025, 9, 24, 12)),
        (sh(2025, 9, 24, 11, 30), sh(2025, 9, 24, 13, 30)),
    ]
    # 11:00-14:00 paused: 3 hours
    assert local(clocks.due(start, D("4h"), pauses)) == sh(2025, 9, 24, 17)
    assert clocks.elapsed("h", start, sh(2025, 9, 24, 17), pauses) == 4 * 3600


def test_a_pause_that_resumes_before_it_began_is_refused(clocks: Clocks) -> None:
    with pytest.raises(ValueError, match="pause"):
        clocks.due(sh(2025, 9, 24), D("2h"), [(sh(2025, 9, 24, 12), sh(2025, 9, 24, 11))])


# -- progress, remaining, warnings, extensions ---------------------------------------------------


@pytest.mark.parametrize("limit", ["15m", "2h", "24h", "3d", "2wh", "7wd", "15wd"])
def test_progress_remaining_and_80_percent_agree_with_due(clocks: Clocks, limit: str) -> None:
    start = sh(2025, 9, 26, 10)
    pauses = [(sh(2025, 9, 26, 10, 5), sh(2025, 9, 26, 10, 10))]
    due = clocks.due(start, D(limit), pauses)
    warn = clocks.at_fraction(start, D(limit), 0.8, pauses)
    assert due is not None and warn is not None
    assert start < warn < due
    assert clocks.progress(start, D(limit), start, pauses) == 0.0
    assert clocks.progress(start, D(limit), warn, pauses) == pytest.approx(0.8, abs=1e-6)
    assert clocks.progress(start, D(limit), due, pauses) == 1.0
    assert clocks.remaining(start, D(limit), start, pauses) == limit_seconds(D(limit))
    assert clocks.remaining(start, D(limit), due, pauses) == 0.0
    later = due + timedelta(days=30)
    assert clocks.progress(start, D(limit), later, pauses) > 1.0
    assert clocks.remaining(start, D(limit), later, pauses) < 0
    assert clocks.at_fraction(start, D(limit), 1.0, pauses) == due


def test_80_percent_of_7wd_before_national_day(clocks: Clocks) -> None:
    # 5.6 working days: 14 h on 26 Sep, 28, 29, 30 Sep, 9, 10 Oct, then 24 minutes of 11 Oct.
    warn = clocks.at_fraction(sh(2025, 9, 26, 10), D("7wd"), 0.8)
    assert local(warn) == sh(2025, 10, 11, 0, 24)


def test_progress_before_the_start_is_zero(clocks: Clocks) -> None:
    assert clocks.progress(sh(2025, 9, 26, 10), D("2h"), sh(2025, 9, 26, 9)) == 0.0


def test_bad_fraction_is_refused(clocks: Clocks) -> None:
    with pytest.raises(ValueError):
        clocks.at_fraction(sh(2025, 9, 26), D("2h"), -0.1)
    with pytest.raises(ValueError):
        clocks.at_fraction(sh(2025, 9, 26), D("2h"), float("nan"))


def test_an_extension_of_3wd_moves_the_due_by_3_working_days(clocks: Clocks) -> None:
    start = sh(2025, 9, 26, 10)
    extended = clocks.due_with_extensions(start, D("7wd"), [D("3wd")])
    assert local(extended) == sh(2025, 10, 16, 10)
    assert extended == clocks.due(start, D("10wd"))


def test_extensions_stack_and_run_on_their_own_clocks(clocks: Clocks) -> None:
    start = sh(2025, 9, 24, 10)
    # 24h -> Thu 25 Sep 10:00; + 2wh -> 12:00; + 1wd -> Fri 26 Sep 12:00
    extended = clocks.due_with_extensions(start, D("24h"), [D("2wh"), D("1wd")])
    assert local(extended) == sh(2025, 9, 26, 12)
    assert clocks.due_with_extensions(start, D("24h"), []) == clocks.due(start, D("24h"))


def test_a_pause_after_the_first_due_still_delays_an_extension(clocks: Clocks) -> None:
    start = sh(2025, 9, 24, 10)
    pause = (sh(2025, 9, 25, 11), sh(2025, 9, 25, 13))
    extended = clocks.due_with_extensions(start, D("24h"), [D("5h")], [pause])
    assert local(extended) == sh(2025, 9, 25, 17)


# -- a zone with daylight-saving time ----------------------------------------------------------
# New York 2025: 9 March 02:00 -> 03:00, 2 November 02:00 -> 01:00; both Sundays, made working
# days here so the clocks run through the changes.

NY_CALENDAR = {date(2025, 3, 9): True, date(2025, 11, 1): True, date(2025, 11, 2): True}


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0, fold: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NY, fold=fold)


@pytest.fixture
def ny_clocks() -> Clocks:
    return Clocks(WorkCalendar(NY_CALENDAR), NY)


def test_dst_wd_keeps_the_wall_clock_time(ny_clocks: Clocks) -> None:
    assert local(ny_clocks.due(ny(2025, 3, 7, 10), D("2wd")), NY) == ny(2025, 3, 10, 10)
    assert local(ny_clocks.due(ny(2025, 10, 31, 10), D("2wd")), NY) == ny(2025, 11, 2, 10)
    assert ny_clocks.elapsed("wd", ny(2025, 3, 9), ny(2025, 3, 10)) == 86400  # 23 real hours
    assert ny_clocks.elapsed("wd", ny(2025, 11, 2), ny(2025, 11, 3)) == 86400  # 25 real hours


def test_dst_wall_clock_is_real_elapsed_time(ny_clocks: Clocks) -> None:
    assert local(ny_clocks.due(ny(2025, 3, 8, 10), D("24h")), NY) == ny(2025, 3, 9, 11)
    assert local(ny_clocks.due(ny(2025, 11, 1, 10), D("1d")), NY) == ny(2025, 11, 2, 9)


def test_dst_due_in_a_skipped_hour_is_the_jump(ny_clocks: Clocks) -> None:
    # 1wd from Fri 02:30 (Saturday off) needs Sunday 02:30, which does not exist.
    due = ny_clocks.due(ny(2025, 3, 7, 2, 30), D("1wd"))
    assert due == datetime(2025, 3, 9, 7, tzinfo=UTC)  # 03:00 EDT, the jump
    assert ny_clocks.elapsed("wd", ny(2025, 3, 7, 2, 30), due) == 86400 + 1800


def test_dst_repeated_hour_counts_once_on_the_wd_clock(ny_clocks: Clocks) -> None:
    first, second = ny(2025, 11, 2, 1, 30), ny(2025, 11, 2, 1, 30, fold=1)
    assert second - first == timedelta(0)  # same wall time
    assert second.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=1)
    assert ny_clocks.elapsed("wd", first, second) == 1800  # 01:30 -> 02:00, then it stands
    assert ny_clocks.elapsed("h", first, second) == 3600
    assert ny_clocks.elapsed("wd", second, ny(2025, 11, 2, 2, 30)) == 1800
    # 30 minutes from 01:30 (first pass) run out the moment the clock reaches 02:00: at the jump.
    due = ny_clocks.at_fraction(first, D("1wd"), 1 / 48)
    assert due == datetime(2025, 11, 2, 6, tzinfo=UTC)


def test_dst_start_in_the_repeated_hour(ny_clocks: Clocks) -> None:
    second = ny(2025, 11, 2, 1, 30, fold=1)
    assert local(ny_clocks.due(second, D("2h")), NY) == ny(2025, 11, 2, 3, 30)
    due = ny_clocks.due(second, D("1wd"))
    assert due is not None and local(due, NY) == ny(2025, 11, 3, 2)
    assert ny_clocks.elapsed("wd", second, due) == 86400


# -- properties ------------------------------------------------------------------------------

SHARED = Clocks(WorkCalendar(), SH)
MAX_AMOUNT = {"m": 600, "h": 96, "d": 30, "wd": 60, "wh": 60}

starts = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(SH)
)


@st.composite
def limits(draw: st.DrawFn, unit: str | None = None) -> Duration:
    unit = unit or draw(st.sampled_from(sorted(MAX_AMOUNT)))
    return Duration(draw(st.integers(1, MAX_AMOUNT[unit])), unit)


@st.composite
def pauses(draw: st.DrawFn, start: datetime) -> tuple[datetime, datetime | None]:
    paused = start + timedelta(minutes=draw(st.integers(-3 * 1440, 60 * 1440)))
    if draw(st.integers(0, 9)) == 0:
        return paused, None
    return paused, paused + timedelta(minutes=draw(st.integers(0, 20 * 1440)))


@PROPERTY
@given(starts, limits())
def test_property_elapsed_to_the_due_is_the_limit(start: datetime, limit: Duration) -> None:
    due = SHARED.due(start, limit)
    assert due is not None and due >= start
    assert abs(SHARED.elapsed(limit.unit, start, due) - limit_seconds(limit)) <= 1
    assert SHARED.progress(start, limit, due) == 1.0
    assert SHARED.remaining(start, limit, due) == 0.0


@PROPERTY
@given(starts, st.sampled_from(sorted(MAX_AMOUNT)), st.data())
def test_property_due_is_monotonic_in_the_amount(
    start: datetime, unit: str, data: st.DataObject
) -> None:
    a, b = data.draw(limits(unit)), data.draw(limits(unit))
    if a.amount > b.amount:
        a, b = b, a
    due_a, due_b = SHARED.due(start, a), SHARED.due(start, b)
    assert due_a is not None and due_b is not None
    assert start <= due_a <= due_b
    if a.amount < b.amount:
        assert SHARED.at_fraction(start, b, a.amount / b.amount) == pytest.approx(
            due_a, abs=timedelta(seconds=1)
        )


@PROPERTY
@given(starts, limits(), st.data())
def test_property_a_pause_never_makes_the_due_earlier(
    start: datetime, limit: Duration, data: st.DataObject
) -> None:
    pause = data.draw(pauses(start))
    plain, paused = SHARED.due(start, limit), SHARED.due(start, limit, [pause])
    assert plain is not None
    if paused is None:
        assert pause[1] is None and pause[0] < plain
        return
    assert paused >= plain
    assert abs(SHARED.elapsed(limit.unit, start, paused, [pause]) - limit_seconds(limit)) <= 1
    assert SHARED.progress(start, limit, paused, [pause]) == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(
    st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 25)),
    st.integers(0, 5 * 96),
    st.lists(st.tuples(st.integers(-96, 5 * 96), st.integers(0, 2 * 96) | st.none()), max_size=3),
)
def test_property_elapsed_matches_a_quarter_hour_count(
    start: datetime, quarters: int, pause_quarters: list[tuple[int, int | None]]
) -> None:
    start = start.replace(minute=start.minute // 15 * 15, second=0, microsecond=0, tzinfo=SH)
    end = start + timedelta(minutes=15 * quarters)
    quarter = timedelta(minutes=15)
    pauses = [
        (start + at * quarter, None if length is None else start + (at + length) * quarter)
        for at, length in pause_quarters
    ]
    hours = [(time(9), time(12)), (time(13, 30), time(17, 30))]
    counted = {"h": 0, "wd": 0, "wh": 0}
    t = start
    while t < end:
        paused = any(a <= t and (b is None or t < b) for a, b in pauses)
        if not paused:
            counted["h"] += 900
            if SHARED.calendar.is_workday(t.date()):
                counted["wd"] += 900
                counted["wh"] += 900 * any(a <= t.time() < b for a, b in hours)
        t += quarter
    for unit, seconds in counted.items():
        assert SHARED.elapsed(unit, start, end, pauses) == seconds


NY_SHARED = Clocks(WorkCalendar(NY_CALENDAR), NY)


NEAR_DST_CHANGES = st.datetimes(
    min_value=datetime(2025, 2, 20), max_value=datetime(2025, 3, 10), timezones=st.just(NY)
) | st.datetimes(
    min_value=datetime(2025, 10, 20), max_value=datetime(2025, 11, 3), timezones=st.just(NY)
)


@PROPERTY
@given(NEAR_DST_CHANGES, limits("wd") | limits("wh") | limits("h"))
def test_property_dst_zone_due_is_exact_unless_it_lands_in_a_skipped_hour(
    start: datetime, limit: Duration
) -> None:
    due = NY_SHARED.due(start, limit)
    assert due is not None and due >= start
    counted = NY_SHARED.elapsed(limit.unit, start, due)
    at_jump = local(due, NY).utcoffset() != local(due - timedelta(microseconds=1), NY).utcoffset()
    if at_jump:
        assert 0 <= counted - limit_seconds(limit) <= 3600
    else:
        assert abs(counted - limit_seconds(limit)) <= 1


# -- tiers -----------------------------------------------------------------------------------


def tier(
    rules: list[dict[str, object]],
    *,
    category_code: str | None = "010101",
    request_type: str | None = "help",
    urgent: bool = False,
    category_tier: str | None = None,
) -> str:
    return choose_tier(
        rules,
        category_code=category_code,
        request_type=request_type,
        urgent=urgent,
        category_tier=category_tier,
        default_tier="T7d",
    )


def test_tier_without_rules_is_the_categorys_then_the_default() -> None:
    assert tier([], category_tier="T24h") == "T24h"
    assert tier([]) == "T7d"
    assert tier([], category_code=None) == "T7d"


def test_tier_urgent_rule_beats_the_category_tier() -> None:
    rules: list[dict[str, object]] = [{"urgent": True, "tier": "T2h"}]
    assert tier(rules, urgent=True, category_tier="T15d") == "T2h"
    assert tier(rules, urgent=False, category_tier="T15d") == "T15d"


def test_tier_urgent_false_rule_matches_only_ordinary_orders() -> None:
    rules: list[dict[str, object]] = [{"urgent": False, "tier": "T15d"}]
    assert tier(rules, urgent=False) == "T15d"
    assert tier(rules, urgent=True) == "T7d"


def test_tier_first_matching_rule_wins() -> None:
    rules: list[dict[str, object]] = [
        {"category": "0102", "tier": "T24h"},
        {"category": "01", "tier": "T15d"},
        {"tier": "T2h"},
    ]
    assert tier(rules, category_code="010201") == "T24h"
    assert tier(rules, category_code="010101") == "T15d"
    assert tier(rules, category_code="02") == "T2h"
    assert tier(list(reversed(rules)), category_code="010201") == "T2h"


def test_tier_category_rule_is_a_code_prefix() -> None:
    rules: list[dict[str, object]] = [{"category": "0101", "tier": "T24h"}]
    assert tier(rules, category_code="0101") == "T24h"
    assert tier(rules, category_code="010103") == "T24h"
    assert tier(rules, category_code="01") == "T7d"  # the parent is not under it
    assert tier(rules, category_code="0102") == "T7d"
    assert tier(rules, category_code=None) == "T7d"


def test_tier_rule_needs_all_its_keys() -> None:
    rules: list[dict[str, object]] = [
        {"category": "01", "request_type": "complain", "urgent": True, "tier": "T2h"},
        {"request_type": "complain", "tier": "T24h"},
    ]
    assert tier(rules, category_code="0101", request_type="complain", urgent=True) == "T2h"
    assert tier(rules, category_code="0101", request_type="complain") == "T24h"
    assert tier(rules, category_code="02", request_type="complain", urgent=True) == "T24h"
    assert tier(rules, category_code="0101", request_type="help", urgent=True) == "T7d"
    assert tier(rules, category_code="0101", request_type=None, urgent=True) == "T7d"


def test_beijing_pack_tiers() -> None:
    pack = yaml.safe_load(BEIJING_PACK.read_text(encoding="utf-8"))
    rules, tiers = pack["tier_rules"], pack["tiers"]
    assert tier(rules, urgent=True, category_tier="T15d") == "T2h"
    assert tier(rules, urgent=False, category_tier="T15d") == "T15d"
    assert tier(rules, urgent=False) == pack["default_tier"] == "T7d"
    assert phase_limits(tiers, "T2h") == {
        "accept": D("15m"),
        "contact": D("30m"),
        "complete": D("2h"),
    }
    assert phase_limits(tiers, "T7d") == {
        "accept": D("2wh"),
        "contact": D("24h"),
        "complete": D("7wd"),
    }
    assert phase_limits(tiers, "T15d")["complete"] == D("15wd")
    assert list(phase_limits(tiers, "T24h")) == ["accept", "contact", "complete"]


def test_phase_limits_refuses_unknown_tiers_and_bad_limits() -> None:
    with pytest.raises(KeyError, match="T9"):
        phase_limits({"T7d": {"accept": "2wh", "contact": "24h", "complete": "7wd"}}, "T9")
    with pytest.raises(KeyError, match="complete"):
        phase_limits({"T7d": {"accept": "2wh", "contact": "24h"}}, "T7d")
    with pytest.raises(ValueError):
        phase_limits({"T7d": {"accept": "2 hours", "contact": "24h", "complete": "7wd"}}, "T7d")
