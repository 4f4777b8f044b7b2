"""Exports of the lists (issue 15 §6): the CSV and the XLSX hold exactly the rows of the list the
user sees — same filters, same order, same scope, masked stays masked — from the console, the
API and `jiesu export`; Chinese file names; rankings and warnings; each export audit-logged.

One generated tiny city per backend (module scope, 400 tickets) serves the read-only tests; the
ones that add rows take the per-test `client`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import openpyxl
import pytest
from conftest import BACKENDS, TINY_PACK, Templates, auth, tiny_city
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_auth import Console, app_of
from typer.testing import CliRunner

from jiesu.assessment import service as A
from jiesu.assessment.models import Warning
from jiesu.auth.models import AuditLog
from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.demo.generate import generate
from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.tickets.models import Assignment, Ticket

TICKETS = "/api/v1/tickets"
PERSON = ("张三丰", "13800138000")
SECRET = ("李四光", "13900139000")
# The demo history ends on a fixed day (the suite passes at any hour and on any date).
HISTORY_END = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, templates: Templates, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Database]]:
    with tiny_city(request.param, templates, tmp_path_factory) as (client, db):
        generate(db, days=10, per_day=40, now=HISTORY_END, pack_dir=TINY_PACK, seed=15)
        for person, confidential in ((PERSON, False), (SECRET, True)):
            r = client.post(TICKETS, json={
                "channel": "phone", "content": "暖气不热，家里只有十二度", "title": "=HYPERLINK(1)",
                "requester": {"name": person[0], "phone": person[1],
                              "confidential": confidential}}, headers=auth(client, "agent1"))  # fmt: skip
            assert r.status_code == 201, r.text
            d = client.post(f"{TICKETS}/{r.json()['id']}/actions/dispatch", json={"lead": "S11"},
                            headers=auth(client, "dispatcher1"))  # fmt: skip
            assert d.status_code == 200, d.text
        yield client, db


def csv_rows(content: bytes) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs for Chinese
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))


def xlsx_rows(content: bytes) -> list[list[Any]]:
    book = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    rows: list[list[Any]] = []
    for sheet in book.worksheets:
        part = [list(r) for r in sheet.iter_rows(values_only=True)]
        rows.extend(part if not rows else part[1:])  # a later sheet repeats the header
    return rows


def as_text(rows: list[list[Any]]) -> list[list[str]]:
    """XLSX cells as the CSV writes them (datetimes in city time, text formulas-safe)."""

    def one(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, datetime):
            return v.strftime("%Y-%m-%d %H:%M")
        if isinstance(v, float) and v == int(v):
            return str(int(v))
        if isinstance(v, str) and v.startswith(("=", "+", "-", "@")):
            return "'" + v
        return str(v)

    return [[one(v) for v in r] for r in rows]


def filename_of(r: Any) -> str:
    match = re.search(r"filename\*=UTF-8''([^;]+)", r.headers["content-disposition"])
    assert match, r.headers["content-disposition"]
    return unquote(match.group(1))


def all_pages(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items, page = [], 1
    while True:
        body = client.get(TICKETS, params={**params, "page": page, "page_size": 200},
                          headers=headers).json()  # fmt: skip
        items += body["items"]
        if page * 200 >= body["total"]:
            return items
        page += 1


FILTERS = [
    {},
    {"status": ["dispatched", "accepted"]},
    {"category": "01"},
    {"text": "暖气"},
    {"unit": "D1"},
    {"status": ["closed"], "category": "0101"},
]


@pytest.mark.parametrize("params", FILTERS, ids=lambda p: ",".join(p) or "all")
def test_the_api_export_holds_the_rows_of_the_api_list_in_its_order(
    world: tuple[TestClient, Database], params: dict[str, Any]
) -> None:
    client, _ = world
    headers = auth(client, "dispatcher1")
    listed = [t["number"] for t in all_pages(client, headers, **params)]
    r = client.get("/api/v1/exports/tickets.csv", params=params, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    rows = csv_rows(r.content)
    assert rows[0][:3] == ["工单编号", "受理时间", "渠道"]
    assert [row[0] for row in rows[1:]] == listed
    x = client.get("/api/v1/exports/tickets.xlsx", params=params, headers=headers)
    assert x.status_code == 200 and x.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")  # fmt: skip
    assert as_text(xlsx_rows(x.content)) == rows


def test_the_console_export_is_the_search_page_with_its_filters(
    world: tuple[TestClient, Database],
) -> None:
    client, _ = world
    browser = Console(app_of(client), "analyst1")
    query = {"status": "closed", "category": "01", "sort": "created"}
    page = browser.get("/console/tickets", params=query).text
    total = int(re.search(r"共 (\d+) 件", page).group(1))  # type: ignore[union-attr]
    shown = re.findall(r'<td class="num"><a href="/console/tickets/\d+">(\d+)</a>', page)
    link = re.search(r'href="(/console/exports/tickets\.csv[^"]*)"', page)
    assert link, "the list page links to its export"
    r = browser.get(link.group(1).replace("&amp;", "&"))
    assert r.status_code == 200
    rows = csv_rows(r.content)
    assert len(rows) - 1 == total and [row[0] for row in rows[1 : len(shown) + 1]] == shown
    second = browser.get("/console/tickets", params={**query, "page": 2}).text
    more = re.findall(r'<td class="num"><a href="/console/tickets/\d+">(\d+)</a>', second)
    assert more and [row[0] for row in rows[len(shown) + 1 : len(shown) + 1 + len(more)]] == more
    assert {row[12] for row in rows[1:]} == {"已关闭"}  # the status's Chinese name
    assert filename_of(r).startswith("工单_") and filename_of(r).endswith(".csv")


def test_a_workbench_queue_exports_its_own_rows(world: tuple[TestClient, Database]) -> None:
    client, _ = world
    browser = Console(app_of(client), "s11.handler")
    page = browser.get("/console/inbox", params={"tab": "todo"}).text
    shown = re.findall(r'<td class="num"><a href="/console/tickets/\d+">(\d+)</a>', page)
    link = re.search(r'href="(/console/exports/tickets\.xlsx[^"]*)"', page)
    assert shown and link and "bench=inbox" in link.group(1)
    r = browser.get(link.group(1).replace("&amp;", "&"))
    assert r.status_code == 200
    rows = xlsx_rows(r.content)
    assert [row[0] for row in rows[1:]][: len(shown)] == shown
    assert filename_of(r).startswith("承办工单_待办工单_")
    # a workbench the role does not have is refused, as its page is
    assert browser.get("/console/exports/tickets.csv", params={"bench": "dispatch"}
                       ).status_code == 403  # fmt: skip


def test_a_handler_exports_only_the_tickets_of_their_units_tree(
    world: tuple[TestClient, Database],
) -> None:
    client, db = world
    for username, unit in (("s11.handler", "S11"), ("s12.handler", "S12")):
        r = client.get("/api/v1/exports/tickets.csv", headers=auth(client, username))
        numbers = {row[0] for row in csv_rows(r.content)[1:]}
        with db.read() as s:
            theirs = set(s.scalars(
                select(Ticket.number).join(Assignment, Assignment.ticket_id == Ticket.id)
                .join(Unit, Unit.id == Assignment.unit_id).where(Unit.code == unit)))  # fmt: skip
            every = set(s.scalars(select(Ticket.number)))
        assert numbers == theirs and numbers < every, username


@pytest.mark.parametrize("username", ["admin1", "agent1", "s11.handler", "s11.admin"])
def test_masked_stays_masked_in_both_formats(
    world: tuple[TestClient, Database], username: str
) -> None:
    client, _ = world
    browser = Console(app_of(client), username)
    for fmt in ("csv", "xlsx"):
        r = browser.get(f"/console/exports/tickets.{fmt}", params={"text": "暖气"})
        assert r.status_code == 200
        rows = as_text(xlsx_rows(r.content)) if fmt == "xlsx" else csv_rows(r.content)
        header = rows[0]
        name, phone, title = header.index("诉求人"), header.index("电话"), header.index("标题")
        people = {(row[name], row[phone]) for row in rows[1:]}
        assert ("张**", "138****8000") in people
        assert ("保密", "") in people  # a confidential requester: nothing of them
        flat = repr(rows)
        assert not [v for v in (*PERSON, *SECRET) if v in flat], username
        assert "'=HYPERLINK(1)" in {row[title] for row in rows[1:]}  # never a live formula


def test_an_unknown_filter_is_refused_before_anything_is_sent(
    world: tuple[TestClient, Database],
) -> None:
    client, _ = world
    headers = auth(client, "dispatcher1")
    r = client.get("/api/v1/exports/tickets.csv", params={"status": "bogus"}, headers=headers)
    assert r.status_code == 422 and "status" in r.text
    r = client.get("/api/v1/exports/tickets.xlsx", params={"unit": "NOPE"}, headers=headers)
    assert r.status_code == 422
    r = client.get("/api/v1/exports/tickets.csv", params={"phone": "13800138000"},
                   headers=auth(client, "s11.handler"))  # fmt: skip
    assert r.status_code == 403  # as the list: only the centre searches by phone


def test_rankings_export_equals_the_three_rates_table(world: tuple[TestClient, Database]) -> None:
    client, db = world
    month = f"{HISTORY_END.astimezone(city_tz()):%Y-%m}"  # the history's month, any day
    api = client.get("/api/v1/metrics/units", params={"period": month, "kind": "street"},
                     headers=auth(client, "supervisor1")).json()["rows"]  # fmt: skip
    r = client.get("/api/v1/exports/rankings.xlsx", params={"period": month, "kind": "street"},
                   headers=auth(client, "supervisor1"))  # fmt: skip
    assert r.status_code == 200
    rows = xlsx_rows(r.content)
    header = rows[0]
    assert header[:5] == ["名次", "单位", "单位编码", "工单", "待响应"] and "响应率（%）" in header
    assert [row[2] for row in rows[1:]] == [x["code"] for x in api] and api
    response = header.index("响应率（%）")
    for row, x in zip(rows[1:], api, strict=True):
        assert row[3] == x["orders"]
        value = x["rates"]["response"]["value"]
        assert row[response] == (None if value is None else round(value * 100, 2))
    assert filename_of(r) == f"考评排名_街道（乡镇）_{month}_实时数据.xlsx"
    # the console's page and its link: a unit admin sees the units under their own only
    browser = Console(app_of(client), "s11.admin")
    page = browser.get("/console/assessment", params={"period": month}).text
    link = re.search(r'href="(/console/exports/rankings\.csv[^"]*)"', page)
    assert link
    mine = csv_rows(browser.get(link.group(1).replace("&amp;", "&")).content)
    with db.read() as s:
        units = A.unit_index(db_session=s)
    assert all(units.by_code[row[2]].path.startswith(units.by_code["S11"].path)
               and row[2] != "S11" for row in mine[1:])  # fmt: skip
    bad = client.get("/api/v1/exports/rankings.csv", params={"kind": "planet"},
                     headers=auth(client, "supervisor1"))  # fmt: skip
    assert bad.status_code == 422
    assert client.get("/api/v1/exports/rankings.csv",
                      headers=auth(client, "s11.handler")).status_code == 403  # fmt: skip


def test_warnings_export_is_the_readers_warnings(client: TestClient, db: Database) -> None:
    made = client.post(TICKETS, json={"channel": "phone", "content": "楼道灯坏了很久"},
                       headers=auth(client, "agent1")).json()  # fmt: skip
    today = HISTORY_END.astimezone(city_tz()).date()  # a fixed day: the list has no window
    with db.write() as s:
        s11 = A.unit_index(db_session=s).by_code["S11"]
        s.add(Warning(kind="repeat", key="w1", day=today, title="同一来电人30天内3次诉求",
                      explanation="30 天内 3 次", area_unit_id=s11.id, evidence=[made["id"]],
                      figures={"count": 3}, status="open"))  # fmt: skip
        s.add(Warning(kind="topic", key="w2", day=today - timedelta(days=1), title="新兴话题：充电桩",
                      explanation="全市", evidence=[], status="open"))  # fmt: skip
    api = client.get("/api/v1/warnings", headers=auth(client, "dispatcher1")).json()
    r = client.get("/api/v1/exports/warnings.csv", headers=auth(client, "dispatcher1"))
    rows = csv_rows(r.content)
    assert rows[0][:3] == ["日期", "类型", "预警"]
    assert [row[2] for row in rows[1:]] == [w["title"] for w in api]
    assert rows[1][1] == "重复诉求" and rows[1][5] == "1"
    assert filename_of(r).startswith("预警_待处置_")
    assert client.get("/api/v1/exports/warnings.csv",
                      headers=auth(client, "s11.handler")).status_code == 403  # fmt: skip
    page = Console(app_of(client), "dispatcher1").get("/console/warnings").text
    assert 'href="/console/exports/warnings.xlsx?status=open"' in page


def test_every_export_is_audit_logged_with_its_filters(
    world: tuple[TestClient, Database],
) -> None:
    client, db = world
    r = client.get("/api/v1/exports/tickets.csv", params={"category": "0101"},
                   headers=auth(client, "analyst1"))  # fmt: skip
    assert r.status_code == 200
    with db.read() as s:
        row = s.scalars(select(AuditLog).where(AuditLog.action == "export")
                        .order_by(AuditLog.id.desc())).first()  # fmt: skip
    assert row is not None and row.username == "analyst1"
    assert row.detail["list"] == "tickets" and row.detail["format"] == "csv"
    assert row.detail["filters"] == {"category": "0101"}


def test_the_cli_exports_with_the_named_users_permissions(
    world: tuple[TestClient, Database], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jiesu.cli import app as cli
    from jiesu.settings import get_settings

    client, db = world
    monkeypatch.setenv("JIESU_DATABASE_URL", db.url)
    get_settings.cache_clear()
    try:
        out = tmp_path / "工单.xlsx"
        result = CliRunner().invoke(cli, ["export", "tickets", "--as", "s11.handler", "-f", "xlsx",
                                          "--status", "dispatched", "-o", str(out)])  # fmt: skip
        assert result.exit_code == 0, result.output
        web = client.get("/api/v1/exports/tickets.csv", params={"status": "dispatched"},
                         headers=auth(client, "s11.handler"))  # fmt: skip
        assert as_text(xlsx_rows(out.read_bytes())) == csv_rows(web.content)
        refused = CliRunner().invoke(cli, ["export", "rankings", "--as", "s11.handler",
                                           "-o", str(tmp_path / "r.csv")])  # fmt: skip
        assert refused.exit_code == 2 and not (tmp_path / "r.csv").exists()
        nobody = CliRunner().invoke(cli, ["export", "tickets", "--as", "nobody"])
        assert nobody.exit_code == 2
    finally:
        get_settings.cache_clear()


def test_the_delivery_log_exports_for_the_admin_with_addresses_masked(
    client: TestClient, db: Database
) -> None:
    from jiesu.delivery.models import Delivery
    from jiesu.tickets.models import Outbox

    made = client.post(TICKETS, json={"channel": "phone", "content": "路灯坏了", "requester": {
        "name": PERSON[0], "phone": PERSON[1]}}, headers=auth(client, "agent1")).json()  # fmt: skip
    now = utcnow()
    with db.write() as s:
        outbox = s.scalars(select(Outbox).where(Outbox.ticket_id == made["id"])).first()
        assert outbox is not None
        for i, (channel, address, status) in enumerate((
            ("sms", PERSON[1], "dead"), ("email", "zhangsan@example.com", "delivered"),
            ("webhook", "https://units.example/hook?key=s3cret", "pending"))):  # fmt: skip
            s.add(Delivery(outbox_id=outbox.id, ticket_id=made["id"], channel=channel,
                           key=f"k{i}", address=address, body={}, event_type="ticket.receive",
                           status=status, attempts=i + 1, next_at=now,
                           created_at=now - timedelta(minutes=i)))  # fmt: skip
    admin = Console(app_of(client), "admin1")
    r = admin.get("/console/exports/deliveries.csv")
    assert r.status_code == 200, r.text
    rows = csv_rows(r.content)
    assert rows[0][:3] == ["创建时间", "工单编号", "渠道"]
    assert [(row[1], row[4]) for row in rows[1:]] == [
        (made["number"], "138****8000"), (made["number"], "z***@example.com"),
        (made["number"], "https://units.example/hook")]  # fmt: skip
    assert PERSON[1] not in r.text and "s3cret" not in r.text
    dead = admin.get("/console/exports/deliveries.xlsx", params={"status": "dead"})
    assert [row[1] for row in xlsx_rows(dead.content)[1:]] == [made["number"]]
    assert filename_of(dead).startswith("投递记录_")
    assert admin.get("/console/exports/deliveries.csv", params={"status": "nope"}
                     ).status_code == 422  # fmt: skip
    assert Console(app_of(client), "dispatcher1").get(
        "/console/exports/deliveries.csv").status_code == 403  # fmt: skip


@pytest.mark.parametrize(
    ("url", "who", "params"),
    [
        ("/console/exports/tickets.csv", "page", {"from": "2026-13-01"}),
        ("/console/exports/tickets.xlsx", "page", {"to": "9999-12-31"}),
        ("/api/v1/exports/tickets.csv", "api", {"created_from": "x"}),
        ("/console/exports/rankings.csv", "page", {"period": "2026-13"}),
        ("/api/v1/exports/rankings.xlsx", "api", {"period": "0001-01"}),
        ("/console/exports/deliveries.csv", "page", {"from": "2026-02-30"}),
    ],
)
def test_a_hostile_date_or_month_is_a_422_never_a_500(
    world: tuple[TestClient, Database], url: str, who: str, params: dict[str, str]
) -> None:
    client, _ = world
    if who == "api":
        r = client.get(url, params=params, headers=auth(client, "admin1"))
    else:
        r = Console(app_of(client), "admin1").get(url, params=params)
    assert r.status_code == 422, (url, params, r.status_code, r.text[:300])
