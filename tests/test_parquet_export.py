"""`jiesu export parquet` (issue 17 §6, docs/province.md): Hive partitions by city and month, the
documented schema with its version, the facts jiesu counts from (summed, they give jiesu's
rollups), no name, phone or address (nor free text unless asked, and then phones still masked),
streamed in batches; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import time_machine
from conftest import BACKENDS, TINY_PACK, Templates, auth, tiny_city
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from jiesu.assessment import service as A
from jiesu.assessment.facts import COUNTERS
from jiesu.assessment.models import MetricFact
from jiesu.db.engine import Database
from jiesu.demo.generate import generate
from jiesu.exports.parquet import (
    CATEGORY_SCHEMA,
    FACT_SCHEMA,
    ORDER_SCHEMA,
    SCHEMA_VERSION,
    UNIT_SCHEMA,
    export,
    scrub,
)
from jiesu.tickets.models import Ticket

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)  # 12:00 in the city
NAME, PHONE = "欧阳娜娜", "13912345678"
ADDRESS = "幸福里小区七号楼"
CONTENT = f"我是{NAME}，电话{PHONE}，{ADDRESS}门口的路灯坏了一个月"


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, templates: Templates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Database, int]]:
    with tiny_city(request.param, templates, tmp_path_factory) as (client, db):
        generate(db, days=35, per_day=15, now=NOW, pack_dir=TINY_PACK, seed=21)
        with time_machine.travel(NOW, tick=True):
            ticket = _plant(client)
        yield db, ticket


def _plant(client: TestClient) -> int:
    """An order whose text names its requester and gives the phone and the address."""
    r = client.post("/api/v1/tickets", json={
        "channel": "phone", "title": f"{NAME}反映路灯", "content": CONTENT, "address": ADDRESS,
        "requester": {"name": NAME, "phone": PHONE}}, headers=auth(client, "agent1"))  # fmt: skip
    assert r.status_code == 201, r.text
    d = client.post(f"/api/v1/tickets/{r.json()['id']}/actions/dispatch", json={"lead": "S11"},
                    headers=auth(client, "dispatcher1"))  # fmt: skip
    assert d.status_code == 200, d.text
    return int(r.json()["id"])


def _export(db: Database, out: Path, **options: object) -> dict[str, int]:
    with db.read() as session:
        return export(out, db_session=session, now=NOW, **options).rows  # type: ignore[arg-type]


def _decoded(out: Path) -> str:
    """Every value of every file, decoded (the files are compressed: bytes would hide text)."""
    parts = []
    for path in sorted(out.rglob("*.parquet")):
        parts.append(json.dumps(pq.read_table(path).to_pylist(), ensure_ascii=False, default=str))
        parts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(parts)


def test_the_export_is_partitioned_by_city_and_month_with_the_documented_schema(
    world: tuple[Database, int], tmp_path: Path
) -> None:
    db, _ = world
    rows = _export(db, tmp_path)
    facts = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "facts").rglob("*"))
    assert "facts/city=tiny/month=2026-11/part-00000.parquet" in facts
    assert "facts/city=tiny/month=2026-10/part-00000.parquet" in facts
    assert (tmp_path / "orders/city=tiny/month=2026-11/part-00000.parquet").exists()
    for table, schema in (("units", UNIT_SCHEMA), ("categories", CATEGORY_SCHEMA)):
        path = tmp_path / table / "city=tiny" / f"{table}.parquet"
        found = pq.read_schema(path)
        assert found.remove_metadata() == schema and found.metadata[b"table"] == table.encode()
    fact_file = tmp_path / "facts/city=tiny/month=2026-11/part-00000.parquet"
    schema = pq.read_schema(fact_file)
    assert schema.remove_metadata() == FACT_SCHEMA
    meta = schema.metadata
    assert meta[b"schema_version"] == SCHEMA_VERSION.encode() and meta[b"city"] == b"tiny"
    assert meta[b"as_of"] == NOW.isoformat().encode()
    order_schema = pq.read_schema(tmp_path / "orders/city=tiny/month=2026-11/part-00000.parquet")
    assert order_schema.remove_metadata() == ORDER_SCHEMA
    with db.read() as session:
        assert rows["facts"] == session.scalar(select(func.count()).select_from(MetricFact))
        assert rows["orders"] == session.scalar(select(func.count()).select_from(Ticket))
    # Read back with Hive partitioning, the facts summed per unit are jiesu's rollups.
    table = ds.dataset(tmp_path / "facts", format="parquet", partitioning="hive").to_table(
        filter=ds.field("month") == "2026-11"
    )
    assert set(table.column("city").to_pylist()) == {"tiny"}
    summed: dict[str, dict[str, int]] = {}
    for r in table.to_pylist():
        into = summed.setdefault(r["unit_code"], {})
        for c in COUNTERS:
            into[c] = into.get(c, 0) + r[c]
    start, end = A.month_bounds("2026-11")
    with db.read() as session:
        units = A.unit_index(db_session=session)
        rollups = A.unit_totals(start, end, db_session=session)
    assert summed == {units.by_id[u].code: t for u, t in rollups.items()}
    assert sum(t["counted"] for t in summed.values()) > 100


def test_no_name_phone_address_or_text_leaves_without_with_text(
    world: tuple[Database, int], tmp_path: Path
) -> None:
    db, ticket = world
    _export(db, tmp_path)
    text = _decoded(tmp_path)
    for secret in (NAME, PHONE, ADDRESS, "路灯坏了"):
        assert secret not in text
    orders = ds.dataset(tmp_path / "orders", format="parquet", partitioning="hive").to_table()
    assert ticket in orders.column("ticket_id").to_pylist()
    assert "title" not in orders.column_names and "content" not in orders.column_names


def test_with_text_keeps_the_words_but_never_the_phone_nor_the_name(
    world: tuple[Database, int], tmp_path: Path
) -> None:
    db, ticket = world
    _export(db, tmp_path, with_text=True)
    text = _decoded(tmp_path)
    assert "路灯坏了" in text
    assert PHONE not in text and NAME not in text
    orders = ds.dataset(tmp_path / "orders", format="parquet", partitioning="hive").to_table()
    row = next(r for r in orders.to_pylist() if r["ticket_id"] == ticket)
    assert row["content"] == scrub(CONTENT, NAME, PHONE)
    assert "139****5678" in row["content"] and "欧阳**" in row["content"]


def test_small_batches_write_the_same_rows_in_bounded_row_groups(
    world: tuple[Database, int], tmp_path: Path
) -> None:
    db, _ = world
    _export(db, tmp_path / "big")
    _export(db, tmp_path / "small", batch_size=7)
    for table in ("facts", "orders"):
        for path in (tmp_path / "small" / table).rglob("*.parquet"):
            meta = pq.ParquetFile(path).metadata
            assert meta.num_row_groups == -(-meta.num_rows // 7)
            sizes = {meta.row_group(i).num_rows for i in range(meta.num_row_groups)}
            assert max(sizes) <= 7
            twin = tmp_path / "big" / path.relative_to(tmp_path / "small")
            assert pq.read_table(path).to_pylist() == pq.read_table(twin).to_pylist()


def test_the_command_exports_chosen_months_under_another_city_code(
    world: tuple[Database, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jiesu.cli import app as cli
    from jiesu.settings import get_settings

    db, _ = world
    monkeypatch.setenv("JIESU_DATABASE_URL", db.url)
    get_settings.cache_clear()
    try:
        with time_machine.travel(NOW, tick=False):
            result = CliRunner().invoke(cli, ["export", "parquet", str(tmp_path), "--from",
                                              "2026-11", "--to", "2026-11", "--city", "t2"])  # fmt: skip
        assert result.exit_code == 0, result.output
        months = {p.name for p in (tmp_path / "facts" / "city=t2").iterdir()}
        assert months == {"month=2026-11"}
        assert (tmp_path / "units" / "city=t2" / "units.parquet").exists()
        rules = pq.read_table(tmp_path / "rules/city=t2/rules.parquet").to_pylist()
        assert [r["month"] for r in rules] == ["2026-11"] and rules[0]["small_sample"] == 30
        bad = CliRunner().invoke(cli, ["export", "parquet", str(tmp_path), "--from", "2026-13"])
        assert bad.exit_code == 2
    finally:
        get_settings.cache_clear()


def test_a_frozen_month_is_exported_as_published(db: Database, tmp_path: Path) -> None:
    """October frozen at its cut-off: its facts come from the published copy (with the pending
    and open-past-due counts of that moment), whatever the live facts say later."""
    generate(db, days=40, per_day=10, now=NOW, pack_dir=TINY_PACK, seed=4)
    with db.write() as session:
        A.freeze("2026-10", db_session=session, now=datetime(2026, 11, 5, 16, 0, tzinfo=UTC))
    with db.write() as session:  # a later change of the live facts: not what was published
        session.execute(update(MetricFact).where(MetricFact.day < date(2026, 11, 1))
                        .values(solved=0))  # fmt: skip
    _export(db, tmp_path)
    october = pq.read_table(tmp_path / "facts/city=tiny/month=2026-10/part-00000.parquet")
    assert set(october.column("basis").to_pylist()) == {"frozen"}
    summed: dict[str, int] = {}
    for r in october.to_pylist():
        for c in (*COUNTERS, "contact_pending", "overdue_open"):
            summed[c] = summed.get(c, 0) + r[c]
    with db.read() as session:
        published = A.frozen_totals("2026-10", db_session=session)
    expected: dict[str, int] = {}
    for t in published.values():
        for c in summed:
            expected[c] = expected.get(c, 0) + t.get(c, 0)
    assert summed == expected and summed["solved"] > 0
    november = pq.read_table(tmp_path / "facts/city=tiny/month=2026-11/part-00000.parquet")
    assert set(november.column("basis").to_pylist()) == {"live"}
    rules = {r["month"]: r for r in pq.read_table(tmp_path / "rules/city=tiny/rules.parquet")
             .to_pylist()}  # fmt: skip
    assert rules["2026-10"]["basis"] == "frozen" and rules["2026-10"]["frozen_at"] is not None
    assert rules["2026-11"]["basis"] == "live"
