"""Console pages through the app: sign-in, workbench queues, a ticket's life driven by forms,
and the CSV export (masked, formula-safe)."""

from __future__ import annotations

import csv
import io
import re

from conftest import PASSWORD, auth
from fastapi.testclient import TestClient

TICKETS = "/api/v1/tickets"


def console_login(client: TestClient, username: str) -> str:
    """Sign in through the form; the CSRF token of the signed-in session."""
    client.cookies.clear()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post("/login", data={"username": username, "password": PASSWORD,
                                    "csrf_token": token}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    home = client.get(r.headers["location"])
    return re.search(r'name="csrf-token" content="([^"]+)"', home.text).group(1)  # type: ignore[union-attr]


def new_ticket(client: TestClient, **fields: object) -> dict[str, object]:
    body = {"channel": "phone", "content": "小区门口路灯坏了一个多月", **fields}
    r = client.post(TICKETS, json=body, headers=auth(client, "agent1"))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def act(client: TestClient, csrf: str, ticket_id: object, action: str, **form: str) -> str:
    r = client.post(f"/console/tickets/{ticket_id}/actions/{action}",
                    data={"csrf_token": csrf, **form}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text[:2000]
    return client.get(r.headers["location"]).text


def test_each_role_lands_on_its_workbench(client: TestClient) -> None:
    for user, home in (("agent1", "/console/intake"), ("dispatcher1", "/console/dispatch"),
                       ("s11.handler", "/console/inbox"), ("callback1", "/console/callbacks"),
                       ("supervisor1", "/console/supervision"), ("analyst1", "/console/tickets"),
                       ("admin1", "/console/admin/users")):  # fmt: skip
        client.cookies.clear()
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
        r = client.post("/login", data={"username": user, "password": PASSWORD,
                                        "csrf_token": token.group(1)},  # type: ignore[union-attr]
                        follow_redirects=False)  # fmt: skip
        assert r.headers["location"] == home, user
        page = client.get(home)
        assert page.status_code == 200, (user, page.text[:500])
        assert "<h1>" in page.text


def test_a_ticket_goes_from_dispatch_to_evaluation_through_the_console(client: TestClient) -> None:
    made = new_ticket(client, requester={"name": "张三丰", "phone": "13800138000"})
    csrf = console_login(client, "dispatcher1")
    assert made["number"] in client.get("/console/dispatch").text
    page = act(client, csrf, made["id"], "dispatch", lead="S11 东一街道", version="1")
    assert "已完成：派单" in page and "st-dispatched" in page
    csrf = console_login(client, "s11.handler")
    inbox = client.get("/console/inbox").text
    assert made["number"] in inbox and "data-due" in inbox
    act(client, csrf, made["id"], "accept")
    act(client, csrf, made["id"], "contact", note="已电话联系诉求人")
    page = act(client, csrf, made["id"], "reply", result="solved",
               content="已更换路灯灯泡，现已正常照明")  # fmt: skip
    assert "st-replied" in page
    csrf = console_login(client, "dispatcher1")
    assert made["number"] in client.get("/console/dispatch?tab=audit").text
    act(client, csrf, made["id"], "audit", passed="true")
    csrf = console_login(client, "callback1")
    assert made["number"] in client.get("/console/callbacks").text
    page = act(client, csrf, made["id"], "evaluate", reached="true", solved="true",
               satisfaction="satisfied")  # fmt: skip
    assert "st-evaluated" in page and "已完成：回访评价" in page
    detail = client.get(f"{TICKETS}/{made['id']}", headers=auth(client, "agent1")).json()
    assert [e["action"] for e in detail["events"]] == [
        "receive", "dispatch", "accept", "contact", "reply", "audit", "evaluate"]  # fmt: skip


def test_a_refused_action_shows_the_reason_on_the_page_and_changes_nothing(
    client: TestClient,
) -> None:
    made = new_ticket(client)
    csrf = console_login(client, "dispatcher1")
    r = client.post(f"/console/tickets/{made['id']}/actions/dispatch",
                    data={"csrf_token": csrf, "lead": "NOPE"})  # fmt: skip
    assert r.status_code == 422
    assert "未知的单位" in r.text and "flash-error" in r.text
    assert "/ unknown unit" not in r.text  # the interface shows the Chinese half
    stale = client.post(f"/console/tickets/{made['id']}/actions/dispatch",
                        data={"csrf_token": csrf, "lead": "S11", "version": "99"})  # fmt: skip
    assert stale.status_code == 409 and "刷新" in stale.text


def test_the_export_is_masked_filtered_and_formula_safe(client: TestClient) -> None:
    new_ticket(client, title="=HYPERLINK(\"http://x\")", requester={"name": "张三丰",
               "phone": "13800138000"})  # fmt: skip
    new_ticket(client, content="另一件事情：噪音扰民")
    console_login(client, "agent1")
    r = client.get("/console/exports/tickets.csv", params={"text": "HYPERLINK"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][0] == "工单编号" and len(rows) == 2
    assert rows[1][rows[0].index("标题")].startswith("'=")  # a formula is written as text
    assert "13800138000" not in r.text and "138****8000" in r.text and "张三丰" not in r.text


def test_an_agent_takes_a_call_and_answers_it_from_the_intake_form(client: TestClient) -> None:
    earlier = new_ticket(client, requester={"phone": "13900001111"})
    csrf = console_login(client, "agent1")
    history = client.get("/console/intake/history", params={"phone": "139 0000 1111"}).text
    assert earlier["number"] in history
    r = client.post("/console/intake", data={
        "csrf_token": csrf, "phone": "13900001111", "content": "请问供暖费怎么交？",
        "request_type": "consult", "then": "answer", "answer.answer": "可通过热力公司营业厅或网上缴纳",
    }, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text[:1000]
    page = client.get(r.headers["location"]).text
    assert "st-answered" in page and "已受理，工单已建立" in page


def test_an_intake_error_keeps_what_the_agent_typed(client: TestClient) -> None:
    csrf = console_login(client, "agent1")
    r = client.post("/console/intake", data={"csrf_token": csrf, "phone": "12",
                                             "content": "路灯坏了"})  # fmt: skip
    assert r.status_code == 422
    assert "路灯坏了" in r.text and "来电号码" in r.text


def test_a_unit_admin_manages_the_handlers_of_their_own_unit_only(client: TestClient) -> None:
    from sqlalchemy import select

    from jiesu.org.models import User

    csrf = console_login(client, "s11.admin")
    assert "本单位人员" in client.get("/console/unit/users").text
    r = client.post("/console/unit/users", data={"csrf_token": csrf, "username": "s11.new",
                    "name": "新承办人", "password": "longenough1", "role": "admin",
                    "unit": "S12"}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text[:500]
    db = client.app.state.db  # type: ignore[attr-defined]
    with db.read() as s:
        made = s.scalar(select(User).where(User.username == "s11.new"))
        other = s.scalar(select(User).where(User.username == "s12.handler"))
        me = s.scalar(select(User).where(User.username == "s11.admin"))
        assert made is not None and made.role == "handler"  # the form cannot ask for more
        assert made.unit.code == "S11"
    for target in (other, me):  # another unit's handler; a fellow unit admin
        r = client.post(f"/console/unit/users/{target.id}", data={  # type: ignore[union-attr]
            "csrf_token": csrf, "username": "x", "name": "改名", "active": "on"})  # fmt: skip
        assert r.status_code == 404, target.username  # type: ignore[union-attr]
    r = client.post(f"/console/unit/users/{made.id}",
                    data={"csrf_token": csrf, "username": made.username, "name": "新承办人"},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303  # disabled: "active" not sent
    with db.read() as s:
        assert s.get(User, made.id).active is False  # type: ignore[union-attr]
    console_login(client, "s11.handler")
    assert client.get("/console/unit/users").status_code == 403
