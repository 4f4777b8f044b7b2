"""The base learns (issue 16 §4): consultations answered without an entry, or dispatched, are
clustered into suggested entries for their departments, with the orders behind each.

The pure clustering runs on hand-made texts; the refresh on a small history built through the
ticket services at pinned instants (an answer *with* an entry is written as the `answer` with
`entry` leaves it: the event's data names the entry and a `kb_use` row counts it).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from conftest import principal
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from test_auth import Console, app_of
from typer.testing import CliRunner

from jiesu.db.engine import Database
from jiesu.knowledge import learn, suggest
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeSuggestion, KnowledgeUse
from jiesu.org.models import Unit
from jiesu.settings import get_settings
from jiesu.tickets.actions import take_action
from jiesu.tickets.models import Event, Ticket
from jiesu.tickets.service import create_ticket
from jiesu.tickets.shapes import TicketCreate

# Friday 20 November 2026, 10:00 in the city; the 30-day period is 22 October – 20 November.
NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
TODAY = date(2026, 11, 20)
H = timedelta(hours=1)
D = timedelta(days=1)

HEATING = [  # one theme: paying the heating fee (category 0301, the heating company's)
    "请问今年的暖气费在哪里交，可以网上缴纳吗",
    "暖气费怎么交啊，能不能在网上交暖气费",
    "暖气费网上怎么缴纳，去哪里交暖气费",
    "暖气费交费渠道有哪些，网上能交暖气费吗",
]
SCHOOL = [  # another: primary-school enrolment papers (category 0201, dispatched to 东区教委)
    "孩子明年上小学，入学报名需要准备哪些材料",
    "小学入学报名要什么材料，户口本需要吗",
    "一年级入学报名材料有哪些，孩子上小学怎么报名",
    "上小学入学报名需要带什么材料",
]
NOISE = [
    "楼下餐馆油烟太大了，晚上都开不了窗",
    "公交车司机态度不好，还急刹车",
    "小区门口的路灯坏了好几天",
    "邻居装修噪音太大中午也不停",
    "马路上有个井盖丢了很危险",
    "快递柜收费不合理",
    "菜市场的秤不准缺斤短两",
    "公园里有人遛狗不拴绳",
]
NAMES = ["王小明", "李秀英", "张伟", "刘洋", "陈静", "杨磊", "赵敏", "黄强"]


# ---- the pure clustering ------------------------------------------------------------------------


def test_two_themes_make_two_clusters_and_noise_is_left_out() -> None:
    texts = [HEATING[0], SCHOOL[0], *NOISE[:4], HEATING[1], SCHOOL[1], HEATING[2], SCHOOL[2],
             *NOISE[4:], HEATING[3], SCHOOL[3]]  # fmt: skip
    clusters = learn.cluster(texts)
    assert len(clusters) == 2
    groups = sorted(sorted(texts[i] for i in c.members) for c in clusters)
    assert groups == sorted([sorted(HEATING), sorted(SCHOOL)])
    for c in clusters:
        assert 0 < c.cohesion <= 1
        assert c.size == 4
    terms = {t for c in clusters for t in c.terms}
    assert "暖气费" in terms and "入学" in terms


def test_representative_is_the_medoid_and_small_groups_are_noise() -> None:
    texts = ["暖气费网上缴纳渠道有哪些", "暖气费网上缴纳", "暖气费网上缴纳方式是什么",
             "餐馆油烟太大了开不了窗", *NOISE]  # fmt: skip
    clusters = learn.cluster(texts)
    assert [c.size for c in clusters] == [3]  # the two about the restaurant's fumes: noise
    assert texts[clusters[0].representative] == "暖气费网上缴纳"  # what the other two share
    pair = learn.cluster(texts, min_size=2)[1]
    assert sorted(texts[i] for i in pair.members) == sorted([texts[3], NOISE[0]])
    assert learn.cluster([]) == [] and learn.cluster(["暖气", "暖气"]) == []


def test_mask_stars_numbers_and_names() -> None:
    text = "我叫张三丰，电话13800138000，身份证110101199001011234，社保卡丢了"
    masked = learn.mask(text, ["张三丰"])
    assert "13800138000" not in masked and "1101011990" not in masked and "张三丰" not in masked
    assert masked.startswith("我叫张**，电话****，身份证****") and masked.endswith("社保卡丢了")
    assert len(learn.mask("很长" * 100, limit=20)) == 20


def test_keys_are_stable_and_overlap_counts_the_smaller_set() -> None:
    assert learn.key_for("0301", "C-RL", ["网上", "暖气费"], "x") == learn.key_for(
        "0301", "C-RL", ["暖气费", "网上"], "y"
    )
    assert learn.key_for("0301", "C-RL", ["暖气费"], "x") != learn.key_for(
        "0201", "C-RL", ["暖气费"], "x"
    )
    assert learn.overlap([1, 2, 3, 4], [3, 4]) == 1.0
    assert learn.overlap([1, 2], [3]) == 0.0 and learn.overlap([], [1]) == 0.0


# ---- a small history ----------------------------------------------------------------------------


class History:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.made = 0

    def consult(self, text: str, at: datetime, category: str, *, kind: str = "consult") -> int:
        """A call: the text, then who calls and their number (every caller another)."""
        self.made += 1
        name, phone = NAMES[self.made % len(NAMES)], f"139{self.made:08d}"
        with self.db.write() as s:
            data = TicketCreate.model_validate({
                "channel": "phone", "content": f"{text}。我是{name}，电话{phone}",
                "title": text[:20], "request_type": kind, "category_code": category,
                "requester": {"name": name, "phone": phone}})  # fmt: skip
            return create_ticket(data, actor=principal(self.db, "agent1"), db_session=s,
                                 now=at).id  # fmt: skip

    def act(self, ticket: int, action: str, at: datetime, who: str = "agent1", **data: Any) -> None:
        with self.db.write() as s:
            take_action(ticket, action, data, actor=principal(self.db, who), db_session=s, now=at)

    def answered(self, text: str, at: datetime, category: str) -> int:
        t = self.consult(text, at, category)
        self.act(t, "answer", at + 0.1 * H, answer="已在电话中告知办理方式和渠道")
        return t

    def dispatched(self, text: str, at: datetime, category: str, lead: str = "D1-JW") -> int:
        t = self.consult(text, at, category)
        self.act(t, "dispatch", at + H, who="dispatcher1", lead=lead)
        return t

    def with_entry(self, text: str, at: datetime, category: str, code: str) -> int:
        """Answered with an entry, as the `answer` action with `entry` records it."""
        t = self.consult(text, at, category)
        with self.db.write() as s:
            entry = s.scalar(select(KnowledgeEntry).where(KnowledgeEntry.code == code))
            assert entry is not None
            ticket = s.get(Ticket, t)
            assert ticket is not None
            seq = s.scalar(select(func.max(Event.seq)).where(Event.ticket_id == t)) or 0
            s.add(Event(ticket_id=t, seq=seq + 1, action="answer", at=at + 0.1 * H,
                        state_before=ticket.status, state_after="answered",
                        data={"answer": "按条目答复", "entry": code, "entry_version": 1}))  # fmt: skip
            ticket.status = "answered"
            s.add(KnowledgeUse(entry_id=entry.id, version_number=1, ticket_id=t,
                               used_at=at + 0.1 * H))  # fmt: skip
            entry.use_count += 1
        return t

    def entry(self, code: str, owner: str, title: str, category: str | None = None, **kw: Any
              ) -> int:  # fmt: skip
        with self.db.write() as s:
            unit = s.scalar(select(Unit.id).where(Unit.code == owner))
            assert unit is not None
            e = KnowledgeEntry(code=code, owner_unit_id=unit, title=title,
                               category_code=category, **{"status": "published", **kw})  # fmt: skip
            s.add(e)
            s.flush()
            return e.id

    def unit_id(self, code: str) -> int:
        with self.db.read() as s:
            found = s.scalar(select(Unit.id).where(Unit.code == code))
            assert found is not None
            return found


def no_search(texts: list[str], **_: Any) -> set[int]:
    return set()


def refresh(db: Database, **kw: Any) -> int:
    kw.setdefault("answered", no_search)
    with db.write() as s:
        return suggest.refresh_suggestions(db_session=s, today=TODAY, now=NOW, **kw)


def rows(db: Database) -> list[KnowledgeSuggestion]:
    with db.read() as s:
        return list(s.scalars(select(KnowledgeSuggestion).order_by(KnowledgeSuggestion.id)))


@pytest.fixture
def history(db: Database) -> dict[str, list[int]]:
    h = History(db)
    h.entry("KB-HEAT-001", "C-RL", "供暖费缴纳渠道", "0301")
    start = NOW - 20 * D
    made: dict[str, list[int]] = {"heating": [], "school": [], "with_entry": [], "other": []}
    for k, text in enumerate(HEATING):
        made["heating"].append(h.answered(text, start + k * D, "0301"))
    for k, text in enumerate(SCHOOL):
        made["school"].append(h.dispatched(text, start + k * D + 2 * H, "0201"))
    for k, text in enumerate(HEATING[:3]):  # the same theme, answered with the entry
        made["with_entry"].append(h.with_entry(text, start + k * D + 3 * H, "0301",
                                               "KB-HEAT-001"))  # fmt: skip
    made["other"].append(h.answered(HEATING[0], NOW - 40 * D, "0301"))  # before the period
    made["other"].append(h.dispatched(HEATING[1], start, "0301", lead="C-RL"))
    complaint = h.consult(HEATING[2], start, "0301", kind="complain")  # not a consultation
    h.act(complaint, "dispatch", start + H, who="dispatcher1", lead="C-RL")
    made["other"].append(complaint)
    made["other"].append(h.answered(NOISE[0], start, "01"))
    return made


def test_refresh_suggests_the_unanswered_themes_for_their_departments(
    db: Database, history: dict[str, list[int]]
) -> None:
    assert refresh(db) == 2
    found = rows(db)
    assert len(found) == 2
    by_category = {s.category_code: s for s in found}
    heating, school = by_category["0301"], by_category["0201"]
    # answered without an entry (4) plus one dispatched to the heating company; never the
    # orders answered with the entry, the one before the period or the complaint
    dispatched_heating = history["other"][1]
    assert sorted(heating.ticket_ids) == sorted([*history["heating"], dispatched_heating])
    assert (heating.size, heating.answered_without, heating.dispatched) == (5, 4, 1)
    assert sorted(school.ticket_ids) == sorted(history["school"])
    assert (school.size, school.answered_without, school.dispatched) == (4, 0, 4)
    h = History(db)
    assert heating.owner_unit_id == h.unit_id("C-RL")  # the catalogue's unit for 0301
    # 02 goes to the district's education commission (no city-wide one): the dispatched orders'
    assert school.owner_unit_id == h.unit_id("D1-JW")
    assert "暖气费" in heating.terms and "入学" in school.terms
    assert heating.title in [t[:20] for t in HEATING]
    for s in found:
        assert s.status == "open" and s.period_start == date(2026, 10, 22)
        assert s.period_end == TODAY
        assert 1 <= len(s.samples) <= suggest.SAMPLES
        joined = "".join(s.samples)
        assert "1390000" not in joined and not any(n in joined for n in NAMES)
        assert "电话****" in joined
        assert s.extra["questions"]


def test_a_rerun_updates_and_a_dismissed_one_stays_dismissed(
    db: Database, history: dict[str, list[int]]
) -> None:
    refresh(db)
    first = {s.category_code: s for s in rows(db)}
    supervisor = principal(db, "supervisor1")
    with db.write() as s:
        suggest.dismiss(first["0201"].id, actor=supervisor, db_session=s, now=NOW,
                        note="招生政策由区教委统一发布")  # fmt: skip
    h = History(db)
    h.answered("暖气费网上交的渠道在哪里，暖气费怎么交", NOW - 2 * D, "0301")
    assert refresh(db) == 1  # the dismissed one is not open
    again = {s.category_code: s for s in rows(db)}
    assert len(rows(db)) == 2
    assert again["0301"].id == first["0301"].id and again["0301"].size == 6
    assert again["0201"].id == first["0201"].id and again["0201"].status == "dismissed"
    assert again["0201"].extra["note"] == "招生政策由区教委统一发布"
    assert again["0201"].decided_by_id == supervisor.user_id
    # a later period without those orders: the open one goes, the decision stays
    with db.write() as s:
        suggest.refresh_suggestions(db_session=s, today=TODAY + 60 * D, answered=no_search)
    assert [(s.category_code, s.status) for s in rows(db)] == [("0201", "dismissed")]


def test_consultations_the_base_answers_well_are_left_out(
    db: Database, history: dict[str, list[int]]
) -> None:
    seen: list[list[str]] = []

    def heating_answered(texts: list[str], **kw: Any) -> set[int]:
        seen.append(texts)
        assert kw["today"] == TODAY
        return {i for i, t in enumerate(texts) if "暖气费" in t or "供暖费" in t}

    assert refresh(db, answered=heating_answered) == 1
    assert [s.category_code for s in rows(db)] == ["0201"]
    assert len(seen) == 1 and len(seen[0]) == 4 + 4 + 1 + 1  # every candidate was asked


def test_the_search_decides_what_the_base_answers(
    db: Database, history: dict[str, list[int]]
) -> None:
    """Without the hook, the real search: no answering version indexed for the entry written
    straight into the table, so nothing is left out; a score threshold above every possible
    score leaves nothing out either."""
    with db.write() as s:
        known = suggest.answered_by_base(HEATING, db_session=s, today=TODAY, score=2.0)
    assert known == set()


def test_days_must_be_positive(db: Database) -> None:
    with db.write() as s, pytest.raises(Exception, match="天数"):
        suggest.refresh_suggestions(db_session=s, today=TODAY, days=0)


def test_a_department_sees_its_own_and_the_centre_all(
    db: Database, history: dict[str, list[int]]
) -> None:
    refresh(db)
    with db.read() as s:
        heat = suggest.list_suggestions(actor=principal(db, "heat.handler"), db_session=s)
        centre = suggest.list_suggestions(actor=principal(db, "analyst1"), db_session=s)
        street = suggest.list_suggestions(actor=principal(db, "s11.handler"), db_session=s)
    assert [x.category_code for x in heat] == ["0301"]
    assert sorted(x.category_code or "" for x in centre) == ["0201", "0301"]
    assert street == []


# ---- the page -----------------------------------------------------------------------------------


def test_page_shows_suggestions_and_orders_and_dismisses(
    client: TestClient, db: Database, history: dict[str, list[int]]
) -> None:
    refresh(db)
    heating = next(s for s in rows(db) if s.category_code == "0301")
    supervisor = Console(app_of(client), "supervisor1")
    r = supervisor.get("/console/knowledge/suggestions")
    assert r.status_code == 200, r.text
    assert "建议新增条目" in r.text and heating.title in r.text and "起草条目" in r.text
    assert f'href="/console/tickets/{history["heating"][0]}"' in r.text
    assert "1390000" not in r.text
    # the heating company sees its own suggestion and its orders, not the school one
    r = Console(app_of(client), "heat.handler").get("/console/knowledge/suggestions")
    assert r.status_code == 200 and heating.title in r.text and "入学" not in r.text
    # an agent may not open the page
    r = Console(app_of(client), "agent1").get("/console/knowledge/suggestions")
    assert r.status_code == 403
    r = supervisor.post(f"/console/knowledge/suggestions/{heating.id}/dismiss",
                        {"note": "已有条目"})  # fmt: skip
    assert r.status_code == 303, r.text
    assert next(s for s in rows(db) if s.id == heating.id).status == "dismissed"
    r = supervisor.post(f"/console/knowledge/suggestions/{heating.id}/dismiss",
                        {"note": "again"})  # fmt: skip
    assert r.status_code == 409 and "已处理" in r.text


def test_draft_entry_makes_a_prefilled_draft(
    client: TestClient, db: Database, history: dict[str, list[int]]
) -> None:
    refresh(db)
    school = next(s for s in rows(db) if s.category_code == "0201")
    r = Console(app_of(client), "supervisor1").post(
        f"/console/knowledge/suggestions/{school.id}/draft"
    )
    assert r.status_code == 303, r.text
    after = next(s for s in rows(db) if s.id == school.id)
    assert after.status == "drafted" and after.entry_id is not None
    with db.read() as s:
        entry = s.get(KnowledgeEntry, after.entry_id)
        assert entry is not None
        assert r.headers["location"] == f"/console/knowledge/{entry.code}/edit"
        assert entry.status == "draft" and entry.title == school.title
        assert entry.owner_unit_id == school.owner_unit_id
        from jiesu.knowledge.models import KnowledgeVersion

        version = s.scalar(select(KnowledgeVersion).where(KnowledgeVersion.entry_id == entry.id))
        assert version is not None and version.state == "draft"
        assert version.questions == school.extra["questions"]
        assert set(version.keywords) == set(school.terms)


def test_cli_suggest(db: Database, db_url: str, history: dict[str, list[int]],
                     monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
                     ) -> None:  # fmt: skip
    from jiesu.cli import app

    monkeypatch.setenv("JIESU_DATABASE_URL", db_url)
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    monkeypatch.setattr(suggest, "answered_by_base", no_search)
    r = CliRunner().invoke(app, ["knowledge", "suggest", "--days", "30", "--today", "2026-11-20"])
    assert r.exit_code == 0, r.output
    assert "2" in r.output
    assert len(rows(db)) == 2


def test_the_worker_step_refreshes_over_the_last_30_city_days(
    db: Database, history: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(suggest, "answered_by_base", no_search)
    # 20 November, 23:30 in the city (15:30 UTC): the city's day, not UTC's
    assert suggest.run_suggestions(db, now=datetime(2026, 11, 20, 15, 30, tzinfo=UTC)) == 2
    assert {(s.period_start, s.period_end) for s in rows(db)} == {(date(2026, 10, 22), TODAY)}
    # a worker restarting the same day does not refresh again; a day later it does
    first = {s.computed_at for s in rows(db)}
    assert suggest.run_suggestions(db, now=datetime(2026, 11, 20, 16, 30, tzinfo=UTC)) == 2
    assert {s.computed_at for s in rows(db)} == first
    assert suggest.run_suggestions(db, now=datetime(2026, 11, 21, 15, 30, tzinfo=UTC)) == 2
    assert {s.computed_at for s in rows(db)} != first
