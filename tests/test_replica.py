"""The read replica for analysis (issue 17 §5, `jiesu.db.replica`): the analysis pages read the
replica, everything else the primary; a replica that lags past the bound, or does not answer,
hands its reads back to the primary; a fresh read waits for the replica to replay what the
primary committed; analysis sessions are read-only. The last tests run a real streaming
primary and hot standby (tests/replica_support.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from conftest import TINY_PACK, Templates, auth, require_backend
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from replica_support import Cluster, streaming_cluster
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from jiesu.assessment import service as A
from jiesu.assessment.models import Report
from jiesu.db import replica as R
from jiesu.db.engine import Database
from jiesu.demo.generate import generate
from jiesu.reports.build import build_on
from jiesu.web.app import create_app

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)  # noon in the city
MONTH = "2026-11"


@pytest.fixture
def two(templates: Templates, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two fresh PostgreSQL databases with the tiny pack: the primary, and a stand-in for its
    replica that has a history the primary has not (so a figure tells which one answered)."""
    require_backend("postgresql")
    a = cast(Generator[str, None, None], templates.fresh_url("postgresql", True, tmp_path))
    b = cast(Generator[str, None, None], templates.fresh_url("postgresql", True, tmp_path))
    primary, standin = next(a), next(b)
    try:
        history = Database(standin)
        generate(history, days=5, per_day=30, now=NOW, pack_dir=TINY_PACK, seed=3)
        history.dispose()
        yield primary, standin
    finally:
        a.close()
        b.close()


def orders(rows: Sequence[Any]) -> int:
    """Orders counted in a ranking's rows (the API's dicts or the service's rows)."""
    return sum(int(r["orders"] if isinstance(r, dict) else r.orders) for r in rows)


def reads(on: str) -> float:
    return REGISTRY.get_sample_value("jiesu_analysis_reads_total", {"on": on}) or 0.0


def test_analysis_pages_read_the_replica_and_the_rest_the_primary(two: tuple[str, str]) -> None:
    primary, standin = two
    db = Database(primary, analysis_url=standin)
    try:
        with db.read() as s:
            assert orders(A.rankings(MONTH, "street", db_session=s).rows) == 0
        with db.analysis() as s:
            on_replica = orders(A.rankings(MONTH, "street", db_session=s).rows)
        assert on_replica > 0
        with TestClient(create_app(db)) as client:
            before = reads("replica")
            headers = auth(client, "supervisor1")  # signed in on the primary
            r = client.get("/api/v1/metrics/units", params={"period": MONTH, "kind": "street"},
                           headers=headers)  # fmt: skip
            assert r.status_code == 200, r.text
            assert orders(r.json()["rows"]) == on_replica  # the 三率 table: the replica
            assert reads("replica") == before + 1
            listed = client.get("/api/v1/tickets", headers=headers)
            assert listed.status_code == 200 and listed.json()["total"] == 0  # work: the primary
    finally:
        db.dispose()


def test_without_a_replica_analysis_reads_the_primary_read_only(two: tuple[str, str]) -> None:
    primary, _ = two
    db = Database(primary)
    try:
        before = reads("primary")
        with db.analysis() as s:
            assert s.execute(text("SHOW transaction_read_only")).scalar_one() == "on"
        assert reads("primary") == before + 1
        with pytest.raises(DBAPIError, match="read-only"), db.analysis() as s:
            s.execute(text("UPDATE unit SET name = name"))
    finally:
        db.dispose()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_lagging_replica_hands_its_reads_back_until_it_catches_up(
    two: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    primary, standin = two
    db = Database(primary, analysis_url=standin, max_lag_s=30)
    assert db.replica is not None
    clock, lag = Clock(), [0.0]
    db.replica.clock = clock
    db.replica.lag = lambda: lag[0]  # type: ignore[method-assign]
    try:
        caplog.set_level(logging.INFO, logger="jiesu.replica")

        def answered() -> str:
            with db.analysis() as s:
                n = orders(A.rankings(MONTH, "street", db_session=s).rows)
            return "replica" if n else "primary"

        assert answered() == "replica"
        lag[0] = 45.0
        assert answered() == "replica"  # checked at most every CHECK_EVERY_S
        clock.t += R.CHECK_EVERY_S
        assert answered() == "primary"
        assert answered() == "primary"
        warned = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1 and "45 s behind" in warned[0].getMessage()
        sample = REGISTRY.get_sample_value("jiesu_analysis_replica_lag_seconds")
        assert sample == 45.0
        lag[0] = 2.0
        clock.t += R.CHECK_EVERY_S
        assert answered() == "replica"
        assert any("to the replica again" in r.getMessage() for r in caplog.records)
    finally:
        db.dispose()


def test_a_replica_that_does_not_answer_leaves_the_pages_working(two: tuple[str, str]) -> None:
    primary, _ = two
    nowhere = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere?connect_timeout=2"
    db = Database(primary, analysis_url=nowhere)
    try:
        with TestClient(create_app(db)) as client:
            r = client.get("/api/v1/metrics/units", params={"period": MONTH, "kind": "street"},
                           headers=auth(client, "supervisor1"))  # fmt: skip
            assert r.status_code == 200, r.text
            assert orders(r.json()["rows"]) == 0  # the primary's figures
        assert REGISTRY.get_sample_value("jiesu_analysis_replica_lag_seconds") == -1.0
    finally:
        db.dispose()


# ---- a real primary and hot standby ----------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with streaming_cluster() as c:
        yield c


def _replica_caught_up(standby: str, table_rows: int, within_s: float = 30) -> None:
    engine = create_engine(standby)
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            with engine.connect() as c:
                have = c.execute(text("SELECT to_regclass('probe') IS NOT NULL")).scalar_one()
                if (
                    have
                    and c.execute(text("SELECT count(*) FROM probe")).scalar_one() == table_rows
                ):
                    return
            time.sleep(0.1)
    finally:
        engine.dispose()
    raise AssertionError("the standby did not replay the primary's writes")


@pytest.mark.xdist_group("replica")
def test_a_streaming_standby_serves_fresh_reads_and_a_paused_one_does_not(
    cluster: Cluster,
) -> None:
    db = Database(cluster.primary_url, analysis_url=cluster.standby_url, max_lag_s=1)
    assert db.replica is not None
    clock = Clock()
    db.replica.clock = clock
    standby_admin = create_engine(cluster.standby_url, isolation_level="AUTOCOMMIT")
    try:
        with db.write() as s:
            s.execute(text("CREATE TABLE probe (n int)"))
            s.execute(text("INSERT INTO probe VALUES (1)"))
        _replica_caught_up(cluster.standby_url, 1)
        assert db.replica.lag() == 0.0  # streaming and replayed: current
        with db.analysis(fresh=True) as s:  # waits for the standby, then reads it
            assert s.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is True
            assert s.execute(text("SELECT count(*) FROM probe")).scalar_one() == 1

        with standby_admin.connect() as c:
            c.execute(text("SELECT pg_wal_replay_pause()"))
        with db.write() as s:
            s.execute(text("INSERT INTO probe VALUES (2)"))
        # A fresh read cannot have the row from the paused standby: it reads the primary.
        assert db.replica.caught_up(db.engine, wait_s=0.5) is False
        with db.analysis(fresh=True) as s:
            assert s.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is False
            assert s.execute(text("SELECT count(*) FROM probe")).scalar_one() == 2
        # Behind past the bound (1 s): every analysis read goes to the primary.
        time.sleep(1.5)
        assert db.replica.lag() > 1.0
        clock.t += R.CHECK_EVERY_S
        with db.analysis() as s:
            assert s.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is False

        with standby_admin.connect() as c:
            c.execute(text("SELECT pg_wal_replay_resume()"))
        _replica_caught_up(cluster.standby_url, 2)
        clock.t += R.CHECK_EVERY_S
        with db.analysis() as s:
            assert s.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is True
            assert s.execute(text("SELECT count(*) FROM probe")).scalar_one() == 2
    finally:
        standby_admin.dispose()
        db.dispose()


@pytest.mark.xdist_group("replica")
def test_the_workers_report_is_read_on_the_standby_and_stored_on_the_primary(
    cluster: Cluster, tmp_path: Path
) -> None:
    """jiesu's own schema on the cluster: the history written on the primary, the monthly
    report's figures read on the standby (after it replayed them), the report stored on the
    primary and replicated back."""
    from conftest import _prepare  # the test pack's schema and city, as every template

    with create_engine(cluster.primary_url, isolation_level="AUTOCOMMIT").connect() as c:
        c.execute(text("CREATE DATABASE jiesu"))
    primary = cluster.primary_url.rsplit("/", 1)[0] + "/jiesu"
    standby = cluster.standby_url.rsplit("/", 1)[0] + "/jiesu"
    _prepare(primary, with_pack=True)
    db = Database(primary, analysis_url=standby)
    try:
        generate(db, days=5, per_day=30, now=NOW, pack_dir=TINY_PACK, seed=3)
        before = reads("replica")
        report_id, _ = build_on(db, "monthly", MONTH, now=NOW)
        assert reads("replica") == before + 1  # the figures were read on the standby
        with db.read() as s:
            report = s.get(Report, report_id)
            assert report is not None and report.period == MONTH and report.pdf
        with db.analysis(fresh=True) as s:
            assert s.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is True
            assert s.get(Report, report_id) is not None
    finally:
        db.dispose()
