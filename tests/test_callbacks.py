"""短信回访 on a database: the SMS gateway's replies (POST /api/v1/sms/inbound), the signed rating
link's page (/r/{token} → /portal/link/{token}) and the callback workbench's tabs.

Each order here is taken from intake to an audited reply through the API; its 回访邀请 is an
outbox row to the requester with notice `callback_invite` (written by the audit once that lands,
else by `invite` below, as the worker would find it).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from conftest import auth
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from test_auth import Console, app_of

from jiesu.auth.service import issue
from jiesu.callbacks import links
from jiesu.callbacks.models import SmsReply
from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.delivery.models import Delivery
from jiesu.org.models import User
from jiesu.tickets.models import Event, Outbox, Ticket

TICKETS = "/api/v1/tickets"
INBOUND = "/api/v1/sms/inbound"
PHONE = "13812345678"
OTHER = "13987654321"
REPLY = "已更换路灯灯泡，经现场核实照明恢复正常。"

pytestmark = pytest.mark.usefixtures("var_dir")


# ---- helpers -------------------------------------------------------------------------------


class Flow:
    """Orders through the API up to an audited reply; the gateway's token."""

    def __init__(self, client: TestClient, db: Database) -> None:
        self.client, self.db = client, db
        self.headers: dict[str, dict[str, str]] = {}
        self._gateway: dict[str, str] | None = None

    def api(self, username: str) -> dict[str, str]:
        if username not in self.headers:
            self.headers[username] = auth(self.client, username)
        return self.headers[username]

    def act(self, username: str, ticket_id: int, action: str, **body: Any) -> None:
        r = self.client.post(f"{TICKETS}/{ticket_id}/actions/{action}", json=body,
                             headers=self.api(username))  # fmt: skip
        assert r.status_code == 200, r.text

    def audited(self, phone: str | None, title: str = "路灯不亮", *, invited: bool = True) -> int:
        body: dict[str, Any] = {"channel": "phone", "title": title,
                                "content": f"{title}，小区门口的路灯坏了一个多月，请尽快修复。"}  # fmt: skip
        if phone:
            body["requester"] = {"name": "张先生", "phone": phone}
        r = self.client.post(TICKETS, json=body, headers=self.api("agent1"))
        assert r.status_code == 201, r.text
        ticket_id = int(r.json()["id"])
        self.act("dispatcher1", ticket_id, "dispatch", lead="S11")
        self.act("s11.handler", ticket_id, "accept")
        self.act("s11.handler", ticket_id, "contact", note="已电话联系")
        self.act("s11.handler", ticket_id, "reply", result="solved", content=REPLY)
        self.act("dispatcher1", ticket_id, "audit", passed=True)
        if invited:
            invite(self.db, ticket_id)
        else:  # as if the invitation had never been written
            with self.db.write() as s:
                for row in s.scalars(select(Outbox).where(Outbox.ticket_id == ticket_id)):
                    if (row.payload or {}).get("notice") == "callback_invite":
                        s.delete(row)
        return ticket_id

    def gateway(self) -> dict[str, str]:
        """A system token of the callback agent's account, scoped to channel sms."""
        if self._gateway is None:
            with self.db.write() as s:
                user = s.scalar(select(User).where(User.username == "callback1"))
                assert user is not None
                value, _ = issue(user, db_session=s, ttl=None, kind="system", name="短信平台",
                                 scope_channel="sms")  # fmt: skip
            self._gateway = {"Authorization": f"Bearer {value}"}
        return self._gateway

    def sms(self, text: str, *, msg_id: str, phone: str = PHONE, **more: Any) -> Any:
        body = {"id": msg_id, "from": phone, "text": text, **more}
        return self.client.post(INBOUND, json=body, headers=self.gateway())

    def ticket(self, ticket_id: int) -> Ticket:
        with self.db.read() as s:
            ticket = s.get(Ticket, ticket_id)
            assert ticket is not None
            return ticket

    def events(self, ticket_id: int, action: str | None = None) -> list[Event]:
        with self.db.read() as s:
            stmt = select(Event).where(Event.ticket_id == ticket_id).order_by(Event.seq)
            rows = list(s.scalars(stmt))
        return [e for e in rows if action is None or e.action == action]


def invite(db: Database, ticket_id: int, *, at: Any = None) -> None:
    """The 回访邀请 as the audit writes it (once per order: an existing one is kept)."""
    with db.write() as s:
        rows = s.scalars(select(Outbox).where(Outbox.ticket_id == ticket_id)).all()
        if any((r.payload or {}).get("notice") == "callback_invite" for r in rows):
            if at is not None:
                for r in rows:
                    if (r.payload or {}).get("notice") == "callback_invite":
                        r.created_at = at
            return
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None
        s.add(Outbox(ticket_id=ticket_id, recipient="requester", attempts=0,
                     created_at=at or utcnow(),
                     payload={"action": "audit", "notice": "callback_invite",
                              "number": ticket.number, "status": ticket.status,
                              "phone": ticket.requester_phone, "message": "回访邀请"}))  # fmt: skip


@pytest.fixture
def flow(client: TestClient, db: Database) -> Flow:
    return Flow(client, db)


def _replies(db: Database) -> list[SmsReply]:
    with db.read() as s:
        return list(s.scalars(select(SmsReply).order_by(SmsReply.id)))


# ---- the inbound SMS -----------------------------------------------------------------------


def test_a_reply_1_rates_the_invited_order_once_and_a_repeat_changes_nothing(flow: Flow) -> None:
    mine = flow.audited(PHONE)
    other = flow.audited(OTHER, "噪音扰民")
    r = flow.sms("1", msg_id="gw-1", phone="+86 138-1234-5678")
    assert r.status_code == 200, r.text
    number = flow.ticket(mine).number
    assert r.json()["result"] == "rated" and r.json()["number"] == number
    t = flow.ticket(mine)
    assert (t.status, t.solved, t.satisfaction) == ("evaluated", True, "satisfied")
    (rate,) = flow.events(mine, "rate")
    assert rate.data["via"] == "sms" and rate.data["solved"] is True
    assert flow.ticket(other).status == "audited"
    version, events = t.version, len(flow.events(mine))

    again = flow.sms("1", msg_id="gw-1")  # the gateway retries the same message
    assert again.status_code == 200 and again.json()["result"] == "duplicate"
    later = flow.sms("3 不满意", msg_id="gw-2")  # a second reply after the rating
    assert later.status_code == 200 and later.json()["result"] == "duplicate"
    assert later.json()["number"] == number
    t = flow.ticket(mine)
    assert (t.version, t.satisfaction, len(flow.events(mine))) == (version, "satisfied", events)
    assert [(x.gateway_id, x.result) for x in _replies(flow.db)] == [
        ("gw-1", "rated"), ("gw-2", "duplicate")]  # fmt: skip

    # words with the digit: the rating, and the citizen's own text kept as its note
    r = flow.sms("３　不满意，灯还是没解决", msg_id="gw-3", phone=OTHER)
    assert r.json()["result"] == "rated"
    t = flow.ticket(other)
    assert (t.solved, t.satisfaction) == (False, "dissatisfied")
    (rate,) = flow.events(other, "rate")
    assert rate.note == "３　不满意，灯还是没解决" and rate.data["via"] == "sms"


def test_ambiguous_unparseable_unknown_and_uninvited_replies_wait_for_an_agent(
    flow: Flow,
) -> None:
    first = flow.audited(PHONE, "路灯不亮")
    second = flow.audited(PHONE, "井盖缺失")
    lonely = flow.audited(OTHER, "噪音扰民")
    uninvited = flow.audited("13700001111", "占道经营", invited=False)
    cases = [
        ("1", PHONE, "q-1"),  # two orders await this phone's rating: which one?
        ("<b>路灯</b>什么时候修？", OTHER, "q-2"),  # not a rating (and markup, shown as text)
        ("1", "13600002222", "q-3"),  # a phone with no order
        ("2", "13700001111", "q-4"),  # its order's invitation never went out
    ]
    for text, phone, msg_id in cases:
        r = flow.sms(text, msg_id=msg_id, phone=phone)
        assert r.status_code == 200 and r.json()["result"] == "queued", (msg_id, r.text)
    for ticket_id in (first, second, lonely, uninvited):
        assert flow.ticket(ticket_id).status == "audited"
    stored = {x.gateway_id: x for x in _replies(flow.db)}
    assert sorted(stored["q-1"].candidates) == sorted([first, second])
    assert all(x.status == "queued" for x in stored.values())

    agent = Console(app_of(flow.client), "callback1")
    page = agent.get("/console/callbacks/replies")
    assert page.status_code == 200
    assert "&lt;b&gt;路灯&lt;/b&gt;什么时候修？" in page.text and "<b>路灯" not in page.text
    assert "无法识别" in page.text
    assert "138****5678" in page.text and PHONE not in page.text  # masked
    numbers = {flow.ticket(i).number for i in (first, second)}
    assert all(n in page.text for n in numbers)

    # the agent links the ambiguous one to the second order: its callback, reached
    q1 = stored["q-1"].id
    r = agent.post(f"/console/callbacks/replies/{q1}/link",
                   {"number": flow.ticket(second).number, "solved": "yes",
                    "satisfaction": "satisfied"})  # fmt: skip
    assert r.status_code == 303, r.text
    t = flow.ticket(second)
    assert (t.status, t.satisfaction) == ("evaluated", "satisfied")
    (evaluation,) = flow.events(second, "evaluate")
    assert evaluation.data["reached"] is True and "短信回复：1" in (evaluation.note or "")
    assert flow.ticket(first).status == "audited"
    # … and marks the question handled (a person calls back)
    r = agent.post(f"/console/callbacks/replies/{stored['q-2'].id}/handled", {"note": "已电话答复"})
    assert r.status_code == 303
    page = agent.get("/console/callbacks/replies")
    assert "什么时候修？" not in page.text and f'id="reply-{q1}"' not in page.text
    again = agent.post(f"/console/callbacks/replies/{q1}/handled", {})
    assert again.status_code == 409  # handled once
    missing = agent.post("/console/callbacks/replies/999999/handled", {})
    assert missing.status_code == 404


def test_the_inbound_endpoint_takes_a_form_and_never_answers_500(flow: Flow) -> None:
    mine = flow.audited(PHONE)
    form = {"id": "f-1", "from": PHONE, "text": "满意", "received_at": "2026-11-03T10:00:00+08:00"}
    r = flow.client.post(INBOUND, data=form, headers=flow.gateway())
    assert r.status_code == 200 and r.json()["result"] == "rated", r.text
    assert flow.ticket(mine).satisfaction == "satisfied"
    odd: list[tuple[Any, int]] = [
        ({"from": PHONE, "text": "1"}, 422),  # no id
        ({"id": "o-1", "text": "1"}, 422),  # no sender
        ({"id": "o-2", "from": "not a phone", "text": "1"}, 422),
        ({"id": "o-3", "from": PHONE, "text": 1}, 422),
        ({"id": "x" * 500, "from": PHONE, "text": "1"}, 422),
        ({"id": ["a"], "from": PHONE, "text": "1"}, 422),
        ([1, 2, 3], 422),
        ({"id": "o-4", "from": PHONE, "text": "\x00 1"}, 422),  # the app's guard: no NUL
        ({"id": "o-6", "from": PHONE, "text": "\x07\x1b 1", "received_at": "yesterday"}, 200),
        ({"id": "o-5", "from": PHONE, "text": "满意" * 400, "received_at": 5}, 200),
        ({"id": 12345, "from": 13812345678, "text": ""}, 200),
    ]
    for body, status in odd:
        r = flow.client.post(INBOUND, json=body, headers=flow.gateway())
        assert r.status_code == status, (body, r.text)
        if status == 422:
            assert r.json()["error"] == "invalid"
    r = flow.client.post(INBOUND, content=b"\xff{not json", headers=flow.gateway())
    assert r.status_code == 422
    assert flow.ticket(mine).version == flow.ticket(mine).version  # nothing else changed
    assert len(flow.events(mine, "rate")) == 1


def test_only_a_token_scoped_to_sms_may_post_replies_and_td_opts_out(flow: Flow) -> None:
    from jiesu.notices.service import opted_out

    body = {"id": "t-1", "from": PHONE, "text": "1"}
    login = flow.client.post(INBOUND, json=body, headers=flow.api("callback1"))
    assert login.status_code == 403 and "sms" in login.json()["message"]
    assert flow.client.post(INBOUND, json=body).status_code == 401
    assert flow.client.post(INBOUND, json=body, headers=flow.api("agent1")).status_code == 403
    assert _replies(flow.db) == []

    r = flow.sms("TD", msg_id="td-1")
    assert r.status_code == 200 and r.json()["result"] == "opted_out"
    with flow.db.read() as s:
        assert opted_out(PHONE, db_session=s)
    assert flow.sms("TD", msg_id="td-1").json()["result"] == "duplicate"


# ---- the rating link -----------------------------------------------------------------------


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_the_link_shows_the_checked_reply_and_rates_once(flow: Flow) -> None:
    mine = flow.audited(PHONE)
    url = links.rating_link(mine, now=utcnow())
    token = url.rsplit("/", 1)[1]
    browser = TestClient(app_of(flow.client), follow_redirects=False)
    r = browser.get(f"/r/{token}")
    assert r.status_code == 303 and r.headers["location"] == f"/portal/link/{token}"
    page = browser.get(f"/portal/link/{token}")
    assert page.status_code == 200
    number = flow.ticket(mine).number
    assert number in page.text and "路灯不亮" in page.text and REPLY in page.text
    assert "解决了吗" in page.text and "满意度" in page.text
    assert "张先生" not in page.text and PHONE not in page.text and "东一" not in page.text

    no_csrf = browser.post(f"/portal/link/{token}", data={"solved": "yes",
                                                          "satisfaction": "satisfied"})  # fmt: skip
    assert no_csrf.status_code == 403
    missing = browser.post(f"/portal/link/{token}", data={"solved": "yes",
                                                          "csrf_token": _csrf(page.text)})  # fmt: skip
    assert missing.status_code == 422 and "请选择满意度" in missing.text
    rating = {"solved": "no", "satisfaction": "basically_satisfied", "note": "灯修好了但偏暗",
              "csrf_token": _csrf(page.text)}  # fmt: skip
    done = browser.post(f"/portal/link/{token}", data=rating)
    assert done.status_code == 200 and "感谢您的评价" in done.text and "您已评价" in done.text
    t = flow.ticket(mine)
    assert (t.status, t.solved, t.satisfaction) == ("evaluated", False, "basically_satisfied")
    (rate,) = flow.events(mine, "rate")
    assert rate.data["via"] == "link" and rate.note == "灯修好了但偏暗"

    twice = browser.post(f"/portal/link/{token}", data={**rating, "satisfaction": "satisfied"})
    assert twice.status_code == 409 and "已评价" in twice.text
    assert flow.ticket(mine).satisfaction == "basically_satisfied"
    shown = browser.get(f"/portal/link/{token}")
    assert shown.status_code == 200 and "您已评价" in shown.text and "提交评价" not in shown.text


def test_an_expired_or_forged_link_gets_a_clear_page(flow: Flow) -> None:
    mine = flow.audited(PHONE)
    browser = TestClient(app_of(flow.client), follow_redirects=False)
    old = links.sign(mine, now=utcnow() - timedelta(days=links.LINK_DAYS + 1))
    r = browser.get(f"/portal/link/{old}")
    assert r.status_code == 410 and "链接已过期" in r.text and "查询码" in r.text
    forged = links.sign(mine, now=utcnow())[:-2] + "AA"
    for bad in (forged, "abc", "x" * 300):
        r = browser.get(f"/portal/link/{bad}")
        assert r.status_code == 404 and "链接无效" in r.text, bad
    page = browser.get("/portal/link/" + links.sign(mine, now=utcnow()))
    r = browser.post(f"/portal/link/{old}", data={"solved": "yes", "satisfaction": "satisfied",
                                                  "csrf_token": _csrf(page.text)})  # fmt: skip
    assert r.status_code == 410 and flow.ticket(mine).status == "audited"
    unknown = browser.get("/portal/link/" + links.sign(987654, now=utcnow()))
    assert unknown.status_code == 404


# ---- the workbench -------------------------------------------------------------------------


def test_the_workbench_shows_who_rated_by_sms_or_link_and_who_needs_a_call(flow: Flow) -> None:
    by_sms = flow.audited(PHONE, "路灯不亮")
    by_link = flow.audited(OTHER, "井盖缺失")
    no_phone = flow.audited(None, "树木倒伏", invited=False)
    waiting = flow.audited("13700001111", "占道经营")
    invite(flow.db, waiting, at=utcnow() - timedelta(hours=50))
    fresh = flow.audited("13600002222", "噪音扰民")
    refused = flow.audited("13500003333", "垃圾清运")
    with flow.db.write() as s:  # the gateway refused its invitation until it went dead
        row = next(r for r in s.scalars(select(Outbox).where(Outbox.ticket_id == refused))
                   if r.payload.get("notice") == "callback_invite")  # fmt: skip
        s.add(Delivery(outbox_id=row.id, ticket_id=refused, channel="sms", key="13500003333",
                       address="13500003333", body={}, status="dead", attempts=5,
                       next_at=utcnow()))  # fmt: skip
    assert flow.sms("3 不满意，灯还是不亮", msg_id="w-1").json()["result"] == "rated"
    with flow.db.write() as s:
        from jiesu.callbacks.service import rate_by_link

        rate_by_link(by_link, {"solved": True, "satisfaction": "satisfied"}, db_session=s,
                     now=utcnow())  # fmt: skip

    agent = Console(app_of(flow.client), "callback1")
    bench = agent.get("/console/callbacks")
    assert bench.status_code == 200
    for label in ("待回访", "需电话回访", "短信待处理", "短信/链接已评价"):
        assert label in bench.text
    rated = agent.get("/console/callbacks/rated")
    assert rated.status_code == 200
    assert flow.ticket(by_sms).number in rated.text and "短信回复" in rated.text
    assert "3 不满意，灯还是不亮" in rated.text
    assert flow.ticket(by_link).number in rated.text and "短信链接" in rated.text
    calls = agent.get("/console/callbacks/calls")
    assert calls.status_code == 200
    assert flow.ticket(no_phone).number in calls.text and "无联系电话" in calls.text
    assert flow.ticket(waiting).number in calls.text and "小时未评价" in calls.text
    assert flow.ticket(fresh).number not in calls.text  # invited just now: give it time
    assert flow.ticket(refused).number in calls.text and "未能送达" in calls.text
    assert flow.ticket(by_sms).number not in calls.text
    # the evaluate flow still works from the ticket page for the order that needs a call
    with flow.db.read() as s:
        before = s.scalar(select(func.count()).select_from(Event).where(Event.ticket_id == waiting))
    r = flow.client.post(f"{TICKETS}/{waiting}/actions/evaluate",
                         json={"reached": True, "solved": True, "satisfaction": "satisfied"},
                         headers=flow.api("callback1"))  # fmt: skip
    assert r.status_code == 200, r.text
    assert len(flow.events(waiting)) == (before or 0) + 1
    assert flow.ticket(waiting).number not in agent.get("/console/callbacks/calls").text
