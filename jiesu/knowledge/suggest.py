"""The base learns (issue 16 §4): consultations it could not answer become suggested entries.

`refresh_suggestions` reads the consultations (request type `consult`) received in the last
`days` days (city time) that were **answered without an entry** (an `answer` event whose data
names no `entry`) or **had to be dispatched**, leaves out those an answering entry already
matches well (the search's top hit at or above `ANSWERED_SCORE`), clusters the rest by their
text (`learn.cluster`) and writes one `kb_suggestion` per theme of `learn.MIN_SIZE` or more: the
owning department, the representative question, the theme's words, a few masked samples, the
orders behind it and its counts.

A re-run updates instead of duplicating: a theme found again keeps its row (same `key`, or most
of the same orders), and with it its decision — a dismissed suggestion stays dismissed, a drafted
one keeps its entry. Open suggestions no longer found are removed (their consultations are now
answered, or too few). `draft_entry` and `dismiss` are the page's two decisions.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from jiesu.access.policy import Principal
from jiesu.db.engine import Database
from jiesu.errors import Conflict, Forbidden, Invalid, NotFound
from jiesu.knowledge import learn
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeSuggestion
from jiesu.org.models import Unit
from jiesu.settings import city_tz
from jiesu.taxonomy.models import Category
from jiesu.tickets.models import Event, Ticket

log = logging.getLogger("jiesu.knowledge.suggest")

DAYS = 30
# The search's top-hit score from which an entry is taken to answer a consultation already
# (those are not suggested again). The search's own scale (search.py); measured on the demo
# history, see docs/knowledge.md "The base learns".
ANSWERED_SCORE = 0.6
SAMPLES = 5
# Who may own an entry: a department, or a company acting as one (the heating company), never a
# district, street, community or grid.
OWNER_KINDS = frozenset({"department", "company"})
SAME_THEME = 0.5  # a new cluster holding half an old suggestion's orders is that suggestion


def period(today: date, days: int) -> tuple[date, date, datetime, datetime]:
    """The last `days` city days ending `today`, and their bounds in UTC."""
    start = today - timedelta(days=days - 1)
    tz = city_tz()
    lo = datetime.combine(start, time(), tz).astimezone(UTC)
    hi = datetime.combine(today + timedelta(days=1), time(), tz).astimezone(UTC)
    return start, today, lo, hi


class _Item:
    __slots__ = ("category", "dispatched", "lead_unit_id", "name", "text", "ticket", "title")

    def __init__(self, ticket: Ticket, category: str | None, dispatched: bool) -> None:
        self.ticket = ticket.id
        self.title = ticket.title
        self.name = ticket.requester_name or ""
        text = f"{ticket.title} {ticket.content}"
        # the caller's name says nothing of the theme (and must not draw two calls together)
        self.text = text.replace(self.name, "") if len(self.name) >= 2 else text
        self.category = category
        self.dispatched = dispatched
        self.lead_unit_id = ticket.lead_unit_id


def unanswered(*, db_session: Session, lo: datetime, hi: datetime) -> list[tuple[Ticket, bool]]:
    """Consultations received in [lo, hi) answered without an entry (False) or dispatched
    (True), oldest first; merged duplicates left out."""
    tickets = list(
        db_session.scalars(
            select(Ticket)
            .where(
                Ticket.request_type == "consult",
                Ticket.created_at >= lo,
                Ticket.created_at < hi,
                Ticket.master_id.is_(None),
            )
            .order_by(Ticket.created_at, Ticket.id)
        )
    )
    if not tickets:
        return []
    ids = [t.id for t in tickets]
    answered: dict[int, bool] = {}  # ticket → answered with an entry
    dispatched: set[int] = set()
    for chunk in _chunks(ids, 900):
        rows = db_session.execute(
            select(Event.ticket_id, Event.action, Event.data).where(
                Event.ticket_id.in_(chunk), Event.action.in_(("answer", "dispatch"))
            )
        )
        for ticket_id, action, data in rows:
            if action == "dispatch":
                dispatched.add(ticket_id)
            else:
                with_entry = bool((data or {}).get("entry"))
                answered[ticket_id] = answered.get(ticket_id, False) or with_entry
    out: list[tuple[Ticket, bool]] = []
    for t in tickets:
        if t.id in dispatched:
            out.append((t, True))
        elif t.id in answered and not answered[t.id]:
            out.append((t, False))
    return out


def _chunks(values: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def answered_by_base(
    texts: Sequence[str], *, db_session: Session, today: date, score: float = ANSWERED_SCORE
) -> set[int]:
    """Indices of the texts an answering entry already matches well (top hit ≥ `score`)."""
    from jiesu.knowledge import search

    if (
        db_session.scalar(
            select(KnowledgeEntry.id).where(KnowledgeEntry.status == "published").limit(1)
        )
        is None
    ):
        return set()
    found: set[int] = set()
    for i, text in enumerate(texts):
        hits = search.search(text[:200], db_session=db_session, today=today, limit=1)
        if hits and hits[0].score >= score:
            found.add(i)
    return found


def _owner(category: str | None, items: Sequence[_Item], *, db_session: Session) -> int | None:
    """The department that should write the entry: the dispatch catalogue's unit for the
    category (a named unit, or the city's department of the rule's function); otherwise the
    department that led most of the dispatched orders; None when neither is a department."""
    from jiesu.taxonomy.service import load_catalogue

    code: str | None = None
    if category:
        catalogue = load_catalogue(db_session=db_session)
        rule = catalogue.rule_for(category, None)
        if rule is not None and rule.route == "unit" and rule.unit:
            code = rule.unit
        elif rule is not None and rule.route == "district_function" and rule.function:
            city = next((u.code for u in catalogue.units.values() if u.kind == "city"), None)
            code = catalogue.by_function.get((city, rule.function))
    if code is not None:
        unit = db_session.scalar(select(Unit).where(Unit.code == code))
        if unit is not None and unit.kind in OWNER_KINDS:
            return unit.id
    leads = [i.lead_unit_id for i in items if i.dispatched and i.lead_unit_id]
    if not leads:
        return None
    kinds = dict(
        db_session.execute(select(Unit.id, Unit.kind).where(Unit.id.in_(set(leads)))).all()
    )
    departments = Counter(u for u in leads if kinds.get(u) in OWNER_KINDS)
    return departments.most_common(1)[0][0] if departments else None


def refresh_suggestions(
    *,
    db_session: Session,
    today: date,
    days: int = DAYS,
    now: datetime | None = None,
    answered: Callable[..., set[int]] | None = None,
) -> int:
    """Recompute the suggestions from the last `days` days; returns the open ones written."""
    if days < 1:
        raise Invalid("天数须为正整数", field="days")
    now = now or datetime.combine(today, time(12), city_tz()).astimezone(UTC)
    start, end, lo, hi = period(today, days)
    rows = unanswered(db_session=db_session, lo=lo, hi=hi)[-learn.MAX_TEXTS :]
    categories = dict(db_session.execute(select(Category.id, Category.code)).all())
    items = [_Item(t, categories.get(t.category_id or -1), d) for t, d in rows]
    known = (answered or answered_by_base)(
        [i.text for i in items], db_session=db_session, today=today
    )
    items = [item for k, item in enumerate(items) if k not in known]
    clusters = learn.cluster([i.text for i in items])

    existing = list(db_session.scalars(select(KnowledgeSuggestion)))
    by_key = {s.key: s for s in existing}
    kept: set[int] = set()
    written = 0
    owner_codes = dict(db_session.execute(select(Unit.id, Unit.code)).all())
    for found in clusters:
        members = [items[m] for m in found.members]
        ticket_ids = sorted(i.ticket for i in members)
        category = Counter(i.category for i in members if i.category).most_common(1)
        category_code = category[0][0] if category else None
        owner_id = _owner(category_code, members, db_session=db_session)
        key = learn.key_for(
            category_code, owner_codes.get(owner_id or -1), found.terms, members[0].text
        )
        row = by_key.get(key)
        if row is None or row.id in kept:
            row = _same_theme(existing, ticket_ids, kept)
        if row is None:
            if key in by_key:  # a second theme with the same words: keyed by its first order
                key = learn.key_for(None, None, (), f"{key}:{ticket_ids[0]}")
            row = KnowledgeSuggestion(key=key, status="open")
            db_session.add(row)
            by_key[key] = row
        names = [i.name for i in members]
        row.owner_unit_id = owner_id
        row.category_code = category_code
        row.title = learn.mask(members[0].title, names, limit=200)
        row.terms = list(found.terms)
        row.samples = [learn.mask(i.text, names) for i in members[:SAMPLES]]
        row.ticket_ids = ticket_ids
        row.size = len(members)
        row.answered_without = sum(1 for i in members if not i.dispatched)
        row.dispatched = sum(1 for i in members if i.dispatched)
        row.period_start, row.period_end = start, end
        row.computed_at = now
        row.extra = {
            **(row.extra or {}),  # a decision's note stays
            "questions": [learn.mask(i.title, names, limit=100) for i in members[:SAMPLES]],
            "cohesion": found.cohesion,
        }
        db_session.flush()
        kept.add(row.id)
        written += row.status == "open"
    for old in existing:
        if old.id not in kept and old.status == "open":
            db_session.delete(old)
    db_session.flush()
    return written


def _same_theme(
    existing: Sequence[KnowledgeSuggestion], ticket_ids: Sequence[int], kept: set[int]
) -> KnowledgeSuggestion | None:
    best, best_overlap = None, SAME_THEME
    for s in existing:
        if s.id in kept:
            continue
        o = learn.overlap(s.ticket_ids or [], ticket_ids)
        if o >= best_overlap:
            best, best_overlap = s, o
    return best


FRESH_FOR = timedelta(hours=20)  # a refresh this recent (demo init's, a restart's) stands


def run_suggestions(db: Database, *, now: datetime | None = None) -> int:
    """The worker's daily step: refresh over the last 30 days, in one transaction; the open
    suggestions' count. A worker (re)starting after a refresh of the same day (`jiesu demo
    init` makes one) does not do it again."""
    now = now or datetime.now(UTC)
    with db.write() as session:
        last = session.scalar(select(func.max(KnowledgeSuggestion.computed_at)))
        if last is not None and now - last < FRESH_FOR:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(KnowledgeSuggestion)
                    .where(KnowledgeSuggestion.status == "open")
                )
                or 0
            )
        return refresh_suggestions(
            db_session=session, today=now.astimezone(city_tz()).date(), now=now
        )


# ---- who sees what, and the page's two decisions ----------------------------------------------


def visible(actor: Principal, *, db_session: Session) -> Select[KnowledgeSuggestion]:
    """The statement of the suggestions `actor` may see: the centre (and analysts, admins) all,
    a department its own and its units' (by unit path)."""
    stmt = select(KnowledgeSuggestion)
    if actor.is_service_centre or actor.role in ("supervisor", "analyst", "admin"):
        return stmt
    under = select(Unit.id).where(Unit.path.startswith(actor.unit_path))
    return stmt.where(KnowledgeSuggestion.owner_unit_id.in_(under))


def list_suggestions(
    *, actor: Principal, db_session: Session, status: str | None = "open", limit: int = 100
) -> list[KnowledgeSuggestion]:
    stmt = visible(actor, db_session=db_session)
    if status:
        stmt = stmt.where(KnowledgeSuggestion.status == status)
    stmt = stmt.order_by(KnowledgeSuggestion.size.desc(), KnowledgeSuggestion.id).limit(limit)
    return list(db_session.scalars(stmt))


def get_suggestion(
    suggestion_id: int, *, actor: Principal, db_session: Session
) -> KnowledgeSuggestion:
    stmt = visible(actor, db_session=db_session).where(KnowledgeSuggestion.id == suggestion_id)
    row = db_session.scalar(stmt)
    if row is None:
        raise NotFound("没有这条建议")
    return row


def draft_entry(
    suggestion_id: int, *, actor: Principal, db_session: Session, now: datetime
) -> KnowledgeEntry:
    """起草条目: a draft prefilled from the suggestion (title, the samples' questions, owner),
    through the workflow's `create_entry`; the suggestion is marked drafted with the entry."""
    from jiesu.knowledge import service

    row = get_suggestion(suggestion_id, actor=actor, db_session=db_session)
    if row.status != "open":
        raise Conflict("这条建议已处理")
    if actor.role not in ("handler", "unit_admin", "supervisor", "admin"):
        raise Forbidden("无权起草知识库条目")
    owner = row.owner_unit_id or actor.unit_id
    questions = list(dict.fromkeys((row.extra or {}).get("questions") or [row.title]))
    content = service.EntryContent(
        title=row.title[:200],
        answer="（待起草）请按政策写出答复口径。来电常见问法：" + "；".join(questions[:3]),
        category_code=row.category_code,
        owner_unit_id=owner,
        keywords=list(row.terms or []),
        questions=questions,
        valid_from=None,
        valid_to=None,
        source=None,
        link=None,
        change_note=f"由建议新增条目 #{row.id} 起草（{row.size} 件咨询）",
    )
    entry = service.create_entry(content, actor=actor, db_session=db_session, now=now)
    row.status = "drafted"
    row.entry_id = entry.id
    row.decided_by_id = actor.user_id
    row.decided_at = now
    db_session.flush()
    return entry


def dismiss(
    suggestion_id: int, *, actor: Principal, db_session: Session, now: datetime,
    note: str | None = None,
) -> KnowledgeSuggestion:  # fmt: skip
    """不需要: the suggestion is dismissed (a re-run keeps it dismissed), with the reason."""
    row = get_suggestion(suggestion_id, actor=actor, db_session=db_session)
    if row.status != "open":
        raise Conflict("这条建议已处理")
    if actor.role not in ("handler", "unit_admin", "supervisor", "admin"):
        raise Forbidden("无权处理建议")
    row.status = "dismissed"
    row.decided_by_id = actor.user_id
    row.decided_at = now
    row.extra = {**(row.extra or {}), "note": (note or "").strip()[:500]}
    db_session.flush()
    return row
