"""Reads for analysis on a streaming read replica (JIESU_ANALYSIS_DATABASE_URL).

The pages that read much and may lag a few seconds — the 三率 table and rankings, the
dashboards, the assessment drill-downs, ranking exports, the reports' figures and the Parquet
export — read through `Database.analysis()`. Where the city sets an analysis URL (a PostgreSQL
hot standby fed by streaming replication, docs/operations.md), those reads go there, taking
their load off the primary that takes the calls; everything else (intake, actions, the work
lists, sign-in, the worker's claims) stays on the primary, which is the only one written.

`Replica.serves()` decides, per session, whether the replica may answer:

- **lag**: a standby that has replayed all it received from a streaming primary is current;
  one that is behind, or whose stream is down, is as old as its last replayed transaction
  (`now() - pg_last_xact_replay_timestamp()`). Past `max_lag_s` (JIESU_ANALYSIS_MAX_LAG, 60 s
  by default) the reads go to the primary until it has caught up. A database that is not in
  recovery (a copy, or the primary under another name) is taken as current.
- **freshness** (`fresh=True`): a reader right after its own writes (the worker's monthly
  report after its warnings scan) needs the replica to have replayed the primary's WAL up to
  now; it waits up to `FRESH_WAIT_S` for that, else reads the primary.
- **failure**: a replica that does not answer is not asked again for `CHECK_EVERY_S`; the
  reads go to the primary meanwhile. Each change of state is logged once, not per request.

Checks are cached for `CHECK_EVERY_S` per process, so a busy dashboard costs one small query
every few seconds, not one per page. An analysis session on the primary is read-only
(`postgresql_readonly`: the transaction is READ ONLY), as a standby is by itself, so that a page
that would write fails in the tests, not on the standby.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

LOG = logging.getLogger("jiesu.replica")

CHECK_EVERY_S = 5.0  # how long a lag check (or a failure) holds, per process
FRESH_WAIT_S = 10.0  # how long a fresh read waits for the replica to catch up
FRESH_POLL_S = 0.05
DEFAULT_MAX_LAG_S = 60.0
REPLICA_CONNECT_TIMEOUT_S = 5  # seconds (libpq's connect_timeout), unless the URL names one

# Seconds behind the primary: 0 for a standby that has replayed all it received while its
# stream is up, or for a database that is no standby at all.
LAG_SQL = text(
    """
    SELECT CASE
        WHEN NOT pg_is_in_recovery() THEN 0
        WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()
             AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') THEN 0
        ELSE COALESCE(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 1e9)
    END
    """
)
PRIMARY_LSN_SQL = text("SELECT pg_current_wal_lsn()::text")
REPLAYED_SQL = text(
    "SELECT NOT pg_is_in_recovery() OR pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)"
)


@dataclass
class Check:
    at: float  # monotonic time of the check
    lag_s: float | None  # None: the replica did not answer
    reason: str  # why it may not serve ("" when it may)


class Replica:
    """The analysis database and what this process last learnt of it."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_lag_s: float = DEFAULT_MAX_LAG_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.max_lag_s = max_lag_s
        self.clock = clock
        self._last: Check | None = None
        self._lock = threading.Lock()
        self._postgres = engine.dialect.name == "postgresql"

    def lag(self) -> float:
        """Seconds the replica is behind (raises if it does not answer)."""
        if not self._postgres:
            return 0.0
        with self.engine.connect() as conn:
            return float(conn.execute(LAG_SQL).scalar_one())

    def check(self) -> Check:
        """The cached state, refreshed past CHECK_EVERY_S. One thread probes at a time; the
        others meanwhile go by the last state (a replica that hangs holds up one session, not
        every analysis page of the process)."""
        last = self._last
        if last is not None and self.clock() - last.at < CHECK_EVERY_S:
            return last
        if not self._lock.acquire(blocking=last is None):
            assert last is not None
            return last
        try:
            last = self._last
            now = self.clock()
            if last is not None and now - last.at < CHECK_EVERY_S:
                return last
            lag: float | None
            try:
                lag = measured = self.lag()
            except DBAPIError as exc:
                lag, reason = None, f"the replica does not answer ({type(exc.orig).__name__})"
            else:
                reason = (
                    f"the replica is {measured:.0f} s behind (more than {self.max_lag_s:.0f} s)"
                    if measured > self.max_lag_s
                    else ""
                )
            self._last = Check(now, lag, reason)
            _record_lag(lag)
            if last is None or bool(last.reason) != bool(reason):
                if reason:
                    LOG.warning("analysis reads go to the primary: %s", reason)
                elif last is not None:
                    LOG.info("analysis reads go to the replica again (lag %.1f s)", lag or 0.0)
            return self._last
        finally:
            self._lock.release()

    def serves(self, primary: Engine | None = None) -> bool:
        """Whether an analysis session may read the replica now. `primary`: a fresh read, which
        needs everything the primary has committed so far replayed."""
        if self.check().reason:
            return False
        if primary is None or not self._postgres or primary.dialect.name != "postgresql":
            return True
        return self.caught_up(primary)

    def caught_up(self, primary: Engine, wait_s: float = FRESH_WAIT_S) -> bool:
        """Waits until the replica has replayed the primary's WAL as it is now (True), or
        `wait_s` has passed or the replica fails (False)."""
        with primary.connect() as conn:
            lsn = conn.execute(PRIMARY_LSN_SQL).scalar_one()
        deadline = time.monotonic() + wait_s  # real time (`clock` paces the cached checks)
        try:
            with self.engine.connect() as conn:
                while True:
                    if conn.execute(REPLAYED_SQL, {"lsn": lsn}).scalar_one():
                        return True
                    if time.monotonic() >= deadline:
                        LOG.warning(
                            "a fresh analysis read goes to the primary: the replica had not "
                            "replayed %s after %.0f s",
                            lsn,
                            wait_s,
                        )
                        return False
                    conn.rollback()  # a new snapshot for the next look
                    time.sleep(FRESH_POLL_S)
        except DBAPIError:
            with self._lock:
                self._last = None  # checked again on the next session
            return False


def _record_lag(lag: float | None) -> None:
    from jiesu.ops.metrics import REPLICA_LAG

    REPLICA_LAG.set(-1.0 if lag is None else lag)
