"""The console's assessment and warnings pages on real history. Both databases."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from conftest import auth
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_auth import Console, app_of

from jiesu.assessment import service as A
from jiesu.assessment.models import Warning
from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.demo.generate import generate
from jiesu.settings import city_tz

TINY_PACK = Path(__file__).parent / "packs" / "tiny"


def test_rankings_drill_down_and_a_units_own_figures(db: Database, client: TestClient) -> None:
    now = utcnow()
    generate(db, days=20, per_day=60, now=now, pack_dir=TINY_PACK, seed=9)
    month = f"{now.astimezone(city_tz()):%Y-%m}"
    supervisor = Console(app_of(client), "supervisor1")
    page = supervisor.get("/console/assessment", params={"period": month, "group": "district"})
    assert page.status_code == 200 and "东区" in page.text and "西区" in page.text
    with db.read() as s:
        ranking = A.rankings(month, "district", db_session=s)
    d1 = next(r for r in ranking.rows if r.code == "D1")
    assert f"{d1.rates['response'].value * 100:.2f}%" in page.text
    drill = supervisor.get("/console/assessment/drill",
                           params={"unit": "D1", "what": "counted", "period": month})  # fmt: skip
    assert drill.status_code == 200 and f"共 {d1.orders} 件" in drill.text
    mine = Console(app_of(client), "s11.admin").get("/console/assessment")
    assert mine.status_code == 200 and "东一街道" in mine.text and "西区" not in mine.text
    other = Console(app_of(client), "s11.admin").get(
        "/console/assessment/drill", params={"unit": "S12", "what": "counted"})  # fmt: skip
    assert other.status_code == 404


def test_a_warning_becomes_a_dispatched_proactive_task(db: Database, client: TestClient) -> None:
    r = client.post("/api/v1/tickets", json={"channel": "phone", "content": "小区楼道灯坏了很久"},
                    headers=auth(client, "agent1"))  # fmt: skip
    ticket = r.json()["id"]
    with db.write() as s:
        unit = A.unit_index(db_session=s).by_code["S11"]
        w = Warning(kind="repeat", key="k1", day=datetime.now(city_tz()).date(),
                    title="同一来电人30天内3次诉求", explanation="30 天内 3 次", area_unit_id=unit.id,
                    evidence=[ticket], status="open")  # fmt: skip
        s.add(w)
        s.flush()
        wid = w.id
    dispatcher = Console(app_of(client), "dispatcher1")
    page = dispatcher.get(f"/console/warnings/{wid}")
    assert page.status_code == 200 and "立主动治理任务" in page.text
    r = dispatcher.post(f"/console/warnings/{wid}/task", data={"lead": "S11", "note": "街道牵头"})
    assert r.status_code == 303
    task = int(re.search(r"/console/tickets/(\d+)", r.headers["location"]).group(1))  # type: ignore[union-attr]
    with db.read() as s:
        w = s.get(Warning, wid)
        assert w is not None and w.status == "task" and w.task_ticket_id == task
    again = dispatcher.post(f"/console/warnings/{wid}/task", data={"lead": "S11"})
    assert again.status_code == 409
    assert "同一来电人" not in dispatcher.get("/console/warnings").text  # no longer open


def test_the_task_page_lists_its_orders_and_links_more(db: Database, client: TestClient) -> None:
    first = client.post("/api/v1/tickets", json={"channel": "phone", "content": "小区楼道灯坏了很久"},
                        headers=auth(client, "agent1")).json()  # fmt: skip
    second = client.post("/api/v1/tickets", json={"channel": "phone", "content": "楼道灯又坏了没人修"},
                         headers=auth(client, "agent1")).json()  # fmt: skip
    with db.write() as s:
        w = Warning(kind="repeat", key="k2", day=datetime.now(city_tz()).date(), title="重复诉求",
                    explanation="30 天内 3 次", evidence=[first["id"]], status="open")  # fmt: skip
        s.add(w)
        s.flush()
        wid = w.id
    dispatcher = Console(app_of(client), "dispatcher1")
    r = dispatcher.post(f"/console/warnings/{wid}/task", data={"lead": "S11"})
    task = r.headers["location"].split("?")[0]
    page = dispatcher.get(task)
    assert "关联工单（1 件" in page.text and first["number"] in page.text
    assert "所属主动治理任务" in dispatcher.get(f"/console/tickets/{first['id']}").text
    r = dispatcher.post(task + "/links", data={"numbers": second["number"]})
    assert r.status_code == 303
    assert "关联工单（2 件" in dispatcher.get(task).text
    bad = dispatcher.post(task + "/links", data={"numbers": "2099010100001"})
    assert bad.status_code == 422


def test_the_api_gives_the_three_rates_table_the_orders_and_the_warnings(
    db: Database, client: TestClient
) -> None:
    now = utcnow()
    generate(db, days=10, per_day=50, now=now, pack_dir=TINY_PACK, seed=12)
    month = f"{now.astimezone(city_tz()):%Y-%m}"
    r = client.get("/api/v1/metrics/units", params={"period": month, "kind": "street"},
                   headers=auth(client, "supervisor1"))  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    with db.read() as s:
        expected = A.rankings(month, "street", db_session=s)
    assert [row["code"] for row in body["rows"]] == [x.code for x in expected.rows]
    first, want = body["rows"][0], expected.rows[0]
    assert first["rates"]["response"]["value"] == want.rates["response"].value
    assert first["rates"]["resolution"]["name"] == "解决率"
    mine = client.get("/api/v1/metrics/units", params={"period": month, "kind": "street"},
                      headers=auth(client, "s11.admin")).json()  # fmt: skip
    assert {row["code"] for row in mine["rows"]} <= {"S11"}
    orders = client.get(f"/api/v1/metrics/units/{want.code}/orders",
                        params={"period": month, "what": "counted", "limit": 5},
                        headers=auth(client, "supervisor1")).json()  # fmt: skip
    assert orders["total"] == want.orders and len(orders["orders"]) == min(5, want.orders)
    assert client.get("/api/v1/metrics/units/S12/orders", params={"period": month},
                      headers=auth(client, "s11.admin")).status_code == 404  # fmt: skip
    assert client.get("/api/v1/metrics/units", params={"period": "2026-13"},
                      headers=auth(client, "supervisor1")).status_code == 422  # fmt: skip
    with db.write() as s:
        s.add(Warning(kind="bounce", key="api", day=now.date(), title="反复退单",
                      explanation="3 次退单", evidence=[1], status="open"))  # fmt: skip
    warnings = client.get("/api/v1/warnings", headers=auth(client, "dispatcher1")).json()
    assert [(w["kind"], w["kind_name"], w["evidence"]) for w in warnings] == [
        ("bounce", "反复退单", [1])]  # fmt: skip
    assert client.get("/api/v1/warnings", headers=auth(client, "s11.handler")).status_code == 403


def test_a_district_sees_its_own_figures_and_its_streets_ranked(
    db: Database, client: TestClient
) -> None:
    from jiesu.auth.passwords import hash_password
    from jiesu.org.models import Unit, User

    now = utcnow()
    generate(db, days=20, per_day=60, now=now, pack_dir=TINY_PACK, seed=9)
    with db.write() as s:
        d1 = s.scalar(select(Unit.id).where(Unit.code == "D1"))
        s.add(User(username="d1.supervisor", name="东区督办", role="supervisor", unit_id=d1,
                   password_hash=hash_password("secret123")))  # fmt: skip
    page = Console(app_of(client), "d1.supervisor").get("/console/assessment")
    assert page.status_code == 200
    assert "东区所辖单位排名" in page.text and "东一街道" in page.text
    assert "西一镇" not in page.text and "西区" not in page.text


def test_exemption_requests_wait_in_the_supervisors_queue(db: Database, client: TestClient) -> None:
    r = client.post("/api/v1/tickets", json={"channel": "phone", "content": "同一诉求反复来电要求赔偿"},
                    headers=auth(client, "agent1"))  # fmt: skip
    t, number = r.json()["id"], r.json()["number"]

    def act(user: str, action: str, **body: object) -> None:
        answer = client.post(f"/api/v1/tickets/{t}/actions/{action}", json=body,
                             headers=auth(client, user))  # fmt: skip
        assert answer.status_code == 200, answer.text

    act("dispatcher1", "dispatch", lead="S11")
    act(
        "s11.admin",
        "request_exemption",
        reason="malicious",
        note="一月内同一诉求来电四十余次，已核实",
    )
    supervisor = Console(app_of(client), "supervisor1")
    queue = supervisor.get("/console/supervision", params={"tab": "exemptions"})
    assert queue.status_code == 200 and number in queue.text
    act("supervisor1", "review_exemption", approved=False, note="理由不充分")
    assert number not in supervisor.get("/console/supervision", params={"tab": "exemptions"}).text
