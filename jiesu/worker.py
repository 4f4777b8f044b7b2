"""The worker (`jiesu worker`): the composition root of what happens off the request.

One loop of steps, each in its own transactions:

- due jobs: time-limit warnings, overdue and promise notices, queued rule changes
  (`tickets.scheduled.run_due_jobs`);
- deliveries: the outbox fanned out to webhooks, SMS and e-mail, retried with backoff, dead
  letters (`delivery.service.run_deliveries`);
- every ten minutes (and at start): the reports that are owed, the month freeze and the
  warnings scan (`reports.build.run_schedule`);
- every ten minutes (and at start): knowledge-base entries past their last day expire, and
  their owners are warned 30 days ahead (`knowledge.service.run_knowledge_jobs`).

Several workers may run against one PostgreSQL (docs/operations.md): the due jobs, the
deliveries and the knowledge expiry claim their rows with `FOR UPDATE SKIP LOCKED`, so each
row is done by one worker; the periodic steps (reports owed, month freeze, warnings scan,
knowledge suggestions) are whole-city scans, so each is run by one worker at a time — whoever
takes its advisory lock — and the others skip that round instead of doing it again.

A step that fails is logged and the others go on (a broken SMS gateway never stops the
timers). SIGTERM, SIGINT or SIGHUP stops the loop after the step under way, so no step is cut short;
a second one (or SIGKILL) ends the process at once: the step's transaction is not committed,
so the database rolls it back and its jobs stay pending for the next worker, never half done.

Each worker keeps its heartbeat row (`ops/heartbeat.py`): at start, at each step's start and
end (at most once a second), every ten seconds while idle, `stopping` then `stopped` on a
graceful exit. /metrics turns the rows into the workers' liveness.

The ticket package does not know this module: it writes jobs and outbox rows in the change's
transaction; what runs them is composed here (docs/architecture.md, import rules).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from sqlalchemy import text

from jiesu.db.engine import Database
from jiesu.ops.heartbeat import IDLE_BEAT_S, Heartbeats

log = logging.getLogger("jiesu.worker")
PERIODIC_EVERY_S = 600.0  # reports owed and the warnings scan: checked every ten minutes
SUGGESTIONS_EVERY_S = 86_400.0  # the knowledge base's suggested entries: daily (and at start)


def due_jobs(db: Database) -> int:
    from jiesu.tickets.scheduled import run_due_jobs

    return run_due_jobs(db)


def deliveries(db: Database) -> int:
    from jiesu.delivery.service import run_deliveries

    return run_deliveries(db)


def knowledge_jobs(db: Database) -> int:
    from jiesu.knowledge.service import run_knowledge_jobs

    return run_knowledge_jobs(db)


def knowledge_suggestions(db: Database) -> int:
    from jiesu.knowledge.suggest import run_suggestions

    log.info("knowledge suggestions: %d open", run_suggestions(db))
    return 0  # a daily recount: nothing left waiting


def periodic(db: Database) -> int:
    from jiesu.reports.build import run_schedule

    run_schedule(db)
    return 0  # nothing left waiting: the next round need not come at once


def lock_key(name: str) -> int:
    """The step's PostgreSQL advisory lock key: stable across processes and releases."""
    return zlib.crc32(f"jiesu.worker:{name}".encode())


@contextmanager
def only_one(db: Database, name: str) -> Iterator[bool]:
    """Whether this worker may run the step now: on PostgreSQL, whether it took the step's
    session advisory lock (held on a connection of its own until the step ends, released by
    the server if the process dies); on SQLite there is one worker, always yes."""
    if db.dialect != "postgresql":
        yield True
        return
    with db.engine.connect() as conn:
        key = lock_key(name)
        got = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
        conn.commit()  # a session lock outlives the transaction: nothing is held open
        try:
            yield got
        finally:
            if got:
                try:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
                except Exception:  # the connection broke: its session (and lock) is gone
                    conn.invalidate()


@dataclass
class Step:
    name: str
    run: Callable[[Database], int]  # how much it did (0: nothing was due)
    every_s: float = 0.0  # 0: every round
    single: bool = False  # a whole-city scan: one worker at a time (`only_one`)
    last: float = field(default=float("-inf"))
    failing: bool = False  # its traceback is logged once, not every round until it recovers

    def due(self, clock: float) -> bool:
        return clock - self.last >= self.every_s


def default_steps() -> list[Step]:
    # Jobs before deliveries: a warning written this round is delivered this round.
    return [
        Step("reports and warnings", periodic, every_s=PERIODIC_EVERY_S, single=True),
        Step("due jobs", due_jobs),
        Step("knowledge expiry", knowledge_jobs, every_s=PERIODIC_EVERY_S),
        Step(
            "knowledge suggestions", knowledge_suggestions, every_s=SUGGESTIONS_EVERY_S, single=True
        ),
        Step("deliveries", deliveries),
    ]


@dataclass
class Worker:
    db: Database
    steps: list[Step] = field(default_factory=default_steps)
    stop: threading.Event = field(default_factory=threading.Event)  # set: stop after the step
    signalled: bool = False  # a signal handler only sets this flag (it may not take a lock)
    heartbeat: Heartbeats | None = None

    @property
    def stopping(self) -> bool:
        return self.signalled or self.stop.is_set()

    def round(self) -> int:
        """Run each step that is due once; how much they did. A failing step is logged."""
        done = 0
        for step in self.steps:
            if self.stopping:
                break
            clock = time.monotonic()
            if not step.due(clock):
                continue
            step.last = clock
            self._beat(step.name)
            try:
                n = self._run(step)
            except Exception as exc:  # one step's failure must not stop the others
                self._beat(None)
                if step.failing:
                    log.warning("worker step %r failed again: %s", step.name, exc)
                else:
                    log.exception("worker step %r failed", step.name)
                step.failing = True
                continue
            self._beat(None)
            if step.failing:
                log.info("worker step %r works again", step.name)
                step.failing = False
            if n:
                took = round((time.monotonic() - clock) * 1000, 1)
                log.info("%s: %d", step.name, n,
                         extra={"step": step.name, "done": n, "duration_ms": took})  # fmt: skip
            done += n
        return done

    def _run(self, step: Step) -> int:
        if not step.single:
            return step.run(self.db)
        with only_one(self.db, step.name) as mine:
            if not mine:
                log.info("%s: another worker runs it", step.name)
                return 0
            return step.run(self.db)

    def _beat(self, step: str | None, every_s: float | None = None) -> None:
        if self.heartbeat is not None:
            if every_s is None:
                self.heartbeat.beat(step)
            else:
                self.heartbeat.beat(step, every_s=every_s)

    def run(self, *, interval: float = 5.0, once: bool = False) -> None:
        """Rounds until stopped: at once while there was work, else after `interval` seconds.
        `once`: until a round finds nothing to do."""
        while not self.stopping:
            if self.round():
                continue
            if once:
                return
            until = time.monotonic() + interval
            while not self.stopping and (left := until - time.monotonic()) > 0:
                self._beat(None, IDLE_BEAT_S)
                time.sleep(min(left, 0.1))

    def stop_on_signals(self) -> None:
        """SIGTERM, SIGINT and SIGHUP end the loop after the step under way (SIGHUP too: a
        worker has no configuration to reload, and its supervisor starts it again with the new
        code); a second one ends the process at once (the default actions come back), its step
        rolled back."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            self.signalled = True
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGHUP, handler)


def work(db: Database, *, interval: float = 5.0, once: bool = False) -> None:
    """The `jiesu worker` loop, stopping gracefully on SIGTERM/SIGINT, its heartbeat kept."""
    beats = Heartbeats(db)
    worker = Worker(db, heartbeat=beats)
    worker.stop_on_signals()
    beats.start()
    log.info("worker %s started", beats.name)
    try:
        worker.run(interval=interval, once=once)
        if worker.stopping:
            beats.stopping()
            log.info("worker %s stopping after its step", beats.name)
    finally:
        beats.stopped()
        log.info("worker %s stopped", beats.name)
