"""The assessment in the database: rollups maintained action by action equal a rebuild from the
events; rates, rankings and drill-downs read them. Both databases."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import auth
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload
from test_actions_api import Desk as ActionsDesk

from jiesu.assessment import service as A
from jiesu.assessment.models import IntakeFact, IntakeRollup, MetricFact, MetricRollup
from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.demo.generate import generate
from jiesu.settings import city_tz
from jiesu.tickets.models import Ticket

TINY_PACK = Path(__file__).parent / "packs" / "tiny"
TICKETS = "/api/v1/tickets"


class Desk(ActionsDesk):
    """The lifecycle tests' desk, with a whole handled order in one call."""

    def handled(self, lead: str = "S11", *, solved: bool = True,
                satisfaction: str = "satisfied") -> int:  # fmt: skip
        handler = {"S11": "s11.handler", "S12": "s12.handler"}[lead]
        t = self.new()
        self.ok("dispatcher1", t, "dispatch", lead=lead)
        self.ok(handler, t, "accept")
        self.ok(handler, t, "contact", note="已电话联系诉求人")
        self.ok(handler, t, "reply", result="solved", content="已到现场处理完毕并告知诉求人")
        self.ok("dispatcher1", t, "audit", passed=True)
        self.ok("callback1", t, "evaluate", reached=True, solved=solved, satisfaction=satisfaction)
        return t


def _maintained_equals_rebuilt(db: Database) -> dict[str, Any]:
    with db.read() as s:
        maintained = A.snapshot(db_session=s)
    with db.write() as s:
        A.rebuild(db_session=s)
    with db.read() as s:
        rebuilt = A.snapshot(db_session=s)
    assert maintained == rebuilt
    return rebuilt


def test_actions_keep_the_rollups_equal_to_a_rebuild(db: Database, client: TestClient) -> None:
    desk = Desk(client)
    good = desk.handled()
    poor = desk.handled(solved=False, satisfaction="dissatisfied")
    desk.ok("callback1", poor, "reopen", note="诉求人反映仍未解决")
    desk.ok("s11.handler", poor, "accept")
    desk.ok("s11.handler", poor, "contact", note="再次联系诉求人")
    desk.ok("s11.handler", poor, "reply", result="solved", content="第二轮已彻底处理完毕")
    desk.ok("dispatcher1", poor, "audit", passed=True)
    desk.ok("callback1", poor, "evaluate", reached=True, solved=True,
            satisfaction="basically_satisfied")  # fmt: skip
    returned = desk.new()
    desk.ok("dispatcher1", returned, "dispatch", lead="S11")
    desk.ok("s11.handler", returned, "request_return", reason="诉求地点不在本辖区")
    desk.ok("dispatcher1", returned, "review_return", approved=True)
    desk.ok("dispatcher1", returned, "dispatch", lead="S12")
    exempt = desk.handled(solved=False, satisfaction="very_dissatisfied")
    desk.ok("s11.admin", exempt, "request_exemption", reason="malicious",
            note="同一诉求人一月内来电四十余次，已核实")  # fmt: skip
    desk.ok("supervisor1", exempt, "review_exemption", approved=True)
    unreachable = desk.new()
    desk.ok("dispatcher1", unreachable, "dispatch", lead="S11")
    desk.ok("s11.handler", unreachable, "accept")
    desk.ok("s11.handler", unreachable, "contact", note="已电话联系诉求人")
    desk.ok("s11.handler", unreachable, "reply", result="solved", content="已处理完毕并告知诉求人")
    desk.ok("dispatcher1", unreachable, "audit", passed=True)
    desk.ok("callback1", unreachable, "evaluate", reached=False)
    master = desk.new()
    repeat = desk.new()
    number = client.get(f"{TICKETS}/{master}", headers=auth(client, "agent1")).json()["number"]
    desk.ok("agent1", repeat, "merge", master=number)
    desk.ok("dispatcher1", master, "recategorize", category="0301")
    answered = desk.new()
    desk.ok("agent1", answered, "answer", answer="供暖季为每年11月15日至次年3月15日")

    rebuilt = _maintained_equals_rebuilt(db)
    assert rebuilt["metric"]  # something was counted
    today = utcnow().astimezone(city_tz()).date()
    with db.read() as s:
        r, totals = A.scope_rates(today, today, db_session=s, scope="S11")
        s11 = totals
        assert s11["led"] == 5 and s11["counted"] == 3  # returned and exempt are out
        assert s11["evaluated"] == 2 and s11["solved"] == 2 and s11["callbacks"] == 3
        assert s11["level_satisfied"] == 1 and s11["level_basically_satisfied"] == 1
        assert s11["reopened"] == 1
        assert r["resolution"].value == 1.0 and r["satisfaction"].value == pytest.approx(0.9)
        assert r["dispatch_accuracy"].value == pytest.approx(0.8)
        city, city_totals = A.scope_rates(today, today, db_session=s)
        assert city_totals["received"] == 8 and city_totals["merged"] == 1
        assert city_totals["answered"] == 1 and city["direct_answer"].value == pytest.approx(1 / 8)
        total, orders = A.drill("S11", today, today, "exempted", db_session=s)
        assert total == 1 and [t.id for t in orders] == [exempt]
        total, orders = A.drill("S11", today, today, "misdispatched", db_session=s)
        assert [t.id for t in orders] == [returned]
        total, orders = A.drill("D1", today, today, "solved", db_session=s)
        assert {t.id for t in orders} == {good, poor}
        # Pages are cut in id order and add up to the whole list.
        total, everything = A.drill("D1", today, today, "counted", db_session=s)
        ids = [t.id for t in everything]
        assert len(ids) >= 3 and ids == sorted(set(ids))
        paged = [t.id for k in range(len(ids) + 1)
                 for t in A.drill("D1", today, today, "counted", db_session=s, limit=1,
                                  offset=k)[1]]  # fmt: skip
        assert paged == ids


def test_the_intake_counts_follow_a_recategorisation(db: Database, client: TestClient) -> None:
    desk = Desk(client)
    t = desk.new()
    desk.ok("dispatcher1", t, "recategorize", category="0301")
    with db.read() as s:
        keys = s.scalar(select(IntakeFact.keys).where(IntakeFact.ticket_id == t))
        assert "category:0301" in keys and "top:03" in keys
        counts = {(r.dim, r.key): r.n for r in s.scalars(select(IntakeRollup))}
    assert counts[("all", "")] == 1 and counts[("category", "0301")] == 1
    assert sum(n for (dim, _), n in counts.items() if dim == "category") == 1
    _maintained_equals_rebuilt(db)


def test_demo_history_replayed_action_by_action_equals_the_rebuild(db: Database) -> None:
    """The demo writes its history in bulk and rebuilds; replaying every ticket's timeline one
    event at a time through `refresh` (the path every action takes) must end in the same place."""
    now = datetime(2026, 11, 20, 9, 0, tzinfo=city_tz())
    generate(db, days=8, per_day=120, now=now, pack_dir=TINY_PACK, seed=3)
    with db.read() as s:
        rebuilt = A.snapshot(db_session=s)
    assert len(rebuilt["metric"]) > 20
    with db.write() as s:
        for table in (MetricFact, MetricRollup, IntakeFact, IntakeRollup):
            s.execute(delete(table))
    with db.write() as s:
        ctx = A.context(db_session=s)
        tickets = s.scalars(select(Ticket).options(selectinload(Ticket.events))).all()
        assert len(tickets) > 500
        for ticket in tickets:
            for n in range(1, len(ticket.events) + 1):
                A.refresh(ticket, db_session=s, ctx=ctx, events=ticket.events[:n])
            A.refresh_intake(ticket, db_session=s, ctx=ctx)
    with db.read() as s:
        replayed = A.snapshot(db_session=s)
    assert replayed == rebuilt


def test_rankings_order_units_and_compare_with_last_month(db: Database) -> None:
    now = datetime(2026, 11, 20, 9, 0, tzinfo=city_tz())
    generate(db, days=60, per_day=60, now=now, pack_dir=TINY_PACK, seed=5)
    with db.read() as s:
        ranking = A.rankings("2026-10", "street", db_session=s, now=now)
        districts = A.rankings("2026-10", "district", db_session=s, now=now)
    codes = [r.code for r in ranking.rows]
    assert set(codes) <= {"S11", "S12", "S21"} and codes
    ranked = [r for r in ranking.rows if r.rank is not None]
    assert ranked == sorted(ranked, key=lambda r: -(r.composite or 0))
    for r in ranking.rows:
        assert (r.rank is None) == (r.small_sample or r.composite is None)
        three = [r.rates[k].value for k in ("response", "resolution", "satisfaction")]
        if r.composite is not None:
            w = (0.10, 0.45, 0.45)
            assert r.composite == pytest.approx(
                100 * sum(a * b for a, b in zip(w, three, strict=True))
            )
    assert {r.code for r in districts.rows} == {"D1", "D2"}
    d1 = next(r for r in districts.rows if r.code == "D1")
    with db.read() as s:
        _, totals = A.scope_rates(date(2026, 10, 1), date(2026, 10, 31), db_session=s, scope="D1",
                                  now=now)  # fmt: skip
    assert d1.orders == totals["counted"] > 0


def test_an_open_order_past_its_due_counts_as_overdue(db: Database, client: TestClient) -> None:
    desk = Desk(client)
    t = desk.new()
    desk.ok("dispatcher1", t, "dispatch", lead="S11")
    today = utcnow().astimezone(city_tz()).date()
    with db.read() as s:
        now_rates, _ = A.scope_rates(today, today, db_session=s, scope="S11")
        later, totals = A.scope_rates(today, today, db_session=s, scope="S11",
                                      now=utcnow() + timedelta(days=30))  # fmt: skip
    assert now_rates["overdue"].value == 0.0
    assert totals["overdue_open"] == 1 and later["overdue"].value == 1.0
