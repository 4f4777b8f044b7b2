"""ACCEPTANCE (issue 16, Deliver §3): an agent takes a consultation, sees the entry while typing,
answers with it, and the order closes as answered with the entry linked and counted — in a real
browser (Playwright + Debian's Chromium, see tests/browser_support.py).

The demo city (SQLite: a page does not know which database it reads, and
tests/test_knowledge_call.py covers both) with one more entry published by the centre. The agent
types the caller's question into the intake form; the 知识库 panel shows the entry while the
agent types, the matched words marked; 用此条目答复 chooses 直接答复, fills the answer with the
entry's text and links the entry (已选用：… 第 1 版); the agent adds a sentence and submits. The
order is 已直接答复, its page names the entry as 答复依据, and the entry's use count is 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pytest
import time_machine
from sqlalchemy import select

from jiesu.auth.service import principal_of
from jiesu.knowledge import service
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeUse
from jiesu.org.models import Unit, User
from jiesu.settings import city_tz
from jiesu.tickets.models import Event, Ticket
from tests.browser_support import (
    LiveServer,
    People,
    demo_database,
    flash_text,
    launch,
    live_server,
    require_chromium,
    status_of,
    ticket_id_of,
    wait_until,
)

pytestmark = pytest.mark.xdist_group("browser")

# The server's clock and the browser's: a Wednesday morning, whatever the hour the suite runs at.
NOW = datetime(2026, 11, 18, 10, 0, tzinfo=city_tz())
CODE = "KB-TST-001"
TITLE = "住房公积金租房提取怎么办理"
ANSWER = (
    "在本市租房自住的职工，可以按月或按季度提取住房公积金支付房租。无房产证明可在“北京住房"
    "公积金”网站或手机公积金APP线上申请，租住商品住房的按实际房租提取，每月最高不超过规定"
    "限额，审核通过后资金划入本人银行卡。（演示内容）"
)
TYPED = "你好，我在北京租房住，想问一下公积金能不能提取出来交房租，要怎么办理？"


def seed_entry(site: LiveServer) -> None:
    """One entry published by the centre's admin, as the import and the demo base do."""
    with site.db.write() as s:
        user, unit = s.execute(
            select(User, Unit).join(Unit, Unit.id == User.unit_id).where(User.username == "admin")
        ).one()
        owner = s.scalar(select(Unit.id).where(Unit.code == "BJ-RSJ"))
        assert owner is not None
        content = service.EntryContent(
            title=TITLE, answer=ANSWER, category_code=None, owner_unit_id=owner,
            keywords=["公积金", "租房提取", "房租"],
            questions=["租房能提取公积金吗", "公积金怎么提出来交房租"],
            valid_from=date(2025, 1, 1), valid_to=date(2027, 12, 31),
            source="《住房公积金提取管理办法》（演示内容）",
        )  # fmt: skip
        service.publish_direct(content, actor=principal_of(user, unit), db_session=s, now=NOW,
                               code=CODE, demo=True)  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    require_chromium()
    with time_machine.travel(NOW, tick=True):
        url = demo_database(tmp_path_factory.mktemp("kb") / "demo.sqlite3", days=1, per_day=40)
        with live_server(url) as server:
            seed_entry(server)
            yield server


@pytest.fixture(scope="module")
def browser(site: LiveServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        yield chromium
        chromium.close()


def test_an_agent_answers_a_consultation_with_the_entry_seen_while_typing(
    site: LiveServer, browser: Any
) -> None:
    people = People(browser, site.url, {}, NOW)
    try:
        agent = people("agent1")
        troubles: list[str] = []  # the content security policy's reports, script errors
        agent.on("console", lambda m: troubles.append(m.text) if "Content Security Policy" in m.text else None)  # fmt: skip
        agent.on("pageerror", lambda e: troubles.append(f"page error: {e}"))
        assert agent.url.endswith("/console/intake")
        agent.fill("#phone", "13766660001")
        agent.select_option("#request_type", "consult")
        assert agent.locator("#kb-empty").is_visible()

        # Typed as the caller speaks, key by key: the panel follows the typing.
        agent.locator("#content").press_sequentially(TYPED, delay=15)
        hit = agent.locator(f'#kb-hits li.kb-hit[data-kb-code="{CODE}"]')
        hit.wait_for(state="visible")
        assert TITLE in hit.locator(".kb-title").inner_text()
        assert hit.locator(".kb-passage mark").count() >= 1
        assert "演示内容" in hit.inner_text() and "第 1 版" in hit.inner_text()
        assert "北京市人力资源和社会保障局" in hit.inner_text()

        # 用此条目答复: 直接答复 chosen, its answer filled with the entry's text, the entry linked.
        hit.locator("button[data-kb-use]").click()
        assert agent.locator('input[data-then-choice][value="answer"]').is_checked()
        assert agent.locator('fieldset[data-then="answer"]').is_visible()
        assert agent.input_value("#answer-answer") == ANSWER
        assert agent.input_value("#answer-entry") == CODE
        chosen = agent.locator('fieldset[data-then="answer"] [data-kb-chosen]')
        assert chosen.is_visible()
        assert f"已选用：{CODE} 第 1 版" in chosen.inner_text() and "取消" in chosen.inner_text()
        assert agent.evaluate("() => document.activeElement.id") == "answer-answer"

        # The agent may edit the text before submitting: the entry stays linked.
        agent.locator("#answer-answer").press("End")
        agent.keyboard.type("另已告知可拨打12329咨询。")
        assert agent.input_value("#answer-entry") == CODE
        with agent.expect_navigation():
            agent.click("#intake-form button[type=submit]")
        assert not agent.locator(".flash-error").count(), flash_text(agent)
        ticket_id = ticket_id_of(agent)
        assert status_of(agent) == "answered"
        basis = agent.locator("#answer-basis")
        assert CODE in basis.inner_text() and "第 1 版" in basis.inner_text()
        assert f"《{TITLE}》" in basis.inner_text()
        assert basis.locator("a").get_attribute("href") == f"/console/knowledge/{CODE}"
        assert not troubles, troubles
    finally:
        people.close()

    with site.db.read() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None and ticket.status == "answered"
        event = s.scalar(select(Event).where(Event.ticket_id == ticket_id,
                                             Event.action == "answer"))  # fmt: skip
        assert event is not None
        assert (event.data["entry"], event.data["entry_version"]) == (CODE, 1)
        assert event.data["answer"] == ANSWER + "另已告知可拨打12329咨询。"
        entry = s.scalar(select(KnowledgeEntry).where(KnowledgeEntry.code == CODE))
        assert entry is not None and entry.use_count == 1
        uses = s.scalars(select(KnowledgeUse).where(KnowledgeUse.entry_id == entry.id)).all()
        assert [u.ticket_id for u in uses] == [ticket_id]


def test_the_agent_reports_an_entry_from_the_panel(site: LiveServer, browser: Any) -> None:
    people = People(browser, site.url, {}, NOW)
    try:
        agent = people("agent2")
        agent.locator("#content").press_sequentially("租房提取公积金要什么材料", delay=15)
        hit = agent.locator(f'#kb-hits li.kb-hit[data-kb-code="{CODE}"]')
        hit.wait_for(state="visible")
        hit.locator("button[data-kb-flag]").click()
        box = hit.locator(".kb-flag-box")
        assert box.is_visible()
        box.locator("select[name=reason]").select_option("outdated")
        box.locator("textarea[name=note]").fill("每月提取限额已调整")
        box.locator("button[hx-post]").click()
        hit.locator(".kb-flagged").wait_for(state="visible")
        assert "已报错" in hit.locator(".kb-flagged").inner_text()
        wait_until(agent, "() => !document.querySelector('.flash-error')")
        # The intake form was not sent: still on the intake page, nothing typed lost.
        assert agent.url.endswith("/console/intake")
        assert agent.input_value("#content") == "租房提取公积金要什么材料"
    finally:
        people.close()
    with site.db.read() as s:
        entry = s.scalar(select(KnowledgeEntry).where(KnowledgeEntry.code == CODE))
        assert entry is not None and entry.open_flags == 1
