"""The call centre's endpoints: the telephony's API and the agent's event stream.

The telephony signs in with a system token scoped to channel `phone` (issued by the admin for
a service-centre account with the agent role; see docs/call_centre.md); the permission table
names `calls.telephony`. The agent's open intake page listens on `GET /console/calls/events`
(Server-Sent Events): the stream reads the `call` table for new rows addressed to the signed-in
agent about once a second, so any app process can serve it (`jiesu serve --workers N` runs
several; an in-process broker would miss the calls another process took in).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy.exc import IntegrityError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from jiesu.access.policy import Principal, mask_phone
from jiesu.calls.service import (
    attach_recording,
    call_out,
    caller_history,
    end,
    history_rows,
    new_for_agent,
    register,
)
from jiesu.calls.shapes import CallIn, CallOut, EndIn, RecordingIn
from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.errors import Forbidden
from jiesu.settings import city_tz
from jiesu.tickets.lifecycle import STATES
from jiesu.tickets.shapes import CALL_ID_PATTERN
from jiesu.web.deps import DB, require, require_page

router = APIRouter(prefix="/api/v1/calls", tags=["calls"])
console_router = APIRouter(include_in_schema=False)

Telephony = Annotated[Principal, Depends(require("calls.telephony"))]
Agent = Annotated[Principal, Depends(require_page("workbench.intake"))]
CallPath = Annotated[
    str,
    Path(min_length=1, max_length=64, pattern=CALL_ID_PATTERN, description="话务系统的通话编号"),
]

# How often an open stream looks for new calls, and how long one connection lasts at most
# before the browser reconnects by itself (EventSource; the `retry` below).
POLL_SECONDS = 1.0
STREAM_SECONDS = 300
RETRY_MS = 1000


def _telephony_only(principal: Principal) -> None:
    if principal.channel != "phone":
        raise Forbidden(
            "来电接口须使用限定「电话」渠道的系统令牌 / the call API takes a system token "
            "scoped to channel phone"
        )


@router.post("", status_code=201, response_model=CallOut, summary="来电事件（话务系统推送）")
def incoming(body: CallIn, db: DB, principal: Telephony, response: Response) -> CallOut:
    """The telephony reports an incoming call routed to an agent (by username). The same
    `call_id` again is answered with the stored call (200, `Idempotent-Replayed: true`)."""
    _telephony_only(principal)
    for attempt in range(2):
        try:
            with db.write() as session:
                call, new = register(body, db_session=session, now=utcnow())
                out = call_out(call, principal, db_session=session)
            break
        except IntegrityError:  # a concurrent push of the same call id won the race: replay it
            if attempt:
                raise
    if not new:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/api/v1/calls/{out.call_id}"
    return out


@router.post("/{call_id}/recording", response_model=CallOut, summary="登记来电录音地址")
def recording(call_id: CallPath, body: RecordingIn, db: DB, principal: Telephony) -> CallOut:
    """Also after the order exists: the ticket page shows it under 来电记录."""
    _telephony_only(principal)
    with db.write() as session:
        call = attach_recording(call_id, body.url, db_session=session)
        return call_out(call, principal, db_session=session)


@router.post("/{call_id}/end", response_model=CallOut, summary="来电结束（可选）")
def hang_up(call_id: CallPath, db: DB, principal: Telephony, body: EndIn | None = None) -> CallOut:
    _telephony_only(principal)
    with db.write() as session:
        ended = body.ended_at if body is not None and body.ended_at else utcnow()
        call = end(call_id, ended, db_session=session)
        return call_out(call, principal, db_session=session)


# ---- the pop: the agent's own stream -------------------------------------------------------


def call_event(db: Database, agent: Principal, after: int) -> list[dict[str, Any]]:
    """The new calls for `agent` after id `after`, each with the caller's earlier orders
    (open first), as the intake page's script reads them."""
    with db.read() as session:
        calls = new_for_agent(agent.user_id, after, db_session=session, now=utcnow())
        events = []
        for call in calls:
            rows = history_rows(caller_history(call.caller, actor=agent, db_session=session))
            events.append(
                {
                    "id": call.id,
                    "call_id": call.call_id,
                    # An agent is the service centre's: the whole number (masked for anyone else).
                    "caller": call.caller if agent.is_service_centre else mask_phone(call.caller),
                    "called": call.called,
                    "started_at": call.started_at.astimezone(city_tz()).isoformat(),
                    "history": [
                        {
                            "id": r.id,
                            "number": r.number,
                            "title": r.title,
                            "status": r.status,
                            "status_name": STATES.get(r.status, r.status),
                            "open": r.open,
                            "created": r.created_at.astimezone(city_tz()).strftime(
                                "%Y-%m-%d %H:%M"
                            ),
                        }
                        for r in rows
                    ],
                }
            )
        return events


async def _stream(
    db: Database, agent: Principal, after: int, seconds: float
) -> AsyncIterator[ServerSentEvent]:
    ends = time.monotonic() + seconds
    # First: how soon the browser comes back once this connection ends (a short stream by
    # design, or a proxy's cut).
    yield ServerSentEvent(comment="jiesu calls", retry=RETRY_MS)
    while True:  # a client that goes away cancels this (sse-starlette watches the disconnect)
        for event in await run_in_threadpool(call_event, db, agent, after):
            after = int(event["id"])
            yield ServerSentEvent(data=json.dumps(event, ensure_ascii=False), event="call",
                                  id=str(after))  # fmt: skip
        if time.monotonic() >= ends:
            return
        await asyncio.sleep(POLL_SECONDS)


@console_router.get("/console/calls/events")
def call_events(
    request: Request,
    db: DB,
    agent: Agent,
    after: Annotated[int, Query(ge=0, le=2**62, description="只推送此编号之后的来电")] = 0,
    wait: Annotated[
        int, Query(ge=0, le=STREAM_SECONDS, description="本次连接最长秒数，之后浏览器自动重连")
    ] = STREAM_SECONDS,
) -> EventSourceResponse:
    """The signed-in agent's own calls, as Server-Sent Events (`event: call`, `id:` the
    call's row id). The browser's automatic reconnect sends `Last-Event-ID`: nothing is popped
    twice, nothing missed between two connections. `wait=0` answers what is pending and ends."""
    last = request.headers.get("last-event-id", "")
    if last.isdigit():
        after = max(after, int(last))
    return EventSourceResponse(
        _stream(db, agent, after, float(wait)),
        ping=15,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


__all__ = ["call_event", "console_router", "router"]
