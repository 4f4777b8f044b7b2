"""The stored side of the counters of `auth/limits.py` (table `rate_counter`).

A counter is one row per (scope, key), changed under its row lock (PostgreSQL) or the database's
write lock (SQLite), so several app processes count together and a restart forgets nothing.
Rows idle for a day are deleted whenever a key opens a new window.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from jiesu.auth.limits import Budget, Counter, retry_after, spend
from jiesu.auth.models import RateCounter

IDLE = timedelta(days=1)


def _key(key: str) -> str:
    return key[:64]


def blocked(scope: str, key: str, *, db_session: Session, now: datetime) -> timedelta | None:
    """How long `key` is still blocked in `scope` (None: it is not). Reads only."""
    row = db_session.get(RateCounter, (scope, _key(key)))
    return retry_after(_counter(row) if row is not None else None, now)


def take(
    scope: str, key: str, budget: Budget, *, db_session: Session, now: datetime
) -> timedelta | None:
    """Let one event through and count it (None), or say how long the key is blocked."""
    row = _locked_row(scope, _key(key), db_session=db_session, now=now)
    wait = retry_after(_counter(row), now)
    if wait is not None:
        return wait
    _store(row, spend(_counter(row), budget, now), db_session=db_session, now=now)
    return None


def count(scope: str, key: str, budget: Budget, *, db_session: Session, now: datetime) -> None:
    """Count one event that was let through (a failure found after the check)."""
    row = _locked_row(scope, _key(key), db_session=db_session, now=now)
    _store(row, spend(_counter(row), budget, now), db_session=db_session, now=now)


def _counter(row: RateCounter) -> Counter:
    return Counter(window_start=row.window_start, hits=row.hits, strikes=row.strikes,
                   blocked_until=row.blocked_until)  # fmt: skip


def _locked_row(scope: str, key: str, *, db_session: Session, now: datetime) -> RateCounter:
    dialect = db_session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    db_session.execute(
        insert(RateCounter)
        .values(scope=scope, key=key, window_start=now, hits=0, strikes=0)
        .on_conflict_do_nothing(index_elements=[RateCounter.scope, RateCounter.key])
    )
    row = db_session.scalar(
        select(RateCounter)
        .where(RateCounter.scope == scope, RateCounter.key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


def _store(row: RateCounter, counter: Counter, *, db_session: Session, now: datetime) -> None:
    fresh = counter.hits == 1 and counter.window_start == now
    row.window_start, row.hits = counter.window_start, counter.hits
    row.strikes, row.blocked_until = counter.strikes, counter.blocked_until
    db_session.flush()
    if fresh:
        purge(db_session=db_session, now=now)


def purge(*, db_session: Session, now: datetime) -> None:
    """Delete counters idle for a day (at most 500 at a time; rows another writer holds are
    skipped, so two purges never wait on each other)."""
    idle = now - IDLE
    stale = (
        select(RateCounter.scope, RateCounter.key)
        .where(
            RateCounter.window_start < idle,
            or_(RateCounter.blocked_until.is_(None), RateCounter.blocked_until < idle),
        )
        .limit(500)
        .with_for_update(skip_locked=True)
    )
    db_session.execute(
        delete(RateCounter)
        .where(tuple_(RateCounter.scope, RateCounter.key).in_(stale))
        .execution_options(synchronize_session=False)
    )
