"""The rules of the limits on guessing and flooding (pure: no database, no web).

Two kinds of limit live here, both decided from a few stored numbers so that any number of app
processes share them through the database:

- An account's lock (`account_lock`): every `ACCOUNT_FAILURES` wrong passwords since the last
  good sign-in lock the account, for `ACCOUNT_LOCK` the first time and twice as long each time
  after (up to a day). A day after the last lock ended the count starts afresh.
- A counter (`Counter`, `Budget`, `spend`): events per key (an address, a ticket number, the
  whole portal) in a fixed window. When a window's events reach the budget's `limit` the key is
  blocked: until the window ends, or, with `backoff`, for one window the first time and twice
  as long each time after (up to `cap`). A day after the last block ended that doubling is
  forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

ACCOUNT_FAILURES = 5
ACCOUNT_LOCK = timedelta(minutes=15)
LOCK_CAP = timedelta(hours=24)
FORGET_AFTER = timedelta(hours=24)  # a quiet day after a block forgets the doubling


def doubling(strike: int, base: timedelta, cap: timedelta = LOCK_CAP) -> timedelta:
    """The `strike`-th block (1, 2, 3 …): base, 2 × base, 4 × base … never more than `cap`."""
    if strike <= 1:
        return min(base, cap)
    if strike > 40:  # 2**40 windows is beyond any cap
        return cap
    return min(base * (1 << (strike - 1)), cap)


def account_lock(
    failures: int, locked_until: datetime | None, now: datetime
) -> tuple[int, datetime | None]:
    """One more wrong password for an account that had `failures` since its last good sign-in:
    the new count and, when this one earns a lock, when the lock ends (else None)."""
    if locked_until is not None and now >= locked_until + FORGET_AFTER:
        failures = 0
    failures += 1
    if failures % ACCOUNT_FAILURES:
        return failures, None
    return failures, now + doubling(failures // ACCOUNT_FAILURES, ACCOUNT_LOCK)


@dataclass(frozen=True)
class Budget:
    limit: int  # events per window; the one that reaches it is the last let through
    window: timedelta
    backoff: bool = False
    cap: timedelta = LOCK_CAP


@dataclass(frozen=True)
class Counter:
    window_start: datetime
    hits: int = 0
    strikes: int = 0
    blocked_until: datetime | None = None


def retry_after(counter: Counter | None, now: datetime) -> timedelta | None:
    """How long the key is still blocked (None: it is not)."""
    if counter is None or counter.blocked_until is None or counter.blocked_until <= now:
        return None
    return counter.blocked_until - now


def spend(counter: Counter | None, budget: Budget, now: datetime) -> Counter:
    """The counter after one more event at `now` (the caller has checked `retry_after`)."""
    if counter is None:
        counter = Counter(window_start=now)
    if counter.blocked_until is not None and now >= counter.blocked_until + FORGET_AFTER:
        counter = replace(counter, strikes=0, blocked_until=None)
    if now >= counter.window_start + budget.window:
        counter = replace(counter, window_start=now, hits=0)
    hits = counter.hits + 1
    if hits < budget.limit:
        return replace(counter, hits=hits)
    strikes = counter.strikes + 1
    if budget.backoff:
        until = now + doubling(strikes, budget.window, budget.cap)
    else:
        until = counter.window_start + budget.window
    # The block is the window's end; the next window opens when the block does.
    return Counter(window_start=until, hits=0, strikes=strikes, blocked_until=until)


def minutes(delta: timedelta) -> int:
    """A wait as whole minutes for a message (at least 1, rounded up)."""
    return max(1, -(-int(delta.total_seconds()) // 60))


def seconds(delta: timedelta) -> int:
    """A wait as whole seconds for `Retry-After` (at least 1, rounded up)."""
    return max(1, -(-int(delta.total_seconds() * 1000) // 1000))
