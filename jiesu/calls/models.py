"""Tables of the call centre (issue 15): one row per incoming call the telephony reports.

A call is addressed to one agent (the user the telephony routed it to, matched by username);
the agent's console polls this table for new rows addressed to them (`views.call_events`), so
the pop works across several app processes without a broker. The link to an order is kept on
the call (`ticket_id`): an order may have several calls (the citizen calls again).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from jiesu.db.base import Base, utcnow
from jiesu.tickets.models import BigId


class Call(Base):
    __tablename__ = "call"
    __table_args__ = (
        # The pop: new rows addressed to one agent, read every second by their open console.
        Index("ix_call_agent_id", "agent_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)  # the telephony's own id
    caller: Mapped[str] = mapped_column(String(20), index=True)  # normalised digits
    called: Mapped[str] = mapped_column(String(30))  # the line dialled (12345, a sub-line)
    agent: Mapped[str] = mapped_column(String(60))  # as the telephony sent it
    agent_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    recording_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
