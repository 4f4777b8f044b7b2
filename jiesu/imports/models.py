"""Tables of imports (issue 15): which order each imported row became.

`imported_order` ties a row of an import source (a file's lineage, named by `--source`) to the
ticket it made: unique on (source, external_id), so running the same file again updates the
orders it made instead of making them twice. `row_hash` is the SHA-256 of the row's mapped
values (unchanged → nothing to do); `timeline_hash` of the values the timeline was made from
(those events stay: the timeline is append-only, see docs/import.md).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from jiesu.db.base import Base, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements only INTEGER


class ImportedOrder(Base):
    """One row of an import source and the order it became."""

    __tablename__ = "imported_order"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(60))
    external_id: Mapped[str] = mapped_column(String(100))
    ticket_id: Mapped[int] = mapped_column(BigId, ForeignKey("ticket.id"), index=True)
    row_hash: Mapped[str] = mapped_column(String(64))
    timeline_hash: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
