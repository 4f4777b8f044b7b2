"""The city pack (docs/citypack.md): validated with file, line and reason; loaded all-or-nothing,
idempotently and in place; rows that leave the pack are deactivated, never deleted."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_PACK
from sqlalchemy import func, select, update
from typer.testing import CliRunner

import jiesu.db.models  # noqa: F401  (every table on Base.metadata, for the snapshots)
from jiesu.citypack.load import PackInvalid, load_pack
from jiesu.citypack.parse import PackError, read_pack
from jiesu.cli import app as cli
from jiesu.db.base import Base
from jiesu.db.engine import Database
from jiesu.org.models import Unit, User
from jiesu.settings import get_settings
from jiesu.taxonomy.models import (
    CalendarOverride,
    Category,
    CitySetting,
    DispatchRule,
    RequestType,
)

# ---- helpers -------------------------------------------------------------------------------


def copy_tiny(tmp_path: Path) -> Path:
    """A private, editable copy of the tiny pack."""
    target = tmp_path / "pack"
    shutil.copytree(TINY_PACK, target)
    return target


def replace_line(path: Path, line: int, text: str) -> None:
    """Replace physical line `line` (1-based, header = 1) of a file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def append_lines(path: Path, *texts: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        for text in texts:
            f.write(text + "\n")


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def find_error(errors: list[PackError], file: str, line: int | None, reason: str) -> PackError:
    for e in errors:
        if e.file == file and e.line == line and reason in e.reason:
            return e
    raise AssertionError(
        f"no error {file}:{line} containing {reason!r}; got:\n" + "\n".join(str(e) for e in errors)
    )


def load(db: Database, root: Path = TINY_PACK) -> Counter[str]:
    with db.write() as session:
        return load_pack(read_pack(root), db_session=session)


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    with db.read() as session:
        return {
            table.name: [
                tuple(row)
                for row in session.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in Base.metadata.sorted_tables
        }


def units_by_code(db: Database) -> dict[str, Unit]:
    with db.read() as session:
        return {u.code: u for u in session.scalars(select(Unit))}


def categories_by_code(db: Database) -> dict[str, Category]:
    with db.read() as session:
        return {c.code: c for c in session.scalars(select(Category))}


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Point the `jiesu` command at a database URL (and forget it again afterwards)."""

    def point_at(url: str) -> None:
        monkeypatch.setenv("JIESU_DATABASE_URL", url)
        get_settings.cache_clear()

    yield point_at
    get_settings.cache_clear()


# ---- validation ----------------------------------------------------------------------------


def test_the_tiny_pack_parses_with_no_errors() -> None:
    pack = read_pack(TINY_PACK)
    assert pack.errors == []
    assert pack.ok
    assert len(pack.units) == 13
    assert len(pack.categories) == 8
    assert len(pack.dispatch) == 4
    assert len(pack.users) == 10
    assert len(pack.calendar) == 1
    assert pack.settings["default_tier"] == "T7d"


def test_missing_optional_settings_get_their_documented_defaults() -> None:
    settings = read_pack(TINY_PACK).settings
    assert set(settings["request_types"]) == {
        "consult",
        "help",
        "complain",
        "report",
        "suggest",
        "praise",
    }
    assert settings["weights"] == {
        "default": {"response": 0.10, "resolution": 0.45, "satisfaction": 0.45}
    }
    assert settings["whistle_report_limit"] == "30m"
    assert settings["small_sample"] == 30


Plant = Callable[[Path], None]

UNITS = "units/units.csv"


def _pack_yaml_weights(root: Path) -> None:
    append_lines(
        root / "pack.yaml",
        "weights:",
        "  default: {response: 0.10, resolution: 0.45, satisfaction: 0.45}",
        "  company: {response: 0.20, resolution: 0.40, satisfaction: 0.50}",
    )


PACK_YAML_LINES = len((TINY_PACK / "pack.yaml").read_text(encoding="utf-8").splitlines())

PLANTED: list[tuple[str, Plant, str, int | None, str]] = [
    (
        "unknown_unit_parent",
        lambda p: append_lines(p / UNITS, "X1,某某局,department,NOPE,,,"),
        UNITS,
        15,
        "unknown parent 'NOPE'",
    ),
    (
        "duplicate_unit_code",
        lambda p: append_lines(p / UNITS, "S11,另一个东一街道,street,D1,,,"),
        UNITS,
        15,
        "duplicate code 'S11' (first at units/units.csv:5)",
    ),
    (
        "cycle_in_unit_parents",
        lambda p: append_lines(p / UNITS, "G1,甲局,department,G2,,,", "G2,乙局,department,G1,,,"),
        UNITS,
        15,
        "cycle in parents: G1 -> G2 -> G1",
    ),
    (
        "street_under_a_department",
        lambda p: append_lines(p / UNITS, "S99,某街道,street,C-ZJW,,,"),
        UNITS,
        15,
        "a street cannot hang under a department",
    ),
    (
        "unknown_unit_kind",
        lambda p: append_lines(p / UNITS, "V1,某村,village,S21,,,"),
        UNITS,
        15,
        "unknown kind 'village'",
    ),
    (
        "bad_category_tier",
        lambda p: replace_line(p / "categories.csv", 4, "010101,物业服务,0101,T99,,,物业|保安"),
        "categories.csv",
        4,
        "bad tier 'T99'",
    ),
    (
        "category_four_levels_deep",
        lambda p: append_lines(p / "categories.csv", "01010101,物业收费,010101,,,,"),
        "categories.csv",
        10,
        "at level 4",
    ),
    (
        "unknown_seven_haves_tag",
        lambda p: replace_line(p / "categories.csv", 2, "01,城乡建设,,,住有所居|吃有所食,宜居性,"),
        "categories.csv",
        2,
        "unknown 七有 tag '吃有所食'",
    ),
    (
        "unknown_category_in_dispatch_catalogue",
        lambda p: append_lines(p / "dispatch_catalogue.csv", "99,street,,,,"),
        "dispatch_catalogue.csv",
        6,
        "unknown category '99'",
    ),
    (
        "route_unit_with_unknown_unit",
        lambda p: replace_line(p / "dispatch_catalogue.csv", 5, "0301,unit,,C-XX,,"),
        "dispatch_catalogue.csv",
        5,
        "unknown unit 'C-XX'",
    ),
    (
        "route_district_function_with_a_function_no_unit_has",
        lambda p: replace_line(p / "dispatch_catalogue.csv", 3, "02,district_function,sports,,,"),
        "dispatch_catalogue.csv",
        3,
        "no unit has function 'sports'",
    ),
    (
        "duplicate_username",
        lambda p: append_lines(p / "users.csv", "agent1,另一个话务员,agent,C-RX,x"),
        "users.csv",
        12,
        "duplicate username 'agent1' (first at line 2)",
    ),
    (
        "unknown_role",
        lambda p: replace_line(p / "users.csv", 2, "agent1,话务员甲,boss,C-RX,secret123"),
        "users.csv",
        2,
        "unknown role 'boss'",
    ),
    (
        "category_with_no_dispatch_rule",
        lambda p: append_lines(p / "categories.csv", "04,公共安全,,,,安全性,"),
        "categories.csv",
        10,
        "category '04' 公共安全 has no dispatch rule",
    ),
    (
        "weights_not_summing_to_one",
        _pack_yaml_weights,
        "pack.yaml",
        PACK_YAML_LINES + 3,  # the appended "company:" line
        "weights.company: must sum to 1",
    ),
    (
        "malformed_yaml",
        lambda p: replace_line(p / "pack.yaml", 5, "city_unit: C: D"),
        "pack.yaml",
        5,
        "not valid YAML",
    ),
    (
        "missing_required_column",
        lambda p: replace_line(p / "users.csv", 1, "username,name,roles,unit,password"),
        "users.csv",
        1,
        "missing column(s): role",
    ),
    (
        "bad_date_in_calendar",
        lambda p: replace_line(p / "calendar.csv", 2, "2027-13-01,holiday,元旦"),
        "calendar.csv",
        2,
        "bad date '2027-13-01'",
    ),
]


@pytest.mark.parametrize(
    ("plant", "file", "line", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in PLANTED],
)
def test_a_planted_error_is_refused_with_file_line_and_reason(
    tmp_path: Path, plant: Plant, file: str, line: int | None, reason: str
) -> None:
    root = copy_tiny(tmp_path)
    plant(root)
    pack = read_pack(root)
    assert not pack.ok
    error = find_error(pack.errors, file, line, reason)
    where = f"{file}:{line}" if line is not None else file
    assert str(error).startswith(f"{where}: ")


def test_pack_with_unknown_parent_is_refused_with_file_and_line(tmp_path: Path) -> None:
    root = copy_tiny(tmp_path)
    append_lines(root / UNITS, "X1,某某局,department,NOPE,,,")
    assert [str(e) for e in read_pack(root).errors] == ["units/units.csv:15: unknown parent 'NOPE'"]


def test_every_error_is_reported_in_one_round_not_just_the_first(tmp_path: Path) -> None:
    root = copy_tiny(tmp_path)
    append_lines(root / UNITS, "X1,某某局,department,NOPE,,,")
    replace_line(root / "users.csv", 2, "agent1,话务员甲,boss,C-RX,secret123")
    replace_line(root / "calendar.csv", 2, "2027-13-01,holiday,元旦")
    errors = read_pack(root).errors
    find_error(errors, UNITS, 15, "unknown parent")
    find_error(errors, "users.csv", 2, "unknown role")
    find_error(errors, "calendar.csv", 2, "bad date")


def test_csv_line_numbers_are_physical_lines_even_after_empty_lines(tmp_path: Path) -> None:
    root = copy_tiny(tmp_path)
    append_lines(root / UNITS, "", "", "X1,某某局,department,NOPE,,,")
    assert line_count(root / UNITS) == 17
    find_error(read_pack(root).errors, UNITS, 17, "unknown parent 'NOPE'")


def test_pack_yaml_errors_name_their_line(tmp_path: Path) -> None:
    root = copy_tiny(tmp_path)
    _pack_yaml_weights(root)
    find_error(read_pack(root).errors, "pack.yaml", PACK_YAML_LINES + 3, "must sum to 1")
    replace_line(root / "pack.yaml", 4, "timezone: Mars/Olympus")
    find_error(read_pack(root).errors, "pack.yaml", 4, "unknown time zone")


# ---- loading -------------------------------------------------------------------------------


def test_loading_the_tiny_pack_creates_every_row(empty_db: Database) -> None:
    stats = load(empty_db)
    assert stats == Counter(
        {
            "units.created": 13,
            "categories.created": 8,
            "request_types.created": 6,
            "dispatch_rules.created": 4,
            "users.created": 11,  # 10 from users.csv + the portal account
            "calendar.created": 1,
            "settings.created": 1,
        }
    )
    with empty_db.read() as s:
        for model, n in (
            (Unit, 13),
            (Category, 8),
            (RequestType, 6),
            (DispatchRule, 4),
            (User, 11),
            (CalendarOverride, 1),
            (CitySetting, 2),  # the pack's settings + the reference-data mark
        ):
            assert s.scalar(select(func.count()).select_from(model)) == n, model.__name__


def test_loaded_units_carry_materialised_paths_of_their_ancestors(empty_db: Database) -> None:
    load(empty_db)
    units = units_by_code(empty_db)
    c, d1, s11, m11 = units["C"], units["D1"], units["S11"], units["M11"]
    assert c.path == f"/{c.id}/"
    assert s11.path == f"/{c.id}/{d1.id}/{s11.id}/"
    assert m11.path == f"{s11.path}{m11.id}/"
    for unit in units.values():
        parent = next((u for u in units.values() if u.id == unit.parent_id), None)
        expected = f"{parent.path if parent else '/'}{unit.id}/"
        assert unit.path == expected, unit.code
        assert unit.active


def test_loaded_categories_inherit_tiers_and_carry_full_names(empty_db: Database) -> None:
    load(empty_db)
    cats = categories_by_code(empty_db)
    assert cats["010101"].full_name == "城乡建设 › 住房与物业 › 物业服务"
    assert [cats[c].level for c in ("01", "0101", "010101")] == [1, 2, 3]
    assert cats["010101"].tier is None
    assert cats["010101"].effective_tier == "T7d"  # no tier up the chain: default_tier
    assert cats["0102"].effective_tier == "T2h"  # its own
    assert cats["0301"].effective_tier == "T24h"  # inherited from 03
    assert cats["01"].seven_haves == ["住有所居"]
    assert cats["010101"].keywords == ["物业", "保安"]


def test_loading_the_same_pack_twice_changes_nothing(empty_db: Database) -> None:
    load(empty_db)
    before = snapshot(empty_db)
    assert sum(len(rows) for rows in before.values()) > 0
    stats = load(empty_db)
    assert stats == Counter()
    assert snapshot(empty_db) == before  # updated_at included: nothing was even touched


def _changed_pack(tmp_path: Path) -> Path:
    root = copy_tiny(tmp_path)
    replace_line(root / UNITS, 4, "D2,西城区,district,C,,,西")  # renamed
    replace_line(root / UNITS, 5, "S11,东一街道,street,D2,,,东一")  # moved from D1 to D2
    replace_line(root / "categories.csv", 2, "01,城乡建设,,T24h,住有所居,宜居性,")  # tier set
    return root


def test_a_changed_pack_updates_rows_in_place_keeping_their_ids(
    empty_db: Database, tmp_path: Path
) -> None:
    load(empty_db)
    units_before, cats_before = units_by_code(empty_db), categories_by_code(empty_db)

    stats = load(empty_db, _changed_pack(tmp_path))

    assert stats == Counter({"units.updated": 2, "categories.updated": 3})
    units, cats = units_by_code(empty_db), categories_by_code(empty_db)
    assert {c: u.id for c, u in units.items()} == {c: u.id for c, u in units_before.items()}
    assert {c: k.id for c, k in cats.items()} == {c: k.id for c, k in cats_before.items()}
    assert units["D2"].name == "西城区"
    assert units["S11"].parent_id == units["D2"].id
    assert cats["01"].tier == "T24h"
    # the tier flows down to the children that have none of their own
    assert cats["0101"].effective_tier == "T24h"
    assert cats["010101"].effective_tier == "T24h"
    assert cats["0102"].effective_tier == "T2h"


def test_a_moved_street_and_its_descendants_get_new_paths(
    empty_db: Database, tmp_path: Path
) -> None:
    load(empty_db)
    load(empty_db, _changed_pack(tmp_path))
    units = units_by_code(empty_db)
    c, d2, s11, m11 = units["C"], units["D2"], units["S11"], units["M11"]
    assert s11.path == f"/{c.id}/{d2.id}/{s11.id}/"
    assert m11.path == f"/{c.id}/{d2.id}/{s11.id}/{m11.id}/"
    assert not m11.path.startswith(units["D1"].path)


def test_a_renamed_category_renames_its_descendants_full_names(
    empty_db: Database, tmp_path: Path
) -> None:
    load(empty_db)
    root = copy_tiny(tmp_path)
    replace_line(root / "categories.csv", 2, "01,城乡建设管理,,,住有所居,宜居性,")
    assert load(empty_db, root) == Counter({"categories.updated": 4})  # 01 0101 010101 0102
    cats = categories_by_code(empty_db)
    assert cats["010101"].full_name == "城乡建设管理 › 住房与物业 › 物业服务"
    assert cats["0102"].full_name == "城乡建设管理 › 房屋安全"
    assert cats["0201"].full_name == "教育 › 中小学教育"


def test_the_service_centre_must_carry_the_service_centre_function(tmp_path: Path) -> None:
    """Access keys on the unit's function: pack.yaml and units/ must agree on who the centre is."""
    root = copy_tiny(tmp_path)
    replace_line(root / UNITS, 9, "C-RX,小城市民热线服务中心,department,C,热线中心,hotline,")
    find_error(
        read_pack(root).errors, UNITS, 9, "must be the one unit with function service_centre"
    )
    root = copy_tiny(tmp_path / "second")
    append_lines(root / UNITS, "C-RX2,第二热线中心,department,C,,service_centre,")
    find_error(read_pack(root).errors, UNITS, 9, "units with it: C-RX, C-RX2")


def test_a_unit_removed_from_the_pack_is_deactivated_not_deleted(
    empty_db: Database, tmp_path: Path
) -> None:
    load(empty_db)
    d2_jw_id = units_by_code(empty_db)["D2-JW"].id
    root = copy_tiny(tmp_path)
    lines = (root / UNITS).read_text(encoding="utf-8").splitlines()
    (root / UNITS).write_text(
        "\n".join(x for x in lines if not x.startswith("D2-JW,")) + "\n", encoding="utf-8"
    )

    stats = load(empty_db, root)

    assert stats == Counter({"units.deactivated": 1})
    unit = units_by_code(empty_db)["D2-JW"]
    assert unit.id == d2_jw_id
    assert unit.active is False


def test_a_unit_that_comes_back_to_the_pack_is_reactivated(
    empty_db: Database, tmp_path: Path
) -> None:
    load(empty_db)
    with empty_db.write() as s:
        s.execute(update(Unit).where(Unit.code == "D2-JW").values(active=False))
    assert load(empty_db) == Counter({"units.updated": 1})
    assert units_by_code(empty_db)["D2-JW"].active is True


def test_an_invalid_pack_is_refused_by_load_pack_before_writing(
    empty_db: Database, tmp_path: Path
) -> None:
    root = copy_tiny(tmp_path)
    append_lines(root / UNITS, "X1,某某局,department,NOPE,,,")
    with pytest.raises(PackInvalid, match=r"units/units\.csv:15: unknown parent 'NOPE'"):
        load(empty_db, root)
    with empty_db.read() as s:
        assert s.scalar(select(func.count()).select_from(Unit)) == 0


def test_a_pack_users_password_is_only_an_initial_password(empty_db: Database) -> None:
    load(empty_db)
    with empty_db.write() as s:
        s.execute(
            update(User).where(User.username == "agent1").values(password_hash="changed-by-admin")
        )
    assert load(empty_db) == Counter()
    with empty_db.read() as s:
        assert s.scalar(select(User.password_hash).where(User.username == "agent1")) == (
            "changed-by-admin"
        )


def test_an_admins_calendar_override_wins_over_the_pack(empty_db: Database) -> None:
    load(empty_db)
    with empty_db.write() as s:
        day = s.scalar(select(CalendarOverride))
        assert day is not None
        day.kind, day.source = "workday", "admin"
    assert load(empty_db) == Counter()
    with empty_db.read() as s:
        day = s.scalar(select(CalendarOverride))
        assert day is not None
        assert (day.kind, day.source) == ("workday", "admin")


# ---- the command ---------------------------------------------------------------------------


def test_citypack_check_exits_0_on_the_tiny_pack() -> None:
    result = CliRunner().invoke(cli, ["citypack", "check", str(TINY_PACK)])
    assert result.exit_code == 0, result.output
    assert "13 units" in result.output


def test_citypack_check_exits_1_and_names_file_and_line(tmp_path: Path) -> None:
    root = copy_tiny(tmp_path)
    append_lines(root / UNITS, "X1,某某局,department,NOPE,,,")
    result = CliRunner().invoke(cli, ["citypack", "check", str(root)])
    assert result.exit_code == 1
    assert "units/units.csv:15: unknown parent 'NOPE'" in result.output


def test_citypack_check_prints_each_error_on_one_line(tmp_path: Path) -> None:
    root = copy_tiny(tmp_path)
    append_lines(
        root / "categories.csv", "04,公共安全与应急管理（含消防、防汛、地质灾害）,,,,安全性,"
    )
    result = CliRunner().invoke(cli, ["citypack", "check", str(root)])
    assert result.exit_code == 1
    lines = [x for x in result.output.splitlines() if x.startswith("error ")]
    assert any(
        x.startswith("error categories.csv:10: ") and x.endswith("nor has any parent)")
        for x in lines
    ), result.output


def test_citypack_load_of_a_pack_with_an_error_loads_nothing(
    empty_url: str, tmp_path: Path, cli_env: Callable[[str], None]
) -> None:
    cli_env(empty_url)
    root = copy_tiny(tmp_path)
    replace_line(root / "users.csv", 11, "heat.handler,热力承办人,handler,C-XX,secret123")

    result = CliRunner().invoke(cli, ["citypack", "load", str(root)])

    assert result.exit_code == 1
    assert "users.csv:11: unknown unit 'C-XX'" in result.output
    assert "nothing loaded" in " ".join(result.output.split())
    database = Database(empty_url)
    try:
        with database.read() as s:
            assert s.scalar(select(func.count()).select_from(Unit)) == 0
            assert s.scalar(select(func.count()).select_from(User)) == 0
    finally:
        database.dispose()


def test_citypack_load_loads_the_tiny_pack_and_a_second_run_reports_no_changes(
    empty_url: str, cli_env: Callable[[str], None]
) -> None:
    cli_env(empty_url)
    first = CliRunner().invoke(cli, ["citypack", "load", str(TINY_PACK)])
    assert first.exit_code == 0, first.output
    assert "units.created 13" in first.output
    second = CliRunner().invoke(cli, ["citypack", "load", str(TINY_PACK)])
    assert second.exit_code == 0, second.output
    assert "no changes" in second.output


# ---- a bad pack is reported, never a crash -------------------------------------------------


@pytest.mark.parametrize(
    "yaml_tail",
    [
        pytest.param("weights: 5\n", id="weights_not_a_mapping"),
        pytest.param(
            "weights:\n  default: {response: a, resolution: b, satisfaction: c}\n",
            id="weights_not_numbers",
        ),
        pytest.param("tier_rules: 5\n", id="tier_rules_not_a_list"),
        pytest.param(
            "satisfaction_scores: {very_satisfied: a, satisfied: 1, basically_satisfied: 1,"
            " dissatisfied: 0, very_dissatisfied: 0}\n",
            id="satisfaction_score_not_a_number",
        ),
        pytest.param("default_tier: [T7d]\n", id="default_tier_a_list"),
        pytest.param("tier_rules:\n  - {tier: [T2h]}\n", id="tier_rule_tier_a_list"),
    ],
)
def test_a_malformed_pack_yaml_value_is_an_error_not_a_crash(
    tmp_path: Path, yaml_tail: str
) -> None:
    root = copy_tiny(tmp_path)
    append_lines(root / "pack.yaml", yaml_tail.rstrip("\n"))
    pack = read_pack(root)
    assert any(e.file == "pack.yaml" for e in pack.errors)


def test_a_giant_csv_cell_is_an_error_not_a_crash(tmp_path: Path) -> None:
    root = copy_tiny(tmp_path)
    append_lines(root / UNITS, "X1," + "长" * 200_000 + ",department,C,,,")
    find_error(read_pack(root).errors, UNITS, 15, "unreadable CSV")


@pytest.mark.parametrize(
    ("plant", "file", "line"),
    [
        pytest.param(
            lambda p: append_lines(p / UNITS, "X1," + "长" * 150 + ",department,C,,,"),
            UNITS,
            15,
            id="unit_name_over_100_chars",
        ),
        pytest.param(
            lambda p: append_lines(p / "categories.csv", "01" + "0" * 23 + ",某类,01,,,,"),
            "categories.csv",
            10,
            id="category_code_over_20_chars",
        ),
    ],
)
def test_a_value_longer_than_its_column_is_refused_by_check(
    tmp_path: Path, plant: Plant, file: str, line: int
) -> None:
    root = copy_tiny(tmp_path)
    plant(root)
    find_error(read_pack(root).errors, file, line, "characters long; at most")


def test_an_unquoted_category_code_in_tier_rules_is_an_error(tmp_path: Path) -> None:
    """YAML reads 0101 as the octal number 65: a rule that could never match."""
    root = copy_tiny(tmp_path)
    replace_line(root / "pack.yaml", PACK_YAML_LINES, "  - {category: 0101, tier: T2h}")
    find_error(read_pack(root).errors, "pack.yaml", PACK_YAML_LINES, "quote the category code")


def test_task_force_sizes_and_warning_thresholds_are_checked(tmp_path: Path) -> None:
    root = copy_tiny(tmp_path)
    append_lines(root / "pack.yaml", "task_force: {street: 2, district: -1, planet: 1}",
                 "warnings: {repeat_min_orders: 2, burst_min_ratio: 0.5, colour: 3}")  # fmt: skip
    errors = read_pack(root).errors
    reasons = " | ".join(e.reason for e in errors)
    assert "task_force.district must be a whole number >= 0" in reasons
    assert "task_force: unknown unit kind 'planet'" in reasons
    assert "warnings.burst_min_ratio must be a number >= 1" in reasons
    assert "warnings: unknown key 'colour'" in reasons
    assert len(errors) == 4  # street: 2 and repeat_min_orders: 2 are fine
