"""The Beijing demo pack holds what the foundation issue promises, and loads cleanly."""

from __future__ import annotations

import csv
from collections import Counter

from sqlalchemy import func, select

from jiesu.citypack.load import load_pack
from jiesu.citypack.parse import ROLES, read_pack
from jiesu.db.engine import Database
from jiesu.demo.generate import DEFAULT_PACK
from jiesu.org.models import Unit
from jiesu.taxonomy.routing import Catalogue, Rule, UnitInfo
from tests.conftest import shared_data

PACK = read_pack(DEFAULT_PACK)


def test_beijing_pack_is_valid() -> None:
    assert PACK.ok, "\n".join(map(str, PACK.errors))


def test_all_16_districts_and_343_streets_with_official_codes() -> None:
    kinds = Counter(u.kind for u in PACK.units)
    assert kinds["city"] == 1 and kinds["district"] == 16 and kinds["street"] == 343
    for street in (u for u in PACK.units if u.kind == "street"):
        assert len(street.code) == 9 and street.code.startswith(street.parent or "-"), street.code
    assert {u.name for u in PACK.units if u.kind == "district"} >= {"东城区", "朝阳区", "延庆区"}


def test_streets_agree_with_the_official_division_list() -> None:
    """Cross-check against ../shared/data (read, never copied): same codes and names."""
    official = {}
    with shared_data("divisions", "streets.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["provinceCode"] == "11" and row["name"].endswith(("街道", "地区", "镇", "乡")):
                official[row["code"]] = row["name"]
    ours = {u.code: u.name for u in PACK.units if u.kind == "street"}
    assert ours == official


def test_departments_companies_and_district_departments() -> None:
    by_parent = Counter((u.parent, u.kind) for u in PACK.units)
    city_level = by_parent[("110000", "department")] + by_parent[("110000", "company")]
    assert city_level >= 40
    assert by_parent[("110000", "company")] >= 10
    for district in (u for u in PACK.units if u.kind == "district"):
        assert by_parent[(district.code, "department")] >= 8, district.name
    functions = {u.function for u in PACK.units}
    assert {"water", "heating", "gas", "power", "bus", "service_centre", "discipline"} <= functions


def test_taxonomy_has_15_top_and_100_second_level_categories_with_tags() -> None:
    parents = {c.code: c.parent for c in PACK.categories}
    level = {
        c.code: 1 if not c.parent else 2 if not parents.get(c.parent) else 3
        for c in PACK.categories
    }
    counts = Counter(level.values())
    assert counts[1] >= 15 and counts[2] >= 100
    tagged = [c for c in PACK.categories if c.seven_haves or c.five_qualities]
    assert len(tagged) >= 50
    assert {c.tier for c in PACK.categories} >= {"T2h", "T24h", "T15d"}


def test_every_category_routes_somewhere_in_every_district() -> None:
    infos = {u.code: UnitInfo(u.code, u.kind, u.parent, u.function) for u in PACK.units}
    catalogue = Catalogue(
        [Rule(d.category, d.route, d.function, d.unit, d.district, d.note) for d in PACK.dispatch],
        infos,
    )
    streets = [u for u in PACK.units if u.kind == "street"]
    routes = Counter()
    for category in PACK.categories:
        for street in streets[::20]:
            route = catalogue.route(category.code, street.parent, street.code)
            assert route is not None, (category.code, street.code)
            assert route.unit in infos
            routes[route.rule.route] += 1
    assert set(routes) == {"street", "district_function", "unit"}


def test_demo_users_cover_every_role() -> None:
    assert {u.role for u in PACK.users} == set(ROLES)


def test_beijing_pack_loads_and_reloads_without_changes(empty_url: str) -> None:
    db = Database(empty_url)
    with db.write() as s:
        first = load_pack(PACK, db_session=s)
    with db.write() as s:
        second = load_pack(PACK, db_session=s)
    with db.read() as s:
        streets = s.scalar(select(func.count()).select_from(Unit).where(Unit.kind == "street"))
    db.dispose()
    assert first["units.created"] == len(PACK.units)
    assert not second
    assert streets == 343
