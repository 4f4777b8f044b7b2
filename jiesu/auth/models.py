"""Tables of authentication."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from jiesu.db.base import Base, JSONType, utcnow
from jiesu.org.models import User


class ApiToken(Base):
    """A bearer token. Only its SHA-256 is stored, so a leaked database leaks no live token."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(10), default="login")  # login | session | system
    name: Mapped[str | None] = mapped_column(String(60))
    # A system token may be narrowed to one intake channel and/or to one role of its user's.
    scope_channel: Mapped[str | None] = mapped_column(String(20))
    scope_role: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class AuditLog(Base):
    """Who did what outside a ticket's own timeline: sign-ins, reveals of personal data, account
    and token changes. Failed sign-ins here also drive the per-address rate limit."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_action_ip_at", "action", "ip", "at"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(30))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    username: Mapped[str | None] = mapped_column(String(60))
    ip: Mapped[str | None] = mapped_column(String(64))
    ticket_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), index=True
    )
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class RateCounter(Base):
    """One key's events in its current window (auth/limits.py): failed look-ups of a ticket
    number, portal submissions per address and in all. Shared by every app process; rows idle
    for a day are deleted as new windows open."""

    __tablename__ = "rate_counter"
    __table_args__ = (Index("ix_rate_counter_window_start", "window_start"),)

    scope: Mapped[str] = mapped_column(String(20), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime]
    hits: Mapped[int] = mapped_column(Integer, default=0)
    strikes: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[datetime | None]
