"""Signing in and staying signed in, on both databases: lockout and the per-address rate limit,
the console's cookie and its CSRF token, open redirects, sign-out, password change, scoped system
tokens, and the admin pages that create and disable users and units.

Every test here gets a fresh tiny city (`client`/`db` from conftest): failed sign-ins are
remembered per address (TestClient's is "testclient"), so sharing a database would let one
test's failures lock another out.

`Console` below is a browser for the staff console (its own cookie jar, sign-in through the
real form, the page's CSRF token); `test_permissions.py` and `test_escaping.py` use it too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import BACKENDS, PASSWORD, Templates, auth, tiny_city, token_for
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from jiesu.access.permissions import HOME
from jiesu.auth.models import ApiToken, AuditLog
from jiesu.auth.service import csrf_token_for
from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.org.models import Unit, User
from jiesu.taxonomy.models import CalendarOverride
from jiesu.tickets.models import Ticket

TOKEN = "/api/v1/auth/token"
TICKETS = "/api/v1/tickets"
SESSION_COOKIE = "jiesu_session"
_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')


# ---- one tiny city for a whole module -------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def town(
    request: pytest.FixtureRequest,
    templates: Templates,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, Database]]:
    """One city per backend for the tests below that sign in only with the right password
    (the per-address failure count must stay far from 20) and leave the users as they are."""
    with tiny_city(str(request.param), templates, tmp_path_factory) as city:
        yield city


@pytest.fixture
def shared(town: tuple[TestClient, Database]) -> TestClient:
    return town[0]


@pytest.fixture
def shared_db(town: tuple[TestClient, Database]) -> Database:
    return town[1]


# ---- a browser for the console -------------------------------------------------------------


def csrf_of(html: str) -> str:
    """The CSRF token a page embeds (`<meta name="csrf-token">`, also in every form)."""
    found = _CSRF_META.search(html)
    assert found, f"no csrf-token meta in the page: {html[:300]}"
    return found.group(1)


class Console:
    """One browser on the staff console: its own cookies, signed in through the sign-in form."""

    def __init__(
        self,
        app: Any,
        username: str | None = None,
        password: str = PASSWORD,
        *,
        base_url: str = "http://testserver",
    ) -> None:
        self.http = TestClient(
            app, base_url=base_url, raise_server_exceptions=False, follow_redirects=False
        )
        self.csrf = ""
        if username is not None:
            r = self.login(username, password)
            assert r.status_code == 303, (username, r.status_code, r.text[:500])

    def login(
        self, username: str, password: str = PASSWORD, *, next: str | None = None
    ) -> httpx.Response:
        page = self.http.get("/login", params={"next": next} if next is not None else None)
        assert page.status_code == 200, page.text[:300]
        form = {"username": username, "password": password, "csrf_token": csrf_of(page.text)}
        if next is not None:
            form["next"] = next
        r = self.http.post("/login", data=form)
        if r.status_code == 303:
            self.csrf = csrf_of(self.http.get("/console/account/password").text)
        return r

    @property
    def session(self) -> str | None:
        return self.http.cookies.get(SESSION_COOKIE)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(url, **kwargs)

    def post(
        self, url: str, data: dict[str, Any] | None = None, *, csrf: str | None = None, **kw: Any
    ) -> httpx.Response:
        """A form post with the page's CSRF token (or `csrf`, "" for none)."""
        form = dict(data or {})
        token = self.csrf if csrf is None else csrf
        if token:
            form["csrf_token"] = token
        return self.http.post(url, data=form, **kw)


def with_cookie(app: Any, value: str) -> TestClient:
    """A client that sends `value` as the session cookie, whatever it is."""
    return TestClient(
        app,
        raise_server_exceptions=False,
        follow_redirects=False,
        headers={"Cookie": f"{SESSION_COOKIE}={value}"},
    )


def is_login_redirect(r: httpx.Response) -> bool:
    return r.status_code == 303 and r.headers["location"].startswith("/login")


def is_html(r: httpx.Response) -> bool:
    return r.headers.get("content-type", "").startswith("text/html")


def app_of(client: TestClient) -> FastAPI:
    app = client.app
    assert isinstance(app, FastAPI)
    return app


def audit_actions(db: Database, **where: Any) -> list[str]:
    with db.read() as s:
        stmt = select(AuditLog.action).order_by(AuditLog.id)
        for key, value in where.items():
            stmt = stmt.where(getattr(AuditLog, key) == value)
        return list(s.scalars(stmt))


def user_row(db: Database, username: str) -> User:
    with db.read() as s:
        user = s.scalar(select(User).where(User.username == username))
        assert user is not None, username
        s.expunge(user)
        return user


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> httpx.Response:
    return client.post(TOKEN, json={"username": username, "password": password})


def new_ticket(client: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"channel": "phone", "content": "楼道灯坏了一个月没人修", **fields}
    r = client.post(TICKETS, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def ticket_state(db: Database, ticket_id: int) -> tuple[str, int]:
    with db.read() as s:
        t = s.get(Ticket, ticket_id)
        assert t is not None
        return t.status, t.version


def ticket_count(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(Ticket)) or 0


# ---- lockout and rate limit ----------------------------------------------------------------


def test_five_wrong_passwords_lock_the_account_for_15_minutes(
    client: TestClient, db: Database
) -> None:
    for _ in range(5):
        r = sign_in(client, "agent1", "wrong-password")
        assert r.status_code == 401
        assert "锁定" not in r.json()["message"]  # the same answer as any wrong password
    user = user_row(db, "agent1")
    assert user.locked_until is not None
    assert timedelta(minutes=14) < user.locked_until - utcnow() <= timedelta(minutes=15)

    r = sign_in(client, "agent1")  # the right password, but locked: told as a wrong one
    assert r.status_code == 401
    assert r.json() == {
        "error": "unauthorized",
        "message": "用户名或密码错误 / wrong username or password",
    }
    page = Console(app_of(client)).login("agent1")  # the console says the same
    assert page.status_code == 401
    assert is_html(page) and "用户名或密码错误" in page.text
    assert SESSION_COOKIE not in page.cookies

    token_for(client, "dispatcher1")  # other accounts are not affected
    actions = audit_actions(db, username="agent1")
    assert actions.count("login_failed") == 5
    assert actions.count("lockout") == 1
    assert actions.count("login_locked") == 2
    assert "login" not in actions

    with db.write() as s:  # the 15 minutes pass
        s.execute(
            update(User)
            .where(User.username == "agent1")
            .values(locked_until=utcnow() - timedelta(seconds=1))
        )
    token_for(client, "agent1")
    assert Console(app_of(client), "agent1").session
    assert user_row(db, "agent1").locked_until is None


def test_the_failure_count_starts_afresh_after_a_good_sign_in(client: TestClient) -> None:
    for _ in range(4):
        assert sign_in(client, "agent1", "wrong-password").status_code == 401
    token_for(client, "agent1")
    for _ in range(4):
        assert sign_in(client, "agent1", "wrong-password").status_code == 401
    token_for(client, "agent1")  # 8 failures, never 5 in a row: not locked


def test_twenty_failures_from_one_address_answer_429(client: TestClient, db: Database) -> None:
    for i in range(20):  # unknown users: nobody is locked, only the address counts
        r = sign_in(client, f"nobody{i}", "wrong-password")
        assert r.status_code == 401, (i, r.text)
    r = sign_in(client, "agent1")  # even the right password of a real user
    assert r.status_code == 429
    assert r.json()["error"] == "too_many_requests"
    assert r.json()["message"]
    page = Console(app_of(client)).login("agent1")
    assert page.status_code == 429
    assert is_html(page)
    assert SESSION_COOKIE not in page.cookies
    assert user_row(db, "agent1").locked_until is None

    with db.write() as s:  # the window passes
        s.execute(update(AuditLog).values(at=utcnow() - timedelta(minutes=16)))
    token_for(client, "agent1")


def test_failed_sign_ins_are_in_the_audit_log_with_user_and_address(
    client: TestClient, db: Database
) -> None:
    assert sign_in(client, "agent1", "wrong-password").status_code == 401
    assert sign_in(client, "no.such.user", "wrong-password").status_code == 401
    assert Console(app_of(client)).login("dispatcher1", "wrong-password").status_code == 401
    with db.read() as s:
        rows = s.scalars(
            select(AuditLog).where(AuditLog.action == "login_failed").order_by(AuditLog.id)
        ).all()
        got = [(a.username, a.ip, a.user_id is not None) for a in rows]
    assert got == [
        ("agent1", "testclient", True),
        ("no.such.user", "testclient", False),
        ("dispatcher1", "testclient", True),
    ]
    token_for(client, "agent1")
    assert audit_actions(db, username="agent1")[-1] == "login"


def test_the_portal_account_cannot_sign_in(client: TestClient, db: Database) -> None:
    portal = user_row(db, "portal")
    assert portal.password_hash is None and portal.active
    for password in (PASSWORD, "x", "None", "portal"):
        assert sign_in(client, "portal", password).status_code == 401
    page = Console(app_of(client)).login("portal", PASSWORD)
    assert page.status_code == 401
    assert SESSION_COOKIE not in page.cookies


# ---- the console's cookie --------------------------------------------------------------------


def _set_cookies(r: httpx.Response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in r.headers.get_list("set-cookie")}


def test_console_sign_in_sets_an_httponly_samesite_lax_session_cookie(shared: TestClient) -> None:
    browser = Console(app_of(shared))
    page = browser.get("/login")
    csrf_cookie = _set_cookies(page)["jiesu_csrf"].lower()
    assert "httponly" in csrf_cookie and "samesite=strict" in csrf_cookie

    r = browser.login("dispatcher1")
    assert r.status_code == 303
    assert r.headers["location"] == HOME["dispatcher"]
    cookie = _set_cookies(r)[SESSION_COOKIE]
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "path=/" in flags
    assert "secure" not in flags  # plain http in tests
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    assert value.startswith("js_")
    assert browser.csrf == csrf_token_for(value)  # the page's token belongs to this session
    assert browser.get(HOME["dispatcher"]).status_code == 200


def test_the_session_cookie_is_secure_over_https(shared: TestClient) -> None:
    browser = Console(app_of(shared), base_url="https://testserver")
    page = browser.get("/login")
    assert "secure" in [p.strip().lower() for p in _set_cookies(page)["jiesu_csrf"].split(";")]
    r = browser.login("agent1")
    assert r.status_code == 303
    assert "secure" in [p.strip().lower() for p in _set_cookies(r)[SESSION_COOKIE].split(";")]
    assert browser.get(HOME["agent"]).status_code == 200


def test_a_clients_own_forwarded_proto_does_not_mark_cookies_secure(shared: TestClient) -> None:
    """Only a trusted proxy's X-Forwarded-Proto counts, and uvicorn applies that to the scheme."""
    page = Console(app_of(shared)).http.get("/login", headers={"X-Forwarded-Proto": "https"})
    assert "secure" not in [p.strip().lower() for p in _set_cookies(page)["jiesu_csrf"].split(";")]


@pytest.mark.parametrize("role", sorted(HOME))
def test_each_role_lands_on_its_home_page(
    shared: TestClient, shared_db: Database, role: str
) -> None:
    with shared_db.read() as s:
        username = s.scalar(
            select(User.username)
            .where(User.role == role, User.password_hash.is_not(None))
            .order_by(User.username)
        )
    assert username, role
    browser = Console(app_of(shared))
    r = browser.login(username)
    assert r.status_code == 303 and r.headers["location"] == HOME[role]
    assert browser.get(HOME[role]).status_code == 200
    home = browser.get("/console")
    assert home.status_code == 303 and home.headers["location"] == HOME[role]


def test_a_wrong_password_on_the_console_shows_the_form_again(client: TestClient) -> None:
    r = Console(app_of(client)).login("agent1", "wrong-password")
    assert r.status_code == 401
    assert is_html(r) and "用户名或密码错误" in r.text
    assert 'name="username" value="agent1"' in r.text
    assert SESSION_COOKIE not in r.cookies


# ---- CSRF ------------------------------------------------------------------------------------


@pytest.fixture
def dispatcher(shared: TestClient) -> Console:
    return Console(app_of(shared), "dispatcher1")


@pytest.fixture
def fresh_ticket(shared: TestClient) -> int:
    return int(new_ticket(shared, auth(shared, "agent1"))["id"])


DISPATCH = {"lead": "S11", "note": "请东一街道办理"}


@pytest.mark.parametrize(
    "csrf",
    [
        pytest.param("", id="no_token"),
        pytest.param("0" * 40, id="wrong_token"),
        pytest.param("x", id="short_token"),
    ],
)
def test_a_console_post_without_the_right_csrf_token_is_403_and_changes_nothing(
    shared: TestClient, shared_db: Database, dispatcher: Console, fresh_ticket: int, csrf: str
) -> None:
    before = ticket_state(shared_db, fresh_ticket)
    r = dispatcher.post(f"/console/tickets/{fresh_ticket}/actions/dispatch", DISPATCH, csrf=csrf)
    assert r.status_code == 403
    assert is_html(r) and "页面已过期" in r.text
    assert ticket_state(shared_db, fresh_ticket) == before
    # the same post with the page's token goes through
    r = dispatcher.post(f"/console/tickets/{fresh_ticket}/actions/dispatch", DISPATCH)
    assert r.status_code == 303, r.text[:500]
    assert ticket_state(shared_db, fresh_ticket)[0] == "dispatched"


def test_the_csrf_token_of_another_session_is_refused(
    shared: TestClient, shared_db: Database, dispatcher: Console, fresh_ticket: int
) -> None:
    other = Console(app_of(shared), "dispatcher1")
    assert other.csrf != dispatcher.csrf
    url = f"/console/tickets/{fresh_ticket}/actions/dispatch"
    assert dispatcher.post(url, DISPATCH, csrf=other.csrf).status_code == 403
    assert ticket_state(shared_db, fresh_ticket)[0] == "received"


def test_the_csrf_token_may_come_as_a_header(
    shared: TestClient, shared_db: Database, dispatcher: Console, fresh_ticket: int
) -> None:
    url = f"/console/tickets/{fresh_ticket}/actions/dispatch"
    wrong = dispatcher.post(url, DISPATCH, csrf="", headers={"X-CSRF-Token": "0" * 40})
    assert wrong.status_code == 403
    r = dispatcher.post(url, DISPATCH, csrf="", headers={"X-CSRF-Token": dispatcher.csrf})
    assert r.status_code == 303
    assert ticket_state(shared_db, fresh_ticket)[0] == "dispatched"


@pytest.mark.parametrize(
    "authorization", ["Basic YWdlbnQxOnNlY3JldDEyMw==", "Bearer js_not_a_token"]
)
def test_an_unrelated_authorization_header_does_not_excuse_a_cookie_post_from_csrf(
    shared: TestClient,
    shared_db: Database,
    dispatcher: Console,
    fresh_ticket: int,
    authorization: str,
) -> None:
    r = dispatcher.post(
        f"/console/tickets/{fresh_ticket}/actions/dispatch",
        DISPATCH,
        csrf="",
        headers={"Authorization": authorization},
    )
    assert r.status_code in (401, 403)
    assert ticket_state(shared_db, fresh_ticket)[0] == "received"


def test_sign_in_itself_needs_the_csrf_token(shared: TestClient) -> None:
    browser = Console(app_of(shared))
    page = browser.get("/login")
    assert page.status_code == 200
    form = {"username": "agent1", "password": PASSWORD}
    for token in (None, "", "wrong"):
        data = form if token is None else {**form, "csrf_token": token}
        r = browser.http.post("/login", data=data)
        assert r.status_code == 403, token
        assert SESSION_COOKIE not in r.cookies
    # a token without the cookie it goes with (a forged cross-site form) is refused too
    stranger = TestClient(app_of(shared), raise_server_exceptions=False, follow_redirects=False)
    r = stranger.post("/login", data={**form, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 403
    assert SESSION_COOKIE not in r.cookies


def test_an_admin_form_without_csrf_creates_nothing(
    shared: TestClient, shared_db: Database
) -> None:
    admin = Console(app_of(shared), "admin1")
    form = {
        "username": "new.user",
        "name": "新用户",
        "role": "agent",
        "unit": "C-RX",
        "password": "a-good-password",
    }
    assert admin.post("/console/admin/users", form, csrf="").status_code == 403
    with shared_db.read() as s:
        assert s.scalar(select(User).where(User.username == "new.user")) is None


def test_sign_out_without_csrf_is_refused_and_the_session_lives_on(shared: TestClient) -> None:
    browser = Console(app_of(shared), "agent1")
    assert browser.post("/logout", csrf="").status_code == 403
    assert browser.get("/console/tickets").status_code == 200


def test_an_api_post_signed_by_the_session_cookie_needs_the_csrf_token(
    shared: TestClient, shared_db: Database
) -> None:
    browser = Console(app_of(shared), "agent1")
    body = {"channel": "phone", "content": "用会话调用接口"}
    before = ticket_count(shared_db)
    assert browser.http.post(TICKETS, json=body).status_code == 403
    r = browser.http.post(TICKETS, json=body, headers={"X-CSRF-Token": "0" * 40})
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"
    assert ticket_count(shared_db) == before
    r = browser.http.post(TICKETS, json=body, headers={"X-CSRF-Token": browser.csrf})
    assert r.status_code == 201
    assert browser.http.get(TICKETS).status_code == 200  # reading needs no token


# ---- cookies and bearer tokens are not interchangeable -------------------------------------


def test_the_session_cookie_is_not_a_bearer_token(shared: TestClient) -> None:
    browser = Console(app_of(shared), "agent1")
    assert browser.session
    r = shared.get(TICKETS, headers={"Authorization": f"Bearer {browser.session}"})
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"


def test_a_bearer_token_is_not_a_session_cookie(shared: TestClient) -> None:
    token = token_for(shared, "agent1")
    forged = with_cookie(app_of(shared), token)
    assert is_login_redirect(forged.get("/console/tickets"))
    assert is_login_redirect(forged.get("/console/intake"))
    r = forged.get(TICKETS)
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"


@pytest.mark.parametrize("value", ["", "js_garbage", "x" * 500, "js_" + "a" * 43])
def test_a_garbage_session_cookie_sends_to_the_sign_in_page(shared: TestClient, value: str) -> None:
    r = with_cookie(app_of(shared), value).get("/console/tickets?status=received")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/console/tickets%3Fstatus%3Dreceived"


# ---- redirects after sign-in -----------------------------------------------------------------

EVIL_NEXT = [
    "//evil.example",
    "//evil.example/console",
    "https://evil.example/",
    "http:evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "///evil.example",
    "javascript:alert(1)",
    "evil.example",
]


def _stays_here(location: str) -> bool:
    """Whether a browser following `location` from our page stays on this site."""
    cleaned = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    parts = urlsplit(cleaned)
    return not parts.scheme and not parts.netloc and cleaned.startswith("/")


@pytest.mark.parametrize("target", EVIL_NEXT)
def test_an_open_redirect_after_sign_in_is_refused(shared: TestClient, target: str) -> None:
    browser = Console(app_of(shared))
    page = browser.get("/login", params={"next": target})
    assert page.status_code == 200
    assert "evil.example" not in page.text  # not even carried in the form
    r = browser.login("agent1", next=target)
    assert r.status_code == 303
    assert _stays_here(r.headers["location"]), r.headers["location"]
    assert r.headers["location"] == HOME["agent"]


def test_a_next_path_on_this_site_is_honoured(shared: TestClient) -> None:
    first = with_cookie(app_of(shared), "").get("/console/tickets?status=received")
    assert is_login_redirect(first)
    browser = Console(app_of(shared))
    r = browser.login("analyst1", next="/console/tickets?status=received")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/tickets?status=received"


# ---- signing out -----------------------------------------------------------------------------


def test_console_sign_out_revokes_the_session(shared: TestClient, shared_db: Database) -> None:
    browser = Console(app_of(shared), "agent1")
    value = browser.session
    assert value
    other = Console(app_of(shared), "agent1")
    r = browser.post("/logout")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    cleared = _set_cookies(r)[SESSION_COOKIE].lower()
    assert "max-age=0" in cleared or "expires=thu, 01 jan 1970" in cleared
    assert is_login_redirect(with_cookie(app_of(shared), value).get("/console/tickets"))
    assert is_login_redirect(browser.get("/console/tickets"))
    assert other.get("/console/tickets").status_code == 200  # only this session ends
    with shared_db.read() as s:
        row = s.scalar(
            select(ApiToken).where(
                ApiToken.token_hash == hashlib.sha256(value.encode()).hexdigest()
            )
        )
        assert row is not None and row.revoked_at is not None


def test_api_sign_out_revokes_the_token(shared: TestClient) -> None:
    mine, other = auth(shared, "agent1"), auth(shared, "agent1")
    assert shared.post("/api/v1/auth/logout", headers=mine).status_code == 204
    assert shared.get(TICKETS, headers=mine).status_code == 401
    assert shared.get(TICKETS, headers=other).status_code == 200


# ---- password change -------------------------------------------------------------------------

PASSWORD_API = "/api/v1/auth/password"
NEW_PASSWORD = "a-new-password-2027"


def _change(client: TestClient, headers: dict[str, str], old: str, new: str) -> httpx.Response:
    return client.post(
        PASSWORD_API, json={"old_password": old, "new_password": new}, headers=headers
    )


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        pytest.param("wrong-password", NEW_PASSWORD, "old_password", id="wrong_old"),
        pytest.param(PASSWORD, "short1", "new_password", id="too_short"),
        pytest.param(PASSWORD, PASSWORD, "new_password", id="unchanged"),
        pytest.param(PASSWORD, "agent1", "new_password", id="the_username"),
        pytest.param(PASSWORD, "11111111", "new_password", id="one_digit_repeated"),
    ],
)
def test_a_bad_password_change_via_the_api_is_422_and_changes_nothing(
    shared: TestClient, shared_db: Database, old: str, new: str, field: str
) -> None:
    headers, other = auth(shared, "agent1"), auth(shared, "agent1")
    before = user_row(shared_db, "agent1").password_hash
    r = _change(shared, headers, old, new)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert user_row(shared_db, "agent1").password_hash == before
    assert shared.get(TICKETS, headers=other).status_code == 200


def test_a_password_change_via_the_api_ends_every_other_sign_in(
    client: TestClient, db: Database
) -> None:
    mine, other = auth(client, "agent1"), auth(client, "agent1")
    browser = Console(app_of(client), "agent1")
    someone_else = auth(client, "dispatcher1")
    assert _change(client, mine, PASSWORD, NEW_PASSWORD).status_code == 204
    assert client.get(TICKETS, headers=mine).status_code == 200  # the current one is kept
    assert client.get(TICKETS, headers=other).status_code == 401
    assert is_login_redirect(browser.get("/console/tickets"))
    assert client.get(TICKETS, headers=someone_else).status_code == 200
    assert sign_in(client, "agent1").status_code == 401
    token_for(client, "agent1", NEW_PASSWORD)
    assert "password_change" in audit_actions(db, username="agent1")
    assert user_row(db, "agent1").password_changed_at is not None


def test_password_change_needs_a_sign_in(shared: TestClient) -> None:
    r = shared.post(PASSWORD_API, json={"old_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert r.status_code == 401


PAGE = "/console/account/password"


@pytest.mark.parametrize(
    ("form", "message"),
    [
        pytest.param(
            {
                "old_password": "wrong-password",
                "new_password": NEW_PASSWORD,
                "repeat": NEW_PASSWORD,
            },
            "原密码不正确",
            id="wrong_old",
        ),
        pytest.param(
            {"old_password": PASSWORD, "new_password": "short1", "repeat": "short1"},
            "至少 8 位",
            id="too_short",
        ),
        pytest.param(
            {"old_password": PASSWORD, "new_password": NEW_PASSWORD, "repeat": "something-else"},
            "不一致",
            id="repeat_differs",
        ),
        pytest.param({"new_password": NEW_PASSWORD, "repeat": NEW_PASSWORD}, "原密码", id="no_old"),
    ],
)
def test_a_bad_password_change_on_the_console_is_422_and_changes_nothing(
    shared: TestClient, shared_db: Database, form: dict[str, str], message: str
) -> None:
    browser = Console(app_of(shared), "agent1")
    before = user_row(shared_db, "agent1").password_hash
    r = browser.post(PAGE, form)
    assert r.status_code == 422
    assert is_html(r) and message in r.text
    assert user_row(shared_db, "agent1").password_hash == before
    assert browser.get("/console/tickets").status_code == 200


def test_a_password_change_on_the_console_keeps_this_session_only(
    client: TestClient, db: Database
) -> None:
    browser = Console(app_of(client), "agent1")
    other_browser = Console(app_of(client), "agent1")
    token = auth(client, "agent1")
    assert browser.get(PAGE).status_code == 200
    r = browser.post(
        PAGE, {"old_password": PASSWORD, "new_password": NEW_PASSWORD, "repeat": NEW_PASSWORD}
    )
    assert r.status_code == 303
    assert r.headers["location"] == f"{PAGE}?done=password"
    assert "密码已修改" in browser.get(r.headers["location"]).text
    assert browser.get("/console/tickets").status_code == 200
    assert is_login_redirect(other_browser.get("/console/tickets"))
    assert client.get(TICKETS, headers=token).status_code == 401
    assert Console(app_of(client)).login("agent1").status_code == 401
    assert Console(app_of(client)).login("agent1", NEW_PASSWORD).status_code == 303


# ---- system tokens ---------------------------------------------------------------------------

ADMIN_TOKENS = "/api/v1/admin/tokens"


def test_a_system_token_scoped_to_wechat_takes_only_wechat_requests(
    client: TestClient, db: Database
) -> None:
    admin = auth(client, "admin1")
    r = client.post(
        ADMIN_TOKENS,
        json={"username": "agent1", "name": "微信公众号接入", "scope_channel": "wechat"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    value = issued["token"]
    assert value.startswith("js_")
    assert issued["scope_channel"] == "wechat" and issued["username"] == "agent1"
    wechat = {"Authorization": f"Bearer {value}"}

    made = new_ticket(client, wechat, channel="wechat")
    assert made["channel"] == "wechat"
    before = ticket_count(db)
    r = client.post(TICKETS, json={"channel": "phone", "content": "电话诉求"}, headers=wechat)
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden" and "wechat" in r.json()["message"]
    assert ticket_count(db) == before

    listed = client.get(ADMIN_TOKENS, headers=admin).json()
    assert [t["id"] for t in listed] == [issued["id"]]
    assert listed[0]["token"] is None  # shown once, never again

    with db.read() as s:
        row = s.get(ApiToken, issued["id"])
        assert row is not None
        assert row.kind == "system"
        assert row.token_hash == hashlib.sha256(value.encode()).hexdigest()
        stored = [str(v) for v in (row.token_hash, row.name, row.scope_channel, row.scope_role)]
        assert not any(value in v for v in stored)

    assert client.delete(f"{ADMIN_TOKENS}/{issued['id']}", headers=admin).status_code == 204
    r = client.post(TICKETS, json={"channel": "wechat", "content": "再来一件"}, headers=wechat)
    assert r.status_code == 401
    assert client.get(TICKETS, headers=wechat).status_code == 401
    actions = audit_actions(db, username="admin1")
    assert "token_issue" in actions and "token_revoke" in actions


def test_every_stored_token_is_a_sha256_never_the_value(
    shared: TestClient, shared_db: Database
) -> None:
    values = [token_for(shared, "agent1"), Console(app_of(shared), "agent1").session]
    r = shared.post(
        ADMIN_TOKENS, json={"username": "agent1", "name": "短信"}, headers=auth(shared, "admin1")
    )
    values.append(r.json()["token"])
    with shared_db.read() as s:
        hashes = set(s.scalars(select(ApiToken.token_hash)))
    for value in values:
        assert value
        assert value not in hashes
        assert hashlib.sha256(value.encode()).hexdigest() in hashes
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)


def test_a_system_token_cannot_take_another_role(shared: TestClient, shared_db: Database) -> None:
    before = system_tokens(shared_db)
    r = shared.post(
        ADMIN_TOKENS,
        json={"username": "agent1", "name": "越权", "scope_role": "admin"},
        headers=auth(shared, "admin1"),
    )
    assert r.status_code == 422 and r.json()["field"] == "scope_role"
    assert system_tokens(shared_db) == before


def system_tokens(db: Database) -> list[tuple[int, bool]]:
    """(id, revoked) of every system token."""
    with db.read() as s:
        rows = s.execute(
            select(ApiToken.id, ApiToken.revoked_at).where(ApiToken.kind == "system")
        ).all()
    return sorted((i, revoked is not None) for i, revoked in rows)


def test_revoking_an_unknown_or_a_login_token_is_404(
    shared: TestClient, shared_db: Database
) -> None:
    value = token_for(shared, "admin1")
    admin = {"Authorization": f"Bearer {value}"}
    with shared_db.read() as s:
        login_id = s.scalar(
            select(ApiToken.id).where(
                ApiToken.token_hash == hashlib.sha256(value.encode()).hexdigest()
            )
        )
    assert shared.delete(f"{ADMIN_TOKENS}/999999", headers=admin).status_code == 404
    assert shared.delete(f"{ADMIN_TOKENS}/{login_id}", headers=admin).status_code == 404
    assert shared.get(TICKETS, headers=admin).status_code == 200  # not revoked


@pytest.mark.parametrize("who", ["agent1", "dispatcher1", "supervisor1", "s11.admin"])
def test_non_admins_cannot_issue_list_or_revoke_system_tokens(
    shared: TestClient, shared_db: Database, who: str
) -> None:
    admin = auth(shared, "admin1")
    issued = shared.post(
        ADMIN_TOKENS, json={"username": "agent1", "name": "应用"}, headers=admin
    ).json()
    headers = auth(shared, who)
    r = shared.post(ADMIN_TOKENS, json={"username": who, "name": "自己签"}, headers=headers)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert shared.get(ADMIN_TOKENS, headers=headers).status_code == 403
    assert shared.delete(f"{ADMIN_TOKENS}/{issued['id']}", headers=headers).status_code == 403
    assert (issued["id"], False) in system_tokens(shared_db)


def test_the_admin_console_issues_and_revokes_a_system_token(
    shared: TestClient, shared_db: Database
) -> None:
    admin = Console(app_of(shared), "admin1")
    r = admin.post(
        "/console/admin/tokens",
        {"username": "agent1", "name": "移动应用", "scope_channel": "app", "days": "30"},
    )
    assert r.status_code == 201
    value = re.search(r'<code id="token-value">([^<]+)</code>', r.text)
    assert value
    headers = {"Authorization": f"Bearer {value.group(1)}"}
    assert (
        shared.post(
            TICKETS, json={"channel": "app", "content": "应用提交"}, headers=headers
        ).status_code
        == 201
    )
    page = admin.get("/console/admin/tokens")
    assert "移动应用" in page.text and value.group(1) not in page.text
    with shared_db.read() as s:
        token_id = s.scalar(
            select(ApiToken.id).where(ApiToken.kind == "system").order_by(ApiToken.id.desc())
        )
    assert admin.post(f"/console/admin/tokens/{token_id}/revoke").status_code == 303
    assert shared.get(TICKETS, headers=headers).status_code == 401


# ---- the admin console: users, units, calendar -----------------------------------------------


def test_an_admin_creates_a_user_who_can_then_sign_in(
    shared: TestClient, shared_db: Database
) -> None:
    admin = Console(app_of(shared), "admin1")
    r = admin.post(
        "/console/admin/users",
        {
            "username": "S12.Admin2",
            "name": "东二联络员乙",
            "role": "unit_admin",
            "unit": "S12",
            "password": "first-password-1",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/admin/users?done=saved"
    user = user_row(shared_db, "s12.admin2")  # usernames are kept in lower case
    assert (user.role, user.name, user.active) == ("unit_admin", "东二联络员乙", True)
    assert user.password_hash and "first-password-1" not in user.password_hash
    assert "东二联络员乙" in admin.get("/console/admin/users").text
    browser = Console(app_of(shared))
    r = browser.login("s12.admin2", "first-password-1")
    assert r.status_code == 303 and r.headers["location"] == HOME["unit_admin"]
    assert "user_create" in audit_actions(shared_db, username="admin1")


@pytest.mark.parametrize(
    ("form", "status"),
    [
        pytest.param({"username": "agent1"}, 409, id="username_taken"),
        pytest.param({"username": "a b"}, 422, id="bad_username"),
        pytest.param({"password": "short1"}, 422, id="short_password"),
        pytest.param({"password": ""}, 422, id="no_password"),
        pytest.param({"role": "root"}, 422, id="unknown_role"),
        pytest.param({"unit": "NOPE"}, 422, id="unknown_unit"),
    ],
)
def test_a_bad_new_user_is_refused_on_the_page(
    shared: TestClient, shared_db: Database, form: dict[str, str], status: int
) -> None:
    admin = Console(app_of(shared), "admin1")
    with shared_db.read() as s:
        before = s.scalar(select(func.count()).select_from(User))
    data = {
        "username": "new.user",
        "name": "新用户",
        "role": "agent",
        "unit": "C-RX",
        "password": "a-good-password",
        **form,
    }
    r = admin.post("/console/admin/users", data)
    assert r.status_code == status
    assert is_html(r) and "flash-error" in r.text
    with shared_db.read() as s:
        assert s.scalar(select(func.count()).select_from(User)) == before


def test_disabling_a_user_ends_their_sessions(client: TestClient, db: Database) -> None:
    victim = Console(app_of(client), "s11.handler")
    token = auth(client, "s11.handler")
    assert victim.get("/console/inbox").status_code == 200
    admin = Console(app_of(client), "admin1")
    user_id = user_row(db, "s11.handler").id
    r = admin.post(
        f"/console/admin/users/{user_id}",
        {"username": "s11.handler", "name": "东一承办人", "role": "handler", "unit": "S11"},
    )  # no "active": the checkbox is unticked
    assert r.status_code == 303
    assert user_row(db, "s11.handler").active is False
    assert is_login_redirect(victim.get("/console/inbox"))
    assert client.get(TICKETS, headers=token).status_code == 401
    assert Console(app_of(client)).login("s11.handler").status_code == 401
    assert "已停用" in admin.get("/console/admin/users").text


def test_changing_a_users_role_or_unit_ends_their_sessions(
    client: TestClient, db: Database
) -> None:
    admin = Console(app_of(client), "admin1")
    for username, change in (
        ("s12.handler", {"role": "unit_admin"}),
        ("s11.admin", {"unit": "S12"}),
    ):
        victim = Console(app_of(client), username)
        user = user_row(db, username)
        unit = db_unit_code(db, user.unit_id)
        form = {
            "username": username,
            "name": user.name,
            "role": user.role,
            "unit": unit,
            "active": "on",
            **change,
        }
        assert admin.post(f"/console/admin/users/{user.id}", form).status_code == 303
        assert is_login_redirect(victim.get("/console/inbox")), username
        assert Console(app_of(client), username).get("/console/inbox").status_code == 200
    # a change of name only keeps the sessions
    victim = Console(app_of(client), "heat.handler")
    user = user_row(db, "heat.handler")
    form = {
        "username": "heat.handler",
        "name": "热力承办人乙",
        "role": "handler",
        "unit": "C-RL",
        "active": "on",
    }
    assert admin.post(f"/console/admin/users/{user.id}", form).status_code == 303
    assert user_row(db, "heat.handler").name == "热力承办人乙"
    assert victim.get("/console/inbox").status_code == 200


def db_unit_code(db: Database, unit_id: int) -> str:
    with db.read() as s:
        code = s.scalar(select(Unit.code).where(Unit.id == unit_id))
    assert code is not None
    return code


def test_an_admin_cannot_disable_themself(shared: TestClient, shared_db: Database) -> None:
    admin = Console(app_of(shared), "admin1")
    user_id = user_row(shared_db, "admin1").id
    r = admin.post(
        f"/console/admin/users/{user_id}",
        {"username": "admin1", "name": "管理员己", "role": "admin", "unit": "C-RX"},
    )
    assert r.status_code == 422
    assert user_row(shared_db, "admin1").active is True
    assert admin.get("/console/admin/users").status_code == 200


def test_an_admin_unlocks_a_locked_user(client: TestClient, db: Database) -> None:
    for _ in range(5):
        sign_in(client, "agent1", "wrong-password")
    assert sign_in(client, "agent1").status_code == 401  # locked: the right password fails
    admin = Console(app_of(client), "admin1")
    assert "已锁定" in admin.get("/console/admin/users").text
    r = admin.post(f"/console/admin/users/{user_row(db, 'agent1').id}", {"op": "unlock"})
    assert r.status_code == 303
    token_for(client, "agent1")


def test_an_admin_creates_a_street_under_a_district(
    shared: TestClient, shared_db: Database
) -> None:
    admin = Console(app_of(shared), "admin1")
    r = admin.post(
        "/console/admin/units",
        {"code": "S13", "name": "东三街道", "kind": "street", "parent": "D1 东区"},
    )
    assert r.status_code == 303, r.text[:500]
    with shared_db.read() as s:
        district = s.scalar(select(Unit).where(Unit.code == "D1"))
        street = s.scalar(select(Unit).where(Unit.code == "S13"))
        assert district is not None and street is not None
        assert street.parent_id == district.id
        assert street.path == f"{district.path}{street.id}/"
        assert street.kind == "street" and street.active
    page = admin.get("/console/admin/units")
    assert "东三街道" in page.text
    # the new street is a unit a ticket can name, and the district sees below it
    units = shared.get("/api/v1/units", params={"parent": "D1"}, headers=auth(shared, "agent1"))
    assert "S13" in [u["code"] for u in units.json()]
    assert "unit_create" in audit_actions(shared_db, username="admin1")


@pytest.mark.parametrize(
    ("form", "status"),
    [
        pytest.param({"code": "S11"}, 409, id="code_taken"),
        pytest.param({"parent": ""}, 422, id="no_parent"),
        pytest.param({"parent": "NOPE"}, 422, id="unknown_parent"),
        pytest.param({"kind": "galaxy"}, 422, id="unknown_kind"),
        pytest.param({"code": "S 13"}, 422, id="space_in_code"),
    ],
)
def test_a_bad_new_unit_is_refused_on_the_page(
    shared: TestClient, shared_db: Database, form: dict[str, str], status: int
) -> None:
    admin = Console(app_of(shared), "admin1")
    with shared_db.read() as s:
        before = s.scalar(select(func.count()).select_from(Unit))
    data = {"code": "S19", "name": "东九街道", "kind": "street", "parent": "D1", **form}
    r = admin.post("/console/admin/units", data)
    assert r.status_code == status
    with shared_db.read() as s:
        assert s.scalar(select(func.count()).select_from(Unit)) == before


def test_an_admin_adds_and_removes_a_calendar_override(
    shared: TestClient, shared_db: Database
) -> None:
    admin = Console(app_of(shared), "admin1")
    before = calendar_days(shared_db)
    r = admin.post(
        "/console/admin/calendar", {"day": "2027-10-09", "kind": "workday", "note": "国庆调休上班"}
    )
    assert r.status_code == 303
    with shared_db.read() as s:
        row = s.get(CalendarOverride, date(2027, 10, 9))
        assert row is not None
        assert (row.kind, row.note, row.source) == ("workday", "国庆调休上班", "admin")
    page = admin.get("/console/admin/calendar")
    assert "国庆调休上班" in page.text and "2027-10-09" in page.text
    r = admin.post("/console/admin/calendar", {"day": "2027-10-09", "op": "remove"})
    assert r.status_code == 303
    with shared_db.read() as s:
        assert s.get(CalendarOverride, date(2027, 10, 9)) is None
    assert calendar_days(shared_db) == before  # the pack's own holiday is still there
    assert "国庆调休上班" not in admin.get("/console/admin/calendar").text
    actions = audit_actions(shared_db, username="admin1")
    assert "calendar_set" in actions and "calendar_remove" in actions


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({"day": "", "kind": "holiday"}, id="no_day"),
        pytest.param({"day": "2027-02-30", "kind": "holiday"}, id="no_such_day"),
        pytest.param({"day": "2027-10-09", "kind": "party"}, id="unknown_kind"),
        pytest.param({"day": "2027-10-10", "op": "remove"}, id="remove_missing"),
    ],
)
def test_a_bad_calendar_entry_is_refused(
    shared: TestClient, shared_db: Database, form: dict[str, str]
) -> None:
    admin = Console(app_of(shared), "admin1")
    before = calendar_days(shared_db)
    r = admin.post("/console/admin/calendar", form)
    assert r.status_code in (404, 422)
    assert is_html(r) and "flash-error" in r.text
    assert calendar_days(shared_db) == before


def calendar_days(db: Database) -> list[tuple[date, str]]:
    with db.read() as s:
        rows = s.execute(select(CalendarOverride.day, CalendarOverride.kind)).all()
    return sorted((day, kind) for day, kind in rows)


# ---- odd numbers in console forms --------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "method", "url", "form"),
    [
        pytest.param(
            "admin1", "GET", "/console/admin/users?page=²", {}, id="admin_page_superscript"
        ),
        pytest.param(
            "admin1", "GET", "/console/admin/audit?page=" + "9" * 5000, {}, id="admin_page_huge"
        ),
        pytest.param(
            "admin1",
            "POST",
            "/console/admin/tokens",
            {"username": "agent1", "name": "短信", "days": "²"},
            id="token_days",
        ),
        pytest.param(
            "dispatcher1",
            "POST",
            "/console/tickets/{t}/actions/dispatch",
            {"lead": "S11", "version": "²"},
            id="action_version",
        ),
        pytest.param(
            "dispatcher1",
            "POST",
            "/console/tickets/{t}/actions/accept_with_missing",
            {"missing": "身份证复印件", "promised_days": "²"},
            id="action_int_field",
        ),
    ],
)
def test_an_odd_number_in_a_console_page_or_form_never_causes_a_500(
    shared: TestClient, fresh_ticket: int, who: str, method: str, url: str, form: dict[str, str]
) -> None:
    browser = Console(app_of(shared), who)
    url = url.replace("{t}", str(fresh_ticket))
    r = browser.get(url) if method == "GET" else browser.post(url, form)
    assert r.status_code < 500, r.text[:300]
