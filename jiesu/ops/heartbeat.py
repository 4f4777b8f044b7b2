"""A process's heartbeat row (`heartbeat`, one per "host:pid"): written at start, at each step's
start and end (at most once a second), while idle (every `IDLE_BEAT_S`), and marked `stopping`
then `stopped` on a graceful exit. /metrics reads the rows: a worker whose beat grows old is
hung or gone (a SIGKILL leaves its row `running`, ageing), one marked `stopped` left cleanly.

Writing a beat is an upsert in its own short transaction; one that fails (the database is
briefly away) is logged and forgotten: a heartbeat never stops the work it reports on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.ops.models import Heartbeat

log = logging.getLogger("jiesu.ops")
MIN_BEAT_S = 1.0  # step starts and ends: at most one write a second
IDLE_BEAT_S = 10.0  # between rounds, waiting for work


class Heartbeats:
    """This process's heartbeat row."""

    def __init__(
        self,
        db: Database,
        *,
        kind: str = "worker",
        now: Callable[[], datetime] = utcnow,
        clock: Callable[[], float] = time.monotonic,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.db, self.kind, self.now, self.clock = db, kind, now, clock
        self.host = host or socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.name = f"{self.host}:{self.pid}"[:120]
        self.started_at: datetime | None = None
        self.last: float = float("-inf")  # clock of the last write

    def start(self) -> None:
        self.started_at = self.now()
        self._write(step=None, state="running", stopped_at=None)

    def beat(self, step: str | None, *, every_s: float = MIN_BEAT_S) -> bool:
        """A beat naming the step under way (None: between steps), unless one was written less
        than `every_s` ago; whether it was written."""
        if self.clock() - self.last < every_s:
            return False
        return self._write(step=step, state="running", stopped_at=None)

    def stopping(self) -> None:
        self._write(step=None, state="stopping", stopped_at=None)

    def stopped(self) -> None:
        self._write(step=None, state="stopped", stopped_at=self.now())

    def _write(self, *, step: str | None, state: str, stopped_at: datetime | None) -> bool:
        now = self.now()
        started = self.started_at or now
        values: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "host": self.host[:100], "pid": self.pid,
            "started_at": started, "beat_at": now, "step": step[:60] if step else None,
            "state": state, "stopped_at": stopped_at,
        }  # fmt: skip
        changed = {k: v for k, v in values.items() if k != "name"}
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        statement = (
            insert(Heartbeat)
            .values(values)
            .on_conflict_do_update(index_elements=["name"], set_=changed)
        )
        try:
            with self.db.write() as session:
                session.execute(statement)
        except Exception as exc:  # a heartbeat must never stop the work
            log.warning("heartbeat not written: %s", type(exc).__name__)
            self.last = self.clock()  # tried: the next try waits as a beat would
            return False
        self.last = self.clock()
        return True


def read(db: Database, name: str) -> Heartbeat | None:
    """A process's row (tests, the operator's checks)."""
    with db.read() as session:
        return session.scalar(select(Heartbeat).where(Heartbeat.name == name))
