"""The dashboard (数据大屏): its figures equal what the tickets say, from the rollups alone; the
previous period, last year's line, 七有五性, overdue and warnings; who may open it; the page uses
nothing but the app's own static files. Both databases (the pure helpers need neither)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_PACK, auth
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from test_auth import Console, app_of, is_html

from jiesu.assessment import service as A
from jiesu.assessment.models import Warning
from jiesu.dashboard import service as D
from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.demo.generate import generate
from jiesu.org.models import Unit
from jiesu.settings import city_tz, get_settings
from jiesu.taxonomy.models import Category
from jiesu.tickets.models import Ticket

TICKETS = "/api/v1/tickets"
DATA = "/console/dashboard/data"


# ---- pure --------------------------------------------------------------------------------------


def test_the_same_day_last_year_keeps_the_calendar_date() -> None:
    assert D.year_before(date(2026, 11, 20)) == date(2025, 11, 20)
    assert D.year_before(date(2028, 2, 29)) == date(2027, 2, 28)


def test_a_change_against_nothing_is_no_change_at_all() -> None:
    assert D.change(12, 10) == pytest.approx(0.2)
    assert D.change(5, 10) == pytest.approx(-0.5)
    assert D.change(3, 0) is None


# ---- helpers -----------------------------------------------------------------------------------


def _new(client: TestClient, headers: dict[str, str], **fields: Any) -> int:
    body = {"channel": "phone", "content": "反映的问题请尽快安排处理，谢谢", **fields}
    r = client.post(TICKETS, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _today() -> date:
    return utcnow().astimezone(city_tz()).date()


def _direct(db: Database, start: date, end: date) -> dict[str, Counter[str]]:
    """What the ticket table says for the city-local days start … end (tests only: the
    dashboard itself never counts tickets over a period)."""
    tz = city_tz()
    lo = datetime(start.year, start.month, start.day, tzinfo=tz)
    hi = datetime(end.year, end.month, end.day, tzinfo=tz) + timedelta(days=1)
    out: dict[str, Counter[str]] = {k: Counter() for k in ("channel", "type", "category",
                                                           "top", "district", "street", "day")}  # fmt: skip
    with db.read() as s:
        units = {u.id: u.code for u in s.scalars(select(Unit))}
        by_id = A.category_index(db_session=s)
        rows = s.execute(
            select(Ticket.channel, Ticket.request_type, Ticket.category_id, Ticket.district_id,
                   Ticket.street_id, Ticket.created_at)
            .where(Ticket.created_at >= lo, Ticket.created_at < hi)
        ).all()  # fmt: skip
    for channel, rtype, category, district, street, created in rows:
        out["channel"][channel] += 1
        out["type"][rtype or ""] += 1
        row = by_id.get(category) if category else None
        out["top"][row.top if row else ""] += 1
        if row:
            out["category"][row.code] += 1
        out["district"][units.get(district, "") if district else ""] += 1
        if district:
            out["street"][units.get(street, "") if street else ""] += 1
        out["day"][created.astimezone(tz).date().isoformat()] += 1
    return out


def _keyed(rows: list[dict[str, Any]], key: str = "key") -> dict[str, int]:
    return {r[key]: r["n"] for r in rows}


# ---- the figures -------------------------------------------------------------------------------


def test_the_figures_equal_what_the_tickets_say(db: Database, client: TestClient) -> None:
    agent = auth(client, "agent1")
    phone = {"category_code": "010101", "channel": "phone", "request_type": "complain",
             "street": "S11"}  # fmt: skip
    web = {"category_code": "0201", "channel": "web", "request_type": "consult", "street": "S21"}
    heat = {"category_code": "0301", "channel": "wechat", "request_type": "help", "street": "S12"}
    made = [phone] * 3 + [web] * 2 + [heat] + [{"channel": "app"}]
    for fields in made:
        _new(client, agent, **fields)
    today = _today()
    with db.read() as s:
        data = D.dashboard(7, db_session=s)
    direct = _direct(db, today - timedelta(days=6), today)
    h = data["headline"]
    assert h["requests"] == h["today"] == sum(direct["channel"].values()) == len(made)
    assert h["previous"] == 0 and h["change"] is None
    assert _keyed(data["distribution"]["channel"]) == dict(direct["channel"])
    assert _keyed(data["distribution"]["channel"]) == {"phone": 3, "web": 2, "wechat": 1, "app": 1}
    assert _keyed(data["distribution"]["type"]) == dict(direct["type"])
    assert _keyed(data["distribution"]["top"]) == dict(direct["top"])
    names = {r["key"]: r["name"] for r in data["distribution"]["type"]}
    assert names["complain"] == "投诉" and names[""] == "未分类"
    assert {r["key"]: r["name"] for r in data["distribution"]["channel"]}["wechat"] == "微信"
    areas = {d["code"]: d for d in data["areas"]["districts"]}
    assert {c: d["n"] for c, d in areas.items()} == {
        c: n for c, n in direct["district"].items() if c
    }
    assert data["areas"]["unknown"] == direct["district"][""]
    streets = {s["code"]: s["n"] for d in areas.values() for s in d["streets"]}
    assert streets == dict(direct["street"])
    assert areas["D1"]["name"] == "东区" and areas["D1"]["streets"][0]["name"] == "东一街道"
    items = {i["code"]: i for i in data["items"]}
    assert {c: i["n"] for c, i in items.items()} == dict(direct["category"])
    assert items["010101"]["name"] == "物业服务" and items["010101"]["top_name"] == "城乡建设"
    assert data["items"][0]["code"] == "010101"  # the most frequent first
    # 七有五性: 010101 takes 住有所居/宜居性 from 0101; 0201 its own 学有所教 and 02's 公正性
    seven = _keyed(data["seven_haves"], "name")
    five = _keyed(data["five_qualities"], "name")
    assert list(seven) == ["幼有所育", "学有所教", "劳有所得", "病有所医", "老有所养", "住有所居",
                           "弱有所扶"]  # fmt: skip
    assert seven["住有所居"] == 3 + 1 and seven["学有所教"] == 2 and sum(seven.values()) == 6
    assert five == {"便利性": 1, "宜居性": 3, "多样性": 0, "公正性": 2, "安全性": 0}
    assert data["trend"]["days"][-1] == today.isoformat() and len(data["trend"]["days"]) == 30
    assert data["trend"]["counts"][-1] == len(made) and data["trend"]["last_year"] is None
    assert data["map"]["available"] is False and data["points"] == []


def test_the_sums_of_seven_haves_and_five_qualities_follow_the_categories(
    db: Database,
) -> None:
    now = datetime(2026, 11, 20, 15, 0, tzinfo=city_tz())
    generate(db, days=12, per_day=40, now=now, pack_dir=TINY_PACK, seed=7)
    direct = _direct(db, date(2026, 11, 14), date(2026, 11, 20))
    with db.read() as s:
        data = D.dashboard(7, db_session=s, now=now)
        by_code = {c.code: c for c in A.category_index(db_session=s).values()}
    seven: Counter[str] = Counter()
    five: Counter[str] = Counter()
    for code, n in direct["category"].items():
        for name in by_code[code].seven_haves:
            seven[name] += n
        for name in by_code[code].five_qualities:
            five[name] += n
    assert {k: v for k, v in _keyed(data["seven_haves"], "name").items() if v} == dict(seven)
    assert {k: v for k, v in _keyed(data["five_qualities"], "name").items() if v} == dict(five)
    assert sum(seven.values()) > 0


@pytest.mark.parametrize("days", [1, 7, 30])
def test_the_period_its_predecessor_and_the_trend_come_from_the_rollup(
    db: Database, days: int
) -> None:
    now = datetime(2026, 11, 20, 15, 0, tzinfo=city_tz())
    generate(db, days=70, per_day=30, now=now, pack_dir=TINY_PACK, seed=11)
    today = now.date()
    start = today - timedelta(days=days - 1)
    prev_end = start - timedelta(days=1)
    prev_start = prev_end - timedelta(days=days - 1)
    this = _direct(db, start, today)
    before = _direct(db, prev_start, prev_end)
    trend = _direct(db, today - timedelta(days=29), today)
    with db.read() as s:
        data = D.dashboard(days, db_session=s, now=now)
    h = data["headline"]
    n, p = sum(this["channel"].values()), sum(before["channel"].values())
    assert (h["requests"], h["previous"]) == (n, p) and n > 0 and p > 0
    assert h["change"] == pytest.approx((n - p) / p, abs=1e-4)
    assert h["today"] == trend["day"][today.isoformat()]
    assert data["previous"] == {"start": prev_start.isoformat(), "end": prev_end.isoformat()}
    for item in data["items"]:
        assert item["n"] == this["category"][item["code"]]
        assert item["previous"] == before["category"][item["code"]]
        expected = D.change(item["n"], item["previous"])
        assert item["change"] == (None if expected is None else pytest.approx(expected))
    top = sorted(this["category"].items(), key=lambda kv: (-kv[1], kv[0]))[: D.TOP_ITEMS]
    assert [(i["code"], i["n"]) for i in data["items"]] == top
    assert data["trend"]["counts"] == [trend["day"][d] for d in data["trend"]["days"]]
    assert len(data["trend"]["days"]) == 30 and data["trend"]["last_year"] is None
    # 三率 as scope_rates gives them for the city
    with db.read() as s:
        rates, _ = A.scope_rates(start, today, db_session=s, now=now)
    for key in ("response", "resolution", "satisfaction"):
        assert h["rates"][key]["value"] == rates[key].value
        assert h["rates"][key]["denominator"] == rates[key].denominator


def test_last_years_line_appears_only_when_the_rollup_has_those_days(db: Database) -> None:
    now = datetime(2026, 11, 20, 15, 0, tzinfo=city_tz())
    a_year_ago = datetime(2025, 11, 20, 15, 0, tzinfo=city_tz())
    generate(db, days=10, per_day=20, now=a_year_ago, pack_dir=TINY_PACK, seed=1)
    generate(db, days=5, per_day=20, now=now, pack_dir=TINY_PACK, seed=2)
    last = _direct(db, date(2025, 10, 22), date(2025, 11, 20))
    with db.read() as s:
        data = D.dashboard(1, db_session=s, now=now)
        earlier = D.dashboard(1, db_session=s, now=now - timedelta(days=60))
    t = data["trend"]
    assert t["last_year_days"][-1] == "2025-11-20" and t["last_year_days"][0] == "2025-10-22"
    assert t["last_year"] == [last["day"][d] for d in t["last_year_days"]]
    assert sum(t["last_year"]) == sum(last["day"].values()) > 0
    assert earlier["trend"]["last_year"] is None and earlier["trend"]["last_year_days"] is None


def test_overdue_orders_and_open_warnings_are_counted_live(
    db: Database, client: TestClient
) -> None:
    agent, dispatcher = auth(client, "agent1"), auth(client, "dispatcher1")
    late = _new(client, agent, category_code="010101", street="S11")
    _new(client, agent, category_code="010101", street="S21")  # never dispatched: not overdue
    r = client.post(f"{TICKETS}/{late}/actions/dispatch", json={"lead": "S11"}, headers=dispatcher)
    assert r.status_code == 200, r.text
    with db.write() as s:
        for i, (kind, status) in enumerate([("burst", "open"), ("burst", "open"),
                                            ("repeat", "open"), ("repeat", "task"),
                                            ("bounce", "dismissed")]):  # fmt: skip
            s.add(Warning(kind=kind, key=f"{kind}:{i}", day=_today(), title="预警",
                          explanation="说明", status=status))  # fmt: skip
    with db.read() as s:
        due = s.scalar(select(Ticket.due_at).where(Ticket.id == late))
        assert due is not None
        now_data = D.dashboard(1, db_session=s)
        later = D.dashboard(1, db_session=s, now=due + timedelta(minutes=1))
        soon = D.dashboard(1, db_session=s, now=due - timedelta(hours=2))
    assert now_data["headline"]["overdue_open"] == 0
    assert later["headline"]["overdue_open"] == 1
    assert later["alerts"]["overdue_by_district"] == [{"code": "D1", "name": "东区", "n": 1}]
    assert soon["headline"]["due_soon"] == 1 and soon["headline"]["overdue_open"] == 0
    assert later["headline"]["warnings_open"] == 3
    assert later["alerts"]["warnings_by_kind"] == [
        {"kind": "burst", "name": "诉求激增", "n": 2},
        {"kind": "repeat", "name": "重复诉求", "n": 1},
    ]


def test_counting_requests_reads_the_rollups_not_the_ticket_table(db: Database) -> None:
    now = datetime(2026, 11, 20, 15, 0, tzinfo=city_tz())
    generate(db, days=3, per_day=20, now=now, pack_dir=TINY_PACK, seed=4)
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()).lower())

    engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        with db.read() as s:
            D.dashboard(30, db_session=s, now=now)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    on_tickets = [q for q in seen if re.search(r"\bfrom ticket\b", q)]
    # the three live figures only: past due, due within 24 h (index status, due_at) and the
    # latest points (index created_at, LIMIT)
    assert len(on_tickets) == 3, on_tickets
    assert all("due_at" in q or "limit" in q for q in on_tickets), on_tickets
    assert len([q for q in seen if "from intake_rollup" in q]) == 3
    assert len(seen) <= 16, seen


# ---- boundaries ------------------------------------------------------------------------------


@pytest.fixture
def boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    def square(x: float) -> dict[str, Any]:
        ring = [[x, 30.0], [x + 1, 30.0], [x + 1, 31.0], [x, 31.0], [x, 30.0]]
        return {"type": "Polygon", "coordinates": [ring]}

    path = tmp_path / "districts.geojson"
    features = [
        {"type": "Feature", "properties": {"code": "D1", "name": "x"}, "geometry": square(116)},
        {"type": "Feature", "properties": {"adcode": "D2"}, "geometry": square(117)},
        {"type": "Feature", "properties": {"code": "S11"}, "geometry": square(116)},  # a street
        {"type": "Feature", "properties": {"code": "ELSEWHERE"}, "geometry": square(118)},
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), "utf-8")
    monkeypatch.setenv("JIESU_BOUNDARIES", str(path))
    get_settings.cache_clear()
    yield path
    monkeypatch.delenv("JIESU_BOUNDARIES")
    get_settings.cache_clear()


def test_with_boundaries_the_districts_are_served_for_the_map(
    db: Database, client: TestClient, boundaries: Path
) -> None:
    supervisor = Console(app_of(client), "supervisor1")
    geo = supervisor.get("/console/dashboard/boundaries.json")
    assert geo.status_code == 200
    features = geo.json()["features"]
    assert [f["properties"] for f in features] == [
        {"code": "D1", "name": "东区"},
        {"code": "D2", "name": "西区"},
    ]
    assert supervisor.get(DATA).json()["map"] == {
        "available": True,
        "url": "/console/dashboard/boundaries.json",
    }


def test_without_boundaries_the_map_is_empty_and_the_page_falls_back(
    db: Database, client: TestClient
) -> None:
    supervisor = Console(app_of(client), "supervisor1")
    geo = supervisor.get("/console/dashboard/boundaries.json")
    assert geo.status_code == 200 and geo.json() == {"type": "FeatureCollection", "features": []}
    assert supervisor.get(DATA).json()["map"]["available"] is False


# ---- the page and who may open it --------------------------------------------------------------


def test_the_page_and_its_data_for_a_leader(db: Database, client: TestClient) -> None:
    _new(client, auth(client, "agent1"), category_code="0201", street="S21", channel="web")
    supervisor = Console(app_of(client), "supervisor1")
    page = supervisor.get("/console/dashboard")
    assert page.status_code == 200 and is_html(page)
    assert "数据大屏" in page.text and 'data-chart="areas"' in page.text
    for days in (1, 7, 30):
        r = supervisor.get(DATA, params={"days": days})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        assert body["days"] == days and body["headline"]["requests"] == 1
        assert set(body) >= {"headline", "areas", "distribution", "items", "trend",
                             "seven_haves", "five_qualities", "alerts", "map", "points"}  # fmt: skip
    assert supervisor.get(DATA, params={"days": 5}).status_code == 422
    assert supervisor.get("/console/dashboard", params={"days": 2}).status_code == 422


def test_the_page_loads_only_the_apps_own_files(db: Database, client: TestClient) -> None:
    supervisor = Console(app_of(client), "supervisor1")
    page = supervisor.get("/console/dashboard").text
    assets = re.findall(r"<(?:script|link)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", page)
    assert "/static/vendor/echarts/echarts.min.js" in assets
    assert any(a.startswith("/static/dashboard.js") for a in assets)
    assert any(a.startswith("/static/dashboard.css") for a in assets)
    assert all(a.startswith("/static/") for a in assets), assets
    assert not re.search(r"<(?:script|link|img|iframe)\b[^>]*https?://", page)
    for path in ("/static/vendor/echarts/echarts.min.js", "/static/dashboard.js",
                 "/static/dashboard.css"):  # fmt: skip
        r = client.get(path)
        assert r.status_code == 200 and len(r.content) > 1000, path
    echarts = client.get("/static/vendor/echarts/echarts.min.js").text
    assert "registerMap" in echarts
    script = client.get("/static/dashboard.js").text
    assert not re.search(r"https?://", script)


@pytest.mark.parametrize("username", ["s11.handler", "agent1", "callback1"])
def test_a_role_without_dashboard_view_gets_403(
    db: Database, client: TestClient, username: str
) -> None:
    console = Console(app_of(client), username)
    for path in ("/console/dashboard", DATA, "/console/dashboard/boundaries.json"):
        r = console.get(path)
        assert r.status_code == 403 and is_html(r), (path, r.status_code)
        assert "没有权限" in r.text


def test_without_signing_in_the_dashboard_asks_to_sign_in(db: Database, client: TestClient) -> None:
    anonymous = TestClient(app_of(client), follow_redirects=False)
    for path in ("/console/dashboard", DATA):
        r = anonymous.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    bearer = auth(client, "supervisor1")  # a bearer token is not a console session
    r = client.get(DATA, headers=bearer, follow_redirects=False)
    assert r.status_code == 303


def test_the_dashboard_of_an_empty_city_shows_zeros(db: Database) -> None:
    with db.read() as s:
        assert (s.scalar(select(func.count()).select_from(Category)) or 0) > 0
        data = D.dashboard(30, db_session=s)
    h = data["headline"]
    assert (h["requests"], h["today"], h["overdue_open"], h["warnings_open"]) == (0, 0, 0, 0)
    assert all(r["value"] is None for r in h["rates"].values())
    assert data["items"] == [] and data["areas"] == {"districts": [], "unknown": 0}
    assert all(x["n"] == 0 for x in data["seven_haves"] + data["five_qualities"])


def test_the_latest_geolocated_requests_are_points_rounded_to_about_100_m(
    db: Database, client: TestClient
) -> None:
    agent = auth(client, "agent1")
    _new(client, agent, lat=39.904211, lng=116.407396)
    _new(client, agent)  # no point
    with db.read() as s:
        data = D.dashboard(1, db_session=s)
        tomorrow = D.dashboard(1, db_session=s, now=utcnow() + timedelta(hours=25))
    assert data["points"] == [[116.407, 39.904]]
    assert tomorrow["points"] == []


def test_a_district_supervisor_sees_their_district_only(db: Database, client: TestClient) -> None:
    """The centre sees the city; a district's people their district (counts, rates, overdue)."""
    from jiesu.auth.passwords import hash_password
    from jiesu.org.models import Unit, User

    agent = auth(client, "agent1")
    for street in ("S11", "S11", "S21"):
        r = client.post("/api/v1/tickets", json={"channel": "phone", "street": street,
                        "content": "小区楼道灯坏了一个月没人修，请尽快处理"}, headers=agent)  # fmt: skip
        assert r.status_code == 201, r.text
    with db.write() as s:
        d1 = s.scalar(select(Unit.id).where(Unit.code == "D1"))
        s.add(User(username="d1.supervisor", name="东区督办", role="supervisor", unit_id=d1,
                   password_hash=hash_password("secret123")))  # fmt: skip
    city = Console(app_of(client), "supervisor1").get("/console/dashboard/data?days=1").json()
    east = Console(app_of(client), "d1.supervisor").get("/console/dashboard/data?days=1").json()
    assert city["scope"] is None and city["headline"]["requests"] == 3
    assert east["scope"]["code"] == "D1" and east["headline"]["requests"] == 2
    assert [d["code"] for d in east["areas"]["districts"]] == ["D1"]
