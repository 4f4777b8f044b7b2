"""Real-browser journeys through the console and the citizen portal (Playwright + Chromium).

The app runs under uvicorn on a fresh SQLite file with the Beijing demo city and four days of
generated history; Debian's Chromium (/usr/bin/chromium) drives it as a citizen and as the
demo staff would. Without Chromium the module skips, or fails with CI=true. The journeys run on
SQLite only: the API tests cover PostgreSQL, and a page does not know which database it reads.

The last test saves a screenshot of every workbench: to docs/screenshots/ with
`JIESU_SCREENSHOTS=1`, to a temporary folder otherwise (so it always checks the pages render).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine

from jiesu.settings import city_tz
from jiesu.tickets.models import Ticket
from tests.browser_support import (
    DONGHUAMEN,
    Api,
    LiveServer,
    People,
    act,
    demo_database,
    dispatched_ticket,
    done,
    flash_text,
    id_of,
    launch,
    live_server,
    portal_submit,
    portal_track,
    require_chromium,
    status_of,
    ticket_id_of,
)

pytestmark = pytest.mark.xdist_group("browser")

ZJW = "BJ-ZJW"  # 北京市住房和城乡建设委员会
STAFF_NAMES = ("马春燕", "刘洋", "杨帆", "王丽娜", "高立新", "北京市民热线服务中心")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
DUE = re.compile(r"\d{4}年\d{1,2}月\d{1,2}日（周.）\d{2}:\d{2}")


# ---- fixtures ----------------------------------------------------------------------------------


# The server's clock for this module (and each browser context's, so countdowns agree): a
# Wednesday morning in working hours, whatever the hour the suite runs at.
NOW = datetime(2026, 11, 18, 10, 0, tzinfo=city_tz())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    require_chromium()
    with time_machine.travel(NOW, tick=True):
        url = demo_database(tmp_path_factory.mktemp("browser") / "demo.sqlite3")
        with live_server(url) as server:
            yield server


@pytest.fixture(scope="module")
def browser(site: LiveServer) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def api(site: LiveServer) -> Iterator[Api]:
    client = Api(site.url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def sessions() -> dict[str, Any]:
    """Each demo user's signed-in cookies, shared by the module's tests."""
    return {}


@pytest.fixture
def people(browser: Any, site: LiveServer, sessions: dict[str, Any]) -> Iterator[People]:
    crowd = People(browser, site.url, sessions, NOW)
    yield crowd
    crowd.close()


# ---- helpers -----------------------------------------------------------------------------------


def open_from_queue(page: Any, base: str, path: str, number: str) -> None:
    """Find ticket `number` in a workbench tab (`path` with its ?tab=) and open it."""
    page.goto(f"{base}{path}&text={number}")
    assert page.locator("#f-text").input_value() == number
    link = page.locator(f"#ticket-list td.num a:text-is('{number}')")
    assert link.count() == 1, f"{number} is not listed on {path}: {page.inner_text('main')}"
    with page.expect_navigation():
        link.click()
    assert page.locator("h1").first.inner_text().strip() == f"工单 {number}"


def due_of(page: Any, phase: str) -> datetime:
    """The 截止时间 of the deadline row for `phase` (办结, 签收 …) on a ticket page."""
    cell = page.locator(f"#deadlines tbody tr:has(td:first-child:text-is('{phase}')) td").nth(3)
    text = cell.inner_text().strip()
    assert DUE.fullmatch(text), f"{phase}: {text!r}"  # 2026年12月15日（周二）24:00
    return datetime.fromisoformat(cell.locator("time").get_attribute("datetime") or "")


def hidden_required(page: Any, form: str) -> list[str]:
    """Fields the browser holds invalid although the user cannot see them (so cannot fix)."""
    return list(
        page.locator(f"{form} :invalid").evaluate_all(
            "els => els.filter(e => e.name && !e.checkVisibility()).map(e => e.name)"
        )
    )


def status_in_db(site: LiveServer, ticket_id: int) -> str:
    with site.db.read() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket.status


# ---- 1. the whole journey ----------------------------------------------------------------------

CONTENT = (
    "东城区东华门街道南池子大街12号院门口的垃圾桶满溢三天了，一直没人清运，气味很大，请尽快处理。"
)
CONTACT_NOTE = "已电话联系诉求人，约定当日下午现场查看"
REPLY = "经现场核实，已协调环卫所当日清运垃圾并增加清运频次，诉求人表示认可。"


def test_citizen_to_callback_whole_journey(site: LiveServer, people: People) -> None:
    base = site.url
    # A citizen submits on the portal (phone-sized) and keeps the number and the code.
    citizen = people(mobile=True)
    number, code = portal_submit(
        citizen, base, content=CONTENT, address="东城区东华门街道南池子大街12号院",
        name="李先生", phone="13812345678",
    )  # fmt: skip
    assert citizen.locator("#sent-content").inner_text().strip() == CONTENT

    # The dispatcher finds it in 待派单 and sends it to 东华门街道.
    dispatcher = people("dispatcher1")
    assert dispatcher.url.endswith("/console/dispatch")
    open_from_queue(dispatcher, base, "/console/dispatch?tab=pending", number)
    ticket_id = ticket_id_of(dispatcher)
    assert status_of(dispatcher) in ("received", "pending_dispatch")
    assert dispatcher.locator("#deadlines").count() == 0  # no clock before dispatch
    act(dispatcher, "dispatch", {"lead": DONGHUAMEN, "note": "属地街道负责环境卫生"})
    done(dispatcher, "派单")
    assert status_of(dispatcher) == "dispatched"
    assert "东华门街道" in dispatcher.locator("#timeline").inner_text()

    # The street's handler sees it in the inbox with a countdown, signs, contacts, replies.
    handler = people("donghuamen.handler")
    assert handler.url.endswith("/console/inbox")
    handler.fill("#f-text", number)
    with handler.expect_navigation():
        handler.click("form.filters button[type=submit]")
    row = handler.locator(f"#ticket-list tbody tr:has(a:text-is('{number}'))")
    assert row.count() == 1, handler.inner_text("main")
    countdown = row.locator("[data-due]")
    assert countdown.count() == 1
    assert re.search(r"\bdl-(ok|mid|warn|over)\b", countdown.get_attribute("class") or "")
    assert "剩" in countdown.inner_text() or "超" in countdown.inner_text()
    with handler.expect_navigation():
        row.locator(f"a:text-is('{number}')").click()
    assert ticket_id_of(handler) == ticket_id
    act(handler, "accept")
    done(handler, "签收")
    assert status_of(handler) == "accepted"
    act(handler, "contact", {"note": CONTACT_NOTE})
    done(handler, "联系诉求人")
    act(handler, "reply", {"result": "solved", "content": REPLY})
    done(handler, "办结反馈")
    assert status_of(handler) == "replied"

    # The centre checks the reply (办结审核) and passes it.
    open_from_queue(dispatcher, base, "/console/dispatch?tab=audit", number)
    assert REPLY in dispatcher.locator("#timeline").inner_text()
    act(dispatcher, "audit", {"passed": True})
    done(dispatcher, "审核")
    assert status_of(dispatcher) == "audited"

    # The callback agent reaches the citizen and records the evaluation.
    agent = people("callback1")
    assert agent.url.endswith("/console/callbacks")
    open_from_queue(agent, base, "/console/callbacks?tab=callback", number)
    act(agent, "evaluate", {"reached": True, "solved": True, "satisfaction": "satisfied"})
    done(agent, "回访评价")
    assert status_of(agent) == "evaluated"
    assert "已解决 · 满意" in agent.locator("#ticket-content ~ dl").inner_text()

    # The citizen tracks it: the reply and the result, and nobody's name from the staff.
    text = portal_track(citizen, base, number, code)
    assert number in text
    assert REPLY in text
    assert "已解决" in text
    assert "满意" in text
    for hidden in (*STAFF_NAMES, CONTACT_NOTE, "属地街道负责环境卫生"):
        assert hidden not in text, f"the portal shows {hidden!r}"
    assert citizen.locator("form[action='/portal/rate']").count() == 0  # already evaluated
    assert status_in_db(site, ticket_id) == "evaluated"


def test_citizen_rates_the_reply_on_the_portal(site: LiveServer, people: People, api: Api) -> None:
    citizen = people(mobile=True)
    number, code = portal_submit(
        citizen, site.url, content="东华门街道北池子大街路灯不亮已经一周，晚上出行很不方便。",
        address="东城区东华门街道北池子大街", phone="13700001111",
    )  # fmt: skip
    ticket_id = id_of(site, number)
    text = portal_track(citizen, site.url, number, code)
    assert "已受理" in text
    assert citizen.locator("form[action='/portal/rate']").count() == 0  # nothing to rate yet

    reply = "已安排维修人员更换路灯灯泡，现已恢复照明。"
    api.act("dispatcher1", ticket_id, "dispatch", lead=DONGHUAMEN)
    api.act("donghuamen.handler", ticket_id, "accept")
    api.act("donghuamen.handler", ticket_id, "contact", note="电话联系诉求人核实位置")
    api.act("donghuamen.handler", ticket_id, "reply", result="solved", content=reply)
    api.act("dispatcher1", ticket_id, "audit", passed=True)

    text = portal_track(citizen, site.url, number, code)
    assert reply in text
    form = citizen.locator("form[action='/portal/rate']")
    assert form.count() == 1, "no rating form on an audited ticket"
    form.locator("input[name=solved][value=yes]").check()
    satisfaction = form.locator("[name=satisfaction]")
    if satisfaction.first.evaluate("el => el.tagName.toLowerCase()") == "select":
        satisfaction.select_option("very_satisfied")
    else:
        form.locator("input[name=satisfaction][value=very_satisfied]").check()
    note = form.locator("[name=note]")
    if note.count():
        note.fill("处理很及时，谢谢！")
    with citizen.expect_navigation():
        form.locator("button[type=submit]").click()
    assert "感谢您的评价" in flash_text(citizen)
    assert "非常满意" in citizen.inner_text("body")
    assert citizen.locator("form[action='/portal/rate']").count() == 0
    assert status_in_db(site, ticket_id) == "evaluated"


# ---- 2. a return -------------------------------------------------------------------------------


def test_wrong_unit_returns_and_the_ticket_is_redispatched(
    site: LiveServer, people: People, api: Api
) -> None:
    base = site.url
    ticket = api.create(
        content="东华门街道东厂胡同有商户占道经营，堆放杂物影响通行。",
        address="东城区东华门街道东厂胡同", street=DONGHUAMEN, request_type="complain",
        requester={"name": "赵女士", "phone": "13600002222"},
    )  # fmt: skip
    number = ticket["number"]

    dispatcher = people("dispatcher1")
    open_from_queue(dispatcher, base, "/console/dispatch?tab=pending", number)
    act(dispatcher, "dispatch", {"lead": ZJW})
    done(dispatcher, "派单")

    wrong = people("zjw.handler")
    open_from_queue(wrong, base, "/console/inbox?tab=todo", number)
    act(wrong, "request_return", {"reason": "占道经营属街道城管执法职责，非本委职责范围"})
    done(wrong, "申请退单")
    assert status_of(wrong) == "dispatched"
    assert wrong.locator("h1 ~ .chip:text-is('退单待审核')").count() == 1

    open_from_queue(dispatcher, base, "/console/dispatch?tab=returns", number)
    act(dispatcher, "review_return", {"approved": True, "note": "同意退单，改派属地街道"})
    done(dispatcher, "审核退单")
    assert status_of(dispatcher) == "pending_dispatch"

    open_from_queue(dispatcher, base, "/console/dispatch?tab=pending", number)
    act(dispatcher, "dispatch", {"lead": DONGHUAMEN})
    done(dispatcher, "派单")
    assert status_of(dispatcher) == "dispatched"
    units = dispatcher.locator("section:has(h2:text-is('承办单位')) tbody").inner_text()
    assert "北京市住房和城乡建设委员会" in units and "东华门街道" in units

    # The street now has it; the department no longer does.
    street = people("donghuamen.handler")
    open_from_queue(street, base, "/console/inbox?tab=todo", number)
    assert "accept" in [d.removeprefix("act-") for d in _action_ids(street)]
    wrong.goto(f"{base}/console/inbox?tab=todo&text={number}")
    assert wrong.locator(f"#ticket-list a:text-is('{number}')").count() == 0


def _action_ids(page: Any) -> list[str]:
    return list(page.locator("#actions details").evaluate_all("els => els.map(e => e.id)"))


# ---- 3. an extension ---------------------------------------------------------------------------


def test_extension_moves_the_completion_deadline(
    site: LiveServer, people: People, api: Api
) -> None:
    base = site.url
    ticket = dispatched_ticket(
        api, content="东华门街道某小区外墙脱落需要维修加固，涉及多部门协调。"
    )
    number = ticket["number"]

    handler = people("donghuamen.handler")
    open_from_queue(handler, base, "/console/inbox?tab=todo", number)
    act(handler, "accept")
    done(handler, "签收")
    before = due_of(handler, "办结")
    act(handler, "request_extension", {"days": 5, "reason": "需协调产权单位和施工队，时间较长"})
    done(handler, "申请延期")
    assert handler.locator("h1 ~ .chip:text-is('延期待审核')").count() == 1

    dispatcher = people("dispatcher1")
    open_from_queue(dispatcher, base, "/console/dispatch?tab=extensions", number)
    act(dispatcher, "review_extension", {"approved": True, "days": 5})
    done(dispatcher, "审核延期")
    after = due_of(dispatcher, "办结")
    assert after > before, (before, after)
    assert (after - before).days >= 5  # five working days are at least five calendar days
    assert dispatcher.locator("h1 ~ .chip:text-is('延期待审核')").count() == 0

    handler.reload()
    assert due_of(handler, "办结") == after


# ---- 4. masking --------------------------------------------------------------------------------


def test_handler_sees_the_phone_masked_until_revealed(
    site: LiveServer, people: People, api: Api
) -> None:
    ticket = dispatched_ticket(api, requester={"name": "王建华", "phone": "13812345678"})
    url = f"{site.url}/console/tickets/{ticket['id']}"

    handler = people("donghuamen.handler")
    handler.goto(url)
    requester = handler.locator("#requester")
    shown = requester.inner_text()
    assert "138****5678" in shown
    assert "13812345678" not in shown and "王建华" not in shown
    requester.locator("button:text-is('查看完整信息')").click()
    handler.locator("#revealed").wait_for()
    assert handler.locator("#revealed").inner_text().strip() == "王建华 · 13812345678"
    assert "已记录查看" in requester.inner_text()

    other = people("xichanganjie.handler")
    response = other.goto(url)
    assert response is not None and response.status == 404
    assert other.locator("h1").inner_text().strip() == "找不到页面"
    assert "13812345678" not in other.content() and "138****5678" not in other.content()


# ---- 5. intake ---------------------------------------------------------------------------------


def test_agent_sees_the_callers_history_and_answers_directly(
    site: LiveServer, people: People, api: Api
) -> None:
    phone = "13911112222"
    earlier = [
        api.create("agent2", content=text, requester={"name": "孙先生", "phone": phone})
        for text in ("咨询社保卡补办需要哪些材料？", "小区附近施工夜间噪音扰民。")
    ]
    agent = people("agent1")
    assert agent.url.endswith("/console/intake")
    agent.locator("#phone").press_sequentially(phone)
    history = agent.locator("#history-box #history tbody tr")
    history.first.wait_for()
    assert history.count() == 2
    listed = agent.locator("#history-box").inner_text()
    for t in earlier:
        assert t["number"] in listed

    agent.fill("#name", "孙先生")
    agent.select_option("#request_type", "consult")
    agent.fill("#content", "咨询居住证办理需要准备哪些材料，在哪里办理。")
    agent.check("input[name=then][value=answer]")
    answer = "持身份证、居住登记凭证到居住地派出所或社区服务站办理，可先在北京通预约。"
    agent.fill("#answer-answer", answer)
    blocked = hidden_required(agent, "#intake-form")
    assert not blocked, (
        "intake.html: the hidden 处理方式 fields keep `required` "
        f"({', '.join(blocked)}), so the browser refuses to submit the form"
    )
    with agent.expect_navigation():
        agent.click("#intake-form button[type=submit]")
    assert flash_text(agent) == "已受理，工单已建立", flash_text(agent)
    assert status_of(agent) == "answered"
    assert answer in agent.locator("#timeline").inner_text()
    assert status_in_db(site, ticket_id_of(agent)) == "answered"


# ---- screenshots -------------------------------------------------------------------------------
