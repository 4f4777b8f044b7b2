"""The province's DuckDB questions (`jiesu/province/queries/*.sql`) run over `jiesu export parquet`
output and answer with jiesu's own figures: requests per top category and per channel as the
tickets say, each street's 解决率 and each city's month-on-month figures as the assessment
computes them. The same city is exported under two codes: both answer alike, city by city.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy import select

from jiesu.assessment import service as A
from jiesu.db.engine import Database
from jiesu.exports.parquet import month_bounds_utc
from jiesu.tickets.models import Ticket
from tests.province_support import (
    BEFORE,
    MONTH,
    ROOT,
    TINY,
    build_city,
    export_city,
    jiesu_city_rates,
    jiesu_rankings,
)

QUERIES = ROOT / "jiesu" / "province" / "queries"
CITIES = ("tiny", "other")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Database, Path]]:
    tmp = tmp_path_factory.mktemp("duckdb")
    db = build_city(tmp / "tiny", TINY, days=45, per_day=30, seed=5)
    out = tmp / "export"
    for code in CITIES:
        export_city(db, out, city=code)
    yield db, out
    db.dispose()


def ask(out: Path, name: str, month: str = MONTH) -> list[dict[str, Any]]:
    con = duckdb.connect()
    try:
        con.execute("SET VARIABLE root = ?", [str(out)])
        con.execute("SET VARIABLE month = ?", [month])
        relation = con.sql((QUERIES / f"{name}.sql").read_text(encoding="utf-8"))
        return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]
    finally:
        con.close()


def _orders_of(db: Database, period: str) -> list[tuple[str, int | None]]:
    """(channel, category id) of the orders received in the month, city time."""
    lo, hi = month_bounds_utc(period)
    with db.read() as session:
        return [
            (c, cat)
            for c, cat in session.execute(
                select(Ticket.channel, Ticket.category_id).where(
                    Ticket.created_at >= lo, Ticket.created_at < hi
                )
            )
        ]


def test_there_is_one_file_per_question() -> None:
    names = sorted(p.stem for p in QUERIES.glob("*.sql"))
    assert names == ["lowest_resolution_streets", "month_on_month", "orders_by_channel",
                     "top_categories"]  # fmt: skip


def test_orders_by_channel_count_the_tickets(world: tuple[Database, Path]) -> None:
    db, out = world
    rows = ask(out, "orders_by_channel")
    expected = Counter(channel for channel, _ in _orders_of(db, MONTH))
    for city in CITIES:
        got = {r["channel"]: r["orders"] for r in rows if r["city"] == city}
        assert got == dict(expected)
        shares = [r["share_pct"] for r in rows if r["city"] == city]
        assert sum(shares) == pytest.approx(100, abs=0.1)


def test_top_categories_are_the_most_frequent_top_level_categories(
    world: tuple[Database, Path],
) -> None:
    db, out = world
    with db.read() as session:
        categories = A.category_index(db_session=session)
    expected = Counter(
        categories[cat].top if cat is not None else "(none)" for _, cat in _orders_of(db, MONTH)
    )
    rows = ask(out, "top_categories")
    for city in CITIES:
        mine = [r for r in rows if r["city"] == city]
        assert mine and mine[0]["place"] == 1
        for r in mine:
            assert r["orders"] == expected[r["top_code"]]
        assert mine[0]["orders"] == max(expected.values())


def test_lowest_resolution_streets_are_jiesus_street_rates(world: tuple[Database, Path]) -> None:
    db, out = world
    streets = {r.code: r for r in jiesu_rankings(db, MONTH)["street"].rows}
    rows = ask(out, "lowest_resolution_streets")
    assert {r["city"] for r in rows} == set(CITIES)
    for r in rows:
        own = streets[r["unit_code"]].rates["resolution"]
        assert (r["solved"], r["evaluated"]) == (own.numerator, own.denominator)
        assert r["resolution"] == own.value
    resolutions = [r["resolution"] for r in rows]
    assert resolutions == sorted(resolutions)


def test_month_on_month_gives_the_citys_rates_of_both_months(
    world: tuple[Database, Path],
) -> None:
    db, out = world
    rows = {r["city"]: r for r in ask(out, "month_on_month")}
    now, before = jiesu_city_rates(db, MONTH), jiesu_city_rates(db, BEFORE)
    for city in CITIES:
        r = rows[city]
        assert r["orders"] == len(_orders_of(db, MONTH))
        assert r["orders_before"] == len(_orders_of(db, BEFORE))
        assert r["resolution"] == pytest.approx(now["rates"]["resolution"].value, abs=1e-12)
        assert r["satisfaction"] == pytest.approx(now["rates"]["satisfaction"].value, abs=1e-12)
        change = now["rates"]["resolution"].value - before["rates"]["resolution"].value
        assert r["resolution_change"] == pytest.approx(change, abs=1e-12)
