"""The first hour: a city evaluating jiesu runs `make run` and walks every role's pages.

The module sets up exactly what `make run` does on a fresh machine: `jiesu demo init` on an empty
SQLite file (migrate, load the Beijing pack, generate the demo history, train the intake models,
scan for warnings) and the worker's first round (the owed daily, weekly and monthly reports), on a
pinned clock. Then, in Debian's Chromium, it checks what a newcomer must see in that first hour:
suggestions with their confidence at intake, streets and departments ranked with the bottom
flagged for a task force (专班), a warning of each detector kind with evidence that fits it, a
monthly PDF in Chinese with no missing glyph, and — on every page each role reaches by following
links — Chinese words only, codes only small beside a name.

Without Chromium the module skips (with CI=true it fails); pdftotext comes with poppler-utils.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from typer.testing import CliRunner

from jiesu.settings import city_tz, get_settings
from tests.browser_support import (
    DESKTOP,
    DONGHUAMEN,
    IN_CI,
    TIMEOUT_MS,
    Api,
    LiveServer,
    People,
    dispatched_ticket,
    has_cjk_font,
    id_of,
    launch,
    live_server,
    login,
    portal_submit,
    portal_track,
    require_chromium,
    wait_until,
)
from tests.page_scan import crawl, findings

pytestmark = pytest.mark.xdist_group("browser")

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
SCENE = (
    "东城区东华门街道南池子大街12号院门口的垃圾桶满溢三天了，一直没人清运，气味很大，请尽快处理。"
)

# A Wednesday morning in working hours, in the first days of a month: last month is complete and
# before its cut-off, the month before it is frozen.
NOW = datetime(2026, 12, 9, 10, 30, tzinfo=city_tz())
LAST_MONTH = "2026-11"
STAFF = ("admin", "agent1", "dispatcher1", "callback1", "supervisor1", "analyst1",
         "dongcheng.supervisor", "donghuamen.handler", "donghuamen.admin", "zjw.handler",
         "zjw.admin")  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A fresh `make run`: `jiesu demo init`, the worker's first round, the server."""
    require_chromium()
    from jiesu.cli import app
    from jiesu.db.engine import Database
    from jiesu.reports.build import run_schedule

    folder = tmp_path_factory.mktemp("newcomer")
    url = f"sqlite:///{folder / 'jiesu.sqlite3'}"
    with pytest.MonkeyPatch.context() as mp, time_machine.travel(NOW, tick=True):
        mp.setenv("JIESU_DATABASE_URL", url)
        mp.setenv("JIESU_VAR_DIR", str(folder))
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(app, ["demo", "init"])
            assert result.exit_code == 0, result.output
            db = Database(url)
            try:
                run_schedule(db)
            finally:
                db.dispose()
            with live_server(url) as server:
                yield server
        finally:
            get_settings.cache_clear()


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


@pytest.fixture
def people(browser: Any, site: LiveServer) -> Iterator[People]:
    crowd = People(browser, site.url, {}, NOW)
    yield crowd
    crowd.close()


def page_for(browser: Any, site: LiveServer, username: str | None) -> Any:
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN", timezone_id="Asia/Shanghai")
    context.set_default_timeout(TIMEOUT_MS)
    context.clock.install(time=NOW)
    page = context.new_page()
    if username:
        login(page, site.url, username)
    return page


def test_intake_suggests_category_type_street_and_lead_with_confidence(
    browser: Any, site: LiveServer
) -> None:
    page = page_for(browser, site, "agent1")
    page.goto(site.url + "/console/intake")
    page.locator("#content").fill("朝阳区劲松街道劲松八区3号楼门口路面塌陷了一个大坑，晚上很危险")
    page.locator("#content").press("End")
    box = page.locator("#suggest-box")
    box.locator("#suggest-list").wait_for()
    text = box.inner_text()
    for label in ("分类", "诉求类型", "地点", "承办单位"):
        assert label in text, text
    assert "劲松" in text, text
    assert len(re.findall(r"\d{1,3}%", text)) >= 3, f"no confidence shown: {text}"
    page.context.close()


def test_rankings_rank_streets_and_departments_and_flag_the_bottom(
    browser: Any, site: LiveServer
) -> None:
    page = page_for(browser, site, "supervisor1")
    for group in ("street", "department"):
        page.goto(f"{site.url}/console/assessment?group={group}&period={LAST_MONTH}")
        rows = page.locator("table tbody tr")
        assert rows.count() > 5, page.inner_text("main")
        body = page.inner_text("main")
        assert "专班" in body, f"{group}: nobody flagged for a task force"
        ranked = page.locator("table tbody tr td:first-child").all_inner_texts()
        numbers = [int(t) for t in ranked if t.strip().isdigit()]
        assert len(numbers) >= 5 and numbers[0] == 1, f"{group}: {ranked[:10]}"
    page.context.close()


def test_a_warning_of_each_detector_kind_on_first_start(browser: Any, site: LiveServer) -> None:
    page = page_for(browser, site, "analyst1")
    page.goto(site.url + "/console/warnings")
    text = page.inner_text("main")
    for kind in ("诉求激增", "重复诉求", "反复退单", "履职下滑", "新兴话题", "每月一题候选"):
        assert kind in text, f"no {kind} warning: {text[:2000]}"
    page.context.close()


def test_the_monthly_report_pdf_is_chinese_with_every_glyph(
    browser: Any, site: LiveServer, tmp_path: Path
) -> None:
    if not shutil.which("pdftotext"):
        message = "pdftotext is missing: apt-get install poppler-utils"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    page = page_for(browser, site, "analyst1")
    page.goto(site.url + "/console/reports")
    link = page.locator("a[href$='/pdf']").first
    href = link.get_attribute("href")
    assert href, page.inner_text("main")
    response = page.request.get(site.url + href)
    assert response.ok, response.status
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(response.body())
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    han = re.findall(r"[\u4e00-\u9fff]", text)
    assert len(han) > 200, text[:500]
    assert "\ufffd" not in text
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True).stdout
    assert re.search(r"CJK|Noto Sans SC|Noto Sans CJK", fonts), fonts
    page.context.close()


@pytest.mark.parametrize("username", [*STAFF, None])
def test_every_page_a_role_reaches_reads_in_chinese(
    browser: Any, site: LiveServer, username: str | None
) -> None:
    page = page_for(browser, site, username)
    start, roots = ("/console", ("/console",)) if username else ("/portal", ("/portal",))
    pages = crawl(page, site.url, start, limit=int(os.environ.get("JIESU_SCAN_LIMIT", "30")),
                  roots=roots)  # fmt: skip
    assert pages
    found = {url: f for url, text in pages.items() if (f := findings(text))}
    page.context.close()
    assert not found, "\n".join(f"{url}: {f[:8]}" for url, f in found.items())


SHOTS = ("login", "intake", "dispatch", "inbox", "ticket", "callbacks", "supervision",
         "admin-users", "tickets", "portal-submit", "portal-track", "dashboard", "assessment",
         "warnings", "reports")  # fmt: skip
UGLY = re.compile(r"\bNone\b|\bnull\b|undefined|Traceback|\{\s*\"|\[object ")


def test_screenshots_of_every_workbench(
    site: LiveServer, people: People, api: Api, tmp_path: Path
) -> None:
    """Each workbench as its user sees it in the first hour; to docs/screenshots with
    JIESU_SCREENSHOTS=1 (the README's pictures come from here)."""
    keep = os.environ.get("JIESU_SCREENSHOTS") == "1"
    if keep and not has_cjk_font():
        pytest.fail("no Chinese font: apt-get install fonts-noto-cjk before taking screenshots")
    out = SCREENSHOTS if keep else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    base = site.url
    ugly: dict[str, str] = {}

    def shot(page: Any, name: str, *, full_page: bool = True) -> None:
        page.evaluate("document.fonts.ready.then(() => true)")
        found = UGLY.search(page.inner_text("body"))
        if found:
            ugly[name] = found.group(0)
        page.screenshot(path=str(out / f"{name}.png"), full_page=full_page)

    # The scene: a caller with history, a ticket the street is handling, one to rate.
    phone = "13522223333"
    for kind, category, text in (
        ("complain", "020701", "反映东华门街道南河沿大街井盖松动，车辆经过有响声。"),
        ("consult", None, "咨询东城区老年人优待卡如何办理。"),
    ):  # fmt: skip
        api.create("agent2", content=text, request_type=kind, category_code=category,
                   requester={"name": "周女士", "phone": phone})  # fmt: skip
    for category, text, steps in (
        ("020702", "菖蒲河公园东侧路灯不亮已经三天，晚上散步很黑，存在安全隐患。", ()),
        ("0203", "南池子大街有商户占道摆摊，行人只能走机动车道，很危险。", ("accept",)),
        ("0402", "东华门大街一家餐馆油烟直排，对面居民楼窗户都不敢开。", ("accept", "contact")),
        ("0307", "北河沿大街小区门口共享单车乱停，堵住了消防通道。", ()),
    ):  # fmt: skip
        other = dispatched_ticket(api, content=text, category_code=category,
                                  requester={"name": "刘先生", "phone": "13600004444"})  # fmt: skip
        for step in steps:
            fields = {"note": "已电话联系诉求人，了解具体情况"} if step == "contact" else {}
            api.act("donghuamen.handler", other["id"], step, **fields)
    handled = dispatched_ticket(api, content=SCENE, title="南池子大街12号院垃圾桶满溢无人清运")
    api.act("donghuamen.handler", handled["id"], "accept")
    api.act(
        "donghuamen.handler",
        handled["id"],
        "contact",
        note="已电话联系诉求人，约定当日下午现场查看",
    )
    api.act("supervisor1", handled["id"], "urge", note="群众反映强烈，请加快办理")

    page = people()
    page.goto(base + "/login")
    shot(page, "login", full_page=False)

    agent = people("agent1")
    agent.locator("#phone").press_sequentially(phone)
    agent.locator("#history-box #history tbody tr").first.wait_for()
    agent.fill("#name", "周女士")
    agent.select_option("#request_type", "complain")
    agent.fill("#address", "东城区东华门街道南河沿大街")
    agent.fill("#content", "南河沿大街井盖仍然松动，上次反映后没有修好，夜里车辆经过声音很大。")
    agent.locator("#content").press("End")  # a key press: the suggestions follow the typing
    agent.locator("#suggest-box #suggest-list").wait_for()
    assert "东华门街道" in agent.locator("#suggest-box").inner_text()
    shot(agent, "intake")

    shot(people("dispatcher1"), "dispatch")
    handler = people("donghuamen.handler")
    shot(handler, "inbox")
    handler.goto(f"{base}/console/tickets/{handled['id']}")
    handler.locator("#act-reply summary").click()
    shot(handler, "ticket")
    shot(people("callback1"), "callbacks")
    shot(people("supervisor1"), "supervision")
    shot(people("admin"), "admin-users")
    shot(people("analyst1"), "tickets")

    citizen = people(mobile=True)
    citizen.goto(base + "/portal/submit")
    citizen.fill("#content", "北池子大街路灯不亮已经一周，晚上出行很不方便。")
    citizen.fill("#address", "东城区东华门街道北池子大街")
    citizen.fill("#phone", "13700003333")
    shot(citizen, "portal-submit")
    number, code = portal_submit(
        citizen, base, title="北池子大街路灯不亮", name="陈先生", phone="13700003333",
        content="北池子大街路灯不亮已经一周，晚上出行很不方便，请尽快修复。",
        address="东城区东华门街道北池子大街",
    )  # fmt: skip
    rated = id_of(site, number)
    api.act("dispatcher1", rated, "dispatch", lead=DONGHUAMEN)
    api.act("donghuamen.handler", rated, "accept")
    api.act("donghuamen.handler", rated, "contact", note="电话联系诉求人核实位置")
    api.act("donghuamen.handler", rated, "reply", result="solved",
            content="已安排维修人员更换路灯灯泡，现已恢复照明，感谢您的反映。")  # fmt: skip
    api.act("dispatcher1", rated, "audit", passed=True)
    portal_track(citizen, base, number, code)
    shot(citizen, "portal-track")

    leader = people("supervisor1")
    leader.set_viewport_size({"width": 1600, "height": 1000})
    leader.goto(f"{base}/console/dashboard?days=7")
    wait_until(
        leader,
        "() => window.jiesuDashboard && window.jiesuDashboard.loads >= 1 && "
        "[...document.querySelectorAll('.dash-panel:not([hidden]) .chart')]"
        ".every(el => el.querySelector('canvas, svg'))",
    )
    leader.wait_for_timeout(1200)  # the charts' entry animation
    shot(leader, "dashboard", full_page=False)
    leader.goto(f"{base}/console/assessment?group=street&period={LAST_MONTH}")
    shot(leader, "assessment", full_page=False)  # 343 streets: the top of the table
    analyst = people("analyst1")
    analyst.goto(f"{base}/console/warnings")
    shot(analyst, "warnings")
    analyst.goto(f"{base}/console/reports")
    analyst.select_option("#r-kind", "daily")
    analyst.fill("#r-period", f"{NOW.date() - timedelta(days=1)}")
    analyst.get_by_role("button", name="立即生成").click()
    analyst.wait_for_url("**/console/reports/*")
    analyst.goto(f"{base}/console/reports")
    shot(analyst, "reports")

    missing = [name for name in SHOTS if not (out / f"{name}.png").is_file()]
    assert not missing, missing
    assert not ugly, f"pages showing raw values: {ugly}"
