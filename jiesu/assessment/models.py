"""Tables of the assessment and analysis: facts and rollups, warnings, links, reports.

- `metric_fact`: what each order counts for, per unit (one row per order × unit that led it, and
  one for the service centre) — `facts.py` computes it from the timeline. The drill-down reads it.
- `metric_rollup`: the sums of the facts per unit and city-local day, kept up to date action by
  action (the order's old facts subtracted, its new ones added, in the action's transaction).
  Counts only (evaluations per satisfaction level, never points): the pack's scores and weights
  are applied when figures are read.
- `month_freeze` / `frozen_fact`: a month's figures as published. At the pack's cut-off
  (`assessment.cutoff_day`) the month's facts are copied once, with the orders open past due at
  that moment and the scores, weights and sample rules then in force; the ranking and the
  drill-down of a frozen month read the copy, whatever arrives later.
- `intake_fact` / `intake_rollup`: how many requests came in per day and district by street,
  street × top category, category, channel and request type (the dashboard's and the burst
  detector's counts).
- `warning`: an early warning with its evidence; `ticket_link`: the orders a proactive task (or a
  common problem) was opened for; `report`: the daily, weekly and monthly reports as built.

`jiesu metrics rebuild` recomputes the facts and rollups from the events; the result must equal
what the actions maintained (a test checks it).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from jiesu.assessment.facts import COUNTERS
from jiesu.db.base import Base, JSONType, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")
Bytes = LargeBinary().with_variant(postgresql.BYTEA(), "postgresql")


def _counter_columns(big: bool) -> dict[str, Any]:
    kind = BigInteger() if big else Integer()
    return {name: mapped_column(kind, default=0, nullable=False) for name in COUNTERS}


class MetricFact(Base):
    __tablename__ = "metric_fact"
    __table_args__ = (
        Index("ix_metric_fact_unit_day", "unit_id", "day"),
        Index("ix_metric_fact_contact_due", "contact_due"),
    )

    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    # The first contact's due while it is still to be made (facts.PAUSED while suspended): the
    # order is pending, not unresponded, until then.
    contact_due: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locals().update(_counter_columns(big=False))


class MetricRollup(Base):
    __tablename__ = "metric_rollup"
    __table_args__ = (Index("ix_metric_rollup_day", "day"),)

    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    locals().update(_counter_columns(big=True))


class MonthFreeze(Base):
    """A month whose figures were frozen (published) at its cut-off, with the rules then in force."""

    __tablename__ = "month_freeze"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)  # 2026-10
    frozen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # scores, weights …


class FrozenFact(Base):
    """One order's fact for one unit as it stood when its month was frozen."""

    __tablename__ = "frozen_fact"
    __table_args__ = (Index("ix_frozen_fact_period_unit", "period", "unit_id"),)

    period: Mapped[str] = mapped_column(
        ForeignKey("month_freeze.period", ondelete="CASCADE"), primary_key=True
    )
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    overdue_open: Mapped[int] = mapped_column(Integer, default=0)  # open past due at the cut-off
    contact_pending: Mapped[int] = mapped_column(Integer, default=0)  # contact not yet due then
    locals().update(_counter_columns(big=False))


class IntakeFact(Base):
    __tablename__ = "intake_fact"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    district_id: Mapped[int] = mapped_column(Integer, default=0)  # 0: not known
    keys: Mapped[list[str]] = mapped_column(JSONType, default=list)  # "dim:key" per count


class IntakeRollup(Base):
    __tablename__ = "intake_rollup"
    __table_args__ = (
        UniqueConstraint("day", "district_id", "dim", "key", name="uq_intake_rollup"),
        Index("ix_intake_rollup_dim_day", "dim", "day"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    district_id: Mapped[int] = mapped_column(Integer)  # 0: not known
    dim: Mapped[str] = mapped_column(
        String(12)
    )  # all | street | street_top | category | channel | type
    key: Mapped[str] = mapped_column(String(40))
    n: Mapped[int] = mapped_column(Integer, default=0)


class Warning(Base):
    """An early warning (预警): what was found, why, and the orders behind it."""

    __tablename__ = "warning"
    __table_args__ = (Index("ix_warning_status_day", "status", "day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))  # burst|repeat|bounce|inaction|topic|theme
    key: Mapped[str] = mapped_column(String(160), unique=True)
    day: Mapped[date] = mapped_column(Date)  # the day (or month's first day) it is about
    title: Mapped[str] = mapped_column(String(200))
    explanation: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    area_unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"))  # the unit concerned
    category_code: Mapped[str | None] = mapped_column(String(20))
    figures: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    evidence: Mapped[list[int]] = mapped_column(JSONType, default=list)  # ticket ids
    status: Mapped[str] = mapped_column(String(12), default="open")  # open|task|dismissed
    task_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))
    handled_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    handled_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TicketLink(Base):
    """An order linked to a proactive task or a common problem handled once (举一反三)."""

    __tablename__ = "ticket_link"
    __table_args__ = (Index("ix_ticket_link_linked", "linked_id"),)

    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), primary_key=True)
    linked_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12))  # evidence | common
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))


class Report(Base):
    """A daily bulletin, weekly summary or monthly analysis as built (HTML, PDF, Excel)."""

    __tablename__ = "report"
    __table_args__ = (UniqueConstraint("kind", "period"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # daily | weekly | monthly
    period: Mapped[str] = mapped_column(String(12))  # 2026-11-03 | 2026-W45 | 2026-10
    title: Mapped[str] = mapped_column(String(200))
    html: Mapped[str] = mapped_column(Text)
    pdf: Mapped[bytes] = mapped_column(Bytes)
    xlsx: Mapped[bytes] = mapped_column(Bytes)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)  # how long it took to build
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))  # None: worker
