"""Tables of the knowledge base (知识库, SPEC §7, issue 16).

An **entry** (`kb_entry`) is one policy answer, owned by a department. Its content lives in
**versions** (`kb_version`): the owner drafts or updates a version, the service centre reviews
and publishes it. The entry points at the version answering now (`published_version_id`) and
at the one being worked on (`pending_version_id`: a draft, submitted for review, or returned):
an entry under review keeps its published version answering. The entry keeps the answering
version's title, category, owner and validity, for lists and the expiry scan.

`kb_use` is one use of an entry to answer an order (one per order: "answer with this entry");
`kb_flag` an agent's report that an entry is wrong or outdated, which goes to its owner;
`kb_suggestion` a cluster of consultations the base could not answer (answered without an
entry, or dispatched), suggested to a department as a new entry, with the orders behind it.
The search index's own tables belong to `search.py` (migration 0021).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from jiesu.db.base import Base, JSONType, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER

# The entry as a whole: never published yet, answering, withdrawn by the centre, past its date.
ENTRY_STATUSES = ("draft", "published", "withdrawn", "expired")
# A version: being written, waiting for the centre, sent back, answering, replaced by a newer one.
VERSION_STATES = ("draft", "submitted", "returned", "published", "superseded", "discarded")
FLAG_REASONS = {
    "wrong": "内容有误",
    "outdated": "政策已过时",
    "unclear": "表述不清",
    "other": "其他",
}
FLAG_STATUSES = ("open", "fixed", "dismissed")
SUGGESTION_STATUSES = ("open", "drafted", "dismissed")


class KnowledgeEntry(Base):
    __tablename__ = "kb_entry"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)  # KB-000123, or an import's own
    status: Mapped[str] = mapped_column(String(12), default="draft", index=True)
    owner_unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), index=True)
    category_code: Mapped[str | None] = mapped_column(String(20), index=True)
    title: Mapped[str] = mapped_column(String(200))
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date, index=True)  # last day it answers
    # kb_version ids (no foreign key: the two tables point at each other)
    published_version_id: Mapped[int | None] = mapped_column(BigId)
    pending_version_id: Mapped[int | None] = mapped_column(BigId)
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    last_used_at: Mapped[datetime | None] = mapped_column()
    open_flags: Mapped[int] = mapped_column(Integer, default=0)
    # The valid_to the owner was warned about (30 days ahead): a new date warns again.
    expiry_warned_for: Mapped[date | None] = mapped_column(Date)
    demo: Mapped[bool] = mapped_column(Boolean, default=False)  # written for the demo city
    revision: Mapped[int] = mapped_column(Integer, default=1)  # bumped on every change
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column()


class KnowledgeVersion(Base):
    __tablename__ = "kb_version"
    __table_args__ = (UniqueConstraint("entry_id", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(BigId, ForeignKey("kb_entry.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, … within the entry
    state: Mapped[str] = mapped_column(String(12), default="draft", index=True)
    title: Mapped[str] = mapped_column(String(200))
    answer: Mapped[str] = mapped_column(Text)
    category_code: Mapped[str | None] = mapped_column(String(20))
    owner_unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"))
    keywords: Mapped[list[str]] = mapped_column(JSONType, default=list)
    questions: Mapped[list[str]] = mapped_column(JSONType, default=list)  # as callers ask
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str | None] = mapped_column(String(300))  # the policy document
    link: Mapped[str | None] = mapped_column(String(500))
    change_note: Mapped[str | None] = mapped_column(String(500))  # what the author changed
    author_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column()
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    reviewed_at: Mapped[datetime | None] = mapped_column()
    review_note: Mapped[str | None] = mapped_column(String(500))
    published_at: Mapped[datetime | None] = mapped_column()


class KnowledgeUse(Base):
    """An order answered with an entry (the `answer` action's `entry` field)."""

    __tablename__ = "kb_use"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(BigId, ForeignKey("kb_entry.id"), index=True)
    version_number: Mapped[int] = mapped_column(Integer)
    ticket_id: Mapped[int] = mapped_column(BigId, ForeignKey("ticket.id"), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    used_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class KnowledgeFlag(Base):
    """An entry reported wrong or outdated (by an agent, from the call); its owner acts on it."""

    __tablename__ = "kb_flag"
    __table_args__ = (Index("ix_kb_flag_entry_status", "entry_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(BigId, ForeignKey("kb_entry.id"))
    version_number: Mapped[int | None] = mapped_column(Integer)
    ticket_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("ticket.id"))
    reason: Mapped[str] = mapped_column(String(12))  # FLAG_REASONS
    note: Mapped[str | None] = mapped_column(String(1000))
    status: Mapped[str] = mapped_column(String(12), default="open")
    raised_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    raised_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    resolved_at: Mapped[datetime | None] = mapped_column()
    resolution_note: Mapped[str | None] = mapped_column(String(1000))


class KnowledgeSuggestion(Base):
    """Consultations the base could not answer, clustered: a suggested new entry for a
    department, with the orders behind it (`ticket_ids`)."""

    __tablename__ = "kb_suggestion"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)  # stable fingerprint (upserts)
    owner_unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"), index=True)
    category_code: Mapped[str | None] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(200))  # the representative question
    terms: Mapped[list[str]] = mapped_column(JSONType, default=list)  # the theme's words
    samples: Mapped[list[str]] = mapped_column(JSONType, default=list)  # a few texts, masked
    ticket_ids: Mapped[list[int]] = mapped_column(JSONType, default=list)
    size: Mapped[int] = mapped_column(Integer, default=0)
    answered_without: Mapped[int] = mapped_column(Integer, default=0)  # answered, no entry
    dispatched: Mapped[int] = mapped_column(Integer, default=0)  # had to be dispatched
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12), default="open", index=True)
    entry_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("kb_entry.id"))
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    decided_at: Mapped[datetime | None] = mapped_column()
    extra: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class KnowledgeVector(Base):
    """The sentence encoder's vector of an entry's answering version (`encoder.py`, migration
    0022): 384 float16 values as bytes, with the version's validity so that a search can keep
    to what answers today without a join. Only entries that answer have one (publish writes it,
    withdrawal and expiry remove it). `serial` grows with every write: (count, max serial)
    tells a process that its matrix is stale."""

    __tablename__ = "kb_vector"

    entry_id: Mapped[int] = mapped_column(BigId, ForeignKey("kb_entry.id"), primary_key=True)
    version_number: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(60))  # which encoder wrote it
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    serial: Mapped[int] = mapped_column(BigId, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
