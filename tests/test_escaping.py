"""Whatever a user typed is shown escaped on every console page, never run.

`stage` is one tiny city per backend (module scope) where both payloads below were planted in
every text a person can type: a ticket's title, content, address and requester name (through
the API), the text fields of the actions of a ticket's life (note, reason, missing documents,
the answer, the reply's content, the legal channel advice), a user's display name and a unit's
name (through the admin pages), a system token's purpose, a calendar note and a username tried
at sign-in (which the audit log keeps). Each planted text starts with a short tag naming where
it was planted, so a page can be checked for the escaped form of exactly that text.

Then every page that shows them is fetched and must carry none of the raw markup, and must carry
the escaped form (`&lt;script&gt;…`) of what it shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from conftest import BACKENDS, Templates, auth, tiny_city
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import select
from test_auth import Console, app_of, is_html

from jiesu.console.service import queues
from jiesu.db.engine import Database
from jiesu.org.models import Unit, User

TICKETS = "/api/v1/tickets"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
RAW_MARKERS = (SCRIPT, IMG, "<script>alert", "<img src=x", "onerror=alert(1)>")


def planted(tag: str) -> str:
    """What was typed into the field `tag` names: both payloads after the tag."""
    return f"{tag}{SCRIPT}{IMG}"


def escaped(tag: str) -> str:
    return str(escape(planted(tag)))


def test_the_escaped_form_is_what_the_brief_expects() -> None:
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in escaped("标题")
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in escaped("标题")
    assert escaped("标题").startswith("标题&lt;script&gt;")


# ---- the stage -------------------------------------------------------------------------------


@dataclass
class Stage:
    client: TestClient
    db: Database
    tickets: dict[str, int] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    browsers: dict[str, Console] = field(default_factory=dict)

    def api(self, username: str) -> dict[str, str]:
        if username not in self.headers:
            self.headers[username] = auth(self.client, username)
        return self.headers[username]

    def console(self, username: str) -> Console:
        if username not in self.browsers:
            self.browsers[username] = Console(app_of(self.client), username)
        return self.browsers[username]

    def create(self, tag: str, **fields: Any) -> int:
        body = {"channel": "phone", "content": planted(f"{tag}内容"), "title": planted(tag)}
        body.update(fields)
        r = self.client.post(TICKETS, json=body, headers=self.api("agent1"))
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def act(self, username: str, ticket: str, action: str, **body: Any) -> dict[str, Any]:
        url = f"{TICKETS}/{self.tickets[ticket]}/actions/{action}"
        r = self.client.post(url, json=body, headers=self.api(username))
        assert r.status_code == 200, (action, r.text)
        return dict(r.json())

    def number(self, ticket: str) -> str:
        r = self.client.get(f"{TICKETS}/{self.tickets[ticket]}", headers=self.api("agent1"))
        return str(r.json()["number"])


def _id_of(db: Database, model: Any, **where: str) -> int:
    with db.read() as s:
        stmt = select(model.id)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        found = s.scalar(stmt)
    assert found is not None, where
    return int(found)


def _plant_in_admin_pages(stage: Stage) -> None:
    """A unit's name, a user's name, a token's purpose, a calendar note (through the pages) and
    a username tried at sign-in (through the API: the audit log keeps it)."""
    admin = stage.console("admin1")
    s11 = _id_of(stage.db, Unit, code="S11")
    r = admin.post(
        f"/console/admin/units/{s11}",
        {"name": planted("单位"), "short_name": "东一", "active": "on"},
    )
    assert r.status_code == 303, r.text[:500]
    handler = _id_of(stage.db, User, username="s11.handler")
    r = admin.post(
        f"/console/admin/users/{handler}",
        {
            "username": "s11.handler",
            "name": planted("姓名"),
            "role": "handler",
            "unit": "S11",
            "active": "on",
        },
    )
    assert r.status_code == 303, r.text[:500]
    r = admin.post("/console/admin/tokens", {"username": "agent1", "name": planted("用途")})
    assert r.status_code == 201, r.text[:500]
    r = admin.post(
        "/console/admin/calendar", {"day": "2027-10-09", "kind": "workday", "note": planted("假日")}
    )
    assert r.status_code == 303, r.text[:500]
    r = stage.client.post(
        "/api/v1/auth/token", json={"username": planted("用户"), "password": "wrong-password"}
    )
    assert r.status_code == 401


def _plant_in_tickets(stage: Stage) -> None:
    """Tickets in every queue, with a planted text in every text field of their actions."""
    t = stage.tickets
    t["life"] = stage.create(
        "标题",
        address=planted("地址"),
        requester={"name": planted("诉求人"), "phone": "13800138000"},
    )
    t["answered"] = stage.create("咨询")
    t["rejected"] = stage.create("不受理")
    t["supervised"] = stage.create("督办件")
    t["pending"] = stage.create("待派")
    t["escalated"] = stage.create("提级件")
    t["merged"] = stage.create("重复件")

    # A whole life, twice round: every action with a text field.
    stage.act(
        "dispatcher1", "life", "accept_with_missing", missing=planted("材料"), promised_days=3
    )
    stage.act("dispatcher1", "life", "fulfil_missing", note=planted("补齐"))
    stage.act("dispatcher1", "life", "recategorize", category="0101", note=planted("改类"))
    stage.act("dispatcher1", "life", "dispatch", lead="S11", note=planted("派单"))
    stage.act("s11.handler", "life", "request_return", reason=planted("退单"))
    stage.act("dispatcher1", "life", "review_return", approved=False, note=planted("审退"))
    stage.act("s11.handler", "life", "accept")
    stage.act("s11.handler", "life", "suspend", reason=planted("挂起"))
    stage.act("s11.handler", "life", "resume", note=planted("恢复"))
    stage.act("s11.handler", "life", "contact", note=planted("联系"))
    stage.act("s11.handler", "life", "request_extension", days=2, reason=planted("延期"))
    stage.act(
        "dispatcher1", "life", "review_extension", approved=True, days=2, note=planted("审延")
    )
    stage.act("s11.handler", "life", "whistle", units=["C-RL"], note=planted("吹哨"))
    stage.act("heat.handler", "life", "report", note=planted("报到"))
    stage.act("s11.handler", "life", "reply", result="solved", content=planted("办理"))
    stage.act("dispatcher1", "life", "audit", passed=True, note=planted("审核"))
    stage.act(
        "callback1",
        "life",
        "evaluate",
        reached=True,
        solved=False,
        satisfaction="dissatisfied",
        note=planted("回访"),
    )
    stage.act("callback1", "life", "reopen", note=planted("重办"))

    stage.act("agent1", "answered", "answer", answer=planted("答复"), note=planted("答注"))
    stage.act("agent1", "rejected", "reject", reason="out_of_scope", channel_advice=planted("途径"))
    stage.act("agent1", "rejected", "close", note=planted("关闭"))
    stage.act("dispatcher1", "supervised", "dispatch", lead="S11", note=planted("派注"))
    stage.act("supervisor1", "supervised", "urge", note=planted("催办"))
    stage.act("supervisor1", "supervised", "supervise", note=planted("督办"))
    stage.act("dispatcher1", "escalated", "dispatch", lead="S12")
    stage.act("supervisor1", "escalated", "escalate", reason=planted("提级"))
    stage.act(
        "dispatcher1", "merged", "merge", master=stage.number("pending"), note=planted("并单")
    )


@pytest.fixture(scope="module", params=BACKENDS)
def stage(
    request: pytest.FixtureRequest,
    templates: Templates,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stage]:
    with tiny_city(str(request.param), templates, tmp_path_factory) as (client, db):
        stage = Stage(client, db)
        _plant_in_admin_pages(stage)
        _plant_in_tickets(stage)
        yield stage


# ---- the pages -------------------------------------------------------------------------------

LIFE = [
    "标题", "标题内容", "地址", "材料", "补齐", "改类", "派单", "退单", "审退", "挂起", "恢复",
    "联系", "延期", "审延", "吹哨", "报到", "办理", "审核", "回访", "重办", "单位", "姓名",
]  # fmt: skip


@dataclass(frozen=True)
class Page:
    """A page, who opens it, and the planted texts it must show (escaped)."""

    who: str | None
    url: str
    shows: tuple[str, ...]
    method: str = "GET"
    form: tuple[tuple[str, str], ...] = ()
    status: int = 200


def _ticket(name: str, who: str, *shows: str) -> Page:
    return Page(who, f"ticket:{name}", shows)


def _bench(who: str, href: str, workbench: str, *shows: str) -> list[Page]:
    tabs = [Page(who, f"{href}?tab={q.key}", ()) for q in queues(workbench)]
    return [Page(who, href, shows), *tabs]


PAGES: list[Page] = [
    # lists and workbenches
    Page("dispatcher1", "/console/tickets", ("标题", "咨询", "不受理", "督办件", "待派", "单位")),
    Page("analyst1", "/console/tickets?sort=-updated", ("标题", "单位")),
    Page("s11.handler", "/console/tickets", ("标题", "督办件", "单位", "姓名")),
    *_bench("dispatcher1", "/console/dispatch", "dispatch", "待派"),
    *_bench("s11.handler", "/console/inbox", "inbox", "标题", "督办件", "单位", "姓名"),
    *_bench("callback1", "/console/callbacks", "callbacks"),
    Page("callback1", "/console/callbacks?tab=close", ("咨询",)),
    *_bench("supervisor1", "/console/supervision", "supervision"),
    Page("supervisor1", "/console/supervision?tab=supervised", ("督办件", "单位")),
    Page("admin1", "/console/dispatch?tab=pending", ("待派",)),
    # the ticket pages with their timelines
    _ticket("life", "dispatcher1", *LIFE),
    _ticket("life", "s11.handler", *LIFE),
    _ticket("life", "heat.handler", "标题", "吹哨", "报到", "单位"),
    _ticket("answered", "callback1", "咨询", "咨询内容", "答复", "答注"),
    _ticket("rejected", "agent1", "不受理", "途径", "关闭"),
    _ticket("supervised", "supervisor1", "督办件", "派注", "催办", "督办", "单位"),
    _ticket("supervised", "s11.handler", "督办件", "派注", "催办", "督办", "单位", "姓名"),
    _ticket("escalated", "supervisor1", "提级件", "提级"),
    _ticket("merged", "dispatcher1", "重复件", "并单"),
    _ticket("pending", "dispatcher1", "待派", "待派内容"),
    # intake and its history of earlier calls
    Page("agent1", "/console/intake", ()),  # units are looked up by the picker (JSON, textContent)
    Page("agent1", "/console/intake/history?phone=13800138000", ("标题",)),
    # every page's frame: who is signed in, in which unit
    Page("s11.handler", "/console/account/password", ("单位", "姓名")),
    # administration
    Page("admin1", "/console/admin/users", ("姓名", "单位")),
    Page("admin1", "/console/admin/units", ("单位",)),
    Page("admin1", "/console/admin/audit", ("用户",)),
    Page("admin1", "/console/admin/tokens", ("用途",)),
    Page("admin1", "/console/admin/calendar", ("假日",)),
    Page("admin1", "/console/admin/catalogue", ()),
]


def _fetch(stage: Stage, page: Page) -> httpx.Response:
    url = page.url
    if url.startswith("ticket:"):
        url = f"/console/tickets/{stage.tickets[url.removeprefix('ticket:')]}"
    if page.who is None:
        anonymous = TestClient(app_of(stage.client), raise_server_exceptions=False)
        return anonymous.request(page.method, url)
    browser = stage.console(page.who)
    if page.method == "POST":
        return browser.post(url, dict(page.form))
    return browser.get(url)


def _raw(text: str) -> list[str]:
    return [marker for marker in RAW_MARKERS if marker in text]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: f"{p.who}:{p.url}")
def test_a_page_shows_what_was_typed_escaped_and_never_raw(stage: Stage, page: Page) -> None:
    r = _fetch(stage, page)
    assert r.status_code == page.status, r.text[:500]
    assert is_html(r)
    assert not _raw(r.text), f"raw markup on the page: {_raw(r.text)}"
    missing = [tag for tag in page.shows if escaped(tag) not in r.text]
    assert not missing, f"the page does not show (escaped): {missing}"


def test_the_reveal_shows_the_requesters_name_escaped(stage: Stage) -> None:
    r = stage.console("s11.handler").post(f"/console/tickets/{stage.tickets['life']}/reveal")
    assert r.status_code == 200
    assert not _raw(r.text)
    assert escaped("诉求人") in r.text
    centre = stage.console("agent1").post(f"/console/tickets/{stage.tickets['life']}/reveal")
    assert centre.status_code == 200 and escaped("诉求人") in centre.text


# Pages that echo what was just sent: filters, search boxes, refused forms.
ECHOES = [
    Page("dispatcher1", f"/console/tickets?text={SCRIPT}", ()),
    Page("dispatcher1", f"/console/tickets?text={IMG}&status={IMG}&category={SCRIPT}", ()),
    Page("dispatcher1", f"/console/dispatch?tab={IMG}", ()),
    # (a `from` that is no date is refused with 422 now: tests/test_hostile_input.py)
    Page("dispatcher1", f"/console/dispatch?tab={SCRIPT}&from=2026-01-01&sort={SCRIPT}", ()),
    Page("admin1", f"/console/admin/users?q={SCRIPT}", ()),
    Page("admin1", f"/console/admin/units?q={IMG}&kind={SCRIPT}", ()),
    Page("admin1", f"/console/admin/audit?q={SCRIPT}", ()),
    Page("agent1", f"/console/intake/history?phone={SCRIPT}", ()),
    Page(None, f"/login?next=/console/tickets?x={SCRIPT}", ()),
    Page(None, f"/login?next=/console/tickets?x={IMG}", ()),
]


@pytest.mark.parametrize("page", ECHOES, ids=lambda p: f"{p.who}:{p.url}")
def test_a_page_that_echoes_the_query_escapes_it(stage: Stage, page: Page) -> None:
    r = _fetch(stage, page)
    assert r.status_code == 200, r.text[:300]
    assert not _raw(r.text), _raw(r.text)


def test_a_refused_intake_form_shows_what_was_typed_escaped(stage: Stage) -> None:
    form = {
        "phone": "12345",  # refused: the form comes back with every value as typed
        "name": planted("表姓名"),
        "address": planted("表地址"),
        "title": planted("表标题"),
        "content": planted("表内容"),
        "street": planted("表街道"),
        "then": "keep",
    }
    r = stage.console("agent1").post("/console/intake", form)
    assert r.status_code == 422
    assert not _raw(r.text), _raw(r.text)
    for tag in ("表姓名", "表地址", "表标题", "表内容", "表街道"):
        assert escaped(tag) in r.text, tag


def test_a_refused_action_with_typed_text_in_its_message_is_escaped(stage: Stage) -> None:
    url = f"/console/tickets/{stage.tickets['pending']}/actions/dispatch"
    # (a unit here is named with the payload in it: the lead typed must match no name)
    lead = SCRIPT + "无此单位"
    r = stage.console("dispatcher1").post(url, {"lead": lead, "note": planted("表派单")})
    assert r.status_code == 422
    assert not _raw(r.text), _raw(r.text)
    assert str(escape(lead)) in r.text  # 未知的单位 <script>…


def test_a_refused_sign_in_shows_the_username_escaped(stage: Stage) -> None:
    browser = Console(app_of(stage.client))
    r = browser.login(planted("登录名"), "wrong-password")
    assert r.status_code == 401
    assert not _raw(r.text)
    assert escaped("登录名") in r.text


def test_a_refused_admin_form_is_escaped(stage: Stage) -> None:
    admin = stage.console("admin1")
    r = admin.post(
        "/console/admin/units",
        {"code": "S19", "name": planted("表单位"), "kind": "street", "parent": SCRIPT},
    )
    assert r.status_code == 422
    assert not _raw(r.text), _raw(r.text)
    assert str(escape(SCRIPT)) in r.text  # 没有编码为 <script>… 的单位


def test_the_api_keeps_the_text_as_typed(stage: Stage) -> None:
    """Escaping is the pages' business: the API answers JSON with the text exactly as typed."""
    r = stage.client.get(f"{TICKETS}/{stage.tickets['life']}", headers=stage.api("dispatcher1"))
    body = r.json()
    assert body["title"] == planted("标题")
    assert body["address"] == planted("地址")
    notes = {e["note"] for e in body["events"] if e["note"]}
    assert planted("派单") in notes and planted("重办") in notes
    assert r.headers["content-type"].startswith("application/json")
