"""Tables of delivery (issue 15): webhook subscribers, deliveries and the delivery log.

An outbox row (a notice owed) fans out into one `Delivery` per addressee and channel, unique on
(outbox_id, channel, key), so a repeated fan-out adds nothing. Each try of a delivery appends one
`DeliveryAttempt`: the delivery log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from jiesu.db.base import Base, JSONType, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER

STATUSES = ("pending", "sending", "delivered", "dead", "skipped")


class WebhookSubscriber(Base):
    """A system that wants notices by webhook (a unit's own work system, a city dashboard).

    `secret` is the Standard Webhooks `whsec_…` signing key; it is shown to the admin once (at
    creation and on rotation) and kept to sign. `event_types` lists `ticket.<action>`,
    `deadline.<kind>`, `ticket.*` or `*`. With `unit_id` set only notices about that unit's tree
    reach it. Personal data (requester name, full phone) only with `personal_data`.
    """

    __tablename__ = "webhook_subscriber"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(JSONType, default=list)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"))
    personal_data: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    secret_rotated_at: Mapped[datetime | None]


class Delivery(Base):
    """One notice to one addressee on one channel; `body` is what is sent, on every try."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("outbox_id", "channel", "key"),
        Index("ix_delivery_due", "status", "next_at"),
        Index("ix_delivery_list", "created_at", "id"),
        Index("ix_delivery_subscriber", "subscriber_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    outbox_id: Mapped[int] = mapped_column(BigId, ForeignKey("outbox.id"))
    ticket_id: Mapped[int] = mapped_column(BigId, ForeignKey("ticket.id"), index=True)
    channel: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500))  # phone / e-mail are personal: masked in UI
    body: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    event_type: Mapped[str] = mapped_column(String(60), default="")
    subscriber_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_subscriber.id"))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class DeliveryAttempt(Base):
    """One try of one delivery: the delivery log."""

    __tablename__ = "delivery_attempt"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(BigId, ForeignKey("delivery.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(String(500), default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
