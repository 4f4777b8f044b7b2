"""The load bench (bench/load.py) runs end to end: a short smoke run on PostgreSQL.

A tiny history (one day), 3 s per phase: jiesu serve with 2 workers and a job worker, the mix,
intake alone, the minimal endpoint and raw PostgreSQL. What is checked is that the bench works
and jiesu answers every request of the mix (no error), not how fast: the machine is shared.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from load import WEIGHTS, LeanClient, Mix, free_port  # noqa: E402

SERVER = os.environ.get("JIESU_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
OP_FIELDS = {"count", "per_s", "p50_ms", "p95_ms", "p99_ms", "errors"}
# The mix's operations every smoke run reaches (the mix spreads them evenly: bench/load.py Mix);
# actions are reported per action (`action:dispatch` …), at least one of them.
MIX_OPS = {"create", "read", "list_street", "list_centre", "console_inbox"}


def test_the_mix_keeps_its_shares_in_every_hundred_and_spreads_each_operation() -> None:
    mix = Mix(WEIGHTS)
    picks = [mix.next() for _ in range(300)]
    for start in (0, 100, 200):
        assert Counter(picks[start : start + 100]) == Counter(WEIGHTS)
    # the rarest operation (8 in 100) comes back within every 16 requests
    assert all(len(set(picks[i : i + 16])) == len(WEIGHTS) for i in range(284))


def test_the_lean_client_reads_sized_and_chunked_answers_on_one_connection() -> None:
    async def scenario() -> None:
        connections = 0

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                size = re.search(rb"Content-Length: (\d+)", head)
                body = await reader.readexactly(int(size.group(1))) if size else b""
                if head.startswith(b"POST"):
                    auth = b"Bearer t" in head
                    out = b'{"auth": %s, "echo": %s}' % (b"true" if auth else b"false", body)
                    writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: %d\r\n\r\n" % len(out))
                    writer.write(out)
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")  # fmt: skip
                await writer.drain()
            writer.close()

        port = free_port()
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        client = LeanClient(f"http://127.0.0.1:{port}")
        try:
            r = await client.request(
                "POST", "/t", json={"content": "楼道灯坏了"}, headers={"Authorization": "Bearer t"}
            )
            assert r.status_code == 201
            assert r.json() == {"auth": True, "echo": {"content": "楼道灯坏了"}}
            r = await client.request("GET", "/console/inbox")
            assert (r.status_code, r.text) == (404, "abcde")
            assert connections == 1  # kept alive
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def _pg_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    if not _pg_answers():
        message = "PostgreSQL at 127.0.0.1:5432 does not answer: the load bench needs it"
        if IN_CI:
            pytest.fail(f"{message} (CI=true)", pytrace=False)
        pytest.skip(message)
    argv = [sys.executable, str(ROOT / "bench" / "load.py"), "--db", SERVER,
            "--duration", "3", "--warmup", "1", "--concurrency", "8", "--runs", "1",
            "--history-days", "1", "--per-day", "50"]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    return dict(json.loads(lines[-1]))


@pytest.mark.slow
@pytest.mark.timeout(420)  # 185–250 s measured at load averages 12–20 on 2 cores
def test_the_last_line_is_the_contract_json(report: dict[str, Any]) -> None:
    assert {"operations", "baselines", "ratios", "machine"} <= set(report)
    assert set(report["baselines"]) == {"minimal_endpoint", "raw_postgres"}
    for op in [*report["operations"].values(), *report["baselines"].values()]:
        assert set(op) == OP_FIELDS
    assert set(report["ratios"]) == {
        "jiesu_per_s_vs_minimal",
        "jiesu_p99_vs_minimal",
        "minimal_per_s_vs_raw",
    }
    assert all(isinstance(v, float) and v > 0 for v in report["ratios"].values())
    assert report["machine"]["cores"] == os.cpu_count()


@pytest.mark.slow
@pytest.mark.timeout(420)  # 185–250 s measured at load averages 12–20 on 2 cores
def test_every_operation_of_the_mix_ran_without_an_error(report: dict[str, Any]) -> None:
    ops = report["operations"]
    assert set(ops) >= MIX_OPS, sorted(ops)
    for name, op in ops.items():
        assert op["errors"] == 0, name
    for name in MIX_OPS:
        assert ops[name]["count"] > 0 and ops[name]["per_s"] > 0, name
    assert any(name.startswith("action:") and op["count"] > 0 for name, op in ops.items())
    alone = report["intake_alone"]["create"]
    assert alone["count"] > 0 and alone["errors"] == 0


@pytest.mark.slow
@pytest.mark.timeout(420)  # 185–250 s measured at load averages 12–20 on 2 cores
def test_the_baselines_ran_in_the_same_run(report: dict[str, Any]) -> None:
    for name, op in report["baselines"].items():
        assert op["count"] > 0 and op["errors"] == 0, name
        assert op["p50_ms"] <= op["p95_ms"] <= op["p99_ms"], name
    assert report["runs"][0]["ratios"] and len(report["runs"]) == 1


@pytest.mark.slow
@pytest.mark.timeout(420)  # 185–250 s measured at load averages 12–20 on 2 cores
def test_the_server_side_was_watched(report: dict[str, Any]) -> None:
    server = report["server"]
    assert server["mix"]["app_workers_cpu_pct"] > 0
    assert "postgres_cpu_pct" in server["raw_postgres"]
    rss = server["app_workers_rss_mb"]
    assert len(rss["before"]) == len(rss["after"]) == 2
    assert report["setup"]["tickets"] > 0 and report["setup"]["database"].startswith("b1_load_")
