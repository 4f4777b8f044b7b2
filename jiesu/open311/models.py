"""Tables of Open311 GeoReport v2 (issue 15): the civic apps' API keys and what an Open311
request brought beyond the order itself.

- `Open311Key`: one civic app's key. Only its SHA-256 is stored (the value is shown once, like a
  system token); it acts as one of the city's users (an intake role), narrowed to the `open311`
  channel and the agent role; revocable; `last_used_at` says whether anyone still uses it.
- `Open311Request`: the order an Open311 POST made, with the key that made it, the token the
  answer carried (`GET tokens/{token}`), and the fields GeoReport has and a ticket has not
  (address_id, media_url, device_id, account_id, the attributes). No name, phone or e-mail here:
  name and phone go to the ticket's requester (masked like any other); the e-mail is not kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from jiesu.db.base import Base, JSONType, utcnow
from jiesu.org.models import User

BigId = BigInteger().with_variant(Integer(), "sqlite")


class Open311Key(Base):
    __tablename__ = "open311_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(60))  # the civic app, e.g. 随手拍 App
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(12))  # the key's first characters, to tell keys apart
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(foreign_keys=[user_id])


class Open311Request(Base):
    __tablename__ = "open311_request"

    ticket_id: Mapped[int] = mapped_column(BigId, ForeignKey("ticket.id"), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("open311_key.id"), index=True)
    token: Mapped[str] = mapped_column(String(40), unique=True)
    address_id: Mapped[str | None] = mapped_column(String(100))
    media_url: Mapped[str | None] = mapped_column(String(500))
    device_id: Mapped[str | None] = mapped_column(String(100))
    account_id: Mapped[str | None] = mapped_column(String(100))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
