"""The dashboard (数据大屏) in a real browser: the charts render from the app's own ECharts, nothing
is fetched from outside the app, and the period switches without reloading the page.

Debian's Chromium (/usr/bin/chromium) drives the app under uvicorn on a fresh SQLite file with
the tiny test city and five weeks of generated history. Without Chromium the module skips, or
fails with CI=true. SQLite only: tests/test_dashboard.py covers both databases.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from conftest import PASSWORD, TINY_PACK

from tests.browser_support import (
    DESKTOP,
    TIMEOUT_MS,
    LiveServer,
    demo_database,
    launch,
    live_server,
    login,
    require_chromium,
    wait_until,
)

pytestmark = pytest.mark.xdist_group("browser")

# Every visible chart container holds what ECharts drew, and the first load is in.
CHARTS_DRAWN = """() => {
  const charts = [...document.querySelectorAll('.dash-panel:not([hidden]) .chart')];
  return window.jiesuDashboard && window.jiesuDashboard.loads >= 1 && charts.length >= 9 &&
    charts.every(el => el.querySelector('canvas, svg'));
}"""


# The server's clock for this module: a Wednesday afternoon, so the default 今日 view has the
# day's requests whatever the hour the suite runs at (at 04:19 the real "today" has none).
NOW = datetime(2026, 11, 18, 15, 30, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    require_chromium()
    path = tmp_path_factory.mktemp("dashboard") / "tiny.sqlite3"
    with time_machine.travel(NOW, tick=True):
        url = demo_database(path, days=35, per_day=40, pack=TINY_PACK, seed=8)
        with live_server(url) as server:
            yield server


def test_the_dashboard_draws_its_charts_and_switches_period_in_place(site: LiveServer) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page(viewport=DESKTOP, locale="zh-CN")
            page.set_default_timeout(TIMEOUT_MS)
            requested: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: requested.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            login(page, site.url, "supervisor1", PASSWORD)
            page.goto(site.url + "/console/dashboard")
            wait_until(page, CHARTS_DRAWN)
            assert page.locator("#fig-requests").inner_text() not in ("", "—")
            assert page.locator("#items-table tbody tr").count() > 0
            first: dict[str, Any] = page.evaluate("window.jiesuDashboard.data.headline")
            assert page.evaluate("window.jiesuDashboard.data.days") == 1
            assert page.evaluate("window.jiesuDashboard.data.today") == NOW.date().isoformat()

            page.evaluate("window.__notReloaded = 'still here'")
            page.click(".dash-periods button[data-days='30']")
            wait_until(page, "() => window.jiesuDashboard.data.days === 30")
            wait_until(page, CHARTS_DRAWN)
            assert page.evaluate("window.__notReloaded") == "still here"
            assert page.url.endswith("/console/dashboard?days=30")
            assert "近30日" in page.locator("#fig-requests-label").inner_text()
            month: dict[str, Any] = page.evaluate("window.jiesuDashboard.data.headline")
            assert month["requests"] > first["requests"]
            shown = page.locator("#fig-requests").inner_text().replace(",", "")
            assert shown == str(month["requests"])
            assert page.get_attribute(".dash-periods button[data-days='30']", "aria-pressed") == (
                "true"
            )
        finally:
            browser.close()
    outside = [u for u in requested if not u.startswith(site.url + "/")]
    assert not outside, f"requests that left the app: {outside}"
    assert any(u.endswith("/static/vendor/echarts/echarts.min.js") for u in requested)
    assert not errors, errors
