"""Durable timers: scheduled from the deadlines, done once by `jiesu worker`, even across SIGKILL."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import principal as person
from sqlalchemy import func, select

from jiesu.db.engine import Database
from jiesu.org.models import Unit
from jiesu.tickets.actions import take_action
from jiesu.tickets.models import Channel, Job, Outbox
from jiesu.tickets.scheduled import run_due_jobs
from jiesu.tickets.service import create_ticket
from jiesu.tickets.shapes import TicketCreate

LONG_AGO = datetime.now(UTC) - timedelta(days=40)
# For the tests whose worker is a subprocess: it reads the machine's clock, not the test's pinned
# one (test_any_hour pins it up to weeks ahead), so every deadline must be past on both.
BEFORE_EITHER_CLOCK = datetime.now(UTC) - timedelta(days=400)


def dispatched(db: Database, n: int = 1, at: datetime = LONG_AGO) -> list[int]:
    agent, dispatcher = person(db, "agent1"), person(db, "dispatcher1")
    ids = []
    for _ in range(n):
        with db.write() as s:
            t = create_ticket(
                TicketCreate(channel=Channel.phone, content="路灯不亮已经三天了"),
                actor=agent, db_session=s, now=at,
            )  # fmt: skip
            take_action(t.id, "dispatch", {"lead": "S11"}, actor=dispatcher, db_session=s, now=at)
            ids.append(t.id)
    return ids


def jobs(db: Database, ticket: int) -> Counter[tuple[str | None, str, str]]:
    with db.read() as s:
        rows = s.execute(select(Job.phase, Job.kind, Job.status).where(Job.ticket_id == ticket))
        return Counter(tuple(r) for r in rows)  # type: ignore[misc]


def test_dispatch_schedules_a_warning_and_an_overdue_notice_per_phase(db: Database) -> None:
    (t,) = dispatched(db, at=datetime.now(UTC))
    assert jobs(db, t) == Counter(
        {
            (p, k, "pending"): 1
            for p in ("accept", "contact", "complete")
            for k in ("warn", "overdue")
        }
    )


def test_a_met_phase_cancels_its_jobs_and_suspension_stops_them(db: Database) -> None:
    (t,) = dispatched(db, at=datetime.now(UTC))
    handler = person(db, "s11.handler")
    with db.write() as s:
        take_action(t, "accept", {}, actor=handler, db_session=s)
    assert jobs(db, t)[("accept", "warn", "cancelled")] == 1
    with db.write() as s:
        take_action(t, "suspend", {"reason": "等待诉求人回复"}, actor=handler, db_session=s)
    assert not [k for k in jobs(db, t) if k[2] == "pending"]
    with db.write() as s:
        take_action(t, "resume", {}, actor=handler, db_session=s)
    assert sum(n for k, n in jobs(db, t).items() if k[2] == "pending") == 4  # contact, complete


def test_due_jobs_notify_once_and_a_met_deadline_is_not_warned_about(db: Database) -> None:
    t1, t2 = dispatched(db, 2)
    with db.write() as s:  # t2's unit signed after its jobs were made, before the worker ran
        take_action(t2, "accept", {}, actor=person(db, "s11.handler"), db_session=s, now=LONG_AGO)
    while run_due_jobs(db):
        pass
    assert run_due_jobs(db) == 0
    with db.read() as s:
        per_job = Counter(s.scalars(select(Outbox.job_id).where(Outbox.job_id.is_not(None))))
        warned = Counter(
            s.scalars(
                select(Job.phase).join(Outbox, Outbox.job_id == Job.id).where(Job.ticket_id == t2)
            )
        )
    assert set(per_job.values()) == {2}  # the lead unit and the centre, once each
    assert "accept" not in warned and warned["complete"] == 4
    assert jobs(db, t1)[("accept", "overdue", "done")] == 1


def _worker(url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "JIESU_DATABASE_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "jiesu.cli", "worker", "--interval", "0.05"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _finish(url: str) -> None:
    env = {**os.environ, "JIESU_DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "jiesu.cli", "worker", "--once"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_and_repeats_nothing(db: Database, db_url: str) -> None:
    dispatched(db, 120, at=BEFORE_EITHER_CLOCK)
    with db.read() as s:
        due = s.scalar(select(func.count()).select_from(Job).where(Job.status == "pending"))
    assert due == 720
    workers = [_worker(db_url) for _ in range(2 if db.dialect == "postgresql" else 1)]
    deadline = time.monotonic() + 60
    with db.read() as s:  # wait until it is well under way, then kill it without warning
        while time.monotonic() < deadline:
            done = s.scalar(select(func.count()).select_from(Job).where(Job.status != "pending"))
            s.rollback()
            if done and done >= 100:
                break
            time.sleep(0.05)
    for w in workers:
        w.send_signal(signal.SIGKILL)
        w.wait()
    with db.read() as s:
        left = s.scalar(select(func.count()).select_from(Job).where(Job.status == "pending"))
    assert 0 < left < 720, "the kill should land mid-run"
    _finish(db_url)
    with db.read() as s:
        statuses = Counter(s.scalars(select(Job.status)))
        per_job = Counter(s.scalars(select(Outbox.job_id).where(Outbox.job_id.is_not(None))))
    assert statuses == Counter({"done": 720})
    assert len(per_job) == 720 and set(per_job.values()) == {2}  # every warning exactly once


@pytest.mark.slow
def test_eight_concurrent_actors_over_500_tickets_lose_no_update(db: Database) -> None:
    """Random actions from 8 threads: refusals are fine, lost or torn updates are not."""
    import random
    import threading

    from jiesu.errors import DomainError
    from jiesu.tickets.models import Event, Ticket

    ids = dispatched(db, 500, at=datetime.now(UTC))
    people = {u: person(db, u) for u in ("s11.handler", "s11.admin", "supervisor1", "dispatcher1")}
    moves = [
        ("s11.handler", "accept", {}),
        ("s11.admin", "accept", {}),
        ("s11.handler", "contact", {"note": "已电话联系诉求人"}),
        ("supervisor1", "urge", {"note": "请加快办理"}),
        ("s11.admin", "suspend", {"reason": "等待第三方检测"}),
        ("s11.handler", "resume", {}),
        ("s11.handler", "reply", {"result": "solved", "content": "已到现场处理完毕并回复"}),
        ("dispatcher1", "audit", {"passed": True}),
    ]
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def actor(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(60):
            who, action, data = rng.choice(moves)
            try:
                with db.write() as s:
                    take_action(
                        rng.choice(ids), action, dict(data), actor=people[who], db_session=s
                    )
                result = "ok"
            except DomainError as exc:
                result = f"refused {exc.status}"
            except Exception as exc:  # the version check; the API answers it with 409
                result = type(exc).__name__
            with lock:
                outcomes[result] += 1

    threads = [threading.Thread(target=actor, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert outcomes["ok"] > 100 and sum(outcomes.values()) == 480
    assert set(outcomes) <= {"ok", "refused 409", "refused 403", "StaleDataError", "IntegrityError"}
    with db.read() as s:
        tickets = {t.id: t for t in s.scalars(select(Ticket).where(Ticket.id.in_(ids)))}
        events: dict[int, list[Event]] = {}
        for e in s.scalars(select(Event).where(Event.ticket_id.in_(ids)).order_by(Event.seq)):
            events.setdefault(e.ticket_id, []).append(e)
    applied = sum(len(v) for v in events.values()) - 2 * len(ids)  # less receive + dispatch
    assert applied == outcomes["ok"]
    for tid, t in tickets.items():
        evs = events[tid]
        assert [e.seq for e in evs] == list(range(1, len(evs) + 1))
        assert t.status == evs[-1].state_after and t.version == len(evs)
        for before, after in itertools.pairwise(evs):
            assert after.state_before == before.state_after


def test_a_summoned_unit_that_does_not_report_in_is_warned(db: Database) -> None:
    (t,) = dispatched(db)
    handler, admin = person(db, "s11.handler"), person(db, "s11.admin")
    with db.write() as s:
        take_action(t, "accept", {}, actor=handler, db_session=s, now=LONG_AGO)
        take_action(t, "whistle", {"units": ["C-RL"], "note": "需热力集团到场"}, actor=admin,
                    db_session=s, now=LONG_AGO)  # fmt: skip
    assert jobs(db, t)[("report", "overdue", "pending")] == 1
    while run_due_jobs(db):
        pass
    with db.read() as s:
        warned = s.execute(
            select(Unit.code, Job.kind)
            .join(Outbox, Outbox.job_id == Job.id)
            .join(Unit, Unit.id == Outbox.unit_id)
            .where(Job.ticket_id == t, Job.phase == "report")
        ).all()
    assert sorted(tuple(w) for w in warned) == [
        ("C-RL", "overdue"), ("C-RL", "warn"), ("C-RX", "overdue"), ("C-RX", "warn"),
    ]  # fmt: skip


def test_an_open_promise_is_reported_when_due_and_a_kept_one_is_not(db: Database) -> None:
    agent = person(db, "agent1")
    made = []
    for _ in range(2):
        with db.write() as s:
            t = create_ticket(TicketCreate(channel=Channel.collection_point, content="办理居住证明缺少租房合同"),
                              actor=agent, db_session=s, now=LONG_AGO)  # fmt: skip
            take_action(t.id, "accept_with_missing", {"missing": "租房合同", "promised_days": 2},
                        actor=agent, db_session=s, now=LONG_AGO)  # fmt: skip
            made.append(t.id)
    with db.write() as s:
        take_action(made[1], "fulfil_missing", {}, actor=agent, db_session=s, now=LONG_AGO)
    while run_due_jobs(db):
        pass
    with db.read() as s:
        told = s.execute(
            select(Job.ticket_id, Outbox.payload).join(Outbox, Outbox.job_id == Job.id)
            .where(Job.kind == "promise")
        ).all()  # fmt: skip
    assert [t for t, _ in told] == [made[0]]
    assert "租房合同" in told[0][1]["message"]


# ---- the worker's loop (jiesu/worker.py) -------------------------------------------------------


def test_a_failing_step_never_stops_the_others(caplog: pytest.LogCaptureFixture) -> None:
    from jiesu.worker import Step, Worker

    ran: list[str] = []

    def broken(_db: Database) -> int:
        ran.append("broken")
        raise ConnectionError("SMS gateway down")

    def timers(_db: Database) -> int:
        ran.append("timers")
        return 1 if ran.count("timers") == 1 else 0

    worker = Worker(None, steps=[Step("deliveries", broken), Step("due jobs", timers)])  # type: ignore[arg-type]
    assert worker.round() == 1 and worker.round() == 0
    assert ran == ["broken", "timers", "broken", "timers"]
    # The traceback once; then a line a round until the step works again.
    failures = [r for r in caplog.records if "deliveries" in r.getMessage()]
    assert [r.exc_info is not None for r in failures] == [True, False]
    worker.run(once=True)  # a round with nothing done ends a `--once` run
    assert ran[-2:] == ["broken", "timers"]


def test_the_periodic_step_runs_at_start_then_only_when_its_period_is_over() -> None:
    from jiesu.worker import Step, Worker

    calls: list[str] = []

    def record(name: str) -> Step:
        def run(_db: Database) -> int:
            calls.append(name)
            return 0

        return Step(name, run, every_s=3600.0 if name == "reports" else 0.0)

    worker = Worker(None, steps=[record("reports"), record("jobs")])  # type: ignore[arg-type]
    worker.round()
    worker.round()
    assert calls == ["reports", "jobs", "jobs"]


def test_the_default_steps_do_jobs_then_deliveries_and_the_reports_every_ten_minutes() -> None:
    from jiesu.worker import (
        PERIODIC_EVERY_S,
        SUGGESTIONS_EVERY_S,
        default_steps,
        deliveries,
        due_jobs,
        knowledge_jobs,
        knowledge_suggestions,
        periodic,
    )

    steps = default_steps()
    assert [s.run for s in steps] == [
        periodic, due_jobs, knowledge_jobs, knowledge_suggestions, deliveries
    ]  # fmt: skip
    assert [s.every_s for s in steps] == [
        PERIODIC_EVERY_S, 0.0, PERIODIC_EVERY_S, SUGGESTIONS_EVERY_S, 0.0
    ]  # fmt: skip
    assert SUGGESTIONS_EVERY_S == 24 * 3600  # the suggestions: once a day
    # The whole-city scans run on one worker at a time; the row claims on any number.
    assert [s.single for s in steps] == [True, False, False, True, False]


def test_a_single_step_is_skipped_while_another_worker_runs_it(db: Database) -> None:
    from jiesu.worker import Step, Worker, lock_key

    calls: list[str] = []

    def scan(_db: Database) -> int:
        calls.append("scan")
        return 1

    worker = Worker(db, steps=[Step("scan", scan, single=True)])
    if db.dialect != "postgresql":  # one worker on SQLite: no lock to take
        assert worker.round() == 1 and calls == ["scan"]
        return
    with db.engine.connect() as other:  # another worker holds the step's lock
        other.execute(select(func.pg_advisory_lock(lock_key("scan"))))
        other.commit()
        assert worker.round() == 0 and calls == []
        other.execute(select(func.pg_advisory_unlock(lock_key("scan"))))
        other.commit()
    assert worker.round() == 1 and calls == ["scan"]
    # Released after the step: a second worker takes it in turn.
    assert Worker(db, steps=[Step("scan", scan, single=True)]).round() == 1
    assert calls == ["scan", "scan"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_stops_the_worker_after_the_step_under_way(signum: int) -> None:
    from jiesu.worker import Step, Worker

    ran: list[str] = []

    def interrupted(_db: Database) -> int:
        if ran:  # a second round: the signal did not stop the loop (end it, and fail below;
            worker.stop.set()  # a second SIGTERM would now end the test process itself)
            ran.append("again")
            return 1
        os.kill(os.getpid(), signum)  # as `kill` or systemd would, mid-step
        time.sleep(0.05)  # the handler has run by now; the step still finishes
        ran.append("interrupted")
        return 1

    def after(_db: Database) -> int:
        ran.append("after")
        return 1

    worker = Worker(None, steps=[Step("jobs", interrupted), Step("deliveries", after)])  # type: ignore[arg-type]
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        worker.stop_on_signals()
        started = time.monotonic()
        worker.run(interval=60)  # would loop for ever: the signal ends it
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    assert ran == ["interrupted"] and worker.signalled
    assert time.monotonic() - started < 5


def test_a_timer_notice_names_its_kind(db: Database) -> None:
    dispatched(db)
    while run_due_jobs(db):
        pass
    with db.read() as s:
        payloads = s.scalars(select(Outbox.payload).where(Outbox.job_id.is_not(None))).all()
    assert {p["kind"] for p in payloads} == {"warn", "overdue"}
    assert all(p["notice"] == p["kind"] for p in payloads)


# ---- heartbeats and stopping (jiesu/ops/heartbeat.py) -----------------------------------------

PINNED = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


def test_a_worker_beats_at_start_at_each_step_and_is_marked_stopped(db: Database) -> None:
    from jiesu.ops.heartbeat import Heartbeats, read
    from jiesu.worker import Step, Worker

    clock, now = [0.0], [PINNED]
    beats = Heartbeats(db, now=lambda: now[0], clock=lambda: clock[0], host="w1", pid=4242)
    seen: list[tuple[str | None, str]] = []

    def jobs(_db: Database) -> int:
        row = read(db, "w1:4242")
        assert row is not None
        seen.append((row.step, row.state))
        clock[0] += 2.0  # the step takes two seconds
        now[0] += timedelta(seconds=2)
        return 0

    beats.start()
    row = read(db, "w1:4242")
    assert row is not None and (row.kind, row.state, row.pid, row.host) == (
        "worker",
        "running",
        4242,
        "w1",
    )
    assert row.started_at == PINNED and row.beat_at == PINNED and row.stopped_at is None
    clock[0] += 1.0
    worker = Worker(db, steps=[Step("due jobs", jobs)], heartbeat=beats)
    worker.round()
    assert seen == [("due jobs", "running")]  # the step under way is named while it runs
    row = read(db, "w1:4242")
    assert row is not None and row.step is None and row.beat_at == PINNED + timedelta(seconds=2)
    # At most one write a second: a beat right after another is skipped.
    assert not beats.beat("deliveries")
    clock[0] += 1.0
    assert beats.beat("deliveries")
    beats.stopping()
    assert (row := read(db, "w1:4242")) is not None and row.state == "stopping"
    now[0] += timedelta(seconds=1)
    beats.stopped()
    row = read(db, "w1:4242")
    assert row is not None and row.state == "stopped"
    assert row.stopped_at == PINNED + timedelta(seconds=3) and row.started_at == PINNED


def test_a_heartbeat_that_cannot_be_written_never_stops_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from jiesu.ops.heartbeat import Heartbeats

    nowhere = Database("postgresql+psycopg://postgres@127.0.0.1:9/nowhere?connect_timeout=2")
    try:
        beats = Heartbeats(nowhere, now=lambda: PINNED)
        beats.start()
        assert not beats.beat("due jobs", every_s=0)
    finally:
        nowhere.dispose()
    assert "heartbeat not written" in caplog.text


def test_work_marks_its_heartbeat_stopped_when_it_ends(db: Database) -> None:
    from jiesu.ops.models import Heartbeat
    from jiesu.worker import work

    work(db, once=True)
    with db.read() as s:
        rows = s.scalars(select(Heartbeat).where(Heartbeat.pid == os.getpid())).all()
    assert [(r.kind, r.state, r.step) for r in rows] == [("worker", "stopped", None)]
    assert rows[0].stopped_at is not None and rows[0].stopped_at >= rows[0].started_at


def _logged_worker(url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "JIESU_DATABASE_URL": url, "JIESU_LOG_FORMAT": "json"}
    return subprocess.Popen(
        [sys.executable, "-m", "jiesu.cli", "worker", "--interval", "0.05"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _wait_until_under_way(db: Database, at_least: int) -> None:
    deadline = time.monotonic() + 60
    with db.read() as s:
        while time.monotonic() < deadline:
            done = s.scalar(select(func.count()).select_from(Job).where(Job.status != "pending"))
            s.rollback()
            if done and done >= at_least:
                return
            time.sleep(0.02)
    raise AssertionError("the worker did not get under way")


def _catches_sigterm(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(re.search(r"SigCgt:\s*([0-9a-f]+)", status).group(1), 16)  # type: ignore[union-attr]
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def _each_job_whole(db: Database) -> int:
    """Every job done has its two notices and every pending one none; how many are pending."""
    with db.read() as s:
        per_job = Counter(s.scalars(select(Outbox.job_id).where(Outbox.job_id.is_not(None))))
        statuses = dict(s.execute(select(Job.id, Job.status)).all())
    for job, status in statuses.items():
        assert per_job.get(job, 0) == (2 if status == "done" else 0), (job, status)
    return sum(status == "pending" for status in statuses.values())


@pytest.mark.slow
def test_sigterm_lets_the_worker_finish_its_step_and_mark_itself_stopped(
    db: Database, db_url: str
) -> None:
    from jiesu.ops.models import Heartbeat

    dispatched(db, 30, at=BEFORE_EITHER_CLOCK)
    proc = _logged_worker(db_url)
    _wait_until_under_way(db, 20)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    left = _each_job_whole(db)
    assert 0 < left < 180, "the stop should land mid-run"
    with db.read() as s:
        row = s.scalar(select(Heartbeat).where(Heartbeat.pid == proc.pid))
    assert row is not None and row.state == "stopped" and row.stopped_at is not None
    messages = [json.loads(line)["message"] for line in err.splitlines() if line.startswith("{")]
    assert any("stopping after its step" in m for m in messages), err
    _finish(db_url)
    assert _each_job_whole(db) == 0


@pytest.mark.slow
def test_a_second_sigterm_ends_the_worker_at_once_and_its_step_rolls_back(
    db: Database, db_url: str
) -> None:
    dispatched(db, 30, at=BEFORE_EITHER_CLOCK)
    proc = _logged_worker(db_url)
    _wait_until_under_way(db, 20)
    proc.send_signal(signal.SIGTERM)
    # Two signals sent at once may reach Python's handler as one: send the second once the
    # first has been handled (the process no longer catches SIGTERM: SigCgt bit 15 cleared).
    deadline = time.monotonic() + 10
    while _catches_sigterm(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM
    assert 0 < _each_job_whole(db) < 180  # whatever was under way: all of a job, or none
    _finish(db_url)
    assert _each_job_whole(db) == 0
