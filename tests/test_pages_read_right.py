"""Pages that read right (issue 14 §3): a unit's part after the close, the timeline by names,
deadlines as people count them, the calendar nobody entered, the favicon. The database tests run
on both databases in one module-scoped tiny city each."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from conftest import BACKENDS, Templates, auth, tiny_city
from fastapi.testclient import TestClient
from test_auth import Console, app_of

from jiesu.db.engine import Database
from jiesu.web.templating import due_text

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 7, 10, 30, tzinfo=SH)  # a Monday
TICKETS = "/api/v1/tickets"


# ---- deadlines as people count them (one filter for every page) -------------------------------


@time_machine.travel(NOW, tick=False)
def test_a_due_at_midnight_is_the_end_of_the_day_before() -> None:
    # 7 working days from Monday 7 Dec end with Tuesday 15 Dec: stored as 16 Dec 00:00
    assert due_text(datetime(2026, 12, 16, 0, 0, tzinfo=SH)) == "12月15日（周二）24:00"
    assert due_text(datetime(2026, 12, 16, 0, 0, tzinfo=SH), True) == "2026年12月15日（周二）24:00"
    assert due_text(datetime(2026, 12, 8, 0, 0, tzinfo=SH)) == "今日 24:00"
    assert due_text(datetime(2026, 12, 9, 0, 0, tzinfo=SH)) == "明日 24:00"
    assert due_text(datetime(2027, 1, 5, 0, 0, tzinfo=SH)) == "2027年1月4日（周一）24:00"


@time_machine.travel(NOW, tick=False)
def test_an_hour_due_shows_its_own_hour() -> None:
    assert due_text(datetime(2026, 12, 7, 12, 30, tzinfo=SH)) == "今日 12:30"
    assert due_text(datetime(2026, 12, 10, 18, 0, tzinfo=SH)) == "12月10日（周四）18:00"
    assert (
        due_text(datetime(2026, 12, 10, 10, 0, tzinfo=ZoneInfo("UTC"))) == "12月10日（周四）18:00"
    )
    assert due_text(None) == "—"


# ---- one tiny city per database ---------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def city(
    request: pytest.FixtureRequest, templates: Templates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Database]]:
    with tiny_city(str(request.param), templates, tmp_path_factory) as world:
        yield world


class Desk:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.headers: dict[str, dict[str, str]] = {}

    def ok(self, username: str, ticket: int, action: str, **body: Any) -> dict[str, Any]:
        if username not in self.headers:
            self.headers[username] = auth(self.client, username)
        r = self.client.post(
            f"{TICKETS}/{ticket}/actions/{action}", json=body, headers=self.headers[username]
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def new(self, **fields: Any) -> int:
        r = self.client.post(
            TICKETS,
            json={
                "channel": "phone",
                "content": "小区楼道灯坏了一个月没人修，请尽快处理",
                **fields,
            },
            headers=auth(self.client, "agent1"),
        )
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


def section(html: str, heading: str) -> str:
    start = html.index(f">{heading}</h2>")
    end = html.find("</section>", start)
    return html[start:end]


def visible(html: str) -> str:
    """The text a person reads (tags out, what is drawn small as a code out)."""
    html = re.sub(r"<small[^>]*>.*?</small>", "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def test_a_closed_order_shows_each_units_own_end_and_a_timeline_by_names(
    city: tuple[TestClient, Database],
) -> None:
    client, _ = city
    desk = Desk(client)
    t = desk.new(category_code="010101")
    note = "按派单目录派属地街道办理"
    desk.ok("dispatcher1", t, "dispatch", lead="S11", note=note)
    desk.ok("dispatcher1", t, "recategorize", category="0102")
    desk.ok("s11.handler", t, "request_return", reason="不属于本街道职责范围，请改派")
    desk.ok("dispatcher1", t, "review_return", approved=True)
    desk.ok("dispatcher1", t, "dispatch", lead="S11", note=note)
    desk.ok("s11.handler", t, "accept")
    desk.ok("s11.handler", t, "contact", note="已电话联系诉求人")
    desk.ok("s11.handler", t, "reply", result="solved", content="已更换楼道灯并回访确认")
    desk.ok("dispatcher1", t, "audit", passed=True)
    desk.ok("callback1", t, "evaluate", reached=True, solved=True, satisfaction="satisfied")
    desk.ok("callback1", t, "close")

    page = Console(app_of(client), "dispatcher1").http.get(f"/console/tickets/{t}")
    assert page.status_code == 200
    units = visible(section(page.text, "承办单位"))
    assert "办理中" not in units
    assert "已办结" in units and "已退单" in units  # the first round's own end, then the close

    timeline = section(page.text, "办理过程")
    text = visible(timeline)
    assert "事项分类编码" not in text and "0102" not in text and "010101" not in text
    assert "事项分类：房屋安全" in text and "原为" in text
    assert '<small class="code">0102</small>' in timeline
    assert "处置层级：" in text and "T2h" not in text
    assert text.count(note) == 1 and re.search(r"说明同 \d\d-\d\d \d\d:\d\d 派单", text)
    assert "是否同意：同意" in text and "满意度：满意" in text


def test_the_admin_and_the_centre_see_the_missing_calendar_year_on_their_home_page(
    city: tuple[TestClient, Database],
) -> None:
    client, _ = city
    # the tiny pack has entered 2027's new year's day; 2028 is nobody's yet
    with time_machine.travel(datetime(2027, 3, 1, 9, 0, tzinfo=SH), tick=True):
        admin = Console(app_of(client), "admin1")
        for path in ("/console/admin/users", "/console/admin/calendar"):
            r = admin.http.get(path)
            assert r.status_code == 200
            assert "2028 年的节假日与调休安排尚未录入" in r.text, path
            assert "holiday schedule" not in r.text
        assert "前往调休日历录入" in admin.http.get("/console/admin/users").text
        dispatcher = Console(app_of(client), "dispatcher1")
        assert "2028 年的节假日" in dispatcher.http.get("/console/dispatch").text
        assert "2028 年的节假日" not in dispatcher.http.get("/console/tickets").text
        handler = Console(app_of(client), "s11.handler")
        assert "2028 年的节假日" not in handler.http.get("/console/inbox").text


def test_the_dashboards_trend_names_today_as_partial(city: tuple[TestClient, Database]) -> None:
    from jiesu.dashboard.service import dashboard

    _, db = city
    with db.read() as session:
        data = dashboard(7, db_session=session, now=NOW)
    assert data["trend"]["days"][-1] == "2026-12-07"
    assert data["trend"]["partial"] == {
        "day": "2026-12-07",
        "until": "10:30",
        "label": "今日（截至 10:30）",
    }


def test_the_favicon_is_served(city: tuple[TestClient, Database]) -> None:
    client, _ = city
    r = client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    assert r.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert client.get("/static/favicon.svg").status_code == 200


# ---- 考评排名 at 1400 and 1280 px (a real browser on the Beijing demo city) ----------------------

RANKING_FITS = """() => {
  const badges = [...document.querySelectorAll('#ranking .flag')];
  return {page: document.documentElement.scrollWidth, inner: innerWidth,
          table: document.querySelector('#ranking').getBoundingClientRect().right,
          badges: badges.length, tallest: Math.max(0, ...badges.map(b => b.getBoundingClientRect().height)),
          // one line of a badge's text (two lines would be at least twice its font size)
          line: badges.length ? parseFloat(getComputedStyle(badges[0]).fontSize) * 1.9 : 0};
}"""


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The Beijing demo city, three days of history, served on a clock pinned at NOW."""
    from tests.browser_support import demo_database, live_server, require_chromium

    require_chromium()
    path = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
    with time_machine.travel(NOW, tick=True):
        url = demo_database(path, days=3, per_day=120)
        with live_server(url) as site:
            yield site


def test_the_ranking_fits_the_window_and_its_badges_never_wrap(demo_site: Any) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser_support import DESKTOP, TIMEOUT_MS, launch, login

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            for width in (DESKTOP["width"], 1280):
                page = browser.new_page(viewport={"width": width, "height": 900}, locale="zh-CN")
                page.set_default_timeout(TIMEOUT_MS)
                login(page, demo_site.url, "analyst1")
                for group in ("district", "street", "department"):
                    page.goto(f"{demo_site.url}/console/assessment?period=2026-12&group={group}")
                    got = page.evaluate(RANKING_FITS)
                    assert got["page"] <= got["inner"], (width, group, got)
                    if width == DESKTOP["width"]:
                        assert got["table"] <= got["inner"], (group, got)  # no inner scroll
                    assert got["badges"] > 0, group  # 样本不足 (three days of history)
                    assert got["tallest"] <= got["line"], (width, group, got)  # one line
                page.close()
        finally:
            browser.close()


CHART = """name => {
  const o = echarts.getInstanceByDom(document.getElementById('chart-' + name)).getOption();
  return {series: o.series.map(s => ({name: s.name, type: s.type,
                                       data: (s.data || []).map(x => x && x.name !== undefined ? x.name : x)})),
          axis: o.xAxis && o.xAxis[0] ? o.xAxis[0].data : null,
          title: o.title && o.title[0] ? o.title[0].text : null};
}"""


def test_a_district_reads_its_streets_and_today_is_drawn_as_partial(demo_site: Any) -> None:
    from playwright.sync_api import sync_playwright

    from tests.browser_support import DESKTOP, TIMEOUT_MS, launch, login, wait_until

    loaded = "() => window.jiesuDashboard && window.jiesuDashboard.loads >= 1"
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport=DESKTOP, locale="zh-CN")
            page.set_default_timeout(TIMEOUT_MS)
            login(page, demo_site.url, "dongcheng.supervisor")
            page.goto(demo_site.url + "/console/dashboard?days=7")
            wait_until(page, loaded)
            areas = page.evaluate(CHART, "areas")
            streets = areas["series"][0]["data"]
            assert areas["title"].startswith("东城区") and len(streets) > 3, areas
            assert all(n.endswith(("街道", "地区", "镇", "乡")) for n in streets), streets
            assert page.locator("#areas-back").is_hidden()

            trend = page.evaluate(CHART, "trend")
            partial = [s for s in trend["series"] if s["name"].startswith("今日（截至 10:")]
            assert partial, trend["series"]
            whole = trend["series"][0]
            assert whole["name"] == "本期" and whole["data"][-1] == "-"  # today is not on it
            assert partial[0]["data"][-1] != "-" and trend["axis"][-1] == "今日"
            page.close()

            page = browser.new_page(viewport=DESKTOP, locale="zh-CN")
            page.set_default_timeout(TIMEOUT_MS)
            login(page, demo_site.url, "supervisor1")
            page.goto(demo_site.url + "/console/dashboard?days=7")
            wait_until(page, loaded)
            city = page.evaluate(CHART, "areas")
            assert len(city["series"][0]["data"]) > 3  # the districts
            page.evaluate("""() => echarts.getInstanceByDom(document.getElementById('chart-areas'))
                .trigger('click', {seriesType: 'treemap', name: '东城区',
                                   treePathInfo: [{name: '全市'}, {name: '东城区'}]})""")
            clicked = page.evaluate(CHART, "areas")
            assert clicked["title"].startswith("东城区") and clicked["series"][0]["data"] == streets
            page.click("#areas-back")
            assert page.evaluate(CHART, "areas")["series"][0]["data"] == city["series"][0]["data"]
        finally:
            browser.close()
