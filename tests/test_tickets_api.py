"""The ticket REST contract (SPEC §9) and its guarantees (SPEC §1 visibility and masking, §10 bad
input gets a clear 4xx and never a 500 or a half-written order).

Two kinds of database here, both on SQLite and PostgreSQL:
- `client`/`db` (conftest): a fresh tiny city per test, for tests that create or change tickets;
- `world`: one tiny city per module and backend with a few tickets already assigned, for tests
  that only read or send input that must be refused (they check that nothing was written).
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import httpx
import pytest
from conftest import BACKENDS, PASSWORD, Templates, auth, require_backend, token_for
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from jiesu.auth.models import ApiToken, AuditLog
from jiesu.auth.passwords import hash_password
from jiesu.db.engine import Database
from jiesu.org.models import Unit, User
from jiesu.tickets.models import Assignment, Event, Ticket
from jiesu.web.app import create_app

SHANGHAI = ZoneInfo("Asia/Shanghai")
TICKETS = "/api/v1/tickets"


# ---- helpers -------------------------------------------------------------------------------


def new_ticket(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": "phone", "content": "小区暖气不热，已经三天了"}
    body.update(fields)
    return body


def create(client: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    r = client.post(TICKETS, json=new_ticket(**fields), headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def ticket_count(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(Ticket)) or 0


def unit_id(db: Database, code: str) -> int:
    with db.read() as s:
        uid = s.scalar(select(Unit.id).where(Unit.code == code))
    assert uid is not None, code
    return uid


def assign(db: Database, ticket_id: int, code: str, *, role: str = "lead") -> None:
    """Give `code` a part in the ticket (as the dispatch action will); lead also sets lead_unit."""
    uid = unit_id(db, code)
    with db.write() as s:
        s.add(Assignment(ticket_id=ticket_id, unit_id=uid, role=role))
        if role == "lead":
            ticket = s.get(Ticket, ticket_id)
            assert ticket is not None
            ticket.lead_unit_id = uid


def add_user(db: Database, username: str, role: str, unit_code: str) -> None:
    uid = unit_id(db, unit_code)
    with db.write() as s:
        s.add(
            User(
                username=username,
                name=username,
                role=role,
                unit_id=uid,
                password_hash=hash_password(PASSWORD),
            )
        )


def city_today() -> str:
    return datetime.now(SHANGHAI).strftime("%Y%m%d")


@dataclass
class World:
    """A tiny city with four tickets:
    - s11: led by 东一街道 (S11), requester 张三丰 13800138000
    - shared: led by S12, S11 co-handles, requester 王小二 13700137000
    - secret: led by S11, confidential requester 李四 13900139000
    - unassigned: nobody has it yet, requester 赵六 13600136000
    and two district handlers, d1.handler (东区) and d2.handler (西区)."""

    client: TestClient
    db: Database
    tickets: dict[str, int]
    numbers: dict[str, str]
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)

    def as_(self, username: str) -> dict[str, str]:
        if username not in self.tokens:
            self.tokens[username] = auth(self.client, username)
        return self.tokens[username]

    def get(self, username: str, name: str) -> Any:
        return self.client.get(f"{TICKETS}/{self.tickets[name]}", headers=self.as_(username))


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest,
    templates: Templates,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    require_backend(request.param)
    tmp: Path = tmp_path_factory.mktemp("world")
    urls = cast(Generator[str, None, None], templates.fresh_url(request.param, True, tmp))
    db = Database(next(urls))
    try:
        with TestClient(create_app(db), raise_server_exceptions=False) as client:
            agent = auth(client, "agent1")
            made = {
                "s11": create(client, agent, requester={"name": "张三丰", "phone": "13800138000"}),
                "shared": create(
                    client, agent, requester={"name": "王小二", "phone": "13700137000"}
                ),
                "secret": create(
                    client,
                    agent,
                    request_type="report",
                    requester={"name": "李四", "phone": "13900139000", "confidential": True},
                ),
                "unassigned": create(
                    client, agent, requester={"name": "赵六", "phone": "13600136000"}
                ),
            }
            ids = {k: int(t["id"]) for k, t in made.items()}
            assign(db, ids["s11"], "S11")
            assign(db, ids["shared"], "S12")
            assign(db, ids["shared"], "S11", role="co_handler")
            assign(db, ids["secret"], "S11")
            add_user(db, "d1.handler", "handler", "D1")
            add_user(db, "d2.handler", "handler", "D2")
            yield World(
                client, db, ids, {k: t["number"] for k, t in made.items()}, {"agent1": agent}
            )
    finally:
        db.dispose()
        urls.close()


@pytest.fixture
def agent(client: TestClient) -> dict[str, str]:
    return auth(client, "agent1")


# ---- signing in ----------------------------------------------------------------------------


def test_token_login_with_the_right_password_gives_a_bearer_token(world: World) -> None:
    r = world.client.post("/api/v1/auth/token", json={"username": "agent1", "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["access_token"].startswith("js_")
    assert body["expires_at"] is not None
    me = {"Authorization": f"Bearer {body['access_token']}"}
    assert world.client.get(TICKETS, headers=me).status_code == 200


def test_every_login_gets_its_own_token(world: World) -> None:
    assert token_for(world.client, "agent1") != token_for(world.client, "agent1")


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("agent1", "wrong-password"),
        ("agent1", PASSWORD.upper()),
        ("nobody", PASSWORD),
        ("", PASSWORD),
    ],
)
def test_token_login_with_a_wrong_password_or_user_is_refused(
    world: World, username: str, password: str
) -> None:
    r = world.client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert r.status_code in (401, 422)
    assert r.json()["message"]
    if username:
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no_token"),
        pytest.param({"Authorization": "Bearer js_garbage"}, id="garbage_token"),
        pytest.param({"Authorization": "Bearer "}, id="empty_token"),
        pytest.param({"Authorization": "Basic YWdlbnQxOnNlY3JldDEyMw=="}, id="basic_auth"),
    ],
)
@pytest.mark.parametrize("path", [TICKETS, f"{TICKETS}/1", "/api/v1/units", "/api/v1/categories"])
def test_reading_without_a_valid_token_is_401(
    world: World, headers: dict[str, str], path: str
) -> None:
    r = world.client.get(path, headers=headers)
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"
    assert r.json()["message"]


def test_creating_without_a_token_is_401_and_makes_nothing(world: World) -> None:
    before = ticket_count(world.db)
    assert world.client.post(TICKETS, json=new_ticket()).status_code == 401
    assert ticket_count(world.db) == before


def test_an_expired_token_is_401(client: TestClient, db: Database) -> None:
    headers = auth(client, "agent1")
    with db.write() as s:
        s.execute(update(ApiToken).values(expires_at=datetime.now(SHANGHAI) - timedelta(1)))
    assert client.get(TICKETS, headers=headers).status_code == 401


def test_a_disabled_users_token_and_password_stop_working(client: TestClient, db: Database) -> None:
    headers = auth(client, "agent1")
    with db.write() as s:
        s.execute(update(User).where(User.username == "agent1").values(active=False))
    assert client.get(TICKETS, headers=headers).status_code == 401
    r = client.post("/api/v1/auth/token", json={"username": "agent1", "password": PASSWORD})
    assert r.status_code == 401


# ---- creating ------------------------------------------------------------------------------


def test_create_returns_201_with_id_number_and_status_received(
    client: TestClient, agent: dict[str, str]
) -> None:
    before = city_today()
    r = client.post(TICKETS, json=new_ticket(category_code="0301"), headers=agent)
    after = city_today()
    assert r.status_code == 201, r.text
    t = r.json()
    assert isinstance(t["id"], int)
    assert len(t["number"]) == 13
    assert t["number"].isdigit()
    assert t["number"][:8] in (before, after)  # the city-local day, Asia/Shanghai
    assert t["number"].endswith("00001")  # the first of the day in a fresh city
    assert t["status"] == "received"
    assert t["status_name"] == "已受理"
    assert t["category"] == {"code": "0301", "name": "水电气热 › 供暖"}
    assert t["tier"] == "T24h"  # the category's effective tier
    assert t["title"] == "小区暖气不热，已经三天了"  # no title: taken from the content
    assert r.headers["Location"] == f"{TICKETS}/{t['id']}"
    created = datetime.fromisoformat(t["created_at"])
    assert created.utcoffset() == timedelta(hours=8)  # answered in the city's zone
    assert abs(created - datetime.now(SHANGHAI)) < timedelta(minutes=1)


def test_a_created_ticket_has_one_receive_event(
    client: TestClient, db: Database, agent: dict[str, str]
) -> None:
    t = create(client, agent)
    detail = client.get(f"{TICKETS}/{t['id']}", headers=agent).json()
    assert [(e["seq"], e["action"]) for e in detail["events"]] == [(1, "receive")]
    event = detail["events"][0]
    assert event["state_before"] is None
    assert event["state_after"] == "received"
    assert event["actor"] == "话务员甲"
    assert event["actor_unit"]["code"] == "C-RX"
    assert event["data"] == {"channel": "phone"}
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 1


def test_two_creates_get_consecutive_numbers(client: TestClient, agent: dict[str, str]) -> None:
    first, second = create(client, agent), create(client, agent)
    assert int(second["number"]) == int(first["number"]) + 1


@pytest.mark.parametrize("who", ["agent1", "dispatcher1", "admin1"])
def test_intake_roles_can_create(world: World, who: str) -> None:
    create(world.client, world.as_(who))


@pytest.mark.parametrize(
    "who", ["s11.handler", "s11.admin", "heat.handler", "callback1", "analyst1", "supervisor1"]
)
def test_a_role_that_does_not_take_requests_in_cannot_create(world: World, who: str) -> None:
    before = ticket_count(world.db)
    r = world.client.post(TICKETS, json=new_ticket(), headers=world.as_(who))
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden"
    assert r.json()["message"]
    assert ticket_count(world.db) == before


BAD_INPUT: list[Any] = [
    pytest.param({"json": {"channel": "phone"}}, 422, "content", id="missing_content"),
    pytest.param({"json": new_ticket(content="")}, 422, "content", id="empty_content"),
    pytest.param({"json": new_ticket(content="   ")}, 422, "content", id="blank_content"),
    pytest.param({"json": new_ticket(content="x" * 1_000_000)}, 413, None, id="1MB_content"),
    pytest.param({"json": new_ticket(content="x" * 30_000)}, 422, "content", id="30k_content"),
    pytest.param({"json": {"content": "x"}}, 422, "channel", id="missing_channel"),
    pytest.param({"json": new_ticket(channel="fax")}, 422, "channel", id="unknown_channel"),
    pytest.param(
        {"json": new_ticket(category_code="99")}, 422, "category_code", id="unknown_category"
    ),
    pytest.param(
        {"json": new_ticket(request_type="gossip")}, 422, "request_type", id="unknown_request_type"
    ),
    pytest.param({"json": new_ticket(channel=1)}, 422, "channel", id="channel_as_number"),
    pytest.param({"json": new_ticket(content=["x"])}, 422, "content", id="content_as_list"),
    pytest.param({"json": new_ticket(lat="north", lng=116.4)}, 422, "lat", id="lat_as_a_word"),
    pytest.param({"json": new_ticket(lat=39.9)}, 422, "body", id="lat_without_lng"),
    pytest.param({"json": new_ticket(lng=116.4)}, 422, "body", id="lng_without_lat"),
    pytest.param({"json": new_ticket(lat=91, lng=116.4)}, 422, "lat", id="lat_out_of_range"),
    pytest.param({"json": new_ticket(priority="high")}, 422, "priority", id="unknown_extra_field"),
    pytest.param(
        {"json": new_ticket(requester={"name": "张三", "age": 40})},
        422,
        "requester.age",
        id="unknown_requester_field",
    ),
    pytest.param({"json": new_ticket(title="标" * 201)}, 422, "title", id="title_over_200"),
    pytest.param({"json": [new_ticket()]}, 422, "body", id="a_list_not_an_object"),
    pytest.param(
        {
            "content": b'{"channel": "phone", "content": ',
            "headers": {"Content-Type": "application/json"},
        },
        422,
        None,
        id="invalid_json",
    ),
    pytest.param(
        {
            "content": b'{"channel": "phone", "content": "x"}',
            "headers": {"Content-Type": "text/plain"},
        },
        422,
        "body",
        id="text_plain_content_type",
    ),
    pytest.param(
        {"data": {"channel": "phone", "content": "x"}}, 422, "body", id="form_encoded_body"
    ),
    pytest.param(
        {"json": new_ticket(), "headers": {"Idempotency-Key": "k" * 201}},
        422,
        "Idempotency-Key",
        id="idempotency_key_over_200",
    ),
]


@pytest.mark.parametrize(("request_kwargs", "status", "field"), BAD_INPUT)
def test_bad_input_gets_a_clear_4xx_and_makes_no_ticket(
    world: World, request_kwargs: dict[str, Any], status: int, field: str | None
) -> None:
    before = ticket_count(world.db)
    kwargs = dict(request_kwargs)
    kwargs["headers"] = {**world.as_("agent1"), **kwargs.get("headers", {})}
    r = world.client.post(TICKETS, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["message"], str)
    assert body["message"]
    if field is not None:
        assert body["field"] == field
    assert ticket_count(world.db) == before


INVALID_PHONES = [
    "12345",
    "phone",
    "138001380001",  # 12 digits
    "1380013800a",
    "12800138000",  # 12x is no mobile prefix
    "23800138000",  # 11 digits, not a mobile, no area code
    "+1 415 555 0100",
    "+86",
    "1" * 31,
]


@pytest.mark.parametrize("phone", INVALID_PHONES)
def test_an_invalid_phone_is_422_naming_the_field(world: World, phone: str) -> None:
    before = ticket_count(world.db)
    r = world.client.post(
        TICKETS, json=new_ticket(requester={"phone": phone}), headers=world.as_("agent1")
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "requester.phone"
    assert ticket_count(world.db) == before


def test_a_valid_phone_is_stored_normalised(
    client: TestClient, db: Database, agent: dict[str, str]
) -> None:
    mobile = create(client, agent, requester={"name": "张三", "phone": "+86 138-0013-8000"})
    landline = create(client, agent, requester={"name": "李四", "phone": "010-12345678"})
    assert mobile["requester"]["phone"] == "138****8000"
    assert landline["requester"]["phone"] == "010****5678"
    with db.read() as s:
        assert set(s.scalars(select(Ticket.requester_phone))) == {"13800138000", "01012345678"}


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"lat": "39.9", "lng": 116.4}, id="lat_as_numeric_string"),
        pytest.param({"requester": {"confidential": "yes"}}, id="confidential_as_string"),
    ],
)
def test_a_value_of_the_wrong_json_type_is_refused(world: World, fields: dict[str, Any]) -> None:
    r = world.client.post(TICKETS, json=new_ticket(**fields), headers=world.as_("agent1"))
    assert r.status_code == 422, r.text


def test_an_oversize_body_without_content_length_is_413(world: World) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 32_768

    r = world.client.post(
        TICKETS,
        content=chunks(),
        headers={**world.as_("agent1"), "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert r.json()["message"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/v1/no-such-thing"), ("PUT", TICKETS)])
def test_routing_errors_answer_with_a_json_message(world: World, method: str, path: str) -> None:
    r = world.client.request(method, path, headers=world.as_("agent1"))
    assert r.status_code in (404, 405)
    assert r.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        pytest.param(
            "POST", TICKETS, {"json": new_ticket(content="暖气\u0000不热")}, id="nul_in_content"
        ),
        pytest.param("GET", TICKETS, {"params": {"text": "a\u0000b"}}, id="nul_in_search_text"),
        pytest.param(
            "GET", "/api/v1/units", {"params": {"parent": "D\u00001"}}, id="nul_in_unit_filter"
        ),
    ],
)
def test_a_nul_character_never_causes_a_500(
    request: pytest.FixtureRequest,
    world: World,
    method: str,
    path: str,
    kwargs: dict[str, Any],
) -> None:
    before = ticket_count(world.db)
    r = world.client.request(method, path, headers=world.as_("agent1"), **kwargs)
    assert r.status_code == 422, r.text
    assert "NUL" in r.json()["message"]
    assert ticket_count(world.db) == before


def test_a_nul_character_in_a_login_never_causes_a_500(
    request: pytest.FixtureRequest, world: World
) -> None:
    r = world.client.post(
        "/api/v1/auth/token", json={"username": "agent\u00001", "password": PASSWORD}
    )
    assert r.status_code == 422, r.text


# ---- Idempotency-Key -----------------------------------------------------------------------


def test_the_same_idempotency_key_twice_makes_one_ticket(
    client: TestClient, db: Database, agent: dict[str, str]
) -> None:
    headers = {**agent, "Idempotency-Key": str(uuid.uuid4())}
    first = client.post(TICKETS, json=new_ticket(), headers=headers)
    second = client.post(TICKETS, json=new_ticket(), headers=headers)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert second.status_code in (200, 201)
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["number"] == first.json()["number"]
    assert ticket_count(db) == 1


def test_the_same_idempotency_key_with_another_body_is_422(
    client: TestClient, db: Database, agent: dict[str, str]
) -> None:
    headers = {**agent, "Idempotency-Key": str(uuid.uuid4())}
    assert client.post(TICKETS, json=new_ticket(), headers=headers).status_code == 201
    r = client.post(TICKETS, json=new_ticket(content="另一件事"), headers=headers)
    assert r.status_code == 422
    assert r.json()["field"] == "Idempotency-Key"
    assert "Idempotency-Key" in r.json()["message"]
    assert ticket_count(db) == 1


def test_the_same_idempotency_key_from_two_users_makes_two_tickets(
    client: TestClient, db: Database
) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    a = client.post(TICKETS, json=new_ticket(), headers={**auth(client, "agent1"), **key})
    b = client.post(TICKETS, json=new_ticket(), headers={**auth(client, "dispatcher1"), **key})
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]
    assert "Idempotent-Replayed" not in b.headers
    assert ticket_count(db) == 2


# ---- listing -------------------------------------------------------------------------------


def test_list_filters_by_status(client: TestClient, db: Database, agent: dict[str, str]) -> None:
    a, b, _ = create(client, agent), create(client, agent), create(client, agent)
    with db.write() as s:
        s.execute(update(Ticket).where(Ticket.id == a["id"]).values(status="closed"))

    def ids(params: dict[str, Any]) -> set[int]:
        r = client.get(TICKETS, params=params, headers=agent)
        assert r.status_code == 200, r.text
        return {t["id"] for t in r.json()["items"]}

    assert ids({"status": "closed"}) == {a["id"]}
    assert b["id"] in ids({"status": "received"})
    assert a["id"] not in ids({"status": "received"})
    assert len(ids({"status": ["received", "closed"]})) == 3
    r = client.get(TICKETS, params={"status": "bogus"}, headers=agent)
    assert r.status_code == 422
    assert r.json()["field"] == "status"


def test_list_filters_by_category_and_everything_below_it(
    client: TestClient, agent: dict[str, str]
) -> None:
    heating = create(client, agent, category_code="0301")
    utilities = create(client, agent, category_code="03")
    housing = create(client, agent, category_code="0102")
    create(client, agent)  # no category

    def numbers(category: str) -> set[str]:
        r = client.get(TICKETS, params={"category": category}, headers=agent)
        assert r.status_code == 200, r.text
        return {t["number"] for t in r.json()["items"]}

    assert numbers("03") == {heating["number"], utilities["number"]}
    assert numbers("0301") == {heating["number"]}
    assert numbers("01") == {housing["number"]}
    assert numbers("02") == set()


def test_list_filters_by_text_in_title_content_or_number(
    client: TestClient, agent: dict[str, str]
) -> None:
    noise = create(client, agent, content="楼道灯坏了", title="楼道照明")
    heating = create(client, agent, content="暖气片冰凉")
    titled = create(client, agent, content="反映问题", title="暖气漏水")

    def ids(text: str) -> set[int]:
        r = client.get(TICKETS, params={"text": text}, headers=agent)
        assert r.status_code == 200, r.text
        return {t["id"] for t in r.json()["items"]}

    assert ids("暖气") == {heating["id"], titled["id"]}
    assert ids(noise["number"]) == {noise["id"]}
    assert ids("不存在的词") == set()


def test_list_filters_by_city_local_created_dates(
    client: TestClient, db: Database, agent: dict[str, str]
) -> None:
    late = create(client, agent)  # 2026-01-01 23:30 in Beijing = 15:30 UTC the same day
    early = create(client, agent)  # 2026-01-02 00:30 in Beijing = 16:30 UTC on Jan 1
    with db.write() as s:
        for t, local in (
            (late, datetime(2026, 1, 1, 23, 30, tzinfo=SHANGHAI)),
            (early, datetime(2026, 1, 2, 0, 30, tzinfo=SHANGHAI)),
        ):
            s.execute(update(Ticket).where(Ticket.id == t["id"]).values(created_at=local))

    def ids(**params: str) -> set[int]:
        r = client.get(TICKETS, params=params, headers=agent)
        assert r.status_code == 200, r.text
        return {t["id"] for t in r.json()["items"]}

    assert ids(created_from="2026-01-01", created_to="2026-01-01") == {late["id"]}
    assert ids(created_from="2026-01-02", created_to="2026-01-02") == {early["id"]}
    assert ids(created_from="2026-01-01", created_to="2026-01-02") == {late["id"], early["id"]}
    assert ids(created_to="2025-12-31") == set()
    r = client.get(TICKETS, params={"created_from": "2026-13-01"}, headers=agent)
    assert r.status_code == 422


@pytest.mark.parametrize("params", [{"created_to": "9999-12-31"}, {"created_from": "0001-01-01"}])
def test_extreme_dates_in_the_list_filter_never_cause_a_500(
    world: World, params: dict[str, str]
) -> None:
    r = world.client.get(TICKETS, params=params, headers=world.as_("agent1"))
    assert r.status_code < 500


@pytest.mark.parametrize("text", ["%", "_"])
def test_a_search_for_a_wildcard_character_matches_it_literally(world: World, text: str) -> None:
    r = world.client.get(TICKETS, params={"text": text}, headers=world.as_("agent1"))
    assert r.status_code == 200
    assert r.json()["total"] == 0  # no ticket in this world contains % or _


def test_list_is_paginated_newest_first_with_the_total(
    client: TestClient, agent: dict[str, str]
) -> None:
    made = [create(client, agent)["id"] for _ in range(5)]
    pages = []
    for page in (1, 2, 3):
        r = client.get(TICKETS, params={"page": page, "page_size": 2}, headers=agent)
        assert r.status_code == 200
        body = r.json()
        assert (body["total"], body["page"], body["page_size"]) == (5, page, 2)
        pages.append([t["id"] for t in body["items"]])
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == list(reversed(made))
    assert body["total_capped"] is False


def test_a_list_past_the_counting_limit_says_its_total_is_a_floor(
    client: TestClient, agent: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Counting every match reads the whole history (docs/benchmarks.md "Volume"): the count
    # stops at the limit, and the API and the page say there may be more.
    from jiesu.tickets import service

    made = [create(client, agent)["id"] for _ in range(4)]
    monkeypatch.setattr(service, "COUNT_LIMIT", 3)
    body = client.get(TICKETS, params={"page_size": 2}, headers=agent).json()
    assert (body["total"], body["total_capped"]) == (3, True)
    assert [t["id"] for t in body["items"]] == list(reversed(made))[:2]  # the page is right
    from test_console_pages import console_login

    console_login(client, "agent1")
    page = client.get("/console/tickets")
    assert page.status_code == 200 and "共 3+ 件" in page.text, page.text[-2000:]
    client.cookies.clear()
    monkeypatch.setattr(service, "COUNT_LIMIT", 4)
    body = client.get(TICKETS, headers=agent).json()
    assert (body["total"], body["total_capped"]) == (4, True)
    monkeypatch.setattr(service, "COUNT_LIMIT", 5)
    body = client.get(TICKETS, headers=agent).json()
    assert (body["total"], body["total_capped"]) == (4, False)


@pytest.mark.parametrize("params", [{"page_size": 201}, {"page_size": 0}, {"page": 0}])
def test_list_refuses_bad_pagination(world: World, params: dict[str, int]) -> None:
    r = world.client.get(TICKETS, params=params, headers=world.as_("agent1"))
    assert r.status_code == 422
    assert r.json()["field"] in params


# ---- detail --------------------------------------------------------------------------------


def test_detail_includes_assignments_and_events(world: World) -> None:
    r = world.get("agent1", "shared")
    assert r.status_code == 200, r.text
    t = r.json()
    assert [(a["unit"]["code"], a["role"], a["active"]) for a in t["assignments"]] == [
        ("S12", "lead", True),
        ("S11", "co_handler", True),
    ]
    assert t["lead_unit"] == {"code": "S12", "name": "东二街道"}
    assert [e["action"] for e in t["events"]] == ["receive"]


def test_the_list_does_not_carry_assignments_or_events(world: World) -> None:
    items = world.client.get(TICKETS, headers=world.as_("s11.handler")).json()["items"]
    assert items
    assert all(t["assignments"] is None and t["events"] is None for t in items)


def test_an_unknown_ticket_is_404(world: World) -> None:
    r = world.client.get(f"{TICKETS}/999999", headers=world.as_("agent1"))
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    assert r.json()["message"]


@pytest.mark.parametrize("ticket_id", [str(2**63), "99999999999999999999999", "0", "-1", "abc"])
def test_a_ticket_id_out_of_range_is_422_not_500(world: World, ticket_id: str) -> None:
    r = world.client.get(f"{TICKETS}/{ticket_id}", headers=world.as_("agent1"))
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "ticket_id"


def test_the_largest_bigint_id_is_simply_not_found(world: World) -> None:
    r = world.client.get(f"{TICKETS}/{2**63 - 1}", headers=world.as_("agent1"))
    assert r.status_code == 404


# ---- who sees what (SPEC §1) ---------------------------------------------------------------


def test_another_street_cannot_see_a_ticket_assigned_to_s11(world: World) -> None:
    assert world.get("s12.handler", "s11").status_code == 404
    assert world.get("s12.handler", "secret").status_code == 404
    listed = world.client.get(TICKETS, headers=world.as_("s12.handler")).json()
    assert [t["id"] for t in listed["items"]] == [world.tickets["shared"]]
    assert listed["total"] == 1


def test_the_assigned_street_sees_its_tickets_and_no_others(world: World) -> None:
    for name in ("s11", "shared", "secret"):
        assert world.get("s11.handler", name).status_code == 200, name
    assert world.get("s11.handler", "unassigned").status_code == 404
    listed = world.client.get(TICKETS, headers=world.as_("s11.handler")).json()
    assert {t["id"] for t in listed["items"]} == {
        world.tickets["s11"],
        world.tickets["shared"],
        world.tickets["secret"],
    }
    assert listed["total"] == 3


def test_a_company_sees_no_street_ticket(world: World) -> None:
    assert world.get("heat.handler", "s11").status_code == 404
    assert world.client.get(TICKETS, headers=world.as_("heat.handler")).json()["total"] == 0


def test_not_found_and_not_yours_answer_the_same(world: World) -> None:
    hidden = world.get("s12.handler", "s11")
    missing = world.client.get(f"{TICKETS}/999999", headers=world.as_("s12.handler"))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["error"] == missing.json()["error"]


def reveal(world: World, who: str, name: str) -> httpx.Response:
    return world.client.post(f"{TICKETS}/{world.tickets[name]}/reveal", headers=world.as_(who))


def test_reading_a_ticket_shows_the_requester_masked_even_to_the_lead(world: World) -> None:
    for who in ("s11.handler", "s11.admin", "agent1"):
        assert world.get(who, "s11").json()["requester"] == {
            "name": "张**",
            "phone": "138****8000",
            "confidential": False,
            "masked": True,
        }, who


def test_the_lead_unit_may_reveal_the_requester(world: World) -> None:
    for who in ("s11.handler", "s11.admin"):
        r = reveal(world, who, "s11")
        assert r.status_code == 200, r.text
        assert r.json() == {
            "name": "张三丰",
            "phone": "13800138000",
            "confidential": False,
            "masked": False,
        }


def test_every_reveal_is_logged_with_who_and_which_ticket(world: World) -> None:
    with world.db.read() as s:  # the world is shared: count only this test's reveals
        before = s.scalar(select(func.coalesce(func.max(AuditLog.id), 0)))
    reveal(world, "s11.handler", "s11")
    reveal(world, "agent1", "secret")
    with world.db.read() as s:
        rows = s.execute(
            select(AuditLog.username, AuditLog.ticket_id).where(
                AuditLog.action == "reveal", AuditLog.id > before
            )
        ).all()
    assert sorted(rows) == sorted(
        [("s11.handler", world.tickets["s11"]), ("agent1", world.tickets["secret"])]
    )


def test_a_co_handling_unit_may_not_reveal_the_requester(world: World) -> None:
    assert world.get("s11.handler", "shared").json()["requester"] == {
        "name": "王**",
        "phone": "137****7000",
        "confidential": False,
        "masked": True,
    }
    r = reveal(world, "s11.handler", "shared")
    assert r.status_code == 403
    assert "13700137000" not in r.text and "王小二" not in r.text
    assert reveal(world, "s12.handler", "shared").status_code == 200


def test_masking_holds_in_the_list_too(world: World) -> None:
    listed = world.client.get(TICKETS, headers=world.as_("s11.handler")).json()["items"]
    by_id = {t["id"]: t["requester"] for t in listed}
    assert by_id[world.tickets["s11"]]["phone"] == "138****8000"
    assert by_id[world.tickets["shared"]]["phone"] == "137****7000"
    assert by_id[world.tickets["secret"]]["phone"] is None


def test_a_district_sees_its_streets_tickets_but_masked(world: World) -> None:
    r = world.get("d1.handler", "s11")
    assert r.status_code == 200
    assert r.json()["requester"] == {
        "name": "张**",
        "phone": "138****8000",
        "confidential": False,
        "masked": True,
    }
    assert reveal(world, "d1.handler", "s11").status_code == 403
    listed = world.client.get(TICKETS, headers=world.as_("d1.handler")).json()
    assert listed["total"] == 3


def test_a_district_does_not_see_another_districts_streets(world: World) -> None:
    assert world.get("d2.handler", "s11").status_code == 404
    assert reveal(world, "d2.handler", "s11").status_code == 404
    assert world.client.get(TICKETS, headers=world.as_("d2.handler")).json()["total"] == 0


def test_a_confidential_requester_is_hidden_from_every_unit(world: World) -> None:
    for who in ("s11.handler", "s11.admin", "d1.handler"):
        assert world.get(who, "secret").json()["requester"] == {
            "name": None,
            "phone": None,
            "confidential": True,
            "masked": True,
        }, who
        r = reveal(world, who, "secret")
        assert r.status_code == 403, who
        assert "13900139000" not in r.text and "李四" not in r.text


@pytest.mark.parametrize("who", ["agent1", "dispatcher1", "supervisor1", "analyst1", "admin1"])
@pytest.mark.parametrize("name", ["s11", "secret", "unassigned"])
def test_the_service_centre_may_always_reveal_the_requester(
    world: World, who: str, name: str
) -> None:
    r = reveal(world, who, name)
    assert r.status_code == 200
    requester = r.json()
    assert requester["masked"] is False
    assert requester["name"] is not None and "*" not in requester["name"]
    assert requester["phone"] is not None and requester["phone"].isdigit()


def test_only_the_service_centre_may_search_by_phone(world: World) -> None:
    for who in ("s11.handler", "d1.handler"):
        r = world.client.get(TICKETS, params={"phone": "13800138000"}, headers=world.as_(who))
        assert r.status_code == 403, who
        assert r.json()["message"]
    found = world.client.get(
        TICKETS, params={"phone": "+86 138 0013 8000"}, headers=world.as_("agent1")
    ).json()
    assert [t["id"] for t in found["items"]] == [world.tickets["s11"]]
    r = world.client.get(TICKETS, params={"phone": "12345"}, headers=world.as_("agent1"))
    assert r.status_code == 422
    assert r.json()["field"] == "phone"


def test_list_filters_by_unit_within_what_the_reader_sees(world: World) -> None:
    def ids(who: str, unit: str) -> set[int]:
        r = world.client.get(TICKETS, params={"unit": unit}, headers=world.as_(who))
        assert r.status_code == 200, r.text
        return {t["id"] for t in r.json()["items"]}

    assert ids("agent1", "S12") == {world.tickets["shared"]}
    assert ids("agent1", "D1") == {world.tickets[n] for n in ("s11", "shared", "secret")}
    assert ids("s12.handler", "S11") == {world.tickets["shared"]}  # never more than it sees
    r = world.client.get(TICKETS, params={"unit": "NOPE"}, headers=world.as_("agent1"))
    assert r.status_code == 422


# ---- units and categories ------------------------------------------------------------------


def test_units_list_the_whole_active_tree(world: World) -> None:
    r = world.client.get("/api/v1/units", headers=world.as_("s11.handler"))
    assert r.status_code == 200
    units = {u["code"]: u for u in r.json()}
    assert len(units) == 13
    assert units["S11"]["parent_code"] == "D1"
    assert units["C"]["parent_code"] is None
    assert units["C-RX"]["function"] == "service_centre"
    assert units["C-RX"]["short_name"] == "热线中心"


@pytest.mark.parametrize(
    ("params", "codes"),
    [
        ({"kind": "street"}, {"S11", "S12", "S21"}),
        ({"kind": "company"}, {"C-RL"}),
        ({"parent": "D1"}, {"S11", "S12", "D1-JW"}),
        ({"kind": "street", "parent": "D1"}, {"S11", "S12"}),
        ({"parent": "NOPE"}, set()),
    ],
)
def test_units_filter_by_kind_and_parent(
    world: World, params: dict[str, str], codes: set[str]
) -> None:
    r = world.client.get("/api/v1/units", params=params, headers=world.as_("agent1"))
    assert r.status_code == 200, r.text
    assert {u["code"] for u in r.json()} == codes


def test_units_refuse_an_unknown_kind(world: World) -> None:
    r = world.client.get("/api/v1/units", params={"kind": "village"}, headers=world.as_("agent1"))
    assert r.status_code == 422
    assert r.json()["field"] == "kind"


def test_inactive_units_are_not_listed(
    client: TestClient, db: Database, agent: dict[str, str]
) -> None:
    with db.write() as s:
        s.execute(update(Unit).where(Unit.code == "D2-JW").values(active=False))
    codes = {u["code"] for u in client.get("/api/v1/units", headers=agent).json()}
    assert "D2-JW" not in codes
    assert len(codes) == 12


def test_categories_list_with_levels_and_effective_tiers(world: World) -> None:
    r = world.client.get("/api/v1/categories", headers=world.as_("s11.handler"))
    assert r.status_code == 200
    cats = {c["code"]: c for c in r.json()}
    assert len(cats) == 8
    assert cats["010101"]["full_name"] == "城乡建设 › 住房与物业 › 物业服务"
    assert cats["010101"]["parent_code"] == "0101"
    assert cats["010101"]["level"] == 3
    assert cats["0301"]["tier"] == "T24h"
    assert cats["010101"]["tier"] == "T7d"
    assert cats["02"]["seven_haves"] == ["学有所教"]


@pytest.mark.parametrize(
    ("level", "expected"),
    [(1, {"01", "02", "03"}), (2, {"0101", "0102", "0201", "0301"}), (3, {"010101"})],
)
def test_categories_filter_by_level(world: World, level: int, expected: set[str]) -> None:
    r = world.client.get("/api/v1/categories", params={"level": level}, headers=world.as_("agent1"))
    assert r.status_code == 200
    assert {c["code"] for c in r.json()} == expected


@pytest.mark.parametrize("level", ["0", "4", "one"])
def test_categories_refuse_a_bad_level(world: World, level: str) -> None:
    r = world.client.get("/api/v1/categories", params={"level": level}, headers=world.as_("agent1"))
    assert r.status_code == 422
    assert r.json()["field"] == "level"


# ---- follow-ups to the first review ---------------------------------------------------------


def test_a_replayed_create_also_points_at_the_ticket(client: TestClient) -> None:
    headers = {**auth(client, "agent1"), "Idempotency-Key": "replay-location"}
    first = client.post(TICKETS, json=new_ticket(), headers=headers)
    again = client.post(TICKETS, json=new_ticket(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (
        again.headers["Location"] == first.headers["Location"] == f"{TICKETS}/{first.json()['id']}"
    )


def test_a_mobile_written_with_86_in_front_is_accepted(client: TestClient) -> None:
    agent = auth(client, "agent1")
    made = create(client, agent, requester={"phone": "8613800138000"})
    shown = client.post(f"{TICKETS}/{made['id']}/reveal", headers=agent).json()
    assert shown["phone"] == "13800138000"


def test_invalid_json_names_the_body(client: TestClient) -> None:
    r = client.post(
        TICKETS,
        content=b'{"channel": "phone", "content": ',
        headers={**auth(client, "agent1"), "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "body"


def test_users_of_a_deactivated_unit_can_neither_sign_in_nor_use_their_token(
    client: TestClient, db: Database
) -> None:
    headers = auth(client, "s11.handler")
    assert client.get(TICKETS, headers=headers).status_code == 200
    with db.write() as s:
        s.execute(update(Unit).where(Unit.code == "S11").values(active=False))
    assert client.get(TICKETS, headers=headers).status_code == 401
    r = client.post("/api/v1/auth/token", json={"username": "s11.handler", "password": PASSWORD})
    assert r.status_code == 401


# ---- lists: every page in order, whichever way the database reads them ---------------------


@pytest.mark.parametrize("few", [True, False], ids=["sorted-whole", "index-order"])
def test_a_filtered_list_pages_in_order_for_every_sort_and_viewer(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch, few: bool
) -> None:
    """Statuses, creation, due and update times interleaved and tied, read page by page in
    every sort, by the centre and by a street: the pages are exactly the filtered rows in order,
    both when the list is short enough to be sorted whole and when it is read in index order
    (one index range per status for a status filter in creation order)."""
    import random

    from jiesu.auth.service import principal_of
    from jiesu.tickets import service
    from jiesu.tickets.service import TicketFilter, list_tickets

    monkeypatch.setattr(service, "SMALL_LIST", 10_000 if few else 0)
    agent = auth(client, "agent1")
    ids = [int(create(client, agent)["id"]) for _ in range(23)]
    rng = random.Random(5)
    statuses = ["received", "pending_dispatch", "dispatched", "closed"]
    start = datetime(2026, 3, 1, tzinfo=ZoneInfo("UTC"))
    row: dict[int, dict[str, Any]] = {}
    with db.write() as s:
        for i in ids:
            # Few distinct minutes on purpose: ties, which the id breaks.
            row[i] = {
                "status": rng.choice(statuses),
                "created_at": start + timedelta(minutes=rng.randrange(8)),
                "updated_at": start + timedelta(minutes=rng.randrange(8)),
                "due_at": rng.choice([None, start + timedelta(hours=rng.randrange(4))]),
            }
            s.execute(update(Ticket).where(Ticket.id == i).values(**row[i]))
    for i in ids[::2]:
        assign(db, i, "S11")
    add_user(db, "s11.lister", "handler", "S11")
    with db.read() as s:
        people = {
            name: principal_of(user, s.get(Unit, user.unit_id))
            for name in ("dispatcher1", "s11.lister")
            if (user := s.scalar(select(User).where(User.username == name))) is not None
        }
    assert len(people) == 2
    seen_by = {"dispatcher1": set(ids), "s11.lister": set(ids[::2])}
    far = start + timedelta(days=999)
    keys = {
        "created": lambda i: (row[i]["created_at"], i),
        "-created": lambda i: (row[i]["created_at"], i),
        "-updated": lambda i: (row[i]["updated_at"], i),
        "due": lambda i: (row[i]["due_at"] is None, row[i]["due_at"] or far, i),
    }
    wanted_sets = [None, ["received", "pending_dispatch"], ["closed"], statuses]
    for wanted in wanted_sets:
        for sort, key in keys.items():
            for name, actor in people.items():
                rows = [i for i in seen_by[name] if wanted is None or row[i]["status"] in wanted]
                expected = sorted(rows, key=key, reverse=sort.startswith("-"))
                got: list[int] = []
                with db.read() as s:
                    for page in range(1, 8):  # 23 rows, 4 a page: the last pages are empty
                        found, total = list_tickets(
                            TicketFilter(status=wanted, sort=sort),
                            actor=actor,
                            db_session=s,
                            page=page,
                            page_size=4,
                        )
                        assert total == len(expected)
                        got += [t.id for t in found]
                assert got == expected, (wanted, sort, name)


# ---- text search ------------------------------------------------------------------------------

SEARCH_TEXTS = [
    ("楼道堆放杂物", "3号楼2单元楼道里堆放了大量杂物，存在消防隐患。"),
    ("噪音扰民", "楼下饭店深夜噪音很大，严重扰民！"),
    ("A3区暖气不热", "A3区幸福家园暖气不热，室温只有十五度。"),
    ("咨询", "想咨询一下噪 音的投诉渠道"),  # 噪 音 with a space: the same bigram once spaces go
    ("停水", "小区停水两天了"),
]
SEARCH_TERMS = ["噪音", "楼道堆放", "a3区", "A3", "暖气不热", "停水两天", "杂物", "水",
                "噪音！", "噪 音", "扰民的", "不存在的词语", "十五度"]  # fmt: skip


def test_text_search_finds_exactly_the_tickets_containing_the_phrase(
    client: TestClient, db: Database
) -> None:
    """Title or content contains the phrase, case-insensitively, whatever the index does on
    PostgreSQL (bigrams, then the exact check): compared with Python's own substring test.
    A ticket's number finds it too."""
    from jiesu.auth.service import principal_of
    from jiesu.tickets.service import TicketFilter, list_tickets

    agent = auth(client, "agent1")
    made = {
        int(create(client, agent, title=title, content=content)["id"]): (title, content)
        for title, content in SEARCH_TEXTS
    }
    with db.read() as s:
        user = s.scalar(select(User).where(User.username == "dispatcher1"))
        assert user is not None
        centre = principal_of(user, s.get(Unit, user.unit_id))
        for term in SEARCH_TERMS:
            found, total = list_tickets(
                TicketFilter(text=term), actor=centre, db_session=s, page_size=50
            )
            expected = {
                i
                for i, (t, c) in made.items()
                if term.lower() in t.lower() or term.lower() in c.lower()
            }
            assert {t.id for t in found} == expected and total == len(expected), term
        some = next(iter(made))
        number = s.get(Ticket, some).number
        found, _ = list_tickets(TicketFilter(text=number), actor=centre, db_session=s)
        assert [t.id for t in found] == [some]


def test_text_search_on_postgresql_reads_the_bigram_index(pg_db: Database) -> None:
    """The query's expression must be the index's, or PostgreSQL scans: with sequential scans
    off, the plan of a two-character search names the index."""
    from sqlalchemy import literal_column, text

    from jiesu.tickets.models import TEXT_BIGRAMS, TEXT_INDEX

    with pg_db.read() as s:
        s.execute(text("SET LOCAL enable_seqscan = off"))
        query = select(Ticket.id).where(
            literal_column(TEXT_BIGRAMS).op("@>")(func.jiesu_bigrams("噪音"))
        )
        compiled = query.compile(pg_db.engine, compile_kwargs={"literal_binds": True})
        plan = "\n".join(r[0] for r in s.execute(text(f"EXPLAIN {compiled}")))
        assert TEXT_INDEX in plan, plan
        grams = s.scalar(select(func.jiesu_bigrams("A3区 噪音，扰民！噪音")))
        assert set(grams) == {"a3", "3区", "区噪", "噪音", "音扰", "扰民", "民噪"}
