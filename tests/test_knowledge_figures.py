"""The knowledge base's figures (issue 16 §6), hand-computed on a small history: the direct-answer
rate, the share of direct answers given with an entry, the entries used most, the base's state
(answering, expiring within 30 days, expired, open flags) and the open suggestions — over city
days, for the centre and for one owning department; then where they are shown."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select
from test_auth import Console, app_of
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


# ---- where they are shown -----------------------------------------------------------------------


def test_the_assessment_page_shows_the_centres_knowledge_figures(
    db: Database, client: TestClient, small: History
) -> None:
    with time_machine.travel(datetime(2026, 11, 21, 2, 0, tzinfo=UTC), tick=False):
        page = Console(app_of(client), "supervisor1").get(
            "/console/assessment", params={"period": "2026-11"}
        )
        assert page.status_code == 200, page.text
        section = page.text[page.text.index('id="knowledge-figures"') :]
        assert "知识库与直接答复 · 2026-11" in section
        # the whole month: the answer given at 00:30 on the 21st counts too (9 / 13)
        assert "69.23%" in section and "直接答复 9 / 受理 13" in section
        assert "占直接答复 55.6%" in section  # 5 / 9
        # seen on 21 November: KB-E's last day (21 December) is now within 30 days too
        assert "30天内到期 2 · 已过期 1 · 待处理纠错 2" in section
        assert section.index("KB-A") < section.index("KB-B") < section.index("KB-F")
        assert "主题7" in section and "东区教育委员会" in section
        # a street sees no knowledge figures; the heating company sees its own entries'
        street = Console(app_of(client), "s11.admin").get("/console/assessment")
        assert street.status_code == 200 and 'id="knowledge-figures"' not in street.text


def test_the_dashboard_tile_shows_today_and_this_month(
    db: Database, client: TestClient, small: History
) -> None:
    # 5 November, 18:00 in the city: that day's orders are the month's so far
    with time_machine.travel(datetime(2026, 11, 5, 10, 0, tzinfo=UTC), tick=False):
        page = Console(app_of(client), "supervisor1").get("/console/dashboard")
    assert page.status_code == 200, page.text
    tile = page.text[page.text.index('id="kb-figures"') :]
    tile = tile[: tile.index("</section>")]
    assert 'id="fig-kb-direct-today">63.6%<' in tile  # 7 answered of 11 received
    assert "直接答复 7 / 受理 11" in tile
    assert 'id="fig-kb-uses">5<' in tile and "占直接答复 71.4%" in tile
    assert 'id="fig-kb-entries">4<' in tile and 'id="fig-kb-suggestions">2<' in tile


def test_the_monthly_report_has_a_knowledge_section(db: Database, small: History) -> None:
    from jiesu.reports import render
    from jiesu.reports.build import report_data

    with db.read() as s:
        data = report_data("monthly", "2026-11", db_session=s,
                           now=datetime(2026, 12, 1, 2, 0, tzinfo=UTC))  # fmt: skip
        daily = report_data("daily", "2026-11-05", db_session=s,
                            now=datetime(2026, 12, 1, 2, 0, tzinfo=UTC))  # fmt: skip
    figures_ = {f.label: f.value for f in data.knowledge}
    assert figures_["直接答复率"] == pytest.approx(9 / 13)  # all of November
    assert figures_["引用知识库答复"] == 5 and figures_["占直接答复"] == pytest.approx(5 / 9)
    assert figures_["建议新增条目"] == 2
    assert [(e.name, e.count) for e in data.knowledge_entries] == [
        ("KB-A 供暖费缴纳", 3), ("KB-B 暖气不热报修", 1), ("KB-F 网签流程", 1)
    ]  # fmt: skip
    assert [(t.name, t.count) for t in data.knowledge_themes] == [("主题7", 7), ("主题5", 5)]
    page = render.html(data)
    assert "知识库与直接答复" in page and "KB-A 供暖费缴纳" in page and "主题7" in page
    book = load_workbook(io.BytesIO(render.xlsx(data)))
    assert "知识库" in book.sheetnames
    overview = {row[0]: row[1] for row in book["概况"].iter_rows(values_only=True) if row[0]}
    assert overview["引用知识库答复"] == 5
    assert daily.knowledge == () and "知识库与直接答复" not in render.html(daily)
