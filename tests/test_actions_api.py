"""POST /api/v1/tickets/{id}/actions/{action}: the lifecycle through the API, on both databases."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from conftest import auth
from fastapi.testclient import TestClient
from sqlalchemy import select

from jiesu.auth.service import principal_of
from jiesu.db.engine import Database
from jiesu.errors import DomainError
from jiesu.org.models import Unit, User
from jiesu.portal.service import progress_of
from jiesu.tickets.actions import take_action
from jiesu.tickets.models import Assignment, Event, Job, Outbox, Ticket

TICKETS = "/api/v1/tickets"


class Desk:
    """The tiny city's people, signed in once per test."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.headers: dict[str, dict[str, str]] = {}

    def __call__(self, username: str, ticket: int, action: str, **body: Any) -> Any:
        if username not in self.headers:
            self.headers[username] = auth(self.client, username)
        return self.client.post(
            f"{TICKETS}/{ticket}/actions/{action}", json=body, headers=self.headers[username]
        )

    def ok(self, username: str, ticket: int, action: str, **body: Any) -> dict[str, Any]:
        r = self(username, ticket, action, **body)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def new(self, content: str = "小区楼道灯坏了一个月没人修，请尽快处理", **fields: Any) -> int:
        r = self.client.post(
            TICKETS,
            json={"channel": "phone", "content": content, **fields},
            headers=auth(self.client, "agent1"),
        )
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


@pytest.fixture
def desk(client: TestClient) -> Desk:
    return Desk(client)


def handled_by_s11(desk: Desk) -> int:
    t = desk.new()
    desk.ok("dispatcher1", t, "dispatch", lead="S11")
    desk.ok("s11.handler", t, "accept")
    desk.ok("s11.handler", t, "contact", note="已电话联系诉求人")
    return t


def test_the_main_path_from_dispatch_to_close(desk: Desk) -> None:
    t = desk.new()
    body = desk.ok("dispatcher1", t, "dispatch", lead="S11")
    assert body["status"] == "dispatched" and body["lead_unit"]["code"] == "S11"
    assert desk.ok("s11.handler", t, "accept")["status"] == "accepted"
    desk.ok("s11.handler", t, "contact", note="已电话联系诉求人")
    body = desk.ok("s11.handler", t, "reply", result="solved", content="已更换楼道灯并回访确认")
    assert body["status"] == "replied" and body["result"] == "solved"
    assert desk.ok("dispatcher1", t, "audit", passed=True)["status"] == "audited"
    body = desk.ok("callback1", t, "evaluate", reached=True, solved=True, satisfaction="satisfied")
    assert (body["status"], body["solved"], body["satisfaction"]) == (
        "evaluated",
        True,
        "satisfied",
    )
    body = desk.ok("callback1", t, "close")
    assert body["status"] == "closed" and body["closed_at"]
    actions = [e["action"] for e in body["events"]]
    assert actions == [
        "receive",
        "dispatch",
        "accept",
        "contact",
        "reply",
        "audit",
        "evaluate",
        "close",
    ]
    assert [e["seq"] for e in body["events"]] == list(range(1, 9))
    lead = body["assignments"][0]
    assert (
        lead["unit"]["code"] == "S11"
        and lead["accepted_at"]
        and lead["contacted_at"]
        and lead["replied_at"]
    )
    assert body["version"] == 8


def test_an_action_in_the_wrong_state_is_409_saying_why(desk: Desk) -> None:
    t = desk.new()
    r = desk("dispatcher1", t, "audit", passed=True)
    assert r.status_code == 409
    assert "已受理" in r.json()["message"] and "已办结反馈" in r.json()["message"]


def test_an_action_the_role_may_not_take_is_403(desk: Desk) -> None:
    t = desk.new()
    assert desk("callback1", t, "dispatch", lead="S11").status_code == 403


def test_a_unit_outside_the_ticket_cannot_see_it_and_a_co_handler_cannot_lead(desk: Desk) -> None:
    t = desk.new()
    desk.ok("dispatcher1", t, "dispatch", lead="S11", co_handlers=["S12"])
    assert (
        desk("heat.handler", t, "accept").status_code == 404
    )  # not its ticket: ids cannot be probed
    assert (
        desk.ok("s12.handler", t, "accept")["status"] == "dispatched"
    )  # a co-handler signs its part
    assert desk("s12.handler", t, "request_return", reason="不属于本辖区").status_code == 403


def test_a_missing_or_bad_field_is_422_naming_it(desk: Desk) -> None:
    t = desk.new()
    r = desk("dispatcher1", t, "dispatch")
    assert r.status_code == 422 and r.json()["field"] == "lead"
    r = desk("dispatcher1", t, "dispatch", lead="NOPE")
    assert r.status_code == 422 and r.json()["field"] == "lead"
    r = desk("dispatcher1", t, "dispatch", lead="S11", co_handlers=["S11"])
    assert r.status_code == 422


def test_an_unknown_action_is_404(desk: Desk) -> None:
    assert desk("dispatcher1", desk.new(), "teleport").status_code == 404


def test_a_stale_version_is_409_and_the_current_one_passes(desk: Desk, client: TestClient) -> None:
    t = desk.new()
    assert desk("dispatcher1", t, "dispatch", lead="S11", version=7).status_code == 409
    headers = {**auth(client, "dispatcher1"), "If-Match": '"9"'}
    r = client.post(f"{TICKETS}/{t}/actions/dispatch", json={"lead": "S11"}, headers=headers)
    assert r.status_code == 409
    assert desk("dispatcher1", t, "dispatch", lead="S11", version=1).status_code == 200


def test_a_unit_signs_only_once(desk: Desk) -> None:
    t = desk.new()
    desk.ok("dispatcher1", t, "dispatch", lead="S11")
    desk.ok("s11.handler", t, "accept")
    assert desk("s11.admin", t, "accept").status_code == 409


def test_return_approved_goes_back_to_pending_dispatch_and_is_redispatched(desk: Desk) -> None:
    t = desk.new()
    desk.ok("dispatcher1", t, "dispatch", lead="S11")
    desk.ok("s11.handler", t, "request_return", reason="诉求地点不在本辖区")
    assert desk("s11.handler", t, "request_return", reason="再次申请退单").status_code == 409
    body = desk.ok("dispatcher1", t, "review_return", approved=True)
    assert body["status"] == "pending_dispatch" and body["lead_unit"] is None
    desk.ok("dispatcher1", t, "dispatch", lead="S12")
    assert desk("s11.handler", t, "accept").status_code == 403  # its part has ended
    assert desk.ok("s12.handler", t, "accept")["status"] == "accepted"


def test_return_rejected_leaves_the_ticket_with_the_unit(desk: Desk) -> None:
    t = desk.new()
    desk.ok("dispatcher1", t, "dispatch", lead="S11")
    desk.ok("s11.handler", t, "accept")
    desk.ok("s11.handler", t, "request_return", reason="不属于本单位职责")
    body = desk.ok("dispatcher1", t, "review_return", approved=False, note="属街道属地管理职责")
    assert body["status"] == "accepted" and body["lead_unit"]["code"] == "S11"


def test_reply_waits_for_contact_suspension_and_summoned_units(desk: Desk) -> None:
    t = desk.new()
    desk.ok("dispatcher1", t, "dispatch", lead="S11")
    desk.ok("s11.handler", t, "accept")
    reply = {"result": "solved", "content": "已协调热力集团完成维修"}
    assert desk("s11.handler", t, "reply", **reply).status_code == 409  # no contact yet
    desk.ok("s11.handler", t, "contact", note="已电话联系诉求人")
    desk.ok("s11.admin", t, "whistle", units=["C-RL"], note="需热力集团到场维修")
    r = desk("s11.handler", t, "reply", **reply)
    assert r.status_code == 409 and "C-RL" in r.json()["message"]
    desk.ok("heat.handler", t, "report", note="已派维修班组到场")
    assert desk("heat.handler", t, "report", note="再次报到").status_code == 403
    desk.ok("s11.handler", t, "suspend", reason="等待诉求人在家")
    assert desk("s11.handler", t, "reply", **reply).status_code == 409
    desk.ok("s11.handler", t, "resume")
    assert desk.ok("s11.handler", t, "reply", **reply)["status"] == "replied"


def test_a_poor_reply_goes_back_to_the_unit(desk: Desk) -> None:
    t = handled_by_s11(desk)
    desk.ok("s11.handler", t, "reply", result="solved", content="已处理完毕已处理完毕")
    body = desk.ok("dispatcher1", t, "audit", passed=False, note="未说明处理过程")
    assert body["status"] == "accepted" and body["result"] is None


def test_three_reopens_then_the_ticket_is_escalated_to_the_district(desk: Desk) -> None:
    t = handled_by_s11(desk)
    for round_ in (1, 2, 3):
        desk.ok(
            "s11.handler", t, "reply", result="partly_solved", content="已部分处理，剩余问题协调中"
        )
        desk.ok("dispatcher1", t, "audit", passed=True)
        desk.ok("callback1", t, "evaluate", reached=True, solved=False, satisfaction="dissatisfied")
        body = desk.ok("callback1", t, "reopen", note="诉求人反映仍未解决")
        assert body["round"] == round_ + 1
        if round_ < 3:
            assert body["lead_unit"]["code"] == "S11"
            desk.ok("s11.handler", t, "accept")
            desk.ok("s11.handler", t, "contact", note="再次联系诉求人")
    assert body["lead_unit"]["code"] == "D1"
    assert body["events"][-1]["action"] == "escalate" and body["events"][-1]["actor"] is None


def test_escalate_names_the_level_above_and_ends_the_streets_part(desk: Desk) -> None:
    t = handled_by_s11(desk)
    body = desk.ok("s11.admin", t, "escalate", reason="涉及跨街道管线改造，超出街道事权")
    assert body["lead_unit"]["code"] == "D1" and body["status"] == "dispatched"
    ended = [a for a in body["assignments"] if a["unit"]["code"] == "S11"]
    assert ended[0]["end_reason"] == "escalated" and not ended[0]["active"]


def test_supervisors_urge_and_supervise(desk: Desk) -> None:
    t = handled_by_s11(desk)
    desk.ok("supervisor1", t, "urge", note="请加快办理进度")
    body = desk.ok("supervisor1", t, "supervise", note="列为督办件")
    assert [e["action"] for e in body["events"]][-2:] == ["urge", "supervise"]
    assert desk("s11.handler", t, "urge", note="自己催自己").status_code == 403


def test_a_merged_repeat_closes_with_its_master(desk: Desk, client: TestClient) -> None:
    master = desk.new()
    repeat = desk.new("同一小区楼道灯坏了，另一位居民也在反映")
    number = client.get(f"{TICKETS}/{master}", headers=auth(client, "agent1")).json()["number"]
    assert desk.ok("agent1", repeat, "merge", master=number)["status"] == "merged"
    desk.ok("agent1", master, "answer", answer="已告知物业维修电话及报修流程")
    desk.ok("agent1", master, "close")
    body = client.get(f"{TICKETS}/{repeat}", headers=auth(client, "agent1")).json()
    assert body["status"] == "closed" and body["events"][-1]["data"]["master"] == number


def test_answer_transfer_and_reject_end_at_intake(desk: Desk) -> None:
    a, b, c = desk.new(), desk.new(), desk.new()
    assert (
        desk.ok("agent1", a, "answer", answer="供暖季为每年11月15日至次年3月15日")["status"]
        == "answered"
    )
    assert desk.ok("agent1", b, "transfer", to="119")["status"] == "transferred"
    r = desk("agent1", c, "reject", reason="litigation")
    assert r.status_code == 422 and r.json()["field"] == "channel_advice"
    assert (
        desk.ok("agent1", c, "reject", reason="litigation", channel_advice="请向人民法院提起诉讼")[
            "status"
        ]
        == "rejected"
    )


def test_two_simultaneous_accepts_one_wins_the_other_is_refused(db: Database, desk: Desk) -> None:
    t = desk.new()
    desk.ok("dispatcher1", t, "dispatch", lead="S11", co_handlers=["S12"])
    with db.read() as s:
        people = {
            name: principal_of(user, unit)
            for name, user, unit in (
                (u.username, u, un)
                for u, un in s.execute(select(User, Unit).join(Unit, Unit.id == User.unit_id))
            )
        }
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def accept(username: str) -> None:
        barrier.wait()
        try:
            with db.write() as s:
                take_action(t, "accept", {}, actor=people[username], db_session=s)
            outcomes.append("ok")
        except DomainError as exc:
            outcomes.append(f"refused {exc.status}")
        except Exception as exc:  # the version check: what the API answers as 409
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=accept, args=(u,)) for u in ("s11.handler", "s11.admin")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert outcomes.count("ok") == 1, outcomes
    assert next(o for o in outcomes if o != "ok") in ("refused 409", "StaleDataError"), outcomes
    with db.read() as s:
        accepted = s.scalars(
            select(Assignment.accepted_at).where(
                Assignment.ticket_id == t, Assignment.role == "lead"
            )
        ).all()
    assert len(accepted) == 1 and accepted[0] is not None


def _outbox(db: Database, ticket: int) -> list[tuple[str, str | None, str]]:
    with db.read() as s:
        rows = s.execute(
            select(Outbox.recipient, Unit.code, Event.action)
            .join(Event, Event.id == Outbox.event_id)
            .outerjoin(Unit, Unit.id == Outbox.unit_id)
            .where(Outbox.ticket_id == ticket)
            .order_by(Outbox.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_each_notice_is_written_with_its_event(db: Database, desk: Desk) -> None:
    t = desk.new(requester={"name": "张三", "phone": "13800138000"})
    assert _outbox(db, t) == [("requester", None, "receive")]  # the acknowledgement
    desk.ok("dispatcher1", t, "dispatch", lead="S11", co_handlers=["S12"])
    desk.ok("s11.handler", t, "accept")
    desk.ok("s11.handler", t, "contact", note="已电话联系诉求人")
    desk.ok("s11.admin", t, "whistle", units=["C-RL"], note="需热力集团到场维修")
    desk.ok("s11.handler", t, "request_return", reason="应由热力集团主办")
    assert _outbox(db, t)[1:] == [
        ("unit", "S11", "dispatch"),
        ("unit", "S12", "dispatch"),
        ("summoned", "C-RL", "whistle"),
        ("centre", "C-RX", "request_return"),
    ]
    with db.read() as s:
        payload = s.scalars(select(Outbox.payload).where(Outbox.ticket_id == t)).first()
    assert (
        payload is not None and payload["phone"] == "13800138000" and "受理" in payload["message"]
    )


def test_a_refused_action_writes_nothing(db: Database, desk: Desk) -> None:
    t = desk.new()
    before = _outbox(db, t)
    assert desk("dispatcher1", t, "dispatch", lead="NOPE").status_code == 422
    assert desk("dispatcher1", t, "audit", passed=True).status_code == 409
    assert _outbox(db, t) == before
    with db.read() as s:
        assert s.scalars(select(Event.action).where(Event.ticket_id == t)).all() == ["receive"]


def test_dispatch_starts_the_three_phase_limits_and_sets_the_due(desk: Desk) -> None:
    t = desk.new(category_code="0301")  # 供暖: tier T24h in the tiny city
    body = desk.ok("dispatcher1", t, "dispatch", lead="C-RL")
    phases = {d["phase"]: d for d in body["deadlines"]}
    assert [d["phase"] for d in body["deadlines"]] == ["accept", "contact", "complete"]
    assert (phases["accept"]["limit"], phases["contact"]["limit"], phases["complete"]["limit"]) == (
        "2wh", "24h", "24h",
    )  # fmt: skip
    start = datetime.fromisoformat(phases["complete"]["start"])
    assert datetime.fromisoformat(phases["complete"]["due"]) - start == timedelta(hours=24)
    assert body["due_at"] == phases["complete"]["due"]
    assert not any(d["overdue"] or d["paused"] for d in body["deadlines"])
    body = desk.ok("heat.handler", t, "accept")
    assert {d["phase"]: d for d in body["deadlines"]}["accept"]["met_at"]


def test_a_suspended_ticket_shows_its_limits_paused(desk: Desk) -> None:
    t = handled_by_s11(desk)
    body = desk.ok("s11.handler", t, "suspend", reason="等待诉求人在家")
    complete = {d["phase"]: d for d in body["deadlines"]}["complete"]
    assert complete["paused"] and complete["due"] is None and body["due_at"] is None
    body = desk.ok("s11.handler", t, "resume")
    assert {d["phase"]: d for d in body["deadlines"]}["complete"]["due"] and body["due_at"]


def test_an_approved_extension_moves_the_due(desk: Desk) -> None:
    t = handled_by_s11(desk)
    before = datetime.fromisoformat(
        desk.client.get(f"{TICKETS}/{t}", headers=auth(desk.client, "dispatcher1")).json()["due_at"]
    )
    desk.ok("s11.handler", t, "request_extension", days=3, reason="需等待施工条件")
    body = desk.ok("dispatcher1", t, "review_extension", approved=True, days=3)
    after = datetime.fromisoformat(body["due_at"])
    assert timedelta(days=3) <= after - before <= timedelta(days=9)  # 3 working days


def test_an_extension_approved_without_days_grants_the_days_asked(desk: Desk) -> None:
    t = handled_by_s11(desk)
    desk.ok("s11.handler", t, "request_extension", days=5, reason="需第三方检测鉴定")
    body = desk.ok("dispatcher1", t, "review_extension", approved=True)
    assert body["events"][-1]["data"]["days"] == 5


def test_the_masters_answer_reaches_every_merged_requester(
    db: Database, desk: Desk, client: TestClient
) -> None:
    master = desk.new(requester={"phone": "13800138001"})
    repeat = desk.new("同一路段井盖丢失，另一位市民反映", requester={"phone": "13900139002"})
    number = client.get(f"{TICKETS}/{master}", headers=auth(client, "agent1")).json()["number"]
    desk.ok("agent1", repeat, "merge", master=number)
    desk.ok("agent1", master, "answer", answer="已通知道路养护单位补装井盖")
    desk.ok("agent1", master, "close")
    with db.read() as s:
        sent = {
            p["phone"]: p
            for p in s.scalars(select(Outbox.payload).where(Outbox.recipient == "requester"))
            if p["action"] == "close"
        }
    assert sent["13900139002"]["reply"] == "已通知道路养护单位补装井盖"
    assert sent["13900139002"]["reply_from"] == number
    assert sent["13800138001"]["reply"] == "已通知道路养护单位补装井盖"


def test_a_missing_document_promise_is_tracked_until_kept(db: Database, desk: Desk) -> None:
    t = desk.new()
    desk.ok("agent1", t, "accept_with_missing", missing="房产证复印件", promised_days=3)
    assert (
        desk("agent1", t, "accept_with_missing", missing="身份证", promised_days=3).status_code
        == 409
    )
    with db.read() as s:
        (job,) = s.scalars(select(Job).where(Job.ticket_id == t, Job.kind == "promise")).all()
        assert job.status == "pending"
    body = desk.ok("agent1", t, "fulfil_missing", note="材料已补交")
    assert body["events"][-1]["action"] == "fulfil_missing"
    assert desk("agent1", t, "fulfil_missing").status_code == 409


def test_the_window_records_its_cause_and_earlier_orders_and_misconduct_reaches_discipline(
    db: Database, desk: Desk, client: TestClient
) -> None:
    earlier = desk.new()
    number = client.get(f"{TICKETS}/{earlier}", headers=auth(client, "agent1")).json()["number"]
    headers = auth(client, "agent1")
    body = {"channel": "window", "content": "办理营业执照多次被要求送礼，至今未办成"}
    r = client.post(TICKETS, json=body, headers=headers)
    assert r.status_code == 422  # the window needs its cause
    r = client.post(
        TICKETS,
        json={**body, "window": {"cause": "misconduct", "earlier": ["2020010199999"]}},
        headers=headers,
    )
    assert r.status_code == 422 and r.json()["field"] == "window.earlier"
    r = client.post(
        TICKETS,
        json={"channel": "phone", "content": "路灯不亮", "window": {"cause": "policy"}},
        headers=headers,
    )
    assert r.status_code == 422
    r = client.post(
        TICKETS,
        json={**body, "window": {"cause": "misconduct", "earlier": [number]}},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    detail = client.get(f"{TICKETS}/{r.json()['id']}", headers=headers).json()
    received = detail["events"][0]["data"]
    assert received["window_cause"] == "misconduct" and received["earlier"] == [
        {"number": number, "id": earlier}
    ]
    with db.read() as s:
        told = s.execute(
            select(Outbox.recipient, Unit.code)
            .join(Unit, Unit.id == Outbox.unit_id)
            .where(Outbox.ticket_id == r.json()["id"])
        ).all()
    assert [tuple(x) for x in told] == [("discipline", "C-JW")]


def test_a_recategorised_ticket_gets_recomputed_limits(desk: Desk) -> None:
    t = desk.new(category_code="010101")  # 物业服务: T7d
    body = desk.ok("dispatcher1", t, "dispatch", lead="S11")
    complete = {d["phase"]: d for d in body["deadlines"]}["complete"]
    assert (body["tier"], complete["limit"]) == ("T7d", "7wd")
    body = desk.ok("dispatcher1", t, "recategorize", category="0102")  # 房屋安全: T2h
    complete = {d["phase"]: d for d in body["deadlines"]}["complete"]
    assert (body["tier"], complete["limit"], body["category"]["code"]) == ("T2h", "2h", "0102")
    start = datetime.fromisoformat(complete["start"])
    assert datetime.fromisoformat(body["due_at"]) - start == timedelta(hours=2)
    assert body["events"][-1]["data"] == {
        "category": "0102",
        "from": "010101",
        "tier_from": "T7d",
        "tier": "T2h",
    }
    r = desk("dispatcher1", t, "recategorize", category="99")
    assert r.status_code == 422 and r.json()["field"] == "category"


# ---- issue 13 §3: conditional fields, orders that must not get stuck, chains, nonsense ------


def test_a_field_another_field_makes_required_is_422_naming_it(desk: Desk) -> None:
    t = handled_by_s11(desk)
    content = "经核实超出现行政策规定范围，已向诉求人解释"
    r = desk("s11.handler", t, "reply", result="not_solvable", content=content)
    assert r.status_code == 422 and r.json()["field"] == "reason"
    r = desk("s11.handler", t, "reply", result="solved", reason="policy", content=content)
    assert r.status_code == 422 and r.json()["field"] == "reason" and "矛盾" in r.json()["message"]
    desk.ok("s11.handler", t, "reply", result="solved", content="已更换楼道灯并回访确认")
    r = desk("dispatcher1", t, "audit", passed=False)
    assert r.status_code == 422 and r.json()["field"] == "note"
    desk.ok("dispatcher1", t, "audit", passed=True)
    r = desk("callback1", t, "evaluate", reached=True, solved=True)
    assert r.status_code == 422 and r.json()["field"] == "satisfaction"
    assert desk.ok("callback1", t, "evaluate", reached=False)["status"] == "evaluated"


def _handlers(db: Database, codes: list[str]) -> None:
    """A handler `h.<code>` in each unit (the tiny city has handlers in a few units only)."""
    with db.write() as s:
        password = s.scalar(select(User.password_hash).where(User.username == "s11.handler"))
        units = dict(s.execute(select(Unit.code, Unit.id).where(Unit.code.in_(codes))).all())
        for code in codes:
            s.add(User(username=f"h.{code}", name="承办人", role="handler", unit_id=units[code],
                       password_hash=password, active=True))  # fmt: skip


def _unhappy_round(desk: Desk, t: int, handler: str) -> dict[str, Any]:
    desk.ok(handler, t, "accept")
    desk.ok(handler, t, "contact", note="已电话联系诉求人")
    desk.ok(handler, t, "reply", result="partly_solved", content="已部分处理，剩余问题协调中")
    desk.ok("dispatcher1", t, "audit", passed=True)
    desk.ok("callback1", t, "evaluate", reached=True, solved=False, satisfaction="dissatisfied")
    return desk.ok("callback1", t, "reopen", note="诉求人反映仍未解决")


@pytest.mark.parametrize(
    ("lead", "above"),
    [
        ("S11", "D1"),  # street → its district
        ("M11", "S11"),  # community → its street
        ("D1-JW", "D1"),  # a district's department → the district
        ("D1", "C-JW"),  # a district: the level above is the city → the pack's escalation unit
        ("C-ZJW", "C-JW"),  # a city department
        ("C-RL", "C-JW"),  # a city company
        ("C-JW", "C-JW"),  # the escalation unit itself keeps it: nothing is above
    ],
)
def test_after_round_three_every_kind_of_unit_reopens_to_somewhere_valid(
    db: Database, desk: Desk, lead: str, above: str
) -> None:
    _handlers(db, sorted({lead, above}))
    t = desk.new()
    desk.ok("dispatcher1", t, "dispatch", lead=lead)
    for round_ in (2, 3):
        body = _unhappy_round(desk, t, f"h.{lead}")
        assert body["round"] == round_ and body["lead_unit"]["code"] == lead
    body = _unhappy_round(desk, t, f"h.{lead}")  # the third round's reopen
    assert body["round"] == 4 and body["status"] == "dispatched"
    assert body["lead_unit"]["code"] == above
    last = body["events"][-1]
    if above != lead:
        assert last["action"] == "escalate" and last["data"] == {"from": lead, "to": above}
    else:
        assert last["action"] == "reopen"
    # Not stuck: the unit now leading signs and handles it.
    assert desk.ok(f"h.{above}", t, "accept")["status"] == "accepted"


def test_the_service_centre_is_never_sent_an_order_to_handle(desk: Desk) -> None:
    t = desk.new()
    r = desk("dispatcher1", t, "dispatch", lead="C-RX")
    assert (
        r.status_code == 422 and r.json()["field"] == "lead" and "热线中心" in r.json()["message"]
    )
    r = desk("dispatcher1", t, "dispatch", lead="S11", co_handlers=["C-RX"])
    assert r.status_code == 422 and r.json()["field"] == "co_handlers"
    t = handled_by_s11(desk)
    r = desk("s11.admin", t, "whistle", units=["C-RX"], note="请热线中心到场")
    assert r.status_code == 422 and r.json()["field"] == "units"
    r = desk("supervisor1", t, "escalate", to="C-RX", reason="超出街道事权")
    assert r.status_code == 422 and r.json()["field"] == "to"


def test_escalating_down_or_sideways_is_refused_and_up_is_allowed(desk: Desk) -> None:
    district = desk.new()
    desk.ok("dispatcher1", district, "dispatch", lead="D1")
    r = desk("supervisor1", district, "escalate", to="S11", reason="请街道负责处理")
    assert r.status_code == 422 and r.json()["field"] == "to" and "提级" in r.json()["message"]
    street = handled_by_s11(desk)
    r = desk("supervisor1", street, "escalate", to="S12", reason="请东二街道处理")
    assert r.status_code == 422 and r.json()["field"] == "to"
    body = desk.ok("supervisor1", street, "escalate", to="C-ZJW", reason="涉及全市住房政策")
    assert body["lead_unit"]["code"] == "C-ZJW"
    # Nothing named: the level above a city department is the pack's escalation unit, …
    body = desk.ok("supervisor1", street, "escalate", reason="市住建委协调未果，提请督办")
    assert body["lead_unit"]["code"] == "C-JW"
    # … and above that unit there is nothing: the unit must be named.
    r = desk("supervisor1", street, "escalate", reason="再次提级")
    assert r.status_code == 422 and r.json()["field"] == "to"


def test_escalating_a_returned_order_needs_the_unit_named(desk: Desk, client: TestClient) -> None:
    t = desk.new()
    desk.ok("dispatcher1", t, "dispatch", lead="S11")
    desk.ok("s11.handler", t, "request_return", reason="诉求地点不在本辖区")
    desk.ok("dispatcher1", t, "review_return", approved=True)
    r = desk("supervisor1", t, "escalate", reason="跨区问题，需区级处理")
    assert r.status_code == 422 and r.json()["field"] == "to"
    body = client.get(f"{TICKETS}/{t}", headers=auth(client, "agent1")).json()
    assert body["status"] == "pending_dispatch" and body["lead_unit"] is None
    body = desk.ok("supervisor1", t, "escalate", to="D2", reason="跨区问题，需区级处理")
    assert body["lead_unit"]["code"] == "D2" and body["status"] == "dispatched"


def test_a_solved_and_satisfied_order_is_reopened_only_by_a_supervisor_with_a_reason(
    desk: Desk,
) -> None:
    t = handled_by_s11(desk)
    desk.ok("s11.handler", t, "reply", result="solved", content="已更换楼道灯并回访确认")
    desk.ok("dispatcher1", t, "audit", passed=True)
    desk.ok("callback1", t, "evaluate", reached=True, solved=True, satisfaction="satisfied")
    r = desk("callback1", t, "reopen", note="诉求人又来电")
    assert r.status_code == 422 and r.json()["field"] == "reason"
    r = desk("callback1", t, "reopen", note="诉求人又来电", reason="诉求人称灯又坏了")
    assert r.status_code == 409 and "督办员" in r.json()["message"]
    body = desk.ok("supervisor1", t, "reopen", note="督办复核", reason="现场复核发现灯又坏了")
    assert body["round"] == 2 and body["lead_unit"]["code"] == "S11"
    assert body["events"][-1]["data"]["reason"] == "现场复核发现灯又坏了"


def test_a_merge_chain_attaches_to_its_root_and_closes_with_it(
    db: Database, desk: Desk, client: TestClient
) -> None:
    def number(t: int) -> str:
        return str(client.get(f"{TICKETS}/{t}", headers=auth(client, "agent1")).json()["number"])

    m3 = desk.new("某路口红绿灯坏了，车辆通行混乱", requester={"phone": "13800138003"})
    m2 = desk.new("某路口红绿灯不亮，另一位市民反映", requester={"phone": "13800138002"})
    r2 = desk.new("路口信号灯坏了好几天了没人修", requester={"phone": "13800138012"})
    r1 = desk.new("路口红绿灯坏了，第四位市民反映", requester={"phone": "13800138011"})
    desk.ok("agent1", r2, "merge", master=number(m2))  # R2 → M2 …
    desk.ok("agent1", m2, "merge", master=number(m3))  # … → M3: the chain of the issue
    # Merging into a merged order attaches to the root master.
    body = desk.ok("agent1", r1, "merge", master=number(m2))
    merge = body["events"][-1]["data"]
    assert (merge["master"], merge["via"], merge["master_id"]) == (number(m3), number(m2), m3)
    # An order cannot be merged into its own repeat.
    r = desk("agent1", m3, "merge", master=number(r2))
    assert r.status_code == 422 and r.json()["field"] == "master"

    desk.ok("agent1", m3, "answer", answer="已通知交管部门维修信号灯")
    body = desk.ok("agent1", m3, "close")
    assert body["events"][-1]["data"]["merged_closed"] == 3
    for repeat, via in ((m2, None), (r1, None), (r2, number(m2))):
        body = client.get(f"{TICKETS}/{repeat}", headers=auth(client, "agent1")).json()
        assert body["status"] == "closed" and body["closed_at"], repeat
        close = body["events"][-1]
        assert close["action"] == "close" and close["data"]["master"] == number(m3)
        assert close["data"].get("via") == via
    with db.read() as s:
        replies = {
            p["phone"]: p["reply"]
            for p in s.scalars(select(Outbox.payload).where(Outbox.recipient == "requester"))
            if p["action"] == "close"
        }
    assert replies == dict.fromkeys(
        ("13800138003", "13800138002", "13800138012", "13800138011"), "已通知交管部门维修信号灯"
    )
    # The portal shows each of them the root's answer, however deep it was merged.
    with db.read() as s:
        for repeat in (m2, r1, r2):
            view = progress_of(s.get_one(Ticket, repeat), db_session=s)
            assert view.answer == "已通知交管部门维修信号灯", repeat
    # Merging into a closed order (the chain closed with its root) is refused.
    late = desk.new("红绿灯的问题，第五位市民反映")
    r = desk("agent1", late, "merge", master=number(m2))
    assert r.status_code == 409 and "已关闭" in r.json()["message"]
