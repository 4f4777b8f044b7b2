"""Display names (issue 13 §5.7): a name with bidi or other invisible controls, or another user's
name after NFKC and whitespace normalisation, is refused with a 422 naming the field wherever a
name is set — the admin's user pages, a unit admin's own handlers page, the service itself and
the city pack. On both databases (the pack's check is pure)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import TINY_PACK
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from test_auth import Console, app_of, is_html, user_row

from jiesu.access.policy import Principal
from jiesu.auth.service import principal_of
from jiesu.citypack.parse import read_pack
from jiesu.db.engine import Database
from jiesu.errors import Invalid
from jiesu.org.models import Unit, User
from jiesu.org.service import UserIn, create_user, update_user

BIDI = [
    pytest.param("管理员\u202e己", id="RLO"),
    pytest.param("\u2067新用户\u2069", id="RLI-PDI"),
    pytest.param("新\u200b用户", id="ZWSP"),
    pytest.param("新\u200d用户", id="ZWJ"),
    pytest.param("新用户\u200e", id="LRM"),
    pytest.param("\ufeff新用户", id="BOM"),
    pytest.param("新\u3164用户", id="hangul-filler"),
]
COPIES = [
    pytest.param("话务员甲", id="same"),
    pytest.param("话务员 甲", id="inner-space"),
    pytest.param(" 话务员甲 ", id="outer-space"),
    pytest.param("东二承办人", id="another-unit"),
]


def users(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(User)) or 0


def new_user(name: str, **extra: str) -> dict[str, str]:
    return {"username": "new.user", "name": name, "role": "agent", "unit": "C-RX",
            "password": "a-good-password", **extra}  # fmt: skip


@pytest.mark.parametrize("name", BIDI + COPIES)
def test_the_admin_page_refuses_a_disguised_or_copied_name(
    client: TestClient, db: Database, name: str
) -> None:
    admin = Console(app_of(client), "admin1")
    before = users(db)
    r = admin.post("/console/admin/users", new_user(name))
    assert r.status_code == 422 and is_html(r)
    assert "flash-error" in r.text and "姓名" in r.text
    assert users(db) == before


def test_a_full_width_copy_of_a_latin_name_is_the_same_name(client: TestClient) -> None:
    admin = Console(app_of(client), "admin1")
    r = admin.post("/console/admin/users", new_user("Li Lei", username="li.lei"))
    assert r.status_code == 303
    for copy in ("ＬＩ ＬＥＩ", "lilei", "LI  LEI"):
        r = admin.post("/console/admin/users", new_user(copy, username="li.lei2"))
        assert r.status_code == 422, copy


def test_renaming_to_another_users_name_is_refused_keeping_ones_own_is_not(
    client: TestClient, db: Database
) -> None:
    admin = Console(app_of(client), "admin1")
    target = user_row(db, "dispatcher1")
    form = {"username": "dispatcher1", "role": "dispatcher", "unit": "C-RX", "active": "on"}
    r = admin.post(f"/console/admin/users/{target.id}", {**form, "name": "话务员 甲"})
    assert r.status_code == 422 and "姓名" in r.text
    r = admin.post(f"/console/admin/users/{target.id}", {**form, "name": "派单员\u202e乙"})
    assert r.status_code == 422
    assert user_row(db, "dispatcher1").name == "派单员乙"
    r = admin.post(f"/console/admin/users/{target.id}", {**form, "name": "派单员乙"})
    assert r.status_code == 303  # unchanged: no copy of itself
    r = admin.post(f"/console/admin/users/{target.id}", {**form, "name": "派单员 乙二"})
    assert r.status_code == 303
    assert user_row(db, "dispatcher1").name == "派单员 乙二"


@pytest.mark.parametrize("name", [BIDI[0], BIDI[2], COPIES[3], COPIES[1]])
def test_a_unit_admin_cannot_name_a_handler_with_a_disguised_or_copied_name(
    client: TestClient, db: Database, name: str
) -> None:
    unit_admin = Console(app_of(client), "s11.admin")
    before = users(db)
    r = unit_admin.post("/console/unit/users", {"username": "s11.new", "name": name,
                                                "password": "a-good-password"})  # fmt: skip
    assert r.status_code == 422 and is_html(r) and "姓名" in r.text
    assert users(db) == before
    r = unit_admin.post("/console/unit/users", {"username": "s11.new", "name": "东一承办人乙",
                                                "password": "a-good-password"})  # fmt: skip
    assert r.status_code == 303


def _admin(db: Database) -> Principal:
    with db.read() as s:
        row = s.execute(
            select(User, Unit).join(Unit, Unit.id == User.unit_id).where(User.username == "admin1")
        ).one()
        return principal_of(row[0], row[1])


def test_the_service_names_the_field(db: Database) -> None:
    admin = _admin(db)
    with pytest.raises(Invalid) as refused, db.write() as s:
        create_user(UserIn("x.y", "话务员甲", "agent", "C-RX", "a-good-password"), actor=admin,
                    db_session=s, ip=None)  # fmt: skip
    assert refused.value.field == "name" and refused.value.status == 422
    agent = user_row(db, "agent1")
    with pytest.raises(Invalid) as refused, db.write() as s:
        update_user(agent.id, UserIn("agent1", "话务员\u2066甲", "agent", "C-RX"), actor=admin,
                    db_session=s, ip=None)  # fmt: skip
    assert refused.value.field == "name"


def test_the_city_pack_refuses_disguised_and_copied_names(tmp_path: Path) -> None:
    root = tmp_path / "pack"
    shutil.copytree(TINY_PACK, root)
    users_csv = root / "users.csv"
    lines = users_csv.read_text(encoding="utf-8").splitlines()
    lines += ["copy1,话务员 甲,agent,C-RX,secret123", "rlo1,坏\u202e名字,agent,C-RX,secret123"]
    users_csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    errors = read_pack(root).errors
    found = {(e.file, e.line): e.reason for e in errors}
    assert "the name of 'agent1' at line 2" in found[("users.csv", len(lines) - 1)]
    assert "U+202E" in found[("users.csv", len(lines))]
    assert len(errors) == 2
