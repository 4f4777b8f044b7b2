"""The staff console: sign-in, one workbench per role, ticket list and page, intake.

Server-rendered (Jinja2 + htmx), Chinese. Every page names its permission
(`access/permissions.py`); every write goes through the same services as the API, so a page
can do nothing the API would refuse, and answers with the same reasons.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from jiesu.access.permissions import HOME, allows
from jiesu.access.policy import Principal
from jiesu.auth.service import (
    attempts_left,
    audit,
    change_password,
    issue,
    revoke_token,
    sign_in,
    wrong_with_warning,
)
from jiesu.calls.service import caller_history, calls_of, latest_id, pending_for_agent
from jiesu.calls.service import link as link_call
from jiesu.console.lookup import display_name, options, resolve, resolve_fields
from jiesu.console.service import (
    CALLBACK_PAGES,
    PAGE_SIZE,
    FormValues,
    action_label,
    calendar_notices,
    categories,
    event_lines,
    forget_badges,
    form_to_fields,
    navigation,
    queues,
    small_int,
    suggest_lead,
    ticket_view,
)
from jiesu.db.base import utcnow
from jiesu.errors import (
    Conflict,
    DomainError,
    Invalid,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from jiesu.intel.service import advise, preview
from jiesu.org.models import Unit, User
from jiesu.settings import get_settings
from jiesu.taxonomy.service import city_clocks, load_catalogue, pack_settings
from jiesu.tickets.actions import take_action
from jiesu.tickets.lifecycle import BY_NAME, STATES
from jiesu.tickets.models import Assignment, Attachment, Channel, Ticket
from jiesu.tickets.service import (
    SORTS,
    TicketFilter,
    create_ticket,
    get_ticket,
    list_tickets,
    masked_requester,
    number_ticket,
    reveal_requester,
    ticket_deadlines,
    title_from,
    total_capped,
)
from jiesu.tickets.shapes import MAX_CONTENT, TicketCreate, normalise_phone
from jiesu.timelimits.deadlines import Deadline
from jiesu.web.deps import DB, SESSION_COOKIE, ReadSession, check_csrf, client_ip, require_page
from jiesu.web.params import BigId, form_day, form_page
from jiesu.web.templating import render, secure_cookies, zh
from jiesu.web.validation import message as validation_message

router = APIRouter(include_in_schema=False)


def page(permission: str) -> Any:
    return Annotated[Principal, Depends(require_page(permission))]


Reader = page("tickets.read")
Anyone = page("signed_in")
Dispatcher = page("workbench.dispatch")
UnitStaff = page("workbench.unit")
CallbackAgent = page("workbench.callback")
Supervisor = page("workbench.supervision")
ActorPage = page("tickets.act")
Revealer = page("tickets.reveal")
AgentPage = page("workbench.intake")


def frame(
    request: Request,
    actor: Principal,
    session: Any,
    *,
    title: str,
    nav_known: dict[str, int] | None = None,
    **context: Any,
) -> dict[str, Any]:
    """What every console page's layout needs: who is signed in, the navigation, a flash."""
    unit = session.get(Unit, actor.unit_id)
    done = request.query_params.get("done")
    flash = None
    if done in BY_NAME:
        flash = {"kind": "ok", "text": f"已完成：{BY_NAME[done].label}"}
    elif done in DONE_MESSAGES:
        flash = {"kind": "ok", "text": DONE_MESSAGES[done]}
    return {
        "title": title,
        "me": actor,
        "me_unit": unit.name if unit else "",
        "nav": navigation(actor, request.url.path, db_session=session, known=nav_known),
        "flash": flash,
        "notices": calendar_notices(actor, request.url.path, db_session=session),
        # An agent's every page listens for their calls (static/calls.js; after the newest now).
        "calls_after": latest_id(actor.user_id, db_session=session)
        if actor.role == "agent"
        else None,
        **context,
    }


DONE_MESSAGES = {
    "created": "已受理，工单已建立",
    "password": "密码已修改，其他登录已退出",
    "saved": "已保存",
}


# ---- sign-in ---------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site: never an open redirect."""
    # Browsers read a backslash as a slash: "/" + "\\evil.example" would leave the site.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request, next: Annotated[str | None, Query(max_length=300)] = None
) -> Response:
    return render(request, "console/login.html", {"title": "登录", "next": _safe_next(next)})


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, db: DB) -> Response:
    await check_csrf(request)
    form = FormValues(list((await request.form()).multi_items()))  # type: ignore[arg-type]
    username, password = form.first("username")[:60], form.first("password")[:200]
    target = _safe_next(form.first("next"))
    if not username or not password:
        return render(request, "console/login.html",
                      {"title": "登录", "error": "请输入用户名和密码", "next": target,
                       "username": username}, status_code=422)  # fmt: skip
    with db.write() as session:
        user, error = sign_in(username, password, ip=client_ip(request), db_session=session)
        if user is not None:
            ttl = timedelta(hours=get_settings().token_ttl_hours)
            value, _ = issue(user, db_session=session, ttl=ttl, kind="session")
            home = HOME.get(user.role, "/console/tickets")
        if isinstance(error, Unauthorized):  # the same countdown for any username typed
            left = attempts_left(username, client_ip(request), db_session=session)
            error = Unauthorized(wrong_with_warning(left))
    if error is not None:
        page = render(request, "console/login.html",
                      {"title": "登录", "error": zh(error.message), "next": target,
                       "username": username}, status_code=error.status)  # fmt: skip
        if isinstance(error, TooManyRequests) and error.retry_after:
            page.headers["Retry-After"] = str(error.retry_after)
        return page
    response = RedirectResponse(target or home, status_code=303)
    response.set_cookie(
        SESSION_COOKIE, value, httponly=True, samesite="lax", secure=secure_cookies(request),
        max_age=int(ttl.total_seconds()), path="/",
    )  # fmt: skip
    return response


@router.post("/logout")
async def logout(request: Request, db: DB) -> Response:
    await check_csrf(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with db.write() as session:
            revoke_token(cookie, db_session=session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/console")
def console_home(actor: Anyone) -> Response:
    return RedirectResponse(HOME.get(actor.role, "/console/tickets"), status_code=303)


@router.get("/console/account/password", response_class=HTMLResponse)
def password_page(request: Request, actor: Anyone, session: ReadSession) -> Response:
    return render(
        request, "console/password.html", frame(request, actor, session, title="修改密码")
    )


@router.post("/console/account/password", response_class=HTMLResponse)
async def password_change(request: Request, actor: Anyone, db: DB) -> Response:
    form = FormValues(list((await request.form()).multi_items()))  # type: ignore[arg-type]
    try:
        if form.first("new_password") != form.first("repeat"):
            raise Invalid("两次输入的新密码不一致", field="repeat")
        with db.write() as session:
            user = session.get(User, actor.user_id)
            assert user is not None
            change_password(user, form.first("old_password"), form.first("new_password"),
                            keep_token=request.cookies.get(SESSION_COOKIE), db_session=session,
                            ip=client_ip(request))  # fmt: skip
    except DomainError as exc:
        with db.read() as session:
            ctx = frame(request, actor, session, title="修改密码")
        ctx["flash"] = {"kind": "error", "text": zh(exc.message)}
        return render(request, "console/password.html", ctx, status_code=exc.status)
    return RedirectResponse("/console/account/password?done=password", status_code=303)


# ---- lists and workbenches ---------------------------------------------------------------


def row_deadline(deadlines: list[Deadline], unit_code: str | None = None) -> Deadline | None:
    """The deadline a list shows for a ticket: the soonest one still open (this unit's first)."""
    open_ = [d for d in deadlines if d.met_at is None and d.due is not None]
    mine = [d for d in open_ if unit_code and d.unit == unit_code]
    pool = mine or open_
    return min(pool, key=lambda d: d.due) if pool else None  # type: ignore[arg-type, return-value]


def rows_with_deadlines(
    tickets: list[Any], actor: Principal, session: Any, *, suggest: bool = False
) -> list[dict[str, Any]]:
    now = utcnow()
    unit = session.get(Unit, actor.unit_id)
    code = unit.code if unit else None
    if tickets:  # the timelines the deadlines come from, in two queries for the whole page
        session.scalars(
            select(Ticket)
            .where(Ticket.id.in_([t.id for t in tickets]))
            .options(
                selectinload(Ticket.assignments).selectinload(Assignment.unit),
                selectinload(Ticket.events),
            )
        ).all()
    catalogue = load_catalogue(db_session=session) if suggest and tickets else None
    settings = pack_settings(db_session=session)
    clocks = city_clocks(db_session=session)
    return [
        {
            "t": t,
            "dl": row_deadline(
                ticket_deadlines(t, db_session=session, now=now, settings=settings, clocks=clocks),
                code,
            ),
            "requester": masked_requester(t),
            "suggestion": suggest_lead(t, db_session=session, catalogue=catalogue)
            if catalogue
            else None,
        }
        for t in tickets
    ]


def _filters(request: Request) -> tuple[TicketFilter, int, dict[str, str]]:
    q = request.query_params
    args = {k: q.get(k, "") for k in ("status", "category", "text", "from", "to", "sort")}
    f = TicketFilter()
    if args["status"] in STATES:
        f.status = [args["status"]]
    f.category = args["category"][:20] or None
    f.text = args["text"][:100] or None
    for key, attr in (("from", "created_from"), ("to", "created_to")):
        setattr(f, attr, form_day(args[key], field=key))  # Invalid (422) when not a date in range
    if args["sort"] in SORTS:
        f.sort = args["sort"]
    return f, form_page(q.get("page")), args


def _merge(base: TicketFilter, extra: TicketFilter) -> TicketFilter:
    """A queue's own filter with the user's filter bar on top."""
    merged = TicketFilter(**base.__dict__)
    for name in ("category", "text", "created_from", "created_to"):
        if getattr(extra, name):
            setattr(merged, name, getattr(extra, name))
    if extra.status and (not base.status or extra.status[0] in base.status):
        merged.status = extra.status
    if extra.sort != "-created":
        merged.sort = extra.sort
    return merged


def _list_page(
    request: Request,
    actor: Principal,
    session: Any,
    *,
    title: str,
    base: TicketFilter,
    tabs: list[dict[str, Any]] | None = None,
    suggest: bool = False,
    counts_for: str | None = None,
) -> Response:
    """One list page. `counts_for` names the workbench whose navigation badge this list is
    (its first tab): unfiltered, the page's own total is the badge."""
    user_filter, page_no, args = _filters(request)
    f = _merge(base, user_filter)
    tickets, total = list_tickets(f, actor=actor, db_session=session, page=page_no,
                                  page_size=PAGE_SIZE)  # fmt: skip
    nav_known = {counts_for: total} if counts_for and f == base else None
    pages = max(1, -(-total // PAGE_SIZE))
    keep = {k: v for k, v in args.items() if v}
    if "tab" in request.query_params:
        keep["tab"] = request.query_params["tab"]
    return render(
        request,
        "console/list.html",
        frame(
            request, actor, session, title=title, nav_known=nav_known, tabs=tabs,
            rows=rows_with_deadlines(
                tickets, actor, session, suggest=suggest), total=total, suggest=suggest,
            total_capped=total_capped(total),
            page=page_no, pages=pages, args=args,
            query=lambda **more: "?" + "&".join(
                f"{k}={quote(str(v))}" for k, v in {**keep, **more}.items() if v),
            categories=categories(db_session=session), sort=f.sort,
        ),
    )  # fmt: skip


@router.get("/console/tickets", response_class=HTMLResponse)
def ticket_list(request: Request, actor: Reader, session: ReadSession) -> Response:
    return _list_page(request, actor, session, title="工单查询", base=TicketFilter())


def _workbench(
    workbench: str, title: str, request: Request, actor: Principal, session: Any
) -> Response:
    qs = queues(workbench)
    tab = request.query_params.get("tab") or qs[0].key
    current = next((q for q in qs if q.key == tab), qs[0])
    tabs = [{"href": f"?tab={q.key}", "label": q.label, "active": q is current} for q in qs]
    if workbench == "callbacks":  # 短信回访's own pages (jiesu/callbacks/views.py)
        tabs += [{"href": href, "label": label, "active": False} for href, label in CALLBACK_PAGES]
    return _list_page(request, actor, session, title=title, base=current.filter, tabs=tabs,
                      suggest=workbench == "dispatch" and current.key == "pending",
                      counts_for=workbench if current is qs[0] else None)  # fmt: skip


@router.get("/console/dispatch", response_class=HTMLResponse)
def dispatch_bench(request: Request, actor: Dispatcher, session: ReadSession) -> Response:
    return _workbench("dispatch", "派单审核", request, actor, session)


@router.get("/console/inbox", response_class=HTMLResponse)
def unit_inbox(request: Request, actor: UnitStaff, session: ReadSession) -> Response:
    return _workbench("inbox", "承办工单", request, actor, session)


@router.get("/console/callbacks", response_class=HTMLResponse)
def callback_bench(request: Request, actor: CallbackAgent, session: ReadSession) -> Response:
    return _workbench("callbacks", "回访评价", request, actor, session)


@router.get("/console/supervision", response_class=HTMLResponse)
def supervision_bench(request: Request, actor: Supervisor, session: ReadSession) -> Response:
    return _workbench("supervision", "督查督办", request, actor, session)


# ---- the ticket page ---------------------------------------------------------------------


def _ticket_page(
    request: Request, actor: Principal, session: Any, ticket_id: int, *,
    error: DomainError | None = None, form_action: str | None = None,
    kept: dict[str, list[str]] | None = None,
) -> Response:  # fmt: skip
    from jiesu.analysis.service import links

    view = ticket_view(ticket_id, actor=actor, db_session=session)
    linked, tasks = links(ticket_id, reader=actor, db_session=session)
    ctx = frame(request, actor, session, title=f"工单 {view.ticket.number}", v=view,
                t=view.ticket, requester=masked_requester(view.ticket), linked=linked,
                tasks=tasks, may_link=allows("warnings.handle", actor.role),
                calls=calls_of(ticket_id, db_session=session),
                call_recordings=actor.is_service_centre,
                open_action=form_action, action_label=action_label, kept=kept or {},
                event_lines=lambda e: event_lines(e, view.unit_names))  # fmt: skip
    if error is not None:
        ctx["flash"] = {"kind": "error", "text": zh(error.message)}
    return render(request, "console/ticket.html", ctx, status_code=error.status if error else 200)


@router.get("/console/tickets/{ticket_id}", response_class=HTMLResponse)
def ticket_page(
    ticket_id: BigId, request: Request, actor: Reader, session: ReadSession
) -> Response:
    return _ticket_page(request, actor, session, ticket_id)


@router.post("/console/tickets/{ticket_id}/actions/{action}", response_class=HTMLResponse)
async def ticket_action(
    ticket_id: BigId, action: str, request: Request, actor: ActorPage, db: DB
) -> Response:
    form = FormValues(list((await request.form()).multi_items()))  # type: ignore[arg-type]
    known = BY_NAME.get(action)
    version = form.first("version")
    try:
        if known is None:
            raise NotFound("没有这个操作 / unknown action")
        data = form_to_fields(known, form)
        with db.write() as session:
            data = resolve_fields(known, data, db_session=session)
            take_action(ticket_id, action, data, actor=actor, db_session=session,
                        expected_version=small_int(version))  # fmt: skip
        forget_badges(actor)
    except (StaleDataError, IntegrityError):
        error: DomainError = Conflict("工单刚被他人更新，请刷新后重试")
    except DomainError as exc:
        error = exc
    else:
        return RedirectResponse(f"/console/tickets/{ticket_id}?done={action}", status_code=303)
    with db.read() as session:
        return _ticket_page(request, actor, session, ticket_id, error=error, form_action=action,
                            kept={k: form.get(k, []) for k in form})  # fmt: skip


@router.post("/console/tickets/{ticket_id}/reveal", response_class=HTMLResponse)
def ticket_reveal(ticket_id: BigId, request: Request, actor: Revealer, db: DB) -> Response:
    """An htmx fragment: the requester's whole name and phone (logged)."""
    try:
        with db.write() as session:
            shown = reveal_requester(ticket_id, actor=actor, db_session=session,
                                     ip=client_ip(request))  # fmt: skip
    except DomainError as exc:
        return render(request, "console/_reveal.html", {"error": zh(exc.message)},
                      status_code=exc.status)  # fmt: skip
    return render(request, "console/_reveal.html", {"shown": shown})


@router.get("/console/attachments/{attachment_id}")
def attachment(attachment_id: BigId, actor: Reader, session: ReadSession) -> Response:
    row = session.get(Attachment, attachment_id)
    if row is None:
        raise NotFound("附件不存在 / no such attachment")
    try:  # a photo of a ticket you may not see answers exactly like one that does not exist
        get_ticket(row.ticket_id, actor=actor, db_session=session)
    except NotFound:
        raise NotFound("附件不存在 / no such attachment") from None
    path = upload_path(row.sha256)
    if not path.exists():
        raise NotFound("附件文件缺失 / the attachment's file is missing")
    return FileResponse(path, media_type=row.content_type,
                        headers={"Cache-Control": "private, max-age=3600",
                                 "X-Content-Type-Options": "nosniff"})  # fmt: skip


def upload_path(sha256: str) -> Path:
    return get_settings().var_dir / "uploads" / sha256[:2] / sha256


# ---- intake (受理) --------------------------------------------------------------------------

INTAKE_NEXT = ("keep", "answer", "dispatch", "transfer", "reject")


def _intake_context(
    request: Request, actor: Principal, session: Any, **more: Any
) -> dict[str, Any]:
    form = more.pop("form", {})
    picked = {  # what the pickers show: the name for a code, else the text as typed
        "category_code": display_name(form.get("category_code"), "categories", db_session=session),
        "street": display_name(form.get("street"), "streets", db_session=session),
    }
    history = more.pop("history", None)
    phone = history or ""
    rows = caller_history(history, actor=actor, db_session=session) if history else []
    return frame(
        request, actor, session, title="受理登记", form=form, picked=picked,
        ACTIONS_BY_NAME=BY_NAME, phone=phone, rows=rows, valid=True, MAX_CONTENT=MAX_CONTENT,
        calls_after=latest_id(actor.user_id, db_session=session), **more,
    )  # fmt: skip


@router.get("/console/intake", response_class=HTMLResponse)
def intake_page(
    request: Request,
    actor: AgentPage,
    session: ReadSession,
    call: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """`?call=` opens the form for a call routed to this agent (the pop's address, so a reload
    or a browser without JavaScript keeps it): the caller's number and the call id prefilled."""
    popped = pending_for_agent(call, actor.user_id, db_session=session) if call else None
    if popped is None:
        return render(request, "console/intake.html", _intake_context(request, actor, session))
    form = {"phone": popped.caller, "channel": "phone", "call_id": popped.call_id}
    ctx = _intake_context(request, actor, session, form=form, history=popped.caller)
    ctx["call"] = popped
    return render(request, "console/intake.html", ctx)


@router.post("/console/intake/suggest", response_class=HTMLResponse)
async def intake_suggest(request: Request, actor: AgentPage, db: DB) -> Response:
    """htmx: smart-dispatch suggestions for the form as the agent types (nothing is stored)."""
    form = FormValues(list((await request.form()).multi_items()))  # type: ignore[arg-type]
    content = form.first("content")[:MAX_CONTENT]
    advice = None
    if len(content.strip()) >= 4:
        phone = form.first("phone")
        try:
            phone = normalise_phone(phone) if phone.strip() else ""
        except ValueError:
            phone = ""
        with db.read() as session:
            advice = preview(
                title=form.first("title")[:200] or title_from(content), content=content,
                address=form.first("address")[:300], street=form.first("street").split(" ")[0],
                category=form.first("category_code")[:20], phone=phone, actor=actor,
                db_session=session,
            )  # fmt: skip
    return render(request, "console/_suggest.html", {"ad": advice})


@router.get("/console/intake/history", response_class=HTMLResponse)
def intake_history(
    request: Request,
    actor: AgentPage,
    session: ReadSession,
    phone: Annotated[str, Query(max_length=30)] = "",
) -> Response:
    """htmx: the caller's earlier tickets (open first), as the agent types the number or a
    call pops (static/calls.js)."""
    try:
        number = normalise_phone(phone) if phone.strip() else None
    except ValueError:
        number = None
    rows = caller_history(number, actor=actor, db_session=session) if number else []
    return render(request, "console/_history.html",
                  {"rows": rows, "phone": phone, "valid": number is not None})  # fmt: skip


@router.post("/console/intake", response_class=HTMLResponse)
async def intake(request: Request, actor: AgentPage, db: DB) -> Response:
    form = FormValues(list((await request.form()).multi_items()))  # type: ignore[arg-type]
    values = {k: form.first(k) for k in form}
    then = form.first("then") or "keep"
    try:
        if then not in INTAKE_NEXT:
            raise Invalid("未知的处理方式", field="then")
        if len(form.first("content")) > MAX_CONTENT:
            raise Invalid(f"诉求内容不能超过 {MAX_CONTENT} 字", field="content")
        with db.read() as session:
            category, street = (
                resolve(form.first(name), options(kind, db_session=session), kind=kind,
                        field=name, label=label) if form.first(name) else None
                for name, kind, label in (("category_code", "categories", "事项分类"),
                                          ("street", "streets", "所属街道（乡镇）"))
            )  # fmt: skip
        try:
            data = TicketCreate.model_validate({
                "channel": form.first("channel") or "phone",
                "content": form.first("content"),
                "title": form.first("title") or None,
                "request_type": form.first("request_type") or None,
                "category_code": category,
                "address": form.first("address") or None,
                "street": street,
                "requester": {
                    "name": form.first("name") or None,
                    "phone": form.first("phone") or None,
                    "confidential": form.first("confidential") == "on",
                },
                "call_id": form.first("call_id") or None,
            })  # fmt: skip
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise Invalid(validation_message(first), field=where) from exc
        if data.channel == Channel.phone and not data.requester.phone:
            raise Invalid("热线电话受理须填写来电号码", field="requester.phone")
        with db.write() as session:
            ticket = create_ticket(data, actor=actor, db_session=session, number_later=True)
            if data.call_id:  # the order keeps the call it was taken from
                link_call(data.call_id, ticket, actor=actor, db_session=session)
            # The agent's own choice of what happens next wins over automatic dispatch.
            advise(ticket, actor=actor, db_session=session, automatic=then == "keep")
            number_ticket(ticket, db_session=session)  # before its next step names it
            if then != "keep":
                fields = form_to_fields(BY_NAME[then], FormValues(
                    [(k.removeprefix(f"{then}."), v) for k, v in form.items_list()
                     if k.startswith(f"{then}.")]))  # fmt: skip
                fields = resolve_fields(BY_NAME[then], fields, db_session=session)
                take_action(ticket.id, then, fields, actor=actor, db_session=session)
            ticket_id = ticket.id
        forget_badges(actor)
    except DomainError as exc:
        with db.read() as session:
            ctx = _intake_context(request, actor, session, form=values, then=then)
        ctx["flash"] = {"kind": "error", "text": zh(exc.message)}
        return render(request, "console/intake.html", ctx, status_code=exc.status)
    return RedirectResponse(f"/console/tickets/{ticket_id}?done=created", status_code=303)


def login_redirect(request: Request) -> RedirectResponse:
    if request.method != "GET":  # a form's address cannot be reopened after signing in
        return RedirectResponse("/login", status_code=303)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


__all__ = ["audit", "login_redirect", "router"]
