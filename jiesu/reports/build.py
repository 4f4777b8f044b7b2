"""Building the daily bulletin (日通报), weekly summary (周汇总) and monthly analysis (月分析).

`report_data(kind, period)` reads the rollups (never the whole ticket table: a Beijing month is
two million orders) into a `ReportData`; `build()` renders it (HTML, PDF, Excel) and stores it,
one report per kind and period (building again replaces it). `due(now)` says which reports the
worker owes: yesterday's bulletin, last week's summary, last month's analysis.

Periods: a day `2026-11-03`, an ISO week `2026-W45` (Monday to Sunday), a month `2026-10`; all
in the city's time. The rates are those of `assessment` for the orders units got in the period.

Scope: the stored reports are the city's, for the service centre. A district's own report (its
streets, its figures, its warnings; `report_data(…, district=)`) is built on demand for the
period of a stored one, never stored; `reader_scope` says which one a reader gets: the centre the
city's (or any district's it asks for), anyone in a district that district's, and a reader at a
city-level unit outside the centre (a department, a company) none, since each report is a whole
city's or a whole district's.
"""

from __future__ import annotations

import html as html_text
import logging
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jiesu.access.policy import Principal
from jiesu.analysis import detect
from jiesu.analysis.service import _sample, _themes_input, as_read, in_tree, unit_reader
from jiesu.assessment import service as A
from jiesu.assessment.models import IntakeRollup, Report, Warning
from jiesu.db.base import utcnow
from jiesu.errors import Forbidden, Invalid, NotFound
from jiesu.reports import fonts, render, terms
from jiesu.reports.shapes import (
    CountRow,
    Figure,
    Ranking,
    RankRow,
    ReportData,
    Series,
    WarningRow,
)
from jiesu.settings import city_tz
from jiesu.taxonomy.service import pack_settings
from jiesu.tickets.models import Ticket
from jiesu.web.labels import CHANNEL_NAMES, REQUEST_TYPE_NAMES
from jiesu.web.params import EARLIEST, LATEST

LOG = logging.getLogger(__name__)
KIND_NAMES = {"daily": "日通报", "weekly": "周汇总", "monthly": "月度分析"}
GROUP_TITLES = {"district": "各区排名", "street": "街道（乡镇）排名",
                "department": "市级部门排名", "company": "公共服务企业排名"}  # fmt: skip
SEVEN_HAVES = ("幼有所育", "学有所教", "劳有所得", "病有所医", "老有所养", "住有所居", "弱有所扶")
FIVE_QUALITIES = ("便利性", "宜居性", "多样性", "公正性", "安全性")
PERIOD = {
    "daily": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "weekly": re.compile(r"^\d{4}-W\d{2}$"),
    "monthly": re.compile(r"^\d{4}-\d{2}$"),
}

PERIOD_EXAMPLES = {"daily": "日期，如 2026-11-03", "weekly": "年份和周数，如 2026年第45周",
                   "monthly": "年份和月份，如 2026-10"}  # fmt: skip
WEEK_IN_WORDS = re.compile(r"^(\d{4})\s*年\s*第\s*(\d{1,2})\s*周$")


def canonical_period(kind: str, text: str) -> str:
    """What a person typed → the stored form: 2026年第45周 → 2026-W45."""
    text = text.strip()
    if kind == "weekly" and (m := WEEK_IN_WORDS.match(text)):
        return f"{m.group(1)}-W{int(m.group(2)):02d}"
    return text


def bounds(kind: str, period: str) -> tuple[date, date]:
    """The first and last day (inclusive) of a period; Invalid for a malformed one."""
    if kind not in PERIOD:
        raise Invalid("请选择报告类型（日通报、周汇总或月度分析）", field="kind")
    if not PERIOD[kind].match(period):
        raise Invalid(f"期间格式不对：{KIND_NAMES[kind]}的期间应写成{PERIOD_EXAMPLES[kind]}",
                      field="period")  # fmt: skip
    try:
        if kind == "daily":
            day = date.fromisoformat(period)
            first, last = day, day
        elif kind == "weekly":
            year, week = period.split("-W")
            first = date.fromisocalendar(int(year), int(week), 1)
            last = first + timedelta(days=6)
        else:
            first, last = A.month_bounds(period)
    except (ValueError, OverflowError) as exc:
        raise Invalid(f"没有这个期间：{period}（日期或周数超出范围）", field="period") from exc
    if not (first >= EARLIEST and last <= LATEST):
        raise Invalid(f"期间须在 {EARLIEST} 至 {LATEST} 之间：{period}", field="period")
    return first, last


def previous(kind: str, period: str) -> str:
    start, _ = bounds(kind, period)
    if kind == "daily":
        return (start - timedelta(days=1)).isoformat()
    if kind == "weekly":
        year, week, _ = (start - timedelta(days=7)).isocalendar()
        return f"{year}-W{week:02d}"
    return A.previous_month(period)


def period_of(kind: str, day: date) -> str:
    if kind == "daily":
        return day.isoformat()
    if kind == "weekly":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day:%Y-%m}"


def due(now: datetime) -> list[tuple[str, str]]:
    """The reports owed at `now`: the last complete day, week and month."""
    today = now.astimezone(city_tz()).date()
    yesterday = today - timedelta(days=1)
    last_week = today - timedelta(days=today.isoweekday())  # last Sunday
    last_month = today.replace(day=1) - timedelta(days=1)
    return [("daily", period_of("daily", yesterday)), ("weekly", period_of("weekly", last_week)),
            ("monthly", period_of("monthly", last_month))]  # fmt: skip


# ---- reading ---------------------------------------------------------------------------------


def _counts(db_session: Session, start: date, end: date,
            district_id: int | None = None) -> dict[tuple[str, str, int], int]:  # fmt: skip
    """(dim, key, district id) → requests in the period, from the intake rollup (one district's
    rows only, when given)."""
    where = [IntakeRollup.day.between(start, end),
             IntakeRollup.dim.in_(("all", "street", "category", "channel", "type"))]  # fmt: skip
    if district_id is not None:
        where.append(IntakeRollup.district_id == district_id)
    rows = db_session.execute(
        select(
            IntakeRollup.dim, IntakeRollup.key, IntakeRollup.district_id, func.sum(IntakeRollup.n)
        )
        .where(*where)
        .group_by(IntakeRollup.dim, IntakeRollup.key, IntakeRollup.district_id)
    )
    return {(d, k, dist): int(n or 0) for d, k, dist, n in rows}


def _by(counts: Mapping[tuple[str, str, int], int], dim: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for (d, key, _), n in counts.items():
        if d == dim:
            out[key] += n
    return out


def _rows(now: Counter[str], before: Counter[str], names: Mapping[str, str], top: int = 15,
          total: int | None = None) -> tuple[CountRow, ...]:  # fmt: skip
    total = total if total is not None else sum(now.values())
    rows = []
    for key, n in now.most_common(top):
        if not n:
            continue
        b = before.get(key, 0)
        rows.append(CountRow(names.get(key, key or "未知"), n, n / total if total else None,
                             (n - b) / b if b else None))  # fmt: skip
    return tuple(rows)


def _trend(db_session: Session, start: date, end: date,
           district_id: int | None = None) -> tuple[Series, ...]:  # fmt: skip
    def daily(a: date, b: date) -> dict[date, int]:
        where = [IntakeRollup.dim == "all", IntakeRollup.day.between(a, b)]
        if district_id is not None:
            where.append(IntakeRollup.district_id == district_id)
        return {
            d: int(n or 0)
            for d, n in db_session.execute(
                select(IntakeRollup.day, func.sum(IntakeRollup.n))
                .where(*where)
                .group_by(IntakeRollup.day)
            )
        }

    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    if len(days) < 7:  # a day's bulletin shows the 30 days up to it
        days = [end - timedelta(days=i) for i in range(29, -1, -1)]
    now = daily(days[0], days[-1])
    shift = timedelta(days=364)  # the same weekday a year before
    before = daily(days[0] - shift, days[-1] - shift)
    series = [Series("受理量", tuple((f"{d:%m-%d}", now.get(d, 0)) for d in days))]
    if any(before.values()):
        series.append(Series("去年同期", tuple((f"{d:%m-%d}", before.get(d - shift, 0))
                                           for d in days)))  # fmt: skip
    return tuple(series)


def _rank_rows(r: A.Rankings) -> tuple[RankRow, ...]:
    return tuple(
        RankRow(
            rank=x.rank, code=x.code, name=x.name, orders=x.orders,
            response=x.rates["response"].value, resolution=x.rates["resolution"].value,
            satisfaction=x.rates["satisfaction"].value,
            composite=None if x.composite is None else x.composite / 100,
            previous_rank=x.previous_rank, change=x.change, task_force=x.task_force,
            small_sample=x.small_sample,
        )
        for x in r.rows
    )  # fmt: skip


KEYWORD_SAMPLE = 3000  # texts read for 高频词: an even sample (shares move < 2 points beyond)


def _keywords(db_session: Session, start: date, end: date,
              district_id: int | None = None) -> tuple[CountRow, ...]:  # fmt: skip
    """高频词: the problem terms (`reports.terms`) most texts of the period raise, with the
    share of texts raising each."""
    sample = _sample(db_session, start, end, district_id)
    sample = sample[:: max(1, -(-len(sample) // KEYWORD_SAMPLE))]
    total = len(sample)
    return tuple(CountRow(w, n, n / total if total else None)
                 for w, n in terms.top_terms((o.text for o in sample), 20))  # fmt: skip


def report_data(kind: str, period: str, *, db_session: Session, now: datetime | None = None,
                district: str | None = None) -> ReportData:  # fmt: skip
    """The city's report, or with `district` (a unit code) that district's own: its requests,
    rates, streets and warnings only (the rollups carry the district)."""
    now = now or utcnow()
    start, end = bounds(kind, period)
    p_start, p_end = bounds(kind, previous(kind, period))
    units = A.unit_index(db_session=db_session)
    categories = A.category_index(db_session=db_session)
    settings = pack_settings(db_session=db_session)
    city = units.by_id.get(next(iter(u.id for u in units.by_id.values() if u.kind == "city"), -1))
    city_name = city.name if city else ""
    scope = units.by_code.get(district) if district else None
    if district and (scope is None or scope.kind != "district"):
        raise NotFound(f"没有这个区：{district} / no such district")
    scope_id = scope.id if scope else None
    counts = _counts(db_session, start, end, scope_id)
    before = _counts(db_session, p_start, p_end, scope_id)
    total = sum(_by(counts, "all").values())
    total_before = sum(_by(before, "all").values())
    rates, totals = A.scope_rates(start, end, db_session=db_session, now=now,
                                  scope=scope.code if scope else None)  # fmt: skip
    past_due = [Ticket.status.in_(("dispatched", "accepted")), Ticket.due_at < now]
    if scope is not None:
        past_due.append(Ticket.district_id == scope.id)
    overdue_now = db_session.scalar(select(func.count()).select_from(Ticket).where(*past_due))
    days = (end - start).days + 1
    summary = [
        Figure("受理量", total, "件"),
        Figure("较上期", (total - total_before) / total_before if total_before else None, "%"),
        Figure("日均受理", round(total / days, 1), "件"),
        Figure("派单量", totals.get("dispatched", 0), "件"),
        Figure("直接答复率", _value(rates, "direct_answer"), "%"),
        Figure("响应率", rates["response"].value, "%"),
        Figure("解决率", rates["resolution"].value, "%"),
        Figure("满意率", rates["satisfaction"].value, "%"),
        Figure("按时办结率", rates["complete_on_time"].value, "%"),
        Figure("派单准确率", _value(rates, "centre_dispatch_accuracy"), "%"),
        Figure("基层解决率", rates["grassroots"].value, "%"),
        Figure("当前超期工单", int(overdue_now or 0), "件"),
    ]
    if scope is not None:  # the centre's own figures are the city's, not the district's
        centre_only = {"派单量", "直接答复率", "派单准确率"}
        summary = [f for f in summary if f.label not in centre_only]
        summary.insert(3, Figure("计入考核工单", totals.get("counted", 0), "件"))
    leaf_names = {c.code: c.name for c in categories.values()}
    by_code = {c.code: c for c in categories.values()}
    street_names = {}
    for u in units.by_id.values():
        if u.kind == "street":
            area = units.district_of(u)
            street_names[u.code] = f"{area.name}·{u.name}" if area else u.name
    cat_now, cat_before = _by(counts, "category"), _by(before, "category")
    seven: Counter[str] = Counter()
    five: Counter[str] = Counter()
    for code, n in cat_now.items():
        c = by_code.get(code)
        if c is not None:
            for dim in c.seven_haves:
                seven[dim] += n
            for dim in c.five_qualities:
                five[dim] += n
    rankings: tuple[Ranking, ...] = ()
    themes: tuple[CountRow, ...] = ()
    notes = [
        "工单计入单位取得工单当日所在期间；经批准考核剔除的工单不计入三率。",
        f"综合得分 = 响应率、解决率、满意率按单位类别权重加权（默认 "
        f"{settings.get('weights', {}).get('default', {}).get('response', 0.1):.2f} / "
        f"{settings.get('weights', {}).get('default', {}).get('resolution', 0.45):.2f} / "
        f"{settings.get('weights', {}).get('default', {}).get('satisfaction', 0.45):.2f}）。",
    ]
    if kind == "monthly":
        rankings = tuple(
            Ranking(
                g,
                GROUP_TITLES[g],
                _rank_rows(A.rankings(period, g, db_session=db_session, now=now)),
            )
            for g in GROUP_TITLES
        )
        if scope is not None:  # the district's own units, with their places in the city
            mine = {u.code for u in units.by_id.values() if u.path.startswith(scope.path)}
            rankings = tuple(Ranking(r.group, r.title, tuple(x for x in r.rows if x.code in mine))
                             for r in rankings)  # fmt: skip
        rankings = tuple(r for r in rankings if r.rows)
        notes.append(f"样本不足 {settings.get('small_sample', 30)} 件的单位列出但不排名；"
                     "每类末位单位列入专班。")  # fmt: skip
        signals = detect.themes(_themes_input(db_session, period, district_id=scope_id), period,
                                names=leaf_names)  # fmt: skip
        themes = tuple(CountRow(s.title, int(s.figures.get("total", s.figures.get("volume", 0))),
                                note=s.explanation) for s in signals[:10])  # fmt: skip
    knowledge = _knowledge(db_session, start, min(end, now.astimezone(city_tz()).date())) if (
        kind == "monthly" and scope is None) else ((), (), ())  # fmt: skip
    # A district's report lists the warnings about its tree, counting the evidence its people
    # may open (as `analysis.service.listing` shows them to a district reader).
    reader = unit_reader(scope) if scope is not None else None
    stmt = select(Warning).where(Warning.day.between(start, end))
    warnings: Sequence[Any] = db_session.scalars(
        (in_tree(stmt, reader) if reader else stmt).order_by(Warning.score.desc()).limit(30)
    ).all()  # fmt: skip
    if reader is not None:
        warnings = as_read(warnings, reader, db_session=db_session)
    return ReportData(
        kind=kind, period=period,
        title=title(kind, period, city_name, scope.name if scope else ""),
        city=city_name, district=scope.name if scope else "", start=start, end=end, generated_at=now.astimezone(UTC),
        summary=tuple(summary), rankings=rankings,
        by_category=_rows(cat_now, cat_before, leaf_names),
        by_channel=_rows(_by(counts, "channel"), _by(before, "channel"), CHANNEL_NAMES),
        by_type=_rows(_by(counts, "type"), _by(before, "type"), REQUEST_TYPE_NAMES),
        hotspots=_rows(_by(counts, "street"), _by(before, "street"), street_names),
        keywords=_keywords(db_session, start, end, scope_id),
        trend=_trend(db_session, start, end, scope_id), themes=themes,
        seven_haves=tuple(CountRow(d, seven[d], seven[d] / total if total else None)
                          for d in SEVEN_HAVES),
        five_qualities=tuple(CountRow(d, five[d], five[d] / total if total else None)
                             for d in FIVE_QUALITIES),
        warnings=tuple(WarningRow(w.kind, w.title, w.explanation, len(w.evidence or []))
                       for w in warnings),
        notes=tuple(notes),
        knowledge=knowledge[0], knowledge_entries=knowledge[1], knowledge_themes=knowledge[2],
    )  # fmt: skip


def _knowledge(db_session: Session, start: date, end: date
               ) -> tuple[tuple[Figure, ...], tuple[CountRow, ...], tuple[CountRow, ...]]:  # fmt: skip
    """知识库与直接答复 (issue 16 §6): the month's direct answers and the base's part in them,
    the entries used most, and the top themes callers asked that the base does not answer."""
    from jiesu.knowledge.figures import figures

    k = figures(start, end, db_session=db_session)
    summary = (
        Figure("直接答复率", k.direct_answer_rate, "%"),
        Figure("咨询直接答复率", k.consultation_answer_rate, "%"),
        Figure("引用知识库答复", k.with_entry, "件"),
        Figure("占直接答复", k.entry_share, "%"),
        Figure("在用知识条目", k.published, "条"),
        Figure("30天内到期条目", k.expiring, "条"),
        Figure("待处理纠错", k.open_flags, "条"),
        Figure("建议新增条目", k.open_suggestions, "条"),
    )
    entries = tuple(CountRow(f"{e.code} {e.title}", e.uses, e.uses / k.with_entry)
                    for e in k.top_entries)  # fmt: skip
    themes = tuple(CountRow(t.title, t.size, note="、".join(t.terms[:4])
                            + (f"（{t.owner}）" if t.owner else "")) for t in k.themes)  # fmt: skip
    if not k.received and not k.published and not themes:
        return (), (), ()
    return summary, entries, themes


def _value(rates: Mapping[str, Any], key: str) -> float | None:
    """A rate's value; None for one the scope has not (the centre's own, in a district)."""
    rate = rates.get(key)
    return None if rate is None else rate.value  # type: ignore[no-any-return]


def title(kind: str, period: str, city_name: str, district_name: str = "") -> str:
    """小城市12345接诉即办 2026年10月 月度分析; a district's: 小城市东区12345接诉即办 …"""
    return f"{city_name}{district_name}12345接诉即办 {_label(kind, period)} {KIND_NAMES[kind]}"


def _label(kind: str, period: str) -> str:
    if kind == "monthly":
        year, month = period.split("-")
        return f"{year}年{int(month)}月"
    if kind == "weekly":
        start, end = bounds(kind, period)
        return f"{start:%Y年%m月%d日}至{end:%m月%d日}"
    day = date.fromisoformat(period)
    return f"{day.year}年{day.month}月{day.day}日"


# ---- building and storing ----------------------------------------------------------------------


_TAG = re.compile(r"<style.*?</style>|<[^>]+>", re.S)


def check_glyphs(page: str) -> None:
    """Refuse (Invalid, logged) a report whose text has a character the report font cannot
    draw: stored, it would print as a box in the PDF. `page` is the rendered HTML (its charts'
    labels are text in it), so this is every character of every format."""
    absent = fonts.missing(html_text.unescape(_TAG.sub(" ", page)))
    if absent:
        listed = "、".join(f"“{c}”（U+{ord(c):04X}）" for c in absent[:10])
        more = f"等 {len(absent)} 个" if len(absent) > 10 else ""
        LOG.warning("report refused: no glyph in %s for %s", fonts.font_id(),
                    " ".join(f"U+{ord(c):04X}" for c in absent))  # fmt: skip
        raise Invalid(f"报告中有字体无法显示的字符：{listed}{more}。报告未保存，"
                      "请修改含这些字符的名称或内容后重新生成。")  # fmt: skip


def font_marker() -> str:
    """What a report's HTML says about the font it was rendered with (see `reports.fonts`)."""
    return f'<meta name="jiesu-font" content="{html_text.escape(fonts.font_id())}">'


def rendered_with_current_font(page: str) -> bool:
    """Whether a stored report's HTML was rendered with the font in use now (reports stored
    before the font came with jiesu, or under another version, are rebuilt)."""
    return font_marker() in page


@dataclass(frozen=True)
class Composed:
    """A report in its three formats, not stored yet (`compose`, then `store`)."""

    kind: str
    period: str
    title: str
    html: str
    pdf: bytes
    xlsx: bytes
    seconds: float


def compose(kind: str, period: str, *, db_session: Session,
            now: datetime | None = None) -> Composed:  # fmt: skip
    """Read the figures and render one report in all three formats; nothing is written, so the
    session may be an analysis one (the read replica, `Database.analysis`). Invalid when some
    character of it has no glyph in the report font."""
    started = time.perf_counter()
    data = report_data(kind, period, db_session=db_session, now=now)
    html = render.html(data)
    check_glyphs(html)
    pdf, xlsx = render.pdf(data, html), render.xlsx(data)
    return Composed(kind, period, data.title, html, pdf, xlsx, time.perf_counter() - started)


def store(composed: Composed, *, db_session: Session, user_id: int | None = None) -> Report:
    """Keep a composed report (replacing an earlier build of the same kind and period)."""
    kind, period = composed.kind, composed.period
    report = db_session.scalar(select(Report).where(Report.kind == kind, Report.period == period))
    if report is None:
        report = Report(kind=kind, period=period)
        db_session.add(report)
    report.title, report.html, report.pdf = composed.title, composed.html, composed.pdf
    report.xlsx, report.seconds = composed.xlsx, composed.seconds
    report.created_at, report.created_by_id = utcnow(), user_id
    db_session.flush()
    return report


def build(kind: str, period: str, *, db_session: Session, user_id: int | None = None,
          now: datetime | None = None) -> Report:  # fmt: skip
    """Build one report in all three formats and store it, in one session (replacing an earlier
    build). Invalid, with nothing stored, when some character of it has no glyph in the font."""
    composed = compose(kind, period, db_session=db_session, now=now)
    return store(composed, db_session=db_session, user_id=user_id)


def build_on(db: Any, kind: str, period: str, *, user_id: int | None = None,
             now: datetime | None = None) -> tuple[int, Composed]:  # fmt: skip
    """Build and store one report with `db`: the figures read in an analysis session (the read
    replica where one is set, once it has replayed what this process wrote before, such as the
    warnings scan the report lists), the report stored on the primary in a short transaction
    of its own. The stored report's id, and the report."""
    with db.analysis(fresh=True) as reading:
        composed = compose(kind, period, db_session=reading, now=now)
    with db.write() as session:
        return int(store(composed, db_session=session, user_id=user_id).id), composed


def stale(*, db_session: Session, limit: int = 10) -> list[tuple[str, str]]:
    """Stored reports rendered with another font than today's (or before fonts were checked):
    (kind, period), newest period first; the worker rebuilds them. The database looks for the
    marker; no report's bytes are read here."""
    rows = db_session.execute(
        select(Report.kind, Report.period)
        .where(~Report.html.contains(font_marker(), autoescape=True))
        .order_by(Report.period.desc(), Report.kind)
        .limit(limit)
    )
    return [(kind, period) for kind, period in rows]


def render_current(kind: str, period: str, fmt: str, *, db_session: Session,
                   now: datetime | None = None) -> str | bytes:  # fmt: skip
    """The city's report of `kind` and `period` in one format, rendered now (for a stored one
    rendered with another font, until the worker has rebuilt it)."""
    return _in_format(report_data(kind, period, db_session=db_session, now=now), fmt)


def _in_format(data: ReportData, fmt: str) -> str | bytes:
    """A report's data as html, pdf or xlsx, refused when a character cannot be drawn."""
    page = render.html(data)
    check_glyphs(page)
    if fmt == "pdf":
        return render.pdf(data, page)
    if fmt == "xlsx":
        return render.xlsx(data)
    return page


def listing(*, db_session: Session, kind: str | None = None, limit: int = 100,
            district: A.UnitRow | None = None) -> list[Any]:  # fmt: skip
    """Stored reports, newest period first, without their bytes. With `district`, the same
    periods as that district's reports (built on demand when opened): their titles are the
    district's and nothing of the stored city report is shown."""
    stmt = select(Report.id, Report.kind, Report.period, Report.title, Report.created_at,
                  Report.seconds, Report.created_by_id)  # fmt: skip
    if kind:
        stmt = stmt.where(Report.kind == kind)
    rows = list(db_session.execute(stmt.order_by(Report.period.desc(), Report.kind).limit(limit)))
    if district is None:
        return rows
    units = A.unit_index(db_session=db_session)
    city = next((u.name for u in units.by_id.values() if u.kind == "city"), "")
    return [
        DistrictReportRow(r.id, r.kind, r.period, title(r.kind, r.period, city, district.name),
                          district.code)
        for r in rows
    ]  # fmt: skip


@dataclass(frozen=True)
class DistrictReportRow:
    """A district's report in the list: built when opened, so no build time or builder."""

    id: int  # the stored city report of the same kind and period (the URL's id)
    kind: str
    period: str
    title: str
    district: str  # the district's code


def reader_scope(actor: Principal, *, db_session: Session,
                 district: str | None = None) -> A.UnitRow | None:  # fmt: skip
    """Whose report a reader gets: None for the city's (the service centre, unless it asks for
    a district's with `district`), or the district of the reader's unit. A reader at a city-level
    unit outside the centre (a department, a company) gets none: Forbidden."""
    units = A.unit_index(db_session=db_session)
    if actor.is_service_centre:
        if not district:
            return None
        chosen = units.by_code.get(district)
        if chosen is None or chosen.kind != "district":
            raise NotFound(f"没有这个区：{district} / no such district")
        return chosen
    unit = units.by_id.get(actor.unit_id)
    own = units.district_of(unit) if unit is not None else None
    if own is None:
        raise Forbidden("分析报告按全市或区编制，本单位不属于任何区 / reports are the city's or a "
                        "district's; your unit is in no district")  # fmt: skip
    if district and district != own.code:
        raise NotFound(f"没有这个区：{district} / no such district")
    return own


def render_district(kind: str, period: str, district: A.UnitRow, fmt: str, *,
                    db_session: Session, now: datetime | None = None) -> str | bytes:  # fmt: skip
    """A district's own report of `kind` and `period` in one format (html|pdf|xlsx), built now
    from the rollups (never the stored city report's bytes)."""
    data = report_data(kind, period, db_session=db_session, now=now,
                       district=district.code)  # fmt: skip
    return _in_format(data, fmt)


_scanned: dict[str, float] = {}  # per database: when this process last scanned for warnings
SCAN_EVERY_S = 3600.0
_fonts_checked: set[str] = set()  # per database: no stored report under another font is left
_unbuildable: set[tuple[str, str, str]] = set()  # (database, kind, period) refused on rebuild


def run_schedule(db: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """What the worker does on schedule: build the owed reports (yesterday's bulletin, last
    week's summary, last month's analysis), scan yesterday once and today every hour."""
    from jiesu.analysis.service import scan

    now = now or utcnow()
    done: dict[str, Any] = {"reports": [], "warnings": {}}
    today = now.astimezone(city_tz()).date()
    key = str(db.url) if hasattr(db, "url") else str(id(db))
    if time.monotonic() - _scanned.get(key, -SCAN_EVERY_S) >= SCAN_EVERY_S:
        _scanned[key] = time.monotonic()
        for day in (today - timedelta(days=1), today):
            with db.write() as session:
                done["warnings"][day.isoformat()] = scan(day, db_session=session)
    from jiesu.assessment.service import freeze_due

    with db.write() as session:  # a month past the pack's cut-off is frozen (published) once
        done["frozen"] = freeze_due(now, db_session=session)
    with db.read() as session:
        todo = owed(now, db_session=session)
    for kind, period in todo:  # warnings first: the reports list them
        build_on(db, kind, period, now=now)
        done["reports"].append((kind, period))
    redo: list[tuple[str, str]] = []
    if key not in _fonts_checked:  # stored under another font (or with boxes): rebuilt, a few a
        with db.read() as session:  # run, until none is left; then not looked for again here
            redo = [r for r in stale(db_session=session, limit=30)
                    if r not in todo and (key, *r) not in _unbuildable][:3]  # fmt: skip
        if not redo:
            _fonts_checked.add(key)
    for kind, period in redo:
        try:
            build_on(db, kind, period, now=now)
        except Invalid as exc:  # logged by check_glyphs; the old report stays as it was
            _unbuildable.add((key, kind, period))
            LOG.warning("stale report %s %s not rebuilt: %s", kind, period, exc.message)
            continue
        done["reports"].append((kind, period))
    return done


def owed(now: datetime, *, db_session: Session) -> list[tuple[str, str]]:
    """The due reports not built yet."""
    have = {(k, p) for k, p in db_session.execute(select(Report.kind, Report.period))}
    return [d for d in due(now) if d not in have]
