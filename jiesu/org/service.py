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
    if unit is None:  # a name, as the admin's pickers send it without script
        from jiesu.taxonomy.service import find_unit

        label = "上级单位" if field == "parent" else "单位"
        return find_unit(code, db_session=db_session, field=field, label=label)
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
    if active and not unit.active and unit.merged_into_id is not None:
        raise Invalid("启用：该单位已并入其他单位，不能重新启用", field="active")
    changed, before, after = [], {}, {}
    for k, v in (("name", name.strip()), ("short_name", short_name or None), ("active", active)):
        if getattr(unit, k) != v:
            before[k], after[k] = getattr(unit, k), v
            setattr(unit, k, v)
            changed.append(k)
    if changed:
        audit("unit_update", db_session=db_session, user=_by(actor, db_session), ip=ip,
              target=unit.code, changed=changed, before=before, after=after)  # fmt: skip
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


# ---- the unit tree: move, merge (each in the caller's one transaction, audited) -------------


def _subtree(unit: Unit, db_session: Session) -> list[Unit]:
    """The unit and everything under it (by the materialised path)."""
    return list(db_session.scalars(select(Unit).where(Unit.path.startswith(unit.path))))


def _reparent(unit: Unit, parent: Unit, db_session: Session) -> int:
    """Put `unit` under `parent` and rewrite the path of its whole subtree (the prefix match
    that visibility reads); returns how many units' paths changed."""
    old, new = unit.path, f"{parent.path}{unit.id}/"
    moved = _subtree(unit, db_session)
    unit.parent_id = parent.id
    for u in moved:
        u.path = new + u.path[len(old) :]
    return len(moved)


def move_unit(
    unit_id: int, parent: str, *, actor: Principal, db_session: Session, ip: str | None
) -> Unit:
    """Move a unit (with everything under it) to another parent; tickets, users and history
    stay with it, and who sees what follows the tree at once."""
    from jiesu.taxonomy.service import bump_reference, find_unit

    unit = db_session.get(Unit, unit_id)
    if unit is None:
        raise NotFound("没有这个单位")
    if unit.parent_id is None:
        raise Invalid("上级单位：市级单位不能移动", field="parent")
    target = find_unit(parent, db_session=db_session, field="parent", label="新的上级单位")
    if target.path.startswith(unit.path):
        raise Invalid("新的上级单位：不能移到本单位或其下级单位之下", field="parent")
    if not target.active:
        raise Invalid(f"新的上级单位：「{target.name}」已停用", field="parent")
    if target.id == unit.parent_id:
        return unit
    before = db_session.get(Unit, unit.parent_id)
    count = _reparent(unit, target, db_session)
    bump_reference(db_session=db_session)
    audit("unit_move", db_session=db_session, user=_by(actor, db_session), ip=ip,
          target=unit.code, before={"parent": before.code if before else None},
          after={"parent": target.code}, units=count)  # fmt: skip
    return unit


def merge_units(
    unit_id: int, into: str, *, actor: Principal, db_session: Session, ip: str | None
) -> Unit:
    """Merge a unit into another (two streets become one, a department is absorbed).

    Moves to the survivor: the users, the open assignments (and the lead of those orders), the
    units under it, its dispatch catalogue entries and its places. Stays as recorded: closed
    assignments, the timeline, and the assessment's facts and rollups (the merged unit's months
    keep its own figures; the survivor's figures grow from the orders it now handles). The
    merged unit is deactivated with `merged_into_id` pointing at the survivor."""
    from sqlalchemy import update

    from jiesu.intel.models import Place
    from jiesu.taxonomy.models import DispatchRule
    from jiesu.taxonomy.service import bump_reference, find_unit
    from jiesu.tickets.models import Assignment, Ticket

    unit = db_session.get(Unit, unit_id)
    if unit is None:
        raise NotFound("没有这个单位")
    survivor = find_unit(into, db_session=db_session, field="into", label="并入单位")
    if survivor.id == unit.id:
        raise Invalid("并入单位：不能并入本单位", field="into")
    if survivor.path.startswith(unit.path):
        raise Invalid("并入单位：不能并入本单位的下级单位", field="into")
    if not survivor.active:
        raise Invalid(f"并入单位：「{survivor.name}」已停用", field="into")
    if unit.parent_id is None or unit.function in ("service_centre", "discipline"):
        raise Invalid("并入单位：市级单位、热线中心和纪检监察单位不能并入其他单位", field="into")
    users = list(db_session.scalars(select(User).where(User.unit_id == unit.id)))
    for user in users:
        user.unit_id = survivor.id
        set_password_sessions_end(user, db_session=db_session)  # they sign in to the new unit
    open_rows = list(db_session.scalars(
        select(Assignment).where(Assignment.unit_id == unit.id, Assignment.active)
    ))  # fmt: skip
    for row in open_rows:
        row.unit_id = survivor.id
    led = db_session.execute(
        update(Ticket).where(Ticket.lead_unit_id == unit.id,
                             Ticket.id.in_({r.ticket_id for r in open_rows if r.role == "lead"}))
        .values(lead_unit_id=survivor.id)
    ).rowcount  # fmt: skip
    children = list(db_session.scalars(select(Unit).where(Unit.parent_id == unit.id)))
    for child in children:
        _reparent(child, survivor, db_session)
    db_session.execute(
        update(DispatchRule).where(DispatchRule.unit_id == unit.id).values(unit_id=survivor.id)
    )
    for rule in db_session.scalars(select(DispatchRule).where(DispatchRule.district_id == unit.id)):
        rule.active = False  # a district's own entries end with it; the survivor keeps its own
    have = {p.name for p in db_session.scalars(select(Place).where(Place.unit_id == survivor.id))}
    for place in db_session.scalars(select(Place).where(Place.unit_id == unit.id)):
        if place.name in have:
            place.active = False
        else:
            place.unit_id = survivor.id
    unit.active, unit.merged_into_id = False, survivor.id
    bump_reference(db_session=db_session)
    audit("unit_merge", db_session=db_session, user=_by(actor, db_session), ip=ip,
          target=unit.code, before={"active": True}, after={"merged_into": survivor.code},
          users=len(users), open_assignments=len(open_rows), led_orders=led,
          units=len(children))  # fmt: skip
    return unit
