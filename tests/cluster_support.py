"""Process helpers for the cluster test (tests/test_cluster_kills.py): real `jiesu serve` and
`jiesu worker` processes on one PostgreSQL, killed and restarted at will.

Each process is the command an operator runs (deploy/systemd), not a thread in the test: a
SIGKILL must cut it wherever it is, its database connections included. Each incarnation logs to
its own file under the test's directory, so a failing run shows what every process said.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

JIESU = Path(sys.executable).with_name("jiesu")
STOP_GRACE_S = 40.0
WORKER_SETTLE_S = 8.0  # SIGTERM: a worker finishes its step, a server its requests


def wait_until(condition: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; whether it held. Deadlines,
    never sleeps that assume a speed: the suite runs this beside other tests on two cores."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)


@dataclass
class Proc:
    """One long-running jiesu process, restartable: `jiesu serve --port P` or `jiesu worker`."""

    name: str
    args: list[str]
    env: dict[str, str]
    logs: Path
    port: int | None = None  # a server's
    started_at: float = 0.0  # time.monotonic() of the last start
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    # (signal, exit status, pid) of each incarnation stopped
    exits: list[tuple[str, int | None, int]] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.logs / f"{self.name}.{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        self.started_at = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(JIESU), *self.args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        """Whether this incarnation serves: a server answers /healthz; a worker has logged
        something (it has imported and configured its logging: the loop runs) or has lived
        WORKER_SETTLE_S seconds (a worker that logs nothing at start)."""
        if not self.alive():
            return False
        if self.port is not None:
            try:
                r = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5)
            except httpx.HTTPError:
                return False
            return r.status_code == 200
        try:
            logged = self.log.stat().st_size > 0
        except OSError:
            logged = False
        return logged or time.monotonic() - self.started_at >= WORKER_SETTLE_S

    def wait_ready(self, timeout: float) -> bool:
        return wait_until(self.ready, timeout, every=0.2)

    def stop(self, sig: int = signal.SIGTERM, *, signalled: bool = False) -> int | None:
        """Signal it (unless `signalled` already) and reap it (SIGKILL after the grace
        period); its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            if not signalled:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_GRACE_S if sig != signal.SIGKILL else 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        status = self.proc.returncode
        self.exits.append((signal.Signals(sig).name, status, self.proc.pid))
        return status

    def restart(self, sig: int) -> None:
        self.stop(sig)
        self.start()

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return f"[{self.name}: no log]"
        return f"[{self.name} #{self.starts}]\n" + "\n".join(text.splitlines()[-lines:])


def process_env(database_url: str, var_dir: Path) -> dict[str, str]:
    """The environment of every process: the test's database and var directory; no proxy
    trusted (a developer's own setting must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIESU_")}
    env.update(
        JIESU_DATABASE_URL=database_url,
        JIESU_VAR_DIR=str(var_dir),
        JIESU_ARGON2_PROFILE=os.environ.get("JIESU_ARGON2_PROFILE", "cheapest"),
        PYTHONUNBUFFERED="1",
    )
    return env


def free_ports(count: int, low: int = 21000, high: int = 31999) -> list[int]:
    """`count` ports nobody listens on, in the range the working agreement gives tests,
    starting at a place picked by the pid (parallel test processes do not collide)."""
    import socket

    ports: list[int] = []
    span = high - low
    start = (os.getpid() * 7919 + int(time.time() * 1000)) % span
    for offset in range(span):
        port = low + (start + offset) % span
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError("no free port between 21000 and 31999")


def stop_all(procs: list[Proc]) -> None:
    """SIGTERM every process at once, then reap each (SIGKILL after the grace period)."""
    for p in procs:
        if p.alive():
            assert p.proc is not None
            p.proc.send_signal(signal.SIGTERM)
    for p in procs:
        p.stop(signal.SIGTERM, signalled=True)


class HookReceiver:
    """A webhook subscriber on loopback: records each POST's `webhook-id` and body, answers 204.
    It keeps every try, repeats included: deliveries are at-least-once."""

    def __init__(self, port: int) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.received.append((self.headers.get("webhook-id", ""), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the test reads `received`

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # not 5: the workers' delivery threads connect in bursts
            daemon_threads = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
