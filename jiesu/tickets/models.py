"""Tables of the work order.

A ticket's history is its events: every change appends one `Event` row (who, which unit, when,
what, the state before and after). Columns on `Ticket` are the current picture, kept for queries;
they are never changed without an event in the same transaction. `version` is the optimistic lock
that serialises concurrent actions on one ticket.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, Mapper, mapped_column, relationship

from jiesu.db.base import Base, JSONType, utcnow
from jiesu.org.models import Unit, User
from jiesu.taxonomy.models import Category
from jiesu.tickets.lifecycle import STATES

BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER


class Channel(StrEnum):
    phone = "phone"
    web = "web"
    app = "app"
    wechat = "wechat"
    sms = "sms"
    email = "email"
    open311 = "open311"
    collection_point = "collection_point"  # 说事点
    window = "window"  # 办不成事窗口
    import_ = "import"
    proactive = "proactive"  # 主动治理: a task the centre opens from an early warning


class Status(StrEnum):
    """The states of SPEC §3 (the transitions live in the lifecycle module)."""

    received = "received"
    answered = "answered"
    transferred = "transferred"
    rejected = "rejected"
    pending_dispatch = "pending_dispatch"
    dispatched = "dispatched"
    accepted = "accepted"
    replied = "replied"
    audited = "audited"
    evaluated = "evaluated"
    merged = "merged"
    closed = "closed"


STATUS_NAMES = STATES  # the lifecycle table is the one list of states and their names


# Text search on PostgreSQL: migration 0009 defines `jiesu_bigrams` and the GIN index
# `TEXT_INDEX` on this expression (PostgreSQL only, so it is not declared on the model); a
# search repeats the expression for the index to serve it (service.list_tickets).
TEXT_BIGRAMS = "jiesu_bigrams(ticket.title || ' ' || ticket.content)"
TEXT_INDEX = "ix_ticket_text_bigrams"


class Ticket(Base):
    __tablename__ = "ticket"
    __table_args__ = (
        Index("ix_ticket_status_created", "status", "created_at"),
        Index("ix_ticket_lead_status", "lead_unit_id", "status"),
        Index("ix_ticket_street_created", "street_id", "created_at"),
        Index("ix_ticket_status_due", "status", "due_at"),
        Index("ix_ticket_category_created", "category_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)  # YYYYMMDD + 5-digit sequence
    channel: Mapped[str] = mapped_column(String(20))
    request_type: Mapped[str | None] = mapped_column(ForeignKey("request_type.code"))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("category.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    requester_name: Mapped[str | None] = mapped_column(String(60))
    requester_phone: Mapped[str | None] = mapped_column(String(20), index=True)
    requester_confidential: Mapped[bool] = mapped_column(Boolean, default=False)
    address: Mapped[str | None] = mapped_column(String(300))
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    district_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"), index=True)
    street_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"))
    status: Mapped[str] = mapped_column(String(20))
    tier: Mapped[str | None] = mapped_column(String(8))
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    lead_unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"))
    round: Mapped[int] = mapped_column(Integer, default=1)  # 重办 rounds
    result: Mapped[str | None] = mapped_column(String(30))  # reply result code
    solved: Mapped[bool | None] = mapped_column(Boolean)  # from the evaluation
    satisfaction: Mapped[str | None] = mapped_column(String(24))
    master_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))  # 并单
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]  # completion deadline of the current round
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The citizen's tracking code (portal), stored as its SHA-256 like a password.
    tracking_hash: Mapped[str | None] = mapped_column(String(64))

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012

    category: Mapped[Category | None] = relationship()
    district: Mapped[Unit | None] = relationship(foreign_keys=[district_id])
    street: Mapped[Unit | None] = relationship(foreign_keys=[street_id])
    lead_unit: Mapped[Unit | None] = relationship(foreign_keys=[lead_unit_id])
    assignments: Mapped[list[Assignment]] = relationship(
        back_populates="ticket", order_by="Assignment.id"
    )
    events: Mapped[list[Event]] = relationship(back_populates="ticket", order_by="Event.seq")


class AssignmentRole(StrEnum):
    lead = "lead"  # 主办
    co_handler = "co_handler"  # 协办
    summoned = "summoned"  # 吹哨报到


class Assignment(Base):
    """One unit's part in one ticket, with its own timestamps."""

    __tablename__ = "assignment"
    __table_args__ = (Index("ix_assignment_unit_active", "unit_id", "active"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    role: Mapped[str] = mapped_column(String(12))
    round: Mapped[int] = mapped_column(Integer, default=1)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    dispatched_at: Mapped[datetime] = mapped_column(default=utcnow)
    accepted_at: Mapped[datetime | None]
    contacted_at: Mapped[datetime | None]
    replied_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(20))  # returned | escalated | done

    ticket: Mapped[Ticket] = relationship(back_populates="assignments")
    unit: Mapped[Unit] = relationship()


class Event(Base):
    """One entry of a ticket's append-only timeline."""

    __tablename__ = "event"
    __table_args__ = (
        UniqueConstraint("ticket_id", "seq"),
        Index("ix_event_action_at", "action", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, 3 … per ticket
    action: Mapped[str] = mapped_column(String(30))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))  # None: the system
    actor_unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"))
    state_before: Mapped[str | None] = mapped_column(String(20))
    state_after: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    ticket: Mapped[Ticket] = relationship(back_populates="events")
    actor: Mapped[User | None] = relationship()
    actor_unit: Mapped[Unit | None] = relationship()


@event.listens_for(Event, "before_update")
@event.listens_for(Event, "before_delete")
def _events_are_append_only(_mapper: Mapper[Event], _conn: Any, target: Event) -> None:
    raise PermissionError(f"event {target.id} of ticket {target.ticket_id} is append-only")


class TicketCounter(Base):
    """The last ticket sequence number handed out for one city-local day."""

    __tablename__ = "ticket_counter"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)  # YYYYMMDD
    last: Mapped[int] = mapped_column(Integer)


class IdempotencyKey(Base):
    """A create request's `Idempotency-Key`, per caller, and the ticket it made."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Outbox(Base):
    """A notification owed because of an event, written in the event's transaction.

    The webhook/SMS/WeChat deliverers read undelivered rows in id order and mark them delivered;
    a crash between the change and the notice loses neither.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_undelivered", "delivered_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("event.id"))  # or a job:
    job_id: Mapped[int | None] = mapped_column(ForeignKey("job.id"))  # a time-limit warning
    recipient: Mapped[str] = mapped_column(String(20))  # unit | requester | centre | supervisor
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))

    event: Mapped[Event | None] = relationship()  # set before the event has its id


class Job(Base):
    """A durable timer: something to do at `run_at` (a time-limit warning, an overdue notice).

    `key` makes each warning happen once: the same ticket, round, phase, kind and due can be
    scheduled again and again (every action reschedules) but never makes a second row. A worker
    claims due jobs (`FOR UPDATE SKIP LOCKED` on PostgreSQL) and does each in the transaction
    that marks it done: killed mid-job, the job rolls back and is done once, later.
    """

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_pending", "status", "run_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # warn | overdue | promise | rules
    # None for a `rules` job: a rule change worked through in batches (tickets/rule_changes.py)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    phase: Mapped[str | None] = mapped_column(String(20))
    run_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending|done|cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class Attachment(Base):
    """A photo a citizen sent with the request. The bytes live under `var/uploads/` by checksum
    (the same photo twice is stored once); the row says whose it is."""

    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
