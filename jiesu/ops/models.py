"""The processes' heartbeats: each `jiesu worker` (and each app process) keeps one row up to
date, so that /metrics and the readiness check can tell a worker that stopped beating."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from jiesu.db.base import Base, UTCDateTime


class Heartbeat(Base):
    __tablename__ = "heartbeat"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)  # "host:pid", unique per process
    kind: Mapped[str] = mapped_column(String(20), index=True)  # worker | web
    host: Mapped[str] = mapped_column(String(100))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    beat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    step: Mapped[str | None] = mapped_column(String(60))  # the step under way, None between
    state: Mapped[str] = mapped_column(String(20), default="running")  # running|stopping|stopped
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
