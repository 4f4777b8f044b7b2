"""Reports built from the database: the monthly PDF's text (pdftotext) holds the unit names and
the three rates, the workbook the same figures; the console lists, builds and serves them; the
worker builds what is owed. Both databases."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import func, select
from test_auth import Console, app_of

from jiesu.assessment import service as A
from jiesu.assessment.models import Report
from jiesu.db.engine import Database
from jiesu.demo.generate import generate
from jiesu.reports import build as B
from jiesu.settings import city_tz

TINY_PACK = Path(__file__).parent / "packs" / "tiny"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=city_tz())


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    if shutil.which("pdftotext") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pdftotext (poppler-utils) is required in CI")
        pytest.skip("pdftotext is not installed (apt-get install poppler-utils)")
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip


def test_the_monthly_report_names_units_and_their_three_rates(db: Database, tmp_path: Path
                                                               ) -> None:  # fmt: skip
    generate(db, days=55, per_day=70, now=NOW, pack_dir=TINY_PACK, seed=8)
    with db.write() as s:
        report = B.build("monthly", "2026-10", db_session=s, now=NOW)
        pdf, xlsx, html = report.pdf, report.xlsx, report.html
        ranking = A.rankings("2026-10", "district", db_session=s, now=NOW)
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf, tmp_path)
    assert "2026年10月" in text and "各区排名" in text
    book = load_workbook(io.BytesIO(xlsx))
    sheet = book["各区排名"]
    rows = [r for r in sheet.iter_rows(values_only=True) if r and r[2] in ("东区", "西区")]
    assert len(rows) == 2
    for r in ranking.rows:
        assert r.name in text and r.name in html
        for key in ("response", "resolution", "satisfaction"):
            value = r.rates[key].value
            assert value is not None
            assert f"{value * 100:.2f}%" in text
            row = next(x for x in rows if x[2] == r.name)
            assert any(isinstance(c, float) and c == pytest.approx(value) for c in row), row


def test_daily_and_weekly_reports_and_periods(db: Database) -> None:
    generate(db, days=10, per_day=60, now=NOW, pack_dir=TINY_PACK, seed=2)
    with db.write() as s:
        daily = B.report_data("daily", "2026-11-18", db_session=s, now=NOW)
        weekly = B.report_data("weekly", "2026-W46", db_session=s, now=NOW)
    assert daily.rankings == () and weekly.rankings == ()
    assert (weekly.start.isoformat(), weekly.end.isoformat()) == ("2026-11-09", "2026-11-15")
    received = next(f.value for f in daily.summary if f.label == "受理量")
    with db.read() as s:
        start = datetime(2026, 11, 18, tzinfo=city_tz())
        end = datetime(2026, 11, 19, tzinfo=city_tz())
        from jiesu.tickets.models import Ticket

        direct = s.scalar(select(func.count()).select_from(Ticket).where(
            Ticket.created_at >= start, Ticket.created_at < end))  # fmt: skip
    assert received == direct
    assert sum(r.count for r in daily.by_channel) == direct
    assert B.previous("weekly", "2026-W01") == "2025-W52"
    assert B.due(NOW) == [("daily", "2026-11-19"), ("weekly", "2026-W46"), ("monthly", "2026-10")]


def test_the_console_builds_lists_and_serves_reports(db: Database, client: TestClient) -> None:
    analyst = Console(app_of(client), "analyst1")
    page = analyst.get("/console/reports")
    assert page.status_code == 200 and "还没有报告" in page.text
    r = analyst.post("/console/reports", data={"kind": "daily", "period": "2026-11-02"})
    assert r.status_code == 303, r.text
    target = r.headers["location"]
    html = analyst.get(target)
    assert html.status_code == 200 and "日通报" in html.text
    assert analyst.get(target + "/pdf").content.startswith(b"%PDF")
    assert analyst.get(target + "/xlsx").content.startswith(b"PK")
    assert "2026-11-02" in analyst.get("/console/reports").text
    bad = analyst.post("/console/reports", data={"kind": "monthly", "period": "2026-13"})
    assert bad.status_code == 422 and "没有这个期间" in bad.text


def test_the_worker_builds_the_owed_reports_once(db: Database) -> None:
    generate(db, days=3, per_day=20, now=NOW, pack_dir=TINY_PACK, seed=4)
    done = B.run_schedule(db, now=NOW)
    assert sorted(done["reports"]) == sorted(B.due(NOW))
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Report)) == 3
    assert B.run_schedule(db, now=NOW)["reports"] == []
