"""Tables and API shapes of the organisation."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from jiesu.db.base import Base, JSONType, utcnow


class UnitKind(StrEnum):
    city = "city"
    district = "district"
    street = "street"  # street or township (街道/乡镇)
    community = "community"
    grid = "grid"
    department = "department"
    company = "company"


class Role(StrEnum):
    """The roles of SPEC §1 that sign in (citizens use the portal with a tracking code)."""

    agent = "agent"  # 话务员/受理员
    dispatcher = "dispatcher"  # 派单员
    handler = "handler"  # 承办人
    unit_admin = "unit_admin"  # 联络员/签发人
    callback_agent = "callback_agent"  # 回访员
    supervisor = "supervisor"  # 督办员
    analyst = "analyst"  # 分析员
    admin = "admin"


ROLE_NAMES = {
    Role.agent: "话务员",
    Role.dispatcher: "派单员",
    Role.handler: "承办人",
    Role.unit_admin: "单位联络员",
    Role.callback_agent: "回访员",
    Role.supervisor: "督办员",
    Role.analyst: "分析员",
    Role.admin: "系统管理员",
}


class Unit(Base):
    __tablename__ = "unit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    short_name: Mapped[str | None] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(16), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("unit.id"), index=True)
    # Materialised path of ids, "/1/17/254/": "everything under a district" is one prefix match.
    path: Mapped[str] = mapped_column(String(200), index=True)
    function: Mapped[str | None] = mapped_column(String(40), index=True)
    aliases: Mapped[list[str]] = mapped_column(JSONType, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Merged into another unit by the admin (deactivated): the survivor (migration 0015).
    merged_into_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    parent: Mapped[Unit | None] = relationship(remote_side=[id])


class User(Base):
    __tablename__ = "app_user"  # "user" is reserved on PostgreSQL

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(60), unique=True)
    name: Mapped[str] = mapped_column(String(60))
    role: Mapped[str] = mapped_column(String(20))
    unit_id: Mapped[int] = mapped_column(ForeignKey("unit.id"), index=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Lockout after repeated failed sign-ins (see auth/service.py).
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    password_changed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    unit: Mapped[Unit] = relationship()


class UnitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    short_name: str | None
    kind: str
    parent_code: str | None
    function: str | None
