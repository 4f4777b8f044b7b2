#!/usr/bin/env python3
"""Intake latency while a webhook receiver hangs (issue 15, the first acceptance point).

A real `jiesu serve` (uvicorn) on a fresh database with the tiny test city, and a worker process
running `run_deliveries` in a loop (the webhook channel, its real timeouts: connect 3 s, total
10 s). Rounds alternate two conditions, the same run:

    none      no subscriber: the outbox is fanned out into nothing
    hanging   one active subscriber whose receiver accepts the connection and never answers
              (a socket held open in this process): every delivery to it hangs until the
              10 s timeout, retried with backoff, while the worker keeps claiming new ones

Each round: --creates sequential `POST /api/v1/tickets` (with a requester phone, so each order
owes notices) on one kept-alive connection; p50 and p95 of the round. The figures are the
medians over --rounds rounds per condition. The last line of stdout is JSON.

    .venv/bin/python bench/delivery.py                         # SQLite
    .venv/bin/python bench/delivery.py --database-url postgresql://postgres@127.0.0.1:5432/x
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
JIESU = Path(sys.executable).with_name("jiesu")
TINY = ROOT / "tests" / "packs" / "tiny"


def free_port(start: int) -> int:
    for port in range(start + os.getpid() % 3000, 32000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32000")


class HangingReceiver:
    """Accepts connections and never answers (holds them until closed)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = free_port(24000)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(512)
        self.held: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)


def worker_loop(url: str, stop: Any, counts: Any) -> None:
    from jiesu.db.engine import Database
    from jiesu.delivery.service import run_deliveries
    from jiesu.delivery.webhooks import WebhookChannel

    db = Database(url)
    channel = WebhookChannel()
    rounds = tried = 0
    while not stop.is_set():
        tried += run_deliveries(db, channels=[channel])
        rounds += 1
        time.sleep(0.2)
    counts[:] = [rounds, tried]


def request(conn: http.client.HTTPConnection, method: str, path: str, body: dict | None,
            headers: dict[str, str]) -> tuple[int, dict]:  # fmt: skip
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"content-type": "application/json", **headers})
    r = conn.getresponse()
    raw = r.read()
    return r.status, (json.loads(raw) if raw else {})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fresh_postgres(url: str) -> str:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--creates", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = (
            fresh_postgres(args.database_url) if args.database_url else f"sqlite:///{tmp}/bench.db"
        )
        env = {**os.environ, "JIESU_VAR_DIR": tmp, "JIESU_DATABASE_URL": url}
        subprocess.run([str(JIESU), "db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run([str(JIESU), "citypack", "load", str(TINY)], env=env, check=True,
                       capture_output=True)  # fmt: skip
        os.environ.update(env)
        port = free_port(21000)
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115
        server = subprocess.Popen([str(JIESU), "serve", "--port", str(port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        receiver = HangingReceiver()
        stop = multiprocessing.Event()
        counts = multiprocessing.Array("q", 2)
        worker = multiprocessing.Process(target=worker_loop, args=(url, stop, counts))
        try:
            for _ in range(100):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    status, _ = request(conn, "GET", "/healthz", None, {})
                    if status == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            status, token = request(conn, "POST", "/api/v1/auth/token",
                                    {"username": "agent1", "password": "secret123"}, {})  # fmt: skip
            assert status == 200, token
            headers = {"authorization": f"Bearer {token['access_token']}"}

            from jiesu.db.engine import Database
            from jiesu.delivery.service import SubscriberIn, create_subscriber, update_subscriber

            db = Database(url)
            hook = SubscriberIn(name="hanging", url=f"http://127.0.0.1:{receiver.port}/hook",
                                event_types=["*"], active=False)  # fmt: skip
            with db.write() as s:
                sub_id = create_subscriber(hook, db_session=s, actor_id=None,
                                           now=datetime.now(UTC)).id  # fmt: skip
            worker.start()

            def one_round() -> list[float]:
                took = []
                for i in range(args.creates):
                    body = {"channel": "phone", "content": f"小区楼道灯坏了一个月没人修 第{i}次",
                            "requester": {"phone": f"1380000{i % 10000:04d}"}}  # fmt: skip
                    t0 = time.perf_counter()
                    status, answer = request(conn, "POST", "/api/v1/tickets", body, headers)
                    took.append((time.perf_counter() - t0) * 1000)
                    assert status == 201, answer
                return took

            one_round()  # warm-up
            results: dict[str, list[tuple[float, float]]] = {"none": [], "hanging": []}
            for _ in range(args.rounds):
                for condition in ("none", "hanging"):
                    with db.write() as s:
                        update_subscriber(sub_id, SubscriberIn(**{**hook.__dict__,
                                          "active": condition == "hanging"}), db_session=s)  # fmt: skip
                    time.sleep(0.5)
                    took = one_round()
                    results[condition].append((percentile(took, 0.5), percentile(took, 0.95)))
            with db.read() as s:
                from sqlalchemy import func, select

                from jiesu.delivery.models import Delivery

                by_status = dict(s.execute(select(Delivery.status, func.count())
                                           .group_by(Delivery.status)).all())  # fmt: skip
        finally:
            stop.set()
            if worker.pid:
                worker.join(60)
            server.send_signal(signal.SIGTERM)
            server.wait(60)
            log.close()
    summary = {
        c: {
            "p50_ms": round(statistics.median(p for p, _ in rows), 1),
            "p95_ms": round(statistics.median(q for _, q in rows), 1),
            "rounds": [(round(p, 1), round(q, 1)) for p, q in rows],
        }
        for c, rows in results.items()
    }
    result = {
        "database": "postgresql" if args.database_url else "sqlite",
        "creates_per_round": args.creates,
        "rounds": args.rounds,
        **summary,
        "hanging_connections_accepted": receiver.accepted,
        "deliveries_by_status": by_status,
        "worker_rounds_and_tries": list(counts[:]),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    for c in ("none", "hanging"):
        print(f"{c:8} p50 {summary[c]['p50_ms']} ms  p95 {summary[c]['p95_ms']} ms  "
              f"rounds {summary[c]['rounds']}")  # fmt: skip
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
