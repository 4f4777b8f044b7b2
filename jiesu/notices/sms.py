"""The SMS channel (短信): notices to the requester through the city's SMS gateway over HTTP.

`targets` turns an outbox row for the requester into one SMS when the pack has a template for
its notice kind (受理回执, 答复, 办结答复, 回访邀请 …), rendered now (signature, segments, the
reply cut to `max_segments`), deferred to the sending hours unless the order is urgent, and
skipped (已退订) for a phone that opted out. `send` posts it to `JIESU_SMS_GATEWAY_URL` (the
protocol in docs/notices.md). Without a gateway configured the channel owes nothing.

A whole phone number never reaches a log or the delivery log: `mask_text` masks every run of
digits long enough to be one.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from jiesu.access.policy import mask_phone
from jiesu.delivery.channels import Message, Outcome, Target
from jiesu.notices import templates as tpl

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from jiesu.tickets.models import Outbox

log = logging.getLogger(__name__)

OPTED_OUT = "已退订"
STALE_AFTER = timedelta(hours=72)  # older notices are recorded, never sent
STALE = "积压超过72小时，不再发送"
DEFAULT_TIMEOUT_S = 5.0
KEY_HEADER = "X-Api-Key"
_PHONE_RUN = re.compile(r"(?<!\d)(?:\+?86)?\d{7,}(?!\d)")


def mask_text(text: str) -> str:
    """Every phone-like run of 7 or more digits masked (138****1234)."""
    return _PHONE_RUN.sub(lambda m: mask_phone(m.group(0)) or "", text)


def notice_of(payload: dict[str, Any], recipient: str) -> str:
    """The payload's notice kind; rows written before `notice` existed read as interfaces.md
    says (the requester's receive row is the receipt, else the action or the timer's kind)."""
    notice = payload.get("notice")
    if notice:
        return str(notice)
    if recipient == "requester" and payload.get("action") == "receive":
        return "receipt"
    return str(payload.get("action") or payload.get("kind") or "")


def gateway_settings() -> tuple[str, str, float]:
    """(url, key, timeout) from the environment; url "" when SMS is off."""
    url = os.environ.get("JIESU_SMS_GATEWAY_URL", "").strip()
    key = os.environ.get("JIESU_SMS_GATEWAY_KEY", "")
    try:
        timeout = float(os.environ.get("JIESU_SMS_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        timeout = DEFAULT_TIMEOUT_S
    return url, key, timeout


def _told_at_intake(event_id: int, *, db_session: Session) -> str:
    """What a 不予受理 or 转警转急 tells the citizen when there is no answer text: the reason
    and the legal channel (一次性告知), or where the emergency went."""
    from jiesu.tickets.lifecycle import REJECT_REASONS, TRANSFER_TO
    from jiesu.tickets.models import Event

    event = db_session.get(Event, event_id)
    if event is None:
        return ""
    data = event.data or {}
    if event.action == "reject":
        reason = REJECT_REASONS.get(str(data.get("reason")), "")
        advice = str(data.get("channel_advice") or "")
        return "，".join(
            p for p in (f"不予受理（{reason}）" if reason else "不予受理", advice) if p
        )
    if event.action == "transfer":
        to = str(data.get("to") or "")
        return f"已转{to}{TRANSFER_TO.get(to, '')}处理" if to else "已转相关部门处理"
    return ""


class SmsChannel:
    name = "sms"

    def __init__(self) -> None:
        self.url, self.key, self.timeout = gateway_settings()
        self.total_timeout = self.timeout  # the deliverer's hard limit for one send

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def targets(self, row: Outbox, *, db_session: Session, now: datetime) -> list[Target]:
        if not self.enabled or row.recipient != "requester":
            return []
        payload = row.payload or {}
        phone = str(payload.get("phone") or "").strip()
        if not phone:
            return []
        from jiesu.notices.service import normalise_phone, opted_out
        from jiesu.settings import city_tz
        from jiesu.taxonomy.service import pack_settings
        from jiesu.tickets.lifecycle import STATES
        from jiesu.tickets.models import Ticket

        config = tpl.sms_config(pack_settings(db_session=db_session))
        notice = notice_of(payload, row.recipient)
        template = config.templates.get(notice)
        if not template:
            return []
        values = {
            "number": str(payload.get("number") or ""),
            "tracking_code": str(payload.get("tracking_code") or ""),
            "status": STATES.get(str(payload.get("status")), str(payload.get("status") or "")),
            "reply": str(payload.get("reply") or ""),
            "link": "",
        }
        if notice == "answer" and not values["reply"] and row.event_id is not None:
            values["reply"] = _told_at_intake(row.event_id, db_session=db_session)
        if "{link}" in template:
            from jiesu.callbacks.links import rating_link

            values["link"] = rating_link(row.ticket_id, now=now)
        message = tpl.render(
            template, values, signature=config.signature, max_segments=config.max_segments
        )
        number = normalise_phone(phone)
        ticket = db_session.get(Ticket, row.ticket_id)
        urgent = bool(ticket and ticket.urgent)
        not_before = tpl.next_opening(
            now, config.quiet_hours, city_tz(), urgent=urgent,
            urgent_at_night=config.urgent_at_night,
        )  # fmt: skip
        skip = OPTED_OUT if opted_out(number, db_session=db_session) else None
        if skip is None and now - row.created_at > STALE_AFTER:
            # A notice owed for days (the worker was down, or the outbox predates delivery):
            # a citizen told today about last week's receipt would only be confused.
            skip = STALE
        body = {"text": message.text, "segments": message.segments, "notice": notice}
        return [Target("sms", number, number, body, not_before=not_before, skip=skip)]

    def send(self, message: Message) -> Outcome:
        target = message.target
        masked = mask_phone(target.address) or ""
        if not self.enabled:
            return Outcome(False, "短信网关未配置 / no SMS gateway configured", retry=True)
        request = {
            "id": message.idempotency_id,
            "to": target.address,
            "text": target.body.get("text", ""),
            "segments": target.body.get("segments", 1),
        }
        headers = {KEY_HEADER: self.key, "Idempotency-Key": message.idempotency_id}
        try:
            timeout = httpx.Timeout(self.timeout, connect=min(3.0, self.timeout))
            answer = httpx.post(self.url, json=request, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            log.warning("sms %s to %s: timeout", message.idempotency_id, masked)
            return Outcome(False, f"网关超时 / gateway timeout ({self.timeout:g}s)")
        except httpx.HTTPError as exc:
            log.warning("sms %s to %s: %s", message.idempotency_id, masked, type(exc).__name__)
            return Outcome(False, f"网关不可达 / gateway unreachable: {type(exc).__name__}")
        code = answer.status_code
        said = mask_text(answer.text[:200].strip())
        if 200 <= code < 300:
            log.info("sms %s to %s: accepted", message.idempotency_id, masked)
            return Outcome(True, f"网关已接收 / accepted ({masked})", status_code=code)
        permanent = 400 <= code < 500 and code not in (408, 429)
        log.warning("sms %s to %s: HTTP %s", message.idempotency_id, masked, code)
        return Outcome(False, f"HTTP {code}: {said}"[:500], status_code=code, retry=not permanent)
