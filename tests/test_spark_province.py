"""The province's Spark job computes, from two cities' Parquet exports, the same figures each
city's jiesu computes: every unit's counted orders, 三率 (numerator, denominator, value),
composite, rank, change against last month, task-force and small-sample flags, each city's
overall 三率; and the streets' ranking across the cities agrees with each city's own.

Two cities: Beijing (its pack, the small sample lowered to 3 by the admin so that its streets are
ranked on a small history, October frozen as published) and the tiny test city (jiesu's
defaults, all live). Spark runs in local mode (`local[2]`, no UI), one session for the module.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from jiesu.assessment import service as A
from tests.province_support import (
    BEFORE,
    BEIJING,
    GROUPS,
    MONTH,
    NOW,
    ROOT,
    TINY,
    build_city,
    export_city,
    jiesu_city_rates,
    jiesu_rankings,
    local_spark,
    require_java,
)

JOB = ROOT / "jiesu" / "province" / "spark_job.py"


@pytest.fixture(scope="module")
def province(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require_java()
    tmp = tmp_path_factory.mktemp("province")
    beijing = build_city(tmp / "beijing", BEIJING, days=45, per_day=70, seed=7,
                         rules={"small_sample": 3})  # fmt: skip
    with beijing.write() as session:
        A.freeze(BEFORE, db_session=session, now=NOW)
    tiny = build_city(tmp / "tiny", TINY, days=45, per_day=30, seed=3)
    out = tmp / "export"
    for db in (beijing, tiny):
        export_city(db, out)
    cities = {"beijing": beijing, "tiny": tiny}
    expected = {code: jiesu_rankings(db, MONTH) for code, db in cities.items()}
    overall = {code: jiesu_city_rates(db, MONTH) for code, db in cities.items()}
    for db in cities.values():
        db.dispose()

    from jiesu.province import spark_job

    spark_gen = local_spark(tmp)
    spark = next(spark_gen)
    try:
        results = spark_job.run(spark, str(out), MONTH)
        yield {
            "expected": expected,
            "overall": overall,
            "units": spark_job.as_rows(results["units"]),
            "streets": spark_job.as_rows(results["province_streets"]),
            "cities": spark_job.as_rows(results["cities"]),
        }
    finally:
        for _ in spark_gen:  # stops the session
            pass


def _by_key(rows: list[Mapping[str, Any]]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    return {(r["city"], r["group"], r["code"]): r for r in rows}


def test_the_job_imports_nothing_from_jiesu() -> None:
    tree = ast.parse(JOB.read_text(encoding="utf-8"))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n == "jiesu" or n.startswith("jiesu.")]
    assert "pyspark.sql" in names


def test_every_unit_figure_equals_jiesus_own(province: dict[str, Any]) -> None:
    got = _by_key(province["units"])
    compared = ranked = 0
    for city, by_group in province["expected"].items():
        for group in GROUPS:
            rows = by_group[group].rows
            codes = {(city, group, r.code) for r in rows}
            assert {k for k in got if k[:2] == (city, group)} == codes, (city, group)
            for r in rows:
                g = got[(city, group, r.code)]
                assert g["orders"] == r.orders and g["pending"] == r.pending, r.code
                for key in ("response", "resolution", "satisfaction"):
                    rate = r.rates[key]
                    assert g[f"{key}_num"] == rate.numerator, (r.code, key)
                    assert g[f"{key}_den"] == rate.denominator, (r.code, key)
                    assert g[key] == rate.value, (r.code, key)  # the same doubles, to the bit
                assert g["composite"] == r.composite, r.code
                assert g["rank"] == r.rank, r.code
                assert g["previous_rank"] == r.previous_rank, r.code
                assert g["change"] == r.change, r.code
                assert g["task_force"] == r.task_force, r.code
                assert g["small_sample"] == r.small_sample, r.code
                compared += 1
                ranked += r.rank is not None
            # jiesu's listing order: the ranked by position
            listed = [r.code for r in rows if r.rank is not None]
            positions = sorted((got[(city, group, c)]["position"], c) for c in listed)
            assert [c for _, c in positions] == listed, (city, group)
    assert compared > 200 and ranked > 60  # a real comparison, not two empty lists


def test_both_cities_rank_and_differ(province: dict[str, Any]) -> None:
    """The data exercise what the rules distinguish: ranked and small-sample units in both
    cities, a frozen previous month with changes in Beijing, task forces flagged."""
    units = province["units"]
    for city in ("beijing", "tiny"):
        mine = [u for u in units if u["city"] == city]
        assert any(u["rank"] is not None for u in mine if u["group"] == "street")
        assert any(u["task_force"] for u in mine)
    beijing = [u for u in units if u["city"] == "beijing"]
    assert any(u["change"] not in (None, 0) for u in beijing)
    assert any(u["small_sample"] for u in beijing)


def test_city_and_province_rates(province: dict[str, Any]) -> None:
    rows = {r["city"]: r for r in province["cities"]}
    assert set(rows) == {"beijing", "tiny", "*"}
    for city, own in province["overall"].items():
        for key in ("response", "resolution", "satisfaction"):
            rate = own["rates"][key]
            assert rows[city][f"{key}_num"] == rate.numerator, (city, key)
            assert rows[city][f"{key}_den"] == rate.denominator, (city, key)
            assert rows[city][key] == rate.value, (city, key)
    total = rows["*"]
    for key in ("response", "resolution", "satisfaction"):
        den = sum(rows[c][f"{key}_den"] for c in ("beijing", "tiny"))
        num = sum(rows[c][f"{key}_num"] for c in ("beijing", "tiny"))
        assert total[f"{key}_den"] == den
        assert total[key] == pytest.approx(num / den, abs=1e-12)


def test_the_province_street_ranking_agrees_with_each_city(province: dict[str, Any]) -> None:
    streets = sorted(province["streets"], key=lambda r: r["province_position"])
    ranked = {
        city: [r.code for r in by_group["street"].rows if r.rank is not None]
        for city, by_group in province["expected"].items()
    }
    assert len(streets) == sum(len(v) for v in ranked.values())
    assert {r["city"] for r in streets} == {"beijing", "tiny"}
    for city, codes in ranked.items():
        # each city's streets keep their city's order within the province's list
        assert [r["code"] for r in streets if r["city"] == city] == codes
    composites = [round(r["composite"], 9) for r in streets]
    assert composites == sorted(composites, reverse=True)
    ranks = [r["province_rank"] for r in streets]
    assert ranks[0] == 1 and ranks == sorted(ranks)
    for before, after in itertools.pairwise(streets):
        tied = round(before["composite"], 9) == round(after["composite"], 9)
        expected = before["province_rank"] if tied else after["province_position"]
        assert after["province_rank"] == expected  # competition ranking: 1, 2, 2, 4
