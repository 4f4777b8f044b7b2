"""Intake intelligence wired into intake (SPEC §8): `POST /api/v1/tickets` answers with the
suggestions; places, danger signs and same-event candidates are found; dispatch is automatic
only above the city's threshold; models are registered, versioned and activated; the advice is
kept with the ticket and shown to the centre. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import auth
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from test_console_pages import console_login

from jiesu.access.policy import Principal
from jiesu.db.engine import Database
from jiesu.intel import classify
from jiesu.intel.models import IntakeAdviceRow, IntelModel
from jiesu.intel.service import (
    activate_model,
    active_model,
    register_model,
    set_intel_settings,
    training_rows,
)
from jiesu.org.models import Unit, User
from jiesu.tickets.models import Event, Ticket

TICKETS = "/api/v1/tickets"


def post(client: TestClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"channel": "phone", "content": "小区门口路灯不亮"}
    body.update(fields)
    r = client.post(TICKETS, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def admin(db: Database) -> Principal:
    with db.read() as s:
        user = s.scalar(select(User).where(User.username == "admin1"))
        unit = s.get(Unit, user.unit_id)
        return Principal(user.id, user.username, user.name, "admin", unit.id, unit.path, None)


def automatic(db: Database, threshold: float | None) -> None:
    with db.write() as s:
        set_intel_settings({"auto_dispatch": threshold}, actor=admin(db), db_session=s, ip=None)


def test_the_answer_carries_the_suggestions_and_the_place_is_resolved(
    client: TestClient, db: Database
) -> None:
    out = post(client, auth(client, "agent1"), address="东区东一街道幸福小区3号楼",
               category_code="0101", content="物业不管楼道卫生")  # fmt: skip
    s = out["suggestions"]
    assert s["place"]["street"] == "S11" and s["place"]["district"] == "D1"
    assert s["place"]["source"] == "address" and s["place"]["confidence"] >= 0.8
    assert "place" in s["applied"]
    assert out["street"]["code"] == "S11" and out["district"]["code"] == "D1"
    assert s["lead"] == {"unit": "S11", "name": "东一街道", "reason": "城乡建设类直派属地街乡",
                         "confidence": s["place"]["confidence"]}  # the category was given  # fmt: skip
    assert s["auto_dispatched"] is False and "本市未开启自动派单" in s["why_not_automatic"]
    assert out["status"] == "received"


def test_a_place_the_agent_gave_is_kept(client: TestClient) -> None:
    out = post(client, auth(client, "agent1"), street="S12", address="东一街道某小区")
    assert out["street"]["code"] == "S12"
    assert out["suggestions"]["place"]["source"] == "given"


def test_danger_signs_make_the_ticket_urgent_without_a_version_step(
    client: TestClient, db: Database
) -> None:
    out = post(client, auth(client, "agent1"), content="楼道里燃气味很浓，像是漏气了，请马上来人",
               address="东区东二街道")  # fmt: skip
    u = out["suggestions"]["urgency"]
    assert u["level"] in ("urgent", "emergency") and u["signs"]
    assert out["urgent"] is True and out["tier"] == "T2h"
    with db.read() as s:
        t = s.get(Ticket, out["id"])
        events = s.scalar(select(func.count()).select_from(Event).where(Event.ticket_id == t.id))
        assert t.version == events == 1  # intake is one event, however much advice changed


def test_a_plain_request_is_not_urgent(client: TestClient) -> None:
    out = post(client, auth(client, "agent1"), content="咨询一下燃气费怎么交")
    assert out["urgent"] is False and out["suggestions"]["urgency"] is None


def test_the_same_event_twice_is_offered_for_merging(client: TestClient) -> None:
    headers = auth(client, "agent1")
    text = "东一街道幸福小区5号楼前的污水井盖破损，晚上有老人差点摔倒，请尽快修好"
    first = post(client, headers, content=text, street="S11")
    second = post(client, headers, content=text + "。", street="S11")
    other = post(client, headers, content="西区学校门口早晚接送孩子时交通拥堵", street="S21")
    found = second["suggestions"]["duplicates"]
    assert [d["number"] for d in found] == [first["number"]]
    assert found[0]["score"] >= 0.9 and found[0]["reasons"]
    assert other["suggestions"]["duplicates"] == []


def test_automatic_dispatch_above_the_threshold_only(client: TestClient, db: Database) -> None:
    headers = auth(client, "agent1")
    automatic(db, 0.7)
    sent = post(client, headers, category_code="0101", address="东区东一街道幸福小区",
                content="物业不打扫楼道")  # fmt: skip
    assert sent["suggestions"]["auto_dispatched"] is True
    assert sent["status"] == "dispatched" and sent["lead_unit"]["code"] == "S11"
    nowhere = post(client, headers, category_code="0101", content="物业不打扫楼道")
    assert nowhere["status"] == "received"
    assert "未识别到地址" in nowhere["suggestions"]["why_not_automatic"]
    unknown = post(client, headers, address="东区东一街道幸福小区", content="物业不打扫楼道")
    assert unknown["status"] == "received"  # no category and no model: nobody guesses
    assert "分类置信度不足" in unknown["suggestions"]["why_not_automatic"]
    automatic(db, None)
    off = post(client, headers, category_code="0101", address="东区东一街道幸福小区")
    assert off["status"] == "received"


def test_an_emergency_is_not_dispatched_automatically(client: TestClient, db: Database) -> None:
    automatic(db, 0.5)
    out = post(client, auth(client, "agent1"), category_code="0102", address="东区东一街道",
               content="我家楼下着火了，浓烟很大，有人被困")  # fmt: skip
    assert out["status"] == "received"
    assert out["suggestions"]["urgency"]["transfer"] == "119"
    assert any("119" in why for why in out["suggestions"]["why_not_automatic"])


def test_a_replayed_intake_answers_with_the_same_advice(client: TestClient) -> None:
    headers = {**auth(client, "agent1"), "Idempotency-Key": "k-advice-1"}
    first = post(client, headers, address="东区东一街道")
    again = client.post(TICKETS, json={"channel": "phone", "content": "小区门口路灯不亮",
                                       "address": "东区东一街道"}, headers=headers)  # fmt: skip
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["suggestions"] == first["suggestions"]


def tiny_model(tmp_path: Path) -> Path:
    texts = ["物业不打扫楼道卫生", "物业乱收费", "小区物业保安不管", "楼道保洁没人管"] * 5 + [
        "学校老师体罚学生", "中小学乱收补课费", "孩子上学学位紧张", "学校食堂不卫生"] * 5 + [
        "家里暖气不热", "供暖温度不达标", "暖气片漏水", "小区停暖"] * 5  # fmt: skip
    labels = ["0101"] * 20 + ["0201"] * 20 + ["0301"] * 20
    model = classify.train(texts, labels, kind="category", calibration_folds=0)
    return model.save(tmp_path / "m", evaluation={"macro_f1": 0.99, "accuracy": 0.99})


def test_a_registered_model_suggests_when_active(
    client: TestClient, db: Database, tmp_path: Path
) -> None:
    folder = tiny_model(tmp_path)
    with db.write() as s:
        v1 = register_model(folder, db_session=s, name="测试模型")
        v2 = register_model(folder, db_session=s, name="测试模型")
        assert (v1.kind, v1.version, v2.version) == ("category", 1, 2)
        assert v1.evaluation["macro_f1"] == 0.99 and not v1.active
    headers = auth(client, "agent1")
    assert post(client, headers)["suggestions"]["category"] is None  # nothing active yet
    with db.write() as s:
        activate_model(v2.id, db_session=s)
    out = post(client, headers, content="我家暖气一点都不热")
    cat = out["suggestions"]["category"]
    assert cat["code"] == "0301" and cat["name"] == "供暖" and 0 < cat["confidence"] <= 1
    assert cat["model"] == "测试模型 v2" and len(cat["ranked"]) == 3
    with db.write() as s:
        activate_model(v1.id, db_session=s)
        rows = s.scalars(select(IntelModel).order_by(IntelModel.version)).all()
        assert [r.active for r in rows] == [True, False]  # one active per kind
        row = s.get(IntakeAdviceRow, out["id"])
        assert row.category_model_id == v2.id and row.advice["category"]["code"] == "0301"


def test_automatic_dispatch_on_a_confident_model(
    client: TestClient, db: Database, tmp_path: Path
) -> None:
    with db.write() as s:
        activate_model(register_model(tiny_model(tmp_path), db_session=s).id, db_session=s)
    automatic(db, 0.3)
    out = post(client, auth(client, "agent1"), content="家里暖气不热，供暖温度不达标",
               address="东区东一街道")  # fmt: skip
    assert out["suggestions"]["auto_dispatched"] is True
    assert out["category"]["code"] == "0301" and out["lead_unit"]["code"] == "C-RL"
    assert "category" in out["suggestions"]["applied"]


def test_a_tampered_artifact_is_refused(db: Database, tmp_path: Path) -> None:
    with db.write() as s:
        row = register_model(tiny_model(tmp_path), db_session=s)
        activate_model(row.id, db_session=s)
        row.artifact = row.artifact[:-1] + bytes([row.artifact[-1] ^ 1])
    with db.read() as s:
        try:
            active_model("category", db_session=s)
        except Exception as exc:
            assert "校验" in str(exc)
        else:
            raise AssertionError("a changed artifact was loaded")


def test_corrected_categories_are_what_training_learns(client: TestClient, db: Database) -> None:
    headers = auth(client, "agent1")
    out = post(client, headers, category_code="0101", content="暖气不热", street="S11")
    dispatcher = auth(client, "dispatcher1")
    r = client.post(f"{TICKETS}/{out['id']}/actions/recategorize",
                    json={"category": "0301"}, headers=dispatcher)  # fmt: skip
    assert r.status_code == 200, r.text
    r = client.post(f"{TICKETS}/{out['id']}/actions/dispatch",
                    json={"lead": "C-RL"}, headers=dispatcher)  # fmt: skip
    assert r.status_code == 200, r.text
    with db.read() as s:
        rows = list(training_rows("category", db_session=s))
    assert ("暖气不热\n暖气不热", "0301") in rows


def test_the_centre_sees_the_advice_on_the_ticket_page(client: TestClient, db: Database) -> None:
    headers = auth(client, "agent1")
    text = "东一街道幸福小区5号楼前的污水井盖破损，晚上有老人差点摔倒"
    first = post(client, headers, content=text, street="S11")
    second = post(client, headers, content=text, street="S11")
    console_login(client, "dispatcher1")
    page = client.get(f"/console/tickets/{second['id']}").text
    assert "智能建议" in page and first["number"] in page and "并入此单" in page


def test_the_daily_pass_groups_one_event_reported_three_times(
    client: TestClient, db: Database
) -> None:
    from datetime import timedelta

    from jiesu.db.base import utcnow
    from jiesu.intel.service import duplicate_groups

    headers = auth(client, "agent1")
    text = "西一镇农贸市场门口垃圾堆了一个星期没人清运，臭味很大"
    same = [post(client, headers, content=text + tail, street="S21", category_code="01")
            for tail in ("", "。", "，请尽快处理")]  # fmt: skip
    post(client, headers, content="东二街道学校门口接送孩子拥堵", street="S12")
    now = utcnow()
    with db.read() as s:
        groups = duplicate_groups(now - timedelta(hours=1), now + timedelta(minutes=1),
                                  db_session=s)  # fmt: skip
        earlier = duplicate_groups(now - timedelta(days=3), now - timedelta(days=2), db_session=s)
    assert [[t["number"] for t in g] for g in groups] == [[t["number"] for t in same]]
    assert groups[0][0]["street"] == "S21" and earlier == []


def test_the_intake_form_shows_suggestions_as_the_agent_types(
    client: TestClient, db: Database
) -> None:
    earlier = post(client, auth(client, "agent1"), street="S11",
                   content="东一街道幸福小区楼道里燃气味很浓，像是漏气了")  # fmt: skip
    csrf = console_login(client, "agent1")
    before = ticket_count(db)
    r = client.post("/console/intake/suggest", data={
        "csrf_token": csrf, "content": "东一街道幸福小区楼道里燃气味很浓，像是漏气了",
        "address": "东区东一街道幸福小区", "category_code": "0101", "phone": ""})  # fmt: skip
    assert r.status_code == 200, r.text
    assert "东一街道" in r.text and "紧急" in r.text and earlier["number"] in r.text
    assert "城乡建设类直派属地街乡" in r.text
    assert ticket_count(db) == before  # a preview stores nothing
    empty = client.post("/console/intake/suggest", data={"csrf_token": csrf, "content": ""})
    assert "输入诉求内容后" in empty.text
    forged = client.post("/console/intake/suggest", data={"content": "燃气泄漏"})
    assert forged.status_code == 403


def ticket_count(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(Ticket)) or 0
