"""The assessment's figures are right (issue 13 §4): the pack's scores and weights apply when
figures are read, every figure drills down to exactly its orders, a contact still within its
limit is pending (not unresponded), and a month past its cut-off stays as published. Hand-built
orders at pinned times (every action is given `now`), on both databases."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from conftest import TINY_PACK, auth
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_auth import Console, app_of

from jiesu.access.policy import Principal
from jiesu.assessment import service as A
from jiesu.assessment.rates import rates
from jiesu.auth.service import principal_of
from jiesu.citypack.parse import read_pack
from jiesu.db.engine import Database
from jiesu.org.models import Unit, User
from jiesu.taxonomy.models import CitySetting
from jiesu.tickets.actions import take_action
from jiesu.tickets.service import create_ticket
from jiesu.tickets.shapes import TicketCreate

# Monday 1 June 2026, 10:00 in Beijing (a working day); the tiny city's default tier is T7d:
# sign within 2 working hours, contact within 24 h, reply within 7 working days.
T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)
MINUTE = timedelta(minutes=1)
JUNE = (date(2026, 6, 1), date(2026, 6, 30))
NOW = datetime(2026, 6, 16, 2, 0, tzinfo=UTC)  # Tuesday 16 June, 10:00 in Beijing


class City:
    """The tiny city's people acting at given moments, through the services the API calls."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.people: dict[str, Principal] = {}

    def who(self, username: str) -> Principal:
        if username not in self.people:
            with self.db.read() as s:
                user, unit = s.execute(select(User, Unit).join(Unit, Unit.id == User.unit_id)
                                       .where(User.username == username)).one()  # fmt: skip
                self.people[username] = principal_of(user, unit)
        return self.people[username]

    def new(self, at: datetime) -> int:
        with self.db.write() as s:
            data = TicketCreate(channel="phone", content="小区楼道灯坏了一个月没人修，请尽快处理")
            return create_ticket(data, actor=self.who("agent1"), db_session=s, now=at).id

    def act(self, username: str, ticket: int, action: str, at: datetime, **data: Any) -> None:
        with self.db.write() as s:
            take_action(ticket, action, data, actor=self.who(username), db_session=s, now=at)

    def dispatched(self, at: datetime, lead: str = "S11", *, contact: float | None = 1.0) -> int:
        """Dispatched at `at`, signed half an hour later, contacted `contact` hours after."""
        handler = {"S11": "s11.handler", "S12": "s12.handler"}[lead]
        t = self.new(at - 0.5 * H)
        self.act("dispatcher1", t, "dispatch", at, lead=lead)
        self.act(handler, t, "accept", at + 0.5 * H)
        if contact is not None:
            self.act(handler, t, "contact", at + contact * H, note="已电话联系诉求人")
        return t

    def replied(self, t: int, at: datetime, lead: str = "S11") -> None:
        handler = {"S11": "s11.handler", "S12": "s12.handler"}[lead]
        self.act(handler, t, "reply", at, result="solved", content="已到现场处理完毕并告知诉求人")
        self.act("dispatcher1", t, "audit", at + H, passed=True)

    def evaluated(self, t: int, at: datetime, satisfaction: str | None, solved: bool = True
                  ) -> None:  # fmt: skip
        if satisfaction is None:
            self.act("callback1", t, "evaluate", at, reached=False)
        else:
            self.act("callback1", t, "evaluate", at, reached=True, solved=solved,
                     satisfaction=satisfaction)  # fmt: skip

    def handled(self, at: datetime, satisfaction: str | None, *, solved: bool = True,
                lead: str = "S11") -> int:  # fmt: skip
        t = self.dispatched(at, lead)
        self.replied(t, at + 10 * H, lead)
        self.evaluated(t, at + 12 * H, satisfaction, solved)
        return t

    def settings(self, **changes: Any) -> None:
        """Change the loaded pack's settings, as a reload of an edited pack.yaml would."""
        with self.db.write() as s:
            row = s.get(CitySetting, "pack")
            assert row is not None
            row.value = {**row.value, **changes}


def _scores(**changes: float) -> dict[str, float]:
    return {"very_satisfied": 1.0, "satisfied": 1.0, "basically_satisfied": 0.8,
            "dissatisfied": 0.0, "very_dissatisfied": 0.0, **changes}  # fmt: skip


def _maintained_equals_rebuilt(db: Database) -> None:
    """What `jiesu metrics rebuild --check` compares."""
    with db.read() as s:
        maintained = A.snapshot(db_session=s)
    with db.write() as s:
        A.rebuild(db_session=s)
    with db.read() as s:
        assert A.snapshot(db_session=s) == maintained


# ---- §4.1: scores and weights apply when read ----------------------------------------------


def test_a_change_of_scores_changes_the_rate_at_once_and_a_rebuild_agrees(db: Database) -> None:
    city = City(db)
    for i, level in enumerate(("very_satisfied", "satisfied", "satisfied", "basically_satisfied",
                               "basically_satisfied", "dissatisfied")):  # fmt: skip
        city.handled(T0 + i * H, level)
    now = T0 + 3 * D
    with db.read() as s:
        r, _ = A.scope_rates(*JUNE, db_session=s, scope="S11", now=now)
    assert (r["satisfaction"].numerator, r["satisfaction"].denominator) == (pytest.approx(4.6), 6)

    city.settings(satisfaction_scores=_scores(basically_satisfied=0.6))
    with db.read() as s:
        r, _ = A.scope_rates(*JUNE, db_session=s, scope="S11", now=now)
        ranked = next(x for x in A.rankings("2026-06", "street", db_session=s, now=now).rows
                      if x.code == "S11")  # fmt: skip
    assert (r["satisfaction"].numerator, r["satisfaction"].denominator) == (pytest.approx(4.2), 6)
    assert ranked.rates["satisfaction"].value == pytest.approx(0.7)
    _maintained_equals_rebuilt(db)
    with db.read() as s:
        r, _ = A.scope_rates(*JUNE, db_session=s, scope="S11", now=now)
    assert r["satisfaction"].numerator == pytest.approx(4.2)

    # The weights, likewise: 100 × (0.5·1 + 0.25·1 + 0.25·0.7) = 92.5 with everything responded.
    city.settings(weights={"default": {"response": 0.5, "resolution": 0.25,
                                       "satisfaction": 0.25}})  # fmt: skip
    with db.read() as s:
        ranked = next(x for x in A.rankings("2026-06", "street", db_session=s, now=now).rows
                      if x.code == "S11")  # fmt: skip
    assert ranked.composite == pytest.approx(92.5)


# ---- §4.2 and §4.3: drill-downs and pending contacts ---------------------------------------


@pytest.fixture
def june(db: Database) -> dict[str, int]:
    """S11's June, by hand; the clock stands at 16 June 10:00 (NOW)."""
    city = City(db)
    o: dict[str, int] = {}
    o["very"] = city.handled(T0, "very_satisfied")
    o["sat"] = city.handled(T0 + H, "satisfied")
    o["basic"] = city.handled(T0 + 2 * H, "basically_satisfied", solved=False)
    o["dis"] = city.handled(T0 + 3 * H, "dissatisfied", solved=False)
    o["late"] = city.dispatched(T0 + 4 * H)  # replied after 12 days: past 7 working days
    city.replied(o["late"], T0 + 12 * D)
    city.evaluated(o["late"], T0 + 12 * D + 2 * H, None)  # not reached: a callback only
    o["open_late"] = city.dispatched(T0 + 5 * H)  # never replied: past due by NOW
    o["slow_contact"] = city.dispatched(T0 + D, contact=30)  # contacted after 30 h
    city.replied(o["slow_contact"], T0 + 3 * D)
    o["returned"] = city.dispatched(T0 + 2 * D, contact=None)
    city.act("s11.handler", o["returned"], "request_return", T0 + 2 * D + H,
             reason="诉求地点不在本辖区")  # fmt: skip
    city.act("dispatcher1", o["returned"], "review_return", T0 + 2 * D + 2 * H, approved=True)
    city.act("dispatcher1", o["returned"], "dispatch", T0 + 2 * D + 3 * H, lead="S12")
    o["pending"] = city.dispatched(NOW - 40 * MINUTE, contact=None)  # 40 minutes ago
    return o


def test_a_contact_still_within_its_limit_is_pending_not_unresponded(
    db: Database, client: TestClient, june: dict[str, int]
) -> None:
    with db.read() as s:
        r, totals = A.scope_rates(*JUNE, db_session=s, scope="S11", now=NOW)
    assert totals["counted"] == 8 and totals["contact_pending"] == 1
    # Responded on time: the four handled, the late reply and the open one; not the slow contact.
    assert (r["response"].numerator, r["response"].denominator) == (6, 7)
    with time_machine.travel(NOW, tick=False):
        body = client.get("/api/v1/metrics/units", params={"period": "2026-06", "kind": "street"},
                          headers=auth(client, "supervisor1")).json()  # fmt: skip
    s11 = next(x for x in body["rows"] if x["code"] == "S11")
    assert s11["pending"] == 1 and s11["rates"]["response"]["denominator"] == 7
    assert body["basis"] == "live" and body["frozen_at"] is None
    # Once its 24 hours have run out without a contact it is unresponded.
    with db.read() as s:
        r, totals = A.scope_rates(*JUNE, db_session=s, scope="S11", now=NOW + 25 * H)
    assert totals["contact_pending"] == 0
    assert (r["response"].numerator, r["response"].denominator) == (6, 8)
    _maintained_equals_rebuilt(db)


@pytest.mark.parametrize("unit", ["S11", "D1"])
def test_every_figure_drills_down_to_exactly_its_orders(
    db: Database, june: dict[str, int], unit: str
) -> None:
    with db.read() as s:
        r, totals = A.scope_rates(*JUNE, db_session=s, scope=unit, now=NOW)

        def count(what: str) -> int:
            return A.drill(unit, *JUNE, what, db_session=s, now=NOW, limit=1000)[0]

        def ids(what: str) -> set[int]:
            return {t.id for t in A.drill(unit, *JUNE, what, db_session=s, now=NOW,
                                          limit=1000)[1]}  # fmt: skip

        for key, (numerator, denominator) in A.RATE_DRILL.items():
            if numerator is not None:
                assert count(numerator) == r[key].numerator, key
            assert count(denominator) == r[key].denominator, key
        # 满意率 by level: each level's orders, weighted by its score, make the numerator.
        levels = {lv: count(f"level_{lv}") for lv in _scores()}
        assert sum(n * _scores()[lv] for lv, n in levels.items()) == pytest.approx(
            r["satisfaction"].numerator)  # fmt: skip
        assert ids("level_basically_satisfied") == {june["basic"]}
        # 超期率: the late reply and the order open past its due, both listed (in the district,
        # also S12's part of the returned order: never signed, past its due).
        extra = {june["returned"]} if unit == "D1" else set()
        assert ids("overdue") == {june["late"], june["open_late"]} | extra
        assert r["overdue"].numerator == 2 + len(extra)
        assert ids("pending") == {june["pending"]}
        assert june["pending"] not in ids("not_responded")
        assert ids("not_responded") == {june["slow_contact"]} | extra
        assert count("not_responded") + count("responded") == r["response"].denominator
        assert totals["counted"] == count("counted")


def test_the_console_lists_overdue_pending_and_satisfaction_by_level(
    db: Database, client: TestClient, june: dict[str, int]
) -> None:
    q = {"unit": "S11", "period": "2026-06"}
    with time_machine.travel(NOW, tick=False):
        console = Console(app_of(client), "supervisor1")
        page = console.get("/console/assessment", params={"period": "2026-06", "group": "street"})
        overdue = console.get("/console/assessment/drill", params={**q, "what": "overdue"})
        evaluated = console.get("/console/assessment/drill", params={**q, "what": "evaluated"})
        pending = console.get("/console/assessment/drill", params={**q, "what": "pending"})
    assert page.status_code == 200 and 'data-basis="live"' in page.text
    assert "what=overdue" in page.text and "what=pending" in page.text
    assert overdue.status_code == 200 and "共 2 件" in overdue.text
    assert "超期（超期办结及超期未办结）" in overdue.text
    assert 'id="levels"' in evaluated.text and "共 4 件" in evaluated.text
    assert "what=level_basically_satisfied" in evaluated.text
    assert "共 1 件" in pending.text


# ---- §4.4: a published month stays as published --------------------------------------------


def test_a_month_past_its_cut_off_stays_as_published(db: Database, client: TestClient) -> None:
    city = City(db)
    city.settings(assessment={"cutoff_day": 5, "late": "own_month"})
    a = city.handled(T0, "satisfied")
    b = city.handled(T0 + H, "basically_satisfied")
    waiting = city.dispatched(T0 + 2 * H)  # replied in June, evaluated only after the cut-off
    city.replied(waiting, T0 + 10 * H)
    open_late = city.dispatched(T0 + 3 * H)  # open past its due at the cut-off, replied after
    with db.read() as s:
        assert A.cutoff_of("2026-06", A.pack_settings(db_session=s)) == datetime(
            2026, 7, 5, 16, 0, tzinfo=UTC)  # the end of 5 July in Beijing  # fmt: skip

    before_cutoff = datetime(2026, 7, 5, 15, 59, tzinfo=UTC)
    with db.write() as s:  # (the month before, closed on 5 June, is the latest closed then)
        assert "2026-06" not in A.freeze_due(before_cutoff, db_session=s)
    cutoff = datetime(2026, 7, 5, 16, 0, tzinfo=UTC)
    with db.write() as s:
        assert A.freeze_due(cutoff, db_session=s) == ["2026-06"]
    with db.write() as s:
        assert A.freeze_due(cutoff + D, db_session=s) == []  # once

    with db.read() as s:
        published = A.rankings("2026-06", "street", db_session=s, now=cutoff + D)
    s11 = next(x for x in published.rows if x.code == "S11")
    assert published.basis == "frozen" and published.frozen_at == cutoff
    assert (s11.rates["overdue"].numerator, s11.rates["overdue"].denominator) == (1, 4)
    assert (s11.rates["satisfaction"].numerator, s11.rates["satisfaction"].denominator) == (
        pytest.approx(1.8), 2)  # fmt: skip

    # A late evaluation, then new scores: the live figures move, the published ones do not.
    city.evaluated(waiting, datetime(2026, 7, 10, 2, 0, tzinfo=UTC), "very_dissatisfied")
    city.replied(open_late, datetime(2026, 7, 10, 3, 0, tzinfo=UTC))
    city.settings(satisfaction_scores=_scores(basically_satisfied=0.5))
    later = datetime(2026, 7, 11, 2, 0, tzinfo=UTC)
    with db.read() as s:
        published = A.rankings("2026-06", "street", db_session=s, now=later)
        live = A.rankings("2026-06", "street", db_session=s, now=later, live=True)
        frozen_drill = A.drill("S11", *JUNE, "evaluated", db_session=s, now=later,
                               period="2026-06")  # fmt: skip
        live_drill = A.drill("S11", *JUNE, "evaluated", db_session=s, now=later)
        frozen_overdue = A.drill("S11", *JUNE, "overdue", db_session=s, now=later,
                                 period="2026-06")  # fmt: skip
    s11 = next(x for x in published.rows if x.code == "S11")
    assert (s11.rates["satisfaction"].numerator, s11.rates["satisfaction"].denominator) == (
        pytest.approx(1.8), 2)  # fmt: skip
    s11_live = next(x for x in live.rows if x.code == "S11")
    assert live.basis == "live"
    assert (s11_live.rates["satisfaction"].numerator,
            s11_live.rates["satisfaction"].denominator) == (pytest.approx(1.5), 3)  # fmt: skip
    assert frozen_drill[0] == 2 and {t.id for t in frozen_drill[1]} == {a, b}
    assert [t.id for t in frozen_overdue[1]] == [open_late]
    assert s11.rates["overdue"].numerator == 1  # published: open past due at the cut-off
    assert s11_live.rates["overdue"].numerator == 1  # live: now a late reply
    assert live_drill[0] == 3

    # The API and the console say which they show.
    with time_machine.travel(later, tick=False):
        headers = auth(client, "supervisor1")
        body = client.get("/api/v1/metrics/units", params={"period": "2026-06", "kind": "street"},
                          headers=headers).json()  # fmt: skip
        live_body = client.get("/api/v1/metrics/units",
                               params={"period": "2026-06", "kind": "street", "live": "true"},
                               headers=headers).json()  # fmt: skip
        drill = client.get("/api/v1/metrics/units/S11/orders",
                           params={"period": "2026-06", "what": "evaluated"},
                           headers=headers).json()  # fmt: skip
        page = Console(app_of(client), "supervisor1").get(
            "/console/assessment", params={"period": "2026-06", "group": "street"})  # fmt: skip
    assert body["basis"] == "frozen" and body["frozen_at"] is not None
    row = next(x for x in body["rows"] if x["code"] == "S11")
    assert row["rates"]["satisfaction"]["numerator"] == pytest.approx(1.8)
    assert live_body["basis"] == "live"
    assert (drill["basis"], drill["total"]) == ("frozen", 2)
    assert page.status_code == 200 and 'data-basis="frozen"' in page.text

    # A rebuild leaves the published month alone, and `--check` stays clean.
    _maintained_equals_rebuilt(db)
    with db.read() as s:
        again = A.rankings("2026-06", "street", db_session=s, now=later)
    assert next(x for x in again.rows if x.code == "S11").rates == s11.rates


def test_without_a_cut_off_nothing_is_frozen(db: Database) -> None:
    City(db).handled(T0, "satisfied")
    with db.write() as s:
        assert A.freeze_due(datetime(2026, 8, 1, tzinfo=UTC), db_session=s) == []
        assert A.rankings("2026-06", "street", db_session=s).basis == "live"


def test_rates_read_the_scores_they_are_given() -> None:
    totals = {"evaluated": 4, "level_satisfied": 2, "level_basically_satisfied": 2}
    assert rates(totals)["satisfaction"].numerator == pytest.approx(3.6)
    scored = rates(totals, scores=_scores(basically_satisfied=0.5))["satisfaction"]
    assert (scored.numerator, scored.denominator, scored.value) == (3.0, 4, 0.75)


# ---- the pack's `assessment:` block ------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        ("assessment: {cutoff_day: 5, late: own_month}", None),
        ("assessment: {cutoff_day: 28}", None),
        ("assessment: {cutoff_day: 0}", "cutoff_day must be a whole number from 1 to 28"),
        ("assessment: {cutoff_day: 29}", "cutoff_day must be a whole number from 1 to 28"),
        ("assessment: {cutoff_day: true}", "cutoff_day must be a whole number from 1 to 28"),
        ("assessment: {late: arrival}", "assessment.late must be one of own_month"),
        ("assessment: {cutoff: 5}", "assessment: unknown key 'cutoff'"),
        ("assessment: 5", "assessment must be a mapping"),
    ],
)
def test_the_pack_assessment_block_is_validated(tmp_path: Path, block: str,
                                                reason: str | None) -> None:  # fmt: skip
    root = tmp_path / "pack"
    shutil.copytree(TINY_PACK, root)
    with (root / "pack.yaml").open("a", encoding="utf-8") as f:
        f.write("\n" + block + "\n")
    pack = read_pack(root)
    errors = [e for e in pack.errors if e.file == "pack.yaml"]
    if reason is None:
        assert errors == []
        assert pack.settings["assessment"]["cutoff_day"] in (5, 28)
    else:
        assert any(reason in e.reason for e in errors), errors
