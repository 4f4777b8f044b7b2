"""No input gives a 500 (issue 13 §5.3, SPEC §10): NUL characters in form fields and escaped in
JSON, blank request types, ids beyond the database's integer range, dates, periods, offsets and
limits at the edge of the calendar. Each is a clear 4xx and writes nothing.

One tiny city per module and backend; every case counts the rows that an accepted request would
have written (tickets, events, the audit log) before and after.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from conftest import BACKENDS, Templates, auth, tiny_city
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from jiesu.auth.models import AuditLog
from jiesu.auth.service import csrf_token_for, issue
from jiesu.db.engine import Database
from jiesu.org.models import User
from jiesu.tickets.models import Event, Ticket

BIG = "99999999999999999999"  # beyond 2^64
JUST_OVER_BIGINT = str(2**63)  # one past PostgreSQL's BIGINT
JUST_OVER_INTEGER = str(2**31)  # one past PostgreSQL's INTEGER
HUGE = str(2**70)


@dataclass
class World:
    client: TestClient
    db: Database
    bearer: dict[str, dict[str, str]]
    sessions: dict[str, str]

    def counts(self) -> tuple[int, ...]:
        with self.db.read() as s:
            return tuple(
                s.scalar(select(func.count()).select_from(table)) or 0
                for table in (Ticket, Event, AuditLog)
            )

    def headers(self, who: str | None) -> dict[str, str]:
        """`api:NAME` a bearer token, `page:NAME` a console session (cookie + CSRF header)."""
        if who is None:
            return {}
        kind, name = who.split(":")
        if kind == "api":
            return self.bearer[name]
        token = self.sessions[name]
        return {"Cookie": f"jiesu_session={token}", "X-CSRF-Token": csrf_token_for(token)}


def _session(db: Database, username: str) -> str:
    with db.write() as s:
        user = s.scalar(select(User).where(User.username == username))
        assert user is not None
        value, _ = issue(user, db_session=s, ttl=timedelta(hours=8), kind="session")
    return value


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, templates: Templates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with tiny_city(str(request.param), templates, tmp_path_factory) as (client, db):
        bearer = {name: auth(client, name) for name in ("agent1", "admin1", "analyst1")}
        made = client.post(
            "/api/v1/tickets",
            json={"channel": "phone", "content": "小区门口路灯坏了"},
            headers=bearer["agent1"],
        )
        assert made.status_code == 201, made.text
        sessions = {name: _session(db, name) for name in ("admin1", "s11.admin", "s11.handler")}
        yield World(client, db, bearer, sessions)


def check(world: World, method: str, path: str, who: str | None, **kwargs: Any) -> None:
    before = world.counts()
    headers = {**world.headers(who), **kwargs.pop("headers", {})}
    world.client.cookies.clear()
    r = world.client.request(method, path, headers=headers, follow_redirects=False, **kwargs)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    assert world.counts() == before, "a refused request wrote something"
    if path.startswith("/api/"):
        body = r.json()
        assert body["message"], body
        assert any("\u4e00" <= c <= "\u9fff" for c in body["message"]), body  # a Chinese half


# ---- NUL, escaped or not --------------------------------------------------------------------

FORM = "application/x-www-form-urlencoded"
NUL_FORMS = [
    ("/login", None, b"username=ad%00min&password=secret123"),
    ("/portal/track", None, b"number=2026%000101&code=ABCD"),
    ("/console/intake", "page:admin1", b"channel=phone&content=a%00b"),
    ("/console/admin/users", "page:admin1", b"username=x%00y&name=n&role=agent&unit=C-RX"),
    ("/console/unit/users", "page:s11.admin", b"username=x%00y&name=n&role=handler"),
]


@pytest.mark.parametrize(("path", "who", "body"), NUL_FORMS, ids=[p for p, _, _ in NUL_FORMS])
def test_nul_in_a_form_field_is_refused(
    world: World, path: str, who: str | None, body: bytes
) -> None:
    check(world, "POST", path, who, content=body, headers={"Content-Type": FORM})


def test_nul_in_a_multipart_form_field_is_refused(world: World) -> None:
    check(world, "POST", "/login", None, files={"username": (None, b"ad\x00min")},
          data={"password": "secret123"})  # fmt: skip


ESCAPED_NUL = rb'"a\\\u0000b"'  # the JSON text "a\\\u0000b": a backslash, then an escaped NUL
LONE_SURROGATE = rb'"a\ud800b"'  # valid JSON, but no UTF-8 text: PostgreSQL cannot store it


@pytest.mark.parametrize("value", [ESCAPED_NUL, rb'"\u0000"', LONE_SURROGATE],
                         ids=["after-backslash", "bare", "lone-surrogate"])  # fmt: skip
@pytest.mark.parametrize(
    ("path", "who", "template"),
    [
        ("/api/v1/tickets", "api:agent1", b'{"channel": "phone", "content": %s}'),
        ("/api/v1/tickets", "api:agent1", b'{"channel": "phone", "content": "x", "title": %s}'),
        ("/api/v1/auth/token", None, b'{"username": %s, "password": "secret123"}'),
        ("/api/v1/admin/tokens", "api:admin1", b'{"username": "agent1", "name": %s}'),
    ],
    ids=["content", "title", "token", "system-token"],
)
def test_escaped_nul_in_json_is_refused(
    world: World, path: str, who: str, template: bytes, value: bytes
) -> None:
    body = template % value
    check(world, "POST", path, who, content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    "body",
    [
        b'{"channel": "phone", "content": "\xff"}',
        b'{"channel": "phone", "content": "\xed\xa0\x80"}',
    ],
    ids=["not-utf8", "encoded-surrogate"],
)
def test_json_that_is_not_utf8_is_refused(world: World, body: bytes) -> None:
    check(world, "POST", "/api/v1/tickets", "api:agent1", content=body,
          headers={"Content-Type": "application/json"})  # fmt: skip


# ---- blank request type -----------------------------------------------------------------------


@pytest.mark.parametrize("request_type", ["", " ", "\t", "\u3000"], ids=["empty", "space", "tab",
                                                                          "ideographic"])  # fmt: skip
def test_blank_request_type_is_refused(world: World, request_type: str) -> None:
    body = {"channel": "phone", "content": "路灯坏了", "request_type": request_type}
    check(world, "POST", "/api/v1/tickets", "api:agent1", json=body)


# ---- ids beyond the integer range ------------------------------------------------------------

ID_PATHS = [
    ("GET", "/api/v1/tickets/{id}", "api:admin1"),
    ("POST", "/api/v1/tickets/{id}/actions/accept", "api:admin1"),
    ("POST", "/api/v1/tickets/{id}/reveal", "api:admin1"),
    ("DELETE", "/api/v1/admin/tokens/{id}", "api:admin1"),
    ("GET", "/api/v1/metrics/units/{id}/orders", "api:admin1"),
    ("GET", "/console/tickets/{id}", "page:admin1"),
    ("POST", "/console/tickets/{id}/actions/accept", "page:admin1"),
    ("POST", "/console/tickets/{id}/reveal", "page:admin1"),
    ("POST", "/console/tickets/{id}/links", "page:admin1"),
    ("GET", "/console/attachments/{id}", "page:admin1"),
    ("GET", "/console/warnings/{id}", "page:admin1"),
    ("POST", "/console/warnings/{id}/task", "page:admin1"),
    ("POST", "/console/warnings/{id}/dismiss", "page:admin1"),
    ("GET", "/console/reports/{id}", "page:admin1"),
    ("GET", "/console/reports/{id}/pdf", "page:admin1"),
    ("GET", "/console/reports/{id}/xlsx", "page:admin1"),
    ("POST", "/console/admin/users/{id}", "page:admin1"),
    ("POST", "/console/admin/units/{id}", "page:admin1"),
    ("POST", "/console/admin/tokens/{id}/revoke", "page:admin1"),
    ("POST", "/console/admin/models/{id}/activate", "page:admin1"),
    ("POST", "/console/unit/users/{id}", "page:s11.admin"),
]


@pytest.mark.parametrize("value", [BIG, JUST_OVER_BIGINT, JUST_OVER_INTEGER, "-1", "0"])
@pytest.mark.parametrize(("method", "path", "who"), ID_PATHS, ids=[p for _, p, _ in ID_PATHS])
def test_ids_out_of_range_are_refused(
    world: World, method: str, path: str, who: str, value: str
) -> None:
    check(world, method, path.format(id=value), who)


# ---- dates, periods, offsets, limits ----------------------------------------------------------

QUERY_PARAMS = [
    ("/api/v1/tickets", "api:admin1", ["created_from", "created_to"], "date"),
    ("/api/v1/tickets", "api:admin1", ["page", "page_size"], "number"),
    ("/api/v1/metrics/units", "api:admin1", ["period"], "period"),
    ("/api/v1/metrics/units/C-RX/orders", "api:admin1", ["period"], "period"),
    ("/api/v1/metrics/units/C-RX/orders", "api:admin1", ["offset"], "offset"),
    ("/api/v1/metrics/units/C-RX/orders", "api:admin1", ["limit"], "number"),
    ("/api/v1/warnings", "api:admin1", ["limit"], "number"),
    ("/console/tickets", "page:admin1", ["from", "to"], "date"),
    ("/console/tickets", "page:admin1", ["page"], "number"),
    ("/console/exports/tickets.csv", "page:admin1", ["from", "to"], "date"),
    ("/console/dispatch", "page:admin1", ["from", "to"], "date"),
    ("/console/inbox", "page:s11.handler", ["from", "to"], "date"),
    ("/console/assessment", "page:admin1", ["period"], "period"),
    ("/console/assessment/drill?unit=C-RX&what=counted", "page:admin1", ["period"], "period"),
    ("/console/assessment/drill?unit=C-RX&what=counted", "page:admin1", ["page"], "number"),
    ("/console/dashboard", "page:admin1", ["days"], "number"),
    ("/console/dashboard/data", "page:admin1", ["days"], "number"),
    ("/console/admin/users", "page:admin1", ["page"], "number"),
    ("/console/admin/audit", "page:admin1", ["page"], "number"),
]
HOSTILE = {
    "date": [
        "0001-01-01",
        "9999-12-31",
        "2026-13-01",
        "2026-W52",
        "9999-W52",
        "x",
        "２０２６-01-01",
    ],
    "period": ["0000-01", "9999-12", "0001-01", "9999-W52", "2026-13", "x", "٢٠٢٦-01"],
    "number": [HUGE, "-" + HUGE, BIG, "0", "-1", "1e9", "x"],
    "offset": [HUGE, "-" + HUGE, BIG, "-1", "1e9", "x"],
}
QUERY_CASES = [
    (path, who, name, value)
    for path, who, names, kind in QUERY_PARAMS
    for name in names
    for value in HOSTILE[kind]
]


@pytest.mark.parametrize(
    ("path", "who", "name", "value"),
    QUERY_CASES,
    ids=[f"{p.split('?')[0]}-{n}={v[:12]}" for p, _, n, v in QUERY_CASES],
)
def test_query_values_out_of_range_are_refused(
    world: World, path: str, who: str, name: str, value: str
) -> None:
    sep = "&" if "?" in path else "?"
    check(world, "GET", f"{path}{sep}{name}={value}", who)


# ---- dates and periods in console forms ------------------------------------------------------

FORM_CASES = [
    ("/console/reports", "kind=daily&period=0001-01-01"),
    ("/console/reports", "kind=daily&period=9999-12-31"),
    ("/console/reports", "kind=weekly&period=9999-W52"),
    ("/console/reports", "kind=weekly&period=0001-W01"),
    ("/console/reports", "kind=monthly&period=0000-01"),
    ("/console/reports", "kind=monthly&period=9999-12"),
    ("/console/admin/calendar", "day=9999-12-31&kind=holiday"),
    ("/console/admin/calendar", "day=0001-01-01&kind=workday"),
]


@pytest.mark.parametrize(("path", "form"), FORM_CASES, ids=[f for _, f in FORM_CASES])
def test_dates_out_of_range_in_console_forms_are_refused(
    world: World, path: str, form: str
) -> None:
    check(world, "POST", path, "page:admin1", content=form.encode(),
          headers={"Content-Type": FORM})  # fmt: skip


# ---- what must still pass ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        (rb'"a\\u0000b"', "a\\u0000b"),  # an escaped backslash, then the letters u0000
        (rb'"\ud83d\ude00 \u8def\u706f"', "\U0001f600 路灯"),  # a surrogate pair, escaped CJK
    ],
    ids=["escaped-backslash", "surrogate-pair"],
)
def test_text_that_only_looks_like_a_nul_is_accepted(
    world: World, text: bytes, stored: str
) -> None:
    body = b'{"channel": "phone", "content": %s}' % text
    r = world.client.post("/api/v1/tickets", content=body, headers={
        **world.headers("api:agent1"), "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["content"] == stored
