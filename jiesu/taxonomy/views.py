"""GET /api/v1/categories."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import aliased

from jiesu.access.policy import Principal
from jiesu.taxonomy.models import Category, CategoryOut
from jiesu.web.deps import ReadSession, require

router = APIRouter(prefix="/api/v1", tags=["taxonomy"])


@router.get("/categories", response_model=list[CategoryOut], summary="事项分类（三级）")
def list_categories(
    session: ReadSession,
    _principal: Annotated[Principal, Depends(require("signed_in"))],
    level: int | None = Query(None, ge=1, le=3, description="只列某一级"),
) -> list[CategoryOut]:
    parent = aliased(Category)
    stmt = (
        select(Category, parent.code)
        .outerjoin(parent, parent.id == Category.parent_id)
        .where(Category.active)
        .order_by(Category.code)
    )
    if level:
        stmt = stmt.where(Category.level == level)
    return [
        CategoryOut(
            id=c.id, code=c.code, name=c.name, full_name=c.full_name, parent_code=parent_code,
            level=c.level, tier=c.effective_tier, seven_haves=c.seven_haves,
            five_qualities=c.five_qualities,
        )
        for c, parent_code in session.execute(stmt)
    ]  # fmt: skip
