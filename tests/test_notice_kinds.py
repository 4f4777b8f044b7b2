"""The notices a change owes (`tickets/flows.py`): every outbox row names its `notice` kind; an
audit that passes owes the requester the 办结答复 and the 回访邀请; the closing notice does not
repeat a reply already sent; intake issues one tracking code per order with a requester phone
and tells it in the 受理回执 only."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from conftest import auth
from fastapi.testclient import TestClient
from sqlalchemy import select

from jiesu.db.engine import Database
from jiesu.portal.service import find_tracked
from jiesu.tickets.models import Event, Outbox, Ticket

TICKETS = "/api/v1/tickets"
PHONE = "13800138000"
REPLY = "已更换楼道灯，并电话回访确认照明恢复"


class Desk:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.headers: dict[str, dict[str, str]] = {}

    def ok(self, username: str, ticket: int, action: str, **body: Any) -> dict[str, Any]:
        if username not in self.headers:
            self.headers[username] = auth(self.client, username)
        r = self.client.post(f"{TICKETS}/{ticket}/actions/{action}", json=body,
                             headers=self.headers[username])  # fmt: skip
        assert r.status_code == 200, r.text
        return dict(r.json())

    def new(self, phone: str | None = PHONE, **fields: Any) -> dict[str, Any]:
        requester = {"name": "张三", "phone": phone} if phone else {}
        r = self.client.post(
            TICKETS,
            json={"channel": "phone", "content": "小区楼道灯坏了一个月没人修，请尽快处理",
                  "requester": requester, **fields},
            headers=auth(self.client, "agent1"),
        )  # fmt: skip
        assert r.status_code == 201, r.text
        return dict(r.json())


@pytest.fixture
def desk(client: TestClient) -> Desk:
    return Desk(client)


def owed(db: Database, ticket: int) -> list[tuple[str, str, str | None]]:
    """(recipient, notice, the event's action or the timer's kind) in the order written."""
    with db.read() as s:
        rows = s.execute(
            select(Outbox.recipient, Outbox.payload, Event.action)
            .outerjoin(Event, Event.id == Outbox.event_id)
            .where(Outbox.ticket_id == ticket)
            .order_by(Outbox.id)
        ).all()
    return [(r, p["notice"], a) for r, p, a in rows]


def requester_payloads(db: Database, ticket: int) -> list[dict[str, Any]]:
    with db.read() as s:
        return list(
            s.scalars(
                select(Outbox.payload)
                .where(Outbox.ticket_id == ticket, Outbox.recipient == "requester")
                .order_by(Outbox.id)
            )
        )


def to_reply(desk: Desk, t: int) -> None:
    desk.ok("dispatcher1", t, "dispatch", lead="S11")
    desk.ok("s11.handler", t, "accept")
    desk.ok("s11.handler", t, "contact", note="已电话联系诉求人")
    desk.ok("s11.handler", t, "reply", result="solved", content=REPLY)


def test_every_notice_of_the_main_path_names_its_kind(db: Database, desk: Desk) -> None:
    t = desk.new()["id"]
    to_reply(desk, t)
    desk.ok("dispatcher1", t, "audit", passed=False, note="未说明处理过程")
    desk.ok("s11.handler", t, "reply", result="solved", content=REPLY)
    desk.ok("dispatcher1", t, "audit", passed=True)
    desk.ok("callback1", t, "evaluate", reached=True, solved=True, satisfaction="satisfied")
    desk.ok("callback1", t, "close")
    assert owed(db, t) == [
        ("requester", "receipt", "receive"),
        ("unit", "dispatch", "dispatch"),
        ("centre", "reply", "reply"),  # the unit's reply, to be checked
        ("unit", "audit", "audit"),  # sent back: the unit only
        ("centre", "reply", "reply"),
        ("requester", "reply", "audit"),  # passed: 办结答复 and 回访邀请 …
        ("requester", "callback_invite", "audit"),
        ("unit", "audit", "audit"),  # … and the unit as before
        ("requester", "close", "close"),
    ]


def test_the_reply_goes_with_the_audit_and_the_closing_notice_stays_short(
    db: Database, desk: Desk
) -> None:
    t = desk.new()["id"]
    to_reply(desk, t)
    desk.ok("dispatcher1", t, "audit", passed=True)
    desk.ok("callback1", t, "evaluate", reached=True, solved=True, satisfaction="satisfied")
    desk.ok("callback1", t, "close")
    receipt, reply, invite, close = requester_payloads(db, t)
    assert (reply["notice"], reply["reply"], reply["phone"]) == ("reply", REPLY, PHONE)
    assert reply["reply_from"] == receipt["number"]
    assert invite["notice"] == "callback_invite" and "reply" not in invite
    assert "评价" in invite["message"] and invite["phone"] == PHONE
    assert close["notice"] == "close" and "reply" not in close


def test_a_direct_answer_and_a_rejection_are_answer_notices(db: Database, desk: Desk) -> None:
    answered = desk.new()["id"]
    desk.ok("agent1", answered, "answer", answer="您咨询的业务可在政务服务网办理")
    rejected = desk.new()["id"]
    desk.ok(
        "agent1", rejected, "reject", reason="litigation", channel_advice="请依法向人民法院起诉"
    )
    answer = requester_payloads(db, answered)[-1]
    assert (answer["notice"], answer["reply"]) == ("answer", "您咨询的业务可在政务服务网办理")
    assert requester_payloads(db, rejected)[-1]["notice"] == "answer"
    # Closing after a direct answer (no audit) still carries it.
    desk.ok("agent1", answered, "close")
    close = requester_payloads(db, answered)[-1]
    assert (close["notice"], close["reply"]) == ("close", "您咨询的业务可在政务服务网办理")


def test_intake_issues_a_tracking_code_told_only_in_the_receipt(
    db: Database, desk: Desk, client: TestClient
) -> None:
    body = desk.new()
    (receipt,) = requester_payloads(db, body["id"])
    code = receipt["tracking_code"]
    assert receipt["notice"] == "receipt" and re.fullmatch(r"[A-Z2-9]{8}", code)
    assert code not in str(body)  # the API's answer to the agent does not carry it
    got = client.get(f"{TICKETS}/{body['id']}", headers=auth(client, "dispatcher1")).text
    assert code not in got
    with db.write() as s:
        ticket = s.get_one(Ticket, body["id"])
        assert ticket.tracking_hash == hashlib.sha256(code.encode()).hexdigest()
        found, error = find_tracked(body["number"], code.lower(), ip="192.0.2.1", db_session=s)
        assert error is None and found is not None and found.id == body["id"]
    # Each order its own code; none without a phone to send it to.
    other = desk.new()["id"]
    assert requester_payloads(db, other)[0]["tracking_code"] != code
    silent = desk.new(phone=None)["id"]
    assert requester_payloads(db, silent) == []
    with db.read() as s:
        assert s.get_one(Ticket, silent).tracking_hash is None


def test_the_portal_code_is_the_one_in_the_receipt(db: Database, client: TestClient) -> None:
    page = client.get("/portal/submit")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    r = client.post(
        "/portal/submit",
        data={"request_type": "complain", "content": "小区门口的路灯坏了一个多月，晚上很不安全",
              "title": "路灯不亮", "name": "张先生", "phone": PHONE,
              "csrf_token": token.group(1)},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    number = re.search(r'id="number">(\d+)<', r.text)
    shown = re.search(r'id="code"[^>]*>([A-Z0-9]{8})<', r.text)
    assert number and shown
    with db.read() as s:
        ticket = s.scalar(select(Ticket).where(Ticket.number == number.group(1)))
        assert ticket is not None
        assert ticket.tracking_hash == hashlib.sha256(shown.group(1).encode()).hexdigest()
    (receipt,) = requester_payloads(db, ticket.id)
    assert receipt["tracking_code"] == shown.group(1)
