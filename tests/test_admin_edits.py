"""The admin edits what a centre changes every week (issue 14 §2.8): units moved and merged,
categories and the dispatch catalogue, weights / task forces / small sample / warning
thresholds, each change audited before → after; and the pack exported so that loading the
export into an empty database gives the same city."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Templates, principal
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_auth import Console, app_of

from jiesu.access.policy import Principal
from jiesu.auth.models import AuditLog
from jiesu.auth.service import principal_of
from jiesu.citypack.export import export_pack
from jiesu.citypack.load import load_pack
from jiesu.citypack.parse import read_pack
from jiesu.db.engine import Database
from jiesu.errors import Invalid
from jiesu.intel.models import Place
from jiesu.org.models import Unit, User
from jiesu.org.service import merge_units, move_unit, update_unit
from jiesu.taxonomy.models import Category, CitySetting, DispatchRule
from jiesu.taxonomy.service import (
    RuleIn,
    add_category,
    load_catalogue,
    pack_settings,
    save_rule,
    set_pack_values,
    update_category,
)
from jiesu.tickets.actions import take_action
from jiesu.tickets.models import Assignment, Ticket
from jiesu.tickets.service import create_ticket, visible
from jiesu.tickets.shapes import Channel, TicketCreate


def unit_id(db: Database, code: str) -> int:
    with db.read() as s:
        return s.scalars(select(Unit.id).where(Unit.code == code)).one()


def dispatched_to(db: Database, lead: str) -> int:
    agent, dispatcher = principal(db, "agent1"), principal(db, "dispatcher1")
    with db.write() as s:
        t = create_ticket(TicketCreate(channel=Channel.phone, content="路灯不亮已经三天了"),
                          actor=agent, db_session=s)  # fmt: skip
        take_action(t.id, "dispatch", {"lead": lead}, actor=dispatcher, db_session=s)
        return t.id


def viewer_at(db: Database, code: str) -> Principal:
    """A reader sitting in unit `code` (its path as it is now)."""
    with db.read() as s:
        user = s.scalars(select(User).where(User.username == "s11.handler")).one()
        unit = s.scalars(select(Unit).where(Unit.code == code)).one()
        return principal_of(user, unit)


def sees(db: Database, code: str, ticket: int) -> bool:
    with db.read() as s:
        return ticket in set(s.scalars(visible(select(Ticket.id), viewer_at(db, code))))


def audits(db: Database, action: str) -> list[AuditLog]:
    with db.read() as s:
        return list(s.scalars(select(AuditLog).where(AuditLog.action == action)))


def test_a_moved_unit_takes_its_subtree_and_visibility_follows_the_move(db: Database) -> None:
    ticket = dispatched_to(db, "S11")
    assert sees(db, "D1", ticket) and not sees(db, "D2", ticket)
    admin = principal(db, "admin1")
    with db.write() as s:
        move_unit(unit_id(db, "S11"), "西区", actor=admin, db_session=s, ip=None)
    with db.read() as s:
        units = {u.code: u for u in s.scalars(select(Unit))}
        assert units["S11"].parent_id == units["D2"].id
        assert units["S11"].path == f"{units['D2'].path}{units['S11'].id}/"
        assert units["M11"].path == f"{units['S11'].path}{units['M11'].id}/"  # the subtree too
    assert sees(db, "D2", ticket) and not sees(db, "D1", ticket)
    (row,) = audits(db, "unit_move")
    assert row.username == "admin1" and row.detail["target"] == "S11"
    assert row.detail["before"] == {"parent": "D1"} and row.detail["after"] == {"parent": "D2"}
    with db.write() as s, pytest.raises(Invalid, match="不能移到本单位或其下级单位之下"):
        move_unit(unit_id(db, "S11"), "M11", actor=admin, db_session=s, ip=None)


def test_a_merge_moves_people_and_open_work_and_leaves_a_pointer(db: Database) -> None:
    ticket = dispatched_to(db, "S11")
    admin = principal(db, "admin1")
    s11, s12 = unit_id(db, "S11"), unit_id(db, "S12")
    with db.write() as s:
        merge_units(s11, "东二街道", actor=admin, db_session=s, ip="10.0.0.1")
    with db.read() as s:
        handler = s.scalars(select(User).where(User.username == "s11.handler")).one()
        assert handler.unit_id == s12
        (lead,) = s.scalars(select(Assignment).where(Assignment.ticket_id == ticket,
                                                      Assignment.active))  # fmt: skip
        assert lead.unit_id == s12
        assert s.get(Ticket, ticket).lead_unit_id == s12  # type: ignore[union-attr]
        merged, community = (
            s.get(Unit, s11),
            s.scalars(select(Unit).where(Unit.code == "M11")).one(),
        )
        assert merged is not None and not merged.active and merged.merged_into_id == s12
        assert community.parent_id == s12 and community.path.startswith(s.get(Unit, s12).path)  # type: ignore[union-attr]
    assert sees(db, "S12", ticket)
    with db.write() as s, pytest.raises(Invalid, match="已并入其他单位"):
        update_unit(s11, name="东一街道", short_name=None, active=True, actor=admin,
                    db_session=s, ip=None)  # fmt: skip
    (row,) = audits(db, "unit_merge")
    assert row.detail["after"] == {"merged_into": "S12"} and row.detail["users"] == 2
    assert row.detail["open_assignments"] == 1


def test_catalogue_categories_and_settings_are_edited_by_name_and_audited(db: Database) -> None:
    admin = principal(db, "admin1")
    with db.write() as s:
        save_rule(None, RuleIn(category="物业服务", route="unit", unit="热力集团",
                               note="物业类试点派热力集团"),
                  actor=admin, db_session=s, ip=None)  # fmt: skip
    with db.read() as s:
        assert load_catalogue(db_session=s).route("010101", "D1", "S11").unit == "C-RL"  # type: ignore[union-attr]
    (row,) = audits(db, "catalogue_save")
    assert row.detail["before"] is None and row.detail["after"]["unit"] == "C-RL"
    with db.write() as s, pytest.raises(Invalid, match="事项分类：没有名称或编码为「不存在的事」"):
        save_rule(None, RuleIn(category="不存在的事", route="street"), actor=admin,
                  db_session=s, ip=None)  # fmt: skip

    with db.write() as s:
        cat = s.scalars(select(Category).where(Category.code == "0101")).one()
        update_category(cat.id, name="住房与物业管理", tier="T15d", active=True, actor=admin,
                        db_session=s, ip=None)  # fmt: skip
        child = add_category("住房与物业管理", code="010102", name="电梯维修", tier=None,
                             actor=admin, db_session=s, ip=None)  # fmt: skip
        assert child.full_name == "城乡建设 › 住房与物业管理 › 电梯维修"
        assert child.effective_tier == "T15d"
    with db.read() as s:
        leaf = s.scalars(select(Category).where(Category.code == "010101")).one()
        assert (
            leaf.full_name.endswith("住房与物业管理 › 物业服务") and leaf.effective_tier == "T15d"
        )
    (row,) = audits(db, "category_update")
    assert row.detail["before"]["name"] == "住房与物业" and row.detail["after"]["tier"] == "T15d"

    with db.write() as s, pytest.raises(Invalid, match="三项权重之和须为 100%"):
        set_pack_values({"weights": {"default": {"response": 0.5, "resolution": 0.5,
                                                 "satisfaction": 0.5}}},
                        actor=admin, db_session=s, ip=None)  # fmt: skip
    with db.write() as s:
        set_pack_values({"small_sample": 5, "task_force": {"street": 1},
                         "warnings": {"burst_min_count": 4}}, actor=admin, db_session=s,
                        ip=None)  # fmt: skip
    with db.read() as s:
        settings = pack_settings(db_session=s)  # what the next ranking / scan reads
        assert settings["small_sample"] == 5 and settings["task_force"] == {"street": 1}
        assert settings["warnings"]["burst_min_count"] == 4
    (row,) = audits(db, "settings_update")
    assert row.detail["after"]["small_sample"] == 5 and row.detail["before"]["small_sample"] != 5


def _city(db: Database) -> dict[str, Any]:
    with db.read() as s:
        units = {u.id: u for u in s.scalars(select(Unit))}
        cats = {c.id: c for c in s.scalars(select(Category))}
        code = lambda i, d: d[i].code if i else None  # noqa: E731
        settings = s.get(CitySetting, "pack")
        return {
            "units": sorted(
                (u.code, u.name, u.kind, code(u.parent_id, units), u.function)
                for u in units.values()
                if u.active
            ),
            "categories": sorted(
                (c.code, c.name, code(c.parent_id, cats), c.tier, c.effective_tier, c.full_name)
                for c in cats.values()
                if c.active
            ),
            "catalogue": sorted(
                (
                    cats[r.category_id].code,
                    r.route,
                    r.function,
                    code(r.unit_id, units),
                    code(r.district_id, units),
                    r.note,
                )
                for r in s.scalars(select(DispatchRule))
                if r.active
            ),
            "users": sorted(
                (u.username, u.name, u.role, units[u.unit_id].code)
                for u in s.scalars(select(User))
                if u.active
            ),
            "places": sorted(
                (p.name, p.kind, units[p.unit_id].code)
                for p in s.scalars(select(Place))
                if p.active
            ),
            "settings": settings.value if settings else None,
        }


@pytest.fixture
def other_empty_db(backend: str, templates: Templates, tmp_path: Path) -> Iterator[Database]:
    """An empty database beside `db` (conftest's `empty_db` shares its SQLite file)."""
    (tmp_path / "empty").mkdir()
    urls = templates.fresh_url(backend, False, tmp_path / "empty")
    database = Database(next(urls))
    try:
        yield database
    finally:
        database.dispose()
        urls.close()


def test_the_export_loaded_into_an_empty_database_is_the_same_city(
    db: Database, other_empty_db: Database, tmp_path: Path
) -> None:
    empty_db = other_empty_db
    admin = principal(db, "admin1")
    with db.write() as s:
        move_unit(unit_id(db, "S12"), "D2", actor=admin, db_session=s, ip=None)
        merge_units(unit_id(db, "S21"), "S12", actor=admin, db_session=s, ip=None)
        cat = s.scalars(select(Category).where(Category.code == "0102")).one()
        update_category(cat.id, name="房屋安全隐患", tier="T24h", active=True, actor=admin,
                        db_session=s, ip=None)  # fmt: skip
        save_rule(None, RuleIn(category="0102", route="district_function", function="housing",
                               district="东区"), actor=admin, db_session=s, ip=None)  # fmt: skip
        set_pack_values({"small_sample": 3, "weights": {"default": {
            "response": 0.2, "resolution": 0.4, "satisfaction": 0.4}}},
            actor=admin, db_session=s, ip=None)  # fmt: skip
    with db.read() as s:
        stats = export_pack(tmp_path / "pack", db_session=s)
    assert stats["units"] > 0 and stats["users"] > 0
    assert "password" not in (tmp_path / "pack" / "users.csv").read_text(encoding="utf-8")
    pack = read_pack(tmp_path / "pack")
    assert pack.ok, pack.errors
    with empty_db.write() as s:
        load_pack(pack, db_session=s)
    before, after = _city(db), _city(empty_db)
    for key in before:
        assert after[key] == before[key], key
    assert ("S12", "东二街道", "street", "D2", None) in after["units"]
    with empty_db.read() as s:  # users come without passwords: they are set again
        assert s.scalars(select(User.password_hash).where(User.username == "admin1")).one() is None


def test_the_admin_pages_edit_keep_what_was_typed_and_download_the_pack(
    client: TestClient,
) -> None:
    browser = Console(app_of(client), "admin1")
    r = browser.post("/console/admin/weights", {
        "w.default.response": "50", "w.default.resolution": "45",
        "w.default.satisfaction": "45", "small_sample": "7", "tf.street": "2",
    })  # fmt: skip
    assert r.status_code == 422
    assert "三项权重之和须为 100%（现为 140%）" in r.text
    assert 'value="50"' in r.text and 'value="7"' in r.text  # what was typed, not the old values
    r = browser.post("/console/admin/weights", {
        "w.default.response": "10", "w.default.resolution": "45",
        "w.default.satisfaction": "45", "small_sample": "7", "tf.street": "2",
        "wn.burst_min_count": "",
    })  # fmt: skip
    assert r.status_code == 303, r.text[:500]
    r = browser.post("/console/admin/catalogue", {"category": "房屋安全", "route": "unit",
                                                  "unit": "没有这个单位"})  # fmt: skip
    assert r.status_code == 422 and "承办单位：没有名称或编码为「没有这个单位」的单位" in r.text
    assert 'value="没有这个单位"' in r.text
    r = browser.post("/console/admin/categories", {"parent": "房屋安全", "code": "010201",
                                                   "name": "墙体开裂"})  # fmt: skip
    assert r.status_code == 303, r.text[:500]
    s21 = browser.get("/console/admin/units?q=S21").text.split('action="/console/admin/units/')[1]
    url = "/console/admin/units/" + s21.split('"')[0]
    r = browser.post(url, {"op": "merge", "into": "西区"})
    assert r.status_code == 422 and "请勾选「确认合并」" in r.text and 'value="西区"' in r.text
    r = browser.post(url, {"op": "merge", "into": "东二街道", "confirm": "on"})
    assert r.status_code == 303, r.text[:500]
    assert "已并入东二街道" in browser.get("/console/admin/units?q=S21").text
    r = browser.post("/console/admin/users", {"username": "s12.b", "name": "东二承办人乙",
                                              "role": "handler", "unit": "东二", "password": "x"})  # fmt: skip
    assert r.status_code == 422 and 'value="东二"' in r.text and 'value="s12.b"' in r.text
    r = browser.post("/console/admin/users", {"username": "s12.b", "name": "东二承办人乙",
                                              "role": "handler", "unit": "东二街道",
                                              "password": "a-long-password-1"})  # fmt: skip
    assert r.status_code == 303, r.text[:800]
    r = browser.post("/console/admin/catalogue", {"category": "010101", "route": "district_function",
                                                  "function": "housing", "district": "西区"})  # fmt: skip
    assert r.status_code == 303, r.text[:800]
    assert "住建委 <small>housing</small>" in browser.get("/console/admin/catalogue").text
    for section in ("users", "units", "categories", "catalogue", "weights"):
        assert browser.get(f"/console/admin/{section}").status_code == 200, section
    page = browser.get("/console/admin/audit").text
    assert "修改考核与预警参数" in page and "小样本门槛" in page and "新增事项分类" in page
    assert "合并单位" in page and "并入：— → 东二街道 <small>S12</small>" in page
    assert "对象：西一镇 <small>S21</small>" in page
    assert "small_sample" not in page and "before" not in page
    r = browser.get("/console/admin/pack/download")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = set(zipfile.ZipFile(io.BytesIO(r.content)).namelist())
    assert {"pack.yaml", "units/units.csv", "categories.csv", "dispatch_catalogue.csv",
            "users.csv"} <= names  # fmt: skip
    text = zipfile.ZipFile(io.BytesIO(r.content)).read("categories.csv").decode()
    assert "010201,墙体开裂,0102" in text
