"""The knowledge base's figures (issue 16 §6): the direct-answer rate and what the base did for it.

Shown on the assessment page (the centre's part), the dashboard (a tile) and the monthly report
(知识库与直接答复). Over the orders **received** in the period (city days `start`–`end`, both
included), as the assessment's `direct_answer` rate counts them:

- `received`: every order received; `consultations`: those of request type `consult`;
- `answered`: orders answered directly on the call (an `answer` event), of which
  `consultations_answered` consultations; 直接答复率 = answered / received (the assessment's
  definition), and the consultations' own rate = consultations_answered / consultations;
- `with_entry`: orders answered with a knowledge-base entry (a `kb_use` row), and their share of
  the direct answers; `top_entries`: the entries used most for those orders (top 10);
- the base on `end`: entries answering (`published`), those whose last day falls within the
  next 30 days (`expiring`), `expired`, open flags; and the open suggestions (top 10 by size):
  the themes callers ask about that the base does not answer.

With `unit_id`, the base's part (entries, uses, flags, suggestions) is the entries owned by that
unit or a unit under it; the orders' counts stay the centre's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jiesu.knowledge.models import KnowledgeEntry, KnowledgeSuggestion, KnowledgeUse
from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.tickets.models import Event, Ticket

TOP = 10
EXPIRING_DAYS = 30


@dataclass(frozen=True)
class EntryUse:
    entry_id: int
    code: str
    title: str
    uses: int


@dataclass(frozen=True)
class Theme:
    suggestion_id: int
    title: str
    size: int
    terms: tuple[str, ...]
    owner: str | None  # the department's name


@dataclass(frozen=True)
class KnowledgeFigures:
    start: date
    end: date
    received: int = 0
    consultations: int = 0
    answered: int = 0
    consultations_answered: int = 0
    with_entry: int = 0
    top_entries: tuple[EntryUse, ...] = ()
    published: int = 0
    expiring: int = 0
    expired: int = 0
    open_flags: int = 0
    open_suggestions: int = 0
    themes: tuple[Theme, ...] = field(default=())

    @staticmethod
    def _share(numerator: int, denominator: int) -> float | None:
        return numerator / denominator if denominator else None

    @property
    def direct_answer_rate(self) -> float | None:
        """直接答复率: answered directly / received (None without orders)."""
        return self._share(self.answered, self.received)

    @property
    def consultation_answer_rate(self) -> float | None:
        return self._share(self.consultations_answered, self.consultations)

    @property
    def entry_share(self) -> float | None:
        """Of the direct answers, the share given with an entry."""
        return self._share(self.with_entry, self.answered)


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    tz = city_tz()
    lo = datetime.combine(start, time(), tz).astimezone(UTC)
    hi = datetime.combine(end + timedelta(days=1), time(), tz).astimezone(UTC)
    return lo, hi


def figures(
    start: date, end: date, *, db_session: Session, unit_id: int | None = None
) -> KnowledgeFigures:
    lo, hi = _bounds(start, end)
    in_period = (Ticket.created_at >= lo, Ticket.created_at < hi)
    consult = Ticket.request_type == "consult"
    received, consultations = db_session.execute(
        select(func.count(), func.count().filter(consult)).select_from(Ticket).where(*in_period)
    ).one()
    # `Event.at >= lo` changes no answer (an order is answered after it is received) but lets
    # the (action, at) index find the period's answers: without it PostgreSQL read every
    # 'answer' event of every year (4.1–5.9 s at 2 M orders, 1.0–1.6 s with it; issue 17 §3).
    answered_ids = (
        select(Event.ticket_id)
        .join(Ticket, Ticket.id == Event.ticket_id)
        .where(Event.action == "answer", Event.at >= lo, *in_period)
    )
    answered, consultations_answered = db_session.execute(
        select(func.count(), func.count().filter(consult))
        .select_from(Ticket)
        .where(Ticket.id.in_(answered_ids))
    ).one()

    owned = None
    if unit_id is not None:
        path = db_session.scalar(select(Unit.path).where(Unit.id == unit_id)) or "/-/"
        owned = select(Unit.id).where(Unit.path.startswith(path))
    uses = (
        select(KnowledgeUse.entry_id, func.count().label("uses"))
        .join(Ticket, Ticket.id == KnowledgeUse.ticket_id)
        .where(*in_period, Ticket.id.in_(answered_ids))
        .group_by(KnowledgeUse.entry_id)
    )
    if owned is not None:
        uses = uses.join(KnowledgeEntry, KnowledgeEntry.id == KnowledgeUse.entry_id).where(
            KnowledgeEntry.owner_unit_id.in_(owned)
        )
    counts = dict(db_session.execute(uses).all())
    top_ids = sorted(counts, key=lambda e: (-counts[e], e))[:TOP]
    entries = {
        e.id: e
        for e in db_session.scalars(select(KnowledgeEntry).where(KnowledgeEntry.id.in_(top_ids)))
    }
    top = tuple(
        EntryUse(e, entries[e].code, entries[e].title, counts[e]) for e in top_ids if e in entries
    )

    base = select(KnowledgeEntry.status, KnowledgeEntry.valid_to, KnowledgeEntry.open_flags)
    if owned is not None:
        base = base.where(KnowledgeEntry.owner_unit_id.in_(owned))
    published = expiring = expired = flags = 0
    horizon = end + timedelta(days=EXPIRING_DAYS)
    for status, valid_to, open_flags in db_session.execute(base):
        flags += open_flags or 0
        if status == "published":
            published += 1
            if valid_to is not None and end <= valid_to <= horizon:
                expiring += 1
        elif status == "expired":
            expired += 1

    suggestions = select(KnowledgeSuggestion).where(KnowledgeSuggestion.status == "open")
    if owned is not None:
        suggestions = suggestions.where(KnowledgeSuggestion.owner_unit_id.in_(owned))
    open_rows = list(
        db_session.scalars(
            suggestions.order_by(KnowledgeSuggestion.size.desc(), KnowledgeSuggestion.id)
        )
    )
    names = dict(
        db_session.execute(
            select(Unit.id, Unit.name).where(
                Unit.id.in_({s.owner_unit_id for s in open_rows[:TOP] if s.owner_unit_id})
            )
        ).all()
    )
    themes = tuple(
        Theme(s.id, s.title, s.size, tuple(s.terms or ()), names.get(s.owner_unit_id or -1))
        for s in open_rows[:TOP]
    )
    return KnowledgeFigures(
        start=start,
        end=end,
        received=int(received),
        consultations=int(consultations),
        answered=int(answered),
        consultations_answered=int(consultations_answered),
        with_entry=sum(counts.values()),
        top_entries=top,
        published=published,
        expiring=expiring,
        expired=expired,
        open_flags=flags,
        open_suggestions=len(open_rows),
        themes=themes,
    )
