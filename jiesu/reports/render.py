"""Render a `ReportData` as a standalone HTML page, a PDF (WeasyPrint) and an Excel workbook.

The PDF is printed from the very HTML the page shows, so the two never disagree. The page loads
nothing from outside: CSS is inline, charts are inline SVG, and the PDF's URL fetcher refuses
every URL but the report font's. The font is the one installed with jiesu (`reports.fonts`:
Noto Sans CJK SC, whatever the system has), embedded, subset, in the PDF; charts use it too.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from jiesu.reports import charts, fonts
from jiesu.reports.shapes import CountRow, Figure, Ranking, RankRow, ReportData
from jiesu.settings import city_tz
from jiesu.web.labels import WARNING_KIND_NAMES

TEMPLATES = Path(__file__).resolve().parent / "templates"
# WeasyPrint and fontTools narrate every page at INFO: the worker's log is for what happened.
for _name in ("weasyprint", "weasyprint.progress", "fontTools"):
    logging.getLogger(_name).setLevel(logging.WARNING)

KIND_NAMES = {"daily": "日通报", "weekly": "周汇总", "monthly": "月分析"}
CHANGE_HEADINGS = {"daily": "较昨日", "weekly": "较上周", "monthly": "较上月"}
PREVIOUS_RANK_HEADINGS = {"daily": "昨日排名", "weekly": "上周排名", "monthly": "上月排名"}
GROUP_NAMES = {"district": "区", "street": "街道（乡镇）", "department": "部门", "company": "企业"}
SECTION_NUMBERS = "一二三四五六七八九十"
PERCENT_FORMAT = "0.00%"
SIGNED_PERCENT_FORMAT = "+0.00%;-0.00%;0.00%"
RANK_CHANGE_FORMAT = '"↑"0;"↓"0;"—"'


# ---- display formatting (shared by the template and the tests) ----


def percent(value: float | None) -> str:
    """0.98765 → "98.77%"; None → "—"."""
    return "—" if value is None else f"{value * 100:.2f}%"


def signed_percent(value: float | None) -> str:
    """A change as a fraction: 0.123 → "+12.30%", -0.05 → "-5.00%"."""
    if value is None:
        return "—"
    return f"{value * 100:+.2f}%" if round(value * 100, 2) else "0.00%"


def number(value: float | None) -> str:
    """70213 → "70,213"; 52.25 → "52.25"; None → "—"."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}"


def score(value: float | None) -> str:
    """The composite score (0–1) as points out of 100: 0.91234 → "91.23"."""
    return "—" if value is None else f"{value * 100:.2f}"


def rank_change(change: int | None) -> str:
    """Places moved: 3 → "↑3", -2 → "↓2", 0 or unknown → "—"."""
    if not change:
        return "—"
    return f"↑{change}" if change > 0 else f"↓{-change}"


def figure_value(fig: Figure) -> str:
    """A headline figure's value as shown (the unit apart, except that "%" is part of it)."""
    return percent(fig.value) if fig.unit == "%" else number(fig.value)


def local_time(moment: datetime) -> str:
    """Generation time in the city's zone (naive times are taken as already local)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(city_tz())
    return moment.strftime("%Y-%m-%d %H:%M")


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        percent=percent,
        signed_percent=signed_percent,
        number=number,
        score=score,
        rank_change=rank_change,
        figure_value=figure_value,
        local_time=local_time,
        warning_kind=lambda k: WARNING_KIND_NAMES.get(k, k),
    )
    return env


_ENV = _env()


# ---- HTML and PDF ----


def _has(rows: Iterable[CountRow], field: str) -> bool:
    return any(getattr(r, field) not in (None, "") for r in rows)


def _count_table(rows: Sequence[CountRow]) -> dict[str, Any]:
    """A count section with only the columns some row fills."""
    return {
        "rows": rows,
        "share": _has(rows, "share"),
        "change": _has(rows, "change"),
        "note": _has(rows, "note"),
    }


def _context(report: ReportData) -> dict[str, Any]:
    rankings = [
        {
            "ranking": r,
            "group": GROUP_NAMES.get(r.group, r.group),
            "chart": Markup(charts.ranking_bars(r, f"rank{i}"))
            if any(row.rank is not None and row.composite is not None for row in r.rows)
            else None,
        }
        for i, r in enumerate(report.rankings)
        if r.rows
    ]
    return {
        "r": report,
        "font_id": fonts.font_id(),
        "kind_name": KIND_NAMES.get(report.kind, report.kind),
        "change_heading": CHANGE_HEADINGS.get(report.kind, "较上期"),
        "numbers": SECTION_NUMBERS,
        "trend_chart": Markup(charts.trend_lines(report.trend, "trend"))
        if any(s.points for s in report.trend)
        else None,
        "rankings": rankings,
        "hotspots": _count_table(report.hotspots),
        "hotspot_chart": Markup(charts.count_bars(report.hotspots, "hot", "诉求热点"))
        if report.hotspots
        else None,
        "categories": _count_table(report.by_category),
        "category_chart": Markup(charts.count_bars(report.by_category, "cat", "高频问题"))
        if report.by_category
        else None,
        "channels": _count_table(report.by_channel),
        "types": _count_table(report.by_type),
        "keywords": _count_table(report.keywords),
        "themes": _count_table(report.themes),
        "knowledge_entries": _count_table(report.knowledge_entries),
        "knowledge_themes": _count_table(report.knowledge_themes),
        "seven_haves": _count_table(report.seven_haves),
        "five_qualities": _count_table(report.five_qualities),
    }


def html(report: ReportData) -> str:
    """The report as one standalone HTML page (inline CSS and SVG, nothing fetched)."""
    return _ENV.get_template("reports/report.html").render(_context(report))


def _refuse(url: str, *args: object, **kwargs: object) -> NoReturn:
    raise ValueError(f"reports load nothing from outside: {url}")


def _fetcher() -> Any:
    """WeasyPrint's fetcher for a report: the bundled font file, and nothing else."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    allowed = fonts.font_url()

    class FontOnly(URLFetcher):  # type: ignore[misc]
        def fetch(self, url: str, headers: object = None) -> URLFetcherResponse:
            if url != allowed:
                _refuse(url)
            return URLFetcherResponse(url, fonts.font_path().read_bytes())

    return FontOnly()


_PRINT_LOCK = threading.Lock()
_printer: tuple[Any, Any, Any] | None = None  # (fetcher, font configuration, @font-face sheet)


def _print_setup() -> tuple[Any, Any, Any]:
    """The fetcher, font configuration and @font-face stylesheet, made once per process: the
    19 MB collection is read and indexed by fontconfig once, not for every PDF."""
    global _printer
    if _printer is None:
        from weasyprint import CSS
        from weasyprint.text.fonts import FontConfiguration

        fetcher = _fetcher()
        font_config = FontConfiguration()
        face = CSS(string=fonts.font_face_css(), font_config=font_config, url_fetcher=fetcher)
        _printer = (fetcher, font_config, face)
    return _printer


def pdf(report: ReportData, page: str | None = None) -> bytes:
    """The same page printed by WeasyPrint: A4, page numbers, the bundled CJK font embedded,
    vector charts. `page`: the HTML already rendered from `report` (else rendered here). One
    PDF at a time per process (the font configuration is shared)."""
    from weasyprint import HTML  # heavy import, only where a PDF is made

    page = page if page is not None else html(report)
    with _PRINT_LOCK:
        fetcher, font_config, face = _print_setup()
        document = HTML(string=page, url_fetcher=fetcher, base_url=str(TEMPLATES))
        data: bytes = document.write_pdf(stylesheets=[face], font_config=font_config)
    return data


# ---- Excel ----

_BOLD = Font(bold=True)
_HEADER_FILL = PatternFill("solid", fgColor="DDE7F3")
_TASK_FORCE_FILL = PatternFill("solid", fgColor="FBE3E1")
_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")


def _sheet(book: Workbook, title: str) -> Worksheet:
    """A new sheet with a valid, unique title (Excel: 31 characters, no []:*?/\\)."""
    base = _BAD_SHEET_CHARS.sub("·", title)[:31] or "表"
    name, n = base, 2
    while name in book.sheetnames:
        suffix = f"({n})"
        name, n = base[: 31 - len(suffix)] + suffix, n + 1
    sheet: Worksheet = book.create_sheet(name)
    return sheet


def _header(sheet: Worksheet, row: int, headings: Sequence[str], widths: Sequence[float]) -> None:
    for col, (text, width) in enumerate(zip(headings, widths, strict=True), start=1):
        cell = sheet.cell(row=row, column=col, value=text)
        cell.font, cell.fill = _BOLD, _HEADER_FILL
        cell.alignment = Alignment(horizontal="center")
        letter = get_column_letter(col)
        sheet.column_dimensions[letter].width = max(sheet.column_dimensions[letter].width, width)


def _put(sheet: Worksheet, row: int, col: int, value: object, fmt: str | None = None) -> None:
    cell = sheet.cell(row=row, column=col, value=value)
    if fmt and value is not None:
        cell.number_format = fmt


def _excel_time(moment: datetime) -> datetime:
    """Excel has no time zones: city-local wall time."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(city_tz()).replace(tzinfo=None)
    return moment


def _overview(book: Workbook, report: ReportData) -> None:
    sheet = _sheet(book, "概况")
    facts: list[tuple[str, object, str | None]] = [
        ("报告", report.title, None),
        ("城市", report.city, None),
        *([("区", report.district, None)] if report.district else []),
        ("类型", KIND_NAMES.get(report.kind, report.kind), None),
        ("期间", report.period, None),
        ("开始日期", report.start, "yyyy-mm-dd"),
        ("结束日期", report.end, "yyyy-mm-dd"),
        ("生成时间", _excel_time(report.generated_at), "yyyy-mm-dd hh:mm"),
    ]
    for row, (label, value, fmt) in enumerate(facts, start=1):
        sheet.cell(row=row, column=1, value=label).font = _BOLD
        _put(sheet, row, 2, value, fmt)
    start = len(facts) + 2
    _header(sheet, start, ("指标", "数值", "单位"), (16, 40, 8))
    for row, fig in enumerate((*report.summary, *report.knowledge), start=start + 1):
        sheet.cell(row=row, column=1, value=fig.label)
        if fig.unit == "%":
            fmt = PERCENT_FORMAT
        elif isinstance(fig.value, int):
            fmt = "#,##0"
        else:
            fmt = "#,##0.00"
        _put(sheet, row, 2, fig.value, fmt)
        sheet.cell(row=row, column=3, value=fig.unit)


def _ranking(book: Workbook, ranking: Ranking, kind: str) -> None:
    sheet = _sheet(book, ranking.title or GROUP_NAMES.get(ranking.group, ranking.group))
    headings = (
        "排名",
        "单位编码",
        "单位名称",
        "件数",
        "响应率",
        "解决率",
        "满意率",
        "综合得分",
        PREVIOUS_RANK_HEADINGS.get(kind, "上期排名"),
        CHANGE_HEADINGS.get(kind, "较上期"),
        "专班",
        "样本不足",
    )
    _header(sheet, 1, headings, (6, 14, 28, 10, 10, 10, 10, 10, 10, 8, 6, 9))
    for row, item in enumerate(ranking.rows, start=2):
        _rank_row(sheet, row, item)
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(headings))}{len(ranking.rows) + 1}"


def _rank_row(sheet: Worksheet, row: int, item: RankRow) -> None:
    composite = None if item.composite is None else item.composite * 100
    values: list[tuple[object, str | None]] = [
        (item.rank, None),
        (item.code, None),
        (item.name, None),
        (item.orders, "#,##0"),
        (item.response, PERCENT_FORMAT),
        (item.resolution, PERCENT_FORMAT),
        (item.satisfaction, PERCENT_FORMAT),
        (composite, "0.00"),
        (item.previous_rank, None),
        (item.change, RANK_CHANGE_FORMAT),
        ("是" if item.task_force else None, None),
        ("是" if item.small_sample else None, None),
    ]
    for col, (value, fmt) in enumerate(values, start=1):
        _put(sheet, row, col, value, fmt)
        if item.task_force:
            sheet.cell(row=row, column=col).fill = _TASK_FORCE_FILL


def _counts(book: Workbook, title: str, blocks: Sequence[tuple[str, Sequence[CountRow]]]) -> None:
    """A sheet of counted items; several blocks (七有, 五性) share it with a 类别 column."""
    sheet = _sheet(book, title)
    labelled = len(blocks) > 1
    headings = (("类别",) if labelled else ()) + ("名称", "件数", "占比", "环比", "备注")
    widths = ((8,) if labelled else ()) + (30, 10, 10, 10, 30)
    _header(sheet, 1, headings, widths)
    row = 2
    for label, rows in blocks:
        for item in rows:
            values: list[tuple[object, str | None]] = [
                (item.name, None),
                (item.count, "#,##0"),
                (item.share, PERCENT_FORMAT),
                (item.change, SIGNED_PERCENT_FORMAT),
                (item.note or None, None),
            ]
            if labelled:
                values.insert(0, (label, None))
            for col, (value, fmt) in enumerate(values, start=1):
                _put(sheet, row, col, value, fmt)
            row += 1
    sheet.freeze_panes = "A2"


def _trend(book: Workbook, report: ReportData) -> None:
    sheet = _sheet(book, "趋势")
    labels: list[str] = []
    for s in report.trend:
        labels.extend(label for label, _ in s.points if label not in labels)
    _header(sheet, 1, ("日期", *(s.name for s in report.trend)), (10, *(12,) * len(report.trend)))
    for row, label in enumerate(labels, start=2):
        sheet.cell(row=row, column=1, value=label)
    for col, s in enumerate(report.trend, start=2):
        for label, count in s.points:
            _put(sheet, labels.index(label) + 2, col, count, "#,##0")
    sheet.freeze_panes = "A2"


def _warnings(book: Workbook, report: ReportData) -> None:
    sheet = _sheet(book, "预警")
    _header(sheet, 1, ("类型", "标题", "说明", "件数"), (12, 30, 60, 8))
    for row, w in enumerate(report.warnings, start=2):
        sheet.cell(row=row, column=1, value=WARNING_KIND_NAMES.get(w.kind, w.kind))
        sheet.cell(row=row, column=2, value=w.title)
        sheet.cell(row=row, column=3, value=w.explanation)
        _put(sheet, row, 4, w.orders, "#,##0")


def xlsx(report: ReportData) -> bytes:
    """The same figures as a workbook: one sheet per section that has data; rates are numbers."""
    book = Workbook()
    default = book.active
    if default is not None:
        book.remove(default)
    _overview(book, report)
    if any(s.points for s in report.trend):
        _trend(book, report)
    for ranking in report.rankings:
        if ranking.rows:
            _ranking(book, ranking, report.kind)
    count_sheets: list[tuple[str, Sequence[tuple[str, Sequence[CountRow]]]]] = [
        ("热点", [("热点", report.hotspots)]),
        ("高频问题", [("高频问题", report.by_category)]),
        ("渠道", [("渠道", report.by_channel)]),
        ("诉求类型", [("诉求类型", report.by_type)]),
        ("高频词", [("高频词", report.keywords)]),
        ("每月一题", [("每月一题", report.themes)]),
        (
            "知识库",
            [
                ("引用最多的条目", report.knowledge_entries),
                ("知识库未能答复的咨询主题", report.knowledge_themes),
            ],
        ),
        ("七有五性", [("七有", report.seven_haves), ("五性", report.five_qualities)]),
    ]
    for title, blocks in count_sheets:
        if any(rows for _, rows in blocks):
            _counts(book, title, blocks)
    if report.warnings:
        _warnings(book, report)
    if report.notes:
        sheet = _sheet(book, "说明")
        sheet.column_dimensions["A"].width = 80
        for row, note in enumerate(report.notes, start=1):
            sheet.cell(row=row, column=1, value=note)
    book.properties.title = report.title
    book.properties.creator = "jiesu"
    created = _excel_time(report.generated_at)
    book.properties.created = book.properties.modified = created
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


__all__ = [
    "figure_value",
    "html",
    "number",
    "pdf",
    "percent",
    "rank_change",
    "score",
    "signed_percent",
    "xlsx",
]
