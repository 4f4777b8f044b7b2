"""Open311 GeoReport v2 under /open311/v2/ (issue 15): every endpoint in JSON and XML, the
specification's errors and status codes, the extensions (updated_after/updated_before,
page/page_size, extensions=true, mySociety's servicerequestupdates), the admin's keys, and no
personal data in any answer. tests/test_open311_client.py drives a live server with the
`georeport` client library."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from conftest import auth, principal
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from test_auth import Console, app_of

from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.intel.geo import wgs84_to_gcj02
from jiesu.open311 import service
from jiesu.open311.models import Open311Key, Open311Request
from jiesu.open311.shapes import (
    Open311Error,
    parse_datetime,
    scrub,
    split_format,
    to_xml,
    window,
)
from jiesu.org.models import User
from jiesu.settings import city_tz
from jiesu.tickets.models import Ticket
from jiesu.tickets.service import create_ticket
from jiesu.tickets.shapes import TicketCreate

V2 = "/open311/v2"
TICKETS = "/api/v1/tickets"
TZ = city_tz()

# ---- pure ------------------------------------------------------------------------------------


def test_xml_is_utf8_with_the_declaration_the_spec_names_and_escapes_text() -> None:
    body = to_xml("services", [{"service_code": "01", "service_name": "A<&>B", "metadata": True,
                                "group": None}])  # fmt: skip
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<services><service>')
    root = ET.fromstring(body)
    service_el = root.find("service")
    assert service_el is not None
    assert service_el.findtext("service_name") == "A<&>B"
    assert service_el.findtext("metadata") == "true"
    assert service_el.findtext("group") == ""  # an empty element, as null


def test_lists_inside_objects_take_the_specifications_item_names() -> None:
    body = to_xml("discovery", {"endpoints": [{"formats": ["text/xml", "application/json"]}]})
    root = ET.fromstring(body)
    assert [f.text for f in root.iterfind("endpoints/endpoint/formats/format")] == [
        "text/xml", "application/json"]  # fmt: skip


def test_the_format_suffix_is_required_and_known() -> None:
    assert split_format("services.json") == ("services", "json")
    assert split_format("2026110100001.xml") == ("2026110100001", "xml")
    for bad in ("services", "services.yaml", ".json"):
        with pytest.raises(Open311Error) as caught:
            split_format(bad)
        assert caught.value.code == 400


def test_the_window_is_the_last_90_days_and_never_longer() -> None:
    now = datetime(2026, 11, 20, 4, tzinfo=UTC)
    assert window(None, None, now=now).start == now - timedelta(days=90)
    start = now - timedelta(days=10)
    assert window(start, None, now=now).end == now
    with pytest.raises(Open311Error) as caught:
        window(now - timedelta(days=91), now, now=now)
    assert caught.value.code == 400
    with pytest.raises(Open311Error):
        window(now, now - timedelta(days=1), now=now)


def test_dates_are_w3c_and_anything_else_is_a_400() -> None:
    assert parse_datetime("2026-11-05T00:00:00Z", "start_date", tz=TZ) == datetime(
        2026, 11, 5, tzinfo=UTC)  # fmt: skip
    local = parse_datetime("2026-11-05T08:00:00", "start_date", tz=TZ)
    assert local is not None and local.astimezone(UTC).hour == 0  # read as the city's time
    for bad in ("yesterday", "2026-13-01", "05/11/2026"):
        with pytest.raises(Open311Error) as caught:
            parse_datetime(bad, "start_date", tz=TZ)
        assert caught.value.code == 400


def test_scrub_takes_out_phones_id_numbers_emails_and_the_requesters_name() -> None:
    text = "张三丰说：电话 138-0013-8000 或 010-62345678，身份证 11010119900307123X，a.b@c.cn"
    out = scrub(text, names=("张三丰",))
    assert out is not None
    for secret in ("138-0013-8000", "62345678", "11010119900307123X", "a.b@c.cn", "张三丰"):
        assert secret not in out
    assert out.startswith("张**说")
    assert scrub("工单 2026110100001 已办结") == "工单 2026110100001 已办结"  # numbers stay


# ---- helpers ---------------------------------------------------------------------------------


def issue(db: Database, username: str = "agent1") -> str:
    with db.write() as s:
        value, _ = service.issue_key("随手拍", username, by=principal(db, "admin1"),
                                     db_session=s, now=utcnow())  # fmt: skip
    return value


def parse(r: httpx.Response, fmt: str) -> Any:
    if fmt == "json":
        assert r.headers["content-type"].startswith("application/json")
        return r.json()
    assert r.headers["content-type"].startswith("text/xml")
    assert r.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(r.content)


def as_records(root: ET.Element) -> list[dict[str, str | None]]:
    """An XML list answer as the JSON's records (flat fields only)."""
    return [{c.tag: c.text for c in item if len(c) == 0} for item in root]


def error_of(r: httpx.Response, fmt: str) -> tuple[int, str]:
    if fmt == "json":
        [e] = r.json()
        assert set(e) == {"code", "description"}
        return e["code"], e["description"]
    root = ET.fromstring(r.content)
    assert root.tag == "errors"
    return int(root.findtext("error/code") or 0), root.findtext("error/description") or ""


POINT = (39.9087, 116.3975)  # WGS-84, as a phone's GPS gives it


def post(client: TestClient, key: str | None, fmt: str = "json", **fields: Any) -> httpx.Response:
    data: dict[str, Any] = {"service_code": "010101", "lat": str(POINT[0]),
                            "long": str(POINT[1]), "description": "小区楼道灯坏了一个月"}  # fmt: skip
    data.update(fields)
    if key is not None:
        data["api_key"] = key
    data = {k: v for k, v in data.items() if v is not None}
    return client.post(f"{V2}/requests.{fmt}", data=data)


def ticket_count(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(Ticket)) or 0)


# ---- discovery, services, definitions ------------------------------------------------------


def test_discovery_services_and_definitions_in_both_formats(client: TestClient) -> None:
    d = client.get(f"{V2}/discovery.json").json()
    assert d["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"
    assert d["endpoints"][0]["url"].endswith("/open311/v2")
    assert d["endpoints"][0]["formats"] == ["text/xml", "application/json"]
    assert d["changeset"] and d["contact"] and d["key_service"]
    x = parse(client.get(f"{V2}/discovery.xml"), "xml")
    assert x.tag == "discovery" and x.findtext("endpoints/endpoint/type") == "production"
    assert x.findtext("changeset") == d["changeset"]

    services = client.get(f"{V2}/services.json").json()
    by_code = {s["service_code"]: s for s in services}
    assert by_code["010101"] == {
        "service_code": "010101", "service_name": "物业服务",
        "description": "城乡建设 › 住房与物业 › 物业服务", "metadata": True, "type": "realtime",
        "keywords": "物业, 保安", "group": "住房与物业",
    }  # fmt: skip
    assert "01" not in by_code  # a top-level category with children is a group, not a service
    xml_services = parse(client.get(f"{V2}/services.xml"), "xml")
    assert xml_services.tag == "services"
    assert as_records(xml_services) == [
        {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in s.items()} for s in services
    ]
    # the city's jurisdiction_id is accepted, another one is a 404
    assert client.get(f"{V2}/services.json", params={"jurisdiction_id": "tiny"}).status_code == 200
    r = client.get(f"{V2}/services.xml", params={"jurisdiction_id": "elsewhere"})
    assert r.status_code == 404 and error_of(r, "xml")[0] == 404

    definition = client.get(f"{V2}/services/010101.json").json()
    assert definition["service_code"] == "010101"
    attrs = {a["code"]: a for a in definition["attributes"]}
    rt = attrs["request_type"]
    assert rt["datatype"] == "singlevaluelist" and rt["variable"] is True and rt["order"] == 1
    assert {"key": "complain", "name": "投诉"} in rt["values"]
    assert len(rt["values"]) == 6  # the pack's request types
    assert attrs["contact_time"]["datatype"] == "multivaluelist"
    for a in definition["attributes"]:
        assert {"variable", "code", "datatype", "required", "datatype_description", "order",
                "description"} <= set(a)  # fmt: skip
    x = parse(client.get(f"{V2}/services/010101.xml"), "xml")
    assert x.tag == "service_definition"
    keys = [
        v.findtext("key")
        for v in x.iterfind("attributes/attribute[code='request_type']/values/value")
    ]
    assert keys == [v["key"] for v in rt["values"]]
    for fmt in ("json", "xml"):
        r = client.get(f"{V2}/services/999999.{fmt}")
        assert r.status_code == 404 and error_of(r, fmt)[0] == 404


@pytest.mark.parametrize("url", ["services.yaml", "services", "discovery.html",
                                 "services/010101.csv", "requests", "nothing.json"])  # fmt: skip
def test_a_bad_format_or_path_answers_in_the_specifications_error_shape(url: str) -> None:
    app_client = TestClient(_bare_app(), raise_server_exceptions=False)
    r = app_client.get(f"{V2}/{url}")
    assert r.status_code == (404 if url == "nothing.json" else 400)
    assert error_of(r, "json")[0] == r.status_code


def _bare_app() -> Any:
    from jiesu.web.app import create_app

    return create_app(Database("sqlite://"))


# ---- creating requests ------------------------------------------------------------------------


def test_post_request_makes_an_open311_order_as_the_keys_user(
    client: TestClient, db: Database
) -> None:
    key = issue(db)
    r = post(client, key, last_name="张", first_name="三丰", phone="13800138000",
             email="zhang@example.cn", device_id="dev-1", account_id="acc-9",
             media_url="https://img.example.cn/1.jpg", address_string="东一路 8 号",
             **{"attribute[request_type]": "help", "attribute[contact_time][]": ["morning", "evening"],
                "attribute[title]": "楼道灯坏了"})  # fmt: skip
    assert r.status_code == 201, r.text
    [answer] = r.json()
    assert set(answer) == {"service_request_id", "token", "service_notice", "account_id"}
    assert answer["account_id"] == "acc-9"
    with db.read() as s:
        ticket = s.scalar(select(Ticket).where(Ticket.number == answer["service_request_id"]))
        assert ticket is not None
        agent = s.scalar(select(User).where(User.username == "agent1"))
        assert agent is not None
        assert (ticket.channel, ticket.created_by_id) == ("open311", agent.id)
        assert (ticket.request_type, ticket.title) == ("help", "楼道灯坏了")
        assert ticket.category is not None and ticket.category.code == "010101"
        assert (ticket.requester_name, ticket.requester_phone) == ("张三丰", "13800138000")
        assert "上午、晚上" in ticket.content
        gcj_lng, gcj_lat = wgs84_to_gcj02(POINT[1], POINT[0])  # stored in the maps' datum
        assert ticket.lat == pytest.approx(gcj_lat, abs=1e-6)
        assert ticket.lng == pytest.approx(gcj_lng, abs=1e-6)
        assert abs(ticket.lat - POINT[0]) > 1e-4
        extra = s.get(Open311Request, ticket.id)
        assert extra is not None and extra.attributes["contact_time"] == ["morning", "evening"]
        assert (extra.device_id, extra.media_url) == ("dev-1", "https://img.example.cn/1.jpg")
        assert "zhang@example.cn" not in json.dumps(extra.attributes)
        keyrow = s.scalar(select(Open311Key))
        assert keyrow is not None and keyrow.last_used_at is not None
        assert keyrow.key_hash != key and key not in keyrow.hint * 2
    # the point goes back out in WGS-84
    [out] = client.get(f"{V2}/requests/{answer['service_request_id']}.json").json()
    assert (out["lat"], out["long"]) == pytest.approx(POINT, abs=1e-6)
    assert out["media_url"] == "https://img.example.cn/1.jpg"

    x = post(client, key, "xml", address_id="A-17", lat=None, long=None)
    assert x.status_code == 201, x.text
    root = parse(x, "xml")
    assert root.tag == "service_requests"
    token = root.findtext("request/token")
    number = root.findtext("request/service_request_id")
    assert token and number
    for fmt in ("json", "xml"):
        t = client.get(f"{V2}/tokens/{token}.{fmt}")
        assert t.status_code == 200
        got = t.json() if fmt == "json" else as_records(parse(t, "xml"))
        assert got == [{"service_request_id": number, "token": token}]
        missing = client.get(f"{V2}/tokens/nope.{fmt}")
        assert missing.status_code == 404 and error_of(missing, fmt)[0] == 404


def test_post_request_errors_have_the_specifications_codes_and_write_nothing(
    client: TestClient, db: Database
) -> None:
    key = issue(db)
    revoked = issue(db)
    with db.write() as s:
        row = s.scalar(select(Open311Key).order_by(Open311Key.id.desc()))
        assert row is not None
        service.revoke_key(row.id, by=principal(db, "admin1"), db_session=s, now=utcnow())
    before = ticket_count(db)
    cases: list[tuple[str | None, dict[str, Any], int]] = [
        (None, {}, 403),
        ("o311_wrong", {}, 403),
        (revoked, {}, 403),
        (key, {"service_code": "999999"}, 404),
        (key, {"service_code": ""}, 400),
        (key, {"lat": None, "long": None}, 400),  # no location at all
        (key, {"long": None}, 400),  # lat without long
        (key, {"lat": "north"}, 400),
        (key, {"lat": "95"}, 400),
        (key, {"media_url": "javascript:alert(1)"}, 400),
        (key, {"attribute[colour]": "red"}, 400),
        (key, {"attribute[request_type]": "gossip"}, 400),
        (key, {"attribute[contact_time][]": ["midnight"]}, 400),
        (key, {"phone": "not a phone"}, 400),
        (key, {"description": "长" * 5001}, 400),
        (key, {"jurisdiction_id": "elsewhere"}, 404),
    ]
    for fmt in ("json", "xml"):
        for api_key, fields, code in cases:
            r = post(client, api_key, fmt, **fields)
            assert r.status_code == code, (fmt, fields, r.text)
            assert error_of(r, fmt)[0] == code
    r = client.post(f"{V2}/requests.yaml", data={"api_key": key, "service_code": "010101"})
    assert r.status_code == 400
    assert ticket_count(db) == before
    # a user who can no longer take requests in: the key stops working
    with db.write() as s:
        s.execute(update(User).where(User.username == "agent1").values(active=False))
    assert post(client, key).status_code == 403
    assert ticket_count(db) == before


# ---- reading requests -------------------------------------------------------------------------


def _phone_ticket(db: Database, *, days_ago: int = 0, **fields: Any) -> Ticket:
    data = {
        "channel": "phone",
        "content": "学校门口早上堵车严重，请交警疏导。",
        "category_code": "0201",
        "requester": {"name": "王五六", "phone": "13700137000"},
    }
    data.update(fields)
    with db.write() as s:
        return create_ticket(TicketCreate.model_validate(data), actor=principal(db),
                             db_session=s, now=utcnow() - timedelta(days=days_ago))  # fmt: skip


def test_get_requests_filters_pages_and_extensions(client: TestClient, db: Database) -> None:
    key = issue(db)
    mine = post(client, key).json()[0]["service_request_id"]
    phone = _phone_ticket(db).number
    old = _phone_ticket(db, days_ago=100).number

    def numbers(params: dict[str, str], fmt: str = "json") -> list[str]:
        r = client.get(f"{V2}/requests.{fmt}", params=params)
        assert r.status_code == 200, r.text
        if fmt == "json":
            return [x["service_request_id"] for x in r.json()]
        return [str(x["service_request_id"]) for x in as_records(parse(r, "xml"))]

    for fmt in ("json", "xml"):
        assert numbers({}, fmt) == [phone, mine]  # newest first; the old one is outside 90 days
    assert numbers({"service_request_id": f"{old},{mine}"}) == [mine, old]  # ids override all
    assert numbers({"service_code": "0201"}) == [phone]
    assert numbers({"service_code": "010101,0201"}) == [phone, mine]
    start = (utcnow() - timedelta(days=101)).isoformat()
    end = (utcnow() - timedelta(days=99)).isoformat()
    assert numbers({"start_date": start, "end_date": end}) == [old]
    assert numbers({"status": "open"}) == [phone, mine]
    assert numbers({"status": "closed"}) == []
    # extensions: paging and the update times
    assert numbers({"page_size": "1"}) == [phone]
    assert numbers({"page_size": "1", "page": "2"}) == [mine]
    later = utcnow() + timedelta(minutes=1)
    with db.write() as s:  # the phone order changed a minute from now
        s.execute(update(Ticket).where(Ticket.number == phone).values(updated_at=later))
    cut = (utcnow() + timedelta(seconds=30)).isoformat()
    assert numbers({"updated_after": cut}) == [phone]
    assert phone not in numbers({"updated_before": cut})
    assert old in numbers({"updated_before": cut})  # by update time alone: no 90-day window
    # bad parameters
    for params in ({"start_date": "last week"}, {"end_date": "2026-02-30T00:00:00Z"},
                   {"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"},
                   {"status": "pending"}, {"page_size": "5000"}, {"page": "0"},
                   {"jurisdiction_id": "elsewhere"}):  # fmt: skip
        for fmt in ("json", "xml"):
            r = client.get(f"{V2}/requests.{fmt}", params=params)
            code = 404 if "jurisdiction_id" in params else 400
            assert r.status_code == code and error_of(r, fmt)[0] == code, (params, r.text)

    [plain] = client.get(f"{V2}/requests/{mine}.json").json()
    assert "extended_attributes" not in plain
    assert set(plain) == {
        "service_request_id", "status", "status_notes", "service_name", "service_code",
        "description", "agency_responsible", "service_notice", "requested_datetime",
        "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat",
        "long", "media_url"}  # fmt: skip
    assert plain["requested_datetime"].endswith("+08:00")
    assert plain["description"] == "小区楼道灯坏了一个月"  # written for the civic app
    [ext] = client.get(f"{V2}/requests/{mine}.json", params={"extensions": "true"}).json()
    assert ext["extended_attributes"]["channel"] == "open311"
    assert ext["extended_attributes"]["state"] == "received"
    x = parse(client.get(f"{V2}/requests/{phone}.xml", params={"extensions": "true"}), "xml")
    assert x.findtext("request/extended_attributes/channel") == "phone"
    assert x.findtext("request/description") == client.get(
        f"{V2}/requests/{phone}.json").json()[0]["description"]  # fmt: skip
    # another channel's order shows its title only, never the content
    [other] = client.get(f"{V2}/requests/{phone}.json").json()
    assert other["description"] == "学校门口早上堵车严重，请交警疏导"
    for fmt in ("json", "xml"):
        r = client.get(f"{V2}/requests/1999010100001.{fmt}")
        assert r.status_code == 404 and error_of(r, fmt)[0] == 404


def test_closed_orders_carry_the_public_answer_and_updates_follow_the_states(
    client: TestClient, db: Database
) -> None:
    key = issue(db)
    dispatched = post(client, key).json()[0]["service_request_id"]
    answered = post(client, key, service_code="0201").json()[0]["service_request_id"]
    dispatcher, agent = auth(client, "dispatcher1"), auth(client, "agent1")
    with db.read() as s:
        ids = dict(s.execute(select(Ticket.number, Ticket.id)).all())
    r = client.post(f"{TICKETS}/{ids[dispatched]}/actions/dispatch", json={"lead": "S11"},
                    headers=dispatcher)  # fmt: skip
    assert r.status_code == 200, r.text
    r = client.post(f"{TICKETS}/{ids[answered]}/actions/answer",
                    json={"answer": "已为您查询：本学期放学时间为下午四点半。"}, headers=agent)  # fmt: skip
    assert r.status_code == 200, r.text

    [d] = client.get(f"{V2}/requests/{dispatched}.json").json()
    assert d["status"] == "open" and d["agency_responsible"] == "东一街道"
    assert d["expected_datetime"] and d["expected_datetime"].endswith("+08:00")
    [a] = client.get(f"{V2}/requests/{answered}.json").json()
    assert a["status"] == "closed"
    assert "下午四点半" in a["status_notes"]
    closed = client.get(f"{V2}/requests.xml", params={"status": "closed"})
    assert [r["service_request_id"] for r in as_records(parse(closed, "xml"))] == [answered]

    start = (utcnow() - timedelta(hours=1)).isoformat()
    got = client.get(f"{V2}/servicerequestupdates.json", params={"start_date": start}).json()
    assert [(u["service_request_id"], u["status"]) for u in got] == [
        (dispatched, "open"),
        (answered, "open"),
        (dispatched, "in_progress"),
        (answered, "closed"),
    ]
    for u in got:
        assert set(u) == {"update_id", "service_request_id", "status", "updated_datetime",
                          "description", "media_url"}  # fmt: skip
    assert "下午四点半" in got[-1]["description"]
    x = parse(client.get(f"{V2}/servicerequestupdates.xml", params={"start_date": start}), "xml")
    assert x.tag == "service_request_updates"
    assert [r["update_id"] for r in as_records(x)] == [str(u["update_id"]) for u in got]
    future = (utcnow() + timedelta(days=1)).isoformat()
    assert (
        client.get(f"{V2}/servicerequestupdates.json", params={"start_date": future}).json() == []
    )
    r = client.get(f"{V2}/servicerequestupdates.xml", params={"end_date": "soon"})
    assert r.status_code == 400 and error_of(r, "xml")[0] == 400


SECRETS = ("张三丰", "13800138000", "zhang@example.cn", "王五六", "13700137000", "李四光",
           "13900139000", "11010119900307123X", "62345678")  # fmt: skip


def test_no_personal_data_leaves_through_any_answer(client: TestClient, db: Database) -> None:
    key = issue(db)
    r = post(client, key, last_name="张", first_name="三丰", phone="13800138000",
             email="zhang@example.cn", address_string="东一路 8 号",
             description="我是张三丰，电话13800138000，邮箱 zhang@example.cn，楼道灯坏了")  # fmt: skip
    mine = r.json()[0]["service_request_id"]
    _phone_ticket(db, title="王五六 13700137000 反映堵车")
    secret = _phone_ticket(db, content="举报某店铺，联系人李四光 13900139000，身份证 11010119900307123X",
                           category_code="010101", request_type="report", address="西一路 3 号",
                           requester={"name": "李四光", "phone": "13900139000", "confidential": True})  # fmt: skip
    agent = auth(client, "agent1")
    with db.read() as s:
        ids = dict(s.execute(select(Ticket.number, Ticket.id)).all())
    r = client.post(f"{TICKETS}/{ids[mine]}/actions/answer",
                    json={"answer": "张三丰您好，已联系物业，维修电话 010-62345678。"}, headers=agent)  # fmt: skip
    assert r.status_code == 200, r.text
    urls = ["requests.{f}", "requests.{f}?extensions=true", f"requests/{mine}.{{f}}",
            f"requests/{secret.number}.{{f}}?extensions=true", "servicerequestupdates.{f}",
            "services.{f}", "discovery.{f}"]  # fmt: skip
    scanned = 0
    for fmt in ("json", "xml"):
        for url in urls:
            r = client.get(f"{V2}/{url.format(f=fmt)}")
            assert r.status_code == 200, (url, r.text)
            text = r.content.decode()
            leaked = [x for x in SECRETS if x in text]
            assert not leaked, (url, fmt, leaked)
            scanned += len(text)
    assert scanned > 5000
    [s_out] = client.get(f"{V2}/requests/{secret.number}.json").json()
    assert (s_out["description"], s_out["address"], s_out["lat"]) == (None, None, None)
    [m] = client.get(f"{V2}/requests/{mine}.json").json()
    assert "楼道灯坏了" in m["description"] and "张**" in m["description"]


# ---- the admin's page ---------------------------------------------------------------------


def test_the_admin_issues_a_key_once_stores_its_hash_and_revokes_it(
    client: TestClient, db: Database
) -> None:
    admin = Console(app_of(client), "admin1")
    page = admin.get("/console/admin/open311")
    assert (
        page.status_code == 200 and "Open311 接入" in page.text and "暂无 Open311 密钥" in page.text
    )
    assert 'href="/console/admin/open311"' in admin.get("/console/admin/users").text  # a tab
    refused = admin.post("/console/admin/open311", {"name": "随手拍", "username": "s11.handler"})
    assert refused.status_code == 422 and "受理" in refused.text
    r = admin.post("/console/admin/open311", {"name": "随手拍", "username": "agent1"})
    assert r.status_code == 201, r.text[:300]
    value = r.text.split('id="open311-key-value">', 1)[1].split("<", 1)[0]
    assert value.startswith("o311_")
    again = admin.get("/console/admin/open311")
    assert value not in again.text and "从未使用" in again.text  # shown once, never again
    with db.read() as s:
        row = s.scalar(select(Open311Key))
        assert row is not None and value not in (row.key_hash, row.hint)
    assert post(client, value).status_code == 201
    assert "从未使用" not in admin.get("/console/admin/open311").text
    r = admin.post(f"/console/admin/open311/{row.id}/revoke", {})
    assert r.status_code == 303
    assert post(client, value).status_code == 403
    assert "已吊销" in admin.get("/console/admin/open311").text
    audit_page = admin.get("/console/admin/audit").text
    assert "签发 Open311 密钥" in audit_page and "吊销 Open311 密钥" in audit_page
    assert "open311_key" not in audit_page and value not in audit_page
    agent = Console(app_of(client), "agent1")
    assert agent.get("/console/admin/open311").status_code == 403


def test_a_key_is_rate_limited_with_the_specifications_error_shape(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jiesu.auth.limits import Budget

    monkeypatch.setattr(service, "CREATE_BUDGET", Budget(limit=2, window=timedelta(minutes=1)))
    key, other = issue(db), issue(db)
    assert [post(client, key).status_code for _ in range(2)] == [201, 201]
    r = post(client, key, "xml")
    assert r.status_code == 429 and error_of(r, "xml")[0] == 429
    assert int(r.headers["Retry-After"]) > 0
    assert post(client, other).status_code == 201  # each key has its own budget
    # the key may also come in the query string, as some clients send it
    r = client.post(f"{V2}/requests.json?api_key={other}",
                    data={"service_code": "010101", "address_string": "东一路 8 号"})  # fmt: skip
    assert r.status_code == 201, r.text
