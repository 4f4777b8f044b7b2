"""The admin workbench: users, units, categories, dispatch catalogue, calendar, weights, system
tokens and the audit log. Writes go through `org/service.py` and `auth/views.py`'s services."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from jiesu.access.permissions import ROLES
from jiesu.access.policy import Principal
from jiesu.auth.models import ApiToken, AuditLog
from jiesu.auth.views import SystemTokenIn, issue_system_token, revoke_system_token
from jiesu.console.service import FormValues, small_int
from jiesu.console.views import frame
from jiesu.errors import DomainError, Invalid
from jiesu.org.models import Unit, UnitKind, User
from jiesu.org.service import (
    UnitIn,
    UserIn,
    create_unit,
    create_user,
    remove_calendar_day,
    set_calendar_day,
    unlock_user,
    update_unit,
    update_user,
)
from jiesu.taxonomy.models import CalendarOverride, Category, DispatchRule
from jiesu.taxonomy.service import pack_settings
from jiesu.web.deps import DB, ReadSession, client_ip, require_page
from jiesu.web.params import SmallId, form_day, form_page
from jiesu.web.templating import render, zh

router = APIRouter(prefix="/console/admin", include_in_schema=False)
Admin = Annotated[Principal, Depends(require_page("admin"))]
PAGE = 50

SECTIONS = (
    ("users", "用户"),
    ("units", "单位"),
    ("categories", "事项分类"),
    ("catalogue", "派单目录"),
    ("calendar", "调休日历"),
    ("weights", "考核权重"),
    ("models", "智能分派"),
    ("tokens", "系统令牌"),
    ("audit", "审计日志"),
)


def _page(request: Request, actor: Principal, session: Session, section: str,
          **context: Any) -> dict[str, Any]:  # fmt: skip
    title = dict(SECTIONS)[section]
    tabs = [{"href": f"/console/admin/{key}", "label": label, "active": key == section}
            for key, label in SECTIONS]  # fmt: skip
    return frame(request, actor, session, title=f"系统管理 · {title}", tabs=tabs,
                 section=section, **context)  # fmt: skip


def _page_no(request: Request) -> int:
    return form_page(request.query_params.get("page"), most=10_000)  # Invalid (422) otherwise


async def _form(request: Request) -> FormValues:
    return FormValues(list((await request.form()).multi_items()))  # type: ignore[arg-type]


def _error_page(request: Request, actor: Principal, db: Any, section: str, exc: DomainError,
                **context: Any) -> Response:  # fmt: skip
    with db.read() as session:
        ctx = _page(request, actor, session, section, **_section_data(section, request, session),
                    **context)  # fmt: skip
    ctx["flash"] = {"kind": "error", "text": zh(exc.message)}
    return render(request, "console/admin.html", ctx, status_code=exc.status)


def _section_data(section: str, request: Request, session: Session) -> dict[str, Any]:
    q = request.query_params.get("q", "").strip()[:60]
    page = _page_no(request)
    if section == "users":
        stmt = select(User).options(selectinload(User.unit)).order_by(User.username)
        if q:
            stmt = stmt.where(or_(User.username.icontains(q, autoescape=True),
                                  User.name.icontains(q, autoescape=True)))  # fmt: skip
        total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
        rows = session.scalars(stmt.limit(PAGE).offset((page - 1) * PAGE)).all()
        return {"rows": rows, "total": total, "q": q, "page": page, "roles": ROLES}
    if section == "units":
        stmt = select(Unit).order_by(Unit.path)
        kind = request.query_params.get("kind", "")
        if kind in UnitKind.__members__:
            stmt = stmt.where(Unit.kind == kind)
        if q:
            stmt = stmt.where(or_(Unit.code.icontains(q, autoescape=True),
                                  Unit.name.icontains(q, autoescape=True)))  # fmt: skip
        total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
        rows = session.scalars(stmt.limit(PAGE).offset((page - 1) * PAGE)).all()
        parents = {u.id: u.name for u in session.scalars(
            select(Unit).where(Unit.id.in_({r.parent_id for r in rows if r.parent_id})))}  # fmt: skip
        return {"rows": rows, "total": total, "q": q, "page": page, "kind": kind,
                "parents": parents, "kinds": list(UnitKind.__members__)}  # fmt: skip
    if section == "categories":
        return {"rows": session.scalars(select(Category).order_by(Category.code)).all()}
    if section == "catalogue":
        units = dict(session.execute(select(Unit.id, Unit.name)).all())
        cats = {c.id: c for c in session.scalars(select(Category))}
        rules = session.scalars(select(DispatchRule).order_by(DispatchRule.id)).all()
        return {"rows": rules, "unit_names": units, "cats": cats}
    if section == "calendar":
        rows = session.scalars(select(CalendarOverride).order_by(CalendarOverride.day.desc())).all()
        return {"rows": rows}
    if section == "weights":
        settings = pack_settings(db_session=session)
        return {"settings": settings}
    if section == "models":
        return _models_data(session)
    if section == "tokens":
        rows = session.scalars(select(ApiToken).where(ApiToken.kind == "system")
                               .options(selectinload(ApiToken.user))
                               .order_by(ApiToken.id.desc())).all()  # fmt: skip
        return {"rows": rows}
    if section == "audit":
        stmt = select(AuditLog).order_by(AuditLog.id.desc())
        if q:
            stmt = stmt.where(or_(AuditLog.username == q, AuditLog.action == q))
        rows = session.scalars(stmt.limit(PAGE).offset((page - 1) * PAGE)).all()
        return {"rows": rows, "q": q, "page": page}
    raise KeyError(section)


@router.get("", response_class=HTMLResponse)
def admin_home(_actor: Admin) -> Response:
    return RedirectResponse("/console/admin/users", status_code=303)


@router.get("/{section}", response_class=HTMLResponse)
def admin_section(section: str, request: Request, actor: Admin, session: ReadSession) -> Response:
    if section not in dict(SECTIONS):
        from jiesu.errors import NotFound

        raise NotFound("没有这个管理页面 / no such page")
    ctx = _page(request, actor, session, section, **_section_data(section, request, session))
    return render(request, "console/admin.html", ctx)


def _user_in(form: FormValues) -> UserIn:
    return UserIn(username=form.first("username"), name=form.first("name"),
                  role=form.first("role"), unit=form.first("unit").split(" ")[0],
                  password=form.first("password") or None,
                  active=form.first("active", "on") == "on")  # fmt: skip


@router.post("/users", response_class=HTMLResponse)
async def user_create(request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    try:
        with db.write() as session:
            create_user(_user_in(form), actor=actor, db_session=session, ip=client_ip(request))
    except DomainError as exc:
        return _error_page(request, actor, db, "users", exc)
    return RedirectResponse("/console/admin/users?done=saved", status_code=303)


@router.post("/users/{user_id}", response_class=HTMLResponse)
async def user_update(user_id: SmallId, request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    try:
        with db.write() as session:
            if form.first("op") == "unlock":
                unlock_user(user_id, actor=actor, db_session=session, ip=client_ip(request))
            else:
                data = _user_in(form)
                data.active = form.first("active") == "on"
                update_user(user_id, data, actor=actor, db_session=session,
                            ip=client_ip(request))  # fmt: skip
    except DomainError as exc:
        return _error_page(request, actor, db, "users", exc)
    return RedirectResponse("/console/admin/users?done=saved", status_code=303)


@router.post("/units", response_class=HTMLResponse)
async def unit_create(request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    data = UnitIn(code=form.first("code"), name=form.first("name"), kind=form.first("kind"),
                  parent=form.first("parent").split(" ")[0] or None,
                  short_name=form.first("short_name") or None,
                  function=form.first("function") or None)  # fmt: skip
    try:
        with db.write() as session:
            create_unit(data, actor=actor, db_session=session, ip=client_ip(request))
    except DomainError as exc:
        return _error_page(request, actor, db, "units", exc)
    return RedirectResponse("/console/admin/units?done=saved", status_code=303)


@router.post("/units/{unit_id}", response_class=HTMLResponse)
async def unit_update(unit_id: SmallId, request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    try:
        with db.write() as session:
            update_unit(unit_id, name=form.first("name"),
                        short_name=form.first("short_name") or None,
                        active=form.first("active") == "on", actor=actor, db_session=session,
                        ip=client_ip(request))  # fmt: skip
    except DomainError as exc:
        return _error_page(request, actor, db, "units", exc)
    return RedirectResponse("/console/admin/units?done=saved", status_code=303)


@router.post("/calendar", response_class=HTMLResponse)
async def calendar_set(request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    try:
        day = form_day(form.first("day"), field="day")
        if day is None:
            raise Invalid("请填写日期 / a date is required", field="day")
        with db.write() as session:
            if form.first("op") == "remove":
                remove_calendar_day(day, actor=actor, db_session=session, ip=client_ip(request))
            else:
                set_calendar_day(day, form.first("kind"), form.first("note")[:60] or None,
                                 actor=actor, db_session=session, ip=client_ip(request))  # fmt: skip
    except DomainError as exc:
        return _error_page(request, actor, db, "calendar", exc)
    return RedirectResponse("/console/admin/calendar?done=saved", status_code=303)


@router.post("/tokens", response_class=HTMLResponse)
async def token_issue(request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    try:
        try:
            data = SystemTokenIn.model_validate({
                "username": form.first("username"), "name": form.first("name"),
                "scope_channel": form.first("scope_channel") or None,
                "scope_role": form.first("scope_role") or None,
                "days": small_int(form.first("days")),
            })  # fmt: skip
        except ValidationError as exc:
            field = ".".join(str(p) for p in exc.errors()[0]["loc"])
            raise Invalid(f"{field} 填写有误", field=field) from exc
        with db.write() as session:
            row, value = issue_system_token(data, by=actor, db_session=session,
                                            ip=client_ip(request))  # fmt: skip
            issued = {"name": row.name, "value": value}
    except DomainError as exc:
        return _error_page(request, actor, db, "tokens", exc)
    with db.read() as session:  # the value is shown once, on this page, never again
        ctx = _page(request, actor, session, "tokens", issued=issued,
                    **_section_data("tokens", request, session))  # fmt: skip
    return render(request, "console/admin.html", ctx, status_code=201)


@router.post("/tokens/{token_id}/revoke", response_class=HTMLResponse)
async def token_revoke(token_id: SmallId, request: Request, actor: Admin, db: DB) -> Response:
    try:
        with db.write() as session:
            revoke_system_token(token_id, by=actor, db_session=session, ip=client_ip(request))
    except DomainError as exc:
        return _error_page(request, actor, db, "tokens", exc)
    return RedirectResponse("/console/admin/tokens?done=saved", status_code=303)


# ---- a unit admin's own people (联络员管理本单位承办人) ----------------------------------------

unit_router = APIRouter(prefix="/console/unit", include_in_schema=False)
UnitAdmin = Annotated[Principal, Depends(require_page("unit.users"))]


def _unit_page(request: Request, actor: Principal, session: Session) -> dict[str, Any]:
    unit = session.get(Unit, actor.unit_id)
    rows = session.scalars(
        select(User).where(User.unit_id == actor.unit_id).order_by(User.role, User.username)
    ).all()
    return frame(request, actor, session, title="本单位人员", rows=rows, unit=unit)


@unit_router.get("/users", response_class=HTMLResponse)
def unit_users(request: Request, actor: UnitAdmin, session: ReadSession) -> Response:
    return render(request, "console/unit_users.html", _unit_page(request, actor, session))


async def _unit_write(request: Request, actor: Principal, db: Any, user_id: int | None) -> Response:
    form = await _form(request)
    try:
        with db.write() as session:
            unit = session.get(Unit, actor.unit_id)
            data = UserIn(username=form.first("username"), name=form.first("name"),
                          role="handler", unit=unit.code if unit else "",
                          password=form.first("password") or None,
                          active=form.first("active", "on") == "on")  # fmt: skip
            if user_id is None:
                create_user(data, actor=actor, db_session=session, ip=client_ip(request))
            else:
                data.active = form.first("active") == "on"
                update_user(user_id, data, actor=actor, db_session=session, ip=client_ip(request))
    except DomainError as exc:
        with db.read() as session:
            ctx = _unit_page(request, actor, session)
        ctx["flash"] = {"kind": "error", "text": zh(exc.message)}
        return render(request, "console/unit_users.html", ctx, status_code=exc.status)
    return RedirectResponse("/console/unit/users?done=saved", status_code=303)


@unit_router.post("/users", response_class=HTMLResponse)
async def unit_user_create(request: Request, actor: UnitAdmin, db: DB) -> Response:
    return await _unit_write(request, actor, db, None)


@unit_router.post("/users/{user_id}", response_class=HTMLResponse)
async def unit_user_update(
    user_id: SmallId, request: Request, actor: UnitAdmin, db: DB
) -> Response:
    return await _unit_write(request, actor, db, user_id)


# ---- intelligence: models and thresholds ----------------------------------------------------


def _models_data(session: Session) -> dict[str, Any]:
    from jiesu.intel.models import IntelModel
    from jiesu.intel.service import KINDS, corrections, intel_settings

    rows = session.scalars(
        select(IntelModel).order_by(IntelModel.kind, IntelModel.version.desc())
    ).all()
    since = {r.kind: r.created_at for r in rows if r.active}
    return {
        "rows": rows,
        "kinds": KINDS,
        "intel": intel_settings(db_session=session),
        "corrections": {kind: corrections(db_session=session, since=since.get(kind))
                        for kind in KINDS},
    }  # fmt: skip


@router.post("/models/{model_id}/activate", response_class=HTMLResponse)
async def model_activate(model_id: SmallId, request: Request, actor: Admin, db: DB) -> Response:
    from jiesu.intel.service import activate_model

    await _form(request)
    try:
        with db.write() as session:
            activate_model(model_id, db_session=session, actor=actor, ip=client_ip(request))
    except DomainError as exc:
        return _error_page(request, actor, db, "models", exc)
    return RedirectResponse("/console/admin/models?done=saved", status_code=303)


@router.post("/intel", response_class=HTMLResponse)
async def intel_update(request: Request, actor: Admin, db: DB) -> Response:
    from jiesu.intel.service import DEFAULTS, set_intel_settings

    form = await _form(request)
    values = {k: form.first(k) for k in DEFAULTS if k in form}
    if form.first("auto_off") == "on":
        values["auto_dispatch"] = ""
    try:
        with db.write() as session:
            set_intel_settings(values, actor=actor, db_session=session, ip=client_ip(request))
    except DomainError as exc:
        return _error_page(request, actor, db, "models", exc)
    return RedirectResponse("/console/admin/models?done=saved", status_code=303)
