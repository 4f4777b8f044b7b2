"""The admin's page 系统管理 → 通知设置: whether SMS and e-mail are on, the city's SMS templates
as they will read, the opted-out phones (masked) with undo, and units' notice e-mail addresses.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select

from jiesu.access.policy import Principal, mask_phone
from jiesu.auth.service import audit
from jiesu.console.admin_views import SECTIONS
from jiesu.console.views import frame
from jiesu.db.base import utcnow
from jiesu.errors import DomainError
from jiesu.notices import service
from jiesu.notices import templates as tpl
from jiesu.notices.email import EMAIL_KINDS, SmtpSettings, kind_label
from jiesu.notices.models import SmsOptOut
from jiesu.notices.sms import gateway_settings
from jiesu.taxonomy.service import find_unit, pack_settings
from jiesu.web.deps import DB, client_ip, require_page
from jiesu.web.params import SmallId, form_page
from jiesu.web.templating import render, zh

router = APIRouter(prefix="/console/admin/notices", include_in_schema=False)
Admin = Annotated[Principal, Depends(require_page("admin"))]
PAGE = 50
SOURCES = {"sms": "短信回复退订", "admin": "管理员登记", "portal": "市民网站"}
SAMPLE = {**tpl.WIDEST, "reply": "经核实，已安排维修人员更换楼道灯，现已恢复照明。" * 3}
# How a template reads on the page: each placeholder by its Chinese name.
SHOWN = {"number": "〔工单号〕", "tracking_code": "〔查询码〕", "status": "〔状态〕",
         "reply": "〔答复内容〕", "link": "〔评价链接〕"}  # fmt: skip


def _templates_view(settings: dict[str, Any]) -> dict[str, Any]:
    config = tpl.sms_config(settings)
    rows = []
    for kind, text in config.templates.items():
        sample = tpl.render(text, SAMPLE, signature=config.signature,
                            max_segments=config.max_segments)  # fmt: skip
        rows.append({"kind": kind, "label": tpl.KIND_LABELS.get(kind, kind), "template": text,
                     "shown": text.format_map(SHOWN),
                     "sample": sample.text, "segments": sample.segments, "cut": sample.cut})  # fmt: skip
    return {"config": config, "templates": rows}


def _page(request: Request, actor: Principal, session: Any, **context: Any) -> dict[str, Any]:
    tabs = [{"href": f"/console/admin/{key}", "label": label, "active": key == "notices"}
            for key, label in SECTIONS]  # fmt: skip
    page = form_page(request.query_params.get("page"), most=10_000)
    url, _key, _timeout = gateway_settings()
    smtp = SmtpSettings.from_env()
    opt_outs = service.list_opt_outs(db_session=session, limit=PAGE, offset=(page - 1) * PAGE)
    total = session.scalar(select(func.count()).select_from(SmsOptOut)) or 0
    return frame(
        request, actor, session, title="系统管理 · 通知设置", tabs=tabs,
        sms_on=bool(url), sms_host=urlsplit(url).netloc if url else "",
        smtp_on=bool(smtp.host), smtp_host=f"{smtp.host}:{smtp.port}" if smtp.host else "",
        smtp_from=smtp.sender,
        opt_outs=[{"id": o.id, "phone": mask_phone(o.phone), "source": SOURCES.get(o.source, o.source),
                   "at": o.created_at} for o in opt_outs],
        opt_out_total=total, page=page, page_size=PAGE,
        emails=service.unit_emails(db_session=session),
        kinds=[(k, kind_label(k)) for k in EMAIL_KINDS], kind_label=kind_label,
        **_templates_view(pack_settings(db_session=session)), **context,
    )  # fmt: skip


def _refused(request: Request, actor: Principal, db: DB, exc: DomainError,
             **context: Any) -> Response:  # fmt: skip
    with db.read() as session:
        ctx = _page(request, actor, session, **context)
    ctx["flash"] = {"kind": "error", "text": zh(exc.message)}
    return render(request, "console/notices_settings.html", ctx, status_code=exc.status)


@router.get("", response_class=HTMLResponse)
def notices_page(request: Request, actor: Admin, db: DB) -> Response:
    with db.read() as session:
        return render(request, "console/notices_settings.html", _page(request, actor, session))


@router.post("/opt-outs", response_class=HTMLResponse)
async def opt_out_add(request: Request, actor: Admin, db: DB) -> Response:
    """A citizen asked the hotline by phone for no more SMS."""
    form = await request.form()
    phone = str(form.get("phone") or "")
    try:
        with db.write() as session:
            now = utcnow()
            service.opt_out(phone, db_session=session, now=now, source="admin",
                            actor_id=actor.user_id)  # fmt: skip
            audit("sms_opt_out", db_session=session, username=actor.username,
                  ip=client_ip(request), now=now, target=mask_phone(service.normalise_phone(phone)))  # fmt: skip
    except DomainError as exc:
        return _refused(request, actor, db, exc, typed_phone=phone)
    return RedirectResponse("/console/admin/notices?done=saved", status_code=303)


@router.post("/opt-outs/{opt_out_id}/undo", response_class=HTMLResponse)
def opt_out_undo(opt_out_id: SmallId, request: Request, actor: Admin, db: DB) -> Response:
    try:
        with db.write() as session:
            row = service.undo_opt_out(opt_out_id, db_session=session)
            audit("sms_opt_out_undone", db_session=session, username=actor.username,
                  ip=client_ip(request), now=utcnow(), target=mask_phone(row.phone))  # fmt: skip
    except DomainError as exc:
        return _refused(request, actor, db, exc)
    return RedirectResponse("/console/admin/notices?done=saved", status_code=303)


@router.post("/emails", response_class=HTMLResponse)
async def email_add(request: Request, actor: Admin, db: DB) -> Response:
    form = await request.form()
    unit_text, address = str(form.get("unit") or ""), str(form.get("address") or "")
    kinds = [str(k) for k in form.getlist("kinds")]
    try:
        with db.write() as session:
            unit = find_unit(unit_text, db_session=session, field="unit", label="单位")
            row = service.save_unit_email(db_session=session, now=utcnow(), unit_code=unit.code,
                                          address=address, kinds=kinds,
                                          allowed_kinds=EMAIL_KINDS)  # fmt: skip
            audit("notice_email_saved", db_session=session, username=actor.username,
                  ip=client_ip(request), unit=unit.code, target=row.address,
                  kind="、".join(kind_label(k) for k in kinds) or "全部通知")  # fmt: skip
    except DomainError as exc:
        typed = {"unit": unit_text, "address": address, "kinds": kinds}
        return _refused(request, actor, db, exc, typed=typed)
    return RedirectResponse("/console/admin/notices?done=saved", status_code=303)


@router.post("/emails/{email_id}/delete", response_class=HTMLResponse)
def email_delete(email_id: SmallId, request: Request, actor: Admin, db: DB) -> Response:
    try:
        with db.write() as session:
            row = service.delete_unit_email(email_id, db_session=session)
            audit("notice_email_deleted", db_session=session, username=actor.username,
                  ip=client_ip(request), unit=row.unit.code, target=row.address)  # fmt: skip
    except DomainError as exc:
        return _refused(request, actor, db, exc)
    return RedirectResponse("/console/admin/notices?done=saved", status_code=303)
