"""Console pages of the assessment and analysis (SPEC §5–6).

- /console/assessment: the month's ranking of districts, streets, departments or companies with
  every rate; a unit admin sees its own unit only. A frozen month shows its published figures
  (`view=live` shows them as they stand now) and the page says which. Each figure links to the
  orders behind it (/console/assessment/drill): the overdue rate to the late replies and the
  orders open past due, the satisfaction rate to its evaluations by level, and the orders whose
  first contact is still within its limit (pending) are listed apart.
- /console/warnings: early warnings with their evidence; a dispatcher turns one into a proactive
  task (dispatched like an order) or dismisses it with a reason; the centre can run a scan at
  once. A reader outside the centre sees the warnings about their tree and, in each, only the
  evidence orders they may open (`analysis.service`); any other id is 404.
- /console/reports: the stored daily, weekly and monthly reports (HTML, PDF, Excel); the centre's
  analysts build one on demand. A district's people get their district's own report of each
  period, built when opened (`reports.build.reader_scope`); the centre may ask for one with
  `?district=`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jiesu.access.permissions import allows
from jiesu.access.policy import Principal
from jiesu.analysis import service as warnings_service
from jiesu.assessment import service as A
from jiesu.assessment.models import Report
from jiesu.assessment.rates import BY_KEY
from jiesu.console.lookup import options, resolve
from jiesu.console.service import FormValues
from jiesu.console.views import frame, page
from jiesu.db.base import utcnow
from jiesu.errors import DomainError, Forbidden, Invalid, NotFound
from jiesu.reports import build as reports
from jiesu.settings import city_tz
from jiesu.web.deps import DB, AnalysisSession, ReadSession
from jiesu.web.headers import REPORT_CSP
from jiesu.web.params import BigId, form_month
from jiesu.web.templating import period_text, render, zh

router = APIRouter(include_in_schema=False)


Assessor = page("assessment.view")
WarningReader = page("warnings.view")
WarningHandler = page("warnings.handle")
ReportReader = page("reports.view")
ReportBuilder = page("reports.build")

GROUPS = {"district": "区", "street": "街道（乡镇）", "department": "部门", "company": "企业"}
COLUMNS = ("response", "resolution", "satisfaction", "accept_on_time", "complete_on_time",
           "overdue", "extension", "return", "dispatch_accuracy", "reopen", "callback",
           "avg_hours")  # fmt: skip
# Which orders a column's figure drills into (the satisfaction rate: its evaluations by level).
COLUMN_DRILL = {"response": "not_responded", "resolution": "unsolved",
                "satisfaction": "evaluated", "accept_on_time": "not_accepted_on_time",
                "complete_on_time": "replied_on_time", "overdue": "overdue",
                "extension": "extended", "return": "returned",
                "dispatch_accuracy": "misdispatched", "reopen": "reopened",
                "callback": "callbacks", "avg_hours": "replied"}  # fmt: skip
LEVEL_NAMES = {"very_satisfied": "非常满意", "satisfied": "满意", "basically_satisfied": "基本满意",
               "dissatisfied": "不满意", "very_dissatisfied": "非常不满意"}  # fmt: skip
DRILL_NAMES = {"led": "主办工单", "counted": "计入考核的工单", "responded": "按时响应",
               "response_counted": "计入响应率的工单", "not_responded": "未按时响应",
               "pending": "待响应（仍在联系时限内）", "evaluated": "已评价", "solved": "已解决",
               "unsolved": "评价未解决", "dissatisfied": "不满意", "late": "超期办结",
               "overdue": "超期（超期办结及超期未办结）", "replied": "已办结",
               "replied_on_time": "按时办结", "accepted_on_time": "按时签收",
               "extended": "延期", "returned": "申请退单", "misdispatched": "批准退单（派错）",
               "reopened": "重办", "exempted": "考核剔除", "not_accepted_on_time": "未按时签收",
               "audited": "审核通过的办结", "callbacks": "已回访",
               **{f"level_{k}": f"评价{v}" for k, v in LEVEL_NAMES.items()}}  # fmt: skip


def _today() -> date:
    return utcnow().astimezone(city_tz()).date()


def _month(period: str | None) -> str:
    if period:
        return form_month(period)  # Invalid when malformed or out of range
    return f"{_today():%Y-%m}"


def _own_scope(actor: Principal, session: Any) -> A.UnitRow | None:
    """A unit admin's own unit (they see nothing else); None for the centre."""
    if actor.is_service_centre:
        return None
    units = A.unit_index(db_session=session)
    unit = units.by_id.get(actor.unit_id)
    if unit is None:
        raise Forbidden("没有所属单位 / no unit")
    return unit


@router.get("/console/assessment", response_class=HTMLResponse)
def assessment_page(
    request: Request, actor: Assessor, session: AnalysisSession,
    period: Annotated[str | None, Query(max_length=7)] = None,
    group: Annotated[str | None, Query(max_length=12)] = None,
    view: Annotated[str | None, Query(max_length=12)] = None,
) -> Response:  # fmt: skip
    try:
        month = _month(period)
    except DomainError as exc:
        month, error = f"{_today():%Y-%m}", zh(exc.message)
    else:
        error = None
    own = _own_scope(actor, session)
    if group not in GROUPS:  # a district's own people look at its streets first
        group = "street" if own is not None and own.kind == "district" else "district"
    start, end = A.month_bounds(month)
    live = view == "live"
    ranking = A.rankings(month, group, db_session=session, live=live)
    rows: list[Any] | None = ranking.rows
    mine = None
    if own is not None:  # a unit's own figures, and the ranking of the units under it
        r, totals = A.scope_rates(start, end, db_session=session, scope=own.code,
                                  period=None if live else month)  # fmt: skip
        mine = {"unit": own, "rates": r, "totals": totals}
        units = A.unit_index(db_session=session)
        rows = [x for x in rows or []
                if (u := units.by_code.get(x.code)) and u.path.startswith(own.path)
                and u.id != own.id] or None  # fmt: skip
    months = [f"{_today():%Y-%m}"]
    for _ in range(12):
        months.append(A.previous_month(months[-1]))
    knowledge = _knowledge(actor, own, start, end, session)
    ctx = frame(
        request, actor, session, title="考评排名", month=month, group=group, groups=GROUPS,
        knowledge=knowledge,
        rows=rows, mine=mine, columns=COLUMNS, definitions=BY_KEY, drill=COLUMN_DRILL,
        months=months if month in months else [month, *months], error=error,
        ranking=ranking, view_q="&view=live" if live else "",
        frozen_exists=live and A.frozen_month(month, db_session=session) is not None,
    )  # fmt: skip
    return render(request, "console/assessment.html", ctx,
                  status_code=422 if error else 200)  # fmt: skip


def _knowledge(actor: Principal, own: A.UnitRow | None, start: date, end: date,
               session: Any) -> Any:  # fmt: skip
    """知识库与直接答复 (issue 16 §6): the centre's figures, or a department's own entries'."""
    from jiesu.knowledge.figures import figures

    if own is not None and own.kind not in ("department", "company"):
        return None
    return figures(start, min(end, _today()), db_session=session,
                   unit_id=own.id if own is not None else None)  # fmt: skip


@router.get("/console/assessment/drill", response_class=HTMLResponse)
def drill_page(
    request: Request, actor: Assessor, session: AnalysisSession,
    unit: Annotated[str, Query(max_length=40)], what: Annotated[str, Query(max_length=30)],
    period: Annotated[str | None, Query(max_length=7)] = None,
    page_no: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1,
    view: Annotated[str | None, Query(max_length=12)] = None,
) -> Response:  # fmt: skip
    month = _month(period)
    own = _own_scope(actor, session)
    units = A.unit_index(db_session=session)
    target = units.by_code.get(unit)
    if target is None or what not in A.DRILL:
        raise NotFound("没有这项数据 / no such figure")
    if own is not None and not target.path.startswith(own.path):
        raise NotFound("没有这项数据 / no such figure")
    start, end = A.month_bounds(month)
    size = 50
    live = view == "live"
    frozen = not live and A.frozen_month(month, db_session=session) is not None
    period_q = month if frozen else None
    now = utcnow()
    total, tickets = A.drill(unit, start, end, what, db_session=session, limit=size,
                             offset=(page_no - 1) * size, now=now, period=period_q)  # fmt: skip
    levels = None
    if what == "evaluated" or what.startswith("level_"):  # 满意率: its evaluations by level
        levels = [(f"level_{k}", name, A.drill(unit, start, end, f"level_{k}", db_session=session,
                                                limit=0, now=now, period=period_q)[0])
                  for k, name in LEVEL_NAMES.items()]  # fmt: skip
    ctx = frame(
        request, actor, session, title=f"{target.name} · {DRILL_NAMES.get(what, what)}",
        unit=target, what=what, month=month, tickets=tickets, total=total, page=page_no,
        pages=max(1, (total + size - 1) // size), what_name=DRILL_NAMES.get(what, what),
        levels=levels, basis="frozen" if frozen else "live", view_q="&view=live" if live else "",
    )  # fmt: skip
    return render(request, "console/assessment_drill.html", ctx)


# ---- warnings ------------------------------------------------------------------------------


@router.get("/console/warnings", response_class=HTMLResponse)
def warnings_page(
    request: Request, actor: WarningReader, session: ReadSession,
    status: Annotated[str, Query(max_length=12)] = "open",
    kind: Annotated[str, Query(max_length=12)] = "",
) -> Response:  # fmt: skip
    if status not in warnings_service.STATUS_NAMES:
        status = "open"
    rows = warnings_service.listing(reader=actor, db_session=session, status=status,
                                    kind=kind or None)  # fmt: skip
    ctx = frame(
        request, actor, session, title="预警与主动治理", rows=rows, status=status, kind=kind,
        kinds=warnings_service.KIND_NAMES, statuses=warnings_service.STATUS_NAMES,
        counts=warnings_service.open_counts(reader=actor, db_session=session),
        figure_lines=warnings_service.figure_lines,
        may_handle=allows("warnings.handle", actor.role),
    )  # fmt: skip
    return render(request, "console/warnings.html", ctx)


def _warning_page(request: Request, actor: Principal, session: Any, warning_id: int,
                  error: str | None = None, status_code: int = 200) -> Response:  # fmt: skip
    warning = warnings_service.get_warning(warning_id, reader=actor, db_session=session)
    evidence = warnings_service.evidence(warning, db_session=session)
    lead = warnings_service.suggested_lead(warning, db_session=session)
    units = A.unit_index(db_session=session)
    ctx = frame(
        request, actor, session, title=warning.title, w=warning,
        evidence=warnings_service.evidence_rows(evidence, db_session=session),
        figures=warnings_service.figure_lines(warning.kind, warning.figures),
        kinds=warnings_service.KIND_NAMES, statuses=warnings_service.STATUS_NAMES,
        lead=units.by_code.get(lead) if lead else None, error=error,
        handles="warnings.handle", may_handle=allows("warnings.handle", actor.role),
    )  # fmt: skip
    return render(request, "console/warning.html", ctx, status_code=status_code)


@router.get("/console/warnings/{warning_id}", response_class=HTMLResponse)
def warning_page(warning_id: BigId, request: Request, actor: WarningReader,
                 session: ReadSession) -> Response:  # fmt: skip
    return _warning_page(request, actor, session, warning_id)


async def _form(request: Request) -> FormValues:
    return FormValues(list((await request.form()).multi_items()))  # type: ignore[arg-type]


@router.post("/console/warnings/{warning_id}/task", response_class=HTMLResponse)
async def warning_task(warning_id: BigId, request: Request, actor: WarningHandler,
                       db: DB) -> Response:  # fmt: skip
    form = await _form(request)
    try:
        with db.write() as session:
            lead = form.first("lead")  # a picker: a code, a name or a label
            if lead:
                lead = resolve(lead, options("units", db_session=session), kind="units",
                               field="lead", label="主办单位")  # fmt: skip
            task = warnings_service.create_task(
                warning_id,
                actor=actor,
                db_session=session,
                lead=lead or None,
                note=(form.first("note") or "").strip() or None,
            )
            task_id = task.id
    except DomainError as exc:
        with db.read() as session:
            return _warning_page(request, actor, session, warning_id, error=zh(exc.message),
                                 status_code=exc.status)  # fmt: skip
    return RedirectResponse(f"/console/tickets/{task_id}?done=created", status_code=303)


@router.post("/console/warnings/{warning_id}/dismiss", response_class=HTMLResponse)
async def warning_dismiss(warning_id: BigId, request: Request, actor: WarningHandler,
                          db: DB) -> Response:  # fmt: skip
    form = await _form(request)
    try:
        with db.write() as session:
            warnings_service.dismiss(warning_id, form.first("note") or "", actor=actor,
                                     db_session=session)  # fmt: skip
    except DomainError as exc:
        with db.read() as session:
            return _warning_page(request, actor, session, warning_id, error=zh(exc.message),
                                 status_code=exc.status)  # fmt: skip
    return RedirectResponse("/console/warnings?done=saved", status_code=303)


@router.post("/console/warnings/scan", response_class=HTMLResponse)
async def warnings_scan(request: Request, actor: WarningHandler, db: DB) -> Response:
    await _form(request)
    if not actor.is_service_centre:  # the scan is city-wide: the centre's to run
        raise Forbidden("预警扫描由服务中心发起 / only the service centre runs the scan")
    with db.write() as session:
        warnings_service.scan(_today(), db_session=session)
    return RedirectResponse("/console/warnings?done=saved", status_code=303)


@router.post("/console/tickets/{ticket_id}/links", response_class=HTMLResponse)
async def link_orders(ticket_id: BigId, request: Request, actor: WarningHandler,
                      db: DB) -> Response:  # fmt: skip
    form = await _form(request)
    numbers = [n for n in (form.first("numbers") or "").replace("，", ",").replace(" ", ",")
               .split(",") if n]  # fmt: skip
    if not numbers:
        raise Invalid("请填写工单编号 / give the order numbers", field="numbers")
    with db.write() as session:
        warnings_service.link_orders(ticket_id, numbers, actor=actor, db_session=session)
    return RedirectResponse(f"/console/tickets/{ticket_id}?done=saved", status_code=303)


# ---- reports ---------------------------------------------------------------------------------


def _reports_context(request: Request, actor: Principal, session: Any, kind: str,
                     district: str | None) -> dict[str, Any]:  # fmt: skip
    """The list a reader may open: the city's reports for the centre (or a district's when it
    picks one), their own district's for anyone else (built when opened)."""
    units = A.unit_index(db_session=session)
    districts = sorted((u for u in units.by_id.values() if u.kind == "district"),
                       key=lambda u: u.code) if actor.is_service_centre else []  # fmt: skip
    try:
        scope = reports.reader_scope(actor, db_session=session, district=district)
    except Forbidden as exc:
        scope, rows, note = None, [], zh(exc.message)
    else:
        rows, note = reports.listing(db_session=session, kind=kind or None, district=scope), None
    return frame(request, actor, session, title=f"{scope.name} · 分析报告" if scope else "分析报告",
                 rows=rows, kind=kind, kinds=reports.KIND_NAMES,
                 defaults={k: period_text(p) for k, p in reports.due(utcnow())}, scope=scope, districts=districts,
                 note=note)  # fmt: skip


@router.get("/console/reports", response_class=HTMLResponse)
def reports_page(request: Request, actor: ReportReader, session: ReadSession,
                 kind: Annotated[str, Query(max_length=10)] = "",
                 district: Annotated[str, Query(max_length=40)] = "") -> Response:  # fmt: skip
    ctx = _reports_context(request, actor, session, kind, district or None)
    return render(request, "console/reports.html", ctx)


@router.post("/console/reports", response_class=HTMLResponse)
async def reports_build(request: Request, actor: ReportBuilder, db: DB) -> Response:
    form = await _form(request)
    kind, period = form.first("kind") or "", (form.first("period") or "").strip()
    try:
        if not actor.is_service_centre:  # the stored reports are the city's
            raise Forbidden("报告由服务中心生成 / only the service centre builds reports")
        if kind not in reports.KIND_NAMES:
            raise Invalid("请选择报告类型 / choose daily, weekly or monthly", field="kind")
        report_id, _ = reports.build_on(db, kind, reports.canonical_period(kind, period),
                                     user_id=actor.user_id)  # fmt: skip
    except DomainError as exc:
        with db.read() as session:
            ctx = _reports_context(request, actor, session, "", None)
            ctx["error"] = zh(exc.message)
            ctx["typed"] = {"kind": kind, "period": period[:12]}  # what was typed, kept
            return render(request, "console/reports.html", ctx, status_code=exc.status)
    return RedirectResponse(f"/console/reports/{report_id}", status_code=303)


def _report(session: Any, report_id: int) -> Report:
    report = session.get(Report, report_id)
    if report is None:
        raise NotFound("没有这份报告 / no such report")
    return report  # type: ignore[no-any-return]


def _served(report_id: int, fmt: str, actor: Principal, session: Any,
            district: str | None) -> tuple[Report, str | bytes, str]:  # fmt: skip
    """The report as this reader may have it: the stored city report for the centre; a
    district's own (built now) for a district reader, or for the centre asking for one."""
    report = _report(session, report_id)
    scope = reports.reader_scope(actor, db_session=session, district=district)
    if scope is None:
        stored = {"html": report.html, "pdf": report.pdf, "xlsx": report.xlsx}[fmt]
        if not reports.rendered_with_current_font(report.html):  # the worker rebuilds it
            stored = reports.render_current(report.kind, report.period, fmt, db_session=session)
        return report, stored, f"{report.kind}-{report.period}.{fmt}"
    body = reports.render_district(report.kind, report.period, scope, fmt, db_session=session)
    return report, body, f"{report.kind}-{report.period}-{scope.code}.{fmt}"


District = Annotated[str, Query(max_length=40)]


@router.get("/console/reports/{report_id}", response_class=HTMLResponse)
def report_page(report_id: BigId, actor: ReportReader, session: ReadSession,
                district: District = "") -> Response:  # fmt: skip
    _, body, _ = _served(report_id, "html", actor, session, district or None)
    # A report is a whole HTML document with its own <style>: its own policy (web/headers.py).
    return HTMLResponse(body, headers={"Content-Security-Policy": REPORT_CSP})


@router.get("/console/reports/{report_id}/pdf")
def report_pdf(report_id: BigId, actor: ReportReader, session: ReadSession,
               district: District = "") -> Response:  # fmt: skip
    _, body, name = _served(report_id, "pdf", actor, session, district or None)
    return Response(body, media_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


@router.get("/console/reports/{report_id}/xlsx")
def report_xlsx(report_id: BigId, actor: ReportReader, session: ReadSession,
                district: District = "") -> Response:  # fmt: skip
    _, body, name = _served(report_id, "xlsx", actor, session, district or None)
    media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(body, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip
