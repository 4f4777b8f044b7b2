"""Validation speaks Chinese (issue 14 §2.2), an error keeps what was typed (§2.3), one submission
makes one ticket and required means required (§2.4), the sign-in page warns before the lock
(§2.7).

Every form is sent bad input (empty, too long, wrong type, wrong choice) and the message the
person sees must be a Chinese sentence: no English word (three Latin letters or more, save a
few names such as PDF or Excel) and no field's code name. The pure parts (the translation
layer, every action field of the lifecycle table) run without a database; the forms run on the
tiny city (module scope, both databases)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import BACKENDS, PASSWORD, Templates, auth, tiny_city
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import func, select

from jiesu.db.engine import Database
from jiesu.errors import Invalid
from jiesu.reports.build import bounds
from jiesu.tickets.lifecycle import ACTIONS, BadField, validate_fields
from jiesu.tickets.models import Ticket
from jiesu.tickets.shapes import MAX_CONTENT, TicketCreate
from jiesu.web.templating import zh
from jiesu.web.validation import label_of, message, messages, size_text

ALLOWED = {"PDF", "Excel", "API", "JPG", "PNG", "WebP", "IP", "MB", "KB", "HTML"}
LATIN_WORD = re.compile(r"[A-Za-z]{3,}")
# every field name a form sends, and the API's: none may show in a message
FIELD_NAMES = {f.name for a in ACTIONS for f in a.fields} | {
    "content", "title", "channel", "request_type", "category_code", "address", "street",
    "requester", "phone", "name", "confidential", "window", "cause", "earlier", "lat", "lng",
    "username", "password", "old_password", "new_password", "repeat", "period", "kind",
    "satisfaction", "solved", "note", "number", "code", "photos", "form_id", "role", "unit",
}  # fmt: skip


def assert_reads_chinese(text: str, *, where: str = "") -> None:
    assert text.strip(), f"no message {where}"
    assert any("\u4e00" <= c <= "\u9fff" for c in text), (where, text)
    english = [w for w in LATIN_WORD.findall(text) if w not in ALLOWED]
    assert not english, (where, text, english)
    words = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text))
    assert not words & FIELD_NAMES, (where, text, words & FIELD_NAMES)
    assert text.count("（") == text.count("）"), (where, text)  # every bracket closed


ERROR_BOX = re.compile(
    r'<(div|p) class="flash[^"]*error[^"]*"[^>]*>(.*?)</\1>', re.DOTALL
)  # console, portal, error pages


def shown_error(page: str) -> str:
    boxes = [re.sub(r"<[^>]+>", "", m.group(2)) for m in ERROR_BOX.finditer(page)]
    assert boxes, page[:3000]
    return html.unescape(" ".join(boxes)).strip()


# ---- the translation layer (pure) ------------------------------------------------------------


def ticket_errors(body: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        TicketCreate.model_validate(body)
    except ValidationError as exc:
        return list(exc.errors())
    raise AssertionError(f"accepted: {body}")


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"channel": "phone", "content": ""}, "请填写诉求内容"),
        ({"content": "路灯坏了"}, "请填写渠道"),
        ({"channel": "phone", "content": "很" * (MAX_CONTENT + 1)}, f"诉求内容不能超过 {MAX_CONTENT} 个字"),
        ({"channel": "pigeon", "content": "路灯坏了"}, "渠道的取值无效，请从列表中选择"),
        ({"channel": "phone", "content": 42}, "诉求内容须为文字"),
        ({"channel": "phone", "content": "路灯坏了", "requester": {"phone": "12"}}, "来电号码：电话号码格式不正确"),
        ({"channel": "phone", "content": "路灯坏了", "lat": 39.9}, "经度和纬度须同时提供"),
        ({"channel": "phone", "content": "路灯坏了", "lat": "north", "lng": 116.4}, "纬度须为数字"),
        ({"channel": "phone", "content": "路灯坏了", "lat": 95.0, "lng": 116.4}, "纬度须不大于 90"),
        ({"channel": "phone", "content": "路灯坏了", "colour": "red"}, "含有不接受的项目"),
        ({"channel": "window", "content": "路灯坏了", "window": {"cause": "bored"}}, "办不成事的原因的取值无效"),
        ({"channel": "phone", "content": "路灯坏了", "requester": {"confidential": "yes"}}, "保密须为“是”或“否”"),
    ],
)  # fmt: skip
def test_each_kind_of_ticket_error_reads_as_a_chinese_sentence(
    body: dict[str, Any], expected: str
) -> None:
    said = messages(ticket_errors(body))
    assert any(expected in m for m in said), said
    for m in said:
        assert_reads_chinese(m, where=str(body))
        assert "Value error" not in m


def test_labels_come_from_one_table_and_no_field_reads_as_its_code_name() -> None:
    assert label_of(("body", "requester", "phone")) == "来电号码"
    assert label_of(("body", "window", "earlier", 3)) == "此前工单"
    assert label_of("note") == "说明"  # an action form's field, from the lifecycle table
    assert label_of(("query", "secret_knob")) == "该项"
    assert message({"type": "string_too_short", "loc": ("note",), "ctx": {"min_length": 4}}) == (
        "说明至少 4 个字"
    )
    assert message({"type": "something_new", "loc": ("body", "title")}) == "标题填写有误"


def test_every_action_forms_field_refusal_names_the_field_by_its_label() -> None:
    bad_values: dict[str, list[Any]] = {
        "bool": ["maybe", 1],
        "int": ["many", True, -(10**6), 10**6],
        "units": ["S11", [], ["S11", "S11"], [1]],
        "choice": ["nonsense", 7],
        "text": [7, "", "很" * 5000],
        "unit": [7, "很" * 5000],
        "ticket": [7, "很" * 5000],
    }
    checked = 0
    for action in ACTIONS:
        for f in action.fields:
            for bad in [None, *bad_values.get(f.kind, bad_values["text"])]:
                try:
                    validate_fields(action, {f.name: bad})
                except BadField as refused:
                    if refused.field != f.name:  # another required field, checked on its own
                        continue
                    shown = zh(refused.message)
                    assert f.label in shown or "满意度" in shown, (action.name, f.name, shown)
                    assert_reads_chinese(shown, where=f"{action.name}.{f.name}={bad!r}")
                    checked += 1
        try:
            validate_fields(action, {"colour": "red"})
        except BadField as refused:
            assert_reads_chinese(zh(refused.message), where=f"{action.name} unknown field")
    assert checked > 60


def test_upload_limits_read_as_real_sizes() -> None:
    assert size_text(10 * 1024 * 1024) == "10 MB"
    assert size_text(2 * 1024 * 1024) == "2 MB"
    assert size_text(256 * 1024) == "256 KB"  # not "0 MB"
    assert size_text(1536 * 1024) == "1.5 MB"
    assert size_text(100) == "1 KB"


@pytest.mark.parametrize("kind, period", [("daily", "2026-11"), ("weekly", "2026-11-03"),
                                          ("monthly", "2026"), ("yearly", "2026")])  # fmt: skip
def test_a_report_period_in_the_wrong_form_says_what_form_is_right(kind: str, period: str) -> None:
    with pytest.raises(Invalid) as refused:
        bounds(kind, period)
    assert_reads_chinese(zh(refused.value.message), where=f"{kind} {period}")
    if kind == "daily":
        assert zh(refused.value.message) == "期间格式不对：日通报的期间应写成日期，如 2026-11-03"


# ---- through the app (tiny city) -------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def city(
    request: pytest.FixtureRequest, templates: Templates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Database]]:
    with tiny_city(request.param, templates, tmp_path_factory) as world:
        yield world


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf[-_]token" (?:value|content)="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def sign_in(client: TestClient, username: str) -> str:
    client.cookies.clear()
    r = client.post("/login", data={"username": username, "password": PASSWORD,
                                    "csrf_token": csrf_of(client.get("/login").text)},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text[:300]
    return csrf_of(client.get(r.headers["location"]).text)


def new_ticket(client: TestClient) -> dict[str, Any]:
    body = {"channel": "phone", "content": "小区暖气不热，室温只有十四度"}
    r = client.post("/api/v1/tickets", json=body, headers=auth(client, "agent1"))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def count_tickets(db: Database) -> int:
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(Ticket)) or 0


def test_the_apis_422_keeps_loc_and_type_and_says_it_in_chinese(
    city: tuple[TestClient, Database],
) -> None:
    client, _ = city
    r = client.post("/api/v1/tickets", headers=auth(client, "agent1"),
                    json={"channel": "phone", "content": "", "requester": {"phone": 12}})  # fmt: skip
    assert r.status_code == 422
    body = r.json()
    assert {(tuple(f["loc"]), f["type"]) for f in body["fields"]} >= {
        (("body", "content"), "string_too_short"), (("body", "requester", "phone"), "string_type")}  # fmt: skip
    assert body["field"] == "content"
    for f in body["fields"]:
        assert_reads_chinese(f["message"], where=str(f["loc"]))
    assert_reads_chinese(body["message"])
    whole = client.post("/api/v1/tickets", headers=auth(client, "agent1"), json=["路灯坏了"])
    assert whole.status_code == 422
    assert whole.json()["fields"][0]["message"] == "提交的内容格式不对，请检查后重试"
    q = client.get("/api/v1/tickets", params={"page": "lots"}, headers=auth(client, "agent1"))
    assert q.status_code == 422 and q.json()["fields"][0]["message"] == "页码须为整数"
    day = client.get("/api/v1/tickets", params={"created_from": "1900-01-01"},
                     headers=auth(client, "agent1"))  # fmt: skip
    assert day.status_code == 422
    assert day.json()["fields"][0]["message"].startswith("受理日期起：日期须在 2000-01-01")


def test_console_intake_errors_read_chinese_keep_the_typing_and_need_the_callers_number(
    city: tuple[TestClient, Database],
) -> None:
    client, db = city
    csrf = sign_in(client, "agent1")
    good = {"csrf_token": csrf, "phone": "13800138000", "channel": "phone", "name": "王女士",
            "content": "小区暖气不热，室温只有十四度", "address": "东一街道幸福里 3 号楼"}  # fmt: skip
    before = count_tickets(db)
    cases = {
        "no number on a phone call": ({"phone": ""}, "来电号码"),
        "empty content": ({"content": ""}, "诉求内容"),
        "too long": ({"content": "很" * (MAX_CONTENT + 1)}, "诉求内容"),
        "bad phone": ({"phone": "12"}, "来电号码"),
        "wrong channel": ({"channel": "pigeon"}, "渠道"),
        "wrong type": ({"request_type": "wish"}, "诉求类型"),
        "long title": ({"title": "很" * 201}, "标题"),
    }
    for case, (change, label) in cases.items():
        r = client.post("/console/intake", data={**good, **change})
        assert r.status_code == 422, (case, r.status_code)
        shown = shown_error(r.text)
        assert label in shown, (case, shown)
        assert_reads_chinese(shown, where=case)
        assert "东一街道幸福里 3 号楼" in r.text and "王女士" in r.text, case  # kept
    assert count_tickets(db) == before  # none of them made a ticket
    web = client.post("/console/intake", data={**good, "phone": "", "channel": "web"},
                      follow_redirects=False)  # fmt: skip
    assert web.status_code == 303  # only a phone call must have a number


def test_an_action_refused_keeps_what_was_typed_and_names_the_field(
    city: tuple[TestClient, Database],
) -> None:
    client, _ = city
    made = new_ticket(client)
    csrf = sign_in(client, "dispatcher1")
    r = client.post(f"/console/tickets/{made['id']}/actions/dispatch",
                    data={"csrf_token": csrf, "lead": "S11"}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text[:500]
    csrf = sign_in(client, "s11.handler")
    for step, data in (("accept", {}), ("contact", {"note": "已电话联系诉求人"})):
        r = client.post(f"/console/tickets/{made['id']}/actions/{step}",
                        data={"csrf_token": csrf, **data}, follow_redirects=False)  # fmt: skip
        assert r.status_code == 303, (step, r.text[:500])
    typed = "已联系供热公司，管线改造需列入明年计划"
    r = client.post(f"/console/tickets/{made['id']}/actions/reply",
                    data={"csrf_token": csrf, "result": "not_solvable", "content": typed})  # fmt: skip
    assert r.status_code == 422
    shown = shown_error(r.text)
    assert "无法解决原因" in shown
    assert_reads_chinese(shown, where="reply without a reason")
    assert typed in r.text  # 办理情况 comes back as typed
    assert re.search(r'<option value="not_solvable" selected>', r.text)
    short = client.post(f"/console/tickets/{made['id']}/actions/reply",
                        data={"csrf_token": csrf, "result": "maybe", "content": typed})  # fmt: skip
    assert short.status_code == 422
    assert_reads_chinese(shown_error(short.text), where="reply with a made-up result")


def test_password_reports_and_login_forms_answer_in_chinese(
    city: tuple[TestClient, Database],
) -> None:
    client, _ = city
    csrf = sign_in(client, "analyst1")
    for data in ({"old_password": "", "new_password": "", "repeat": ""},
                 {"old_password": PASSWORD, "new_password": "short", "repeat": "short"},
                 {"old_password": PASSWORD, "new_password": "长长的新密码123", "repeat": "别的"}):  # fmt: skip
        r = client.post("/console/account/password", data={"csrf_token": csrf, **data})
        assert r.status_code in (400, 401, 422), r.status_code
        assert_reads_chinese(shown_error(r.text), where=str(data))
    page = client.get("/console/reports").text
    kind = re.search(r'<option value="(\w+)" selected>', page)
    period = re.search(r'name="period" value="([^"]*)"', page)
    assert kind and period and kind.group(1) == "monthly"  # the form's own defaults agree
    for bad in ({"kind": "daily", "period": "2026-11"}, {"kind": "yearly", "period": "2026"},
                {"kind": "weekly", "period": ""}):  # fmt: skip
        r = client.post("/console/reports", data={"csrf_token": csrf, **bad})
        assert r.status_code == 422
        assert_reads_chinese(shown_error(r.text), where=str(bad))
        assert f'value="{bad["period"]}"' in r.text  # what was typed stays
    client.cookies.clear()
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"username": "", "password": "", "csrf_token": token})
    assert_reads_chinese(shown_error(r.text), where="empty sign-in")


def test_the_sign_in_page_counts_down_the_same_for_a_known_and_an_unknown_user(
    city: tuple[TestClient, Database],
) -> None:
    client, _ = city

    def wrong(username: str) -> str:
        client.cookies.clear()
        token = csrf_of(client.get("/login").text)
        r = client.post("/login", data={"username": username, "password": "not-the-password",
                                        "csrf_token": token},
                        headers={"X-Forwarded-For": "203.0.113.7"})  # fmt: skip
        assert r.status_code == 401
        return shown_error(r.text)

    known = [wrong("callback1") for _ in range(5)]
    unknown = [wrong("nobody-here") for _ in range(5)]
    assert known == unknown
    assert "剩余尝试次数 4 次" in known[0] and "剩余尝试次数 1 次" in known[3]
    assert "锁定" in known[4]
    for text in known:
        assert_reads_chinese(text, where="sign-in")


def portal_token(client: TestClient, path: str = "/portal/submit") -> tuple[str, str]:
    page = client.get(path).text
    form_id = re.search(r'name="form_id" value="([^"]+)"', page)
    assert form_id
    return csrf_of(page), form_id.group(1)


def test_portal_errors_read_chinese_and_one_form_makes_one_ticket(
    city: tuple[TestClient, Database],
) -> None:
    client, db = city
    client.cookies.clear()
    token, form_id = portal_token(client)
    good = {"csrf_token": token, "form_id": form_id, "request_type": "complain",
            "content": "小区门口的路灯坏了一个多月，晚上出行很不方便。", "phone": "13800138000",
            "address": "幸福小区南门外"}  # fmt: skip
    for change in ({"content": ""}, {"content": "很" * (MAX_CONTENT + 1)}, {"phone": ""},
                   {"phone": "12"}, {"request_type": "wish"}, {"title": "很" * 200},
                   {"lat": "north", "lng": "east"}):  # fmt: skip
        r = client.post("/portal/submit", data={**good, **change})
        assert r.status_code == 422, (change, r.status_code)
        assert_reads_chinese(shown_error(r.text), where=str(change))
        assert "幸福小区南门外" in r.text  # kept
        assert f'value="{form_id}"' in r.text  # the same draft, the same key
    before = count_tickets(db)
    first = client.post("/portal/submit", data=good)
    again = client.post("/portal/submit", data=good)  # Back, then submit
    assert first.status_code == 201 and again.status_code == 200
    number = re.search(r'id="number">(\d+)<', first.text)
    assert number and number.group(1) in again.text and "已经提交过" in again.text
    assert count_tickets(db) == before + 1
    assert 'data-draft="fresh"' in client.get("/portal/submit").text
    assert 'data-draft="new"' in client.get("/portal/submit?new=1").text


def test_a_portal_rating_refused_reads_chinese(city: tuple[TestClient, Database]) -> None:
    client, _ = city
    client.cookies.clear()
    token = csrf_of(client.get("/portal/track").text)
    for data in ({"number": "", "code": ""}, {"number": "20261101000001", "code": "ABCDEFGH",
                                               "solved": "maybe", "satisfaction": "ecstatic"}):  # fmt: skip
        r = client.post("/portal/rate", data={"csrf_token": token, **data})
        assert r.status_code >= 400
        assert_reads_chinese(shown_error(r.text), where=str(data))


# ---- Back, then submit, in a real browser ----------------------------------------------------


def test_back_then_submit_on_the_portal_shows_the_same_ticket(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from browser_support import demo_database, launch, live_server, require_chromium, wait_until

    require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    url = demo_database(tmp_path_factory.mktemp("back") / "demo.sqlite3", days=1, per_day=5)
    with live_server(url) as server, sync_api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_page()
            page.goto(server.url + "/portal/submit")
            page.fill("#content", "小区门口的路灯坏了一个多月，晚上出行很不方便，请尽快修复。")
            page.fill("#address", "幸福小区南门外")
            page.fill("#phone", "13912345678")
            page.click("button[type=submit]")
            wait_until(page, "() => !!document.getElementById('number')")
            number = page.inner_text("#number")
            page.go_back()
            wait_until(page, "() => document.getElementById('phone').value === '13912345678'")
            assert page.input_value("#address") == "幸福小区南门外"  # the draft came back
            page.click("button[type=submit]")
            wait_until(page, "() => !!document.getElementById('number')")
            assert page.inner_text("#number") == number and "已经提交过" in page.content()
            page.goto(server.url + "/portal/submit")  # a new visit: a new draft
            assert page.input_value("#phone") == ""
        finally:
            browser.close()
    db = Database(url)
    try:
        with db.read() as s:
            made = s.scalar(
                select(func.count())
                .select_from(Ticket)
                .where(Ticket.content.like("小区门口的路灯坏了一个多月%"))
            )
    finally:
        db.dispose()
    assert made == 1


def test_admin_forms_answer_in_chinese(city: tuple[TestClient, Database]) -> None:
    client, _ = city
    csrf = sign_in(client, "admin1")
    posts = [
        ("/console/admin/users", {"username": "", "name": "", "role": "agent", "unit": "C",
                                  "password": "longenough1"}),
        ("/console/admin/users", {"username": "newbie", "name": "新人", "role": "wizard",
                                  "unit": "C", "password": "longenough1"}),
        ("/console/admin/users", {"username": "newbie", "name": "新人", "role": "agent",
                                  "unit": "无此单位", "password": "longenough1"}),
        ("/console/admin/users", {"username": "newbie", "name": "新人", "role": "agent",
                                  "unit": "C", "password": "short"}),
        ("/console/admin/units", {"code": "", "name": "", "kind": "street", "parent": "D1"}),
        ("/console/admin/units", {"code": "X1", "name": "某单位", "kind": "castle",
                                  "parent": "D1"}),
        ("/console/admin/calendar", {"day": "someday", "workday": "true"}),
        ("/console/admin/tokens", {"username": "", "name": "", "days": "many"}),
    ]  # fmt: skip
    for path, data in posts:
        r = client.post(path, data={"csrf_token": csrf, **data})
        assert r.status_code >= 400, (path, data, r.status_code)
        assert_reads_chinese(shown_error(r.text), where=f"{path} {data}")


def test_every_action_form_refused_on_the_ticket_page_reads_chinese(
    city: tuple[TestClient, Database],
) -> None:
    client, _ = city
    made = new_ticket(client)
    for user in ("dispatcher1", "s11.handler"):
        csrf = sign_in(client, user)
        for action in ACTIONS:
            r = client.post(
                f"/console/tickets/{made['id']}/actions/{action.name}",
                data={"csrf_token": csrf, **{f.name: "很" * 3000 for f in action.fields[:1]}},
                follow_redirects=False,
            )
            if r.status_code == 303:  # taken (nothing was wrong with it)
                continue
            assert_reads_chinese(shown_error(r.text), where=f"{user} {action.name}")
            assert action.name not in shown_error(r.text)
