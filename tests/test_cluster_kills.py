"""Two app servers and two workers on one PostgreSQL, killed and restarted under load (issue 17
§5): no acknowledged ticket lost or doubled, no job done twice, no timer missed, no lost update.

The processes are the real commands (`jiesu serve`, `jiesu worker --interval 0.2`) on a fresh
copy of the tiny city; the test talks to them over HTTP and reads the database only to check.
While client threads create orders (each with its `Idempotency-Key`, retried on a refused
connection or a 5xx until acknowledged) and race urges/supervisions on the same orders through
both servers, the main thread kills a process and restarts it at once, twelve times: servers
and workers, mostly SIGKILL (cut anywhere: mid-request, mid-transaction, mid-job), some SIGTERM
(the graceful stop). The workers have due timers the whole time: the warn/overdue jobs of
dispatched orders, a batch brought forward (`run_at`) just before each kill, so that the
workers are claiming and doing them when one is struck — what is under test is the workers'
claim (`FOR UPDATE SKIP LOCKED`), not the deadline arithmetic. At the end, with everything up
again and the due work drained:

- every acknowledged key has exactly one order, every order has its key, the numbers of each
  day run 1..n without a gap (the day's counter is bumped in the creating transaction, so an
  order rolled back by a kill gives its number back: no legitimate gap);
- every job brought forward is `done`, and wrote its two notices (unit, centre) exactly once;
- every acknowledged action has exactly one event, nothing refused or unknown left two, each
  order's events are numbered 1..n and its status is its last event's;
- every outbox row was fanned out to a webhook subscriber on loopback and delivered:
  at least once (a worker killed between sending and recording sends again when the lease
  runs out), a repeat only ever with the same `webhook-id` and the same body;
- every process stopped with SIGTERM stopped cleanly, and each such worker marked its
  heartbeat `stopped` (a SIGKILLed one's stays `running` until its beat goes stale).
"""

from __future__ import annotations

import random
import re
import signal
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from jiesu.db.engine import Database
from jiesu.delivery.channels import idempotency_id
from jiesu.delivery.models import Delivery, DeliveryAttempt
from jiesu.ops.models import Heartbeat
from jiesu.tickets.models import Event, IdempotencyKey, Job, Outbox, Ticket
from tests.cluster_support import (
    HookReceiver,
    Proc,
    free_ports,
    process_env,
    stop_all,
    wait_until,
)
from tests.conftest import PASSWORD, Templates, require_backend

# One xdist worker runs this file (--dist loadgroup); other workers go on beside it, which the
# deadlines allow for.
pytestmark = pytest.mark.xdist_group("cluster")

CYCLES = 12  # kill/restart cycles (issue 17: at least 10)
SIGTERM_CYCLES = {2, 5, 8, 11}  # the others are SIGKILL; 2 and 8 hit a server, 5 and 11 a worker
TIMER_ORDERS = 10  # dispatched orders whose timers fall due during the kills
RACE_ORDERS = 3  # orders urged and supervised by two clients through both servers at once
CREATORS = 3  # client threads creating orders
PACE_S = 0.05  # each client's pause between two requests
START_S = 120.0  # a server or worker starting on a busy two-core machine
ACK_DEADLINE_S = 120.0  # a client retries one create this long before it gives up
# After the kills the due jobs and the deliveries are worked off within this: more than a
# delivery's lease (delivery.service.LEASE_S, 60 s), which a worker killed mid-send leaves.
DRAIN_S = 180.0


@dataclass
class Tally:
    """What the clients saw, shared between threads (append/update under the lock)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, tuple[int, str]] = field(default_factory=dict)  # key → (id, number)
    attempted: set[str] = field(default_factory=set)
    given_up: list[str] = field(default_factory=list)
    retries: int = 0
    refused: list[str] = field(default_factory=list)  # a 4xx where none belongs: a failure
    actions: dict[str, str] = field(default_factory=dict)  # note → acked | conflict | unknown
    server_errors: Counter[int] = field(default_factory=Counter)


class Api:
    """The two servers as a client sees them: one base address per server."""

    def __init__(self, ports: list[int]) -> None:
        self.bases = [f"http://127.0.0.1:{p}" for p in ports]

    def login(self, username: str) -> dict[str, str]:
        for base in self.bases:
            try:
                r = httpx.post(
                    f"{base}/api/v1/auth/token",
                    json={"username": username, "password": PASSWORD},
                    timeout=60,
                )
            except httpx.TransportError:
                continue
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}
        raise AssertionError("no server answered the sign-in")


def _create(api: Api, headers: dict[str, str], tally: Tally, stop: threading.Event, n: int) -> None:
    """One creating client: a new key per order, retried (switching server) until acknowledged."""
    http = httpx.Client(timeout=60)
    try:
        i = n
        while not stop.is_set():
            key = f"cluster-{uuid.uuid4().hex}"
            body = {"channel": "phone", "content": f"集群测试第{n}号客户端的诉求：楼道灯坏了{i}天"}
            with tally.lock:
                tally.attempted.add(key)
            deadline = time.monotonic() + ACK_DEADLINE_S
            attempt = 0
            while True:
                base = api.bases[(i + attempt) % len(api.bases)]
                try:
                    r = http.post(
                        f"{base}/api/v1/tickets",
                        json=body,
                        headers={**headers, "Idempotency-Key": key},
                    )
                except httpx.TransportError:
                    r = None
                if r is not None and r.status_code in (200, 201):
                    answer = r.json()
                    with tally.lock:
                        tally.acked[key] = (int(answer["id"]), str(answer["number"]))
                    break
                if r is not None and r.status_code < 500:
                    with tally.lock:
                        tally.refused.append(f"create {key}: {r.status_code} {r.text[:300]}")
                    break
                with tally.lock:
                    tally.retries += 1
                    if r is not None:
                        tally.server_errors[r.status_code] += 1
                if time.monotonic() > deadline:
                    with tally.lock:
                        tally.given_up.append(key)
                    break
                attempt += 1
                time.sleep(min(0.05 * attempt, 0.5))
            i += CREATORS
            time.sleep(PACE_S)  # leave the two cores some room for the restarts
    finally:
        http.close()


def _race(
    api: Api,
    headers: dict[str, str],
    orders: list[int],
    tally: Tally,
    stop: threading.Event,
    n: int,
) -> None:
    """One supervisor's client urging and supervising the race orders through server `n`
    (the other one while it is down). Each attempt has its own note, so its event can be
    found; an action is not retried (it is not idempotent): a lost answer is `unknown`."""
    http = httpx.Client(timeout=60)
    rng = random.Random(n)
    server = n
    try:
        count = 0
        while not stop.is_set():
            count += 1
            order = rng.choice(orders)
            action = rng.choice(("urge", "supervise"))
            note = f"集群督办{n}-{count}：请尽快处理"
            base = api.bases[server % len(api.bases)]
            try:
                r = http.post(
                    f"{base}/api/v1/tickets/{order}/actions/{action}",
                    json={"note": note},
                    headers=headers,
                )
            except httpx.ConnectError:  # refused: the server is down, nothing was sent
                server += 1
                time.sleep(0.2)
                continue
            except httpx.TransportError:
                r = None
            if r is None or r.status_code >= 500:
                outcome = "unknown"
                server += 1  # try the other server next
                if r is not None:
                    with tally.lock:
                        tally.server_errors[r.status_code] += 1
                time.sleep(0.1)
            elif r.status_code == 200:
                outcome = "acked"
            elif r.status_code == 409:
                outcome = "conflict"  # the other client's action won the version race
            else:
                outcome = "refused"
                with tally.lock:
                    tally.refused.append(f"{action} {order}: {r.status_code} {r.text[:300]}")
            with tally.lock:
                tally.actions[note] = outcome
            time.sleep(PACE_S)
    finally:
        http.close()


def _bring_forward(db: Database, job_ids: list[int]) -> None:
    """Make these jobs due now (their deadline stays: the job is still owed when claimed)."""
    with db.write() as s:
        s.execute(update(Job).where(Job.id.in_(job_ids)).values(run_at=func.now()))


def _dispatched_orders(api: Api, count: int) -> list[int]:
    agent, dispatcher = api.login("agent1"), api.login("dispatcher1")
    base = api.bases[0]
    ids = []
    for i in range(count):
        r = httpx.post(
            f"{base}/api/v1/tickets",
            json={"channel": "phone", "content": f"集群测试定时工单{i}：小区路灯不亮"},
            headers={**agent, "Idempotency-Key": f"setup-{uuid.uuid4().hex}"},
            timeout=60,
        )
        assert r.status_code == 201, r.text
        ticket = int(r.json()["id"])
        r = httpx.post(
            f"{base}/api/v1/tickets/{ticket}/actions/dispatch",
            json={"lead": "S11"},
            headers=dispatcher,
            timeout=60,
        )
        assert r.status_code == 200, r.text
        ids.append(ticket)
    return ids


@pytest.fixture
def cluster_url(templates: Templates, tmp_path: Path) -> Iterator[str]:
    require_backend("postgresql")
    yield from templates.fresh_url("postgresql", True, tmp_path)


@pytest.mark.slow
# Sized for ~90 s on a quiet two-core machine (an estimate); 310-410 s measured with the load
# average at 15-27. Deadlines, not speed, bound it: slow, it passes later rather than fails.
@pytest.mark.timeout(900)
def test_two_servers_and_two_workers_killed_under_load_lose_and_double_nothing(
    cluster_url: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    env = process_env(cluster_url, tmp_path / "var")
    logs = tmp_path / "logs"
    logs.mkdir()
    *ports, hook_port = free_ports(3)
    hook = HookReceiver(hook_port)  # a webhook subscriber: deliveries are checked too
    servers = [
        Proc(f"app{i}", ["serve", "--port", str(port)], env, logs, port=port)
        for i, port in enumerate(ports)
    ]
    workers = [Proc(f"worker{i}", ["worker", "--interval", "0.2"], env, logs) for i in range(2)]
    procs = [servers[0], workers[0], servers[1], workers[1]]  # the kill order, round and round
    db = Database(cluster_url)
    try:
        for p in procs:
            p.start()
        assert all(p.wait_ready(START_S) for p in servers), "\n".join(p.tail() for p in servers)
        phases = {"servers up": time.monotonic() - began}
        api = Api(ports)
        r = httpx.post(
            f"{api.bases[0]}/api/v1/admin/webhooks",
            json={"name": "集群测试订阅", "url": hook.url, "event_types": ["*"]},
            headers=api.login("admin1"),
            timeout=60,
        )
        assert r.status_code == 201, r.text

        # Timers for the workers: dispatched orders' warn/overdue jobs (due days ahead), brought
        # forward a batch at each kill cycle.
        timer_orders = _dispatched_orders(api, TIMER_ORDERS)
        race_orders = _dispatched_orders(api, RACE_ORDERS)
        with db.read() as s:
            job_ids = list(
                s.scalars(
                    select(Job.id)
                    .where(Job.ticket_id.in_(timer_orders), Job.status == "pending")
                    .order_by(Job.id)
                )
            )
        batches = [job_ids[i::CYCLES] for i in range(CYCLES)]  # one falls due at each cycle
        assert len(job_ids) >= 2 * TIMER_ORDERS, job_ids
        assert all(p.wait_ready(START_S) for p in workers), "\n".join(p.tail() for p in workers)
        phases["setup done"] = time.monotonic() - began

        tally = Tally()
        stop = threading.Event()
        agent, supervisor = api.login("agent1"), api.login("supervisor1")
        threads = [
            threading.Thread(target=_create, args=(api, agent, tally, stop, n), daemon=True)
            for n in range(CREATORS)
        ] + [
            threading.Thread(
                target=_race, args=(api, supervisor, race_orders, tally, stop, n), daemon=True
            )
            for n in range(2)
        ]
        for t in threads:
            t.start()

        # The kills: each cycle waits until its target serves again since its last restart
        # (a kill during start-up tests nothing), makes a batch of timers due, lets the load
        # and the workers run a moment (a worker struck now is likely mid-claim), then strikes.
        load_began = time.monotonic()
        for cycle in range(CYCLES):
            target = procs[cycle % len(procs)]
            assert target.wait_ready(START_S), target.tail()
            _bring_forward(db, batches[cycle])
            time.sleep(random.Random(cycle).uniform(0.2, 1.5))
            sig = signal.SIGTERM if cycle in SIGTERM_CYCLES else signal.SIGKILL
            target.restart(sig)
        kills_took = time.monotonic() - load_began
        phases["kills done"] = time.monotonic() - began
        for p in procs:
            assert p.wait_ready(START_S), p.tail()
        stop.set()
        for t in threads:
            t.join(ACK_DEADLINE_S + 60)
        assert not any(t.is_alive() for t in threads), "a client thread hung"

        # Drain: every job brought forward is due; the workers do them all. A delivery that
        # failed on this loaded machine (a send timing out) waits for its backoff (30 s, 2 min
        # …): that schedule is the delivery's own test's; here it is made due again at once.
        def drained() -> bool:
            with db.write() as s:
                s.execute(
                    update(Delivery)
                    .where(Delivery.status == "pending", Delivery.next_at > func.now())
                    .values(next_at=func.now())
                )
            with db.read() as s:
                pending = s.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(Job.id.in_(job_ids), Job.status == "pending")
                )
                undelivered = s.scalar(
                    select(func.count()).select_from(Outbox).where(Outbox.delivered_at.is_(None))
                )
                unsent = s.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.channel == "webhook", Delivery.status != "delivered")
                )
            return pending == 0 and undelivered == 0 and unsent == 0

        assert wait_until(drained, DRAIN_S, every=0.5), _backlog(db) + "\n".join(
            p.tail() for p in workers
        )
        phases["drained"] = time.monotonic() - began
        stop_all(procs)
        statuses = {p.name: p.exits[-1] for p in procs}
        took = time.monotonic() - began
        outcomes = Counter(tally.actions.values())
        print(
            f"\ncluster: {CYCLES} kill/restart cycles in {kills_took:.0f} s "
            f"({len(SIGTERM_CYCLES)} SIGTERM); {len(tally.acked)} creates acknowledged "
            f"({tally.retries} retries, 5xx {dict(tally.server_errors)}); "
            f"{len(job_ids)} timers due during the kills; actions {dict(outcomes)}; "
            f"whole test {took:.0f} s; phases (s from start) "
            + ", ".join(f"{k} {v:.0f}" for k, v in phases.items())
        )

        # -- what the clients saw ------------------------------------------------------------
        assert tally.refused == [], tally.refused[:5]
        assert tally.given_up == [], f"{len(tally.given_up)} creates never acknowledged"
        assert len(tally.acked) >= 20, f"only {len(tally.acked)} creates acknowledged"
        acked_actions = [note for note, outcome in tally.actions.items() if outcome == "acked"]
        assert len(acked_actions) >= 10, Counter(tally.actions.values())
        # A clean stop (SIGTERM): a worker exits 0, a server after its graceful shutdown
        # (uvicorn raises the signal again once it has finished: systemd counts that as clean).
        clean = {p.name: (0,) if p.port is None else (0, -signal.SIGTERM) for p in procs}
        assert all(statuses[n][1] in clean[n] for n in statuses), statuses
        # Each worker stopped with SIGTERM (cycles, and the end) marked its heartbeat stopped.
        termed = [pid for p in workers for sig, _, pid in p.exits if sig == "SIGTERM"]
        with db.read() as s:
            beats = {
                row.pid: row.state
                for row in s.execute(
                    select(Heartbeat.pid, Heartbeat.state).where(Heartbeat.kind == "worker")
                )
            }
        assert {pid: beats.get(pid) for pid in termed} == dict.fromkeys(termed, "stopped")

        with db.read() as s:
            # -- no acknowledged ticket lost, none doubled -----------------------------------
            keys = dict(s.execute(select(IdempotencyKey.key, IdempotencyKey.ticket_id)).all())
            tickets = dict(s.execute(select(Ticket.id, Ticket.number)).all())
            for key, (ticket_id, number) in tally.acked.items():
                assert keys.get(key) == ticket_id, f"acknowledged {key} lost"
                assert tickets[ticket_id] == number
            assert len(keys) == len(tickets), "an order without its key, or a key twice"
            assert set(keys.values()) == set(tickets), "an order without its key"
            load_keys = {k for k in keys if k.startswith("cluster-")}
            assert load_keys <= tally.attempted
            assert len(set(tickets.values())) == len(tickets)
            per_day: dict[str, list[int]] = defaultdict(list)
            for number in tickets.values():
                per_day[number[:8]].append(int(number[8:]))
            for day, seqs in per_day.items():
                assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"gap on {day}"

            # -- no job done twice, no timer missed ------------------------------------------
            jobs = s.execute(
                select(Job.id, Job.status, Job.last_error).where(Job.id.in_(job_ids))
            ).all()
            assert [j for j in jobs if (j.status, j.last_error) != ("done", None)] == []
            notices = Counter(
                (row.job_id, row.recipient)
                for row in s.execute(
                    select(Outbox.job_id, Outbox.recipient).where(Outbox.job_id.in_(job_ids))
                )
            )
            for job_id in job_ids:
                for recipient in ("unit", "centre"):
                    assert notices[(job_id, recipient)] == 1, (job_id, recipient, notices)
            assert sum(notices.values()) == 2 * len(job_ids)

            # -- no lost update --------------------------------------------------------------
            rows = s.execute(
                select(Event.ticket_id, Event.seq, Event.action, Event.note, Event.state_after)
                .order_by(Event.ticket_id, Event.seq)
            ).all()  # fmt: skip
            by_ticket: dict[int, list[tuple[int, str, str | None, str]]] = defaultdict(list)
            for ticket_id, seq, action, note, after in rows:
                by_ticket[ticket_id].append((seq, action, note, after))
            status = dict(s.execute(select(Ticket.id, Ticket.status)).all())
            for ticket_id, events in by_ticket.items():
                assert [e[0] for e in events] == list(range(1, len(events) + 1)), ticket_id
                assert status[ticket_id] == events[-1][3], ticket_id
            assert set(by_ticket) == set(tickets), "an order without its intake event"
            race_notes = Counter(
                note for t in race_orders for _, action, note, _ in by_ticket[t]
                if action in ("urge", "supervise")
            )  # fmt: skip
            for note in acked_actions:
                assert race_notes[note] == 1, f"acknowledged action {note!r}: {race_notes[note]}"
            for note, n in race_notes.items():
                assert n == 1, f"{note!r} stored {n} times"
                assert note is not None and tally.actions.get(note) in ("acked", "unknown"), note
            action_notices = Counter(
                s.execute(
                    select(Outbox.event_id, Outbox.recipient, Outbox.unit_id)
                    .join(Event, Event.id == Outbox.event_id)
                    .where(Event.ticket_id.in_(race_orders))
                    .where(Event.action.in_(("urge", "supervise")))
                ).all()
            )  # fmt: skip
            assert all(n == 1 for n in action_notices.values()), action_notices

            # -- deliveries: at least once, a repeat only ever the same delivery --------------
            outbox = set(s.scalars(select(Outbox.id)))
            hooks = s.execute(
                select(Delivery.id, Delivery.outbox_id, Delivery.status).where(
                    Delivery.channel == "webhook"
                )
            ).all()
            assert sorted(d.outbox_id for d in hooks) == sorted(outbox)  # one each, none missing
            assert {d.status for d in hooks} == {"delivered"}
            with hook.lock:
                received = list(hook.received)
            bodies: dict[str, set[bytes]] = defaultdict(set)
            for delivery_id, body in received:
                bodies[delivery_id].add(body)
            assert set(bodies) == {idempotency_id(d.id) for d in hooks}
            assert all(len(b) == 1 for b in bodies.values()), "a repeat with another body"
            repeats = len(received) - len(bodies)
            failed_tries = Counter(
                s.scalars(select(DeliveryAttempt.detail).where(DeliveryAttempt.ok.is_(False)))
            )
            print(
                f"heartbeats: {_heartbeats(s)}; webhooks: {len(hooks)} delivered, {repeats} "
                f"repeats, failed tries {dict(failed_tries)}"
            )

    finally:
        stop_all(procs)
        hook.close()
        db.dispose()


def _backlog(db: Database) -> str:
    """What was left undone when the drain gave up: jobs and deliveries by status."""
    with db.read() as s:
        jobs = s.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        hooks = s.execute(
            select(Delivery.status, func.count(), func.max(Delivery.last_error)).group_by(
                Delivery.status
            )
        ).all()
        fanned = s.scalar(
            select(func.count()).select_from(Outbox).where(Outbox.delivered_at.is_(None))
        )
    return f"jobs {jobs}; deliveries {hooks}; outbox rows not fanned out {fanned}\n"


def _heartbeats(s: Session) -> str:
    """The heartbeat rows by kind and state, where the processes write them (a bonus, not a
    requirement: the table, migration 0023, may stay empty)."""
    rows = s.execute(text("SELECT kind, state, count(*) FROM heartbeat GROUP BY kind, state"))
    return ", ".join(f"{k}/{st}: {n}" for k, st, n in rows) or "none written"


def test_the_env_example_names_every_setting_jiesu_reads() -> None:
    """deploy/jiesu.env.example is where an operator learns the settings: every `JIESU_*`
    name the code reads is in it (commented out when optional), so a new setting cannot be
    added without saying there what it does."""
    root = Path(__file__).resolve().parent.parent
    code = "\n".join(p.read_text(encoding="utf-8") for p in (root / "jiesu").rglob("*.py"))
    read = set(re.findall(r"\bJIESU_[A-Z0-9_]*[A-Z0-9]\b", code))
    example = (root / "deploy" / "jiesu.env.example").read_text(encoding="utf-8")
    missing = sorted(name for name in read if not re.search(rf"\b{name}\b", example))
    assert missing == [], f"add to deploy/jiesu.env.example: {missing}"
    assert len(read) >= 25, read  # the scan found the settings (a moved package would hide them)
