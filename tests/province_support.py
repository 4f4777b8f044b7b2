"""What the province's tests share: a small city with a generated history at a fixed clock, its
Parquet export, jiesu's own figures to compare with, and a local Spark session.

Two genuinely different cities: the Beijing pack (16 districts, 343 streets, hundreds of
departments; small sample 10, task-force sizes, a cut-off) and the tiny test pack (2 districts,
3 streets; jiesu's defaults). Beijing's October is frozen (published), so the export's frozen
path is what the job reads for it; tiny's months stay live.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jiesu.assessment import service as A
from jiesu.citypack.load import load_pack
from jiesu.citypack.parse import read_pack
from jiesu.db.engine import Database
from jiesu.db.migrate import upgrade
from jiesu.demo.generate import generate
from jiesu.exports.parquet import Stats, export
from jiesu.taxonomy.models import CitySetting

ROOT = Path(__file__).resolve().parent.parent
BEIJING = ROOT / "citypacks" / "beijing"
TINY = ROOT / "tests" / "packs" / "tiny"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# A fixed clock: 2026-11-20 12:00 Beijing time. History from late September to that day.
NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
MONTH = "2026-11"
BEFORE = "2026-10"
GROUPS = ("district", "street", "department", "company")


def build_city(directory: Path, pack: Path, *, days: int, per_day: int, seed: int,
               url: str | None = None, rules: dict[str, Any] | None = None) -> Database:  # fmt: skip
    """A migrated database with the pack loaded (its settings changed by `rules`, as an admin
    would) and `days` days of history up to NOW."""
    directory.mkdir(parents=True, exist_ok=True)
    url = url or f"sqlite:///{directory / 'city.sqlite3'}"
    upgrade(url)
    db = Database(url)
    with db.write() as session:
        load_pack(read_pack(pack), db_session=session)
        if rules:
            row = session.get(CitySetting, "pack")
            assert row is not None
            row.value = {**row.value, **rules}
    generate(db, days=days, per_day=per_day, now=NOW, pack_dir=pack, seed=seed, workers=0)
    return db


def export_city(db: Database, out: Path, **options: Any) -> Stats:
    with db.read() as session:
        return export(out, db_session=session, now=NOW, **options)


def jiesu_rankings(db: Database, period: str) -> dict[str, A.Rankings]:
    """jiesu's own rankings of the month, each kind, at NOW."""
    with db.read() as session:
        return {g: A.rankings(period, g, db_session=session, now=NOW) for g in GROUPS}


def jiesu_city_rates(db: Database, period: str) -> dict[str, Any]:
    start, end = A.month_bounds(period)
    with db.read() as session:
        rates, summed = A.scope_rates(start, end, db_session=session, now=NOW, period=period)
    return {"rates": rates, "summed": summed}


def require_java() -> None:
    """Spark needs a Java runtime: skip with the reason (fail under CI=true) when there is none."""
    if shutil.which("java") or os.environ.get("JAVA_HOME"):
        return
    message = "no Java runtime (`java` not on PATH, JAVA_HOME unset): Spark cannot start"
    if IN_CI:
        pytest.fail(f"{message}; CI installs default-jre-headless (.ci/run)", pytrace=False)
    pytest.skip(f"{message}; install OpenJDK 17 (apt-get install default-jre-headless)")


def local_spark(tmp: Path) -> Iterator[Any]:
    """Spark in local mode for a test module: two threads, no UI, no network beyond loopback,
    few shuffle partitions (the data are small)."""
    require_java()
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers run this venv
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("jiesu-province-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.local.dir", str(tmp / "spark-local"))
        .config("spark.sql.warehouse.dir", str(tmp / "spark-warehouse"))
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark
    finally:
        spark.stop()
