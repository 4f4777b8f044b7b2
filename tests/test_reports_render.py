"""Rendering of the assessment reports (日通报, 周汇总, 月分析) as HTML, PDF and Excel.

Built from plain `ReportData` for Beijing, no database. The PDF is read back with `pdftotext`
(poppler-utils): without it these checks skip here, and fail under CI=true.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import time
import zlib
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pytest
from openpyxl import load_workbook

from jiesu.reports import charts, render
from jiesu.reports.shapes import (
    CountRow,
    Figure,
    Ranking,
    RankRow,
    ReportData,
    Series,
    WarningRow,
)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CST = timezone(timedelta(hours=8))

DISTRICTS = (
    "东城区", "西城区", "朝阳区", "海淀区", "丰台区", "石景山区", "门头沟区", "房山区",
    "通州区", "顺义区", "昌平区", "大兴区", "怀柔区", "平谷区", "密云区", "延庆区",
)  # fmt: skip
STREETS = (
    ("朝阳区", "三里屯街道"), ("朝阳区", "望京街道"), ("朝阳区", "建外街道"),
    ("海淀区", "中关村街道"), ("海淀区", "学院路街道"), ("海淀区", "燕园街道"),
    ("东城区", "东华门街道"), ("西城区", "金融街街道"), ("丰台区", "卢沟桥街道"),
    ("通州区", "北苑街道"), ("昌平区", "回龙观街道"), ("昌平区", "天通苑北街道"),
)  # fmt: skip
DEPARTMENTS = (
    "市住房城乡建设委",
    "市城市管理委",
    "市交通委",
    "市市场监管局",
    "市人力资源社会保障局",
)
COMPANIES = ("北京市自来水集团", "国网北京市电力公司", "北京燃气集团", "北京热力集团")


def rank_rows(names: list[str], prefix: str, small: int = 0) -> tuple[RankRow, ...]:
    """Ranked rows with falling scores; the last ranked two go to 专班, `small` rows unranked."""
    rows = []
    ranked = len(names) - small
    for i, name in enumerate(names):
        if i >= ranked:
            rows.append(
                RankRow(None, f"{prefix}{i:03d}", name, 3 + i % 5, 1.0, 0.6667, 0.8, None,
                        small_sample=True)
            )  # fmt: skip
            continue
        response = round(0.9990 - i * 0.0013, 4)
        resolution = round(0.9321 - i * 0.0021, 4)
        satisfaction = round(0.9587 - i * 0.0017, 4)
        composite = 0.10 * response + 0.45 * resolution + 0.45 * satisfaction
        change = (3, -2, 0, None, 1)[i % 5]
        previous = None if change is None else i + 1 + change
        rows.append(
            RankRow(i + 1, f"{prefix}{i:03d}", name, 5200 - i * 37, response, resolution,
                    satisfaction, composite, previous, change, task_force=i >= ranked - 2)
        )  # fmt: skip
    return tuple(rows)


def monthly(units_per_ranking: int | None = None) -> ReportData:
    """A month of Beijing: 4 rankings, hotspots, top problems, 每月一题, 七有五性, warnings."""
    if units_per_ranking is None:
        groups = {
            "district": ("各区排名", list(DISTRICTS), 0),
            "street": ("各街道（乡镇）排名", [s for _, s in STREETS], 1),
            "department": ("市级部门排名", list(DEPARTMENTS), 0),
            "company": ("公共服务企业排名", list(COMPANIES), 0),
        }
    else:
        n = units_per_ranking
        groups = {
            "district": ("各区排名", [f"{DISTRICTS[i % 16]}{i}" for i in range(n)], 5),
            "street": ("各街道（乡镇）排名", [f"{STREETS[i % 12][1]}{i}" for i in range(n)], 5),
            "department": ("市级部门排名", [f"{DEPARTMENTS[i % 5]}{i}" for i in range(n)], 5),
            "company": ("公共服务企业排名", [f"{COMPANIES[i % 4]}{i}" for i in range(n)], 5),
        }
    rankings = tuple(
        Ranking(group, title, rank_rows(names, group[0].upper(), small))
        for group, (title, names, small) in groups.items()
    )
    days = [date(2026, 10, 1) + timedelta(days=d) for d in range(31)]
    return ReportData(
        kind="monthly",
        period="2026-10",
        title="北京市12345接诉即办 2026年10月 月度分析",
        city="北京市",
        start=date(2026, 10, 1),
        end=date(2026, 10, 31),
        generated_at=datetime(2026, 11, 1, 8, 30, tzinfo=CST),
        summary=(
            Figure("受理量", 70213, "件"),
            Figure("派单量", 41877, "件"),
            Figure("直接答复率", 0.4036, "%"),
            Figure("响应率", 0.9876, "%"),
            Figure("解决率", 0.9312, "%"),
            Figure("满意率", 0.9455, "%"),
            Figure("超期", 214, "件"),
            Figure("平均办理时长", 52.25, "小时"),
        ),
        rankings=rankings,
        by_category=(
            CountRow("住房", 9210, 0.1312, 0.052),
            CountRow("市场管理", 7350, 0.1047, -0.031),
            CountRow("城乡建设", 6120, 0.0872, 0.0),
            CountRow("交通管理", 5034, 0.0717, 0.118),
            CountRow("供暖", 4877, 0.0695, 1.25, "供暖季开始"),
        ),
        by_channel=(CountRow("电话", 51230, 0.7296), CountRow("网络", 18983, 0.2704)),
        by_type=(CountRow("投诉", 30110, 0.4288), CountRow("求助", 25003, 0.3561)),
        hotspots=(
            CountRow("朝阳区·三里屯街道", 1320, 0.0188, 0.21),
            CountRow("海淀区·中关村街道", 1105, 0.0157, -0.04),
            CountRow("昌平区·回龙观街道", 987, 0.0141, 0.08),
            CountRow("昌平区·天通苑北街道", 902, 0.0128, 0.02),
        ),
        keywords=(CountRow("噪音", 2210), CountRow("停车", 1980), CountRow("暖气不热", 1730)),
        trend=(
            Series("本月", tuple((d.strftime("%m-%d"), 2100 + (d.day * 37) % 400) for d in days)),
            Series(
                "去年同期", tuple((d.strftime("%m-%d"), 1900 + (d.day * 53) % 350) for d in days)
            ),
        ),
        themes=(
            CountRow("老旧小区加装电梯", 1210, note="连续 6 个月进入前十"),
            CountRow("物业服务", 1080, note="重复诉求多"),
        ),
        seven_haves=(
            CountRow("幼有所育", 420, 0.06),
            CountRow("学有所教", 1130, 0.16),
            CountRow("住有所居", 3210, 0.46),
        ),
        five_qualities=(CountRow("便利性", 2880, 0.41), CountRow("安全性", 1760, 0.25)),
        warnings=(
            WarningRow("burst", "朝阳区·三里屯街道 噪音", "近 7 日件数为基线的 3.2 倍", 86),
            WarningRow("bounce", "回龙观某小区 积水", "4 次退单、3 个单位未认领", 5),
        ),
        notes=(
            "样本不足 30 件的单位列出但不排名",
            "综合得分 = 0.10×响应率 + 0.45×解决率 + 0.45×满意率",
        ),
    )


def daily() -> ReportData:
    """A daily bulletin: headline figures, top problems and hotspots, no rankings."""
    month = monthly()
    return ReportData(
        kind="daily",
        period="2026-11-03",
        title="北京市12345接诉即办 2026年11月3日 日通报",
        city="北京市",
        start=date(2026, 11, 3),
        end=date(2026, 11, 3),
        generated_at=datetime(2026, 11, 4, 7, 0),
        summary=month.summary[:6],
        by_category=month.by_category,
        hotspots=month.hotspots,
    )


def pdftotext(data: bytes) -> str:
    """The PDF's text; skips without poppler-utils, except under CI=true where it must be there."""
    tool = shutil.which("pdftotext")
    if tool is None:
        if IN_CI:
            pytest.fail("pdftotext is missing under CI=true: install poppler-utils")
        pytest.skip("pdftotext is not installed (poppler-utils); PDF text not checked")
    out = subprocess.run([tool, "-enc", "UTF-8", "-", "-"], input=data, capture_output=True,
                         check=True, timeout=60)  # fmt: skip
    return out.stdout.decode("utf-8")


def pdf_objects(data: bytes) -> bytes:
    """The PDF's bytes with every Flate stream inflated (WeasyPrint packs objects in streams)."""
    parts = [data]
    for match in re.finditer(rb"stream\r?\n", data):
        start = match.end()
        end = data.find(b"endstream", start)
        try:
            parts.append(zlib.decompressobj().decompress(data[start:end]))
        except zlib.error:
            continue
    return b"\n".join(parts)


@pytest.fixture(scope="module")
def report() -> ReportData:
    return monthly()


@pytest.fixture(scope="module")
def pdf_bytes(report: ReportData) -> bytes:
    return render.pdf(report)


@pytest.fixture(scope="module")
def pdf_text(pdf_bytes: bytes) -> str:
    return pdftotext(pdf_bytes)


def test_percent_has_two_decimals_and_rank_change_has_arrows() -> None:
    assert render.percent(0.9876) == "98.76%"
    assert render.percent(1.0) == "100.00%"
    assert render.percent(None) == "—"
    assert render.signed_percent(0.052) == "+5.20%"
    assert render.signed_percent(-0.031) == "-3.10%"
    assert render.score(0.912345) == "91.23"
    assert [render.rank_change(c) for c in (3, -2, 0, None)] == ["↑3", "↓2", "—", "—"]


def test_pdf_is_a_pdf_with_unit_names_and_rates(pdf_bytes: bytes, pdf_text: str) -> None:
    assert pdf_bytes.startswith(b"%PDF")
    text = re.sub(r"\s+", "", pdf_text)
    for name in ("朝阳区", "海淀区", "三里屯街道", "市交通委", "北京燃气集团", "朝阳区·三里屯街道"):
        assert name in text
    for rate in ("98.76%", "93.12%", "94.55%", "70,213"):
        assert rate in text
    first = monthly().rankings[0].rows[0]
    for value in (first.response, first.resolution, first.satisfaction):
        assert render.percent(value) in text
    assert "专班" in text and "样本不足" in text and "↑3" in text and "↓2" in text


def test_pdf_has_page_numbers_in_the_footer(pdf_text: str) -> None:
    pages = pdf_text.count("\f")
    assert pages >= 2
    text = re.sub(r"\s+", "", pdf_text)
    assert f"第1页/共{pages}页" in text and f"第{pages}页/共{pages}页" in text


def test_pdf_embeds_the_cjk_font(pdf_bytes: bytes) -> None:
    objects = pdf_objects(pdf_bytes)
    names = set(re.findall(rb"/FontName\s*/([A-Za-z0-9+_-]+)", objects))
    assert any(b"NotoSansCJK" in n.replace(b"-", b"") for n in names), names
    assert re.search(rb"/FontFile[23]?\s", objects)  # embedded, not merely named


def test_charts_are_vector_in_html_and_pdf(report: ReportData, pdf_bytes: bytes) -> None:
    page = render.html(report)
    assert page.count("<svg") == 7  # trend, 4 rankings, hotspots, top problems
    assert "<image" not in page and "<img" not in page
    objects = pdf_objects(pdf_bytes)
    assert b"/Font" in objects  # the inflated objects are readable
    assert not re.search(rb"/Subtype\s*/Image", objects)


def test_chart_text_stays_text_in_the_pdf(pdf_text: str) -> None:
    assert "综合得分" in pdf_text and "去年同期" in pdf_text


def test_charts_are_deterministic(report: ReportData) -> None:
    first = charts.ranking_bars(report.rankings[0], "r")
    assert first == charts.ranking_bars(report.rankings[0], "r")
    assert "Date" not in first and "<dc:date" not in first
    assert render.html(report) == render.html(report)


def test_charts_leave_no_global_state_and_agree_across_threads(report: ReportData) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import matplotlib

    before = dict(matplotlib.rcParams)
    serial = [charts.count_bars(report.by_category, f"c{i}") for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(
            pool.map(lambda i: charts.count_bars(report.by_category, f"c{i}"), range(4))
        )
    assert threaded == serial
    assert dict(matplotlib.rcParams) == before


def test_html_loads_nothing_from_outside(report: ReportData) -> None:
    page = render.html(report)
    assert "<link" not in page and "<script" not in page and "@import" not in page
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page)
    assert "url(http" not in page and "@font-face" not in page


def test_unit_names_are_escaped(report: ReportData) -> None:
    evil = "<script>alert(1)</script>海淀区"
    first = report.rankings[0]
    rows = (replace(first.rows[0], name=evil), *first.rows[1:])
    bad = replace(
        report,
        title="<b>标题</b>",
        rankings=(replace(first, rows=rows),),
        hotspots=(CountRow(evil, 9),),
        notes=("<i>说明</i>",),
    )
    page = render.html(bad)
    assert "<script>" not in page and "<b>标题" not in page and "<i>说明" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;海淀区" in page
    book = load_workbook(io.BytesIO(render.xlsx(bad)))
    assert book["各区排名"]["C2"].value == evil  # Excel cells keep the text as typed


def test_workbook_has_one_sheet_per_section(report: ReportData) -> None:
    book = load_workbook(io.BytesIO(render.xlsx(report)))
    for name in ("概况", "各区排名", "各街道（乡镇）排名", "市级部门排名", "公共服务企业排名",
                 "热点", "高频问题", "每月一题", "七有五性", "趋势", "预警", "说明"):  # fmt: skip
        assert name in book.sheetnames
    assert book.sheetnames[0] == "概况"


def test_workbook_holds_the_same_figures(report: ReportData) -> None:
    book = load_workbook(io.BytesIO(render.xlsx(report)))
    overview = {row[0]: row[1:] for row in book["概况"].iter_rows(values_only=True) if row[0]}
    assert overview["受理量"][0] == 70213
    assert overview["响应率"][0] == 0.9876
    assert overview["开始日期"][0] == datetime(2026, 10, 1)
    cells = {c.value: c for c in book["概况"]["A"]}
    assert book["概况"].cell(cells["响应率"].row, 2).number_format == "0.00%"

    for ranking in report.rankings:
        sheet = book[ranking.title]
        header = [c.value for c in sheet[1]]
        assert header[:8] == [
            "排名",
            "单位编码",
            "单位名称",
            "件数",
            "响应率",
            "解决率",
            "满意率",
            "综合得分",
        ]
        assert header[9] == "较上月" and header[10:] == ["专班", "样本不足"]
        for row, expected in zip(sheet.iter_rows(min_row=2), ranking.rows, strict=True):
            values = [c.value for c in row]
            assert values[:4] == [expected.rank, expected.code, expected.name, expected.orders]
            assert values[4:7] == [expected.response, expected.resolution, expected.satisfaction]
            assert all(isinstance(v, int | float) for v in values[4:7])  # numbers, not "98.76%"
            assert all(c.number_format == "0.00%" for c in row[4:7])
            if expected.composite is not None:
                assert values[7] == pytest.approx(expected.composite * 100)
            assert values[9] == expected.change
            assert values[10] == ("是" if expected.task_force else None)
            assert values[11] == ("是" if expected.small_sample else None)

    hot = list(book["热点"].iter_rows(min_row=2, values_only=True))
    assert hot[0][:4] == ("朝阳区·三里屯街道", 1320, 0.0188, 0.21)
    assert book["热点"]["C2"].number_format == "0.00%"
    problems = [r[0] for r in book["高频问题"].iter_rows(min_row=2, values_only=True)]
    assert problems == [c.name for c in report.by_category]
    themes = list(book["每月一题"].iter_rows(min_row=2, values_only=True))
    assert themes[0][0] == "老旧小区加装电梯" and themes[0][4] == "连续 6 个月进入前十"
    seven_five = list(book["七有五性"].iter_rows(min_row=2, values_only=True))
    assert [r[:3] for r in seven_five] == [
        ("七有", c.name, c.count) for c in report.seven_haves
    ] + [("五性", c.name, c.count) for c in report.five_qualities]


def test_daily_report_without_rankings_has_no_ranking_sections() -> None:
    day = daily()
    page = render.html(day)
    assert "考评排名" not in page and "综合得分" not in page and "每月一题" not in page
    assert "高频问题" in page and "98.76%" in page
    data = render.pdf(day)
    assert data.startswith(b"%PDF")
    text = pdftotext(data)
    assert "考评排名" not in text and "98.76%" in text and "日通报" in text
    book = load_workbook(io.BytesIO(render.xlsx(day)))
    assert book.sheetnames == ["概况", "热点", "高频问题"]


@pytest.mark.slow
def test_large_monthly_pdf_builds_in_a_few_seconds() -> None:
    big = monthly(units_per_ranking=350)
    started = time.perf_counter()
    data = render.pdf(big)
    elapsed = time.perf_counter() - started
    print(f"monthly PDF, 4 rankings × 350 rows: {elapsed:.2f}s, {len(data) // 1024} KiB")
    assert data.startswith(b"%PDF")
    assert elapsed < 30  # a few seconds on a workstation; generous for shared CI runners
