"""The delivery channels' contract: what a channel says it owes and how it sends one message.

An outbox row (a notice owed) becomes one delivery per `Target` of every channel; a `Message`
is one try of one delivery and its `Outcome` goes into the delivery log. `targets` runs inside
the fan-out transaction (it may read the database); `send` runs outside any transaction and
touches no database, so a slow receiver never holds a lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from jiesu.tickets.models import Outbox


@dataclass(frozen=True)
class Target:
    """One addressee of one outbox row on one channel."""

    channel: str  # "webhook" | "sms" | "email"
    # Stable per addressee (subscriber id, phone, e-mail): a delivery is unique on
    # (outbox_id, channel, key), so it is recorded exactly once.
    key: str
    address: str  # URL / phone / e-mail address
    # What to send, prepared now (webhook JSON; {"text": ...} for SMS; {"subject", "text"} for
    # e-mail). Stored with the delivery, so a retry or a redelivery sends the same thing.
    body: dict[str, Any]
    not_before: datetime | None = None  # e.g. SMS quiet hours: first try not before this
    skip: str | None = None  # recorded, never sent (e.g. "已退订" opted out)
    subscriber_id: int | None = None


@dataclass(frozen=True)
class Message:
    """One try of one delivery."""

    delivery_id: int
    idempotency_id: str  # "msg_<delivery id>", the same on every try (webhook-id, SMS id)
    target: Target
    attempt: int  # 1, 2, ...


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str = ""  # for the delivery log: already masked, no personal data
    status_code: int | None = None
    retry: bool = True  # False: a permanent failure -> dead letter at once


class Channel(Protocol):
    name: str

    def targets(self, row: Outbox, *, db_session: Session, now: datetime) -> list[Target]: ...

    def send(self, message: Message) -> Outcome: ...  # no database: runs outside transactions


def idempotency_id(delivery_id: int) -> str:
    return f"msg_{delivery_id}"
