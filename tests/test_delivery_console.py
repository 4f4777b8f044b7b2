"""The admin's 推送订阅 and 投递记录 pages and the webhooks API: rendered for the admin, refused
to everyone else; the secret shown once; redelivery from the page; addresses masked."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from conftest import auth
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_auth import Console, app_of
from test_delivery import PHONE, new_ticket, quick

from jiesu.access.policy import Principal
from jiesu.db.engine import Database
from jiesu.delivery.models import Delivery, WebhookSubscriber
from jiesu.delivery.service import fan_out, run_deliveries
from jiesu.delivery.views import shown_address


def test_the_admin_creates_a_subscriber_sees_the_secret_once_and_the_log(
    db: Database, client: TestClient
) -> None:
    admin = Console(app_of(client), "admin1")
    page = admin.get("/console/admin/webhooks")
    assert page.status_code == 200 and "新建推送订阅" in page.text and "推送订阅" in page.text
    r = admin.post("/console/admin/webhooks", {"name": "东一街道网格系统", "url": "http://127.0.0.1:1/h",
                   "event_types": "ticket.dispatch", "event_types_extra": "deadline.overdue",
                   "unit": "东一街道 S11", "active": "on"})  # fmt: skip
    assert r.status_code == 200, r.text[:500]
    shown = re.search(r"whsec_[A-Za-z0-9+/=]+", r.text)
    with db.read() as s:
        sub = s.scalars(select(WebhookSubscriber)).one()
    assert shown and shown.group(0) == sub.secret
    assert sub.event_types == ["deadline.overdue", "ticket.dispatch"] and sub.unit_id
    again = admin.get("/console/admin/webhooks")
    assert sub.secret not in again.text and "东一街道网格系统" in again.text
    row = again.text.split('id="webhooks"', 1)[1].split("<details", 1)[0]
    assert "超期、派单" in row and "东一街道" in row and "ticket.dispatch" not in row
    rotated = admin.post(f"/console/admin/webhooks/{sub.id}/rotate")
    with db.read() as s:
        new_secret = s.get(WebhookSubscriber, sub.id).secret  # type: ignore[union-attr]
    assert new_secret != sub.secret and new_secret in rotated.text
    bad = admin.post("/console/admin/webhooks", {"name": "x", "url": "ftp://nowhere"})
    assert bad.status_code == 422 and "http(s)" in bad.text
    log = admin.get("/console/admin/deliveries?status=dead&channel=webhook&from=2026-01-01")
    assert log.status_code == 200 and "没有符合条件的投递记录" in log.text
    assert (
        "/console/exports/deliveries.csv?status=dead&amp;channel=webhook&amp;from=2026-01-01"
        in log.text
    )


def test_a_dead_letter_is_redelivered_from_the_log_page(db: Database, client: TestClient,
                                                        monkeypatch: object) -> None:  # fmt: skip
    mp = pytest.MonkeyPatch()
    mp.setenv("JIESU_DELIVERY_MAX_ATTEMPTS", "1")
    try:
        r = client.post("/api/v1/admin/webhooks", headers=auth(client, "admin1"),
                        json={"name": "无人接收", "url": "http://127.0.0.1:9/x", "event_types": ["*"]})  # fmt: skip
        assert r.status_code == 201 and r.json()["secret"].startswith("whsec_")
        listed = client.get("/api/v1/admin/webhooks", headers=auth(client, "admin1")).json()
        assert listed[0]["secret"] is None
        new_ticket(client)
        run_deliveries(db, channels=quick())
    finally:
        mp.undo()
    with db.read() as s:
        d = s.scalars(select(Delivery)).one()
    assert d.status == "dead"
    admin = Console(app_of(client), "admin1")
    page = admin.get("/console/admin/deliveries?status=dead")
    assert f"msg_{d.id}" in page.text and "重新投递" in page.text and "连接失败" in page.text
    r = admin.post(f"/console/admin/deliveries/{d.id}/redeliver")
    assert r.status_code == 303
    with db.read() as s:
        assert s.get(Delivery, d.id).status == "pending"  # type: ignore[union-attr]
    api = client.get("/api/v1/admin/deliveries?status=pending", headers=auth(client, "admin1"))
    assert api.status_code == 200 and api.json()["items"][0]["idempotency_id"] == f"msg_{d.id}"
    assert api.json()["items"][0]["log"][0]["ok"] is False


def test_the_pages_and_api_are_the_admins_alone(db: Database, client: TestClient) -> None:
    for username in ("agent1", "dispatcher1", "s11.admin"):
        console = Console(app_of(client), username)
        for url in ("/console/admin/webhooks", "/console/admin/deliveries"):
            assert console.get(url).status_code == 403, (username, url)
        headers = auth(client, username)
        assert client.get("/api/v1/admin/webhooks", headers=headers).status_code == 403
        assert client.get("/api/v1/admin/deliveries", headers=headers).status_code == 403
        r = client.post("/api/v1/admin/webhooks", headers=headers,
                        json={"name": "x", "url": "http://127.0.0.1:1/", "event_types": ["*"]})  # fmt: skip
        assert r.status_code == 403


def test_a_phone_address_is_masked_for_a_viewer_who_may_not_reveal() -> None:
    d = Delivery(channel="sms", address=PHONE)
    outsider = Principal(user_id=1, username="u", name="某人", role="admin", unit_id=2,
                         unit_path="/2/", unit_function=None)  # fmt: skip
    assert shown_address(d, outsider) == "138****5678"
    assert (
        shown_address(Delivery(channel="email", address="li@example.org"), outsider)
        == "l***@example.org"
    )


def test_fan_out_keeps_no_phone_in_a_plain_subscribers_body(
    db: Database, client: TestClient
) -> None:
    client.post("/api/v1/admin/webhooks", headers=auth(client, "admin1"),
                json={"name": "看板", "url": "http://127.0.0.1:1/", "event_types": ["*"]})  # fmt: skip
    new_ticket(client)
    fan_out(db, quick(), now=datetime(2030, 3, 4, 4, 0, tzinfo=UTC))  # a fixed instant
    with db.read() as s:
        bodies = [d.body for d in s.scalars(select(Delivery))]
    assert bodies and all(PHONE not in str(b) for b in bodies)


def test_the_admin_edits_tests_and_redelivers_a_subscribers_dead_letters(
    db: Database, client: TestClient
) -> None:
    from standardwebhooks import Webhook
    from test_delivery import Receiver, subscribe

    receiver = Receiver()
    try:
        sub_id, secret = subscribe(db, "http://127.0.0.1:9/down", ["*"])
        mp = pytest.MonkeyPatch()
        mp.setenv("JIESU_DELIVERY_MAX_ATTEMPTS", "1")
        try:
            new_ticket(client)
            new_ticket(client)
            run_deliveries(db, channels=quick())
        finally:
            mp.undo()
        with db.read() as s:
            assert [d.status for d in s.scalars(select(Delivery))] == ["dead", "dead"]
        admin = Console(app_of(client), "admin1")
        page = admin.get("/console/admin/webhooks")
        assert "2 条" in page.text and "重新投递失败的推送" in page.text
        r = admin.post(f"/console/admin/webhooks/{sub_id}", {"name": "东二街道系统",
                       "url": receiver.url, "event_types": ["ticket.receive", "deadline.*"],
                       "unit": "S12", "personal_data": "on", "active": "on"})  # fmt: skip
        assert r.status_code == 303
        with db.read() as s:
            sub = s.get(WebhookSubscriber, sub_id)
            assert sub is not None and sub.url == receiver.url and sub.personal_data
            assert sub.event_types == ["deadline.*", "ticket.receive"] and sub.unit_id
        tested = admin.post(f"/console/admin/webhooks/{sub_id}/test")
        assert "测试事件已送达" in tested.text
        headers, body = receiver.requests[-1]
        assert Webhook(secret).verify(body, headers)["type"] == "ping"
        again = admin.post(f"/console/admin/webhooks/{sub_id}/redeliver")
        assert "已安排重新投递 2 条" in again.text
        run_deliveries(db, channels=quick())  # to the corrected url, with the same ids
        with db.read() as s:
            done = list(s.scalars(select(Delivery)))
        assert [d.status for d in done] == ["delivered", "delivered"]
        assert {h["webhook-id"] for h, _ in receiver.requests[1:]} == {f"msg_{d.id}" for d in done}
    finally:
        receiver.stop()
