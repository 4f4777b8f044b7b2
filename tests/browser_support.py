"""Helpers for the real-browser tests: Debian's Chromium, the app served by uvicorn, the demo city.

Playwright drives /usr/bin/chromium (never a browser downloaded by `playwright install`). The app
runs in a background thread on a free port below 32768, on a fresh SQLite file with the Beijing
demo pack and a small generated history, so the lists have something to show.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from jiesu.citypack.load import load_pack
from jiesu.citypack.parse import read_pack
from jiesu.db.engine import Database
from jiesu.db.migrate import upgrade
from jiesu.demo.generate import DEFAULT_PACK, generate
from jiesu.tickets.models import Ticket
from jiesu.web.app import create_app

CHROMIUM = Path(os.environ.get("JIESU_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--lang=zh-CN",
]
# Chromium's own words (file pickers, date fields, form hints) follow the process language: with
# Debian's chromium-l10n installed they read in Chinese, as on a citizen's phone.
LAUNCH_ENV = {**os.environ, "LANG": "zh_CN.UTF-8", "LANGUAGE": "zh_CN:zh"}
DESKTOP = {"width": 1400, "height": 900}
MOBILE = {"width": 390, "height": 844}
DEMO_PASSWORD = "demo12345"  # every Beijing demo user's
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TIMEOUT_MS = 15_000


def require_chromium() -> None:
    """Skip (or, with CI=true, fail) when Debian's Chromium is not installed."""
    if CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK):
        return
    message = f"Chromium is not installed at {CHROMIUM}"
    if IN_CI:
        pytest.fail(
            f"{message}: CI=true makes the browser tests mandatory "
            "(apt-get install chromium chromium-l10n fonts-noto-cjk; .ci/run does)",
            pytrace=False,
        )
    pytest.skip(
        f"{message}; `apt-get install chromium chromium-l10n fonts-noto-cjk` to run the browser "
        "tests"
    )


def has_cjk_font() -> bool:
    """Whether fontconfig knows a Chinese font (without one, screenshots show empty boxes)."""
    try:
        found = subprocess.run(
            ["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(found.stdout.strip())


def launch(playwright: Any) -> Any:
    """Debian's Chromium, headless, in Chinese."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=LAUNCH_ARGS, env=LAUNCH_ENV
    )


# ---- the demo city ---------------------------------------------------------------------------


def demo_database(
    path: Path,
    *,
    days: int = 4,
    per_day: int = 300,
    pack: Path = DEFAULT_PACK,
    seed: int = 12345,
) -> str:
    """A fresh SQLite file: migrated, a city pack (Beijing unless told) loaded, `days` of
    generated history."""
    url = f"sqlite:///{path}"
    upgrade(url)
    db = Database(url)
    try:
        with db.write() as session:
            load_pack(read_pack(pack), db_session=session)
        generate(db, days=days, per_day=per_day, pack_dir=pack, seed=seed)
    finally:
        db.dispose()
    return url


# ---- the live server -------------------------------------------------------------------------


def free_port(low: int = 20000, high: int = 32000) -> int:
    """A port nobody listens on, below the ephemeral range (so it is not taken meanwhile)."""
    start = low + (os.getpid() * 7919 + int(time.time() * 1000)) % (high - low)
    for offset in range(high - low):
        port = low + (start - low + offset) % (high - low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}–{high}")


@dataclass
class LiveServer:
    url: str  # http://127.0.0.1:PORT
    db: Database


@contextmanager
def live_server(database_url: str) -> Iterator[LiveServer]:
    """The real app under uvicorn in a background thread, until the block ends."""
    db = Database(database_url)
    port = free_port()
    config = uvicorn.Config(
        app=create_app(db), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="jiesu-live-server", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the app did not answer {base}/healthz")
        time.sleep(0.05)
    try:
        yield LiveServer(base, db)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        db.dispose()


# ---- pages -----------------------------------------------------------------------------------


def wait_until(page: Any, expression: str, arg: Any = None, timeout_ms: int = TIMEOUT_MS) -> Any:
    """Poll a JavaScript function expression from Python until it returns something truthy.

    Playwright's own `wait_for_function` evaluates its predicate with `eval` inside the page,
    which the app's Content-Security-Policy (no 'unsafe-eval') refuses; `evaluate` goes through
    the DevTools protocol and is not subject to the page's policy.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        value = page.evaluate(expression, arg)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout_ms} ms: {expression}")
        page.wait_for_timeout(100)


def login(page: Any, base: str, username: str, password: str = DEMO_PASSWORD) -> None:
    """Sign in through the form; the page ends on the user's workbench."""
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("form[action='/login'] button[type=submit]")
    assert "/login" not in page.url, f"{username} could not sign in: {page.inner_text('body')}"


def ticket_id_of(page: Any) -> int:
    """The id in the current /console/tickets/{id} address."""
    match = re.search(r"/console/tickets/(\d+)", page.url)
    assert match, page.url
    return int(match.group(1))


def flash_text(page: Any) -> str:
    """The page's flash message, ok or error ('' when none)."""
    flash = page.locator(".flash")
    return flash.first.inner_text().strip() if flash.count() else ""


def act(page: Any, action: str, fields: dict[str, Any] | None = None) -> None:
    """Open `<details id=act-ACTION>` on a ticket page, fill its fields and submit it.

    Values: True/False pick a bool radio; a str fills a text box or picks a <select> option by
    value; an int fills a number box. The page is left on whatever the app answered.
    """
    details = page.locator(f"#act-{action}")
    assert details.count(), f"no action {action!r} offered here: {available_actions(page)}"
    more = page.locator(f"#more-actions:has(#act-{action})")  # a rare one: behind 更多操作
    if more.count() and more.get_attribute("open") is None:
        more.locator("> summary").click()
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    form = details.locator("form")
    for name, value in (fields or {}).items():
        if isinstance(value, bool):
            form.locator(f"input[type=radio][name={name}][value={str(value).lower()}]").check()
            continue
        box = form.locator(f"#{action}-{name}")
        tag = box.evaluate("el => el.tagName.toLowerCase()")
        if tag == "select":
            box.select_option(str(value))
        else:
            box.fill(str(value))
    with page.expect_navigation():
        form.locator("button[type=submit]").click()


def available_actions(page: Any) -> list[str]:
    ids = page.locator("#actions details[id^=act-]").evaluate_all("els => els.map(e => e.id)")
    return [i.removeprefix("act-") for i in ids]


def done(page: Any, label: str) -> None:
    """Assert the action went through: the green flash naming it, no error."""
    assert not page.locator(".flash-error").count(), flash_text(page)
    ok = page.locator(".flash-ok")
    assert ok.count(), f"no confirmation after {label}: {page.url}"
    assert ok.first.inner_text().strip() == f"已完成：{label}"


def status_of(page: Any) -> str:
    """The status code of the ticket page's chip (`st-<status>`)."""
    chip = page.locator("h1 ~ .chip[class*='st-']").first
    classes = chip.get_attribute("class") or ""
    match = re.search(r"\bst-(\w+)", classes)
    assert match, classes
    return match.group(1)


# ---- the API, for setting the scene --------------------------------------------------------


class Api:
    """The live server's JSON API as the demo users, for the steps a test is not about."""

    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=30)
        self.tokens: dict[str, str] = {}

    def close(self) -> None:
        self.client.close()

    def _headers(self, username: str) -> dict[str, str]:
        if username not in self.tokens:
            r = self.client.post(
                "/api/v1/auth/token", json={"username": username, "password": DEMO_PASSWORD}
            )
            assert r.status_code == 200, r.text
            self.tokens[username] = r.json()["access_token"]
        return {"Authorization": f"Bearer {self.tokens[username]}"}

    def create(self, username: str = "agent1", **ticket: Any) -> dict[str, Any]:
        body = {"channel": "phone", **ticket}
        r = self.client.post("/api/v1/tickets", json=body, headers=self._headers(username))
        assert r.status_code == 201, r.text
        return dict(r.json())

    def act(self, username: str, ticket_id: int, action: str, **fields: Any) -> dict[str, Any]:
        r = self.client.post(
            f"/api/v1/tickets/{ticket_id}/actions/{action}",
            json=fields,
            headers=self._headers(username),
        )
        assert r.status_code == 200, f"{action}: {r.status_code} {r.text}"
        return dict(r.json())


# ---- people, the portal and the scene (shared by the browser modules) -------------------------

DONGHUAMEN = "110101001"  # 东城区东华门街道


class People:
    """One browser context per person (their own cookies). With a username the person is signed
    in: through the login form the first time in this module, with the kept cookies after."""

    def __init__(self, browser: Any, base: str, sessions: dict[str, Any], now: datetime) -> None:
        self.browser, self.base, self.sessions, self.now = browser, base, sessions, now
        self.contexts: list[Any] = []

    def __call__(self, username: str | None = None, *, mobile: bool = False) -> Any:
        context = self.browser.new_context(
            viewport=MOBILE if mobile else DESKTOP,
            device_scale_factor=2 if mobile else 1,
            is_mobile=mobile,
            has_touch=mobile,
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
            storage_state=self.sessions.get(username or ""),
        )
        context.set_default_timeout(TIMEOUT_MS)
        context.clock.install(time=self.now)  # the server's pinned clock (to within minutes)
        self.contexts.append(context)
        page = context.new_page()
        if username and username in self.sessions:
            page.goto(self.base + "/console")  # straight to the workbench
            assert "/login" not in page.url, f"{username}'s session has ended"
        elif username:
            login(page, self.base, username)
            self.sessions[username] = context.storage_state()
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def portal_submit(page: Any, base: str, **values: str) -> tuple[str, str]:
    """Submit a request on the portal; the ticket number and tracking code it shows."""
    page.goto(base + "/portal/submit")
    page.select_option("#request_type", values.pop("request_type", "complain"))
    for name, value in values.items():
        page.fill(f"#{name}", value)
    with page.expect_navigation():
        page.click("#submit-form button[type=submit]")
    assert page.locator("#number").count(), f"not submitted: {flash_text(page)}"
    number = page.locator("#number").inner_text().strip()
    code = page.locator("#code").inner_text().strip()
    assert re.fullmatch(r"\d{13}", number), number
    assert re.fullmatch(r"[A-HJ-NP-Z2-9]{8}", code), code
    return number, code


def portal_track(page: Any, base: str, number: str, code: str) -> str:
    """Track a ticket on the portal; the page's visible text."""
    page.goto(base + "/portal/track")
    page.fill("#number", number)
    page.fill("#code", code)
    with page.expect_navigation():
        page.click("#track-form button[type=submit]")
    assert not page.locator(".flash-error").count(), flash_text(page)
    return str(page.inner_text("body"))


def id_of(site: LiveServer, number: str) -> int:
    with site.db.read() as s:
        ticket_id = s.scalar(select(Ticket.id).where(Ticket.number == number))
    assert ticket_id is not None, number
    return int(ticket_id)


def dispatched_ticket(api: Api, lead: str = DONGHUAMEN, **extra: Any) -> dict[str, Any]:
    """A phoned-in ticket about 东华门街道, dispatched to `lead` (the scene, via the API)."""
    ticket = api.create(
        content=extra.pop("content", "南池子大街12号院门口垃圾桶满溢多日无人清运，气味很大。"),
        address="东城区东华门街道南池子大街12号院",
        street=DONGHUAMEN,
        request_type="complain",
        category_code=extra.pop("category_code", "020501"),
        requester=extra.pop("requester", {"name": "王建华", "phone": "13812345678"}),
        **extra,
    )
    api.act("dispatcher1", ticket["id"], "dispatch", lead=lead)
    return ticket
