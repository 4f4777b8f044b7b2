"""Acceptance of 短信回访 end to end: an order goes through to an audited reply; the worker's
delivery round (`run_deliveries`) sends the 回访邀请 SMS to a local HTTP SMS gateway
(tests/sms_gateway.py); the citizen's answer "1" comes back through the gateway to
POST /api/v1/sms/inbound and rates the right order once; the same reply again changes nothing.
The invitation's link opens the rating page of the same order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sms_gateway import FakeSmsGateway
from test_callbacks import INBOUND, OTHER, PHONE, Flow

from jiesu.callbacks import links
from jiesu.db.engine import Database
from jiesu.delivery.service import run_deliveries
from jiesu.notices import sms as sms_module
from jiesu.notices.sms import SmsChannel
from jiesu.tickets.models import Event

# A working day at noon in the city (in the future, so every order is older): no quiet hours.
NOON = datetime(2030, 3, 4, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


@pytest.fixture(autouse=True)
def _notices_never_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests deliver in 2030 the notices of orders made today (so every order is older
    than the moment): the 72-hour staleness rule has its own test in test_notices.py."""
    monkeypatch.setattr(sms_module, "STALE_AFTER", timedelta(days=36500))


PUBLIC = "https://12345.example.gov.cn"

pytestmark = pytest.mark.usefixtures("var_dir")


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSmsGateway]:
    with FakeSmsGateway() as gw:
        monkeypatch.setenv("JIESU_SMS_GATEWAY_URL", gw.url)
        monkeypatch.setenv("JIESU_SMS_GATEWAY_KEY", gw.key)
        monkeypatch.setenv("JIESU_SMS_TIMEOUT", "2")
        monkeypatch.setenv("JIESU_PUBLIC_URL", PUBLIC)
        yield gw


def test_an_sms_reply_1_rates_the_right_order_once(
    client: TestClient, db: Database, gateway: FakeSmsGateway
) -> None:
    flow = Flow(client, db)
    mine = flow.audited(PHONE, "路灯不亮")
    other = flow.audited(OTHER, "噪音扰民")  # another citizen's order, invited too

    run_deliveries(db, now=NOON, channels=[SmsChannel()])
    to_me = [m for m in gateway.messages if m["to"] == PHONE]
    invitations = [m for m in to_me if f"{PUBLIC}/r/" in m["text"]]
    assert len(invitations) == 1, [m["text"] for m in to_me]
    text = invitations[0]["text"]
    number = flow.ticket(mine).number
    assert number in text
    for choice in ("1满意", "2基本满意", "3不满意"):
        assert choice in text.replace(" ", ""), text
    found = re.search(re.escape(PUBLIC) + r"/r/([A-Za-z0-9_-]+)", text)
    assert found, text
    token = found.group(1)
    assert links.verify(token, now=NOON) == mine

    # the invitation's link opens the rating page of that order (no login, no code)
    page = client.get(f"/r/{token}")
    assert page.status_code == 200 and number in page.text and "提交评价" in page.text

    # the citizen answers "1": the gateway posts it to jiesu
    r = gateway.inbound(client, INBOUND, phone=PHONE, text="1", msg_id="up-1",
                        headers=flow.gateway())  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"result": "rated", "reply": r.json()["reply"], "number": number}
    rated = flow.ticket(mine)
    assert (rated.status, rated.solved, rated.satisfaction) == ("evaluated", True, "satisfied")
    assert flow.ticket(other).status == "audited"

    # the gateway delivers the same message again, and the citizen answers once more
    again = gateway.inbound(client, INBOUND, phone=PHONE, text="1", msg_id="up-1",
                            headers=flow.gateway())  # fmt: skip
    assert again.status_code == 200 and again.json()["result"] == "duplicate"
    more = gateway.inbound(client, INBOUND, phone=PHONE, text="3", msg_id="up-2",
                           headers=flow.gateway())  # fmt: skip
    assert more.status_code == 200 and more.json()["result"] == "duplicate"
    after = flow.ticket(mine)
    assert (after.version, after.satisfaction) == (rated.version, "satisfied")
    rates = [e for e in flow.events(mine) if e.action in ("rate", "evaluate")]
    assert len(rates) == 1 and isinstance(rates[0], Event) and rates[0].data["via"] == "sms"
