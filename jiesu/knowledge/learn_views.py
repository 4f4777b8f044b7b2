"""Suggested entries (the base learns): consultations the base could not answer, clustered, for
their departments, with the orders behind each.

`/console/knowledge/suggestions` (permission `knowledge.suggestions`): a department sees its own
suggestions (and its units'), the centre all. Each shows its size, counts, words, masked samples
and the orders behind it (those the user may see), with two decisions: 起草条目 (a draft
prefilled from the suggestion, then the entry's edit page) and 不需要 (dismissed, with a note).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from jiesu.access.policy import Principal
from jiesu.db.base import utcnow
from jiesu.errors import DomainError
from jiesu.knowledge import suggest
from jiesu.org.models import Unit
from jiesu.tickets.models import Ticket
from jiesu.web.deps import DB, ReadSession, require_page
from jiesu.web.params import BigId
from jiesu.web.templating import render, zh

router = APIRouter(prefix="/console/knowledge/suggestions", include_in_schema=False)
Page = Annotated[Principal, Depends(require_page("knowledge.suggestions"))]
STATUS_NAMES = {"open": "待处理", "drafted": "已起草", "dismissed": "不需要"}
DECIDERS = frozenset({"handler", "unit_admin", "supervisor", "admin"})


def _page(
    request: Request, actor: Principal, session: ReadSession, *, status: str,
    flash: dict[str, str] | None = None, status_code: int = 200,
) -> Response:  # fmt: skip
    from jiesu.console.views import frame
    from jiesu.tickets.service import visible

    rows = suggest.list_suggestions(actor=actor, db_session=session, status=status or None)
    ids = {t for s in rows for t in (s.ticket_ids or [])}
    seen: dict[int, str] = {}
    if ids:
        stmt = visible(select(Ticket.id, Ticket.number).where(Ticket.id.in_(ids)), actor)
        seen = dict(session.execute(stmt).all())
    owners = dict(
        session.execute(
            select(Unit.id, Unit.name).where(Unit.id.in_({s.owner_unit_id for s in rows}))
        ).all()
    )
    ctx = frame(
        request, actor, session, title="知识库 · 建议新增条目", rows=rows, seen=seen,
        owners=owners, status=status, STATUS_NAMES=STATUS_NAMES,
        can_decide=actor.role in DECIDERS,
    )  # fmt: skip
    if request.query_params.get("done") == "dismissed":
        ctx["flash"] = {"kind": "ok", "text": "已标记为不需要"}
    if flash:
        ctx["flash"] = flash
    return render(request, "knowledge/suggestions.html", ctx, status_code=status_code)


def _status(request: Request) -> str:
    status = request.query_params.get("status", "open")
    return status if status in STATUS_NAMES or status == "" else "open"


@router.get("", response_class=HTMLResponse)
def suggestions_page(request: Request, actor: Page, session: ReadSession) -> Response:
    return _page(request, actor, session, status=_status(request))


def _refused(request: Request, actor: Principal, db: DB, exc: DomainError) -> Response:
    with db.read() as session:
        return _page(request, actor, session, status="open", status_code=exc.status,
                     flash={"kind": "error", "text": zh(exc.message)})  # fmt: skip


@router.post("/{suggestion_id}/draft", response_class=HTMLResponse)
def suggestion_draft(suggestion_id: BigId, request: Request, actor: Page, db: DB) -> Response:
    try:
        with db.write() as session:
            entry = suggest.draft_entry(suggestion_id, actor=actor, db_session=session,
                                        now=utcnow())  # fmt: skip
            code = entry.code
    except DomainError as exc:
        return _refused(request, actor, db, exc)
    return RedirectResponse(f"/console/knowledge/{code}/edit", status_code=303)


@router.post("/{suggestion_id}/dismiss", response_class=HTMLResponse)
async def suggestion_dismiss(
    suggestion_id: BigId, request: Request, actor: Page, db: DB
) -> Response:
    form = await request.form()
    note = str(form.get("note", ""))[:500]
    try:
        with db.write() as session:
            suggest.dismiss(suggestion_id, actor=actor, db_session=session, now=utcnow(),
                            note=note)  # fmt: skip
    except DomainError as exc:
        return _refused(request, actor, db, exc)
    return RedirectResponse("/console/knowledge/suggestions?done=dismissed", status_code=303)
