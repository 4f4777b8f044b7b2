#!/usr/bin/env python3
"""`jiesu serve` with several workers: latency on a reused connection, and how connections spread.

Issue 13 §6: with `--workers 2` every response on a kept-alive connection took ~44 ms (a delayed
ACK: no TCP_NODELAY on the shared socket uvicorn binds) and a burst of connections landed on one
worker. This starts `jiesu serve --workers N` on a fresh SQLite file and measures:

    keep-alive   --requests GET /healthz on one connection, after one warm-up request; the
                 median per run, --runs runs (a new connection each)
    spread       --rounds rounds of 16 connections opened together, then one request on each;
                 per round, how many connections each worker process holds (read from
                 /proc: the server side of each connection → the worker holding its socket)

`--source DIR` serves from another checkout (e.g. `git worktree add /tmp/old <commit>`), for a
before/after on the same machine. Linux only (/proc). The last line of stdout is JSON.

    .venv/bin/python bench/serve.py --workers 2
    .venv/bin/python bench/serve.py --workers 2 --source /tmp/old
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JIESU = Path(sys.executable).with_name("jiesu")


def free_port() -> int:
    for port in range(21000 + os.getpid() % 5000, 32000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32000")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def server_side_inodes(server_port: int) -> dict[int, str]:
    """client port → inode of the server's socket for that connection (IPv4 loopback)."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        remote_port = int(fields[2].split(":")[1], 16)
        if local_port == server_port:
            found[remote_port] = fields[9]
    return found


def wait_ready(port: int, workers: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server stopped")
        if workers == 1 or len(children(proc.pid)) >= workers:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    time.sleep(5)  # every worker up (each imports the app)
                    return
            except OSError:
                pass
        time.sleep(0.5)
    raise SystemExit("the server did not start")


def keep_alive(port: int, requests: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/healthz")
    conn.getresponse().read()
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        timings.append((time.perf_counter() - started) * 1000)
    conn.close()
    return statistics.median(timings)


def spread(port: int, server_pid: int) -> list[int]:
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(16)]
    for conn in conns:
        conn.connect()
    for conn in conns:
        conn.request("GET", "/healthz")
    for conn in conns:
        conn.getresponse().read()
    inodes = server_side_inodes(port)
    held = {pid: socket_inodes(pid) for pid in children(server_pid)}
    counts = dict.fromkeys(held, 0)
    for conn in conns:
        inode = inodes.get(conn.sock.getsockname()[1])
        for pid, owned in held.items():
            if inode in owned:
                counts[pid] += 1
        conn.close()
    return sorted((n for n in counts.values() if n), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--source", type=Path, help="serve this checkout's jiesu instead")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "JIESU_VAR_DIR": tmp}
        env.pop("JIESU_DATABASE_URL", None)
        if args.source:
            env["PYTHONPATH"] = str(args.source.resolve())
        subprocess.run([str(JIESU), "db", "upgrade"], env=env, check=True, capture_output=True)
        port = free_port()
        command = [str(JIESU), "serve", "--port", str(port), "--workers", str(args.workers)]
        log = open(Path(tmp) / "serve.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(port, args.workers, proc)
            medians = [keep_alive(port, args.requests) for _ in range(args.runs)]
            rounds = []
            for _ in range(args.rounds):
                rounds.append(spread(port, proc.pid))
                time.sleep(1)
        finally:
            proc.send_signal(signal.SIGTERM)
            stopped = proc.wait(60)
            log.close()
    result = {
        "workers": args.workers,
        "source": str(args.source or ROOT),
        "keepalive_median_ms": round(statistics.median(medians), 2),
        "keepalive_runs_ms": [round(m, 2) for m in medians],
        "spread_rounds": rounds,
        "rounds_on_one_worker": sum(len(r) == 1 for r in rounds),
        "exit_status_after_sigterm": stopped,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(f"keep-alive /healthz median {result['keepalive_median_ms']} ms "
          f"(runs {result['keepalive_runs_ms']}); spread per round {rounds}")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
