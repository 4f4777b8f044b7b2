"""Reference data (units, categories, catalogue, settings, calendar) is built once per change:
every change made through the services, and any ORM edit of a timestamped row, is seen by the
next read."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from jiesu.access.policy import Principal
from jiesu.db.engine import Database
from jiesu.org.models import Unit
from jiesu.org.service import remove_calendar_day, set_calendar_day, update_unit
from jiesu.taxonomy import service as taxonomy
from jiesu.taxonomy.models import CitySetting


def admin(s: object) -> Principal:
    unit = s.scalar(select(Unit).where(Unit.kind == "city"))  # type: ignore[attr-defined]
    return Principal(0, "admin", "admin", "admin", unit.id, unit.path, None)


def test_the_same_reference_data_is_built_once(db: Database) -> None:
    built = []
    with db.read() as s:
        taxonomy.cached("probe", lambda: built.append(1) or len(built), db_session=s)
    with db.read() as s:
        again = taxonomy.cached("probe", lambda: built.append(1) or len(built), db_session=s)
    assert built == [1] and again == 1


def test_a_renamed_unit_shows_at_once(db: Database) -> None:
    with db.read() as s:
        before = taxonomy.unit_options(db_session=s)
    code, option = next(iter(before.items()))
    with db.write() as s:
        unit = s.scalar(select(Unit).where(Unit.code == code))
        update_unit(unit.id, name=option.name + "（新）", short_name=None, active=True,
                    actor=admin(s), db_session=s, ip=None)  # fmt: skip
    with db.read() as s:
        assert taxonomy.unit_options(db_session=s)[code].name == option.name + "（新）"


def test_a_calendar_day_set_and_removed_moves_the_clocks(db: Database) -> None:
    day = date(2026, 12, 7)  # a Monday
    with db.read() as s:
        assert taxonomy.city_clocks(db_session=s).calendar.is_workday(day)
    with db.write() as s:
        set_calendar_day(day, "holiday", "演练", actor=admin(s), db_session=s, ip=None)
    with db.read() as s:
        assert not taxonomy.city_clocks(db_session=s).calendar.is_workday(day)
    with db.write() as s:
        remove_calendar_day(day, actor=admin(s), db_session=s, ip=None)
    with db.read() as s:
        assert taxonomy.city_clocks(db_session=s).calendar.is_workday(day)


def test_changed_settings_are_read_again(db: Database) -> None:
    with db.read() as s:
        settings = taxonomy.pack_settings(db_session=s)
    with db.write() as s:
        row = s.get(CitySetting, "pack")
        row.value = {**row.value, "small_sample": 7}
    with db.read() as s:
        assert taxonomy.pack_settings(db_session=s)["small_sample"] == 7
        assert settings.get("small_sample") != 7


def test_a_caller_cannot_change_the_shared_settings(db: Database) -> None:
    with db.read() as s:
        taxonomy.pack_settings(db_session=s)["tiers"] = None
    with db.read() as s:
        assert taxonomy.pack_settings(db_session=s)["tiers"]
