"""The citizen portal (市民服务入口): submit a request, track it, rate the reply. Mobile first.

Anonymous pages: every form carries the double-submit CSRF token, and the tracking code travels
only in POST bodies (never in a URL, so never in a log). Bad input re-renders the form in
Chinese with what was typed kept; no answer here is JSON.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError
from starlette.datastructures import FormData, UploadFile

from jiesu.console.views import upload_path
from jiesu.errors import Conflict, DomainError, Invalid, TooManyRequests
from jiesu.portal.service import (
    CONTENT_MAX,
    CONTENT_MIN,
    DEFAULT_TYPE,
    MAX_PHOTO_BYTES,
    MAX_PHOTOS,
    NOTE_MAX,
    PortalUnavailable,
    Progress,
    citizen_principal,
    find_tracked,
    normalise_code,
    photo_from,
    portal_principal,
    progress_of,
    rating_fields,
    rating_refusal,
    submission,
    submit,
    submit_allowed,
    type_choices,
)
from jiesu.tickets.actions import take_action
from jiesu.tickets.lifecycle import SATISFACTION
from jiesu.tickets.models import Ticket
from jiesu.tickets.service import find_idempotent
from jiesu.web.deps import DB, check_csrf, client_ip
from jiesu.web.templating import render, zh
from jiesu.web.validation import size_text

router = APIRouter(include_in_schema=False)

FORM_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
SUBMIT_FIELDS = ("request_type", "content", "title", "address", "lat", "lng", "name", "phone",
                 "confidential", "form_id")  # fmt: skip
TEXT_KEEP = CONTENT_MAX + 1  # characters of a field kept: one past the limit, so it is refused


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return render(request, f"portal/{name}.html", context, status_code=status_code)


def _texts(form: FormData, names: tuple[str, ...]) -> dict[str, str]:
    """The form's text fields by name (the first value, stripped); files are not text."""
    out: dict[str, str] = {}
    for name in names:
        value = form.get(name)
        out[name] = value.strip()[:TEXT_KEEP] if isinstance(value, str) else ""
    return out


def _error(exc: DomainError) -> dict[str, str]:
    return {"kind": "error", "text": zh(exc.message)}


# ---- home ------------------------------------------------------------------------------------


@router.get("/portal", response_class=HTMLResponse)
def home(request: Request) -> Response:
    return _page(request, "home", title="市民服务")


# ---- submitting ----------------------------------------------------------------------------


def _submit_form(
    request: Request, db: Any, values: dict[str, str], *, status_code: int = 200,
    error: DomainError | None = None, draft: str = "kept",
) -> HTMLResponse:  # fmt: skip
    with db.read() as session:
        types = type_choices(db_session=session)
    return _page(
        request, "submit", status_code=status_code, title="我要反映", types=types, form=values,
        form_id=values.get("form_id") or secrets.token_urlsafe(16), draft=draft,
        flash=_error(error) if error else None, error_field=error.field if error else None,
        limits={"content_min": CONTENT_MIN, "content_max": CONTENT_MAX, "photos": MAX_PHOTOS,
                "photo_bytes": MAX_PHOTO_BYTES, "photo_size": size_text(MAX_PHOTO_BYTES)},
    )  # fmt: skip


@router.get("/portal/submit", response_class=HTMLResponse)
def submit_page(request: Request, db: DB, new: str = "") -> Response:
    """A blank form. The browser's copy of the draft (static/portal.js, sessionStorage: this
    tab only) fills it again on Back, its form id included, so Back then submit shows the ticket
    already made instead of making a second; `?new=1` starts a new draft."""
    return _submit_form(request, db, {"request_type": DEFAULT_TYPE},
                        draft="new" if new else "fresh")  # fmt: skip


async def _photos(form: FormData) -> list[Any]:
    """The photos sent, checked one by one by their content (an `Invalid` for the first bad)."""
    uploads = []
    for item in form.getlist("photos"):
        if isinstance(item, UploadFile):
            if not item.filename and not item.size:  # the empty part of an unused file input
                continue
            uploads.append(item)
        elif item.strip():
            raise Invalid("照片上传有误，请重新选择照片", field="photos")
    if len(uploads) > MAX_PHOTOS:
        raise Invalid(f"最多上传 {MAX_PHOTOS} 张照片", field="photos")
    photos = []
    for index, upload in enumerate(uploads, start=1):
        data = await upload.read(MAX_PHOTO_BYTES + 1)
        photos.append(photo_from(upload.filename, data, index))
    return photos


@router.post("/portal/submit", response_class=HTMLResponse)
async def submit_post(request: Request, db: DB) -> Response:
    await check_csrf(request)
    form = await request.form()
    values = _texts(form, SUBMIT_FIELDS)
    refused = submit_allowed(client_ip(request), db=db)
    if refused is not None:  # before any photo is read or any ticket written
        await form.close()
        page = _submit_form(request, db, values, status_code=refused.status, error=refused)
        page.headers["Retry-After"] = str(refused.retry_after)
        return page
    try:
        with db.read() as session:
            types = type_choices(db_session=session)
        data = submission(values, types=types)
        photos = await _photos(form)
        form_id = values.get("form_id", "")
        key = f"portal-form:{form_id}" if FORM_ID.fullmatch(form_id) else None
        with db.write() as session:
            try:
                earlier = key and find_idempotent(
                    key, data, actor=portal_principal(db_session=session), db_session=session
                )
            except Invalid:  # the same form sent again with other content: a new form
                values["form_id"] = ""
                raise Conflict(
                    "这份表单已经提交过。如要反映新的问题，请确认内容后再次提交。"
                ) from None
            if earlier:
                return _page(request, "done", title="已提交", number=earlier.number,
                             replayed=True, sent={**values, "photos": len(photos)})  # fmt: skip
            ticket, code = submit(data, photos, db_session=session, photo_path=upload_path,
                                  idempotency_key=key)  # fmt: skip
            number = ticket.number
    except PortalUnavailable:
        raise
    except (StaleDataError, IntegrityError):
        return _submit_form(request, db, values, status_code=409,
                            error=Conflict("系统繁忙，请稍后重新提交"))  # fmt: skip
    except DomainError as exc:
        return _submit_form(request, db, values, status_code=exc.status, error=exc)
    finally:
        await form.close()
    return _page(
        request, "done", status_code=201, title="提交成功", number=number, code=code,
        sent={**values, "photos": len(photos), "type_name": dict(types).get(values["request_type"])},
    )  # fmt: skip


# ---- tracking --------------------------------------------------------------------------------


@router.get("/portal/track", response_class=HTMLResponse)
def track_page(request: Request) -> Response:
    return _page(request, "track", title="查询进度", number="")


def _track_error(request: Request, number: str, error: DomainError) -> HTMLResponse:
    return _page(request, "track", status_code=error.status, title="查询进度", number=number,
                 flash=_error(error))  # fmt: skip


def _progress(
    request: Request, db: Any, ticket_id: int, code: str, *, status_code: int = 200,
    flash: dict[str, str] | None = None, rating: dict[str, str] | None = None,
) -> HTMLResponse:  # fmt: skip
    with db.read() as session:
        ticket = session.scalar(
            select(Ticket).where(Ticket.id == ticket_id).options(selectinload(Ticket.events))
        )
        assert ticket is not None
        view: Progress = progress_of(ticket, db_session=session)
    return _page(
        request, "progress", status_code=status_code, title=f"工单 {view.number}", v=view,
        code=code, flash=flash, rating=rating or {}, SATISFACTION=SATISFACTION, note_max=NOTE_MAX,
    )  # fmt: skip


async def _lookup(request: Request, db: Any) -> tuple[dict[str, str], int | None, Response | None]:
    """Number and code from the form; the ticket's id, or the page that says why not."""
    form = await request.form()
    values = _texts(form, ("number", "code", "solved", "satisfaction", "note"))
    number, code = values["number"], normalise_code(values["code"])
    values["code"] = code
    if not number or not code:
        missing = Invalid("请填写工单编号和查询码", field="number")
        return values, None, _track_error(request, number[:32], missing)
    with db.write() as session:  # a failure is remembered even though the answer is an error
        ticket, error = find_tracked(number, code, ip=client_ip(request), db_session=session)
        ticket_id = ticket.id if ticket is not None else None
    if error is not None or ticket_id is None:
        assert error is not None
        page = _track_error(request, number[:32], error)
        if isinstance(error, TooManyRequests) and error.retry_after:
            page.headers["Retry-After"] = str(error.retry_after)
        return values, None, page
    return values, ticket_id, None


@router.post("/portal/track", response_class=HTMLResponse)
async def track(request: Request, db: DB) -> Response:
    await check_csrf(request)
    values, ticket_id, refused = await _lookup(request, db)
    if refused is not None:
        return refused
    assert ticket_id is not None
    return _progress(request, db, ticket_id, values["code"])


# ---- rating ------------------------------------------------------------------------------------


@router.post("/portal/rate", response_class=HTMLResponse)
async def rate(request: Request, db: DB) -> Response:
    await check_csrf(request)
    values, ticket_id, refused = await _lookup(request, db)
    if refused is not None:
        return refused
    assert ticket_id is not None
    try:
        fields = rating_fields(values)
        with db.write() as session:
            ticket = session.get(Ticket, ticket_id)
            assert ticket is not None
            why_not = rating_refusal(ticket)
            if why_not:
                raise Conflict(why_not)
            actor = citizen_principal(portal_principal(db_session=session))
            take_action(ticket_id, "rate", {**fields, "via": "portal"}, actor=actor,
                        db_session=session)  # fmt: skip
    except (StaleDataError, IntegrityError):
        error: DomainError = Conflict("工单刚刚有更新，请重新查询后再评价")
    except DomainError as exc:
        error = exc
    else:
        return _progress(request, db, ticket_id, values["code"],
                         flash={"kind": "ok", "text": "感谢您的评价！您的意见将帮助我们改进工作。"})  # fmt: skip
    return _progress(request, db, ticket_id, values["code"], status_code=error.status,
                     flash=_error(error), rating=values)  # fmt: skip
