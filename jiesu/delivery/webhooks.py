"""Webhooks: the admin's subscribers, signed per the Standard Webhooks specification.

A subscriber names the event types it wants (`ticket.<action>`, `deadline.<kind>`, `ticket.*`,
`*`), optionally a unit whose tree bounds what it hears (a unit's own work system), and whether
it may receive personal data (by default the requester's phone is masked and the name left out).
Each notice is POSTed as JSON `{"type", "timestamp", "data"}` with the headers `webhook-id`
(the delivery's idempotency id, the same on every try), `webhook-timestamp` and
`webhook-signature` (`v1,<base64 HMAC-SHA256>` of `id.timestamp.body` with the `whsec_` secret).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from jiesu.access.policy import mask_name, mask_phone
from jiesu.delivery.channels import Message, Outcome, Target
from jiesu.delivery.models import WebhookSubscriber
from jiesu.org.models import Unit
from jiesu.tickets.models import Outbox, Ticket

CONNECT_TIMEOUT_S = 3.0
TOTAL_TIMEOUT_S = 10.0
USER_AGENT = "jiesu-webhooks/1"

_client: httpx.Client | None = None
_client_lock = threading.Lock()


def shared_client() -> httpx.Client:
    """One connection pool for every send (keep-alive to the same receivers)."""
    global _client
    with _client_lock:
        if _client is None or _client.is_closed:
            _client = httpx.Client(
                timeout=httpx.Timeout(TOTAL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
            )
        return _client


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def event_type(row: Outbox) -> str:
    """`ticket.<action>` for an event's notice, `deadline.<kind>` for a timer's."""
    payload = row.payload or {}
    if row.job_id is not None or (row.event_id is None and payload.get("kind")):
        return f"deadline.{payload.get('kind') or 'warn'}"
    return f"ticket.{payload.get('action') or 'change'}"


def wants(patterns: list[str], kind: str) -> bool:
    """Does a subscriber with these event-type patterns want `kind`?"""
    family = kind.split(".", 1)[0]
    return any(p in ("*", kind, f"{family}.*") for p in patterns)


def notice_of(row: Outbox) -> str:
    """The payload's `notice` (P8 adds it); before that, a requester's receive is the receipt."""
    payload = row.payload or {}
    if payload.get("notice"):
        return str(payload["notice"])
    if row.recipient == "requester" and payload.get("action") == "receive":
        return "receipt"
    return str(payload.get("action") or payload.get("kind") or "")


def _iso(value: Any) -> Any:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value


def event_data(
    row: Outbox, ticket: Ticket, units: dict[int, Unit], *, personal: bool
) -> dict[str, Any]:
    """The `data` of a webhook: the notice, the order's number and state, units, deadlines;
    the requester's phone masked and no name unless the subscriber may receive personal data
    (never for a confidential requester)."""
    payload = row.payload or {}
    unit = units.get(row.unit_id) if row.unit_id else None
    lead = units.get(ticket.lead_unit_id) if ticket.lead_unit_id else None
    data: dict[str, Any] = {
        "number": payload.get("number") or ticket.number,
        "status": payload.get("status") or ticket.status,
        "action": payload.get("action"),
        "notice": notice_of(row),
        "recipient": row.recipient,
        "message": payload.get("message"),
        "unit": unit.code if unit else None,
        "lead_unit": lead.code if lead else None,
        "due_at": _iso(ticket.due_at),
        "urgent": ticket.urgent,
    }
    for key in ("kind", "phase", "due", "reply", "reply_from"):
        if key in payload:
            data[key] = payload[key]
    phone = payload.get("phone") or (
        ticket.requester_phone if row.recipient == "requester" else None
    )
    allowed = personal and not ticket.requester_confidential
    if phone:
        data["requester_phone"] = phone if allowed else mask_phone(phone)
    if allowed and ticket.requester_name:
        data["requester_name"] = ticket.requester_name
    elif ticket.requester_name and row.recipient == "requester":
        data["requester_name"] = mask_name(ticket.requester_name)
    return data


class WebhookChannel:
    """The webhook deliverer: targets are the active subscribers that want the notice."""

    name = "webhook"

    def __init__(
        self,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        total_timeout: float = TOTAL_TIMEOUT_S,
        client: httpx.Client | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self._client = client
        self._secrets: dict[int, str] = {}
        self._urls: dict[int, str] = {}
        self._lock = threading.Lock()

    # ---- fan-out (inside the fan-out transaction) -------------------------------------------

    def targets(self, row: Outbox, *, db_session: Session, now: datetime) -> list[Target]:
        subscribers = _active_subscribers(db_session)
        if not subscribers:
            return []
        kind = event_type(row)
        wanted = [s for s in subscribers if wants(list(s.event_types or []), kind)]
        if not wanted:
            return []
        ticket = db_session.get(Ticket, row.ticket_id)
        if ticket is None:
            return []
        ids = {i for i in (row.unit_id, ticket.lead_unit_id) if i}
        ids |= {s.unit_id for s in wanted if s.unit_id}
        units = {u.id: u for u in db_session.scalars(select(Unit).where(Unit.id.in_(ids)))}
        about = [units[i].path for i in (row.unit_id, ticket.lead_unit_id) if i in units]
        out = []
        stamp = now.astimezone(UTC).isoformat()
        for sub in wanted:
            if sub.unit_id:
                scope = units.get(sub.unit_id)
                if scope is None or not any(p.startswith(scope.path) for p in about):
                    continue
            body = {
                "type": kind,
                "timestamp": stamp,
                "data": event_data(row, ticket, units, personal=sub.personal_data),
            }
            out.append(
                Target(
                    channel=self.name,
                    key=f"sub{sub.id}",
                    address=sub.url,
                    body=body,
                    subscriber_id=sub.id,
                )
            )
        return out

    # ---- before sending (inside the claim transaction) --------------------------------------

    def prepare(self, messages: list[Message], *, db_session: Session) -> list[Message]:
        """Load the signing secrets and urls of the subscribers about to be sent to (send()
        reads no database); the messages of removed or inactive subscribers are dropped (returned so the
        service records them as skipped)."""
        ids = {m.target.subscriber_id for m in messages if m.target.subscriber_id}
        rows = db_session.scalars(
            select(WebhookSubscriber).where(WebhookSubscriber.id.in_(ids))
        ).all()
        with self._lock:
            for sub in rows:
                # The current secret and url: a rotated secret signs from now on, a corrected
                # url receives the retries and redeliveries of what was owed before.
                self._secrets[sub.id] = sub.secret
                self._urls[sub.id] = sub.url
        active = {s.id for s in rows if s.active}
        return [m for m in messages if m.target.subscriber_id not in active]

    # ---- sending (no database) ---------------------------------------------------------------

    def send(self, message: Message) -> Outcome:
        target = message.target
        secret = self._secrets.get(target.subscriber_id or 0)
        if secret is None:
            return Outcome(False, "没有签名密钥 / no signing secret loaded", retry=True)
        body = json.dumps(target.body, ensure_ascii=False, separators=(",", ":"))
        sent_at = datetime.now(UTC)
        signature = Webhook(secret).sign(message.idempotency_id, sent_at, body)
        headers = {
            "content-type": "application/json",
            "webhook-id": message.idempotency_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
        }
        client = self._client or shared_client()
        timeout = httpx.Timeout(self.total_timeout, connect=self.connect_timeout)
        started = time.monotonic()
        try:
            url = self._urls.get(target.subscriber_id or 0, target.address)
            response = client.post(url, content=body.encode(), headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            return Outcome(False, f"超时 / timeout ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return Outcome(False, f"连接失败 / {type(exc).__name__}")
        code = response.status_code
        took = f"{(time.monotonic() - started) * 1000:.0f} ms"
        if 200 <= code < 300:
            return Outcome(True, f"HTTP {code}, {took}", code)
        if code == 410:
            return Outcome(False, f"HTTP 410 接收方已注销 / gone, {took}", code, retry=False)
        if 400 <= code < 500 and code not in (408, 429):
            return Outcome(False, f"HTTP {code} 接收方拒绝 / refused, {took}", code, retry=False)
        return Outcome(False, f"HTTP {code}, {took}", code)


def _active_subscribers(db_session: Session) -> list[WebhookSubscriber]:
    """Read once per fan-out transaction (its session), not once per outbox row."""
    cached = db_session.info.get("jiesu_webhook_subscribers")
    if cached is None:
        cached = list(
            db_session.scalars(
                select(WebhookSubscriber)
                .where(WebhookSubscriber.active.is_(True))
                .order_by(WebhookSubscriber.id)
            )
        )
        db_session.info["jiesu_webhook_subscribers"] = cached
    return list(cached)
