"""The province's job: several cities' `jiesu export parquet` output → the month's 三率, composite
scores and rankings per city (as each city's jiesu ranks its districts, streets, departments and
companies) and across cities (every street of the province in one list), plus each city's and
the province's overall 三率.

    spark-submit jiesu/province/spark_job.py --input DIR --month YYYY-MM --out DIR

It runs where only PySpark is installed (a province's cluster): it imports nothing from jiesu.
The rules are jiesu's, restated here and kept equal by `tests/test_spark_province.py`, which
compares every figure with `jiesu.assessment.ranking` on the same data:

- A unit's counters are the sums of its facts of the month (the facts are already the month's
  published copy when the city froze it). 响应率 = responded / (counted − contact_pending);
  解决率 = solved / evaluated; 满意率 = Σ level count × the city's score of the level /
  evaluated; a rate without a denominator is null, never 0.
- 综合得分 = 100 × (w_response·响应率 + w_resolution·解决率 + w_satisfaction·满意率) with the
  weights of the unit kind in the city's rules (`default` otherwise); null until all three rates
  exist. Summed in that order, in doubles, as jiesu does, so the figures are equal to the bit.
- Ranked: units of the kind, active, that led an order this month (districts: every active
  district, judged on everything under it, the service centre excluded; departments: not the
  service centre nor the discipline unit), with at least the city's `small_sample` counted orders
  and a composite. Competition ranking (1, 2, 2, 4) on the composite rounded to 9 places (Python's
  `round`, through a UDF: Spark's `round` rounds half-up on the decimal string and could split a
  tie jiesu keeps); listed by that, then 解决率, 满意率, code. The bottom `task_force` (never more
  than half) are flagged. The change is last month's rank − this month's; last month is read as
  jiesu reads it: as published when frozen, else without the live counts (pending contacts,
  open past due), under the rules as they stand.
- Across cities: the streets ranked in their own city, by their own city's composite; a street's
  order among its city's streets is the same as in its city's list.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, LongType, MapType, StringType

SCHEMA_VERSION = "1"  # of the export this job reads (jiesu/exports/parquet.py)
LEVELS = ("very_satisfied", "satisfied", "basically_satisfied", "dissatisfied",
          "very_dissatisfied")  # fmt: skip
DEFAULT_SCORES = {"very_satisfied": 1.0, "satisfied": 1.0, "basically_satisfied": 0.8,
                  "dissatisfied": 0.0, "very_dissatisfied": 0.0}  # fmt: skip
DEFAULT_WEIGHTS = {"response": 0.10, "resolution": 0.45, "satisfaction": 0.45}
DEFAULT_BOTTOM = {"district": 3, "street": 10, "department": 5, "company": 3}
DEFAULT_SMALL_SAMPLE = 30
GROUPS = ("district", "street", "department", "company")
NOT_RANKED_FUNCTIONS = ("service_centre", "discipline")
COUNTERS = ("led", "counted", "responded", "contact_pending", "overdue_open", "evaluated",
            "solved", *(f"level_{level}" for level in LEVELS))  # fmt: skip


def session(master: str | None = None, app: str = "jiesu-province") -> SparkSession:
    """The job's session; partition values stay strings (a city code like 3501 is not a number)."""
    builder = SparkSession.builder.appName(app)
    if master:
        builder = builder.master(master)
    spark = builder.getOrCreate()
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
    return spark


def previous_month(month: str) -> str:
    year, m = (int(x) for x in month.split("-"))
    return f"{year - 1}-12" if m == 1 else f"{year}-{m - 1:02d}"


# ---- reading -----------------------------------------------------------------------------------


def read(spark: SparkSession, root: str, table: str) -> DataFrame:
    """One table of the export, every city (and month), the partition columns as strings."""
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
    path = f"{root.rstrip('/')}/{table}"
    return spark.read.option("basePath", path).parquet(path)


def month_totals(facts: DataFrame, month: str) -> DataFrame:
    """(city, month, unit_code) → summed counters, for the month and the month before, in one
    pass over the facts (the month partitions pruned). The month before is read as jiesu reads
    it: when it was not frozen, without its live counts (pending contacts, open past due)."""
    before = previous_month(month)
    f = facts.where(F.col("month").isin(month, before))
    live_before = (F.col("month") == before) & (F.col("basis") != "frozen")
    for c in ("contact_pending", "overdue_open"):
        f = f.withColumn(c, F.when(live_before, F.lit(0)).otherwise(F.col(c)))
    return f.groupBy("city", "month", "unit_code").agg(
        *[F.sum(F.col(c).cast(LongType())).alias(c) for c in COUNTERS]
    )


_SCORES = MapType(StringType(), DoubleType())
_WEIGHTS = MapType(StringType(), MapType(StringType(), DoubleType()))
_BOTTOM = MapType(StringType(), IntegerType())


def _literal_map(values: Mapping[str, float | int]) -> Column:
    return F.create_map(*[x for k, v in values.items() for x in (F.lit(k), F.lit(v))])


def month_rules(spark: SparkSession, rules: DataFrame, months: Sequence[str]) -> DataFrame:
    """(city, month, group) → the weights of the kind (`default` otherwise, SPEC's last), the
    small sample, the task-force size and each satisfaction level's score, as jiesu reads them
    (`rates.weights_for`, `rates.rate`, `service._ranked`). Parsed in Spark: no driver trip."""
    groups = spark.createDataFrame([(g,) for g in GROUPS], "group string")
    r = (
        rules.where(F.col("month").isin(*months))
        .withColumn("s", F.from_json("satisfaction_scores", _SCORES))
        .withColumn("w", F.from_json("weights", _WEIGHTS))
        .withColumn("b", F.from_json("task_force", _BOTTOM))
        .crossJoin(F.broadcast(groups))
    )
    default_w = _literal_map(DEFAULT_WEIGHTS)
    default_b = _literal_map(DEFAULT_BOTTOM)
    w = F.coalesce(F.col("w")[F.col("group")], F.col("w")["default"], default_w)
    no_scores = F.col("s").isNull() | (F.size(F.col("s")) == 0)
    return r.select(
        "city", "month", "group",
        w["response"].alias("w_response"), w["resolution"].alias("w_resolution"),
        w["satisfaction"].alias("w_satisfaction"),
        F.coalesce(F.col("small_sample"), F.lit(DEFAULT_SMALL_SAMPLE)).alias("small_sample"),
        F.coalesce(F.col("b")[F.col("group")], default_b[F.col("group")], F.lit(0))
        .alias("bottom"),
        *(F.when(no_scores, F.lit(DEFAULT_SCORES[level]))
          .otherwise(F.coalesce(F.col("s")[level], F.lit(DEFAULT_SCORES[level])))
          .alias(f"score_{level}") for level in LEVELS),
    )  # fmt: skip


def entries(totals: DataFrame, units: DataFrame) -> DataFrame:
    """(city, month, group, code, name, kind) with the totals each unit is judged on."""
    u = F.broadcast(units.select("city", "code", "name", "kind", "function", "path", "active",
                                 "is_centre"))  # fmt: skip
    t = totals.join(
        u.select("city", F.col("code").alias("unit_code"), "path", "is_centre"),
        ["city", "unit_code"],
    )
    candidates = u.where(F.col("active") & F.col("kind").isin("street", "department", "company"))
    candidates = candidates.where(~(
        (F.col("kind") == "department")
        & F.coalesce(F.col("function"), F.lit("")).isin(*NOT_RANKED_FUNCTIONS)
    ))  # fmt: skip
    own = (
        t.withColumnRenamed("unit_code", "code").drop("path", "is_centre")
        .join(candidates.select("city", "code", "name", "kind"), ["city", "code"])
        .where(F.col("led") > 0)
        .withColumn("group", F.col("kind"))
    )  # fmt: skip
    # A district is judged on every unit under it in the tree as it stands (its path holds the
    # district's code), the service centre excluded, retired units included.
    districts = u.where(F.col("active") & (F.col("kind") == "district")).select(
        "city", "code", "name", "kind"
    )
    under = (
        t.where(~F.col("is_centre"))
        .withColumn("code", F.explode(F.split(F.col("path"), "/")))
        .join(districts.select("city", "code"), ["city", "code"])
        .groupBy("city", "month", "code")
        .agg(*[F.sum(c).alias(c) for c in COUNTERS])
    )  # fmt: skip
    months = totals.select("city", "month").distinct()
    district_rows = (
        districts.join(months, "city")  # every active district, with orders or not
        .join(under, ["city", "month", "code"], "left")
        .fillna(0, subset=list(COUNTERS))
        .withColumn("group", F.lit("district"))
    )  # fmt: skip
    cols = ["city", "month", "group", "code", "name", "kind", *COUNTERS]
    return own.select(*cols).unionByName(district_rows.select(*cols))


def _ratio(numerator: Column, denominator: Column) -> Column:
    return F.when(denominator > 0, numerator.cast(DoubleType()) / denominator.cast(DoubleType()))


def with_rates(df: DataFrame) -> DataFrame:
    """The three rates (numerator, denominator, value) and the composite, jiesu's arithmetic."""
    scored: Column = F.lit(0.0)
    for level in LEVELS:  # Σ count × score, in the levels' order, as rates.rate sums them
        scored = scored + F.col(f"level_{level}").cast(DoubleType()) * F.col(f"score_{level}")
    out = df.select(
        "*",
        F.col("responded").cast(DoubleType()).alias("response_num"),
        (F.col("counted") - F.col("contact_pending")).alias("response_den"),
        _ratio(F.col("responded"), F.col("counted") - F.col("contact_pending")).alias("response"),
        F.col("solved").cast(DoubleType()).alias("resolution_num"),
        F.col("evaluated").alias("resolution_den"),
        _ratio(F.col("solved"), F.col("evaluated")).alias("resolution"),
        scored.alias("satisfaction_num"),
        F.col("evaluated").alias("satisfaction_den"),
        F.when(F.col("evaluated") > 0, scored / F.col("evaluated").cast(DoubleType()))
        .alias("satisfaction"),
    )  # fmt: skip
    composite = F.lit(100.0) * (
        F.col("w_response") * F.col("response")
        + F.col("w_resolution") * F.col("resolution")
        + F.col("w_satisfaction") * F.col("satisfaction")
    )
    return out.withColumn("composite", composite)  # null when any rate is null


# Python's round (exact decimal rounding of the double, half-even on exact ties): jiesu's tie rule.
round9 = F.udf(lambda x: None if x is None else round(x, 9), DoubleType())


def ranked(df: DataFrame, *, by: Sequence[str], flag: Column) -> DataFrame:
    """Rank within `by`: rank, position (the listing order), task_force (where `flag`),
    small_sample."""
    eligible = (F.col("counted") >= F.col("small_sample")) & F.col("composite").isNotNull()
    df = df.withColumn("eligible", eligible).withColumn(
        "score9", F.when(F.col("eligible"), round9(F.col("composite")))
    )
    part = [*by, "eligible"]
    listing = [F.col("score9").desc(), F.coalesce(F.col("resolution"), F.lit(0.0)).desc(),
               F.coalesce(F.col("satisfaction"), F.lit(0.0)).desc(), F.col("code").asc()]  # fmt: skip
    w_pos = Window.partitionBy(*part).orderBy(*listing)
    df = df.select(
        "*",
        F.when(F.col("eligible"), F.rank().over(Window.partitionBy(*part)
                                                .orderBy(F.col("score9").desc()))).alias("rank"),
        F.when(F.col("eligible"), F.row_number().over(w_pos)).alias("position"),
        F.when(F.col("eligible"), F.count(F.lit(1)).over(Window.partitionBy(*part)))
        .alias("n_ranked"),
    )  # fmt: skip
    flagged = F.least(F.col("bottom"), F.floor(F.col("n_ranked") / 2).cast(IntegerType()))
    task_force = flag & (F.col("position") > F.col("n_ranked") - flagged)
    return (
        df.withColumn("task_force", F.coalesce(task_force, F.lit(False)))
        .withColumn("small_sample", F.col("counted") < F.col("small_sample"))
        .drop("eligible", "n_ranked")
    )  # fmt: skip


def unit_figures(totals: DataFrame, units: DataFrame, rules: DataFrame, month: str
                 ) -> DataFrame:  # fmt: skip
    """Every city's rankings of the month: one row per (city, group, unit) with the counters, the
    three rates, the composite, rank, change, task force and small-sample flags. `totals` and
    `rules` as `month_totals` and `month_rules` give them for the month and the month before."""
    before = previous_month(month)
    df = entries(totals, units).join(F.broadcast(rules), ["city", "month", "group"])
    # The bottom is flagged this month only (last month's list gives the change, nothing else).
    both = ranked(with_rates(df), by=["city", "month", "group"], flag=F.col("month") == month)
    previous = both.where(F.col("month") == before).select(
        "city", "group", "code", F.col("rank").alias("previous_rank")
    )
    return (
        both.where(F.col("month") == month)
        .join(previous, ["city", "group", "code"], "left")
        .withColumn("change", F.col("previous_rank") - F.col("rank"))
        .withColumnRenamed("counted", "orders")
        .withColumnRenamed("contact_pending", "pending")
    )


def province_streets(figures: DataFrame) -> DataFrame:
    """Every street ranked in its own city, in one list across cities by its own composite."""
    streets = figures.where((F.col("group") == "street") & F.col("rank").isNotNull())
    listing = [F.col("score9").desc(), F.coalesce(F.col("resolution"), F.lit(0.0)).desc(),
               F.coalesce(F.col("satisfaction"), F.lit(0.0)).desc(), F.col("city").asc(),
               F.col("code").asc()]  # fmt: skip
    return streets.select(
        "month",
        F.rank().over(Window.orderBy(F.col("score9").desc())).alias("province_rank"),
        F.row_number().over(Window.orderBy(*listing)).alias("province_position"),
        "city", "code", "name", F.col("rank").alias("city_rank"), "orders", "response",
        "resolution", "satisfaction", "composite",
    )  # fmt: skip


def city_rates(totals: DataFrame, units: DataFrame, rules: DataFrame, month: str
               ) -> DataFrame:  # fmt: skip
    """Each city's 三率 over every unit but the service centre (jiesu's city-wide figures), and
    the province's (city = '*'), the satisfaction points under each city's own scores."""
    centres = units.where(F.col("is_centre")).select("city", F.col("code").alias("unit_code"))
    f = totals.where(F.col("month") == month).join(F.broadcast(centres), ["city", "unit_code"],
                                                   "left_anti")  # fmt: skip
    sums = f.groupBy("city", "month").agg(
        *[F.sum(F.col(c).cast(LongType())).alias(c) for c in COUNTERS]
    )
    scores = rules.where(F.col("group") == "street").drop("group")
    per_city = with_rates(sums.join(F.broadcast(scores), ["city", "month"])).select(
        "month", "city", "counted", "response_num", "response_den", "response",
        "resolution_num", "resolution_den", "resolution", "satisfaction_num",
        "satisfaction_den", "satisfaction",
    ).cache()  # fmt: skip
    sums_all = [F.sum(c).alias(c) for c in ("counted", "response_num", "response_den",
                                            "resolution_num", "resolution_den",
                                            "satisfaction_num", "satisfaction_den")]  # fmt: skip
    total = per_city.groupBy("month").agg(*sums_all).select(
        "month", F.lit("*").alias("city"), "counted", "response_num", "response_den",
        _ratio(F.col("response_num"), F.col("response_den")).alias("response"),
        "resolution_num", "resolution_den",
        _ratio(F.col("resolution_num"), F.col("resolution_den")).alias("resolution"),
        "satisfaction_num", "satisfaction_den",
        _ratio(F.col("satisfaction_num"), F.col("satisfaction_den")).alias("satisfaction"),
    )  # fmt: skip
    return per_city.unionByName(total)


UNIT_COLUMNS = ("month", "city", "group", "position", "rank", "previous_rank", "change", "code",
                "name", "kind", "orders", "pending", "response_num", "response_den", "response",
                "resolution_num", "resolution_den", "resolution", "satisfaction_num",
                "satisfaction_den", "satisfaction", "composite", "task_force",
                "small_sample")  # fmt: skip


def run(spark: SparkSession, root: str, month: str, out: str | None = None) -> dict[str, DataFrame]:
    """The month's figures (written as Parquet under `out` when given): `units` (every city's
    rankings), `province_streets` (the streets across cities), `cities` (each city's 三率 and
    the province's). Each table is read once; the month's totals are summed once."""
    facts, units, rules = (read(spark, root, t) for t in ("facts", "units", "rules"))
    units = units.cache()
    totals = month_totals(facts, month).cache()
    rule_rows = month_rules(spark, rules, [month, previous_month(month)]).cache()
    figures = unit_figures(totals, units, rule_rows, month).cache()
    results = {
        "units": figures.select(*UNIT_COLUMNS),
        "province_streets": province_streets(figures),
        "cities": city_rates(totals, units, rule_rows, month),
    }
    if out:
        for name, df in results.items():
            df.write.mode("overwrite").parquet(f"{out.rstrip('/')}/{name}/month={month}")
    return results


def as_rows(df: DataFrame) -> list[Mapping[str, Any]]:
    return [r.asDict() for r in df.collect()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The province's 三率 and rankings (jiesu).")
    parser.add_argument("--input", required=True, help="the cities' exports (facts/, units/ …)")
    parser.add_argument("--month", required=True, help="YYYY-MM")
    parser.add_argument("--out", required=True, help="where the figures are written")
    parser.add_argument("--master", default=None, help="e.g. local[4]; spark-submit sets it")
    args = parser.parse_args(argv)
    spark = session(args.master)
    spark.sparkContext.setLogLevel("WARN")
    try:
        results = run(spark, args.input, args.month, args.out)
        for r in results["cities"].orderBy("city").collect():
            print(f"{r['city']}\t{r['counted']}\t{r['response']}\t{r['resolution']}\t"
                  f"{r['satisfaction']}")  # fmt: skip
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
