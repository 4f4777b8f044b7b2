"""Tables of notices (issue 15): phones that opted out of SMS, and units' notice e-mail addresses.

- `SmsOptOut`: a phone that asked for no more SMS (退订 / TD reply, or the admin on a citizen's
  call). The number is stored as it is (normalised), because it must be matched against the
  requester's phone of every new notice; it is shown masked everywhere (docs/notices.md).
  Undoing an opt-out deletes the row (the audit log keeps who did it).
- `UnitNoticeEmail`: an address of a unit that wants notices by e-mail, and which notice kinds
  (`dispatch`, `urge`, `warn`, `overdue` …; an empty list = every notice about the unit).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from jiesu.db.base import Base, JSONType, utcnow
from jiesu.org.models import Unit


class SmsOptOut(Base):
    __tablename__ = "sms_opt_out"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    source: Mapped[str] = mapped_column(String(20))  # sms | admin | portal
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UnitNoticeEmail(Base):
    __tablename__ = "unit_notice_email"
    __table_args__ = (UniqueConstraint("unit_id", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), index=True)
    address: Mapped[str] = mapped_column(String(200))
    kinds: Mapped[list[str]] = mapped_column(JSONType, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    unit: Mapped[Unit] = relationship()
