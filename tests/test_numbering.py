"""Ticket numbers (工单编号): city-local date YYYYMMDD + a daily sequence, unique under load, given
back on rollback, widening rather than refusing after 99,999 a day; and a retried create with the
same Idempotency-Key makes one order even when the retries race (SPEC §10)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import PASSWORD, principal
from sqlalchemy import func, select

from jiesu.db.engine import Database
from jiesu.tickets.models import Event, IdempotencyKey, Ticket, TicketCounter
from jiesu.tickets.numbering import format_number, next_number
from jiesu.tickets.service import create_ticket
from jiesu.tickets.shapes import TicketCreate
from jiesu.web.app import create_app

DAY = date(2026, 11, 22)
NEXT_DAY = date(2026, 11, 23)


def counter(db: Database, day: date) -> int | None:
    with db.read() as s:
        return s.scalar(select(TicketCounter.last).where(TicketCounter.day == f"{day:%Y%m%d}"))


# ---- the format ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "seq", "number"),
    [
        (DAY, 1, "2026112200001"),
        (DAY, 17, "2026112200017"),
        (DAY, 99_999, "2026112299999"),
        (date(2027, 1, 1), 1, "2027010100001"),
        (DAY, 100_000, "20261122100000"),  # a busier day widens to six digits
    ],
)
def test_format_number_is_the_date_and_a_five_digit_sequence(
    day: date, seq: int, number: str
) -> None:
    assert format_number(day, seq) == number


# ---- the daily sequence --------------------------------------------------------------------


def test_the_sequence_counts_up_within_a_day_and_restarts_on_a_new_day(db: Database) -> None:
    with db.write() as s:
        first = next_number(DAY, db_session=s)
        second = next_number(DAY, db_session=s)
        tomorrow = next_number(NEXT_DAY, db_session=s)
        third = next_number(DAY, db_session=s)
    assert (first, second, third) == ("2026112200001", "2026112200002", "2026112200003")
    assert tomorrow == "2026112300001"
    assert counter(db, DAY) == 3
    assert counter(db, NEXT_DAY) == 1


def test_the_day_is_the_city_local_day_not_utc(db: Database) -> None:
    # 2026-11-22 17:00 UTC is 2026-11-23 01:00 in Beijing
    data = TicketCreate.model_validate({"channel": "phone", "content": "深夜噪音扰民"})
    with db.write() as s:
        ticket = create_ticket(
            data,
            actor=principal(db),
            db_session=s,
            now=datetime(2026, 11, 22, 17, 0, tzinfo=UTC),
        )
        number = ticket.number
    assert number == "2026112300001"


def test_a_rolled_back_create_gives_its_number_back(db: Database) -> None:
    data = TicketCreate.model_validate({"channel": "phone", "content": "路灯不亮"})
    now = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    actor = principal(db)

    class Crash(Exception):
        pass

    with pytest.raises(Crash), db.write() as s:
        ticket = create_ticket(data, actor=actor, db_session=s, now=now)
        assert ticket.number == "2026112200001"
        raise Crash

    assert counter(db, DAY) is None
    with db.write() as s:
        again = create_ticket(data, actor=actor, db_session=s, now=now).number
    assert again == "2026112200001"
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1


def test_after_99999_a_day_the_number_widens_to_six_digits(db: Database) -> None:
    with db.write() as s:
        s.add(TicketCounter(day="20261122", last=99_999))
    data = TicketCreate.model_validate({"channel": "phone", "content": "第十万件诉求"})
    with db.write() as s:
        ticket = create_ticket(
            data, actor=principal(db), db_session=s, now=datetime(2026, 11, 22, 3, tzinfo=UTC)
        )
        number = ticket.number
    assert number == "20261122100000"
    with db.read() as s:
        assert s.scalar(select(Ticket.number)) == "20261122100000"


# ---- under real concurrency ----------------------------------------------------------------


def _free_port() -> int:
    for port in range(20000 + uuid.uuid4().int % 9000, 30000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-30000")


@pytest.fixture
def server(db: Database) -> Iterator[str]:
    """The real app under uvicorn in a background thread; yields its base URL."""
    port = _free_port()
    config = uvicorn.Config(create_app(db), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            srv.should_exit = True
            pytest.fail("the server did not answer /healthz within 30 s")
        time.sleep(0.05)
    try:
        yield base
    finally:
        srv.should_exit = True
        thread.join(timeout=30)


def _login(http: httpx.Client, username: str) -> dict[str, str]:
    r = http.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _run_threads(n: int, work: Any) -> list[Any]:
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    return results


THREADS = 8
PER_THREAD = 250


@pytest.mark.slow
def test_2000_concurrent_creates_all_succeed_with_distinct_gapless_numbers(
    server: str, db: Database
) -> None:
    users = ["agent1", "dispatcher1", "admin1"]
    start = threading.Barrier(THREADS)

    def work(i: int) -> list[tuple[int, str]]:
        with httpx.Client(base_url=server, timeout=120) as http:
            headers = _login(http, users[i % len(users)])
            start.wait()
            answers = []
            for j in range(PER_THREAD):
                r = http.post(
                    "/api/v1/tickets",
                    json={"channel": "phone", "content": f"线程{i}的第{j}件诉求"},
                    headers=headers,
                )
                answers.append(
                    (r.status_code, r.json()["number"] if r.status_code == 201 else r.text)
                )
            return answers

    began = time.monotonic()
    results = _run_threads(THREADS, work)
    elapsed = time.monotonic() - began

    answers = [a for thread in results for a in thread]
    assert len(answers) == THREADS * PER_THREAD
    failures = [a for a in answers if a[0] != 201]
    assert failures == [], failures[:5]
    numbers = [n for _, n in answers]
    assert len(set(numbers)) == THREADS * PER_THREAD
    # gapless per city-local day: nothing was rolled back, so no number was skipped
    per_day: dict[str, list[int]] = defaultdict(list)
    for n in numbers:
        per_day[n[:8]].append(int(n[8:]))
    for seqs in per_day.values():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == THREADS * PER_THREAD
        assert s.scalar(select(func.count()).select_from(Event)) == THREADS * PER_THREAD
    print(f"\n{db.dialect}: {THREADS * PER_THREAD} creates in {elapsed:.1f} s")


@pytest.mark.slow
def test_racing_retries_with_the_same_idempotency_key_make_exactly_one_ticket(
    server: str, db: Database
) -> None:
    key = f"race-{uuid.uuid4()}"
    body = {"channel": "wechat", "content": "同一个请求，网络重试了八次"}
    start = threading.Barrier(THREADS)

    def work(_i: int) -> tuple[int, dict[str, Any], str | None]:
        with httpx.Client(base_url=server, timeout=120) as http:
            headers = {**_login(http, "agent1"), "Idempotency-Key": key}
            start.wait()
            r = http.post("/api/v1/tickets", json=body, headers=headers)
            return r.status_code, r.json(), r.headers.get("Idempotent-Replayed")

    results = _run_threads(THREADS, work)

    assert [status for status, _, _ in results] == [201] * THREADS, results
    assert len({answer["id"] for _, answer, _ in results}) == 1
    assert len({answer["number"] for _, answer, _ in results}) == 1
    assert sorted(replayed or "" for _, _, replayed in results) == [""] + ["true"] * (THREADS - 1)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Ticket)) == 1
        assert s.scalar(select(func.count()).select_from(IdempotencyKey)) == 1
        only = s.scalar(select(Ticket.number))
    assert only is not None and only.endswith("00001")  # the losers gave their numbers back
