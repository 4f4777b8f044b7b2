"""Delivery of the outbox by webhook (issue 15): retries, dead letters, exactly-once recording,
filters, crashes, a hanging receiver, personal data; on both databases, against a real local
HTTP receiver."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import auth
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from standardwebhooks import Webhook

from jiesu.db.engine import Database
from jiesu.delivery import service
from jiesu.delivery.channels import Message, Outcome, Target
from jiesu.delivery.models import Delivery, DeliveryAttempt, WebhookSubscriber
from jiesu.delivery.service import SubscriberIn, create_subscriber, fan_out, run_deliveries
from jiesu.delivery.webhooks import WebhookChannel, wants
from jiesu.tickets.models import Outbox

# Deliveries happen at a fixed instant after every order the tests make (any hour, any date).
LATER = datetime(2030, 3, 4, 4, 0, tzinfo=UTC)


PHONE = "13812345678"


class Receiver:
    """A real HTTP receiver in a thread, on a port below 32768: answers `fail` times with
    `status`, then 204; or hangs until stopped."""

    def __init__(self, *, fail: int = 0, status: int = 500, hang: bool = False) -> None:
        self.fail, self.status, self.hang = fail, status, hang
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.requests.append((dict(self.headers.items()), body))
                if receiver.hang:
                    receiver.released.wait(30)
                    return
                failing = len(receiver.requests) <= receiver.fail
                self.send_response(receiver.status if failing else 204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        for _ in range(50):
            try:
                self.server = ThreadingHTTPServer(("127.0.0.1", random.randint(20000, 32000)),
                                                  Handler)  # fmt: skip
                break
            except OSError:
                continue
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Any:
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def subscribe(db: Database, url: str, types: list[str], **kwargs: Any) -> tuple[int, str]:
    with db.write() as s:
        sub = create_subscriber(SubscriberIn(name="承办单位业务系统", url=url, event_types=types,
                                             **kwargs), db_session=s, actor_id=None,
                                now=LATER)  # fmt: skip
        return sub.id, sub.secret


def new_ticket(client: TestClient, *, confidential: bool = False) -> int:
    body = {"channel": "phone", "content": "小区楼道灯坏了一个月没人修，请尽快处理",
            "requester": {"name": "张三丰", "phone": PHONE, "confidential": confidential}}  # fmt: skip
    r = client.post("/api/v1/tickets", json=body, headers=auth(client, "agent1"))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def dispatch(client: TestClient, ticket: int, lead: str) -> None:
    r = client.post(f"/api/v1/tickets/{ticket}/actions/dispatch", json={"lead": lead},
                    headers=auth(client, "dispatcher1"))  # fmt: skip
    assert r.status_code == 200, r.text


def deliveries(db: Database, subscriber_id: int | None = None) -> list[Delivery]:
    with db.read() as s:
        stmt = select(Delivery).order_by(Delivery.id)
        if subscriber_id is not None:
            stmt = stmt.where(Delivery.subscriber_id == subscriber_id)
        return list(s.scalars(stmt))


def attempts(db: Database, delivery_id: int) -> list[DeliveryAttempt]:
    with db.read() as s:
        return list(s.scalars(select(DeliveryAttempt).where(
            DeliveryAttempt.delivery_id == delivery_id).order_by(DeliveryAttempt.id)))  # fmt: skip


def quick() -> list[WebhookChannel]:
    return [WebhookChannel(connect_timeout=1.0, total_timeout=1.0)]


# ---- acceptance -----------------------------------------------------------------------------


def test_a_receiver_failing_three_times_then_succeeding_gets_one_signed_delivery(
    db: Database, client: TestClient, receivers: Any
) -> None:
    receiver = receivers(fail=3, status=503)
    sub_id, secret = subscribe(db, receiver.url, ["ticket.receive"])
    new_ticket(client)
    now = LATER
    for round_no in range(6):  # each round a day later: every backoff has run out
        run_deliveries(db, now=now + timedelta(days=round_no), channels=quick())
    assert len(receiver.requests) == 4
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    [d] = deliveries(db, sub_id)
    assert ids == {f"msg_{d.id}"}
    assert d.status == "delivered" and d.attempts == 4 and d.last_status_code == 204
    log = attempts(db, d.id)
    assert [a.ok for a in log] == [False, False, False, True]
    assert [a.status_code for a in log] == [503, 503, 503, 204]
    headers, body = receiver.requests[-1]
    payload = Webhook(secret).verify(body, headers)
    assert payload["type"] == "ticket.receive"
    assert payload["data"]["notice"] == "receipt" and payload["data"]["number"]
    with pytest.raises(Exception, match="signature"):
        Webhook(subscribe(db, receiver.url, ["*"])[1]).verify(body, headers)


def test_a_delivery_is_dead_after_n_failures_and_redelivered_from_the_console(
    db: Database, client: TestClient, receivers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIESU_DELIVERY_MAX_ATTEMPTS", "3")
    receiver = receivers(fail=3, status=500)
    sub_id, secret = subscribe(db, receiver.url, ["ticket.*"])
    new_ticket(client)
    now = LATER
    for round_no in range(5):
        run_deliveries(db, now=now + timedelta(days=round_no), channels=quick())
    [d] = deliveries(db, sub_id)
    assert d.status == "dead" and d.attempts == 3 and len(receiver.requests) == 3
    admin = auth(client, "admin1")
    r = client.post(f"/api/v1/admin/deliveries/{d.id}/redeliver", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending"
    run_deliveries(db, now=LATER, channels=quick())
    [d] = deliveries(db, sub_id)
    assert d.status == "delivered"
    assert {h["webhook-id"] for h, _ in receiver.requests} == {f"msg_{d.id}"}
    Webhook(secret).verify(receiver.requests[-1][1], receiver.requests[-1][0])
    r = client.post(f"/api/v1/admin/deliveries/{d.id}/redeliver", headers=admin)
    assert r.status_code == 409  # a delivered one is never recorded twice


def test_410_gone_is_a_dead_letter_at_once_and_switches_the_subscription_off(
    db: Database, client: TestClient, receivers: Any
) -> None:
    receiver = receivers(fail=99, status=410)
    sub_id, _ = subscribe(db, receiver.url, ["*"])
    new_ticket(client)
    run_deliveries(db, now=LATER, channels=quick())
    [d] = deliveries(db, sub_id)
    assert d.status == "dead" and d.attempts == 1 and d.last_status_code == 410
    with db.read() as s:
        assert s.get(WebhookSubscriber, sub_id).active is False
    new_ticket(client)  # nothing more goes to a receiver that said it is gone
    run_deliveries(db, now=LATER, channels=quick())
    assert len(receiver.requests) == 1
    assert [x.status for x in deliveries(db, sub_id)] == ["dead"]


def test_unit_scope_and_event_types_choose_the_subscribers(
    db: Database, client: TestClient
) -> None:
    s11, _ = subscribe(db, "http://127.0.0.1:1/a", ["ticket.dispatch"], unit="S11")
    s12, _ = subscribe(db, "http://127.0.0.1:1/b", ["ticket.dispatch"], unit="S12")
    timers, _ = subscribe(db, "http://127.0.0.1:1/c", ["deadline.*"])
    every, _ = subscribe(db, "http://127.0.0.1:1/d", ["ticket.*"])
    dispatch(client, new_ticket(client), "S11")
    fan_out(db, quick(), now=LATER)
    assert {d.event_type for d in deliveries(db, s11)} == {"ticket.dispatch"}
    assert all(d.body["data"]["unit"] == "S11" for d in deliveries(db, s11))
    assert deliveries(db, s12) == [] and deliveries(db, timers) == []
    assert {d.event_type for d in deliveries(db, every)} == {"ticket.receive", "ticket.dispatch"}
    assert wants(["deadline.*"], "deadline.overdue") and not wants(["ticket.*"], "deadline.warn")
    assert wants(["*"], "deadline.warn") and not wants(["ticket.reply"], "ticket.replyx")


def test_a_crash_between_fan_out_and_send_repeats_nothing(
    db: Database, client: TestClient, receivers: Any
) -> None:
    receiver = receivers()
    sub_id, _ = subscribe(db, receiver.url, ["*"])
    dispatch(client, new_ticket(client), "S11")

    class Crashing(WebhookChannel):
        calls = 0

        def targets(self, row: Outbox, **kwargs: Any) -> list[Target]:
            Crashing.calls += 1
            if Crashing.calls == 2:
                raise RuntimeError("killed mid fan-out")
            return super().targets(row, **kwargs)

    now = LATER
    with pytest.raises(RuntimeError):
        fan_out(db, [Crashing()], now=now)  # rolled back: nothing routed, nothing created
    assert deliveries(db) == []
    fan_out(db, quick(), now=now)
    routed = deliveries(db, sub_id)
    assert len(routed) == 2
    fan_out(db, quick(), now=now)  # a second fan-out finds nothing new
    assert len(deliveries(db, sub_id)) == 2
    claimed = service.claim_due(db, quick(), now=now)  # then the sender dies before sending
    assert len(claimed) == 2
    assert run_deliveries(db, now=now, channels=quick()) == 0  # leased: nobody else sends
    later = now + timedelta(seconds=service.LEASE_S + 1)
    assert run_deliveries(db, now=later, channels=quick()) == 2
    run_deliveries(db, now=later + timedelta(days=1), channels=quick())
    assert len(receiver.requests) == 2
    assert sorted(h["webhook-id"] for h, _ in receiver.requests) == sorted(
        f"msg_{d.id}" for d in routed
    )
    assert all(d.status == "delivered" for d in deliveries(db, sub_id))
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(DeliveryAttempt)) == 2
        assert s.scalar(select(func.count()).where(Outbox.delivered_at.is_(None))) == 0


def test_a_second_success_for_the_same_delivery_changes_nothing(
    db: Database, client: TestClient
) -> None:
    sub_id, _ = subscribe(db, "http://127.0.0.1:1/x", ["*"])
    new_ticket(client)
    now = LATER
    fan_out(db, quick(), now=now)
    [claimed] = service.claim_due(db, quick(), now=now)
    message = claimed.message
    service._record(db, message, Outcome(True, "HTTP 200", 200), now=now, duration_ms=5)
    stale = Message(message.delivery_id, message.idempotency_id, message.target, 1)
    later = now + timedelta(minutes=5)
    service._record(db, stale, Outcome(True, "HTTP 200", 200), now=later, duration_ms=5)
    service._record(db, stale, Outcome(False, "HTTP 500", 500), now=later, duration_ms=5)
    [d] = deliveries(db, sub_id)
    assert d.status == "delivered" and d.delivered_at == now
    assert len(attempts(db, d.id)) == 1


def test_a_hanging_receiver_does_not_hold_up_another_subscriber(
    db: Database, client: TestClient, receivers: Any
) -> None:
    hanging, healthy = receivers(hang=True), receivers()
    hung_id, _ = subscribe(db, hanging.url, ["*"])
    ok_id, _ = subscribe(db, healthy.url, ["*"])
    new_ticket(client)
    started = time.monotonic()
    run_deliveries(db, now=LATER, channels=quick())
    took = time.monotonic() - started
    assert took < 4.0  # bounded by the 1 s timeout, not by the receiver
    [good] = deliveries(db, ok_id)
    [hung] = deliveries(db, hung_id)
    assert good.status == "delivered" and attempts(db, good.id)[0].duration_ms < 1000
    assert hung.status == "pending" and "超时" in (hung.last_error or "")
    assert hung.next_at > LATER  # backing off


def test_personal_data_leaves_only_to_a_subscriber_allowed_it(
    db: Database, client: TestClient, receivers: Any
) -> None:
    plain, trusted = receivers(), receivers()
    subscribe(db, plain.url, ["ticket.receive"])
    subscribe(db, trusted.url, ["ticket.receive"], personal_data=True)
    new_ticket(client)
    run_deliveries(db, now=LATER, channels=quick())
    [(_, masked)], [(_, full)] = plain.requests, trusted.requests
    assert PHONE not in masked.decode() and "张三丰" not in masked.decode()
    assert json.loads(masked)["data"]["requester_phone"] == "138****5678"
    assert json.loads(full)["data"]["requester_phone"] == PHONE
    assert json.loads(full)["data"]["requester_name"] == "张三丰"
    new_ticket(client, confidential=True)
    run_deliveries(db, now=LATER, channels=quick())
    assert PHONE not in trusted.requests[-1][1].decode()


def test_the_retry_schedule_grows_with_jitter() -> None:
    rng = random.Random(7)
    waits = [service.backoff(n, rng=rng).total_seconds() for n in range(1, 10)]
    bases = [30, 120, 600, 1800, 3600, 7200, 14400, 14400, 14400]
    assert all(0.8 * b <= w <= 1.2 * b for w, b in zip(waits, bases, strict=True))


def test_the_registry_holds_webhooks_sms_and_email() -> None:
    assert [c.name for c in service.channels()] == ["webhook", "sms", "email"]


def test_a_subscriber_switched_off_after_the_fan_out_gets_nothing(
    db: Database, client: TestClient, receivers: Any
) -> None:
    receiver = receivers()
    sub_id, _ = subscribe(db, receiver.url, ["*"])
    new_ticket(client)
    now = LATER
    fan_out(db, quick(), now=now)
    with db.write() as s:
        service.update_subscriber(sub_id, SubscriberIn(name="停用", url=receiver.url,
                                  event_types=["*"], active=False), db_session=s)  # fmt: skip
    assert run_deliveries(db, now=now, channels=quick()) == 0
    [d] = deliveries(db, sub_id)
    assert d.status == "skipped" and d.attempts == 0 and receiver.requests == []


def test_two_workers_at_once_send_each_delivery_once(
    db: Database, client: TestClient, receivers: Any
) -> None:
    receiver = receivers()
    subscribe(db, receiver.url, ["ticket.receive"])
    for _ in range(6):
        new_ticket(client)
    now = LATER
    errors: list[BaseException] = []

    def work() -> None:
        try:
            run_deliveries(db, now=now, channels=quick())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    ids = [h["webhook-id"] for h, _ in receiver.requests]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert [d.status for d in deliveries(db)] == ["delivered"] * 6
