"""SMS and e-mail notices delivered by the worker's round (`run_deliveries`) to a local HTTP SMS
gateway (tests/sms_gateway.py) and a real SMTP server (aiosmtpd), on both databases."""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiosmtpd.controller import Controller
from conftest import auth
from fastapi.testclient import TestClient
from sms_gateway import FakeSmsGateway
from sqlalchemy import select

from jiesu.citypack.export import export_pack
from jiesu.citypack.load import load_pack
from jiesu.citypack.parse import read_pack
from jiesu.db.engine import Database
from jiesu.delivery.channels import Message, Target
from jiesu.delivery.models import Delivery, DeliveryAttempt
from jiesu.delivery.service import run_deliveries
from jiesu.notices import sms as sms_module
from jiesu.notices.email import EmailChannel
from jiesu.notices.models import SmsOptOut
from jiesu.notices.service import opt_out, opted_out, save_unit_email, undo_opt_out
from jiesu.notices.sms import OPTED_OUT, SmsChannel, mask_text
from jiesu.notices.templates import sms_config
from jiesu.taxonomy.service import pack_settings
from jiesu.tickets.models import Outbox, Ticket

PHONE = "13812345678"
MASKED = "138****5678"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def city(day: int, hh: int, mm: int = 0) -> datetime:
    """A moment in city time (a date in the future, so every ticket is older)."""
    return datetime(2030, 3, day, hh, mm, tzinfo=SHANGHAI).astimezone(UTC)


NOON = city(4, 12)


@pytest.fixture(autouse=True)
def _notices_never_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests deliver in 2030 the notices of orders made today (so every order is older
    than the moment): the 72-hour staleness rule has its own test in test_notices.py."""
    monkeypatch.setattr(sms_module, "STALE_AFTER", timedelta(days=36500))


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSmsGateway]:
    with FakeSmsGateway() as gw:
        monkeypatch.setenv("JIESU_SMS_GATEWAY_URL", gw.url)
        monkeypatch.setenv("JIESU_SMS_GATEWAY_KEY", gw.key)
        monkeypatch.setenv("JIESU_SMS_TIMEOUT", "1")
        yield gw


class Inbox:
    def __init__(self) -> None:
        self.mails: list[EmailMessage] = []
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        self.mails.append(message_from_bytes(envelope.content, policy=policy.default))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    inbox = Inbox()
    for _ in range(50):  # a free port below the ephemeral range
        port = random.randint(20000, 32000)
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        try:
            controller.start()
            break
        except (OSError, RuntimeError):
            continue
    else:
        raise RuntimeError("no free port for the SMTP server")
    monkeypatch.setenv("JIESU_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("JIESU_SMTP_PORT", str(port))
    monkeypatch.setenv("JIESU_SMTP_FROM", "notice@12345.example.gov.cn")
    monkeypatch.setenv("JIESU_SMTP_TIMEOUT", "2")
    monkeypatch.setenv("JIESU_PUBLIC_URL", "https://12345.example.gov.cn")
    yield inbox
    controller.stop()


def new_ticket(client: TestClient, phone: str = PHONE) -> int:
    body = {"channel": "phone", "title": "楼道灯坏了", "content": "小区楼道灯坏了一个月没人修",
            "requester": {"name": "张三丰", "phone": phone}}  # fmt: skip
    r = client.post("/api/v1/tickets", json=body, headers=auth(client, "agent1"))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def sms_deliveries(db: Database) -> list[Delivery]:
    with db.read() as s:
        return list(
            s.scalars(select(Delivery).where(Delivery.channel == "sms").order_by(Delivery.id))
        )


def log_of(db: Database) -> list[DeliveryAttempt]:
    with db.read() as s:
        return list(s.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)))


def receipt_payload(db: Database, ticket_id: int) -> dict[str, Any]:
    with db.read() as s:
        rows = s.scalars(select(Outbox).where(Outbox.ticket_id == ticket_id,
                                              Outbox.recipient == "requester")).all()  # fmt: skip
    [payload] = [r.payload for r in rows if r.payload.get("notice") == "receipt"]
    return payload


# ---- SMS through the gateway -------------------------------------------------------------------


def test_a_receipt_sms_carries_the_number_and_the_tracking_code(
    db: Database, client: TestClient, gateway: FakeSmsGateway
) -> None:
    ticket_id = new_ticket(client)
    payload = receipt_payload(db, ticket_id)
    assert payload["tracking_code"]
    run_deliveries(db, now=NOON, channels=[SmsChannel()])
    [sent] = gateway.messages
    [d] = sms_deliveries(db)
    assert d.status == "delivered" and d.key == PHONE
    assert sent["id"] == f"msg_{d.id}" and sent["to"] == PHONE
    assert sent["text"].startswith("【12345】")
    assert payload["number"] in sent["text"] and payload["tracking_code"] in sent["text"]
    assert sent["segments"] == 1 and len(sent["text"]) <= 70
    assert gateway.requests[0]["headers"]["X-Api-Key"] == gateway.key
    [attempt] = log_of(db)
    assert attempt.ok and PHONE not in attempt.detail and MASKED in attempt.detail
    run_deliveries(db, now=NOON + timedelta(days=1), channels=[SmsChannel()])
    assert len(gateway.messages) == 1  # delivered once, never again


def test_an_opted_out_phone_gets_nothing_and_the_delivery_says_so(
    db: Database, client: TestClient, gateway: FakeSmsGateway
) -> None:
    with db.write() as s:
        opt_out("+86 138-1234-5678", db_session=s, now=NOON, source="sms")
        opt_out(PHONE, db_session=s, now=NOON, source="admin")  # a second 退订 changes nothing
    with db.read() as s:
        assert opted_out(PHONE, db_session=s)
        assert len(s.scalars(select(SmsOptOut)).all()) == 1
    new_ticket(client)
    run_deliveries(db, now=NOON, channels=[SmsChannel()])
    assert gateway.requests == []
    [d] = sms_deliveries(db)
    assert d.status == "skipped" and d.last_error == OPTED_OUT and d.attempts == 0
    with db.write() as s:  # the admin undoes it: the next order's receipt goes out
        undo_opt_out(s.scalars(select(SmsOptOut.id)).one(), db_session=s)
    new_ticket(client)
    run_deliveries(db, now=NOON, channels=[SmsChannel()])
    assert len(gateway.messages) == 1


def test_a_notice_owed_for_more_than_72_hours_is_recorded_never_sent(
    db: Database, client: TestClient, gateway: FakeSmsGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sms_module, "STALE_AFTER", timedelta(hours=72))
    made = new_ticket(client)
    with db.read() as s:
        [row] = s.scalars(select(Outbox).where(Outbox.ticket_id == made)).all()
        owed = row.created_at
    # the worker was down three days and an hour (daytime, so quiet hours play no part)
    run_deliveries(db, now=owed + timedelta(hours=73), channels=[SmsChannel()])
    assert gateway.requests == []
    [d] = sms_deliveries(db)
    assert d.status == "skipped" and d.last_error == sms_module.STALE and d.attempts == 0
    fresh = new_ticket(client, phone="13900001111")  # one owed for less goes out
    with db.read() as s:
        [row] = s.scalars(select(Outbox).where(Outbox.ticket_id == fresh)).all()
        owed = row.created_at
    run_deliveries(db, now=owed + timedelta(hours=71), channels=[SmsChannel()])
    sent = [d for d in sms_deliveries(db) if d.ticket_id == fresh]
    assert [d.status for d in sent] in (["delivered"], ["pending"])  # pending: quiet hours


def test_quiet_hours_hold_an_sms_until_the_morning_but_not_an_urgent_one(
    db: Database, client: TestClient, gateway: FakeSmsGateway
) -> None:
    night = city(4, 23, 30)
    quiet = new_ticket(client)
    run_deliveries(db, now=night, channels=[SmsChannel()])
    assert gateway.requests == []
    [d] = sms_deliveries(db)
    assert d.status == "pending" and d.next_at == city(5, 8)
    run_deliveries(db, now=city(5, 7, 59), channels=[SmsChannel()])
    assert gateway.requests == []
    urgent = new_ticket(client, phone="13900001111")
    with db.write() as s:
        s.get(Ticket, urgent).urgent = True
    run_deliveries(db, now=city(5, 7, 59), channels=[SmsChannel()])
    assert [m["to"] for m in gateway.messages] == ["13900001111"]
    run_deliveries(db, now=city(5, 8), channels=[SmsChannel()])
    assert [m["to"] for m in gateway.messages] == ["13900001111", PHONE]
    assert {d.ticket_id: d.status for d in sms_deliveries(db)} == {quiet: "delivered",
                                                                   urgent: "delivered"}  # fmt: skip


def test_a_failing_gateway_is_retried_with_the_same_id_and_logs_show_no_whole_number(
    db: Database, client: TestClient, gateway: FakeSmsGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway.fail(2, status=503)
    new_ticket(client)
    for day in range(4):
        run_deliveries(db, now=NOON + timedelta(days=day), channels=[SmsChannel()])
    [d] = sms_deliveries(db)
    assert d.status == "delivered" and d.attempts == 3
    assert {r["body"]["id"] for r in gateway.requests} == {f"msg_{d.id}"}
    details = [a.detail for a in log_of(db)]
    assert [a.ok for a in log_of(db)] == [False, False, True]
    assert "HTTP 503" in details[0] and "139****5678" in details[0]  # the gateway's own words
    everything = caplog.text + " ".join(details)
    assert PHONE not in everything and "13912345678" not in everything
    assert MASKED in caplog.text


# ---- the gateway's answers (no database) -------------------------------------------------------


def message(text: str = "【12345】测试") -> Message:
    target = Target("sms", PHONE, PHONE, {"text": text, "segments": 1})
    return Message(delivery_id=7, idempotency_id="msg_7", target=target, attempt=1)


@pytest.mark.parametrize(
    ("status", "ok", "retry"),
    [(200, True, True), (202, True, True), (400, False, False), (401, False, False),
     (408, False, True), (429, False, True), (500, False, True), (503, False, True)],
)  # fmt: skip
def test_gateway_answers_mean_delivered_permanent_or_retry(
    gateway: FakeSmsGateway, status: int, ok: bool, retry: bool
) -> None:
    if status >= 300:
        gateway.fail(1, status=status)
    outcome = SmsChannel().send(message())
    assert (outcome.ok, outcome.retry) == (ok, retry)
    assert ok or outcome.status_code == status
    assert gateway.requests[0]["body"] == {"id": "msg_7", "to": PHONE, "text": "【12345】测试",
                                           "segments": 1}  # fmt: skip


def test_a_hanging_gateway_is_a_timeout_to_retry(
    gateway: FakeSmsGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIESU_SMS_TIMEOUT", "0.3")
    gateway.hang(2)
    outcome = SmsChannel().send(message())
    assert not outcome.ok and outcome.retry and "超时" in outcome.detail


def test_without_a_gateway_sms_owes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JIESU_SMS_GATEWAY_URL", raising=False)
    channel = SmsChannel()
    assert not channel.enabled
    row = Outbox(ticket_id=1, recipient="requester", payload={"notice": "receipt", "phone": PHONE})
    assert channel.targets(row, db_session=None, now=NOON) == []  # type: ignore[arg-type]


def test_mask_text_masks_every_phone_like_number() -> None:
    assert mask_text("to 13812345678 and +8613912345678, id 2026") == (
        "to 138****5678 and +86*******5678, id 2026"
    )


# ---- e-mail by SMTP ----------------------------------------------------------------------------


def test_a_unit_that_wants_dispatches_gets_an_email_on_dispatch(
    db: Database, client: TestClient, smtp: Inbox
) -> None:
    with db.write() as s:
        save_unit_email(db_session=s, now=NOON, unit_code="S11", address="dongyi@example.gov.cn",
                        kinds=["dispatch"], allowed_kinds=("dispatch", "urge"))  # fmt: skip
        save_unit_email(db_session=s, now=NOON, unit_code="S11", address="urge@example.gov.cn",
                        kinds=["urge"], allowed_kinds=("dispatch", "urge"))  # fmt: skip
    ticket_id = new_ticket(client)
    r = client.post(f"/api/v1/tickets/{ticket_id}/actions/dispatch", json={"lead": "S11"},
                    headers=auth(client, "dispatcher1"))  # fmt: skip
    assert r.status_code == 200, r.text
    run_deliveries(db, now=NOON, channels=[EmailChannel()])
    [mail] = smtp.mails
    with db.read() as s:
        ticket = s.get(Ticket, ticket_id)
        [d] = s.scalars(select(Delivery).where(Delivery.channel == "email")).all()
        assert d.status == "delivered"
        number = ticket.number
    assert mail["To"] == "dongyi@example.gov.cn"
    assert mail["From"] == "notice@12345.example.gov.cn"
    assert mail["Message-ID"] == f"<msg_{d.id}@12345.example.gov.cn>"
    assert "派单" in mail["Subject"] and number in mail["Subject"]
    body = mail.get_content()
    for expected in (f"工单编号：{number}", "标题：楼道灯坏了", "当前状态：", "办理时限：",
                     f"https://12345.example.gov.cn/console/tickets/{ticket_id}"):  # fmt: skip
        assert expected in body
    assert PHONE not in body and "张三丰" not in body
    assert smtp.envelopes[0].rcpt_tos == ["dongyi@example.gov.cn"]


def test_without_an_smtp_host_email_owes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JIESU_SMTP_HOST", raising=False)
    row = Outbox(ticket_id=1, recipient="unit", unit_id=1, payload={"notice": "dispatch"})
    assert EmailChannel().targets(row, db_session=None, now=NOON) == []  # type: ignore[arg-type]


def test_an_unreachable_smtp_server_is_a_failure_to_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIESU_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("JIESU_SMTP_PORT", "9")  # discard: nobody listens
    monkeypatch.setenv("JIESU_SMTP_TIMEOUT", "1")
    target = Target("email", "a@example.gov.cn", "a@example.gov.cn", {"subject": "s", "text": "t"})
    outcome = EmailChannel().send(Message(1, "msg_1", target, 1))
    assert not outcome.ok and outcome.retry


# ---- the pack's section: loaded, in force, exported ---------------------------------------------


def test_the_packs_sms_section_is_loaded_used_and_exported_back(
    db: Database, tmp_path: Path
) -> None:
    root = tmp_path / "pack"
    shutil.copytree(Path(__file__).parent / "packs" / "tiny", root)
    with (root / "pack.yaml").open("a", encoding="utf-8") as f:
        f.write("notices:\n  sms:\n    signature: 【小城12345】\n    quiet_hours: \"22:00-07:30\"\n"
                "    templates:\n      receipt: 已受理，工单{number}，查询码{tracking_code}\n")  # fmt: skip
    pack = read_pack(root)
    assert pack.ok, pack.errors
    with db.write() as s:
        load_pack(pack, db_session=s)
    with db.read() as s:
        config = sms_config(pack_settings(db_session=s))
        assert config.signature == "【小城12345】" and str(config.quiet_hours) == "22:00-07:30"
        assert list(config.templates) == ["receipt"]
        export_pack(tmp_path / "out", db_session=s)
    again = read_pack(tmp_path / "out")
    assert again.ok, again.errors
    assert again.settings["notices"] == pack.settings["notices"]


def test_a_rejected_request_is_told_the_reason_and_the_legal_channel_by_sms(
    db: Database, client: TestClient, gateway: FakeSmsGateway
) -> None:
    ticket_id = new_ticket(client)
    r = client.post(f"/api/v1/tickets/{ticket_id}/actions/reject",
                    json={"reason": "litigation", "channel_advice": "请向人民法院提起诉讼"},
                    headers=auth(client, "agent1"))  # fmt: skip
    assert r.status_code == 200, r.text
    run_deliveries(db, now=NOON, channels=[SmsChannel()])
    texts = gateway.texts()
    assert len(texts) == 2  # the receipt and the answer (sent in parallel: any order)
    [answer] = [t for t in texts if "已答复" in t]
    assert answer.endswith("已答复：不予受理（属诉讼范围），请向人民法院提起诉讼")
