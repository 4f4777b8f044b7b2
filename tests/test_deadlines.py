"""Deadlines derived from the timeline (SPEC §4): phases, suspension, extension, audit."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jiesu.citypack.parse import Duration
from jiesu.timelimits.calendar import WorkCalendar
from jiesu.timelimits.clocks import Clocks
from jiesu.timelimits.deadlines import Step, deadlines

SH = ZoneInfo("Asia/Shanghai")
T7D = {"accept": Duration(2, "wh"), "contact": Duration(24, "h"), "complete": Duration(7, "wd")}
CLOCKS = Clocks(WorkCalendar(), SH)
DISPATCHED = datetime(2025, 9, 26, 10, 0, tzinfo=SH)  # a Friday before the National Day week


def step(action: str, hours: float, unit: str | None = "S11", **data: object) -> Step:
    return Step(action, DISPATCHED + timedelta(hours=hours), unit, data)


def by_phase(steps: list[Step], now_hours: float) -> dict[str, object]:
    now = DISPATCHED + timedelta(hours=now_hours)
    return {d.phase: d for d in deadlines(steps, T7D, "S11", CLOCKS, now)}


def local(t: datetime | None) -> datetime | None:
    return t.astimezone(SH) if t else None


def test_no_deadlines_before_dispatch() -> None:
    assert deadlines([step("receive", -1, None)], T7D, None, CLOCKS, DISPATCHED) == []


def test_the_three_phases_start_at_dispatch_on_their_own_clocks() -> None:
    d = by_phase([step("receive", -1, None), step("dispatch", 0, None)], 1)
    assert local(d["accept"].due) == datetime(2025, 9, 26, 12, 0, tzinfo=SH)  # 2 working hours
    assert local(d["contact"].due) == datetime(2025, 9, 27, 10, 0, tzinfo=SH)  # 24 hours
    # 7 working days over the National Day holiday, counting the make-up Sunday and Saturday
    assert local(d["complete"].due) == datetime(2025, 10, 13, 10, 0, tzinfo=SH)
    assert d["accept"].progress == pytest.approx(0.5)
    assert not d["accept"].overdue


def test_a_phase_met_late_is_overdue_and_one_met_in_time_is_not() -> None:
    d = by_phase([step("dispatch", 0, None), step("accept", 3), step("contact", 5)], 6)
    assert d["accept"].met_at is not None and d["accept"].overdue  # 3 working hours > 2
    assert not d["contact"].overdue and d["contact"].remaining_seconds > 0


def test_an_unmet_phase_past_its_due_is_overdue() -> None:
    d = by_phase([step("dispatch", 0, None)], 30)
    assert d["contact"].overdue and d["contact"].remaining_seconds < 0


def test_suspended_time_does_not_count() -> None:
    steps = [step("dispatch", 0, None), step("accept", 1), step("suspend", 2), step("resume", 8)]
    d = by_phase(steps, 9)
    assert local(d["contact"].due) == datetime(2025, 9, 27, 16, 0, tzinfo=SH)  # 6 h later


def test_while_suspended_the_clock_stands_still() -> None:
    d = by_phase([step("dispatch", 0, None), step("accept", 1), step("suspend", 2)], 50)
    assert d["contact"].paused and d["contact"].due is None
    assert d["contact"].remaining_seconds == pytest.approx(22 * 3600)


def test_an_approved_extension_moves_the_completion_deadline() -> None:
    steps = [
        step("dispatch", 0, None),
        step("request_extension", 5, days=3),
        step("review_extension", 6, None, approved=True, days=3),
    ]
    assert local(by_phase(steps, 7)["complete"].due) == datetime(2025, 10, 16, 10, 0, tzinfo=SH)
    rejected = [*steps[:2], step("review_extension", 6, None, approved=False)]
    assert local(by_phase(rejected, 7)["complete"].due) == datetime(2025, 10, 13, 10, 0, tzinfo=SH)


def test_a_reply_sent_back_by_audit_runs_again() -> None:
    steps = [step("dispatch", 0, None), step("reply", 20), step("audit", 21, None, passed=False)]
    assert by_phase(steps, 22)["complete"].met_at is None
    steps.append(step("reply", 30))
    assert by_phase(steps, 31)["complete"].met_at == DISPATCHED + timedelta(hours=30)


def test_a_reopen_starts_a_new_round_of_limits() -> None:
    steps = [step("dispatch", 0, None), step("accept", 1), step("reopen", 400, None)]
    d = by_phase(steps, 401)
    assert d["accept"].met_at is None and d["accept"].start == DISPATCHED + timedelta(hours=400)


def test_only_the_lead_meets_the_accept_limit() -> None:
    d = by_phase([step("dispatch", 0, None), step("accept", 1, unit="S12")], 1.5)
    assert d["accept"].met_at is None


def test_each_summoned_unit_must_report_in_within_its_limit() -> None:
    from jiesu.timelimits.deadlines import report_deadlines

    steps = [
        step("dispatch", 0, None),
        step("whistle", 1, units=["D1-CG", "C-RL"]),
        step("report", 1.25, unit="C-RL"),
    ]
    now = DISPATCHED + timedelta(hours=2)
    found = {d.unit: d for d in report_deadlines(steps, Duration(30, "m"), CLOCKS, now)}
    assert set(found) == {"D1-CG", "C-RL"}
    assert found["C-RL"].met_at is not None and not found["C-RL"].overdue
    late = found["D1-CG"]
    assert late.overdue and late.due == DISPATCHED + timedelta(hours=1, minutes=30)
    assert late.warn_at == DISPATCHED + timedelta(hours=1, minutes=24)


def test_a_year_the_calendar_package_does_not_know_is_warned_about_until_entered(db) -> None:  # type: ignore[no-untyped-def]
    from datetime import date

    from jiesu.taxonomy.models import CalendarOverride
    from jiesu.taxonomy.service import calendar_warnings

    with db.read() as s:
        assert calendar_warnings(db_session=s, today=date(2025, 6, 1)) == []
        # the tiny pack enters a 2027 day: the admin has started on that year
        assert calendar_warnings(db_session=s, today=date(2026, 11, 22)) == []
    with db.write() as s:
        s.query(CalendarOverride).delete()
    with db.read() as s:
        (warning,) = calendar_warnings(db_session=s, today=date(2026, 11, 22))
        assert "2027" in warning and "周一至周五" in warning
        assert len(calendar_warnings(db_session=s, today=date(2027, 3, 1))) == 2  # 2027, 2028
