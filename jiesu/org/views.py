"""GET /api/v1/units."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import aliased

from jiesu.access.policy import Principal
from jiesu.org.models import Unit, UnitKind, UnitOut
from jiesu.web.deps import ReadSession, require

router = APIRouter(prefix="/api/v1", tags=["org"])


@router.get("/units", response_model=list[UnitOut], summary="单位列表（组织树）")
def list_units(
    session: ReadSession,
    _principal: Annotated[Principal, Depends(require("signed_in"))],
    kind: UnitKind | None = Query(None, description="单位类型"),
    parent: str | None = Query(None, description="上级单位编码"),
) -> list[UnitOut]:
    parent_unit = aliased(Unit)
    stmt = (
        select(Unit, parent_unit.code)
        .outerjoin(parent_unit, parent_unit.id == Unit.parent_id)
        .where(Unit.active)
        .order_by(Unit.path)
    )
    if kind:
        stmt = stmt.where(Unit.kind == kind.value)
    if parent:
        stmt = stmt.where(parent_unit.code == parent)
    return [
        UnitOut(
            id=u.id, code=u.code, name=u.name, short_name=u.short_name, kind=u.kind,
            parent_code=parent_code, function=u.function,
        )
        for u, parent_code in session.execute(stmt)
    ]  # fmt: skip
