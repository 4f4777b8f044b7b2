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
    merge_units,
    move_unit,
    remove_calendar_day,
    set_calendar_day,
    unlock_user,
    update_unit,
    update_user,
)
from jiesu.taxonomy.models import CalendarOverride, Category, DispatchRule
from jiesu.taxonomy.service import (
    ROUTES,
    RuleIn,
    add_category,
    pack_settings,
    save_rule,
    set_pack_values,
    update_category,
)
from jiesu.web.deps import DB, ReadSession, client_ip, require_page
from jiesu.web.params import SmallId, form_day, form_page
from jiesu.web.templating import render, zh
from jiesu.web.validation import message as validation_message

router = APIRouter(prefix="/console/admin", include_in_schema=False)
Admin = Annotated[Principal, Depends(require_page("admin"))]
PAGE = 50

SECTIONS = (
    ("users", "用户"),
    ("units", "单位"),
    ("categories", "事项分类"),
    ("catalogue", "派单目录"),
    ("calendar", "调休日历"),
    ("weights", "考核与预警参数"),
    ("models", "智能分派"),
    ("tokens", "系统令牌"),
    ("webhooks", "推送订阅"),  # jiesu/delivery/views.py
    ("deliveries", "投递记录"),
    ("open311", "Open311 接入"),  # jiesu/open311/views.py
    ("notices", "通知设置"),  # jiesu/notices/views.py
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
    """The section again with the refusal on top; `typed` (what the form sent) and `typed_for`
    (which form) put the typed values back into that form."""
    context.setdefault("typed", {})
    context.setdefault("typed_for", "")
    with db.read() as session:
        ctx = _page(request, actor, session, section, **_section_data(section, request, session),
                    **context)  # fmt: skip
    ctx["flash"] = {"kind": "error", "text": zh(exc.message)}
    return render(request, "console/admin.html", ctx, status_code=exc.status)


def _function_names(session: Session) -> dict[str, str]:
    """Each unit function (housing …) by the name people know it by: the short name of a unit
    that has it, the city's own department first, without the city's or district's prefix."""
    rows = session.execute(
        select(Unit.function, Unit.short_name, Unit.name)
        .where(Unit.function.is_not(None), Unit.active)
        .order_by(func.length(Unit.path), Unit.code)
    ).all()
    names: dict[str, str] = {}
    for function, short, name in rows:
        if function and function not in names:
            label = short or name
            names[function] = label[1:] if label[:1] in ("市", "区") and len(label) > 2 else label
    return names


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
        merged = {u.id: u.name for u in session.scalars(
            select(Unit).where(Unit.id.in_({r.merged_into_id for r in rows if r.merged_into_id})))}  # fmt: skip
        return {"rows": rows, "total": total, "q": q, "page": page, "kind": kind,
                "parents": parents, "merged": merged,
                "kinds": list(UnitKind.__members__)}  # fmt: skip
    if section == "categories":
        return {"rows": session.scalars(select(Category).order_by(Category.code)).all(),
                "tiers": list(pack_settings(db_session=session).get("tiers") or {})}  # fmt: skip
    if section == "catalogue":
        units = dict(session.execute(select(Unit.id, Unit.name)).all())
        codes = dict(session.execute(select(Unit.id, Unit.code)).all())
        cats = {c.id: c for c in session.scalars(select(Category))}
        rules = session.scalars(select(DispatchRule).order_by(DispatchRule.id)).all()
        return {"rows": rules, "unit_names": units, "unit_codes": codes, "cats": cats,
                "routes": ROUTES, "functions": _function_names(session)}  # fmt: skip
    if section == "calendar":
        rows = session.scalars(select(CalendarOverride).order_by(CalendarOverride.day.desc())).all()
        return {"rows": rows}
    if section == "weights":
        from jiesu.citypack.parse import WARNING_COUNTS, WARNING_RATIOS

        settings = pack_settings(db_session=session)
        return {"settings": settings, "warning_keys": WARNING_COUNTS + WARNING_RATIOS,
                "warning_labels": WARNING_LABELS, "unit_kinds": list(UnitKind.__members__)}  # fmt: skip
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
        return {
            "rows": rows,
            "q": q,
            "page": page,
            # codes in the details shown by their names (the code small beside)
            "unit_names": dict(session.execute(select(Unit.code, Unit.name)).all()),
            "category_names": dict(session.execute(select(Category.code, Category.name)).all()),
        }
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
                  role=form.first("role"), unit=form.first("unit"),
                  password=form.first("password") or None,
                  active=form.first("active", "on") == "on")  # fmt: skip


@router.post("/users", response_class=HTMLResponse)
async def user_create(request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    try:
        with db.write() as session:
            create_user(_user_in(form), actor=actor, db_session=session, ip=client_ip(request))
    except DomainError as exc:
        typed = {k: v for k, v in _typed(form).items() if k != "password"}
        return _error_page(request, actor, db, "users", exc, typed=typed, typed_for="user-new")
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
        typed = {k: v for k, v in _typed(form).items() if k != "password"}
        return _error_page(request, actor, db, "users", exc, typed=typed,
                           typed_for=f"user-{user_id}")  # fmt: skip
    return RedirectResponse("/console/admin/users?done=saved", status_code=303)


@router.post("/units", response_class=HTMLResponse)
async def unit_create(request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    data = UnitIn(code=form.first("code"), name=form.first("name"), kind=form.first("kind"),
                  parent=form.first("parent").strip() or None,
                  short_name=form.first("short_name") or None,
                  function=form.first("function") or None)  # fmt: skip
    try:
        with db.write() as session:
            create_unit(data, actor=actor, db_session=session, ip=client_ip(request))
    except DomainError as exc:
        return _error_page(request, actor, db, "units", exc, typed=_typed(form),
                           typed_for="unit-new")  # fmt: skip
    return RedirectResponse("/console/admin/units?done=saved", status_code=303)


@router.post("/units/{unit_id}", response_class=HTMLResponse)
async def unit_update(unit_id: SmallId, request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    op = form.first("op")
    try:
        with db.write() as session:
            if op == "move":
                move_unit(unit_id, form.first("parent"), actor=actor, db_session=session,
                          ip=client_ip(request))  # fmt: skip
            elif op == "merge":
                if form.first("confirm") != "on":
                    raise Invalid("合并单位：请勾选「确认合并」", field="confirm")
                merge_units(unit_id, form.first("into"), actor=actor, db_session=session,
                            ip=client_ip(request))  # fmt: skip
            else:
                update_unit(unit_id, name=form.first("name"),
                            short_name=form.first("short_name") or None,
                            active=form.first("active") == "on", actor=actor,
                            db_session=session, ip=client_ip(request))  # fmt: skip
    except DomainError as exc:
        return _error_page(request, actor, db, "units", exc, typed=_typed(form),
                           typed_for=f"unit-{unit_id}-{op or 'edit'}")  # fmt: skip
    return RedirectResponse("/console/admin/units?done=saved", status_code=303)


def _typed(form: FormValues) -> dict[str, str]:
    return {k: form.first(k) for k in form if k != "csrf_token"}


# ---- the catalogue, categories and the city's settings (issue 14 §2.8) -------------------


def _rule_in(form: FormValues) -> RuleIn:
    return RuleIn(category=form.first("category"), route=form.first("route"),
                  unit=form.first("unit"), function=form.first("function"),
                  district=form.first("district"), note=form.first("note"),
                  active=form.first("active", "on") == "on")  # fmt: skip


@router.post("/catalogue", response_class=HTMLResponse)
async def rule_create(request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    try:
        with db.write() as session:
            save_rule(None, _rule_in(form), actor=actor, db_session=session,
                      ip=client_ip(request))  # fmt: skip
    except DomainError as exc:
        return _error_page(request, actor, db, "catalogue", exc, typed=_typed(form),
                           typed_for="rule-new")  # fmt: skip
    return RedirectResponse("/console/admin/catalogue?done=saved", status_code=303)


@router.post("/catalogue/{rule_id}", response_class=HTMLResponse)
async def rule_update(rule_id: SmallId, request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    data = _rule_in(form)
    data.active = form.first("active") == "on"
    try:
        with db.write() as session:
            save_rule(rule_id, data, actor=actor, db_session=session, ip=client_ip(request))
    except DomainError as exc:
        return _error_page(request, actor, db, "catalogue", exc, typed=_typed(form),
                           typed_for=f"rule-{rule_id}")  # fmt: skip
    return RedirectResponse("/console/admin/catalogue?done=saved", status_code=303)


@router.post("/categories", response_class=HTMLResponse)
async def category_create(request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    try:
        with db.write() as session:
            add_category(form.first("parent"), code=form.first("code"), name=form.first("name"),
                         tier=form.first("tier") or None, actor=actor, db_session=session,
                         ip=client_ip(request))  # fmt: skip
    except DomainError as exc:
        return _error_page(request, actor, db, "categories", exc, typed=_typed(form),
                           typed_for="category-new")  # fmt: skip
    return RedirectResponse("/console/admin/categories?done=saved", status_code=303)


@router.post("/categories/{category_id}", response_class=HTMLResponse)
async def category_update(category_id: SmallId, request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    try:
        with db.write() as session:
            update_category(category_id, name=form.first("name"), tier=form.first("tier") or None,
                            active=form.first("active") == "on", actor=actor,
                            db_session=session, ip=client_ip(request))  # fmt: skip
    except DomainError as exc:
        return _error_page(request, actor, db, "categories", exc, typed=_typed(form),
                           typed_for=f"category-{category_id}")  # fmt: skip
    return RedirectResponse("/console/admin/categories?done=saved", status_code=303)


WARNING_LABELS = {
    "burst_min_count": "突增预警：当日最少件数",
    "burst_min_ratio": "突增预警：高于常态的倍数",
    "repeat_window_days": "重复诉求：统计天数",
    "repeat_min_orders": "重复诉求：最少件数",
    "bounce_min_returns": "反复退单：最少退单次数",
    "bounce_min_units": "反复退单：最少经手单位数",
    "inaction_min_dispatched": "单位不作为：最少派单件数",
}
KIND_LABELS = {"default": "默认"}


def _number(text: str, label: str, field: str, *, whole: bool) -> float | int:
    text = text.strip()
    if not text:
        raise Invalid(f"{label}：请填写", field=field)
    try:
        return int(text) if whole else float(text)
    except ValueError:
        raise Invalid(f"{label}：请填写{'整数' if whole else '数字'}", field=field) from None


def _settings_values(form: FormValues, current: dict[str, Any]) -> dict[str, Any]:
    """The settings form (weights in percent) as the values `set_pack_values` checks."""
    from jiesu.citypack.parse import WARNING_COUNTS
    from jiesu.web.labels import UNIT_KIND_NAMES as KIND_NAMES

    values: dict[str, Any] = {}
    weights: dict[str, dict[str, float]] = {}
    parts = {"response": "响应率", "resolution": "解决率", "satisfaction": "满意率"}
    for kind in current.get("weights") or {}:
        name = KIND_LABELS.get(kind) or KIND_NAMES.get(kind, kind)
        weights[kind] = {
            part: round(float(_number(form.first(f"w.{kind}.{part}"), f"{name}{label}权重",
                                      f"w.{kind}.{part}", whole=False)) / 100, 6)
            for part, label in parts.items()
        }  # fmt: skip
    if weights:
        values["weights"] = weights
    task_force = {}
    for key in form:
        if key.startswith("tf."):
            kind = key[3:]
            task_force[kind] = _number(form.first(key), f"{KIND_NAMES.get(kind, kind)}专班数量",
                                       key, whole=True)  # fmt: skip
    values["task_force"] = task_force
    values["small_sample"] = _number(form.first("small_sample"), "小样本门槛", "small_sample",
                                     whole=True)  # fmt: skip
    warnings = {}
    for key in form:
        if key.startswith("wn.") and form.first(key).strip():  # blank: the detector's default
            name = key[3:]
            warnings[name] = _number(form.first(key), WARNING_LABELS.get(name, name), key,
                                     whole=name in WARNING_COUNTS)  # fmt: skip
    if warnings:
        values["warnings"] = {**(current.get("warnings") or {}), **warnings}
    return values


@router.post("/weights", response_class=HTMLResponse)
async def settings_update(request: Request, actor: Admin, db: DB) -> Response:
    form = await _form(request)
    try:
        with db.write() as session:
            values = _settings_values(form, pack_settings(db_session=session))
            set_pack_values(values, actor=actor, db_session=session, ip=client_ip(request))
    except DomainError as exc:
        return _error_page(request, actor, db, "weights", exc, typed=_typed(form),
                           typed_for="settings")  # fmt: skip
    return RedirectResponse("/console/admin/weights?done=saved", status_code=303)


@router.get("/pack/download")
def pack_export(request: Request, actor: Admin, db: DB) -> Response:
    """The city's pack as it now stands, as a zip (`jiesu citypack export` writes the same)."""
    from jiesu.auth.service import audit
    from jiesu.citypack.export import export_zip

    with db.read() as session:
        data = export_zip(db_session=session)
        code = str(pack_settings(db_session=session).get("code") or "city")
    with db.write() as session:
        audit("pack_export", db_session=session, user=session.get(User, actor.user_id),
              ip=client_ip(request), size=len(data))  # fmt: skip
    name = "".join(c for c in code if c.isalnum() or c in "-_") or "city"
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}-pack.zip"'})  # fmt: skip


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
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise Invalid(validation_message(first, {"name": "用途", "username": "账号"}),
                          field=field) from exc  # fmt: skip
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
