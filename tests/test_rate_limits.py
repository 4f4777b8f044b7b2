"""The limits on guessing and flooding, through the app, on both databases (issue 13 §5.2, §5.6):
an account backs off whatever addresses its guesses come from and, locked, answers exactly as a
wrong password; one noisy address does not lock out the others; a ticket number's wrong codes
are limited across addresses; the portal's submissions have a per-address and a global budget.

Every client here has its own address (`request.client.host`, what the app sees), and the clock
is pinned with time_machine wherever a lock's length matters.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from conftest import PASSWORD
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from test_auth import SESSION_COOKIE, Console, app_of, is_html, user_row
from test_portal import csrf as portal_csrf
from test_portal import form as portal_form

from jiesu.auth import counters
from jiesu.auth.limits import Budget
from jiesu.auth.models import AuditLog, RateCounter
from jiesu.auth.service import sign_in as auth_sign_in
from jiesu.db.engine import Database
from jiesu.settings import get_settings
from jiesu.tickets.models import Ticket
from jiesu.web.app import create_app

TOKEN = "/api/v1/auth/token"
T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Beijing, a Monday
MIN = timedelta(minutes=1)


# Uploads and reports under each test's own directory (conftest.var_dir).
pytestmark = pytest.mark.usefixtures("var_dir")


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def at(client: TestClient, ip: str) -> TestClient:
    """A client of the same app that the app sees coming from `ip`."""
    return TestClient(app_of(client), client=(ip, 40000), raise_server_exceptions=False,
                      follow_redirects=False)  # fmt: skip


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> httpx.Response:
    return client.post(TOKEN, json={"username": username, "password": password})


def same_answer(a: httpx.Response, b: httpx.Response) -> None:
    """Status, body and headers alike (the date, the page's own CSRF token and each request's
    own id aside)."""
    assert a.status_code == b.status_code
    assert a.content == b.content
    skip = {"date", "set-cookie", "x-request-id"}
    assert {k: v for k, v in a.headers.items() if k not in skip} == {
        k: v for k, v in b.headers.items() if k not in skip
    }


# ---- accounts ---------------------------------------------------------------------------------


def test_wrong_passwords_from_rotating_addresses_back_the_account_off(
    client: TestClient, db: Database, clock: time_machine.Coordinates
) -> None:
    for i in range(5):  # one guess from each of five addresses: no address reaches its budget
        assert sign_in(at(client, f"198.51.100.{i}"), "agent1", "guess").status_code == 401
    assert user_row(db, "agent1").locked_until == T0 + 15 * MIN
    honest = at(client, "203.0.113.7")
    assert sign_in(honest, "agent1").status_code == 401  # even the right password waits

    clock.move_to(T0 + 16 * MIN)
    assert sign_in(honest, "agent1", "typo").status_code == 401  # the lock is over: a try
    for i in range(4):
        assert sign_in(at(client, f"198.51.100.{10 + i}"), "agent1", "guess").status_code == 401
    assert user_row(db, "agent1").locked_until == T0 + 16 * MIN + 30 * MIN  # twice as long

    clock.move_to(T0 + 16 * MIN + 29 * MIN)
    assert sign_in(honest, "agent1").status_code == 401
    clock.move_to(T0 + 16 * MIN + 31 * MIN)
    assert sign_in(honest, "agent1").status_code == 200
    user = user_row(db, "agent1")
    assert (user.failed_logins, user.locked_until) == (0, None)  # a good sign-in clears it


def test_a_locked_account_answers_exactly_as_a_wrong_password(
    client: TestClient, db: Database, clock: time_machine.Coordinates
) -> None:
    api = at(client, "203.0.113.8")
    wrong = sign_in(api, "agent1", "not-it")
    unknown = sign_in(api, "nobody.here", "not-it")
    same_answer(wrong, unknown)
    for i in range(4):
        sign_in(at(client, f"198.51.100.{i}"), "agent1", "guess")
    assert user_row(db, "agent1").locked_until is not None
    locked_right = sign_in(api, "agent1")
    locked_wrong = sign_in(api, "agent1", "not-it")
    assert wrong.status_code == 401
    for answer in (locked_right, locked_wrong):
        same_answer(answer, wrong)

    page = Console(app_of(client))  # the console's form: one browser, so one CSRF token
    page_wrong = page.login("dispatcher1", "not-it")
    for i in range(5):
        sign_in(at(client, f"198.51.101.{i}"), "dispatcher1", "guess")
    assert user_row(db, "dispatcher1").locked_until is not None
    page_locked = page.login("dispatcher1")
    assert page_wrong.status_code == 401 and is_html(page_wrong)
    # The page counts down the attempts left per username typed and address, so the locked
    # account's answer is the one an unknown username gets at the same count.
    stranger = [page.login("nobody.here", "not-it") for _ in range(2)]  # as long a name
    for mine, theirs in zip((page_wrong, page_locked), stranger, strict=True):
        theirs._content = theirs.content.replace(b"nobody.here", b"dispatcher1")  # typed back
        same_answer(mine, theirs)
    assert SESSION_COOKIE not in page_locked.cookies


def test_one_noisy_address_does_not_lock_out_other_accounts_or_addresses(
    client: TestClient, db: Database, clock: time_machine.Coordinates
) -> None:
    noisy = at(client, "100.64.0.1")  # a carrier NAT
    for i in range(20):
        assert sign_in(noisy, f"guess{i}", "guess").status_code == 401
    refused = sign_in(noisy, "dispatcher1")
    assert refused.status_code == 429
    assert "登录失败次数过多" in refused.json()["message"]
    assert int(refused.headers["retry-after"]) == 15 * 60
    page = Console(app_of(client))
    page.http = at(client, "100.64.0.1")  # the console's form from the same address
    assert page.login("dispatcher1").status_code == 429

    other = at(client, "203.0.113.9")  # another address, the same accounts
    assert sign_in(other, "dispatcher1").status_code == 200
    assert sign_in(other, "agent1").status_code == 200
    assert user_row(db, "dispatcher1").locked_until is None

    clock.move_to(T0 + 15 * MIN + timedelta(seconds=1))  # the window passes
    assert sign_in(noisy, "dispatcher1").status_code == 200


def test_a_noisy_address_locks_at_most_its_budget_of_accounts(
    client: TestClient, db: Database, clock: time_machine.Coordinates
) -> None:
    noisy = at(client, "100.64.0.2")
    victims = ["agent1", "dispatcher1", "callback1", "supervisor1", "analyst1"]
    statuses = [sign_in(noisy, name, "guess").status_code for name in victims for _ in range(5)]
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
    locked = [name for name in victims if user_row(db, name).locked_until is not None]
    assert locked == victims[:4]  # 20 failures lock 4 accounts; the fifth is untouched
    assert sign_in(at(client, "203.0.113.10"), "analyst1").status_code == 200


# ---- tracking a ticket ----------------------------------------------------------------------


def submitted(client: TestClient) -> tuple[str, str]:
    data = {**portal_form(), "csrf_token": portal_csrf(client)}
    r = client.post("/portal/submit", data=data)
    assert r.status_code == 201, r.text
    number = re.search(r'id="number">(\d+)<', r.text)
    code = re.search(r'id="code"[^>]*>([A-Z0-9]{8})<', r.text)
    assert number and code
    return number.group(1), code.group(1)


def track(client: TestClient, number: str, code: str) -> httpx.Response:
    token = portal_csrf(client, "/portal/track")
    return client.post("/portal/track", data={"number": number, "code": code, "csrf_token": token})


def test_wrong_codes_for_one_number_are_limited_across_addresses_with_backoff(
    client: TestClient, clock: time_machine.Coordinates
) -> None:
    number, code = submitted(at(client, "203.0.113.20"))
    for i in range(5):
        assert track(at(client, f"198.51.100.{i}"), number, "WRONGCDE").status_code == 404
    owner = at(client, "203.0.113.21")
    r = track(owner, number, code)  # even the right code waits: the number is closed
    assert r.status_code == 429 and is_html(r)
    assert "该工单编号查询错误次数过多，请 15 分钟后再试" in r.text
    assert int(r.headers["retry-after"]) == 15 * 60
    assert track(at(client, "203.0.113.22"), "2026030299999", code).status_code == 404  # others

    clock.move_to(T0 + 15 * MIN)
    assert track(owner, number, code).status_code == 200
    for i in range(5):
        assert track(at(client, f"198.51.100.{10 + i}"), number, "WRONGCDE").status_code == 404
    clock.move_to(T0 + 15 * MIN + 29 * MIN)
    assert track(owner, number, code).status_code == 429  # the second block is 30 minutes
    clock.move_to(T0 + 15 * MIN + 30 * MIN)
    assert track(owner, number, code).status_code == 200


def test_a_number_that_does_not_exist_is_limited_alike(
    client: TestClient, clock: time_machine.Coordinates
) -> None:
    for i in range(5):
        assert track(at(client, f"198.51.100.{i}"), "2026030288888", "WRONGCDE").status_code == 404
    r = track(at(client, "203.0.113.23"), "2026030288888", "WRONGCDE")
    assert r.status_code == 429 and "该工单编号查询错误次数过多" in r.text


def test_one_address_wrong_codes_do_not_close_the_tracking_of_others(
    client: TestClient, clock: time_machine.Coordinates
) -> None:
    number, code = submitted(at(client, "203.0.113.30"))
    noisy = at(client, "100.64.0.3")
    for i in range(10):  # ten different numbers: the address's budget, no number's
        assert track(noisy, f"20260302{90000 + i}", "WRONGCDE").status_code == 404
    r = track(noisy, number, code)
    assert r.status_code == 429 and "查询失败次数过多" in r.text
    assert track(at(client, "203.0.113.31"), number, code).status_code == 200


# ---- submitting on the portal -------------------------------------------------------------


def ticket_count(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(Ticket)) or 0


def post(client: TestClient, **fields: Any) -> httpx.Response:
    return client.post("/portal/submit", data={**portal_form(**fields),
                                               "csrf_token": portal_csrf(client)})  # fmt: skip


def test_portal_submissions_have_a_per_address_and_a_global_budget(
    client: TestClient, db: Database, clock: time_machine.Coordinates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("JIESU_PORTAL_SUBMITS_PER_ADDRESS", "2")
    monkeypatch.setenv("JIESU_PORTAL_SUBMITS_TOTAL", "3")
    monkeypatch.setenv("JIESU_PORTAL_SUBMIT_WINDOW_MINUTES", "10")
    get_settings.cache_clear()
    first = at(client, "198.51.100.1")
    assert post(first).status_code == 201
    clock.move_to(T0 + 1 * MIN)
    assert post(first).status_code == 201
    before = ticket_count(db)
    r = post(first, title="第三次提交")
    assert r.status_code == 429 and is_html(r)
    assert "您提交得太频繁了，请 9 分钟后再提交" in r.text and "12345" in r.text
    assert int(r.headers["retry-after"]) == 9 * 60
    assert "第三次提交" in r.text  # what was typed is kept on the form
    assert ticket_count(db) == before

    assert post(at(client, "198.51.100.2")).status_code == 201  # the third in all
    r = post(at(client, "198.51.100.3"))
    assert r.status_code == 429 and "当前提交人数较多" in r.text
    assert ticket_count(db) == before + 1

    clock.move_to(T0 + 10 * MIN)  # the window passes for both budgets
    assert post(first).status_code == 201
    assert post(at(client, "198.51.100.3")).status_code == 201


def test_the_default_budget_stops_a_flood_from_one_address(
    client: TestClient, db: Database, clock: time_machine.Coordinates
) -> None:
    flood = at(client, "198.51.100.50")
    statuses = [post(flood).status_code for _ in range(21)]
    assert statuses == [201] * 20 + [429]
    assert ticket_count(db) == 20


def test_idle_counters_are_deleted_as_new_windows_open(
    client: TestClient, db: Database, clock: time_machine.Coordinates
) -> None:
    assert post(at(client, "198.51.100.60")).status_code == 201
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(RateCounter)) == 2  # address + all
    clock.move_to(T0 + timedelta(days=2))
    assert post(at(client, "198.51.100.61")).status_code == 201
    with db.read() as s:
        keys = set(s.execute(select(RateCounter.scope, RateCounter.key)).all())
    assert keys == {("submit_address", "198.51.100.61"), ("submit_all", "*")}


# ---- several processes --------------------------------------------------------------------


def test_two_app_processes_share_the_limits(
    client: TestClient, db_url: str, clock: time_machine.Coordinates
) -> None:
    """Two apps with their own engines on one database, as `jiesu serve --workers 2` runs: the
    guesses and submissions of both count together."""
    second_db = Database(db_url)
    try:
        with TestClient(create_app(second_db), raise_server_exceptions=False) as second:
            apps = [client, second]
            for i in range(5):
                sign_in(at(apps[i % 2], f"198.51.100.{i}"), "agent1", "guess")
            assert sign_in(at(second, "203.0.113.40"), "agent1").status_code == 401
            assert sign_in(at(client, "203.0.113.40"), "agent1").status_code == 401

            number, code = submitted(at(client, "203.0.113.41"))
            for i in range(5):
                assert (
                    track(at(apps[i % 2], f"198.51.101.{i}"), number, "WRONGCDE").status_code == 404
                )
            assert track(at(second, "203.0.113.42"), number, code).status_code == 429
    finally:
        second_db.dispose()


def test_concurrent_submissions_never_overspend_a_budget(db: Database) -> None:
    """Eight writers at once on one key with a budget of five: exactly five get through (the row
    lock on PostgreSQL, the write lock on SQLite)."""
    budget = Budget(limit=5, window=timedelta(minutes=10))
    start = threading.Barrier(8)

    def one(_: int) -> bool:
        start.wait()
        with db.write() as session:
            return counters.take("submit_all", "*", budget, db_session=session, now=T0) is None

    with ThreadPoolExecutor(8) as pool:
        allowed = list(pool.map(one, range(8)))
    assert allowed.count(True) == 5
    with db.read() as s:
        row = s.get(RateCounter, ("submit_all", "*"))
        assert row is not None and row.blocked_until == T0 + 10 * MIN


def test_parallel_wrong_passwords_are_counted_one_by_one(db: Database) -> None:
    """Ten guesses at once for one account: five are counted and lock it, the other five meet
    the lock (none is lost to a concurrent update, none slips past the lock)."""
    start = threading.Barrier(10)

    def guess(i: int) -> int:
        start.wait()
        with db.write() as session:
            user, error = auth_sign_in("agent1", f"guess{i}", ip=f"198.51.100.{i}",
                                       db_session=session, now=T0)  # fmt: skip
        assert user is None and error is not None
        return error.status

    with ThreadPoolExecutor(10) as pool:
        assert set(pool.map(guess, range(10))) == {401}
    user = user_row(db, "agent1")
    assert (user.failed_logins, user.locked_until) == (5, T0 + 15 * MIN)
    with db.read() as s:
        actions = list(s.scalars(select(AuditLog.action).where(AuditLog.username == "agent1")))
    assert sorted(actions) == ["lockout"] + ["login_failed"] * 5 + ["login_locked"] * 5


# ---- signing out with the cookie ------------------------------------------------------------


def test_api_sign_out_with_the_session_cookie_revokes_that_session(client: TestClient) -> None:
    browser = Console(app_of(client), "agent1")
    other = Console(app_of(client), "agent1")
    value = browser.session
    assert value
    refused = browser.http.post("/api/v1/auth/logout")  # a cookie-borne write needs CSRF
    assert refused.status_code == 403
    assert browser.get("/console/tickets").status_code == 200

    r = browser.http.post("/api/v1/auth/logout", headers={"X-CSRF-Token": browser.csrf})
    assert r.status_code == 204
    again = TestClient(app_of(client), raise_server_exceptions=False, follow_redirects=False,
                       cookies={SESSION_COOKIE: value})  # fmt: skip
    assert again.get("/api/v1/tickets").status_code == 401
    assert again.get("/console/tickets").headers["location"].startswith("/login")
    assert other.get("/console/tickets").status_code == 200  # only that session ends
    assert any(h.startswith(f"{SESSION_COOKIE}=") for h in r.headers.get_list("set-cookie"))
