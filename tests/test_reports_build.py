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
from jiesu.reports import fonts
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
    assert "\ufffd" not in text and not fonts.missing(text)  # no box, no replacement character
    assert "高频词" in text and "有没有" not in text.split("高频词", 1)[1][:400]
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


def test_a_districts_report_holds_its_own_streets_and_figures(
    db: Database, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """东区's report: its requests (as counted from the tickets), its streets' hotspots, its units
    in the rankings, nothing of 西区; the CLI writes it without storing it."""
    from typer.testing import CliRunner

    from jiesu.cli import app as cli
    from jiesu.errors import NotFound
    from jiesu.settings import get_settings
    from jiesu.tickets.models import Ticket

    generate(db, days=45, per_day=40, now=NOW, pack_dir=TINY_PACK, seed=5)
    with db.read() as s:
        city = B.report_data("monthly", "2026-10", db_session=s, now=NOW)
        east = B.report_data("monthly", "2026-10", db_session=s, now=NOW, district="D1")
        units = A.unit_index(db_session=s)
        d1 = units.by_code["D1"]
        start = datetime(2026, 10, 1, tzinfo=city_tz())
        end = datetime(2026, 11, 1, tzinfo=city_tz())
        in_d1 = s.scalar(select(func.count()).select_from(Ticket).where(
            Ticket.created_at >= start, Ticket.created_at < end, Ticket.district_id == d1.id))  # fmt: skip
        with pytest.raises(NotFound):
            B.report_data("monthly", "2026-10", db_session=s, now=NOW, district="S11")

    def received(data: B.ReportData) -> object:
        return next(f.value for f in data.summary if f.label == "受理量")

    assert in_d1 and received(east) == in_d1 and received(city) > in_d1  # type: ignore[operator]
    assert east.title == "小城市东区12345接诉即办 2026年10月 月度分析" and east.district == "东区"
    assert east.hotspots and all(h.name.startswith("东区·") for h in east.hotspots)
    assert any(h.name.startswith("西区·") for h in city.hotspots)
    ranked = [x.code for r in east.rankings for x in r.rows]
    assert ranked and all(units.by_code[c].path.startswith(d1.path) for c in ranked)
    assert any(not units.by_code[x.code].path.startswith(d1.path)
               for r in city.rankings for x in r.rows)  # fmt: skip
    assert "派单准确率" not in {f.label for f in east.summary}  # the centre's own figure

    monkeypatch.setenv("JIESU_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["report", "monthly", "--period", "2026-10",
                                          "--district", "D1", "--out", str(tmp_path)])  # fmt: skip
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    book = load_workbook(tmp_path / "monthly-2026-10-D1.xlsx")
    cells = {str(c) for sheet in book.worksheets for row in sheet.iter_rows(values_only=True)
             for c in row if c is not None}  # fmt: skip
    assert "东区" in cells and not any("西一镇" in c for c in cells)
    assert (tmp_path / "monthly-2026-10-D1.pdf").read_bytes().startswith(b"%PDF")
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Report)) == 0  # not stored


def test_a_week_reads_in_words_and_is_read_back() -> None:
    from jiesu.reports.build import canonical_period
    from jiesu.web.templating import period_text

    assert period_text("2026-W45") == "2026年第45周"
    assert period_text("2026-10") == "2026-10" and period_text("2026-11-03") == "2026-11-03"
    assert canonical_period("weekly", "2026年第5周") == "2026-W05"
    assert canonical_period("weekly", " 2026 年 第 45 周 ") == "2026-W45"
    assert canonical_period("weekly", period_text("2026-W49")) == "2026-W49"
    assert canonical_period("monthly", "2026年第5周") == "2026年第5周"  # refused later by bounds
