"""Pickers, not codes (issue 14 §2.1), the action panel's likely next step (§2.6) and the one
length limit on a request's text (§2.5).

The search and the resolution of what a form sent are pure (Beijing names, no database); the
lookups, the console's forms and the ticket page run on the tiny city (module scope, both
databases); one short browser check types in the dispatch picker on the Beijing demo city."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import BACKENDS, PASSWORD, Templates, auth, tiny_city
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from jiesu.console.lookup import Option, _option, display_name, resolve, search
from jiesu.console.service import RARELY_USED, arrange
from jiesu.db.engine import Database
from jiesu.errors import Invalid
from jiesu.org.models import Unit
from jiesu.tickets.lifecycle import Actor, TicketFacts, available
from jiesu.tickets.models import Ticket
from jiesu.tickets.shapes import MAX_CONTENT

# ---- search and resolution (pure) ------------------------------------------------------------

UNITS: tuple[Option, ...] = (
    _option("110101001", "东华门街道", "东城区", "street"),
    _option("110101002", "景山街道", "东城区", "street"),
    _option("110101001001", "东华门社区", "东华门街道", "community"),
    _option("110101-CGW", "城市管理委员会", "东城区", "department", aliases=("东城城管委",)),
    _option("110102-CGW", "城市管理委员会", "西城区", "department"),
)
CATEGORIES: tuple[Option, ...] = (
    _option("0207", "道路交通设施", "城乡建设", "category"),
    _option("020703", "道路破损", "城乡建设 › 道路交通设施", "category"),
    _option("020704", "井盖缺失", "城乡建设 › 道路交通设施", "category"),
)


@pytest.mark.parametrize("typed", ["东华门", "dhm", "dhmjd", "110101001", "donghuamen"])
def test_a_street_is_found_by_its_name_its_pinyin_initials_or_its_code(typed: str) -> None:
    assert search(typed, UNITS)[0].code == "110101001"


@pytest.mark.parametrize("typed", ["道路破损", "破损", "dlps", "020703"])
def test_a_category_is_found_by_its_name_or_its_code(typed: str) -> None:
    assert search(typed, CATEGORIES)[0].code == "020703"


def test_a_unit_shows_its_parent_and_a_category_its_parents() -> None:
    assert UNITS[0].label == "东城区 › 东华门街道"
    assert CATEGORIES[1].as_json() == {
        "code": "020703", "name": "道路破损", "context": "城乡建设 › 道路交通设施",
        "label": "城乡建设 › 道路交通设施 › 道路破损",
    }  # fmt: skip


@pytest.mark.parametrize(
    "sent", ["110101001", "东华门街道", "东城区 › 东华门街道", "110101001 东华门街道", "东华门街"]
)
def test_a_form_may_send_the_code_the_name_the_label_or_a_unique_part(sent: str) -> None:
    assert resolve(sent, UNITS, kind="units", field="lead", label="主办单位") == "110101001"


def test_a_unit_is_found_and_taken_by_its_short_name_or_alias() -> None:
    assert search("城管", UNITS)[0].code == "110101-CGW"
    assert (
        resolve("东城城管委", UNITS, kind="units", field="lead", label="主办单位") == "110101-CGW"
    )


def test_a_shared_name_is_refused_in_chinese_naming_both_and_its_label_picks_one() -> None:
    with pytest.raises(Invalid) as refused:
        resolve("城市管理委员会", UNITS, kind="units", field="lead", label="主办单位")
    message = refused.value.message
    assert message.startswith("主办单位：") and "对应多个单位" in message
    assert "东城区 › 城市管理委员会" in message and "西城区 › 城市管理委员会" in message
    assert not re.search(r"[A-Za-z]{3,}", message)
    picked = resolve("西城区 › 城市管理委员会", UNITS, kind="units", field="lead", label="主办单位")
    assert picked == "110102-CGW"


def test_an_unknown_name_is_refused_in_chinese() -> None:
    with pytest.raises(Invalid) as refused:
        resolve("月球街道", UNITS, kind="units", field="lead", label="主办单位")
    assert refused.value.message.startswith("主办单位：未知的单位「月球街道」")
    with pytest.raises(Invalid) as refused:
        resolve("道路", CATEGORIES, kind="categories", field="category", label="事项分类")
    assert "对应多个事项分类" in refused.value.message


# ---- the action panel's likely next step (pure) ----------------------------------------------

CENTRE = "/1/2/"
STREET = "/1/3/4/"


def who(role: str, unit: str = "C-RX", path: str = CENTRE) -> Actor:
    return Actor(user_id=1, role=role, unit=unit, unit_path=path, is_centre=unit == "C-RX")


HANDLER = who("handler", "S11", STREET)
ON_S11 = {"lead": "S11", "lead_path": STREET}


@pytest.mark.parametrize(
    ("facts", "actor", "opens"),
    [
        (TicketFacts("received"), who("dispatcher"), "dispatch"),
        (TicketFacts("received"), who("agent"), "dispatch"),
        (TicketFacts("pending_dispatch"), who("dispatcher"), "dispatch"),
        (TicketFacts("dispatched", **ON_S11), HANDLER, "accept"),
        (TicketFacts("dispatched", return_pending=True, **ON_S11), who("dispatcher"),
         "review_return"),
        (TicketFacts("accepted", accepted=frozenset({"S11"}), **ON_S11), HANDLER, "contact"),
        (TicketFacts("accepted", accepted=frozenset({"S11"}), contacted=True, **ON_S11), HANDLER,
         "reply"),
        (TicketFacts("accepted", suspended=True, **ON_S11), HANDLER, "resume"),
        (TicketFacts("accepted", extension_pending=True, **ON_S11), who("dispatcher"),
         "review_extension"),
        (TicketFacts("replied", **ON_S11), who("dispatcher"), "audit"),
        (TicketFacts("audited", **ON_S11), who("callback_agent"), "evaluate"),
        (TicketFacts("evaluated", **ON_S11), who("callback_agent"), "close"),
        (TicketFacts("dispatched", **ON_S11), who("supervisor"), "urge"),
    ],
)  # fmt: skip
def test_the_panel_opens_the_likely_next_step_for_the_viewer(
    facts: TicketFacts, actor: Actor, opens: str
) -> None:
    primary, more = arrange(available(facts, actor))
    assert primary == opens
    assert primary not in more


def test_rare_actions_sit_behind_more_and_never_open_first() -> None:
    accepted = TicketFacts("accepted", accepted=frozenset({"S11"}), **ON_S11)
    primary, more = arrange(available(accepted, who("unit_admin", "S11", STREET)))
    assert primary == "contact" and {"suspend", "escalate"} <= more
    closed = TicketFacts("closed", **ON_S11)
    assert arrange(available(TicketFacts("evaluated", **ON_S11), who("callback_agent")))[1] == {
        "reopen"
    }
    assert arrange(available(closed, HANDLER)) == (None, {"request_exemption"})
    assert more <= RARELY_USED


# ---- through the app (tiny city) -------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def city(
    request: pytest.FixtureRequest, templates: Templates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Database]]:
    with tiny_city(request.param, templates, tmp_path_factory) as world:
        yield world


def sign_in(client: TestClient, username: str) -> str:
    """Sign in through the form; the session's CSRF token."""
    client.cookies.clear()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post("/login", data={"username": username, "password": PASSWORD,
                                    "csrf_token": token}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text[:300]
    home = client.get(r.headers["location"])
    return re.search(r'name="csrf-token" content="([^"]+)"', home.text).group(1)  # type: ignore[union-attr]


def new_ticket(client: TestClient) -> dict[str, Any]:
    body = {"channel": "phone", "content": "小区暖气不热，室温只有十四度"}
    r = client.post("/api/v1/tickets", json=body, headers=auth(client, "agent1"))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def lookup(client: TestClient, what: str, q: str, **more: str) -> list[dict[str, str]]:
    r = client.get(f"/console/lookup/{what}", params={"q": q, **more})
    assert r.status_code == 200, r.text[:300]
    return r.json()["items"]  # type: ignore[no-any-return]


def test_the_lookups_find_units_and_categories_and_never_offer_the_city_or_the_centre(
    city: tuple[TestClient, Database],
) -> None:
    client, _ = city
    sign_in(client, "dispatcher1")
    first = lookup(client, "units", "东一")[0]
    assert first == {
        "code": "S11",
        "name": "东一街道",
        "context": "东区",
        "label": "东区 › 东一街道",
    }
    assert lookup(client, "units", "dyjd")[0]["code"] == "S11"
    assert lookup(client, "units", "S11")[0]["code"] == "S11"
    assert [u["code"] for u in lookup(client, "units", "东", street="true")] == ["S11", "S12"]
    offered = {u["code"] for u in lookup(client, "units", "小城")}
    assert "C-RL" in offered and not offered & {"C", "C-RX"}
    assert lookup(client, "units", "热线") == []
    assert lookup(client, "categories", "供暖")[0]["code"] == "0301"
    assert lookup(client, "categories", "gn")[0]["code"] == "0301"
    hostile = (
        {"q": "东" * 61},
        {"q": "东\x00一"},
        {"q": "东", "ticket": str(2**70), "action": "x"},
    )
    for bad in hostile:
        assert client.get("/console/lookup/units", params=bad).status_code == 422
    sign_in(client, "analyst1")  # takes no action: no pickers to fill
    assert client.get("/console/lookup/units", params={"q": "东"}).status_code == 403


def test_escalation_and_whistle_pickers_offer_only_the_units_those_actions_may_name(
    city: tuple[TestClient, Database],
) -> None:
    client, _ = city
    made = new_ticket(client)
    r = client.post(f"/api/v1/tickets/{made['id']}/actions/dispatch", json={"lead": "S11"},
                    headers=auth(client, "dispatcher1"))  # fmt: skip
    assert r.status_code == 200, r.text
    sign_in(client, "s11.admin")
    on = {"ticket": str(made["id"])}
    anyone = {u["code"] for u in lookup(client, "units", "东")}
    assert {"S11", "S12", "D1", "D1-JW"} <= anyone
    above = {u["code"] for u in lookup(client, "units", "东", action="escalate", **on)}
    assert {"D1", "D1-JW"} <= above and not above & {"S11", "S12", "M11"}
    summon = {u["code"] for u in lookup(client, "units", "东", action="whistle", **on)}
    assert "S12" in summon and "S11" not in summon
    sign_in(client, "s12.handler")  # cannot see the order: nothing about it is answered
    r = client.get("/console/lookup/units", params={"q": "东", "action": "escalate", **on})
    assert r.status_code == 404


def test_a_renamed_unit_is_found_by_its_new_name(city: tuple[TestClient, Database]) -> None:
    client, db = city
    sign_in(client, "dispatcher1")
    assert lookup(client, "units", "西一")[0]["code"] == "S21"
    with db.write() as s:
        s.execute(update(Unit).where(Unit.code == "S21").values(name="西一新镇"))
    try:
        assert lookup(client, "units", "西一新")[0]["code"] == "S21"
    finally:
        with db.write() as s:
            s.execute(update(Unit).where(Unit.code == "S21").values(name="西一镇"))


def test_dispatch_by_name_works_and_an_ambiguous_name_is_refused_in_chinese(
    city: tuple[TestClient, Database],
) -> None:
    client, db = city
    made = new_ticket(client)
    csrf = sign_in(client, "dispatcher1")
    page = client.get(f"/console/tickets/{made['id']}").text
    assert 'data-picker="units"' in page and 'list="units-dl"' not in page
    assert re.search(r'<details open id="act-dispatch" class="primary">', page)
    url = f"/console/tickets/{made['id']}/actions/dispatch"
    refused = client.post(url, data={"csrf_token": csrf, "lead": "教育委员会"})
    assert refused.status_code == 422
    flash = re.search(r'class="flash flash-error"[^>]*>(.*?)<', refused.text, re.S)
    assert flash, refused.text[:1000]
    assert "主办单位：「教育委员会」对应多个单位" in flash.group(1)
    assert "东区 › 东区教育委员会" in flash.group(1) and "西区 › 西区教育委员会" in flash.group(1)
    r = client.post(url, data={"csrf_token": csrf, "lead": "东一街道", "co_handlers": "东二",
                               "version": "1"}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text[:1000]
    with db.read() as s:
        ticket = s.get(Ticket, made["id"])
        assert ticket is not None and ticket.lead_unit is not None
        assert ticket.lead_unit.code == "S11"
        assert {a.unit.code for a in ticket.assignments} == {"S11", "S12"}
    sign_in(client, "s11.handler")
    page = client.get(f"/console/tickets/{made['id']}").text
    assert re.search(r'<details open id="act-accept" class="primary">', page)
    more = page[page.index('id="more-actions"') :]
    assert 'id="act-suspend"' in more and 'id="act-accept"' not in more
    assert "更多操作" in page


def test_recategorize_takes_a_category_name(city: tuple[TestClient, Database]) -> None:
    client, db = city
    made = new_ticket(client)
    csrf = sign_in(client, "dispatcher1")
    page = client.get(f"/console/tickets/{made['id']}").text
    assert 'data-picker="categories"' in page and "事项分类编码" not in page
    r = client.post(f"/console/tickets/{made['id']}/actions/recategorize",
                    data={"csrf_token": csrf, "category": "供暖"}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text[:1000]
    with db.read() as s:
        ticket = s.get(Ticket, made["id"])
        assert ticket is not None and ticket.category is not None
        assert ticket.category.code == "0301"
        assert display_name("0301", "categories", db_session=s) == "供暖"


def test_intake_takes_names_and_has_one_length_limit(city: tuple[TestClient, Database]) -> None:
    client, db = city
    csrf = sign_in(client, "agent1")
    page = client.get("/console/intake").text
    assert f'maxlength="{MAX_CONTENT}"' in page
    assert 'data-picker="categories"' in page and 'data-picker="streets"' in page
    form = {"csrf_token": csrf, "phone": "13800138000", "channel": "phone",
            "content": "小区暖气不热，室温只有十四度", "category_code": "供暖", "street": "东一街道",
            "then": "dispatch", "dispatch.lead": "东区 › 东一街道"}  # fmt: skip
    r = client.post("/console/intake", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text[:1000]
    ticket_id = int(r.headers["location"].split("/")[-1].split("?")[0])
    with db.read() as s:
        t = s.get(Ticket, ticket_id)
        assert t is not None and t.category is not None and t.street is not None
        assert (t.category.code, t.street.code, t.lead_unit.code if t.lead_unit else None) == (
            "0301", "S11", "S11")  # fmt: skip
    too_long = client.post("/console/intake", data={**form, "content": "很" * (MAX_CONTENT + 1)})
    assert too_long.status_code == 422 and f"诉求内容不能超过 {MAX_CONTENT} 字" in too_long.text
    unknown = client.post("/console/intake", data={**form, "street": "月球街道"})
    assert (
        unknown.status_code == 422
        and "所属街道（乡镇）：未知的街道（乡镇）「月球街道」" in unknown.text
    )
    assert 'value="月球街道"' in unknown.text  # what was typed stays in the box
    api = client.post("/api/v1/tickets", headers=auth(client, "agent1"),
                      json={"channel": "phone", "content": "很" * (MAX_CONTENT + 1)})  # fmt: skip
    assert api.status_code == 422


# ---- in a browser: type in the dispatch picker, choose, the code is sent ------------------------


def test_typing_in_the_dispatch_picker_lists_names_and_choosing_one_sends_the_code(
    tmp_path: Any,
) -> None:
    from browser_support import Api, launch, live_server, login, require_chromium, wait_until

    from jiesu.citypack.load import load_pack
    from jiesu.citypack.parse import read_pack
    from jiesu.db.migrate import upgrade
    from jiesu.demo.generate import DEFAULT_PACK

    require_chromium()
    from playwright.sync_api import sync_playwright

    url = f"sqlite:///{tmp_path / 'beijing.sqlite3'}"
    upgrade(url)
    db = Database(url)
    with db.write() as s:
        load_pack(read_pack(DEFAULT_PACK), db_session=s)
    db.dispose()
    with live_server(url) as site, sync_playwright() as pw:
        api = Api(site.url)
        made = api.create(content="东华门大街人行道地砖破损，老人容易绊倒", title="人行道地砖破损")
        api.close()
        browser = launch(pw)
        try:
            page = browser.new_page()
            login(page, site.url, "dispatcher1")
            page.goto(f"{site.url}/console/tickets/{made['id']}")
            assert page.locator("#act-dispatch[open]").count() == 1  # the likely next step
            box = page.locator("#dispatch-lead")
            box.fill("")
            box.press_sequentially("dhm", delay=30)
            wait_until(page, "() => document.querySelectorAll('.picker-item').length > 0")
            first = page.locator(".picker-item").first
            assert first.locator(".picker-name").inner_text() == "东华门街道"
            assert first.locator(".code").inner_text() == "110101001"
            assert "东城区" in first.inner_text()
            first.click()
            assert box.input_value() == "东华门街道"
            sent = page.locator("#act-dispatch input[type=hidden][name=lead]")
            assert sent.input_value() == "110101001"
            with page.expect_navigation():
                page.locator("#act-dispatch button[type=submit]").click()
            assert page.locator(".flash-ok").inner_text().strip() == "已完成：派单"
        finally:
            browser.close()
    with Database(url).read() as s:
        ticket = s.get(Ticket, made["id"])
        assert ticket is not None and ticket.lead_unit is not None
        assert ticket.lead_unit.code == "110101001"


def test_a_warning_task_is_dispatched_to_a_unit_named_in_its_picker(
    city: tuple[TestClient, Database],
) -> None:
    from datetime import date

    from jiesu.assessment.models import Warning

    client, db = city
    made = new_ticket(client)
    with db.write() as s:
        s11 = s.scalars(select(Unit).where(Unit.code == "S11")).one()
        w = Warning(kind="repeat", key="picker-k1", day=date(2026, 11, 18),
                    title="同一来电人30天内3次诉求", explanation="30 天内 3 次", area_unit_id=s11.id,
                    evidence=[made["id"]], status="open")  # fmt: skip
        s.add(w)
        s.flush()
        wid = w.id
    csrf = sign_in(client, "dispatcher1")
    page = client.get(f"/console/warnings/{wid}").text
    assert 'id="w-lead" name="lead" data-picker="units"' in page and "单位编码" not in page
    url = f"/console/warnings/{wid}/task"
    refused = client.post(url, data={"csrf_token": csrf, "lead": "教育委员会"})
    assert refused.status_code == 422 and "「教育委员会」对应多个单位" in refused.text
    r = client.post(url, data={"csrf_token": csrf, "lead": "东二街道"}, follow_redirects=False)
    assert r.status_code == 303, r.text[:1000]
    task = int(re.search(r"/console/tickets/(\d+)", r.headers["location"]).group(1))  # type: ignore[union-attr]
    with db.read() as s:
        ticket = s.get(Ticket, task)
        assert ticket is not None and ticket.lead_unit is not None
        assert ticket.lead_unit.code == "S12"
