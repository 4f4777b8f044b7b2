"""The call centre (issue 15, Deliver §3): the telephony's API, the agent's pop over Server-Sent
Events, the caller's history (open orders first) and the call id kept with the order.

Every test runs on SQLite and PostgreSQL (the `client` fixture). The telephony signs in with a
system token scoped to channel `phone`, issued by the admin for a service-centre account.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import PASSWORD, auth, principal
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from test_auth import Console, app_of

from jiesu.auth.passwords import hash_password
from jiesu.calls.models import Call
from jiesu.calls.service import FINISHED, caller_history
from jiesu.db.engine import Database
from jiesu.org.models import Unit, User
from jiesu.tickets.models import Ticket
from jiesu.web.app import create_app

CALLS = "/api/v1/calls"
CALLER = "13812345678"


def add_user(db: Database, username: str, role: str = "agent", unit: str = "C-RX") -> None:
    with db.write() as s:
        unit_id = s.scalar(select(Unit.id).where(Unit.code == unit))
        s.add(User(username=username, name=f"测试{username}", role=role, unit_id=unit_id,
                   password_hash=hash_password(PASSWORD)))  # fmt: skip


def system_token(
    client: TestClient, username: str, channel: str | None = "phone"
) -> dict[str, str]:
    r = client.post(
        "/api/v1/admin/tokens",
        json={"username": username, "name": "话务系统", "scope_channel": channel},
        headers=auth(client, "admin1"),
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.fixture
def telephony(client: TestClient, db: Database) -> dict[str, str]:
    """The telephony's headers: a system token (channel phone) of its own agent account."""
    add_user(db, "pbx")
    return system_token(client, "pbx")


def incoming(call_id: str = "c-1001", **more: Any) -> dict[str, Any]:
    return {"call_id": call_id, "caller": CALLER, "called": "12345", "agent": "agent1", **more}


def calls_in_db(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Call)) or 0)


def events(console: Console, **params: Any) -> list[dict[str, Any]]:
    """The `call` events the agent's stream answers now (`wait=0`: what is pending, then ends)."""
    headers = params.pop("headers", {})
    r = console.get("/console/calls/events", params={"wait": 0, **params}, headers=headers)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith("text/event-stream")
    found = []
    for block in r.text.replace("\r\n", "\n").split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if lines.get("event") == "call":
            found.append({"id": lines["id"], **json.loads(lines["data"])})
    return found


def create(client: TestClient, headers: dict[str, str], **more: Any) -> dict[str, Any]:
    body = {"channel": "phone", "content": "小区路灯坏了一周没人修", "requester": {"phone": CALLER}}
    r = client.post("/api/v1/tickets", json={**body, **more}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


# ---- the telephony's API -------------------------------------------------------------------


def test_a_call_is_recorded_once_per_call_id(
    client: TestClient, db: Database, telephony: dict[str, str]
) -> None:
    first = client.post(CALLS, json=incoming(started_at="2026-11-18T10:00:00+08:00"),
                        headers=telephony)  # fmt: skip
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["call_id"] == "c-1001" and body["caller"] == CALLER and body["agent"] == "agent1"
    assert datetime.fromisoformat(body["started_at"]) == datetime(2026, 11, 18, 2, tzinfo=UTC)
    assert body["ticket_id"] is None and body["recording_url"] is None

    again = client.post(CALLS, json=incoming(started_at="2026-11-18T10:00:00+08:00"),
                        headers=telephony)  # fmt: skip
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == body
    assert calls_in_db(db) == 1

    reused = client.post(CALLS, json=incoming(caller="13900001111"), headers=telephony)
    assert reused.status_code == 409
    assert reused.json()["field"] == "call_id"
    assert calls_in_db(db) == 1


def test_only_a_system_token_scoped_to_phone_may_report_calls(
    client: TestClient, db: Database
) -> None:
    add_user(db, "pbx")
    web_token = system_token(client, "pbx", channel="web")
    for headers, status in (
        ({}, 401),
        (auth(client, "agent1"), 403),  # an agent's own sign-in is not the telephony
        (auth(client, "s11.handler"), 403),  # the role holds no calls.telephony
        (web_token, 403),
    ):
        r = client.post(CALLS, json=incoming(), headers=headers)
        assert r.status_code == status, (headers, r.text)
        if status == 403:
            assert r.json()["error"] == "forbidden"
    assert calls_in_db(db) == 0


BAD_CALLS = [  # (what changes in a good call, the field named, words of the message)
    ({"caller": "12ab"}, "caller", "主叫号码"),
    ({"agent": None}, "agent", "坐席"),
    ({"agent": "nobody"}, "agent", "坐席「nobody」"),
    ({"call_id": "通话/1"}, "call_id", "通话编号"),
    ({"started_at": "2026-11-18 10:00"}, "started_at", "来电时间"),
    ({"extra": 1}, "extra", "不接受"),
]


def test_bad_calls_are_refused_in_chinese_naming_the_field(
    client: TestClient, db: Database, telephony: dict[str, str]
) -> None:
    for change, field, words in BAD_CALLS:
        body = {k: v for k, v in {**incoming(), **change}.items() if v is not None}
        r = client.post(CALLS, json=body, headers=telephony)
        assert r.status_code == 422, (change, r.text)
        assert r.json()["field"] == field, (change, r.json())
        assert words in r.json()["message"], (change, r.json())
    assert calls_in_db(db) == 0


def test_recording_and_end_of_an_unknown_call_answer_404(
    client: TestClient, telephony: dict[str, str]
) -> None:
    for path, body in (("recording", {"url": "https://rec.example/1.mp3"}), ("end", {})):
        r = client.post(f"{CALLS}/no-such-call/{path}", json=body, headers=telephony)
        assert r.status_code == 404, r.text
        assert "没有这个通话编号" in r.json()["message"]


def test_a_recording_link_is_attached_after_the_order_and_shows_on_the_ticket_page(
    client: TestClient, db: Database, telephony: dict[str, str]
) -> None:
    assert client.post(CALLS, json=incoming(), headers=telephony).status_code == 201
    ticket = create(client, auth(client, "agent1"), call_id="c-1001")
    bad = client.post(f"{CALLS}/c-1001/recording", json={"url": "javascript:alert(1)"},
                      headers=telephony)  # fmt: skip
    assert bad.status_code == 422 and "录音地址" in bad.json()["message"]
    url = "https://rec.example/2026/c-1001.mp3"
    r = client.post(f"{CALLS}/c-1001/recording", json={"url": url}, headers=telephony)
    assert r.status_code == 200, r.text
    assert r.json()["ticket_id"] == ticket["id"]
    assert r.json()["ticket_number"] == ticket["number"]
    assert r.json()["recording_url"] == url
    ended = client.post(f"{CALLS}/c-1001/end", json={"ended_at": "2099-01-01T00:00:00Z"},
                        headers=telephony)  # fmt: skip
    assert ended.status_code == 200
    assert datetime.fromisoformat(ended.json()["ended_at"]) == datetime(2099, 1, 1, tzinfo=UTC)
    later = client.post(f"{CALLS}/c-1001/end", headers=telephony)  # a retry changes nothing
    assert later.json()["ended_at"] == ended.json()["ended_at"]

    page = Console(app_of(client), "agent1").get(f"/console/tickets/{ticket['id']}")
    assert page.status_code == 200
    assert "来电记录" in page.text and "c-1001" in page.text
    assert f'href="{url}"' in page.text
    # The lead unit sees the call, not the recording (the caller's voice) nor the number.
    r = client.post(f"/api/v1/tickets/{ticket['id']}/actions/dispatch", json={"lead": "S11"},
                    headers=auth(client, "dispatcher1"))  # fmt: skip
    assert r.status_code == 200, r.text
    unit = Console(app_of(client), "s11.handler").get(f"/console/tickets/{ticket['id']}").text
    assert "来电记录" in unit and "c-1001" in unit and "有录音" in unit
    assert url not in unit and CALLER not in unit


def test_api_intake_keeps_the_call_and_refuses_an_unknown_or_taken_one(
    client: TestClient, db: Database, telephony: dict[str, str]
) -> None:
    agent = auth(client, "agent1")
    assert client.post(CALLS, json=incoming(), headers=telephony).status_code == 201
    ticket = create(client, agent, call_id="c-1001")
    with db.read() as s:
        call = s.scalar(select(Call).where(Call.call_id == "c-1001"))
        assert call is not None and call.ticket_id == ticket["id"]
        tickets = s.scalar(select(func.count()).select_from(Ticket))

    unknown = client.post(
        "/api/v1/tickets",
        json={"channel": "phone", "content": "又一件事", "call_id": "c-404"},
        headers=agent,
    )
    assert unknown.status_code == 422 and unknown.json()["field"] == "call_id"
    taken = client.post(
        "/api/v1/tickets",
        json={"channel": "phone", "content": "另一件事", "call_id": "c-1001"},
        headers=agent,
    )
    assert taken.status_code == 409 and taken.json()["field"] == "call_id"
    with db.read() as s:  # nothing half-written
        assert s.scalar(select(func.count()).select_from(Ticket)) == tickets


# ---- the pop -------------------------------------------------------------------------------


def test_the_stream_pops_a_call_to_its_own_agent_only(
    client: TestClient, db: Database, telephony: dict[str, str]
) -> None:
    add_user(db, "agent2")
    app = app_of(client)
    mine, other = Console(app, "agent1"), Console(app, "agent2")
    earlier = create(client, auth(client, "agent1"), content="上次反映的噪音问题")
    assert events(mine) == [] and events(other) == []

    assert client.post(CALLS, json=incoming(), headers=telephony).status_code == 201
    popped = events(mine)
    assert [e["call_id"] for e in popped] == ["c-1001"]
    assert popped[0]["caller"] == CALLER and popped[0]["called"] == "12345"
    assert [h["number"] for h in popped[0]["history"]] == [earlier["number"]]
    assert popped[0]["history"][0]["open"] is True
    assert events(other) == [], "another agent's console never sees the call"

    # The browser's reconnect carries Last-Event-ID: nothing is popped twice.
    assert events(mine, headers={"Last-Event-ID": str(popped[0]["id"])}) == []
    assert events(mine, after=popped[0]["id"]) == []
    # A call taken as an order pops no more.
    create(client, auth(client, "agent1"), call_id="c-1001")
    assert events(mine) == []


def test_the_intake_page_listens_from_the_newest_call_and_opens_a_popped_one(
    client: TestClient, db: Database, telephony: dict[str, str]
) -> None:
    add_user(db, "agent2")
    app = app_of(client)
    agent = Console(app, "agent1")
    page = agent.get("/console/intake")
    assert 'data-calls-after="0"' in page.text and "/static/calls.js" in page.text
    assert client.post(CALLS, json=incoming(), headers=telephony).status_code == 201
    with db.read() as s:
        row_id = s.scalar(select(Call.id).where(Call.call_id == "c-1001"))
    assert f'data-calls-after="{row_id}"' in agent.get("/console/intake").text

    opened = agent.get("/console/intake", params={"call": "c-1001"}).text
    assert f'value="{CALLER}"' in opened  # the caller's number prefilled
    assert 'name="call_id" id="call_id" value="c-1001"' in opened
    # Another agent's address for the same call opens an empty form.
    other = Console(app, "agent2").get("/console/intake", params={"call": "c-1001"}).text
    assert 'id="call_id" value=""' in other and CALLER not in other


def test_the_console_intake_keeps_the_call_id(
    client: TestClient, db: Database, telephony: dict[str, str]
) -> None:
    add_user(db, "agent2")
    assert client.post(CALLS, json=incoming(), headers=telephony).status_code == 201
    form = {"phone": CALLER, "channel": "phone", "content": "楼道灯不亮", "then": "keep",
            "call_id": "c-1001"}  # fmt: skip
    refused = Console(app_of(client), "agent2").post("/console/intake", form)
    assert refused.status_code == 422 and "不是转给您的" in refused.text

    r = Console(app_of(client), "agent1").post("/console/intake", form)
    assert r.status_code == 303, r.text[:500]
    ticket_id = int(r.headers["location"].split("/")[-1].split("?")[0])
    with db.read() as s:
        call = s.scalar(select(Call).where(Call.call_id == "c-1001"))
        assert call is not None and call.ticket_id == ticket_id
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1


def test_the_callers_history_lists_open_orders_first_then_the_latest_closed(
    client: TestClient, db: Database
) -> None:
    agent = auth(client, "agent1")
    made = [create(client, agent, content=f"第{i}次来电反映的问题") for i in range(4)]
    for done in (made[1], made[3]):  # answered on the call: finished for the caller
        r = client.post(
            f"/api/v1/tickets/{done['id']}/actions/answer",
            json={"answer": "已当场答复"},
            headers=agent,
        )
        assert r.status_code == 200, r.text
    create(client, agent, content="别人的事", requester={"phone": "13900002222"})
    with db.read() as s:
        rows = caller_history(CALLER, actor=principal(db), db_session=s)
        order = [(t.number, t.status) for t in rows]
    newest_first = [t["number"] for t in reversed(made)]
    expected_open = [n for n in newest_first if n in (made[0]["number"], made[2]["number"])]
    expected_done = [n for n in newest_first if n in (made[1]["number"], made[3]["number"])]
    assert [n for n, _ in order] == expected_open + expected_done
    assert [st in FINISHED for _, st in order] == [False, False, True, True]

    # The console's history box (typed number or a pop) lists them in that order too.
    html = Console(app_of(client), "agent1").get(
        "/console/intake/history", params={"phone": CALLER}
    )
    positions = [html.text.index(n) for n in expected_open + expected_done]
    assert positions == sorted(positions)


def test_a_call_taken_in_by_one_app_process_pops_on_another(
    client: TestClient, db: Database, telephony: dict[str, str]
) -> None:
    """`jiesu serve --workers N`: the telephony's request and the agent's stream may land in two
    processes; the stream reads the table, so no broker between them is needed."""
    other_db = Database(db.engine.url.render_as_string(hide_password=False))
    try:
        with TestClient(create_app(other_db), raise_server_exceptions=False) as other_process:
            agent = Console(app_of(other_process), "agent1")
            assert events(agent) == []
            assert client.post(CALLS, json=incoming(), headers=telephony).status_code == 201
            assert [e["call_id"] for e in events(agent)] == ["c-1001"]
    finally:
        other_db.dispose()
