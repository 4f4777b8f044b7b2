"""The knowledge base's figures (issue 16 §6), hand-computed on a small history: the direct-answer
rate, the share of direct answers given with an entry, the entries used most, the base's state
(answering, expiring within 30 days, expired, open flags) and the open suggestions — over city
days, for the centre and for one owning department; then where they are shown."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from test_knowledge_learn import History

from jiesu.db.engine import Database
from jiesu.knowledge.figures import KnowledgeFigures, figures, percent
from jiesu.knowledge.models import KnowledgeSuggestion

START, END = date(2026, 11, 1), date(2026, 11, 20)
AT = datetime(2026, 11, 5, 2, 0, tzinfo=UTC)  # 10:00 in the city
H = timedelta(hours=1)


@pytest.fixture
def small(db: Database) -> History:
    h = History(db)
    h.entry("KB-A", "C-RL", "供暖费缴纳", "0301", valid_to=END + timedelta(days=10), open_flags=2)
    h.entry("KB-B", "C-RL", "暖气不热报修", "0301")
    h.entry("KB-C", "C-RL", "旧的供暖政策", "0301", status="expired")
    h.entry("KB-D", "C-RL", "起草中的条目", "0301", status="draft")
    h.entry("KB-E", "C-RL", "停暖安排", "0301", valid_to=END + timedelta(days=31))
    h.entry("KB-F", "C-ZJW", "网签流程", "01")
    for k in range(3):
        h.with_entry("暖气费怎么交", AT + k * H, "0301", "KB-A")
    h.with_entry("暖气不热去哪报修", AT + 4 * H, "0301", "KB-B")
    h.with_entry("二手房网签要什么材料", AT + 5 * H, "01", "KB-F")
    h.answered("停暖以后还要交费吗", AT + 6 * H, "0301")
    # the last minutes of 20 November in the city count; the first of the 21st do not
    h.answered("供暖期是哪天开始", datetime(2026, 11, 20, 15, 30, tzinfo=UTC), "0301")
    h.answered("供暖期是哪天结束", datetime(2026, 11, 20, 16, 30, tzinfo=UTC), "0301")
    h.with_entry("暖气不热去哪报修", datetime(2026, 10, 31, 15, 0, tzinfo=UTC), "0301", "KB-B")
    h.dispatched("孩子上小学要什么材料", AT, "0201")
    h.dispatched("入学报名什么时候开始", AT, "0201")
    for text in ("暖气片漏水没人修", "楼上漏水"):
        t = h.consult(text, AT, "0301", kind="complain")
        h.act(t, "dispatch", AT + H, who="dispatcher1", lead="C-RL")
    help_ = h.consult("家里老人走失了请帮忙找", AT, "01", kind="help")
    h.act(help_, "answer", AT + H, answer="已告知拨打110并联系社区")
    with db.write() as s:
        for size, owner, status in ((5, "C-RL", "open"), (7, "D1-JW", "open"),
                                    (9, "C-RL", "dismissed")):  # fmt: skip
            s.add(KnowledgeSuggestion(
                key=f"k{size}", owner_unit_id=h.unit_id(owner), category_code="0301",
                title=f"主题{size}", terms=["暖气"], size=size, status=status,
                period_start=START, period_end=END))  # fmt: skip
    return h


def test_figures_of_the_centre(db: Database, small: History) -> None:
    with db.read() as s:
        f = figures(START, END, db_session=s)
    # received 1–20 November: 5 with an entry, 2 without, 2 dispatched consultations,
    # 2 dispatched complaints, 1 help answered
    assert (f.received, f.consultations) == (12, 9)
    assert (f.answered, f.consultations_answered) == (8, 7)
    assert f.direct_answer_rate == pytest.approx(8 / 12)
    assert f.consultation_answer_rate == pytest.approx(7 / 9)
    assert f.with_entry == 5 and f.entry_share == pytest.approx(5 / 8)
    assert [(e.code, e.uses) for e in f.top_entries] == [("KB-A", 3), ("KB-B", 1), ("KB-F", 1)]
    assert f.top_entries[0].title == "供暖费缴纳"
    assert (f.published, f.expiring, f.expired, f.open_flags) == (4, 1, 1, 2)
    assert f.open_suggestions == 2
    assert [(t.title, t.size) for t in f.themes] == [("主题7", 7), ("主题5", 5)]
    assert f.themes[0].owner == "东区教育委员会" and f.themes[0].terms == ("暖气",)


def test_figures_of_one_department(db: Database, small: History) -> None:
    with db.read() as s:
        f = figures(START, END, db_session=s, unit_id=small.unit_id("C-RL"))
    assert (f.received, f.answered) == (12, 8)  # the orders stay the centre's
    assert f.with_entry == 4
    assert [(e.code, e.uses) for e in f.top_entries] == [("KB-A", 3), ("KB-B", 1)]
    assert (f.published, f.expiring, f.expired, f.open_flags) == (3, 1, 1, 2)
    assert [t.title for t in f.themes] == ["主题5"]


def test_no_orders_is_no_rate(db: Database) -> None:
    with db.read() as s:
        f = figures(date(2020, 1, 1), date(2020, 1, 31), db_session=s)
    assert f == KnowledgeFigures(start=date(2020, 1, 1), end=date(2020, 1, 31))
    assert f.direct_answer_rate is None and f.entry_share is None
    assert percent(f.direct_answer_rate) == "—" and percent(0.5) == "50.0%"
    with db.read() as s:
        assert s.scalars(select(KnowledgeSuggestion)).first() is None
