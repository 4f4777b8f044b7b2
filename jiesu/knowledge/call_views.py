"""The knowledge base on the call: the intake form's search-as-you-type panel, "answer with this
entry", and reporting an entry wrong from the call.

- `POST /console/intake/knowledge` (htmx, as the agent types the title or the content): the
  panel 知识库 beside 智能建议 — the best entries answering today for the request's own words,
  each with the passage that matched (words marked), its owner, its use count, 演示内容 for demo
  entries, the end of its validity when near, and the buttons 用此条目答复 and 报错
  (`static/knowledge.js`; the answer's whole text travels in the fragment, so choosing an entry
  needs no second request). Nothing is stored.
- `POST /console/knowledge/{code}/flags`: 报错 — the entry is wrong, outdated or unclear; the
  flag goes to the entry's owner (`service.raise_flag`) and the panel shows a confirmation.

Answering with the entry is the `answer` action's `entry` field (the lifecycle table), taken by
the intake form itself: `tickets/actions.py` resolves the code, `tickets/flows.py` counts the use.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from jiesu.access.policy import Principal
from jiesu.db.base import utcnow
from jiesu.errors import DomainError, Invalid
from jiesu.knowledge import service
from jiesu.knowledge.call import panel, query_of
from jiesu.knowledge.models import FLAG_REASONS
from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.tickets.service import get_ticket
from jiesu.web.deps import DB, require_page
from jiesu.web.templating import render, zh

router = APIRouter(include_in_schema=False)

AgentPage = Annotated[Principal, Depends(require_page("workbench.intake"))]  # as 智能建议
Flagger = Annotated[Principal, Depends(require_page("knowledge.flag"))]
Code = Annotated[str, Path(max_length=32)]
NOTE_CHARS = 1000


def _text(form: Any, name: str, limit: int) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def city_today(now: datetime) -> Any:
    return now.astimezone(city_tz()).date()


@router.post("/console/intake/knowledge", response_class=HTMLResponse)
async def intake_knowledge(request: Request, actor: AgentPage, db: DB) -> Response:
    """htmx: the knowledge panel for the request typed so far (title + content)."""
    form = await request.form()
    query = query_of(_text(form, "title", 200), _text(form, "content", 2000))
    with db.read() as session:
        hits = panel(query, db_session=session, today=city_today(utcnow()))
    return render(request, "knowledge/_panel.html",
                  {"hits": hits, "query": query, "FLAG_REASONS": FLAG_REASONS})  # fmt: skip


@router.post("/console/knowledge/{code}/flags", response_class=HTMLResponse)
async def flag_entry(request: Request, code: Code, actor: Flagger, db: DB) -> Response:
    """报错 from the call: the reason and a note go to the entry's owner. htmx gets a small
    fragment (the confirmation, or why not, in the panel); a plain form post goes on to the
    entry's page."""
    form = await request.form()
    reason = _text(form, "reason", 20).strip()
    note = _text(form, "note", NOTE_CHARS + 1).strip()
    ticket_text = _text(form, "ticket_id", 20).strip()
    htmx = request.headers.get("hx-request") == "true"
    context: dict[str, Any] = {"code": code, "FLAG_REASONS": FLAG_REASONS}
    try:
        if reason not in FLAG_REASONS:
            raise Invalid("请选择报错原因 / choose a reason", field="reason")
        if len(note) > NOTE_CHARS:
            raise Invalid(f"说明不能超过 {NOTE_CHARS} 个字 / the note is too long", field="note")
        with db.write() as session:
            ticket_id = None
            if ticket_text:  # reported while on an order: the order must be one the agent sees
                if not ticket_text.isdigit():
                    raise Invalid("工单编号不正确 / not a ticket id", field="ticket_id")
                ticket_id = get_ticket(int(ticket_text), actor=actor, db_session=session).id
            entry = service.get_entry(code, actor=actor, db_session=session)
            service.raise_flag(entry.id, reason=reason, note=note or None, ticket_id=ticket_id,
                               actor=actor, db_session=session, now=utcnow())  # fmt: skip
            owner = session.get(Unit, entry.owner_unit_id)
            context.update(owner=owner.name if owner else "", reason_name=FLAG_REASONS[reason])
    except DomainError as exc:
        context["error"] = zh(exc.message)
        return render(request, "knowledge/_call_flag.html", context,
                      status_code=200 if htmx else exc.status)  # fmt: skip
    if not htmx:
        return RedirectResponse(f"/console/knowledge/{quote(code, safe='')}", status_code=303)
    return render(request, "knowledge/_call_flag.html", context)
