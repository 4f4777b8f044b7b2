"""Tables of callbacks (短信回访, issue 15): the citizens' SMS replies to the 回访邀请.

Every reply the gateway posts is kept once (unique on the gateway's message id), with what it
was read as and what became of it: it rated an order, it was a repeat, it opted out, or it waits
for a callback agent (待人工回访) until the agent links it to an order or marks it handled.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from jiesu.db.base import Base, JSONType, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER

RESULTS = ("rated", "queued", "duplicate", "opted_out")
# queued: 待人工回访; linked: an agent rated an order with it; handled: an agent closed it
STATUSES = ("done", "queued", "linked", "handled")


class SmsReply(Base):
    """One inbound SMS from a citizen (the gateway's message id is unique)."""

    __tablename__ = "sms_reply"
    __table_args__ = (
        Index("ix_sms_reply_status_received", "status", "received_at"),
        Index("ix_sms_reply_ticket", "ticket_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gateway_id: Mapped[str] = mapped_column(String(100), unique=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)  # normalised; masked on screen
    to: Mapped[str | None] = mapped_column(String(30))
    text: Mapped[str] = mapped_column(String(500))
    received_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(12))  # rating | opt_out | unparseable
    satisfaction: Mapped[str | None] = mapped_column(String(24))
    solved: Mapped[bool | None] = mapped_column(Boolean)
    result: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(12))
    ticket_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ticket.id"))
    # the phone's orders awaiting a callback when the reply came (ids), for the agent
    candidates: Mapped[list[int]] = mapped_column(JSONType, default=list)
    handled_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    handled_at: Mapped[datetime | None]
    handled_note: Mapped[str | None] = mapped_column(String(500))
