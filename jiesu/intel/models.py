"""Tables of the intelligence package: the address gazetteer's places (城市包 places.csv), the
classifier registry and the advice given at intake."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from jiesu.db.base import Base, JSONType, utcnow
from jiesu.org.models import Unit
from jiesu.tickets.models import BigId


class Place(Base):
    """A name the address resolver knows beyond the official divisions: an alias (建国门外 for
    建外街道), a landmark, a road, an estate or a community, with the unit it lies in (a street,
    or a district when it crosses streets). Matched by (name, unit) on pack load: the same name
    may stand for places in two units, and resolution ranks them."""

    __tablename__ = "place"
    __table_args__ = (UniqueConstraint("name", "unit_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(16))  # alias landmark road community estate
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), index=True)
    aliases: Mapped[list[str]] = mapped_column(JSONType, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    unit: Mapped[Unit] = relationship()


class IntelModel(Base):
    """A trained classifier, versioned with its evaluation; one active per kind (SPEC §8).

    The artifact is kept in the database, so every server process of the city loads the same
    model without a shared disk, and its SHA-256 is checked before it is unpickled."""

    __tablename__ = "intel_model"
    __table_args__ = (UniqueConstraint("kind", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # category | request_type
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(300))  # what it was trained on
    rows: Mapped[int] = mapped_column(Integer)
    labels: Mapped[list[str]] = mapped_column(JSONType, default=list)
    evaluation: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    artifact: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    sha256: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    activated_at: Mapped[datetime | None]


class IntakeAdviceRow(Base):
    """What intelligence suggested when a ticket came in, and what intake did with it: the
    answer to a replayed request, the dispatcher's hints, and the measure of dispatch accuracy
    (the suggestion against the unit that finally handled it)."""

    __tablename__ = "intake_advice"

    ticket_id: Mapped[int] = mapped_column(BigId, ForeignKey("ticket.id"), primary_key=True)
    advice: Mapped[dict[str, Any]] = mapped_column(JSONType)
    category_model_id: Mapped[int | None] = mapped_column(ForeignKey("intel_model.id"))
    auto_dispatched: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
