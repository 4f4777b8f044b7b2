"""Liveness and readiness (jiesu/ops/health.py): what a load balancer and systemd ask."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from jiesu.db.engine import Database
from jiesu.ops.health import code_heads
from jiesu.web.app import create_app


@pytest.fixture
def local(db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(db), client=("127.0.0.1", 50000)) as c:
        yield c


def test_livez_answers_without_touching_the_database() -> None:
    # A database nobody listens on: liveness still answers, readiness says why it cannot.
    nowhere = Database("postgresql+psycopg://postgres@127.0.0.1:9/nowhere?connect_timeout=2")
    try:
        with TestClient(create_app(nowhere)) as c:
            assert c.get("/livez").json() == {"status": "alive"}
            r = c.get("/readyz")
            assert r.status_code == 503
            assert r.json()["reason"] == "database"
            assert "数据库无法连接" in r.json()["message"]
    finally:
        nowhere.dispose()


def test_readyz_is_ready_at_the_code_head(local: TestClient) -> None:
    r = local.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "revision": sorted(code_heads())}
    assert local.get("/livez").status_code == 200


def test_readyz_refuses_a_schema_behind_the_code(local: TestClient, db: Database) -> None:
    with db.write() as s:
        s.execute(text("UPDATE alembic_version SET version_num = '0022_knowledge_encoder'"))
    r = local.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["reason"] == "schema"
    assert body["database_revision"] == ["0022_knowledge_encoder"]
    assert body["code_revision"] == sorted(code_heads())
    assert "jiesu db upgrade" in body["message"] and "数据库结构版本" in body["message"]
    assert local.get("/livez").status_code == 200  # alive, only not ready


def test_readyz_stays_ready_when_a_newer_release_migrated_first(
    local: TestClient, db: Database
) -> None:
    # A rolling upgrade: `jiesu db upgrade` of the new release ran, this (old) server still
    # serves until it is replaced. Its readiness must not take it out of the pool.
    with db.write() as s:
        s.execute(text("UPDATE alembic_version SET version_num = '9999_from_a_newer_release'"))
    r = local.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["database_ahead"] == ["9999_from_a_newer_release"]


def test_readyz_refuses_a_database_never_migrated(empty_db: Database) -> None:
    with empty_db.write() as s:
        s.execute(text("DELETE FROM alembic_version"))
    with TestClient(create_app(empty_db)) as c:
        r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["database_revision"] == []


def test_healthz_is_unchanged_and_the_ops_paths_stay_out_of_the_api_schema(
    local: TestClient,
) -> None:
    r = local.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    paths = local.get("/api/v1/openapi.json").json()["paths"]
    assert not {"/livez", "/readyz", "/metrics"} & set(paths)
    assert "/healthz" in paths
