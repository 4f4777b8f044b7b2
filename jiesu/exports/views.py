"""Export routes: any list a user sees, as CSV or XLSX, with the list's own filters and the
user's permissions (the list's own view permission; masked stays masked).

- Console: /console/exports/{tickets|rankings|warnings|deliveries}.{csv|xlsx}?<the list page's
  own query string> (the 导出 links on the list pages; deliveries: the admin's 投递记录).
- API: GET /api/v1/exports/{tickets|rankings|warnings}.{csv|xlsx} with the filters of
  GET /api/v1/tickets, /api/v1/metrics/units and /api/v1/warnings.

The rows come from `exports.service` (one server-side cursor, in its own read session that
lives as long as the download); each export is written to the audit log (who, which list, which
filters, which format) before the first byte goes out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from jiesu.access.permissions import allows
from jiesu.access.policy import Principal
from jiesu.auth.service import audit
from jiesu.db.engine import Database
from jiesu.errors import Forbidden, Invalid
from jiesu.exports import service as S
from jiesu.exports.writers import Column, csv_chunks, file_chunks, xlsx_file
from jiesu.org.models import User
from jiesu.tickets.service import TicketFilter
from jiesu.web.deps import DB, AnalysisSession, ReadSession, client_ip, require, require_page
from jiesu.web.params import QueryDay

FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1/exports", tags=["exports"])


def content_disposition(filename: str) -> str:
    """`attachment` with the real (Chinese) name per RFC 6266/5987 (`filename*`) and an ASCII
    fallback for old clients (the name's ASCII letters and digits, else "export")."""
    stem, dot, ext = filename.rpartition(".")
    fallback = re.sub(r"[^A-Za-z0-9-]+", "_", stem).strip("_")
    fallback = f"export_{fallback}" if fallback else "export"
    return (f"attachment; filename=\"{fallback}{dot}{ext}\"; "
            f"filename*=UTF-8''{quote(filename, safe='')}")  # fmt: skip


def export_response(
    fmt: str,
    filename: str,
    columns: Sequence[Column | str],
    rows: Iterable[Sequence[Any]],
    *,
    sheet: str | None = None,
) -> StreamingResponse:
    """The list as a download. CSV is streamed as the rows arrive; XLSX is written (in constant
    memory) to a temporary file first, then streamed back and the file deleted. Call it from a
    sync route (FastAPI runs it in a worker thread)."""
    if fmt not in FORMATS:
        raise Invalid("导出格式须为 csv 或 xlsx / format must be csv or xlsx", field="format")
    name = filename if filename.endswith(f".{fmt}") else f"{filename}.{fmt}"
    headers = {"Content-Disposition": content_disposition(name), "Cache-Control": "no-store"}
    if fmt == "csv":
        return StreamingResponse(csv_chunks(columns, rows), media_type=FORMATS[fmt],
                                 headers=headers)  # fmt: skip
    path = xlsx_file(columns, rows, sheet=sheet or filename.rsplit(".", 1)[0])
    headers["Content-Length"] = str(path.stat().st_size)
    return StreamingResponse(file_chunks(path), media_type=FORMATS[fmt], headers=headers)


def _streamed(db: Database, export: S.Export) -> Iterator[Sequence[Any]]:
    """The export's rows from a read session of its own, open as long as the download."""
    with db.read() as session:
        yield from export.rows(session)


def _send(
    fmt: str, export: S.Export, *, db: Database, actor: Principal, request: Request
) -> StreamingResponse:
    with db.write() as session:
        audit("export", db_session=session, user=session.get(User, actor.user_id),
              ip=client_ip(request), list=export.name, format=fmt,
              filters=export.filters)  # fmt: skip
    return export_response(fmt, export.filename, export.columns, _streamed(db, export),
                           sheet=export.title)  # fmt: skip


# ---- console -------------------------------------------------------------------------------


def console_filter(request: Request, bench: str | None) -> tuple[TicketFilter, str | None]:
    """The filter of the list page the link came from: the search's filter bar, or a
    workbench queue (`tab`) with the filter bar on top, read as the page reads it."""
    from jiesu.console.service import queues
    from jiesu.console.views import _filters, _merge

    user_filter, _, _ = _filters(request)
    if bench is None:
        return user_filter, None
    qs = queues(bench)
    tab = request.query_params.get("tab") or qs[0].key
    current = next((q for q in qs if q.key == tab), qs[0])
    return _merge(current.filter, user_filter), current.label


# One route per list and format (not `{fmt}`): the permission table names every path.


TicketsPage = Annotated[Principal, Depends(require_page("tickets.read"))]
RankingsPage = Annotated[Principal, Depends(require_page("assessment.view"))]
WarningsPage = Annotated[Principal, Depends(require_page("warnings.view"))]
AdminPage = Annotated[Principal, Depends(require_page("admin"))]


def _console_routes(fmt: str) -> None:
    def tickets_page(
        request: Request, actor: TicketsPage, session: ReadSession, db: DB
    ) -> StreamingResponse:
        """The ticket search or a workbench queue (`bench=` + `tab=`), with its filter bar."""
        bench = request.query_params.get("bench") or None
        if bench is not None:
            permission = S.WORKBENCHES.get(bench)
            if permission is None:
                raise Invalid("未知的工作台 / unknown workbench", field="bench")
            if not allows(permission, actor.role):
                raise Forbidden("当前角色无权使用此页面 / this role may not use this page")
        f, label = console_filter(request, bench)
        export = S.tickets(f, actor=actor, db_session=session, bench=bench, queue_label=label)
        return _send(fmt, export, db=db, actor=actor, request=request)

    def rankings_page(
        request: Request, actor: RankingsPage, session: AnalysisSession, db: DB,
        period: Annotated[str | None, Query(max_length=7)] = None,
        group: Annotated[str | None, Query(max_length=12)] = None,
        view: Annotated[str | None, Query(max_length=12)] = None,
    ) -> StreamingResponse:  # fmt: skip
        export = S.rankings(period, group, live=view == "live", actor=actor, db_session=session,
                            console=True)  # fmt: skip
        return _send(fmt, export, db=db, actor=actor, request=request)

    def warnings_page(
        request: Request, actor: WarningsPage, session: ReadSession, db: DB,
        status: Annotated[str, Query(max_length=12)] = "open",
        kind: Annotated[str, Query(max_length=12)] = "",
    ) -> StreamingResponse:  # fmt: skip
        export = S.warnings(status, kind or None, actor=actor, db_session=session, console=True)
        return _send(fmt, export, db=db, actor=actor, request=request)

    def deliveries_page(
        request: Request, actor: AdminPage, session: ReadSession, db: DB
    ) -> StreamingResponse:
        """The delivery log (系统管理 → 投递记录) with its filters; phones and e-mails masked."""
        q = request.query_params
        f = S.delivery_filter(status=q.get("status"), channel=q.get("channel"),
                              subscriber=q.get("subscriber"), number=q.get("number"),
                              day_from=q.get("from"), day_to=q.get("to"))  # fmt: skip
        export = S.deliveries(f, actor=actor, db_session=session)
        return _send(fmt, export, db=db, actor=actor, request=request)

    router.add_api_route(f"/console/exports/tickets.{fmt}", tickets_page, methods=["GET"])
    router.add_api_route(f"/console/exports/deliveries.{fmt}", deliveries_page, methods=["GET"])
    router.add_api_route(f"/console/exports/rankings.{fmt}", rankings_page, methods=["GET"])
    router.add_api_route(f"/console/exports/warnings.{fmt}", warnings_page, methods=["GET"])


# ---- API -----------------------------------------------------------------------------------

TicketReader = Annotated[Principal, Depends(require("tickets.read"))]
Assessor = Annotated[Principal, Depends(require("assessment.view"))]
WarningReader = Annotated[Principal, Depends(require("warnings.view"))]


def _api_routes(fmt: str) -> None:
    def tickets_api(
        request: Request, session: ReadSession, db: DB, principal: TicketReader,
        status: Annotated[list[str] | None, Query(description="状态，可多选")] = None,
        unit: Annotated[str | None, Query(max_length=40, description="单位编码（含下级）")] = None,
        category: Annotated[str | None, Query(max_length=20, description="分类编码（含下级）")] = None,
        text: Annotated[str | None, Query(max_length=100, description="编号、标题或内容")] = None,
        created_from: Annotated[QueryDay, Query(description="受理日期起（含）")] = None,
        created_to: Annotated[QueryDay, Query(description="受理日期止（含）")] = None,
        phone: Annotated[str | None, Query(max_length=30, description="诉求人电话")] = None,
    ) -> StreamingResponse:  # fmt: skip
        f = S.api_filter(principal, status=status, unit=unit, category=category, text=text,
                         created_from=created_from, created_to=created_to, phone=phone)  # fmt: skip
        export = S.tickets(f, actor=principal, db_session=session)
        return _send(fmt, export, db=db, actor=principal, request=request)

    def rankings_api(
        request: Request, session: AnalysisSession, db: DB, principal: Assessor,
        period: Annotated[str | None, Query(max_length=7, description="月份 YYYY-MM")] = None,
        kind: Annotated[str, Query(description="district | street | department | company")] = "street",
        live: Annotated[bool, Query(description="已冻结月份也看实时数据")] = False,
    ) -> StreamingResponse:  # fmt: skip
        export = S.rankings(period, kind, live=live, actor=principal, db_session=session)
        return _send(fmt, export, db=db, actor=principal, request=request)

    def warnings_api(
        request: Request, session: ReadSession, db: DB, principal: WarningReader,
        status: Annotated[str | None, Query(description="open | task | dismissed")] = "open",
        kind: Annotated[str | None, Query(max_length=12)] = None,
    ) -> StreamingResponse:  # fmt: skip
        export = S.warnings(status or None, kind, actor=principal, db_session=session)
        return _send(fmt, export, db=db, actor=principal, request=request)

    for name, endpoint, summary in (
        ("tickets", tickets_api, "导出工单列表（筛选与权限同 GET /api/v1/tickets）"),
        ("rankings", rankings_api, "导出单位三率与排名（同 GET /api/v1/metrics/units）"),
        ("warnings", warnings_api, "导出预警列表（同 GET /api/v1/warnings）"),
    ):
        api.add_api_route(f"/{name}.{fmt}", endpoint, methods=["GET"],
                          summary=f"{summary}：{fmt.upper()}",
                          response_class=StreamingResponse)  # fmt: skip


for _fmt in FORMATS:
    _console_routes(_fmt)
    _api_routes(_fmt)
