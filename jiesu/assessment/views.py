"""GET /api/v1/metrics/units (the 三率 table), …/units/{code}/orders (the orders behind a
figure) and GET /api/v1/warnings (SPEC §9's minimal contract; scoped to the reader's tree)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from jiesu.access.policy import Principal
from jiesu.analysis import service as warnings_service
from jiesu.assessment import service as A
from jiesu.assessment.rates import BY_KEY, Rate
from jiesu.db.base import utcnow
from jiesu.errors import Invalid, NotFound
from jiesu.settings import city_tz
from jiesu.web.deps import AnalysisSession, ReadSession, require
from jiesu.web.params import Month, Offset

router = APIRouter(prefix="/api/v1", tags=["assessment"])
KINDS = ("district", "street", "department", "company")
Period = Month


class RateOut(BaseModel):
    name: str
    numerator: float
    denominator: int
    value: float | None


class UnitRatesOut(BaseModel):
    rank: int | None
    code: str
    name: str
    kind: str
    orders: int
    composite: float | None
    previous_rank: int | None
    change: int | None
    task_force: bool
    small_sample: bool
    pending: int  # first contact still within its limit: kept out of 响应率 until it is due
    rates: dict[str, RateOut]


class MetricsOut(BaseModel):
    period: str
    kind: str
    basis: str  # frozen: as published at the month's cut-off | live: as the figures stand now
    frozen_at: datetime | None
    cutoff: datetime | None  # when the month closes (closed); None when the pack sets none
    rows: list[UnitRatesOut]


class OrderRef(BaseModel):
    id: int
    number: str
    title: str
    status: str


class DrillOut(BaseModel):
    unit: str
    period: str
    what: str
    basis: str  # frozen | live, as for the ranking
    total: int
    orders: list[OrderRef]


class WarningOut(BaseModel):
    id: int
    kind: str
    kind_name: str
    day: date
    title: str
    explanation: str
    score: float
    status: str
    figures: dict[str, Any]
    evidence: list[int]
    task_ticket_id: int | None


def _rate(r: Rate) -> RateOut:
    return RateOut(name=BY_KEY[r.key].name, numerator=r.numerator, denominator=r.denominator,
                   value=r.value)  # fmt: skip


def _month(period: str | None) -> str:
    return period or f"{utcnow().astimezone(city_tz()):%Y-%m}"


@router.get("/metrics/units", response_model=MetricsOut, summary="单位三率与排名（月）")
def metrics_units(
    session: AnalysisSession,
    principal: Annotated[Principal, Depends(require("assessment.view"))],
    period: Period = None,
    kind: Annotated[str, Query(description="district | street | department | company")] = "street",
    live: Annotated[bool, Query(description="已冻结月份也看实时数据（默认看公布数据）")] = False,
) -> MetricsOut:  # fmt: skip
    if kind not in KINDS:
        raise Invalid(f"kind 须为 {' / '.join(KINDS)} / unknown kind", field="kind")
    month = _month(period)
    ranking = A.rankings(month, kind, db_session=session, live=live)
    rows = ranking.rows
    if not principal.is_service_centre:  # a unit sees itself and the units under it
        units = A.unit_index(db_session=session)
        rows = [r for r in rows
                if (u := units.by_code.get(r.code)) and u.path.startswith(principal.unit_path)]  # fmt: skip
    return MetricsOut(period=month, kind=kind, basis=ranking.basis, frozen_at=ranking.frozen_at,
                      cutoff=ranking.cutoff, rows=[
        UnitRatesOut(rank=r.rank, code=r.code, name=r.name, kind=r.kind, orders=r.orders,
                     composite=r.composite, previous_rank=r.previous_rank, change=r.change,
                     task_force=r.task_force, small_sample=r.small_sample, pending=r.pending,
                     rates={k: _rate(v) for k, v in r.rates.items()})
        for r in rows
    ])  # fmt: skip


@router.get("/metrics/units/{code}/orders", response_model=DrillOut,
            summary="指标背后的工单（下钻）")  # fmt: skip
def metrics_orders(
    code: str,
    session: AnalysisSession,
    principal: Annotated[Principal, Depends(require("assessment.view"))],
    what: Annotated[str, Query(description=" / ".join(A.DRILL))] = "counted",
    period: Period = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
    live: Annotated[bool, Query(description="已冻结月份也看实时数据（默认看公布数据）")] = False,
) -> DrillOut:  # fmt: skip
    units = A.unit_index(db_session=session)
    unit = units.by_code.get(code)
    if unit is None or (not principal.is_service_centre
                        and not unit.path.startswith(principal.unit_path)):  # fmt: skip
        raise NotFound("没有这个单位 / no such unit")
    if what not in A.DRILL:
        raise Invalid(f"what 须为 {' / '.join(A.DRILL)}", field="what")
    month = _month(period)
    start, end = A.month_bounds(month)
    frozen = not live and A.frozen_month(month, db_session=session) is not None
    total, tickets = A.drill(code, start, end, what, db_session=session, limit=limit,
                             offset=offset, period=month if frozen else None)  # fmt: skip
    return DrillOut(unit=code, period=month, what=what, basis="frozen" if frozen else "live",
                    total=total, orders=[
        OrderRef(id=t.id, number=t.number, title=t.title, status=t.status) for t in tickets])  # fmt: skip


@router.get("/warnings", response_model=list[WarningOut], summary="预警")
def list_warnings(
    session: ReadSession,
    principal: Annotated[Principal, Depends(require("warnings.view"))],
    status: Annotated[str | None, Query(description="open | task | dismissed")] = "open",
    kind: Annotated[str | None, Query(description=" / ".join(warnings_service.KIND_NAMES))] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[WarningOut]:  # fmt: skip
    # The warnings about the reader's tree (the centre: all), each with the evidence orders the
    # reader may open.
    rows = warnings_service.listing(reader=principal, db_session=session, status=status or None,
                                    kind=kind, limit=limit)  # fmt: skip
    return [
        WarningOut(id=w.id, kind=w.kind, kind_name=warnings_service.KIND_NAMES.get(w.kind, w.kind),
                   day=w.day, title=w.title, explanation=w.explanation, score=w.score,
                   status=w.status, figures=w.figures or {}, evidence=list(w.evidence or []),
                   task_ticket_id=w.task_ticket_id)
        for w in rows
    ]  # fmt: skip
