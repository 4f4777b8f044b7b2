"""The dashboard's routes: the page, its figures as JSON (fetched every 60 s), the district map.

All three name `dashboard.view`; the page is a shell that `static/dashboard.js` fills from
`/console/dashboard/data?days=1|7|30` without reloading.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from jiesu.access.policy import Principal
from jiesu.assessment import service as A
from jiesu.console.views import frame
from jiesu.dashboard.service import PERIODS, dashboard, district_boundaries
from jiesu.dashboard.words import hot_words
from jiesu.db.base import utcnow
from jiesu.errors import Invalid
from jiesu.settings import city_tz
from jiesu.web.deps import AnalysisSession, require_page
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
    request: Request, actor: Viewer, session: AnalysisSession,
    days: Annotated[int, Query()] = 1,
) -> Response:  # fmt: skip
    district = district_of(actor, session)
    scope = A.unit_index(db_session=session).by_code.get(district) if district else None
    title = f"{scope.name} · 数据大屏" if scope else "数据大屏"
    ctx = frame(request, actor, session, title=title, days=_period(days),
                periods=PERIOD_NAMES, refresh=REFRESH_SECONDS, scope=scope,
                knowledge=knowledge_tile(session))  # fmt: skip
    return render(request, "console/dashboard.html", ctx)


def knowledge_tile(session: Any, now: datetime | None = None) -> dict[str, Any]:
    """知识库与直接答复 (issue 16 §6): today's and this month's direct-answer rate, the direct
    answers given with an entry this month, the entries answering and those expiring soon."""
    from jiesu.knowledge.figures import figures, percent

    today = (now or utcnow()).astimezone(city_tz()).date()
    day = figures(today, today, db_session=session)
    month = figures(today.replace(day=1), today, db_session=session)
    return {"day": day, "month": month, "percent": percent}


def district_of(actor: Principal, session: Any) -> str | None:
    """The centre sees the city; anyone else the district their unit is in (the city, for a
    city-level department)."""
    if actor.is_service_centre:
        return None
    units = A.unit_index(db_session=session)
    unit = units.by_id.get(actor.unit_id)
    district = units.district_of(unit) if unit else None
    return district.code if district else None


@router.get("/console/dashboard/data")
def dashboard_data(
    actor: Viewer, session: AnalysisSession, days: Annotated[int, Query()] = 1
) -> JSONResponse:
    data: dict[str, Any] = dashboard(_period(days), db_session=session,
                                     district=district_of(actor, session))  # fmt: skip
    data["words"] = _words(data, session)  # 高频词: from the requests' texts (dashboard/words)
    return JSONResponse(data)  # no-store, like every non-static answer (web/headers.py)


def _words(data: dict[str, Any], session: Any) -> list[dict[str, Any]]:
    scope = data.get("scope")
    unit = A.unit_index(db_session=session).by_code.get(scope["code"]) if scope else None
    period = data["period"]
    return hot_words(date.fromisoformat(period["start"]), date.fromisoformat(period["end"]),
                     db_session=session, district_id=unit.id if unit else None)  # fmt: skip


@router.get("/console/dashboard/boundaries.json")
def dashboard_boundaries(actor: Viewer, session: AnalysisSession) -> JSONResponse:
    """The districts' polygons for the map (an empty collection when the deployment has none)."""
    return JSONResponse(
        district_boundaries(db_session=session), headers={"Cache-Control": "private, max-age=3600"}
    )
