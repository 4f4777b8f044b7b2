"""The demo history: realistic, allowed by the lifecycle table, and safe beside live intake."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from jiesu.citypack.load import load_pack
from jiesu.citypack.parse import read_pack
from jiesu.db.engine import Database
from jiesu.db.migrate import upgrade
from jiesu.demo.generate import DEFAULT_PACK, generate
from jiesu.org.models import Unit
from jiesu.taxonomy.models import Category
from jiesu.tickets.lifecycle import BY_NAME, possible_after
from jiesu.tickets.models import Assignment, Event, Ticket, TicketCounter
from jiesu.tickets.numbering import next_number
from tests.conftest import TINY_PACK

NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)  # 14:00 in Beijing


def _history(
    db: Database,
) -> tuple[list[Ticket], dict[int, list[Event]], dict[int, list[Assignment]]]:
    with db.read() as s:
        tickets = list(s.scalars(select(Ticket)))
        events: dict[int, list[Event]] = defaultdict(list)
        for e in s.scalars(select(Event).order_by(Event.ticket_id, Event.seq)):
            events[e.ticket_id].append(e)
        assignments: dict[int, list[Assignment]] = defaultdict(list)
        for a in s.scalars(select(Assignment).order_by(Assignment.id)):
            assignments[a.ticket_id].append(a)
    return tickets, events, assignments


def test_every_generated_story_follows_the_lifecycle(db: Database) -> None:
    result = generate(db, days=4, per_day=300, now=NOW, pack_dir=TINY_PACK)
    tickets, events, assignments = _history(db)
    assert result.tickets == len(tickets) > 900
    assert result.events == sum(len(v) for v in events.values())
    for t in tickets:
        evs = events[t.id]
        assert [e.seq for e in evs] == list(range(1, len(evs) + 1)), t.number
        assert evs[0].action == "receive" and evs[0].at == t.created_at
        for before, after in pairwise(evs):
            assert after.state_before == before.state_after, (t.number, after.action)
            assert after.at >= before.at, (t.number, after.action)
        for e in evs[1:]:  # after intake, every event is a move the lifecycle table allows
            allowed = possible_after(BY_NAME[e.action], e.state_before or "")
            assert e.state_after in allowed, (t.number, e.action, e.state_before, e.state_after)
        assert all(e.at <= NOW for e in evs)
        assert t.status == evs[-1].state_after
        assert t.version == len(evs)
        assert (t.closed_at is not None) == (t.status == "closed")
        dispatched = [e for e in evs if e.action == "dispatch"]
        assert len([a for a in assignments[t.id] if a.round == 1]) == len(dispatched)
        active = [a for a in assignments[t.id] if a.active]
        assert len(active) <= 1
        if active:
            assert t.lead_unit_id == active[0].unit_id


def test_numbers_are_unique_and_follow_the_days_sequence(db: Database) -> None:
    generate(db, days=3, per_day=200, now=NOW, pack_dir=TINY_PACK)
    with db.read() as s:
        numbers = list(s.scalars(select(Ticket.number)))
        counters = dict(s.execute(select(TicketCounter.day, TicketCounter.last)).all())
    assert len(numbers) == len(set(numbers))
    by_day = Counter(n[:8] for n in numbers)
    assert set(by_day) == {"20261118", "20261119", "20261120"}
    for day, count in by_day.items():
        assert counters[day] == count
        assert f"{day}{count:05d}" in numbers


def test_intake_after_the_demo_continues_the_days_sequence(db: Database) -> None:
    generate(db, days=1, per_day=100, now=NOW, pack_dir=TINY_PACK)
    with db.read() as s:
        today = s.scalar(select(func.count()).select_from(Ticket))
    with db.write() as s:
        number = next_number(date(2026, 11, 20), db_session=s)
    assert number == f"20261120{today + 1:05d}"


def test_history_holds_every_outcome_a_centre_sees(db: Database) -> None:
    generate(db, days=12, per_day=400, now=NOW, pack_dir=TINY_PACK)
    tickets, events, _ = _history(db)
    actions = Counter(e.action for evs in events.values() for e in evs)
    for action in ("answer", "transfer", "reject", "request_return", "request_extension",
                   "reopen", "evaluate", "close"):  # fmt: skip
        assert actions[action] > 0, action
    approved_returns = sum(
        1
        for evs in events.values()
        for e in evs
        if e.action == "review_return" and e.data["approved"]
    )
    assert approved_returns > 0
    overdue = 0
    for t in tickets:
        replies = [e for e in events[t.id] if e.action == "reply"]
        if replies and t.due_at and replies[-1].at > t.due_at:
            overdue += 1
    assert overdue > 0
    assert Counter(t.satisfaction for t in tickets)["very_dissatisfied"] > 0
    unreachable = [
        e
        for evs in events.values()
        for e in evs
        if e.action == "evaluate" and not e.data["reached"]
    ]
    assert unreachable
    open_states = {t.status for t in tickets} - {"closed"}
    assert {"dispatched", "accepted"} <= open_states  # the latest tickets are still in hand
    # Beijing: 58.5% consultations; an urgent matter (房屋安全, T2h here) is never a question.
    assert not [t for t in tickets if t.urgent and t.request_type == "consult"]
    calm = [t for t in tickets if not t.urgent]
    share = Counter(t.request_type for t in calm)["consult"] / len(calm)
    assert 0.5 < share < 0.66


def test_same_seed_same_history(tmp_path: Path) -> None:
    def tell(name: str) -> list[tuple[str, str, str]]:
        url = f"sqlite:///{tmp_path / name}"
        upgrade(url)
        db = Database(url)
        with db.write() as s:
            load_pack(read_pack(TINY_PACK), db_session=s)
        generate(db, days=2, per_day=50, now=NOW, seed=7, pack_dir=TINY_PACK)
        with db.read() as s:
            rows = s.execute(select(Ticket.number, Ticket.title, Ticket.status).order_by(Ticket.id))
            result = [tuple(r) for r in rows]
        db.dispose()
        return result  # type: ignore[return-value]

    first = tell("a.sqlite3")
    assert first == tell("b.sqlite3") and len(first) > 40


@pytest.mark.slow
def test_beijing_history_is_seasonal_and_local(empty_url: str) -> None:
    """Heating dominates a January day and is rare in July; tickets sit in real streets."""
    pack = read_pack(DEFAULT_PACK)
    assert pack.ok, pack.errors
    db = Database(empty_url)
    with db.write() as s:
        load_pack(pack, db_session=s)
    heating = {c.code for c in pack.categories if "供暖" in c.name or "供热" in c.name}
    assert heating
    shares = {}
    for when in (datetime(2026, 1, 15, 12, tzinfo=UTC), datetime(2026, 7, 15, 12, tzinfo=UTC)):
        generate(db, days=2, per_day=1500, now=when, pack_dir=DEFAULT_PACK, seed=when.month)
        with db.read() as s:
            rows = (
                s.execute(
                    select(Ticket.category_id).where(
                        Ticket.created_at >= when - timedelta(days=2), Ticket.created_at <= when
                    )
                )
                .scalars()
                .all()
            )
            codes = dict(s.execute(select(Category.id, Category.code)).all())
        shares[when.month] = sum(
            1 for r in rows if codes[r] in heating or codes[r][:4] in heating
        ) / len(rows)
    assert shares[1] > 3 * shares[7]
    db.dispose()


def test_stories_told_in_a_worker_process_are_the_same_as_inline(tmp_path: Path) -> None:
    def history(name: str, workers: int) -> list[tuple[Any, ...]]:
        url = f"sqlite:///{tmp_path / name}"
        upgrade(url)
        db = Database(url)
        with db.write() as s:
            load_pack(read_pack(TINY_PACK), db_session=s)
        generate(db, days=3, per_day=60, now=NOW, seed=11, pack_dir=TINY_PACK, workers=workers)
        with db.read() as s:
            rows = [
                tuple(r)
                for r in s.execute(
                    select(Event.ticket_id, Event.seq, Event.action, Event.at, Event.data).order_by(
                        Event.id
                    )
                )
            ]
        db.dispose()
        return rows

    inline = history("inline.sqlite3", workers=0)
    assert len(inline) > 300
    assert history("worker.sqlite3", workers=1) == inline


def test_open_orders_get_the_timers_an_action_would_leave(db: Database) -> None:
    """Every order still open has the warn/overdue jobs of its phases not met, as if an action
    had just scheduled them, and the worker warns about one that runs past due."""
    from jiesu.taxonomy.service import city_clocks, pack_settings
    from jiesu.tickets.models import Job, Outbox
    from jiesu.tickets.scheduled import run_due_jobs
    from jiesu.tickets.service import ticket_deadlines
    from jiesu.tickets.timers import job_key

    generate(db, days=3, per_day=200, now=NOW, pack_dir=TINY_PACK)
    with db.read() as s:
        jobs: dict[int, set[str]] = defaultdict(set)
        for job in s.scalars(select(Job).where(Job.status == "pending")):
            jobs[job.ticket_id or 0].add(job.key)
        settings, clocks = pack_settings(db_session=s), city_clocks(db_session=s)
        open_tickets = list(s.scalars(select(Ticket).where(Ticket.status != "closed")))
        assert len(open_tickets) > 20
        with_jobs = 0
        for t in open_tickets:
            wanted = set()
            for d in ticket_deadlines(t, db_session=s, now=NOW, settings=settings, clocks=clocks):
                if d.met_at is None and not d.paused and d.due is not None:
                    wanted.add(job_key(t, d, "overdue"))
                    if d.warn_at is not None:
                        wanted.add(job_key(t, d, "warn"))
            assert jobs.pop(t.id, set()) == wanted, t.number
            with_jobs += bool(wanted)
        assert with_jobs > 10
        assert not jobs  # closed orders have none
    later = NOW + timedelta(days=20)
    while run_due_jobs(db, now=later, batch=200):
        pass
    with db.read() as s:
        kinds = Counter(o.payload["kind"] for o in s.scalars(select(Outbox)))
    assert kinds["overdue"] > 0 and kinds["warn"] > 0


DANGER = ("燃气味", "煤气味", "漏气", "燃气泄漏", "煤气泄漏")
QUESTION = re.compile(
    r"咨询|请问|想问|了解|问一下|问问|吗|？|怎么|如何|哪里|哪些|什么|多少|多长|能不能|是否"
)
THANKS = re.compile(r"表扬|感谢|感激|点赞|锦旗|谢谢")
REQUEST = re.compile(r"请尽快|请督促|请相关部门|希望尽快|请马上|查处")


def test_beijing_texts_agree_with_type_urgency_and_place(empty_url: str) -> None:
    """Gas smells are urgent helps or reports, never questions; 咨询 is a question and 表扬 a
    thank-you; farmland matters never come from 东城 or 西城; the consultation share is Beijing's."""
    db = Database(empty_url)
    with db.write() as s:
        load_pack(read_pack(DEFAULT_PACK), db_session=s)
    generate(db, days=3, per_day=1500, now=NOW, pack_dir=DEFAULT_PACK, metrics=False)
    with db.read() as s:
        codes = dict(s.execute(select(Category.id, Category.code)).all())
        tiers = dict(s.execute(select(Category.id, Category.effective_tier)).all())
        districts = dict(s.execute(select(Unit.id, Unit.code).where(Unit.kind == "district")).all())
        tickets = list(s.scalars(select(Ticket)))
    db.dispose()
    assert len(tickets) > 3000
    gas = [t for t in tickets if any(w in t.title + t.content for w in DANGER)]
    assert gas
    for t in gas:
        assert t.urgent and t.tier == "T2h" and t.request_type in ("help", "report"), t.title
    for t in tickets:
        if t.request_type == "consult":
            assert QUESTION.search(t.content), t.content
            assert not t.urgent, t.title
        if t.request_type == "praise":
            assert THANKS.search(t.title + t.content) and not REQUEST.search(t.content), t.content
        if tiers[t.category_id] == "T2h":
            assert t.urgent and t.request_type in ("help", "report", "complain"), t.title
    rural = [t for t in tickets if codes[t.category_id][:4] in ("1201", "1202", "1203", "1207")]
    assert len(rural) > 10
    assert not [t for t in rural if districts[t.district_id] in ("110101", "110102")]
    share = Counter(t.request_type for t in tickets)["consult"] / len(tickets)
    assert 0.40 <= share <= 0.65


def test_demo_init_history_covers_last_month_and_the_one_before() -> None:
    from jiesu.demo.generate import default_days

    for today, first in ((date(2026, 12, 6), date(2026, 10, 1)), (date(2026, 1, 31), date(2025, 11, 1)),
                         (date(2026, 2, 1), date(2025, 12, 1)), (date(2026, 3, 31), date(2026, 1, 1))):  # fmt: skip
        assert today - timedelta(days=default_days(today) - 1) == first
