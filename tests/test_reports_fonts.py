"""The reports' font comes with jiesu: a machine with no CJK font (fontconfig shown DejaVu only)
prints the same Chinese PDF, with the bundled Noto Sans CJK embedded and charts in it too; a
report with a character the font cannot draw is refused and nothing is stored; a report stored
under another font (or before fonts were checked) is rebuilt. Needs poppler-utils (pdftotext,
pdffonts): skipped without it, required with CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_auth import Console, app_of

from jiesu.assessment.models import Report
from jiesu.db.engine import Database
from jiesu.errors import Invalid
from jiesu.reports import build as B
from jiesu.reports import fonts, render
from jiesu.reports.shapes import CountRow, Figure, ReportData, Series

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def poppler(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if IN_CI:
            pytest.fail(f"{tool} (poppler-utils) is required in CI")
        pytest.skip(f"{tool} is not installed (apt-get install poppler-utils)")
    return path


def sample(title: str = "小城市12345接诉即办 2026年10月 月度分析") -> ReportData:
    return ReportData(
        kind="monthly", period="2026-10", title=title, city="小城市",
        start=date(2026, 10, 1), end=date(2026, 10, 31),
        generated_at=datetime(2026, 11, 1, 1, 0, tzinfo=UTC),
        summary=(Figure("受理量", 70213, "件"), Figure("满意率", 0.9876, "%")),
        hotspots=(CountRow("朝阳区·三里屯街道", 120, 0.1, 0.05), CountRow("东城区·东华门街道", 80)),
        keywords=(CountRow("暖气不热", 40, 0.2), CountRow("噪音扰民", 30, 0.15)),
        trend=(Series("受理量", (("10-01", 3), ("10-02", 5))),),
    )  # fmt: skip


def test_the_pdf_is_chinese_on_a_machine_without_cjk_fonts(tmp_path: Path) -> None:
    pdftotext, pdffonts = poppler("pdftotext"), poppler("pdffonts")
    conf = tmp_path / "fonts.conf"
    dejavu = "/usr/share/fonts/truetype/dejavu"
    conf.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">\n'
        f"<fontconfig><dir>{dejavu}</dir><cachedir>{tmp_path / 'cache'}</cachedir></fontconfig>\n"
    )
    out = tmp_path / "r.pdf"
    script = textwrap.dedent(f"""
        import subprocess, sys
        listed = subprocess.run(["fc-list"], capture_output=True, text=True).stdout
        assert "CJK" not in listed, listed  # the system's CJK fonts are hidden
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from test_reports_fonts import sample
        from matplotlib import font_manager as fm
        fm.fontManager.ttflist = [f for f in fm.fontManager.ttflist if "CJK" not in f.name]
        from jiesu.reports import charts, fonts, render
        open({str(out)!r}, "wb").write(render.pdf(sample()))
        found = fm.findfont(fm.FontProperties(family=[charts.FONT]), fallback_to_default=False)
        assert found == str(fonts.font_path()), found  # the charts measure with the same font
    """)  # fmt: skip
    env = {**os.environ, "FONTCONFIG_FILE": str(conf), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    if shutil.which("fc-list") is None:
        script = script.replace('assert "CJK" not in listed, listed', "pass")
    subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True, timeout=120)
    listed = subprocess.run([pdffonts, str(out)], capture_output=True, text=True, check=True)
    names = [line.split()[0] for line in listed.stdout.splitlines()[2:] if line.strip()]
    assert names and all("Noto-Sans-CJK-SC" in n for n in names), listed.stdout
    text = subprocess.run([pdftotext, str(out), "-"], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    for words in ("月度分析", "朝阳区·三里屯街道", "暖气不热", "受理量", "满意率"):
        assert words in text, text
    assert "\ufffd" not in text and not fonts.missing(text)


def test_a_character_the_font_cannot_draw_is_refused_with_its_name() -> None:
    page = render.html(sample("小城市12345接诉即办 𠀀街道😀 月度分析"))
    with pytest.raises(Invalid) as refused:
        B.check_glyphs(page)
    message = refused.value.message
    assert "𠀀" in message and "U+20000" in message and "😀" in message and "U+1F600" in message
    assert "报告未保存" in message
    B.check_glyphs(render.html(sample()))  # the ordinary report passes
    assert fonts.missing("暖气不热 98.76% ↑3 ↓2 — · （）：、") == []
    assert fonts.missing(["ok", "𠀀", "\n\t"]) == ["𠀀"]


def test_a_refused_report_stores_nothing(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(B, "report_data",
                        lambda kind, period, **kw: sample("月度分析 😀"))  # fmt: skip
    with db.write() as s, pytest.raises(Invalid):
        B.build("monthly", "2026-10", db_session=s)
    with db.read() as s:
        assert s.scalars(select(Report)).all() == []


def test_a_report_stored_under_another_font_is_rebuilt(db: Database,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(B, "report_data", lambda kind, period, **kw: sample())
    page = render.html(sample())
    assert f'<meta name="jiesu-font" content="{fonts.font_id()}">' in page
    assert B.rendered_with_current_font(page)
    with db.write() as s:
        s.add(Report(kind="monthly", period="2026-10", title="旧", html="<html>□□</html>",
                     pdf=b"%PDF-old", xlsx=b""))  # fmt: skip
    with db.read() as s:
        assert B.stale(db_session=s) == [("monthly", "2026-10")]
        assert B.render_current("monthly", "2026-10", "html", db_session=s) == page
    monkeypatch.setattr(B, "owed", lambda now, db_session: [])
    B._fonts_checked.clear()  # another test's run on a database of the same name
    done = B.run_schedule(db, now=datetime(2026, 11, 20, 1, 0, tzinfo=UTC))
    assert ("monthly", "2026-10") in done["reports"]
    with db.read() as s:
        report = s.scalars(select(Report)).one()
        assert B.rendered_with_current_font(report.html) and report.pdf.startswith(b"%PDF")
        assert B.stale(db_session=s) == []


def test_the_cli_refuses_in_chinese_without_a_traceback(db: Database,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from typer.testing import CliRunner

    from jiesu.cli import app as cli
    from jiesu.reports import cli as report_cli

    monkeypatch.setattr(report_cli, "database", lambda: db)
    monkeypatch.setattr(B, "report_data", lambda kind, period, **kw: sample("月度分析 😀"))
    result = CliRunner().invoke(cli, ["report", "monthly", "--period", "2026-10"])
    assert result.exit_code == 1 and "报告未保存" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_console_refuses_and_serves_a_stale_report_freshly(
    db: Database, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    analyst = Console(app_of(client), "analyst1")
    monkeypatch.setattr(B, "report_data", lambda kind, period, **kw: sample("月度分析 😀"))
    refused = analyst.post("/console/reports", data={"kind": "monthly", "period": "2026-10"})
    assert refused.status_code == 422 and "U+1F600" in refused.text and "报告未保存" in refused.text
    monkeypatch.setattr(B, "report_data", lambda kind, period, **kw: sample())
    with db.write() as s:
        old = Report(kind="monthly", period="2026-10", title="旧", html="<html>□□</html>",
                     pdf=b"%PDF-old", xlsx=b"")  # fmt: skip
        s.add(old)
        s.flush()
        report_id = old.id
    page = analyst.get(f"/console/reports/{report_id}")
    assert page.status_code == 200 and fonts.font_id() in page.text and "□□" not in page.text
    pdf = analyst.get(f"/console/reports/{report_id}/pdf").content
    assert pdf.startswith(b"%PDF") and pdf != b"%PDF-old"
