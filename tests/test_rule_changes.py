"""A change of the rules deadlines come from — the calendar, a tier's limits — moves `due_at`, the
timers, the overdue list and the assessment's facts of the orders it affects (issue 13 §3.4,
§4.1). Every clock is pinned: actions and recomputations take `now=`, the overdue list is read
with the clock travelled to a fixed instant.

The issue's case: a T7d order dispatched on Sunday 2026-12-27 with 23 working days of extension
runs 30 working days from Monday 12-28. With 2027-01-01 a working day it is due at the end of
Friday 2027-02-05 (02-06 00:00); with 01-01 a holiday, at the end of Monday 02-08 (02-09 00:00).
chinesecalendar 1.11 (pinned) does not know 2027, so its other days are Monday–Friday.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from conftest import TINY_PACK
from conftest import principal as person
from sqlalchemy import select

from jiesu.assessment.models import MetricFact
from jiesu.assessment.service import rebuild, snapshot
from jiesu.citypack.load import load_pack
from jiesu.citypack.parse import read_pack
from jiesu.db.engine import Database
from jiesu.org.service import remove_calendar_day, set_calendar_day
from jiesu.taxonomy.models import CalendarOverride
from jiesu.taxonomy.service import bump_reference
from jiesu.tickets import rule_changes
from jiesu.tickets.actions import take_action
from jiesu.tickets.models import Channel, Job, Outbox, Ticket
from jiesu.tickets.rule_changes import RuleChange
from jiesu.tickets.scheduled import run_due_jobs
from jiesu.tickets.service import TicketFilter, create_ticket, list_tickets
from jiesu.tickets.shapes import TicketCreate
from jiesu.timelimits.calendar import changed_days
from jiesu.timelimits.tiers import EVERY_TIER, NO_TIER, changed_tiers

BJ = ZoneInfo("Asia/Shanghai")
NEW_YEAR = date(2027, 1, 1)
DUE_IF_WORKDAY = datetime(2027, 2, 6, tzinfo=BJ)
DUE_IF_HOLIDAY = datetime(2027, 2, 9, tzinfo=BJ)
BETWEEN = datetime(2027, 2, 7, 12, 0, tzinfo=BJ)  # past the first due, before the second


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BJ)  # type: ignore[misc]


def order(db: Database, *steps: tuple[str, str, dict[str, object], datetime]) -> int:
    """A ticket taken in at the first step's time, then each (action, username, data, at)."""
    agent = person(db, "agent1")
    with db.write() as s:
        t = create_ticket(
            TicketCreate(channel=Channel.phone, content="路灯不亮已经三天了"),
            actor=agent, db_session=s, now=steps[0][3],
        )  # fmt: skip
        ticket_id = t.id
    for action, who, data, at in steps:
        with db.write() as s:
            take_action(ticket_id, action, data, actor=person(db, who), db_session=s, now=at)
    return ticket_id


def extended(db: Database) -> int:
    """The issue's order: open, accepted, 23 working days of extension."""
    d = local(2026, 12, 27, 10)
    return order(
        db,
        ("dispatch", "dispatcher1", {"lead": "S11"}, d),
        ("accept", "s11.handler", {}, local(2026, 12, 28, 9, 30)),
        ("request_extension", "s11.handler", {"days": 23, "reason": "需协调多个部门"},
         local(2026, 12, 28, 10)),
        ("review_extension", "dispatcher1", {"approved": True, "days": 23},
         local(2026, 12, 28, 11)),
    )  # fmt: skip


def signed_on_new_year(db: Database) -> int:
    """Dispatched 2026-12-31 17:00, accepted 2027-01-04 09:30: the 2wh accept limit ends at
    01-01 10:30 if 01-01 works (late), at 01-04 10:30 if it is a holiday (on time)."""
    return order(
        db,
        ("dispatch", "dispatcher1", {"lead": "S11"}, local(2026, 12, 31, 17)),
        ("accept", "s11.handler", {}, local(2027, 1, 4, 9, 30)),
    )


def due_at(db: Database, ticket_id: int) -> datetime | None:
    with db.read() as s:
        return s.get(Ticket, ticket_id).due_at  # type: ignore[union-attr]


def pending_complete_overdue(db: Database, ticket_id: int) -> list[datetime]:
    with db.read() as s:
        return list(
            s.scalars(
                select(Job.run_at).where(
                    Job.ticket_id == ticket_id,
                    Job.phase == "complete",
                    Job.kind == "overdue",
                    Job.status == "pending",
                )
            )
        )


def overdue_list(db: Database, at: datetime) -> set[int]:
    centre = person(db, "dispatcher1")
    with time_machine.travel(at, tick=False), db.read() as s:
        rows, _ = list_tickets(
            TicketFilter(overdue=True), actor=centre, db_session=s, page_size=100
        )
    return {t.id for t in rows}


def accepted_on_time(db: Database, ticket_id: int) -> int:
    with db.read() as s:
        return sum(
            s.scalars(select(MetricFact.accepted_on_time).where(MetricFact.ticket_id == ticket_id))
        )


def replied(db: Database, ticket_id: int) -> tuple[int, int]:
    """(on time, late) summed over the order's facts."""
    with db.read() as s:
        rows = s.execute(
            select(MetricFact.replied_on_time, MetricFact.replied_late).where(
                MetricFact.ticket_id == ticket_id
            )
        ).all()
    return sum(r[0] for r in rows), sum(r[1] for r in rows)


def facts(db: Database) -> dict[tuple[int, int], tuple[object, ...]]:
    with db.read() as s:
        return {
            (f.ticket_id, f.unit_id): (f.day, f.accepted_on_time, f.replied_on_time, f.replied_late)
            for f in s.scalars(select(MetricFact))
        }


def assert_maintained_equals_rebuilt(db: Database) -> None:
    """`jiesu metrics rebuild --check`: the maintained facts and rollups equal a rebuild."""
    with db.read() as s:
        before = snapshot(db_session=s)
    maintained = facts(db)
    with db.write() as s:
        rebuild(db_session=s)
    with db.read() as s:
        assert snapshot(db_session=s) == before
    assert facts(db) == maintained


def calendar(db: Database, kind: str | None, at: datetime) -> None:
    admin = person(db, "admin1")
    with db.write() as s:
        if kind is None:
            remove_calendar_day(NEW_YEAR, actor=admin, db_session=s, ip=None, now=at)
        else:
            set_calendar_day(NEW_YEAR, kind, "元旦", actor=admin, db_session=s, ip=None, now=at)


# ---- the calendar ---------------------------------------------------------------------------


def test_new_year_made_a_holiday_moves_due_at_the_overdue_timer_and_the_overdue_list(
    db: Database,
) -> None:
    t = extended(db)
    assert due_at(db, t) == DUE_IF_HOLIDAY  # the tiny pack's calendar has 01-01 off
    calendar(db, None, local(2027, 1, 5, 9))  # back to the official calendar: 01-01 works
    assert due_at(db, t) == DUE_IF_WORKDAY
    assert pending_complete_overdue(db, t) == [DUE_IF_WORKDAY]
    assert t in overdue_list(db, BETWEEN)

    calendar(db, "holiday", local(2027, 1, 5, 10))  # the issue: 02-06 → 02-09
    assert due_at(db, t) == DUE_IF_HOLIDAY
    assert pending_complete_overdue(db, t) == [DUE_IF_HOLIDAY]
    assert t not in overdue_list(db, BETWEEN)
    assert t in overdue_list(db, local(2027, 2, 9, 0, 1))
    assert_maintained_equals_rebuilt(db)

    calendar(db, "workday", local(2027, 1, 5, 11))  # and back: 02-09 → 02-06
    assert due_at(db, t) == DUE_IF_WORKDAY
    assert pending_complete_overdue(db, t) == [DUE_IF_WORKDAY]
    assert t in overdue_list(db, BETWEEN)
    assert_maintained_equals_rebuilt(db)


def complete_overdue_notices(db: Database, ticket_id: int) -> list[str]:
    with db.read() as s:
        return [
            o.payload["due"]
            for o in s.scalars(select(Outbox).where(Outbox.ticket_id == ticket_id))
            if o.payload.get("phase") == "complete" and o.payload.get("kind") == "overdue"
        ]


def work_until(db: Database, at: datetime) -> None:
    while run_due_jobs(db, now=at.astimezone(UTC)):
        pass


def test_the_worker_warns_at_the_moved_due(db: Database) -> None:
    t = extended(db)  # scheduled for 02-09 under the pack's holiday
    calendar(db, "workday", local(2027, 1, 5, 9))
    work_until(db, local(2027, 2, 6, 0, 30))
    assert complete_overdue_notices(db, t) == [DUE_IF_WORKDAY.astimezone(UTC).isoformat()] * 2
    work_until(db, local(2027, 2, 9, 0, 30))  # the unit and the centre, once
    assert len(complete_overdue_notices(db, t)) == 2


def test_a_timer_whose_due_moved_behind_its_back_does_not_fire_and_heals_the_order(
    db: Database,
) -> None:
    """The worker checks that the due still stands: a calendar written straight into the table
    (no propagation) leaves a stale timer, which is cancelled, not sent; the order is brought
    up to date, so the timer of the due that stands is there."""
    t = extended(db)
    calendar(db, "workday", local(2027, 1, 5, 9))  # timer at 02-06
    with db.write() as s:
        row = s.get(CalendarOverride, NEW_YEAR)
        assert row is not None
        row.kind = "holiday"
        bump_reference(db_session=s)
    work_until(db, local(2027, 2, 6, 0, 30))
    assert complete_overdue_notices(db, t) == []
    with db.read() as s:
        assert s.scalars(
            select(Job.status).where(
                Job.ticket_id == t, Job.phase == "complete", Job.kind == "overdue",
                Job.run_at == DUE_IF_WORKDAY,
            )
        ).all() == ["cancelled"]  # fmt: skip
    assert due_at(db, t) == DUE_IF_HOLIDAY
    assert pending_complete_overdue(db, t) == [DUE_IF_HOLIDAY]
    assert_maintained_equals_rebuilt(db)


def test_a_calendar_change_refreshes_the_facts_it_changes(db: Database) -> None:
    t = signed_on_new_year(db)
    assert accepted_on_time(db, t) == 1  # 01-01 is the pack's holiday
    calendar(db, "workday", local(2027, 1, 5, 9))
    assert accepted_on_time(db, t) == 0
    assert_maintained_equals_rebuilt(db)
    calendar(db, None, local(2027, 1, 5, 10))  # the official calendar: 2027 falls back to Mon–Fri
    assert accepted_on_time(db, t) == 0
    calendar(db, "holiday", local(2027, 1, 5, 11))
    assert accepted_on_time(db, t) == 1
    assert_maintained_equals_rebuilt(db)


def test_an_override_that_changes_no_day_recomputes_nothing(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    extended(db)
    calls: list[object] = []
    monkeypatch.setattr(rule_changes, "recompute", lambda *a, **k: calls.append(a) or 0)
    calendar(db, "holiday", local(2027, 1, 5, 9))  # 01-01 was already the pack's holiday
    assert calls == []


def test_a_large_change_is_queued_and_the_worker_works_it_through_in_batches(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rule_changes, "INLINE_LIMIT", 1)
    monkeypatch.setattr(rule_changes, "BATCH", 1)
    a, b = extended(db), signed_on_new_year(db)
    calendar(db, "workday", local(2027, 1, 5, 9))
    assert due_at(db, a) == DUE_IF_HOLIDAY  # not yet: the job is queued
    with db.read() as s:
        assert rule_changes.pending(db_session=s) == 1
    claims = 0
    while run_due_jobs(db, now=local(2027, 1, 5, 9, 1).astimezone(UTC), batch=1):
        claims += 1
    assert claims >= 2  # one order per claim, then the claim that finds none left
    with db.read() as s:
        assert rule_changes.pending(db_session=s) == 0
        job = s.scalar(select(Job).where(Job.kind == "rules"))
        assert job is not None and job.status == "done" and job.payload["done"] >= 2
    assert due_at(db, a) == DUE_IF_WORKDAY
    assert pending_complete_overdue(db, a) == [DUE_IF_WORKDAY]
    assert accepted_on_time(db, b) == 0
    assert_maintained_equals_rebuilt(db)


def test_the_affected_orders_are_those_whose_deadlines_can_cross_the_days(db: Database) -> None:
    a, b = extended(db), signed_on_new_year(db)
    with db.read() as s:
        assert rule_changes.affected(RuleChange.calendar([NEW_YEAR]), db_session=s) == [a, b]
        # a day after every event and every due: nothing to do
        later = RuleChange.calendar([date(2027, 3, 1)])
        assert rule_changes.affected(later, db_session=s) == []
        # a day before order b existed, after a's due was computed: only a
        early = RuleChange.calendar([date(2026, 12, 29)])
        assert rule_changes.affected(early, db_session=s) == [a]


def test_a_day_at_the_end_of_the_calendar_finds_no_order_and_does_not_overflow(
    db: Database,
) -> None:
    extended(db)
    with db.read() as s:
        for day in (date.min, date.max):
            assert rule_changes.affected(RuleChange.calendar([day]), db_session=s) == []


# ---- the tiers ----------------------------------------------------------------------------


@pytest.fixture
def pack_copy(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "tiny"
    shutil.copytree(TINY_PACK, folder)
    yield folder


def test_a_tier_limit_changed_in_the_pack_moves_due_at_and_the_facts(
    db: Database, pack_copy: Path
) -> None:
    t = extended(db)
    # replied after 8 working days: late on 7wd, on time on 10wd
    r = order(
        db,
        ("dispatch", "dispatcher1", {"lead": "S11"}, local(2026, 11, 2, 10)),
        ("accept", "s11.handler", {}, local(2026, 11, 2, 10, 30)),
        ("contact", "s11.handler", {"note": "已电话联系诉求人"}, local(2026, 11, 2, 11)),
        ("reply", "s11.handler", {"result": "solved", "content": "路灯已修复，已告知诉求人，情况属实"},
         local(2026, 11, 12, 10)),
    )  # fmt: skip
    assert replied(db, r) == (0, 1)
    yaml = pack_copy / "pack.yaml"
    yaml.write_text(yaml.read_text().replace("complete: 7wd", "complete: 10wd"))
    pack = read_pack(pack_copy)
    assert pack.ok, pack.errors
    with db.write() as s:
        stats = load_pack(pack, db_session=s)
    assert stats["settings.updated"] == 1 and stats["orders.recomputed"] >= 2
    # three more working days: Tue 02-09, Wed 02-10, Thu 02-11 → due 02-12 00:00
    assert due_at(db, t) == local(2027, 2, 12)
    assert pending_complete_overdue(db, t) == [local(2027, 2, 12)]
    assert replied(db, r) == (1, 0)
    assert_maintained_equals_rebuilt(db)
    with db.write() as s:  # the same pack again: nothing changes, nothing recomputed
        assert load_pack(pack, db_session=s) == {}


# ---- the pure parts ---------------------------------------------------------------------------


def test_changed_days_are_those_whose_kind_differs() -> None:
    # 2026-10-01 is a national holiday; 2026-10-10 a make-up working day (Saturday)
    official_holiday, official_workday = date(2026, 10, 1), date(2026, 10, 10)
    assert changed_days({}, {official_holiday: False, official_workday: True}) == []
    assert changed_days({official_holiday: False}, {official_holiday: True}) == [official_holiday]
    assert changed_days({NEW_YEAR: False}, {}) == [NEW_YEAR]  # 2027 falls back: Friday works
    assert changed_days({date(2027, 1, 2): False}, {}) == []  # a Saturday stays off


def test_changed_tiers_compares_limits_default_and_report_limit() -> None:
    base = {
        "tiers": {"T7d": {"accept": "2wh", "contact": "24h", "complete": "7wd"},
                  "T2h": {"accept": "15m", "contact": "30m", "complete": "2h"}},
        "default_tier": "T7d", "tier_rules": [{"urgent": True, "tier": "T2h"}],
    }  # fmt: skip
    assert changed_tiers(base, base) == frozenset()
    assert changed_tiers(base, base | {"tier_rules": []}) == frozenset()  # rules: new orders only
    longer = base | {"tiers": base["tiers"] | {"T2h": {**base["tiers"]["T2h"], "complete": "4h"}}}
    assert changed_tiers(base, longer) == {"T2h"}
    seven = base | {"tiers": base["tiers"] | {"T7d": {**base["tiers"]["T7d"], "contact": "8h"}}}
    assert changed_tiers(base, seven) == {"T7d", NO_TIER}
    assert changed_tiers(base, base | {"default_tier": "T2h"}) == {NO_TIER}
    assert changed_tiers(base, base | {"whistle_report_limit": "1h"}) == {EVERY_TIER}
