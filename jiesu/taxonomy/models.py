"""Tables and API shapes of the taxonomy and the city's settings."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Boolean, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from jiesu.db.base import Base, JSONType, utcnow


class Category(Base):
    __tablename__ = "category"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(60))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("category.id"), index=True)
    level: Mapped[int] = mapped_column(Integer)
    full_name: Mapped[str] = mapped_column(String(200))  # 城乡建设 › 住房与物业 › 物业服务
    tier: Mapped[str | None] = mapped_column(String(8))  # as written in the pack
    effective_tier: Mapped[str] = mapped_column(String(8))  # after inheritance
    seven_haves: Mapped[list[str]] = mapped_column(JSONType, default=list)
    five_qualities: Mapped[list[str]] = mapped_column(JSONType, default=list)
    keywords: Mapped[list[str]] = mapped_column(JSONType, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    parent: Mapped[Category | None] = relationship(remote_side=[id])


class RequestType(Base):
    __tablename__ = "request_type"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class DispatchRule(Base):
    """One row of the dispatch catalogue (派单目录)."""

    __tablename__ = "dispatch_rule"
    __table_args__ = (UniqueConstraint("category_id", "district_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("category.id"))
    district_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"))
    route: Mapped[str] = mapped_column(String(20))  # street | district_function | unit
    function: Mapped[str | None] = mapped_column(String(40))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"))
    note: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class CitySetting(Base):
    """The city's settings from pack.yaml (tiers, rules, weights …), one JSON value per key."""

    __tablename__ = "city_setting"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CalendarOverride(Base):
    """A day whose working status differs from (or is missing in) the official calendar package."""

    __tablename__ = "calendar_override"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # holiday | workday
    note: Mapped[str | None] = mapped_column(String(60))
    source: Mapped[str] = mapped_column(String(10), default="pack")  # pack | admin


class CategoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    full_name: str
    parent_code: str | None
    level: int
    tier: str
    seven_haves: list[str]
    five_qualities: list[str]
