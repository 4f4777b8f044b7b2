"""Administration of users and units. Services take `db_session=` and never commit; every
change is written to the audit log with who made it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.access.permissions import ROLES
from jiesu.access.policy import Principal
from jiesu.auth.service import audit, check_new_password, set_password
from jiesu.errors import Conflict, Forbidden, Invalid, NotFound
from jiesu.org.models import Unit, UnitKind, User
from jiesu.org.names import duplicate_of, name_problem
from jiesu.taxonomy.models import CalendarOverride
from jiesu.taxonomy.service import bump_reference
from jiesu.timelimits.calendar import changed_days

USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


@dataclass
class UserIn:
    username: str
    name: str
    role: str
    unit: str  # unit code
    password: str | None = None  # required when creating
    active: bool = True


def _by(actor: Principal, session: Session) -> User | None:
    return session.get(User, actor.user_id)


def _unit(code: str, *, db_session: Session, field: str = "unit") -> Unit:
    unit = db_session.scalar(select(Unit).where(Unit.code == code.strip()))
    if unit is None:
        raise Invalid(f"没有编码为 {code} 的单位 / unknown unit", field=field)
    return unit


def _check_user(data: UserIn) -> None:
    if data.role not in ROLES:
        raise Invalid("请选择角色 / unknown role", field="role")
    if not data.name.strip() or len(data.name) > 60:
        raise Invalid("姓名须为 1–60 个字 / name 1–60 characters", field="name")


def _check_name(name: str, *, user_id: int | None, db_session: Session) -> None:
    """No invisible or control characters, and not another user's name (org/names.py)."""
    problem = name_problem(name)
    if problem:
        raise Invalid(problem, field="name")
    others = db_session.execute(select(User.username, User.name).where(User.id != user_id))
    if duplicate_of(name, ((u, n) for u, n in others)) is not None:
        raise Invalid(
            "已有用户使用相同的姓名，请加以区分（如加上部门或工号） / another user already has "
            "this name",
            field="name",
        )


def _within_own_unit(actor: Principal, data: UserIn, *, db_session: Session) -> None:
    """A unit admin works on handlers of their own unit only; the admin on anyone."""
    if actor.role == "admin":
        return
    own = db_session.get(Unit, actor.unit_id)
    if own is None or data.unit.strip() != own.code:
        raise Forbidden("只能管理本单位的人员 / your own unit's users only")
    if data.role != "handler":
        raise Forbidden("只能设置承办人角色 / a unit admin sets up handlers only")


def create_user(data: UserIn, *, actor: Principal, db_session: Session, ip: str | None) -> User:
    username = data.username.strip().lower()
    if not (2 <= len(username) <= 60) or not set(username) <= USERNAME_CHARS:
        raise Invalid(
            "用户名须为 2–60 位小写字母、数字或 . _ - / username: 2–60 of a-z 0-9 . _ -",
            field="username",
        )
    _check_user(data)
    _within_own_unit(actor, data, db_session=db_session)
    _check_name(data.name.strip(), user_id=None, db_session=db_session)
    if db_session.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"用户名 {username} 已存在 / username taken", field="username")
    unit = _unit(data.unit, db_session=db_session)
    user = User(username=username, name=data.name.strip(), role=data.role, unit_id=unit.id,
                active=data.active, failed_logins=0)  # fmt: skip
    if not data.password:
        raise Invalid("请设置初始密码 / an initial password is required", field="password")
    check_new_password(user, data.password)
    db_session.add(user)
    db_session.flush()
    set_password(user, data.password, db_session=db_session)
    audit("user_create", db_session=db_session, user=_by(actor, db_session), ip=ip,
          target=username, role=data.role, unit=unit.code)  # fmt: skip
    return user


def update_user(
    user_id: int, data: UserIn, *, actor: Principal, db_session: Session, ip: str | None
) -> User:
    user = db_session.get(User, user_id)
    if user is None or (
        actor.role != "admin" and (user.unit_id != actor.unit_id or user.role != "handler")
    ):
        raise NotFound("没有这个用户 / no such user")
    _check_user(data)
    _within_own_unit(actor, data, db_session=db_session)
    if data.name.strip() != user.name:  # a name kept as it was is not checked again
        _check_name(data.name.strip(), user_id=user.id, db_session=db_session)
    unit = _unit(data.unit, db_session=db_session)
    if user.id == actor.user_id and (not data.active or data.role != user.role):
        raise Invalid("不能停用自己或修改自己的角色 / you cannot disable or demote yourself",
                      field="role")  # fmt: skip
    changes = {
        k: v
        for k, v in (("name", data.name.strip()), ("role", data.role), ("unit_id", unit.id),
                     ("active", data.active))
        if getattr(user, k) != v
    }  # fmt: skip
    for k, v in changes.items():
        setattr(user, k, v)
    if data.password:
        check_new_password(user, data.password)
        set_password(user, data.password, db_session=db_session)
        changes["password"] = "reset"
    if ("active" in changes and not data.active) or "role" in changes or "unit_id" in changes:
        set_password_sessions_end(user, db_session=db_session)
    if changes:
        audit("user_update", db_session=db_session, user=_by(actor, db_session), ip=ip,
              target=user.username, changed=sorted(changes))  # fmt: skip
    return user


def set_password_sessions_end(user: User, *, db_session: Session) -> None:
    """A user whose powers changed signs in again (their open sessions end)."""
    from jiesu.auth.models import ApiToken
    from jiesu.db.base import utcnow

    for token in db_session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None),
                               ApiToken.kind.in_(("login", "session")))
    ):  # fmt: skip
        token.revoked_at = utcnow()


def unlock_user(user_id: int, *, actor: Principal, db_session: Session, ip: str | None) -> User:
    user = db_session.get(User, user_id)
    if user is None:
        raise NotFound("没有这个用户 / no such user")
    user.locked_until, user.failed_logins = None, 0
    audit("user_update", db_session=db_session, user=_by(actor, db_session), ip=ip,
          target=user.username, changed=["unlocked"])  # fmt: skip
    return user


@dataclass
class UnitIn:
    code: str
    name: str
    kind: str
    parent: str | None
    short_name: str | None = None
    function: str | None = None
    active: bool = True


def create_unit(data: UnitIn, *, actor: Principal, db_session: Session, ip: str | None) -> Unit:
    code = data.code.strip()
    if not code or len(code) > 40 or any(c.isspace() for c in code):
        raise Invalid("单位编码须为 1–40 位且不含空格 / code: 1–40 characters", field="code")
    if data.kind not in UnitKind.__members__:
        raise Invalid("请选择单位类型 / unknown unit kind", field="kind")
    if not data.name.strip() or len(data.name) > 100:
        raise Invalid("单位名称须为 1–100 个字 / name 1–100 characters", field="name")
    if db_session.scalar(select(Unit.id).where(Unit.code == code)):
        raise Conflict(f"单位编码 {code} 已存在 / unit code taken", field="code")
    parent = _unit(data.parent, db_session=db_session, field="parent") if data.parent else None
    if parent is None and data.kind != "city":
        raise Invalid("请选择上级单位 / a parent unit is required", field="parent")
    unit = Unit(code=code, name=data.name.strip(), kind=data.kind, short_name=data.short_name,
                function=data.function or None, parent_id=parent.id if parent else None,
                path="", aliases=[], active=data.active)  # fmt: skip
    db_session.add(unit)
    db_session.flush()
    unit.path = f"{parent.path if parent else '/'}{unit.id}/"
    audit("unit_create", db_session=db_session, user=_by(actor, db_session), ip=ip,
          target=code, kind=data.kind, parent=parent.code if parent else None)  # fmt: skip
    return unit


def update_unit(
    unit_id: int, *, name: str, short_name: str | None, active: bool, actor: Principal,
    db_session: Session, ip: str | None,
) -> Unit:  # fmt: skip
    unit = db_session.get(Unit, unit_id)
    if unit is None:
        raise NotFound("没有这个单位 / no such unit")
    if not name.strip() or len(name) > 100:
        raise Invalid("单位名称须为 1–100 个字 / name 1–100 characters", field="name")
    if unit.function == "service_centre" and not active:
        raise Invalid("热线中心不能停用 / the service centre cannot be disabled", field="active")
    changed = []
    for k, v in (("name", name.strip()), ("short_name", short_name or None), ("active", active)):
        if getattr(unit, k) != v:
            setattr(unit, k, v)
            changed.append(k)
    if changed:
        audit("unit_update", db_session=db_session, user=_by(actor, db_session), ip=ip,
              target=unit.code, changed=changed)  # fmt: skip
    return unit


def set_calendar_day(
    day: date, kind: str, note: str | None, *, actor: Principal, db_session: Session,
    ip: str | None, now: datetime | None = None,
) -> CalendarOverride:  # fmt: skip
    """An admin's own 调休 entry (holiday or make-up working day); the pack's stay as they are.
    The orders whose deadlines the day moves follow in this transaction (or a queued job)."""
    if kind not in ("holiday", "workday"):
        raise Invalid("请选择放假或上班 / holiday or workday", field="kind")
    row = db_session.get(CalendarOverride, day)
    before = {day: row.kind == "workday"} if row is not None else {}
    if row is None:
        row = CalendarOverride(day=day, kind=kind, note=note, source="admin")
        db_session.add(row)
    else:
        row.kind, row.note, row.source = kind, note, "admin"
    bump_reference(db_session=db_session)
    audit("calendar_set", db_session=db_session, user=_by(actor, db_session), ip=ip,
          day=day.isoformat(), kind=kind)  # fmt: skip
    _calendar_changed(before, {day: kind == "workday"}, db_session=db_session, now=now)
    return row


def remove_calendar_day(
    day: date, *, actor: Principal, db_session: Session, ip: str | None,
    now: datetime | None = None,
) -> None:  # fmt: skip
    """Back to the official calendar for that day; the orders it moves follow."""
    row = db_session.get(CalendarOverride, day)
    if row is None:
        raise NotFound("该日期没有调休设置 / no entry for that day")
    before = {day: row.kind == "workday"}
    db_session.delete(row)
    bump_reference(db_session=db_session)
    audit("calendar_remove", db_session=db_session, user=_by(actor, db_session), ip=ip,
          day=day.isoformat())  # fmt: skip
    _calendar_changed(before, {}, db_session=db_session, now=now)


def _calendar_changed(
    before: dict[date, bool], after: dict[date, bool], *, db_session: Session,
    now: datetime | None,
) -> None:  # fmt: skip
    from jiesu.tickets.rule_changes import RuleChange, propagate

    days = changed_days(before, after)
    if days:
        propagate(RuleChange.calendar(days), db_session=db_session, now=now)
