"""Warnings, their evidence and reports are scoped to the reader's tree (SPEC §1, issue 13 §5.1).

A small city with warnings and orders in both districts, readers at the centre, in a district, in
a street and in a city-level company; every warnings and reports route is read by each, and the
body must hold nothing outside the reader's tree (order numbers and titles, warning titles, unit
names), while the centre still sees everything. Both databases.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

import pytest
import time_machine
from conftest import auth
from conftest import principal as who
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select
from test_auth import Console, app_of

from jiesu.assessment.models import TicketLink, Warning
from jiesu.db.engine import Database
from jiesu.org.models import Unit, User
from jiesu.reports import build as B
from jiesu.settings import city_tz
from jiesu.tickets.actions import take_action
from jiesu.tickets.service import create_ticket
from jiesu.tickets.shapes import TicketCreate

DAY = date(2026, 10, 14)
NOW = datetime(2026, 11, 3, 9, 0, tzinfo=city_tz())  # the October report is due
# Readers added to the tiny city (same password as its users): a district's supervisor,
# dispatcher and analyst, and the unit admin of a city-level company.
EXTRA = {"d1.supervisor": ("supervisor", "D1"), "d1.dispatcher": ("dispatcher", "D1"),
         "d1.analyst": ("analyst", "D1"), "heat.admin": ("unit_admin", "C-RL")}  # fmt: skip


@dataclass
class City:
    """What was planted: order ids/numbers/titles by district, warning ids by tag."""

    numbers: dict[int, str]
    titles: dict[int, str]
    d1: list[int]  # led by 东一街道 (S11)
    d1_heat: int  # in 东区 but led by the heating company: no 东区 reader may open it
    d2: list[int]  # led by 西一镇 (S21)
    warnings: dict[str, int]  # tag → id

    def marks(self, ids: list[int]) -> list[str]:
        return [self.numbers[i] for i in ids] + [self.titles[i] for i in ids]


# The warnings: their tag is in their title, so a body can be searched for them.
PLANTED = {
    "W-D1": ("burst", "S11", None, "东一街道 供暖类诉求激增【W-D1】"),
    "W-D2": ("burst", "S21", None, "西一镇 供暖类诉求激增【W-D2】"),
    "W-MIX": ("repeat", "S11", None, "同一来电人（尾号1111）30天内诉求 2 次【W-MIX】"),
    "W-CITY": ("topic", None, None, "新出现的热点：暖气【W-CITY】"),
    "W-HEAT": ("inaction", None, "C-RL", "小城热力集团 办理效能下滑【W-HEAT】"),
}


def at(hour: int) -> datetime:
    return datetime.combine(DAY, time(hour), city_tz())


def plant(db: Database) -> City:
    with db.write() as s:
        units = {u.code: u for u in s.scalars(select(Unit))}
        same = s.scalar(select(User.password_hash).where(User.username == "agent1"))
        for username, (role, unit) in EXTRA.items():
            s.add(User(username=username, name=username, role=role, unit_id=units[unit].id,
                       password_hash=same, active=True, failed_logins=0))  # fmt: skip
    agent, dispatcher = who(db, "agent1"), who(db, "dispatcher1")
    numbers: dict[int, str] = {}
    titles: dict[int, str] = {}

    def order(title: str, street: str, lead: str, hour: int) -> int:
        with db.write() as s:
            t = create_ticket(TicketCreate(channel="phone", title=title, street=street,
                                           content=f"{title}，请尽快处理", category_code="0101",
                                           requester={"phone": "13900001111"}),
                              actor=agent, db_session=s, now=at(hour))  # fmt: skip
            take_action(t.id, "dispatch", {"lead": lead}, actor=dispatcher, db_session=s,
                        now=at(hour) + (at(1) - at(0)) / 6)  # fmt: skip
            numbers[t.id], titles[t.id] = t.number, title
            return t.id

    d1 = [order("东区和平里楼道灯坏了甲", "S11", "S11", 8),
          order("东区和平里楼道灯坏了乙", "S11", "S11", 9)]  # fmt: skip
    d1_heat = order("东区和平里暖气不热丙", "S11", "C-RL", 10)
    d2 = [order("西区西一镇路灯不亮丁", "S21", "S21", 11),
          order("西区西一镇路灯不亮戊", "S21", "S21", 12)]  # fmt: skip
    evidence = {"W-D1": [*d1, d1_heat], "W-D2": d2, "W-MIX": [d1[0], d2[0]],
                "W-CITY": [d1[1], d2[1]], "W-HEAT": [d1_heat]}  # fmt: skip
    ids = {}
    with db.write() as s:
        for tag, (kind, area, unit, title) in PLANTED.items():
            w = Warning(kind=kind, key=f"test:{tag}", day=DAY, title=title,
                        explanation=f"{title}：{'、'.join(numbers[i] for i in evidence[tag])}",
                        score=3.0, status="open",
                        area_unit_id=units[area].id if area else None,
                        unit_id=units[unit].id if unit else None, figures={"observed": 9.0},
                        evidence=evidence[tag], created_at=NOW)  # fmt: skip
            s.add(w)
            s.flush()
            ids[tag] = w.id
    return City(numbers, titles, d1, d1_heat, d2, ids)


@pytest.fixture
def city(db: Database) -> Iterator[City]:
    with time_machine.travel(NOW, tick=True):
        yield plant(db)


def absent(body: str, marks: list[str], who: str, where: str) -> None:
    leaked = [m for m in marks if m in body]
    assert not leaked, f"{who} {where}: {leaked}"


def present(body: str, marks: list[str], who: str, where: str) -> None:
    missing = [m for m in marks if m not in body]
    assert not missing, f"{who} {where}: {missing}"


# ---- warnings ------------------------------------------------------------------------------


def test_warnings_follow_the_readers_tree(db: Database, client: TestClient, city: City) -> None:
    w = city.warnings
    everything = city.marks([*city.d1, city.d1_heat, *city.d2]) + [t[3] for t in PLANTED.values()]
    outside_d1 = (city.marks([city.d1_heat, *city.d2])
                  + [PLANTED[t][3] for t in ("W-D2", "W-CITY", "W-HEAT")])  # fmt: skip

    # The API: the centre reads every warning with all its evidence; a district only its own.
    for username in ("dispatcher1", "supervisor1", "analyst1", "admin1"):
        got = client.get("/api/v1/warnings", headers=auth(client, username)).json()
        assert {x["id"] for x in got} == set(w.values()), username
        by_id = {x["id"]: sorted(x["evidence"]) for x in got}
        assert by_id[w["W-D1"]] == sorted([*city.d1, city.d1_heat])
        assert by_id[w["W-MIX"]] == sorted([city.d1[0], city.d2[0]])
    for username in ("d1.supervisor", "d1.dispatcher", "d1.analyst"):
        r = client.get("/api/v1/warnings", headers=auth(client, username))
        assert r.status_code == 200, r.text
        by_id = {x["id"]: sorted(x["evidence"]) for x in r.json()}
        assert by_id == {w["W-D1"]: sorted(city.d1), w["W-MIX"]: [city.d1[0]]}, username
        absent(r.text, outside_d1, username, "GET /api/v1/warnings")
    for username in ("s11.handler", "s11.admin", "heat.handler", "agent1"):
        r = client.get("/api/v1/warnings", headers=auth(client, username))
        assert r.status_code == 403, (username, r.status_code)

    # The console: the list, each warning's page and its evidence.
    centre = Console(app_of(client), "dispatcher1")
    page = centre.get("/console/warnings")
    present(page.text, [t[3] for t in PLANTED.values()], "centre", "/console/warnings")
    for tag in w:
        detail = centre.get(f"/console/warnings/{w[tag]}")
        assert detail.status_code == 200
    present(centre.get(f"/console/warnings/{w['W-D1']}").text,
            [*city.marks([*city.d1, city.d1_heat]), "依据工单（3 件）"], "centre", "W-D1")  # fmt: skip
    present(centre.get(f"/console/warnings/{w['W-MIX']}").text,
            city.marks([city.d1[0], city.d2[0]]), "centre", "W-MIX")  # fmt: skip
    for username in ("d1.supervisor", "d1.dispatcher", "d1.analyst"):
        reader = Console(app_of(client), username)
        for status in ("open", "task", "dismissed"):
            body = reader.get(f"/console/warnings?status={status}").text
            absent(body, outside_d1, username, f"/console/warnings?status={status}")
        body = reader.get("/console/warnings").text
        present(body, [PLANTED["W-D1"][3], PLANTED["W-MIX"][3]], username, "/console/warnings")
        assert "供暖类诉求激增" in body and "激增 1" in body and "重复诉求 1" in body, username
        for tag in ("W-D2", "W-CITY", "W-HEAT"):
            r = reader.get(f"/console/warnings/{w[tag]}")
            assert r.status_code == 404, (username, tag, r.status_code)
            absent(r.text, everything, username, f"/console/warnings/{tag}")
        d1_page = reader.get(f"/console/warnings/{w['W-D1']}").text
        present(d1_page, [*city.marks(city.d1), "依据工单（2 件）"], username, "W-D1")
        absent(d1_page, outside_d1, username, "W-D1")
        mix = reader.get(f"/console/warnings/{w['W-MIX']}").text
        present(
            mix, [*city.marks(city.d1[:1]), "依据工单（1 件）", "（他单位工单）"], username, "W-MIX"
        )  # the other district's order number is taken out of the explanation
        absent(mix, outside_d1, username, "W-MIX")

    # Acting: a district's dispatcher cannot touch a warning outside its tree (404, unchanged).
    d1_dispatcher = Console(app_of(client), "d1.dispatcher")
    for tag in ("W-D2", "W-CITY", "W-HEAT"):
        for action, form in (("task", {"note": "排查"}), ("dismiss", {"note": "不是本区问题"})):
            r = d1_dispatcher.post(f"/console/warnings/{w[tag]}/{action}", form)
            assert r.status_code == 404, (tag, action, r.status_code)
            absent(r.text, everything, "d1.dispatcher", f"{action} {tag}")
    assert d1_dispatcher.post("/console/warnings/scan").status_code == 403
    r = d1_dispatcher.post(f"/console/warnings/{w['W-MIX']}/dismiss", {"note": "同一人不同事项"})
    assert r.status_code == 303, r.text
    with db.read() as s:
        states = {t: s.get(Warning, i).status for t, i in w.items()}  # type: ignore[union-attr]
    assert states == {"W-D1": "open", "W-D2": "open", "W-MIX": "dismissed", "W-CITY": "open",
                      "W-HEAT": "open"}  # fmt: skip


def test_a_task_shows_each_reader_only_the_evidence_they_may_open(
    db: Database, client: TestClient, city: City
) -> None:
    """The centre turns the mixed warning into a task for 东一街道: its handler sees the task and
    the evidence in its own tree, not the order of 西一镇; and may not link that order either."""
    w = city.warnings
    centre = Console(app_of(client), "dispatcher1")
    r = centre.post(f"/console/warnings/{w['W-MIX']}/task", {"lead": "S11", "note": "统一排查"})
    assert r.status_code == 303, r.text
    task = int(r.headers["location"].split("/")[3].split("?")[0])
    with db.read() as s:
        linked = set(s.scalars(select(TicketLink.linked_id).where(TicketLink.ticket_id == task)))
    assert linked == {city.d1[0], city.d2[0]}
    present(centre.get(f"/console/tickets/{task}").text, city.marks([city.d1[0], city.d2[0]]),
            "centre", "task page")  # fmt: skip
    handler = Console(app_of(client), "s11.handler")
    page = handler.get(f"/console/tickets/{task}")
    assert page.status_code == 200
    present(page.text, city.marks(city.d1[:1]), "s11.handler", "task page")
    absent(page.text, city.marks([city.d2[0], city.d1_heat]), "s11.handler", "task page")
    order_page = handler.get(f"/console/tickets/{city.d1[0]}")
    assert order_page.status_code == 200 and "主动治理" in order_page.text
    # A district's dispatcher may not link an order outside its tree (answered as missing).
    d1_dispatcher = Console(app_of(client), "d1.dispatcher")
    r = d1_dispatcher.post(f"/console/tickets/{task}/links", {"numbers": city.numbers[city.d2[1]]})
    assert r.status_code in (404, 422), r.status_code
    with db.read() as s:
        after = set(s.scalars(select(TicketLink.linked_id).where(TicketLink.ticket_id == task)))
    assert after == linked


# ---- reports -------------------------------------------------------------------------------


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed (apt-get install poppler-utils)")
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip


def xlsx_text(content: bytes) -> str:
    book = load_workbook(io.BytesIO(content))
    return "\n".join(str(c) for sheet in book.worksheets for row in sheet.iter_rows(values_only=True)
                     for c in row if c is not None)  # fmt: skip


def test_reports_follow_the_readers_district(
    db: Database, client: TestClient, city: City, tmp_path: Path
) -> None:
    with db.write() as s:
        report_id = B.build("monthly", "2026-10", db_session=s, now=NOW).id
    d2_names = ["西一镇", "西区·", PLANTED["W-D2"][3], PLANTED["W-CITY"][3], PLANTED["W-HEAT"][3]]
    d1_names = ["东一街道", PLANTED["W-D1"][3], PLANTED["W-MIX"][3]]

    centre = Console(app_of(client), "analyst1")
    listing = centre.get("/console/reports").text
    assert "小城市12345接诉即办 2026年10月 月度分析" in listing
    city_html = centre.get(f"/console/reports/{report_id}").text
    present(city_html, ["西一镇", "东一街道", PLANTED["W-D2"][3], PLANTED["W-D1"][3]], "centre",
            "city report")  # fmt: skip
    present(xlsx_text(centre.get(f"/console/reports/{report_id}/xlsx").content),
            ["西一镇", "东一街道"], "centre", "city workbook")  # fmt: skip
    # The centre may also open a district's own report.
    d2_list = centre.get("/console/reports?district=D2").text
    assert "小城市西区12345接诉即办 2026年10月 月度分析" in d2_list
    assert f"/console/reports/{report_id}/pdf?district=D2" in d2_list
    d2_html = centre.get(f"/console/reports/{report_id}?district=D2").text
    present(d2_html, ["西区", "西一镇", PLANTED["W-D2"][3]], "centre", "西区 report")
    absent(d2_html, d1_names, "centre", "西区 report")

    for username in ("d1.supervisor", "d1.analyst", "s11.admin"):
        reader = Console(app_of(client), username)
        page = reader.get("/console/reports")
        assert page.status_code == 200
        present(page.text, ["小城市东区12345接诉即办 2026年10月 月度分析"], username, "list")
        absent(page.text, ["小城市12345接诉即办", "西区"], username, "list")
        html = reader.get(f"/console/reports/{report_id}")
        assert html.status_code == 200
        present(html.text, ["东区", *d1_names], username, "html")
        absent(html.text, d2_names, username, "html")
        assert html.text != city_html
        xlsx = reader.get(f"/console/reports/{report_id}/xlsx")
        assert xlsx.status_code == 200 and "D1" in xlsx.headers["content-disposition"]
        book = xlsx_text(xlsx.content)
        present(book, ["东一街道", PLANTED["W-D1"][3]], username, "xlsx")
        absent(book, d2_names, username, "xlsx")
        for fmt in ("", "/pdf", "/xlsx"):  # never another district's, never the city's
            r = reader.get(f"/console/reports/{report_id}{fmt}?district=D2")
            assert r.status_code == 404, (username, fmt, r.status_code)
        built = reader.post("/console/reports", {"kind": "daily", "period": "2026-10-14"})
        assert built.status_code == 403, (username, built.status_code)  # the centre builds
    pdf = Console(app_of(client), "d1.supervisor").get(f"/console/reports/{report_id}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    text = pdf_text(pdf.content, tmp_path)
    present(text, ["东区", "东一街道"], "d1.supervisor", "pdf")
    absent(text, d2_names, "d1.supervisor", "pdf")

    # A city-level company's admin is in no district: no report (the city's is the centre's).
    heat = Console(app_of(client), "heat.admin")
    page = heat.get("/console/reports")
    assert page.status_code == 200 and "本单位不属于任何区" in page.text
    absent(page.text, ["接诉即办 2026年10月"], "heat.admin", "list")
    for fmt in ("", "/pdf", "/xlsx"):
        r = heat.get(f"/console/reports/{report_id}{fmt}")
        assert r.status_code == 403, (fmt, r.status_code)
        absent(r.text, ["东一街道", "西一镇"], "heat.admin", fmt)
    # Roles without reports.view see none at all.
    for username in ("s11.handler", "agent1", "dispatcher1"):
        r = Console(app_of(client), username).get(f"/console/reports/{report_id}")
        assert r.status_code == 403, (username, r.status_code)
