"""How `jiesu serve` runs the app: one uvicorn process, or a supervisor and N worker processes.

With several workers the supervisor opens one listening socket per worker, all on the same
address with SO_REUSEPORT (as nginx's `reuseport` does): the kernel spreads new connections
over them by their address hash, so each worker gets its share. One shared socket, as uvicorn's
own `--workers` binds it, lets whichever worker wakes first accept a whole burst (in a test
all 16 connections landed on one worker in 5 of 6 runs). The sockets are made with proto
IPPROTO_TCP and TCP_NODELAY: asyncio only sets TCP_NODELAY on accepted connections of such
sockets, and without it each response on a reused connection waited ~40 ms for a delayed ACK.

The supervisor holds the sockets for its whole life: a worker that dies is replaced on its own
socket, and connections that arrive meanwhile wait in that socket's queue. SIGTERM and SIGINT
stop every worker gracefully (in-flight requests finish); SIGHUP replaces them one by one (new
code, no refused connection). A worker stops by itself when its supervisor is gone.

Forwarded headers (X-Forwarded-For / -Proto) are believed only from JIESU_TRUSTED_PROXIES; by
default nobody is trusted and the client is the TCP peer, so a client cannot choose the address
the per-address sign-in limit and the audit log see.

Logs: one configuration for the supervisor and every worker (`ops/logs.py`: JSON lines, or
text with JIESU_LOG_FORMAT=text), the process id on every line; uvicorn's access line is off
(it carries the query string) and the app's middleware writes its own.

Metrics: with several workers the supervisor points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before any worker starts, so that a scrape of any worker sums them all; a worker that
dies or is replaced is marked dead there (its in-flight gauge goes), and the directory is
removed when the server stops.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Process

from jiesu.ops.logs import logging_config

APP = "jiesu.web.asgi:app"
BACKLOG = 2048  # uvicorn's default
STOP_GRACE_S = 30.0  # after SIGTERM, how long a worker may take to finish before it is killed
HEALTHCHECK_S = 5.0
READY_S = 120.0  # SIGHUP: how long a replacement may take to import the app and start

log = logging.getLogger("uvicorn.error")


def log_config(log_format: str | None = None) -> dict[str, Any]:
    """The server's logging (`ops/logs.py`), the process id on every line: with several workers
    each line names the worker that wrote it."""
    return logging_config(log_format)


def uvicorn_options(trusted_proxies: tuple[str, ...]) -> dict[str, Any]:
    """Forwarded headers only from the named proxies; none named: not read at all."""
    if not trusted_proxies:
        return {"proxy_headers": False, "forwarded_allow_ips": []}
    return {"proxy_headers": True, "forwarded_allow_ips": list(trusted_proxies)}


def serve(
    *,
    host: str,
    port: int,
    workers: int,
    reload: bool,
    trusted_proxies: tuple[str, ...],
    log_format: str | None = None,
) -> int:
    """Run the server until it is stopped; the exit status."""
    options = uvicorn_options(trusted_proxies)
    common: dict[str, Any] = {
        "log_level": "info", "log_config": log_config(log_format), "access_log": False, **options,
    }  # fmt: skip
    if reload:
        uvicorn.run(APP, host=host, port=port, reload=True, **common)
        return 0
    if workers <= 1:
        # One process: uvicorn binds through asyncio, which sets TCP_NODELAY itself.
        config = uvicorn.Config(APP, host=host, port=port, **common)
        _log_forwarding(trusted_proxies)
        server = uvicorn.Server(config)
        server.run()
        return 0 if server.started else STARTUP_FAILURE
    try:
        sockets = listening_sockets(host, port, workers)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        return STARTUP_FAILURE
    config = uvicorn.Config(APP, host=host, port=port, workers=workers, backlog=BACKLOG, **common)
    log.info("jiesu on http://%s:%d with %d workers, one socket each (SO_REUSEPORT)",
             host, sockets[0].getsockname()[1], workers)  # fmt: skip
    _log_forwarding(trusted_proxies)
    try:
        with metrics_directory():
            return Supervisor(config, sockets).run()
    finally:
        for sock in sockets:
            sock.close()


@contextmanager
def metrics_directory() -> Iterator[str]:
    """A fresh PROMETHEUS_MULTIPROC_DIR for this server's workers (they inherit the setting),
    removed when the server stops: figures from an earlier run never mix with this one's."""
    _remove_orphans()
    path = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
    previous = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = previous
        shutil.rmtree(path, ignore_errors=True)


METRICS_PREFIX = "jiesu-metrics-"


def _remove_orphans() -> None:
    """The directories of servers that were killed (SIGKILL leaves no time to clean up)."""
    for found in Path(tempfile.gettempdir()).glob(f"{METRICS_PREFIX}*-*"):
        pid = found.name.removeprefix(METRICS_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or found.stat().st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(found, ignore_errors=True)
        except PermissionError:  # alive, someone else's
            continue


def _mark_dead(pid: int | None) -> None:
    """A worker that is gone: its live gauges (requests in flight) leave the sums."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if pid is None or not path:
        return
    from prometheus_client import multiprocess

    with suppress(OSError):
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def _log_forwarding(trusted_proxies: tuple[str, ...]) -> None:
    if trusted_proxies:
        log.info("X-Forwarded-For/-Proto believed from %s", ", ".join(trusted_proxies))
    else:
        log.info("X-Forwarded-For/-Proto ignored (JIESU_TRUSTED_PROXIES is empty)")


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening TCP sockets on one address (SO_REUSEPORT), TCP_NODELAY set.

    A port anything else listens on is refused, another jiesu's included: SO_REUSEPORT alone
    would let a second server join the first one's port and take half its connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:  # without SO_REUSEPORT
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on an accepted connection only
            # when its socket says it is TCP (base_events._set_nodelay).
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]  # port 0: the others join the first one's port
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Worker(Process):
    """uvicorn's worker process (the app, health pings from the supervisor), which also stops
    when its supervisor is gone: an orphan would keep serving old code on the port."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover
        supervisor = os.getppid()
        threading.Thread(target=_stop_when_orphaned, args=(supervisor,), daemon=True).start()
        super().target(sockets)


def _stop_when_orphaned(supervisor: int) -> None:  # pragma: no cover - runs in the worker
    while os.getppid() == supervisor:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    """Starts one worker per socket, replaces a worker that dies on the same socket, and stops
    them all on SIGTERM/SIGINT."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.workers: list[Worker] = []
        self.signals: list[int] = []
        self.stopping = threading.Event()
        self.status = 0

    def _start(self, index: int) -> Worker:
        worker = Worker(self.config, [self.sockets[index]])
        worker.start()
        return worker

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda number, _frame: self.signals.append(number))
        log.info("Started parent process [%d]", os.getpid())
        self.workers = [self._start(i) for i in range(len(self.sockets))]
        while not self.stopping.wait(0.5):
            self._handle_signals()
            self._keep_alive()
        self._stop_all()
        log.info("Stopped parent process [%d]", os.getpid())
        return self.status

    def _handle_signals(self) -> None:
        while self.signals:
            number = self.signals.pop(0)
            if number == signal.SIGHUP:
                log.info("Received SIGHUP, replacing the workers one by one.")
                self._replace_all()
            else:
                log.info("Received %s, stopping.", signal.Signals(number).name)
                self.stopping.set()

    def _keep_alive(self) -> None:
        for index, worker in enumerate(self.workers):
            if self.stopping.is_set():
                return
            if worker.is_alive(timeout=HEALTHCHECK_S):
                continue
            worker.kill()  # dead, or hung: it no longer answers its pings
            worker.join()
            _mark_dead(worker.pid)
            if worker.exitcode == STARTUP_FAILURE:
                # The app cannot start (import error, database unreachable …): restarting
                # would fail the same way.
                log.error("Child process [%s] failed to start, stopping.", worker.pid)
                self.status = STARTUP_FAILURE
                self.stopping.set()
                return
            log.info("Child process [%s] died, starting another.", worker.pid)
            self.workers[index] = self._start(index)

    def _replace_all(self) -> None:
        for index, old in enumerate(self.workers):
            new = self._start(index)
            if not new.wait_until_ready(READY_S, _StopQueued(self.signals)):  # type: ignore[arg-type]
                new.kill()
                new.join()
                log.error("New child process [%s] was not ready; keeping the old ones.", new.pid)
                return
            old.terminate()
            _join_or_kill(old)
            _mark_dead(old.pid)
            self.workers[index] = new

    def _stop_all(self) -> None:
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            _join_or_kill(worker)
            _mark_dead(worker.pid)


class _StopQueued:
    """Event-like: set once SIGTERM or SIGINT waits in the queue (a replacement stops waiting)."""

    def __init__(self, signals: list[int]) -> None:
        self.signals = signals

    def is_set(self) -> bool:
        return any(number != signal.SIGHUP for number in self.signals)


def _join_or_kill(worker: Worker) -> None:
    worker.process.join(STOP_GRACE_S)
    if worker.process.exitcode is None:
        log.warning("Child process [%s] did not stop in %.0f s, killed.", worker.pid, STOP_GRACE_S)
        worker.process.kill()
        worker.process.join()
