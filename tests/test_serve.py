"""`jiesu serve` as an operator runs it: a real process on a port, one or several workers.

Each server here is `jiesu serve` in a subprocess on a fresh SQLite file. Its log lines (JSON
by default, jiesu/ops/logs.py) carry the process id, and the access lines the client's address
and the request id, which is how a test sees which worker answered a connection, without
anything test-only in the app: a test names its requests with X-Request-ID.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from jiesu.cli import app as cli
from jiesu.settings import get_settings, parse_trusted_proxies
from jiesu.web.serving import listening_sockets, uvicorn_options
from tests.browser_support import free_port
from tests.conftest import Templates

JIESU = Path(sys.executable).with_name("jiesu")
START_TIMEOUT_S = 120.0  # two workers importing the app on a busy 2-core machine


class Served:
    """A `jiesu serve` subprocess and every line it has logged so far."""

    def __init__(self, url: str, var_dir: Path, workers: int, env: dict[str, str]) -> None:
        self.url, self.workers, self.port = url, workers, free_port()
        full_env = {k: v for k, v in os.environ.items() if k != "JIESU_TRUSTED_PROXIES"}
        full_env.update(JIESU_DATABASE_URL=url, JIESU_VAR_DIR=str(var_dir), **env)
        command = [str(JIESU), "serve", "--port", str(self.port), "--workers", str(workers)]
        self.proc = subprocess.Popen(
            command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        # Ready when every worker has started and the port takes connections: one process binds
        # only after its startup, so "startup complete" alone may come before the listening socket.
        if not self.wait_for(
            lambda: self.count("Application startup complete") >= workers and self._accepts()
        ):
            self.stop(signal.SIGKILL)
            raise AssertionError("server did not start:\n" + "\n".join(self.lines))

    def _accepts(self) -> bool:
        with socket.socket() as probe:
            probe.settimeout(2)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, condition, timeout: float = START_TIMEOUT_S) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            if self.proc.poll() is not None:
                self._reader.join(5)
                return bool(condition())
            time.sleep(0.05)
        return False

    def count(self, needle: str) -> int:
        return sum(needle in line for line in list(self.lines))

    def worker_pids(self) -> set[int]:
        found = (re.search(r"Started server process \[(\d+)\]", line) for line in self.lines)
        return {int(m.group(1)) for m in found if m}

    def live_workers(self) -> set[int]:
        """The workers started so far that still run (not reaped)."""
        alive = set()
        for pid in self.worker_pids():
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.add(pid)
        return alive

    def owns(self, pid: int) -> bool:
        """Whether `pid` is still one of this server's workers (not a reused pid)."""
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        return f"JIESU_DATABASE_URL={self.url}".encode() in environ

    def records(self) -> list[dict[str, Any]]:
        """The JSON lines logged so far."""
        found = []
        for line in list(self.lines):
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line))
        return found

    def access(self, request_id: str) -> list[tuple[int, str, int]]:
        """(worker pid, client host, client port) of each logged request named `request_id`."""
        found = []
        for r in self.records():
            if r.get("logger") == "jiesu.access" and r.get("request_id") == request_id:
                host, _, port = str(r["client"]).rpartition(":")
                found.append((int(r["pid"]), host, int(port)))
        return found

    def finished(self, pid: int) -> bool:
        """Whether worker `pid` logged that it finished (a graceful stop)."""
        return any(
            r.get("pid") == pid and str(r.get("message", "")).startswith("Finished server process")
            for r in self.records()
        )

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(5)


def _serve(templates: Templates, directory: Path, workers: int, **env: str) -> Iterator[Served]:
    for url in templates.fresh_url("sqlite", False, directory):
        server = Served(url, directory, workers, env)
        try:
            yield server
        finally:
            server.stop(signal.SIGTERM)  # SIGKILL after 60 s
            for pid in server.live_workers():  # a test that failed may leave orphans
                if server.owns(pid):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def two_workers(templates: Templates, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(templates, tmp_path_factory.mktemp("serve"), 2)


def _get(
    conn: http.client.HTTPConnection, path: str, request_id: str | None = None
) -> tuple[int, bytes]:
    conn.request("GET", path, headers={"X-Request-ID": request_id} if request_id else {})
    response = conn.getresponse()
    return response.status, response.read()


@pytest.mark.slow
def test_several_workers_answer_a_reused_connection_without_the_delayed_ack_stall(
    two_workers: Served,
) -> None:
    # Without TCP_NODELAY every response after the first on a kept-alive connection waited for
    # the client's delayed ACK: 44 ms median against about 1 ms with one worker.
    conn = two_workers.connection()
    assert _get(conn, "/healthz", "reused")[0] == 200  # the connection is open, the worker warm
    timings = []
    for _ in range(30):
        started = time.perf_counter()
        status, body = _get(conn, "/healthz", "reused")
        timings.append((time.perf_counter() - started) * 1000)
        assert status == 200 and json.loads(body)["status"] == "ok"
    conn.close()
    assert two_workers.wait_for(lambda: len(two_workers.access("reused")) == 31, 30)
    ports = {port for _, _, port in two_workers.access("reused")}
    assert len(ports) == 1, "the requests did not share one connection"
    assert statistics.median(timings) < 20, f"median {statistics.median(timings):.1f} ms"


@pytest.mark.slow
def test_connections_spread_over_the_workers(two_workers: Served) -> None:
    # Rounds of 16 connections opened together, as a load tester or a proxy's pool does. With
    # one socket shared by the workers, the first to wake accepted a whole round (6 out of 6).
    for round_ in range(3):
        name = f"spread-{round_}"
        conns = [two_workers.connection() for _ in range(16)]
        for conn in conns:
            conn.connect()
        ports = {conn.sock.getsockname()[1] for conn in conns}
        for conn in conns:
            conn.request("GET", "/healthz", headers={"X-Request-ID": name})
        for conn in conns:
            assert conn.getresponse().status == 200
            conn.close()
        assert two_workers.wait_for(lambda: len(two_workers.access(name)) == 16, 30)  # noqa: B023
        by_port = {port: pid for pid, _, port in two_workers.access(name)}
        assert set(by_port) == ports
        assert len(two_workers.worker_pids()) == 2
        assert set(by_port.values()) == two_workers.worker_pids(), f"round {round_}"


@pytest.mark.slow
def test_metrics_of_several_workers_are_summed_in_one_scrape(two_workers: Served) -> None:
    # Fresh connections until both workers have answered some (the kernel spreads them).
    sent = 0
    while sent < 16 or len({pid for pid, _, _ in two_workers.access("m-live")}) < 2:
        assert sent < 200, "the connections never reached both workers"
        conn = two_workers.connection()
        assert _get(conn, "/livez", "m-live")[0] == 200
        conn.close()
        sent += 1
        two_workers.wait_for(lambda: len(two_workers.access("m-live")) == sent, 10)  # noqa: B023
    per_worker = Counter(pid for pid, _, _ in two_workers.access("m-live"))
    assert len(per_worker) == 2 and sum(per_worker.values()) == sent
    conn = two_workers.connection()
    status, body = _get(conn, "/metrics")
    conn.close()
    assert status == 200
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    key = ("jiesu_http_requests_total", (("method", "GET"), ("route", "/livez"), ("status", "2xx")))
    assert found[key] == sent  # both workers' counts, in whichever worker answered the scrape
    assert found[("jiesu_http_requests_in_flight", ())] == 1  # the scrape itself
    assert found[("jiesu_database_up", ())] == 1


@pytest.mark.slow
def test_a_worker_that_dies_is_replaced(two_workers: Served) -> None:
    before = two_workers.worker_pids()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    assert two_workers.wait_for(lambda: len(two_workers.worker_pids() - before) == 1)
    assert two_workers.wait_for(lambda: two_workers.count("Application startup complete") == 3)
    # The new worker serves on the dead one's socket: every connection is answered.
    for _ in range(8):
        conn = two_workers.connection()
        assert _get(conn, "/healthz", "after")[0] == 200
        conn.close()
    assert two_workers.proc.poll() is None


@pytest.mark.slow
def test_sighup_replaces_the_workers_without_refusing_a_connection(two_workers: Served) -> None:
    old = two_workers.live_workers()
    assert len(old) == 2
    failures: list[str] = []
    answered = 0
    done = threading.Event()

    def poll() -> None:  # a fresh connection every 20 ms while the workers change
        nonlocal answered
        while not done.is_set():
            try:
                conn = two_workers.connection()
                status, _ = _get(conn, "/healthz", "hup")
                conn.close()
                answered += 1
                if status != 200:
                    failures.append(str(status))
            except OSError as exc:
                failures.append(repr(exc))
            time.sleep(0.02)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        two_workers.proc.send_signal(signal.SIGHUP)
        assert two_workers.wait_for(lambda: not (two_workers.live_workers() & old))
        assert two_workers.wait_for(lambda: len(two_workers.live_workers()) == 2)
        time.sleep(0.5)
    finally:
        done.set()
        poller.join()
    assert failures == []
    assert answered > 10
    for pid in old:
        assert two_workers.finished(pid)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_every_worker_gracefully(
    sig: int, templates: Templates, tmp_path: Path
) -> None:
    for server in _serve(templates, tmp_path, 2):
        pids = server.worker_pids()
        assert len(pids) == 2
        conn = server.connection()  # an idle kept-alive connection must not hold the stop up
        assert _get(conn, "/healthz")[0] == 200
        assert server.stop(sig) == 0
        for pid in pids:
            assert server.finished(pid)
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        conn.close()


def _failed_sign_in_address(server: Served) -> str:
    conn = server.connection()
    body = json.dumps({"username": "nobody", "password": "wrong-password"})
    conn.request("POST", "/api/v1/auth/token", body=body, headers={
        "content-type": "application/json", "x-forwarded-for": "1.2.3.4",
    })  # fmt: skip
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 401
    engine = create_engine(server.url)
    with engine.connect() as connection:
        address = connection.scalar(
            text("SELECT ip FROM audit_log WHERE action = 'login_failed' ORDER BY id DESC")
        )
    engine.dispose()
    return str(address)


@pytest.mark.slow
def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(
    templates: Templates, tmp_path: Path
) -> None:
    # One worker: what `make run` starts. A client on loopback used to pick its own address
    # with X-Forwarded-For, a new one per try, past the per-address sign-in limit.
    for server in _serve(templates, tmp_path, 1, JIESU_LOG_FORMAT="text"):
        assert _failed_sign_in_address(server) == "127.0.0.1"
        # uvicorn alone shuts down gracefully, then ends by the signal it was sent.
        assert server.stop() in (0, -signal.SIGTERM)
        assert server.count("Finished server process") == 1
    # The logs for people (JIESU_LOG_FORMAT=text): one line each, the pid, the request's fields.
    access = [line for line in server.lines if " jiesu.access: POST " in line]
    assert len(access) == 1 and not server.records()
    assert re.search(
        r"INFO \[\d+\] jiesu\.access: POST /api/v1/auth/token 401 [\d.]+ ms request_id=[0-9a-f]{32} "
        r"method=POST route=/api/v1/auth/token path=/api/v1/auth/token status=401 "
        r"duration_ms=[\d.]+ client=127\.0\.0\.1:\d+$",
        access[0],
    ), access[0]
    assert any(
        re.search(r"INFO \[\d+\] uvicorn\.error: Finished server process", x) for x in server.lines
    )


@pytest.mark.slow
def test_forwarded_for_from_a_trusted_proxy_names_the_client(
    templates: Templates, tmp_path: Path
) -> None:
    # Two workers: the setting reaches every worker process.
    for server in _serve(templates, tmp_path, 2, JIESU_TRUSTED_PROXIES="127.0.0.1"):
        assert _failed_sign_in_address(server) == "1.2.3.4"
        assert server.stop() == 0


def test_trusted_proxies_setting() -> None:
    assert parse_trusted_proxies("") == ()
    assert parse_trusted_proxies(" 127.0.0.1, 10.0.0.0/8 ,::1,") == (
        "127.0.0.1",
        "10.0.0.0/8",
        "::1",
    )
    assert parse_trusted_proxies("10.1.2.3/8") == ("10.0.0.0/8",)
    with pytest.raises(ValueError, match="不是 IP 地址或网段"):
        parse_trusted_proxies("127.0.0.1,proxy.internal")
    with pytest.raises(ValueError):
        parse_trusted_proxies("*")
    assert uvicorn_options(()) == {"proxy_headers": False, "forwarded_allow_ips": []}
    assert uvicorn_options(("10.0.0.0/8",)) == {
        "proxy_headers": True,
        "forwarded_allow_ips": ["10.0.0.0/8"],
    }


def test_serve_refuses_a_malformed_trusted_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIESU_TRUSTED_PROXIES", "127.0.0.1;10.0.0.1")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve", "--port", str(free_port())])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "JIESU_TRUSTED_PROXIES" in result.output


def test_the_worker_sockets_share_a_port_and_refuse_a_taken_one() -> None:
    sockets = listening_sockets("127.0.0.1", 0, 3)
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == 1
        for s in sockets:
            assert s.proto == socket.IPPROTO_TCP
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        with pytest.raises(OSError):  # a second jiesu on the same port is refused
            listening_sockets("127.0.0.1", ports.pop(), 2)
    finally:
        for s in sockets:
            s.close()
    with socket.socket() as taken:  # an ordinary listener, without SO_REUSEPORT
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            listening_sockets("127.0.0.1", taken.getsockname()[1], 2)


def test_serve_with_workers_refuses_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--port", str(port), "--workers", "2"])
    assert result.exit_code == 3  # uvicorn's STARTUP_FAILURE, as when a worker cannot start


@pytest.mark.slow
def test_workers_stop_when_the_supervisor_is_killed(templates: Templates, tmp_path: Path) -> None:
    # An orphaned worker would go on serving (old code) on the port.
    for server in _serve(templates, tmp_path, 2):
        pids = server.live_workers()
        assert len(pids) == 2
        server.proc.kill()
        server.proc.wait(30)
        deadline = time.monotonic() + 30
        while server.live_workers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not server.live_workers()
        server._reader.join(10)
        for pid in pids:
            assert server.finished(pid)


def test_each_server_gets_a_fresh_metrics_directory_and_orphans_go() -> None:
    from jiesu.web.serving import METRICS_PREFIX, metrics_directory

    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = Path(tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{gone.pid}-"))  # a killed server's
    alive = Path(tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-"))  # a running one's
    try:
        before = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        with metrics_directory() as path:
            assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == path
            assert Path(path).is_dir() and not list(Path(path).iterdir())
            assert not orphan.exists() and alive.exists()
        assert not Path(path).exists()
        assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") == before
    finally:
        shutil.rmtree(alive, ignore_errors=True)
        shutil.rmtree(orphan, ignore_errors=True)
