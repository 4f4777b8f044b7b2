"""ACCEPTANCE (issue 15, Deliver §3): an incoming call pops the agent's intake with the caller's
history, in a real browser (Playwright + Debian's Chromium, see tests/browser_support.py).

The agent's console is open on the intake page with a draft typed; the telephony posts a call
for that agent; the page asks before replacing the draft (the agent keeps it), then, once the
draft is cleared, takes the call: the caller's number and the call id fill the form and the
caller's earlier orders are listed, open ones first. The agent submits and the order keeps the
call id (来电记录 on the ticket page, and in the database). SQLite only: a page does not know
which database it reads, and tests/test_calls.py covers both.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import time_machine
from sqlalchemy import select

from jiesu.auth.passwords import hash_password
from jiesu.calls.models import Call
from jiesu.org.models import Unit, User
from jiesu.settings import city_tz
from jiesu.tickets.models import Ticket
from tests.browser_support import (
    DEMO_PASSWORD,
    Api,
    LiveServer,
    People,
    demo_database,
    flash_text,
    launch,
    live_server,
    require_chromium,
    ticket_id_of,
    wait_until,
)

pytestmark = pytest.mark.xdist_group("browser")

# The server's clock and the browser's: a Wednesday morning, whatever the hour the suite runs at.
NOW = datetime(2026, 11, 18, 10, 0, tzinfo=city_tz())
CALLER = "13766668888"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    require_chromium()
    with time_machine.travel(NOW, tick=True):
        url = demo_database(tmp_path_factory.mktemp("calls") / "demo.sqlite3", days=1, per_day=40)
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


def telephony_headers(site: LiveServer, api: Api) -> dict[str, str]:
    """The telephony's own account in the centre and a system token scoped to channel phone."""
    with site.db.write() as s:
        centre = s.scalar(select(User.unit_id).where(User.username == "agent1"))
        assert s.get(Unit, centre) is not None
        s.add(User(username="pbx", name="话务系统", role="agent", unit_id=centre,
                   password_hash=hash_password(DEMO_PASSWORD)))  # fmt: skip
    r = api.client.post(
        "/api/v1/admin/tokens",
        json={"username": "pbx", "name": "话务系统", "scope_channel": "phone"},
        headers=api._headers("admin"),
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_an_incoming_call_pops_the_agents_intake_with_the_callers_history(
    site: LiveServer, browser: Any, api: Api
) -> None:
    # The caller's history: an open order, then a newer one answered on the call (finished).
    still_open = api.create("agent2", content="小区门口的路灯坏了一周，晚上很黑。",
                            requester={"name": "钱女士", "phone": CALLER})  # fmt: skip
    answered = api.create("agent2", content="咨询公积金提取需要哪些材料？",
                          request_type="consult",
                          requester={"name": "钱女士", "phone": CALLER})  # fmt: skip
    api.act("agent2", answered["id"], "answer", answer="持身份证到公积金管理中心办理。")
    telephony = telephony_headers(site, api)

    people = People(browser, site.url, {}, NOW)
    try:
        agent = people("agent1")
        assert agent.url.endswith("/console/intake")
        wait_until(agent, "() => document.getElementById('call-pop').dataset.listening === '1'")
        asked: list[str] = []
        agent.on("dialog", lambda d: (asked.append(d.message), d.dismiss()))
        agent.fill("#content", "正在记录上一位市民的诉求")  # a draft

        with httpx.Client(base_url=site.url, timeout=10) as telephony_client:
            r = telephony_client.post(
                "/api/v1/calls",
                json={
                    "call_id": "pbx-20261118-0001",
                    "caller": CALLER,
                    "called": "12345",
                    "agent": "agent1",
                },
                headers=telephony,
            )
        assert r.status_code == 201, r.text

        # The draft is not replaced without asking; the agent keeps it (取消).
        wait_until(agent, "() => !document.getElementById('call-pop').hidden")
        assert len(asked) == 1 and CALLER in asked[0], asked
        assert agent.input_value("#content") == "正在记录上一位市民的诉求"
        assert agent.input_value("#call_id") == ""
        assert agent.locator("#call-fill").is_visible()
        assert CALLER in agent.inner_text("#call-pop")

        # The draft cleared, the agent takes the call: number, call id and history fill in.
        agent.fill("#content", "")
        agent.click("#call-fill")
        assert agent.input_value("#phone") == CALLER
        assert agent.input_value("#call_id") == "pbx-20261118-0001"
        rows = agent.locator("#history-box #history tbody tr")
        assert rows.count() == 2
        listed = [rows.nth(i).locator("td.num a").inner_text().strip() for i in range(2)]
        assert listed == [still_open["number"], answered["number"]], "open orders come first"
        assert rows.nth(0).get_attribute("data-open") == "1"
        assert "直接答复" in rows.nth(1).inner_text()
        assert agent.url.endswith("/console/intake?call=pbx-20261118-0001")

        agent.fill("#name", "钱女士")
        agent.select_option("#request_type", "complain")
        agent.fill("#content", "小区门口路灯仍然不亮，上次反映后没有人来修。")
        with agent.expect_navigation():
            agent.click("#intake-form button[type=submit]")
        assert flash_text(agent) == "已受理，工单已建立", flash_text(agent)
        ticket_id = ticket_id_of(agent)
        calls = agent.locator("#calls")
        assert "来电记录" in calls.inner_text() and "pbx-20261118-0001" in calls.inner_text()

        # Elsewhere in the console (here the order just made), the next call shows as a banner
        # linking to the intake, which the server opens with the caller and the call id.
        wait_until(agent, "() => document.getElementById('call-pop').dataset.listening === '1'")
        r = api.client.post(
            "/api/v1/calls",
            json={
                "call_id": "pbx-20261118-0002",
                "caller": CALLER,
                "called": "12345-2",
                "agent": "agent1",
            },
            headers=telephony,
        )
        assert r.status_code == 201, r.text
        wait_until(agent, "() => !document.getElementById('call-pop').hidden")
        assert "pbx-20261118-0002" in agent.inner_text("#call-pop")
        with agent.expect_navigation():
            agent.click("#call-open")
        assert agent.url.endswith("/console/intake?call=pbx-20261118-0002")
        assert agent.input_value("#phone") == CALLER
        assert agent.input_value("#call_id") == "pbx-20261118-0002"
        numbers = agent.locator("#history-box #history tbody tr td.num a").all_inner_texts()
        with site.db.read() as s:
            taken = s.scalar(select(Ticket.number).where(Ticket.id == ticket_id))
        assert [n.strip() for n in numbers] == [taken, still_open["number"], answered["number"]]
        assert len(asked) == 1, "no question where nothing was typed"
    finally:
        people.close()

    with site.db.read() as s:
        call = s.scalar(select(Call).where(Call.call_id == "pbx-20261118-0001"))
        assert call is not None and call.ticket_id == ticket_id
