"""The dashboard's routes: the page, its figures as JSON (fetched every 60 s), the district map.

All three name `dashboard.view`; the page is a shell that `static/dashboard.js` fills from
`/console/dashboard/data?days=1|7|30` without reloading.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from jiesu.access.policy import Principal
from jiesu.console.views import frame
from jiesu.dashboard.service import PERIODS, dashboard, district_boundaries
from jiesu.errors import Invalid
from jiesu.web.deps import ReadSession, require_page
from jiesu.web.templating import render

router = APIRouter(include_in_schema=False)

Viewer = Annotated[Principal, Depends(require_page("dashboard.view"))]
PERIOD_NAMES = {1: "今日", 7: "近7日", 30: "近30日"}
REFRESH_SECONDS = 60


def _period(days: int) -> int:
    if days not in PERIODS:
        raise Invalid("统计周期只能是今日、近7日或近30日 / days must be 1, 7 or 30", field="days")
    return days


@router.get("/console/dashboard", response_class=HTMLResponse)
def dashboard_page(
    request: Request, actor: Viewer, session: ReadSession,
    days: Annotated[int, Query()] = 1,
) -> Response:  # fmt: skip
    ctx = frame(request, actor, session, title="数据大屏", days=_period(days),
                periods=PERIOD_NAMES, refresh=REFRESH_SECONDS)  # fmt: skip
    return render(request, "console/dashboard.html", ctx)


@router.get("/console/dashboard/data")
def dashboard_data(
    actor: Viewer, session: ReadSession, days: Annotated[int, Query()] = 1
) -> JSONResponse:
    data: dict[str, Any] = dashboard(_period(days), db_session=session)
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


@router.get("/console/dashboard/boundaries.json")
def dashboard_boundaries(actor: Viewer, session: ReadSession) -> JSONResponse:
    """The districts' polygons for the map (an empty collection when the deployment has none)."""
    return JSONResponse(
        district_boundaries(db_session=session), headers={"Cache-Control": "private, max-age=3600"}
    )
