"""The pure rules of the limits (auth/limits.py) and of display names (org/names.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jiesu.auth.limits import (
    ACCOUNT_LOCK,
    LOCK_CAP,
    Budget,
    Counter,
    account_lock,
    doubling,
    minutes,
    retry_after,
    seconds,
    spend,
)
from jiesu.org.names import duplicate_of, name_key, name_problem

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


# ---- the account's lock --------------------------------------------------------------------


def test_every_fifth_failure_locks_the_account_twice_as_long_as_the_last_time() -> None:
    failures, locked_until, locks = 0, None, []
    now = T0
    for _ in range(25):
        failures, until = account_lock(failures, locked_until, now)
        if until is not None:
            locks.append(until - now)
            locked_until = until
            now = until  # the next guess comes when the lock ends
        else:
            now += MIN
    assert locks == [ACCOUNT_LOCK * 1, ACCOUNT_LOCK * 2, ACCOUNT_LOCK * 4, ACCOUNT_LOCK * 8,
                     ACCOUNT_LOCK * 16]  # fmt: skip


def test_an_account_lock_never_exceeds_a_day() -> None:
    assert doubling(30, ACCOUNT_LOCK) == LOCK_CAP
    assert doubling(10_000, ACCOUNT_LOCK) == LOCK_CAP
    assert doubling(1, ACCOUNT_LOCK) == ACCOUNT_LOCK


def test_a_quiet_day_after_a_lock_starts_the_count_afresh() -> None:
    locked_until = T0 + ACCOUNT_LOCK
    assert account_lock(10, locked_until, locked_until + timedelta(hours=23)) == (11, None)
    assert account_lock(10, locked_until, locked_until + timedelta(hours=24)) == (1, None)
    failures, until = account_lock(4, None, T0)  # without a lock yet: "in a row" as before
    assert (failures, until) == (5, T0 + ACCOUNT_LOCK)


# ---- counters ----------------------------------------------------------------------------------

FLAT = Budget(limit=3, window=timedelta(minutes=10))
BACKOFF = Budget(limit=5, window=timedelta(minutes=15), backoff=True)


def test_a_flat_budget_lets_limit_events_through_per_window_then_blocks_to_its_end() -> None:
    counter = None
    for i in range(3):
        assert retry_after(counter, T0 + i * MIN) is None
        counter = spend(counter, FLAT, T0 + i * MIN)
    assert counter is not None
    assert retry_after(counter, T0 + 3 * MIN) == 7 * MIN  # the window began at T0
    assert retry_after(counter, T0 + 10 * MIN) is None
    counter = spend(counter, FLAT, T0 + 10 * MIN)  # a new window, a new budget
    assert counter.hits == 1 and counter.blocked_until is not None
    assert retry_after(counter, T0 + 10 * MIN) is None


def test_events_spread_over_windows_never_block() -> None:
    counter = None
    for i in range(30):
        now = T0 + i * 6 * MIN  # 2 in every 10 minutes, budget 3
        assert retry_after(counter, now) is None
        counter = spend(counter, FLAT, now)


def test_a_backoff_budget_doubles_its_block_each_time_it_is_spent() -> None:
    counter: Counter | None = None
    now, blocks = T0, []
    for _ in range(4):
        for _ in range(5):
            assert retry_after(counter, now) is None
            counter = spend(counter, BACKOFF, now)
        assert counter is not None
        wait = retry_after(counter, now)
        assert wait is not None
        blocks.append(wait)
        now += wait
    assert blocks == [15 * MIN, 30 * MIN, 60 * MIN, 120 * MIN]


def test_a_quiet_day_after_a_block_forgets_the_doubling() -> None:
    counter = None
    for _ in range(5):
        counter = spend(counter, BACKOFF, T0)
    assert counter is not None and counter.strikes == 1
    later = T0 + 15 * MIN + timedelta(hours=24)
    for _ in range(5):
        counter = spend(counter, BACKOFF, later)
    assert retry_after(counter, later) == 15 * MIN  # the first block again, not the second


def test_waits_round_up_for_messages_and_headers() -> None:
    assert minutes(timedelta(seconds=1)) == 1
    assert minutes(timedelta(seconds=61)) == 2
    assert minutes(timedelta(minutes=15)) == 15
    assert seconds(timedelta(milliseconds=1)) == 1
    assert seconds(timedelta(seconds=90)) == 90
    assert seconds(timedelta(seconds=90, milliseconds=1)) == 91


# ---- display names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "张三\u202e",  # RIGHT-TO-LEFT OVERRIDE
        "\u202a张三\u202c",  # LEFT-TO-RIGHT EMBEDDING … POP
        "张\u2066三\u2069",  # LEFT-TO-RIGHT ISOLATE … POP ISOLATE
        "张三\u200f",  # RIGHT-TO-LEFT MARK
        "张三\u061c",  # ARABIC LETTER MARK
        "张\u200b三",  # ZERO WIDTH SPACE
        "张\u200d三",  # ZERO WIDTH JOINER
        "张\u2060三",  # WORD JOINER
        "\ufeff张三",  # BYTE ORDER MARK
        "张\u00ad三",  # SOFT HYPHEN
        "张\u3164三",  # HANGUL FILLER
        "张\u2800三",  # BRAILLE BLANK
        "张\u2028三",  # LINE SEPARATOR
        "张\t三",
        "张\u3000三",  # IDEOGRAPHIC SPACE: a plain space only
        "张\x07三",
        "张\ue000三",  # private use
    ],
)
def test_invisible_and_control_characters_are_refused_in_a_name(name: str) -> None:
    problem = name_problem(name)
    assert problem is not None and "姓名" in problem


@pytest.mark.parametrize("name", ["张三", "欧阳 娜娜", "Li Lei", "阿卜杜勒·热合曼", "张三（东城）"])
def test_ordinary_names_pass(name: str) -> None:
    assert name_problem(name) is None


def test_names_are_the_same_after_nfkc_case_and_whitespace() -> None:
    assert name_key("张 三") == name_key("张三") == name_key(" 张三 ")
    assert name_key("ＬＩ Ｌｅｉ") == name_key("li lei") == name_key("LILEI")
    others = [("agent1", "话务员甲"), ("admin1", "Li Lei")]
    assert duplicate_of("话务员 甲", others) == "agent1"
    assert duplicate_of("ＬＩＬＥＩ", others) == "admin1"
    assert duplicate_of("话务员乙", others) is None
