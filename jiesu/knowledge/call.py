"""What the agent on the call sees of the knowledge base (issue 16, Deliver §3): the intake
panel's hits as the page draws them, and the ticket page's 答复依据 (the entry an order was
answered with). The routes are in `call_views.py`.

The search itself is `search.search`; this module only turns its hits into what the
page shows: the passage cut into plain and marked pieces (the template escapes each piece and
wraps the marked ones in `<mark>`, so nothing typed by anyone reaches the page unescaped), the
owner's name, the demo badge, the answer's whole text for "用此条目答复", and the validity when
it ends within 30 days.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.knowledge import search
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeVersion
from jiesu.org.models import Unit

# The query is the request's own words (title + content), cut: callers' key words come early,
# and a search over a whole long complaint would cost more without finding better.
QUERY_CHARS = 200
MIN_QUERY_CHARS = 2
PANEL_SIZE = 5
EXPIRY_WARNING_DAYS = 30
_SPACES = re.compile(r"\s+")


def query_of(title: str, content: str) -> str:
    """The panel's query from the form: the title (when typed and not the content's start)
    and the content, white space folded, at most QUERY_CHARS characters."""
    title, content = _SPACES.sub(" ", title).strip(), _SPACES.sub(" ", content).strip()
    text = content if not title or content.startswith(title) else f"{title} {content}"
    return text[:QUERY_CHARS].strip()


def pieces(passage: str, marks: tuple[tuple[int, int], ...]) -> list[tuple[str, bool]]:
    """The passage as (text, marked) pieces in order; marks clipped to the passage, overlapping
    or touching ones merged, empty ones dropped."""
    spans: list[list[int]] = []
    for start, end in sorted(
        (max(0, s), min(len(passage), e)) for s, e in marks if min(len(passage), e) > max(0, s)
    ):
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    out: list[tuple[str, bool]] = []
    at = 0
    for start, end in spans:
        if start > at:
            out.append((passage[at:start], False))
        out.append((passage[start:end], True))
        at = end
    if at < len(passage):
        out.append((passage[at:], False))
    return out


@dataclass(frozen=True)
class PanelHit:
    """One entry in the intake panel."""

    code: str
    title: str
    version: int
    owner: str
    pieces: list[tuple[str, bool]]
    answer: str  # the answering version's whole text ("用此条目答复" fills the answer with it)
    use_count: int
    demo: bool
    valid_to: date | None  # shown only when it ends within EXPIRY_WARNING_DAYS
    days_left: int | None


def panel(
    query: str, *, db_session: Session, today: date, limit: int = PANEL_SIZE
) -> list[PanelHit]:
    """The intake panel for what the agent has typed: the search's best entries, answering
    today, with what the page shows of each."""
    if len(query.strip()) < MIN_QUERY_CHARS:
        return []
    hits = search.search(query, db_session=db_session, today=today, limit=limit)
    if not hits:
        return []
    keys = {(h.entry_id, h.version) for h in hits}
    rows = db_session.execute(  # one round trip: the answer's text, the demo mark, the owner
        select(
            KnowledgeVersion.entry_id,
            KnowledgeVersion.number,
            KnowledgeVersion.answer,
            KnowledgeEntry.demo,
            Unit.name,
        )
        .join(KnowledgeEntry, KnowledgeEntry.id == KnowledgeVersion.entry_id)
        .join(Unit, Unit.id == KnowledgeEntry.owner_unit_id)
        .where(
            KnowledgeVersion.entry_id.in_({k[0] for k in keys}),
            KnowledgeVersion.number.in_({k[1] for k in keys}),
        )
    )
    found = {(e, n): (answer, bool(demo), owner) for e, n, answer, demo, owner in rows}
    out = []
    for h in hits:
        answer, demo, owner = found.get((h.entry_id, h.version), ("", False, ""))
        days_left = (h.valid_to - today).days if h.valid_to is not None else None
        soon = days_left is not None and days_left <= EXPIRY_WARNING_DAYS
        out.append(
            PanelHit(
                code=h.code,
                title=h.title,
                version=h.version,
                owner=owner,
                pieces=pieces(h.passage, h.marks),
                answer=answer,
                use_count=h.use_count,
                demo=demo,
                valid_to=h.valid_to if soon else None,
                days_left=days_left if soon else None,
            )
        )
    return out


@dataclass(frozen=True)
class AnswerBasis:
    """答复依据: the entry (and its version) an order was answered with."""

    code: str
    version: int
    title: str


def answer_basis(events: Any, *, db_session: Session) -> AnswerBasis | None:
    """The entry the latest 直接答复 in `events` (a ticket's timeline) was given with, or None
    (no answer, or an answer without an entry). The title is that version's own."""
    answer = next(
        (e for e in reversed(list(events)) if e.action == "answer" and (e.data or {}).get("entry")),
        None,
    )
    if answer is None:
        return None
    code, number = str(answer.data["entry"]), int(answer.data.get("entry_version") or 0)
    title = db_session.scalar(
        select(KnowledgeVersion.title)
        .join(KnowledgeEntry, KnowledgeEntry.id == KnowledgeVersion.entry_id)
        .where(KnowledgeEntry.code == code, KnowledgeVersion.number == number)
    )
    return AnswerBasis(code, number, title or "")
