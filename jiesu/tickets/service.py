"""Intake and reading of tickets. Services take `db_session=` and never commit."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    Select,
    event,
    func,
    literal_column,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.orm import Session, aliased, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from jiesu.access.policy import Principal, mask_name, mask_phone
from jiesu.assessment import service as assessment
from jiesu.auth.service import audit
from jiesu.citypack.parse import Duration
from jiesu.db.base import utcnow
from jiesu.errors import Forbidden, Invalid, NotFound
from jiesu.org.models import Unit, User
from jiesu.settings import city_tz
from jiesu.taxonomy.models import Category, RequestType
from jiesu.taxonomy.service import city_clocks, pack_settings
from jiesu.tickets.flows import after_receive
from jiesu.tickets.lifecycle import ASSESSED
from jiesu.tickets.models import (
    STATUS_NAMES,
    TEXT_BIGRAMS,
    Assignment,
    Event,
    IdempotencyKey,
    Outbox,
    Status,
    Ticket,
)
from jiesu.tickets.numbering import is_placeholder, next_number, placeholder
from jiesu.tickets.shapes import (
    AssignmentOut,
    DeadlineOut,
    EventOut,
    Ref,
    RequesterOut,
    TicketCreate,
    TicketOut,
)
from jiesu.tickets.tracking import code_hash, new_tracking_code
from jiesu.timelimits.clocks import Clocks
from jiesu.timelimits.deadlines import PHASE_NAMES, Deadline, Step, deadlines, report_deadlines
from jiesu.timelimits.tiers import choose_tier, phase_limits

TITLE_FROM_CONTENT = 30  # characters of the content that make a missing title


def request_hash(data: TicketCreate) -> str:
    return hashlib.sha256(
        orjson.dumps(data.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


def find_idempotent(
    key: str, data: TicketCreate, *, actor: Principal, db_session: Session
) -> Ticket | None:
    """The ticket an earlier create with this key made, or None. Same key, other body: 422."""
    row = db_session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.user_id == actor.user_id, IdempotencyKey.key == key
        )
    )
    if row is None:
        return None
    if row.request_hash != request_hash(data):
        raise Invalid(
            "同一 Idempotency-Key 已用于另一请求 / Idempotency-Key was used with a different request",
            field="Idempotency-Key",
        )
    return db_session.get(Ticket, row.ticket_id)


def create_ticket(
    data: TicketCreate,
    *,
    actor: Principal,
    db_session: Session,
    idempotency_key: str | None = None,
    now: datetime | None = None,
    proactive_task: bool = False,
    tracking_code: str | None = None,
    number_later: bool = False,
) -> Ticket:
    """Receive (受理) one request: validate references, store it with its first event, apply
    intake's effects (`flows.after_receive`: the 受理回执, the rollups), number it.
    `number_later`: the caller has more to do in the transaction (the suggestions) and calls
    `number_ticket` itself just before commit, so that the day's counter row is locked for as
    short a time as possible (see `number_ticket`); until then the ticket carries a placeholder.
    `proactive_task`: a proactive task made from a warning (`analysis.service.create_task`),
    which an analyst may open too (SPEC §1: warnings, proactive tasks).
    `tracking_code`: the citizen's code (the portal's, which it shows); otherwise one is issued
    when the requester gave a phone. Only its SHA-256 is stored; the 受理回执 carries it."""
    if not (actor.can_intake() or (proactive_task and actor.role == "analyst")):
        raise Forbidden("当前角色不能受理诉求 / this role cannot take requests in")
    now = now or utcnow()
    category = None
    if data.category_code:
        category = db_session.scalar(
            select(Category).where(Category.code == data.category_code, Category.active)
        )
        if category is None:
            raise Invalid(
                f"未知的事项分类 {data.category_code} / unknown category", field="category_code"
            )
    if data.request_type:
        rt = db_session.get(RequestType, data.request_type)
        if rt is None or not rt.active:
            raise Invalid(
                f"诉求类型无效，请从列表中选择 / unknown request type {data.request_type}",
                field="request_type",
            )
    street = None
    if data.street:
        street = db_session.scalar(
            select(Unit).where(Unit.code == data.street, Unit.kind == "street", Unit.active)
        )
        if street is None:
            raise Invalid(f"未知的街道（乡镇）{data.street} / unknown street", field="street")
    code = tracking_code or (new_tracking_code() if data.requester.phone else None)
    ticket = Ticket(
        number=placeholder(),
        channel=data.channel.value,
        request_type=data.request_type,
        category_id=category.id if category else None,
        title=data.title or title_from(data.content),
        content=data.content,
        requester_name=data.requester.name,
        requester_phone=data.requester.phone,
        requester_confidential=data.requester.confidential,
        tracking_hash=code_hash(code) if code else None,
        address=data.address,
        lat=data.lat,
        lng=data.lng,
        street_id=street.id if street else None,
        district_id=street.parent_id if street else None,
        status=Status.received.value,
        tier=tier_for(category, data.request_type, db_session=db_session),
        urgent=False,
        created_by_id=actor.user_id,
        created_at=now,
        updated_at=now,
    )
    db_session.add(ticket)
    db_session.flush()
    window = _window(data, db_session=db_session)
    received = Event(
        ticket_id=ticket.id,
        seq=1,
        action="receive",
        at=now,
        actor_id=actor.user_id,
        actor_unit_id=actor.unit_id,
        state_before=None,
        state_after=ticket.status,
        data={"channel": ticket.channel, **window},
    )
    db_session.add(received)
    if idempotency_key:
        db_session.add(
            IdempotencyKey(
                user_id=actor.user_id,
                key=idempotency_key,
                request_hash=request_hash(data),
                ticket_id=ticket.id,
                created_at=now,
            )
        )
    assessment.defer_rollups(db_session)
    db_session.flush()
    after_receive(ticket, received, db_session=db_session, now=now, tracking_code=code)
    if number_later:
        _unnumbered(db_session)[ticket.id] = ticket
    else:
        number_ticket(ticket, db_session=db_session)
    return ticket


_UNNUMBERED = "jiesu_unnumbered"
# `number_ticket` on PostgreSQL: bump the day's counter (`numbering.next_number`), number the
# ticket (`numbering.format_number`: five digits, six after 99,999) and rewrite its notices'
# placeholder, in one statement.
_NUMBER_IT = text(
    """
    WITH c AS (
        INSERT INTO ticket_counter (day, last) VALUES (:day, 1)
        ON CONFLICT (day) DO UPDATE SET last = ticket_counter.last + 1
        RETURNING last
    ), t AS (
        UPDATE ticket
        SET number = :day || CASE WHEN c.last < 100000 THEN lpad(c.last::text, 5, '0')
                                  ELSE c.last::text END
        FROM c WHERE ticket.id = :id
        RETURNING ticket.number
    ), o AS (
        UPDATE outbox SET payload = replace(outbox.payload::text, :stand_in, t.number)::jsonb
        FROM t WHERE outbox.ticket_id = :id
    )
    SELECT number FROM t
    """
)


def _unnumbered(db_session: Session) -> dict[int, Ticket]:
    """The tickets of this transaction still under a placeholder. A commit numbers any a caller
    left (a safety net: the caller's answer would then show the placeholder, a bug, but no
    placeholder is ever stored); a rollback forgets them."""
    pending: dict[int, Ticket] | None = db_session.info.get(_UNNUMBERED)
    if pending is None:
        pending = db_session.info[_UNNUMBERED] = {}
        event.listen(db_session, "before_commit", _number_the_rest)
        event.listen(db_session, "after_rollback", lambda s: s.info.get(_UNNUMBERED, {}).clear())
    return pending


def _number_the_rest(db_session: Session) -> None:
    for ticket in list(db_session.info.get(_UNNUMBERED, {}).values()):
        number_ticket(ticket, db_session=db_session)


def number_ticket(ticket: Ticket, *, db_session: Session) -> str:
    """Give a new ticket its number: the last writes of its transaction, before commit.

    The day's counter row (`numbering.next_number`) is what keeps numbers unique and gap-free: a
    rolled-back create gives its number back. Its lock lasts until commit, so it is taken here,
    after everything else: the suggestions, the notices, the rollups (written just before, in
    key order, `assessment.apply_rollups`). Until now the ticket was stored under a placeholder
    (unique, invisible to others: uncommitted); the notices written meanwhile (受理回执, an
    automatic dispatch's) carry it, and are rewritten here in one statement. Measured with 16
    concurrent creates (`bench/intake_profile.py --mode concurrent`): 13.2 of 16 sessions
    waited on the counter when it was taken first; now it is held for one statement.
    Concurrent creates with one Idempotency-Key: the second waits on the key's unique index
    (before any counter), fails and answers with the first's ticket (`views.create`)."""
    number = ticket.number
    if not is_placeholder(number):
        return number
    day = ticket.created_at.astimezone(city_tz()).date()
    stand_in = ticket.number
    db_session.flush()  # the notices written so far are rows the rewrite below reaches
    assessment.apply_rollups(db_session=db_session)
    if db_session.get_bind().dialect.name == "postgresql":
        # One round trip from the counter's lock to the commit, not three.
        number = db_session.execute(
            _NUMBER_IT, {"day": f"{day:%Y%m%d}", "id": ticket.id, "stand_in": stand_in}
        ).scalar_one()
    else:  # SQLite: one writer at a time anyway
        number = next_number(day, db_session=db_session)
        db_session.execute(
            update(Ticket).where(Ticket.id == ticket.id).values(number=number),
            execution_options={"synchronize_session": False},
        )
        payload = Outbox.__table__.c.payload  # JSON as text (a CAST to JSON makes a number)
        db_session.execute(
            update(Outbox.__table__)
            .where(Outbox.__table__.c.ticket_id == ticket.id)
            .values(payload=func.replace(payload, stand_in, number))
        )
    set_committed_value(ticket, "number", number)
    for obj in db_session.identity_map.values():
        if isinstance(obj, Outbox) and obj.ticket_id == ticket.id:
            set_committed_value(
                obj, "payload", orjson.loads(orjson.dumps(obj.payload).replace(
                    stand_in.encode(), number.encode()))
            )  # fmt: skip
    db_session.info.get(_UNNUMBERED, {}).pop(ticket.id, None)
    return number


def title_from(content: str) -> str:
    """A missing title: the content's first sentence, or its start with an ellipsis."""
    head = content.strip().splitlines()[0] if content.strip() else content
    for i, ch in enumerate(head[: TITLE_FROM_CONTENT + 1]):
        if ch in "。！？!?；;" and i >= 4:
            return head[:i]
    return head if len(head) <= TITLE_FROM_CONTENT else head[: TITLE_FROM_CONTENT - 1] + "…"


def _window(data: TicketCreate, *, db_session: Session) -> dict[str, Any]:
    """A window request's cause and the earlier orders it links to (all must exist)."""
    if data.window is None:
        return {}
    found = dict(
        db_session.execute(
            select(Ticket.number, Ticket.id).where(Ticket.number.in_(data.window.earlier))
        ).all()
    )
    missing = [n for n in data.window.earlier if n not in found]
    if missing:
        raise Invalid(
            f"此前工单不存在：{', '.join(missing)} / unknown earlier ticket(s)",
            field="window.earlier",
        )
    return {
        "window_cause": data.window.cause,
        "earlier": [{"number": n, "id": found[n]} for n in data.window.earlier],
    }


def tier_for(
    category: Category | None, request_type: str | None, *, db_session: Session
) -> str | None:
    settings = pack_settings(db_session=db_session)
    if not settings.get("tiers"):
        return category.effective_tier if category else None
    return choose_tier(
        settings.get("tier_rules") or [],
        category_code=category.code if category else None,
        request_type=request_type,
        urgent=False,
        category_tier=category.effective_tier if category else None,
        default_tier=settings["default_tier"],
    )


def ticket_deadlines(
    ticket: Ticket,
    *,
    db_session: Session,
    now: datetime,
    extra_units: dict[int, str] | None = None,
    settings: dict[str, Any] | None = None,
    clocks: Clocks | None = None,
) -> list[Deadline]:
    """The current round's deadlines, derived from the timeline (see timelimits/deadlines.py).
    A list computing many passes the city's `settings` and `clocks` once for all rows."""
    settings = settings if settings is not None else pack_settings(db_session=db_session)
    tier = ticket.tier or settings.get("default_tier")
    if not tier or tier not in settings.get("tiers", {}):
        return []
    codes = {a.unit_id: a.unit.code for a in ticket.assignments} | (extra_units or {})
    steps = [Step(e.action, e.at, codes.get(e.actor_unit_id or -1), e.data) for e in ticket.events]
    lead = next((a.unit.code for a in ticket.assignments if a.active and a.role == "lead"), None)
    limits = phase_limits(settings["tiers"], tier)
    clocks = clocks or city_clocks(db_session=db_session)
    current = deadlines(steps, limits, lead, clocks, now)
    report_limit = Duration.parse(settings.get("whistle_report_limit", "30m"))
    return current + report_deadlines(steps, report_limit, clocks, now)


# ---- reading -------------------------------------------------------------------------------


def visible(stmt: Select[Any], actor: Principal) -> Select[Any]:
    """Restrict a ticket query to what the actor's unit may see (SPEC §1)."""
    if actor.is_service_centre:
        return stmt
    units_below = select(Unit.id).where(Unit.path.startswith(actor.unit_path))
    mine = select(Assignment.ticket_id).where(Assignment.unit_id.in_(units_below))
    return stmt.where(Ticket.id.in_(mine))


def get_ticket(ticket_id: int, *, actor: Principal, db_session: Session) -> Ticket:
    stmt = visible(select(Ticket).where(Ticket.id == ticket_id), actor).options(
        selectinload(Ticket.assignments).selectinload(Assignment.unit),
        selectinload(Ticket.events).selectinload(Event.actor),
        selectinload(Ticket.events).selectinload(Event.actor_unit),
    )
    ticket = db_session.scalar(stmt)
    if ticket is None:
        # The same answer whether it does not exist or is not yours: ids cannot be probed.
        raise NotFound(f"工单 {ticket_id} 不存在 / ticket not found")
    return ticket


@dataclass
class TicketFilter:
    status: list[str] | None = None
    unit: str | None = None  # a unit code: tickets it (or a unit below it) has a part in
    category: str | None = None  # a category code: it and everything below it
    text: str | None = None
    created_from: date | None = None  # city-local dates, inclusive
    created_to: date | None = None
    phone: str | None = None
    # Queues of the console.
    mine: bool = False  # the actor's own unit has an active part (lead, co-handler, summoned)
    summoned: bool = False  # … as a summoned unit that has not reported yet
    waiting: str | None = None  # "return" | "extension" | "exemption": a request awaits review
    overdue: bool = False  # open and past its completion deadline
    due_within: timedelta | None = None  # open, not overdue, due within this
    supervised: bool = False  # under supervision (督办件)
    sort: str = "-created"  # -created | created | due | -updated


SORTS = ("-created", "created", "due", "-updated")
IN_UNIT_STATES = ("dispatched", "accepted")


def _waiting(kind: str) -> Any:
    """Tickets whose latest request of `kind` has not been answered (see actions.PENDING)."""
    opens, closes = {
        "return": ("request_return", ("review_return", "dispatch", "escalate")),
        "extension": ("request_extension", ("review_extension",)),
        "exemption": ("request_exemption", ("review_exemption",)),
    }[kind]
    later = aliased(Event)
    asked = aliased(Event)
    answered = (
        select(later.id)
        .where(later.ticket_id == asked.ticket_id, later.seq > asked.seq, later.action.in_(closes))
        .exists()
    )
    return Ticket.id.in_(select(asked.ticket_id).where(asked.action == opens, ~answered))


def _local_midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=city_tz())


def filtered(
    f: TicketFilter, *, actor: Principal, db_session: Session, now: datetime | None = None
) -> tuple[Select[Any], bool]:
    """The tickets of `f` the actor may see, unordered and unpaged (the list pages them, an
    export streams them all), and whether a text search is served by the GIN index."""
    stmt = visible(select(Ticket), actor)
    if f.status:
        unknown = [s for s in f.status if s not in STATUS_NAMES]
        if unknown:
            raise Invalid(f"未知的状态 {', '.join(unknown)} / unknown status", field="status")
        stmt = stmt.where(Ticket.status.in_(f.status))
    if f.unit:
        unit = db_session.scalar(select(Unit).where(Unit.code == f.unit))
        if unit is None:
            raise Invalid(f"未知的单位 {f.unit} / unknown unit", field="unit")
        below = select(Unit.id).where(Unit.path.startswith(unit.path))
        stmt = stmt.where(
            Ticket.id.in_(select(Assignment.ticket_id).where(Assignment.unit_id.in_(below)))
        )
    if f.category:
        stmt = stmt.where(
            Ticket.category_id.in_(
                select(Category.id).where(Category.code.startswith(f.category, autoescape=True))
            )
        )
    indexed_text = False
    if f.text:
        number = Ticket.number == f.text
        stmt = stmt.where(
            or_(
                number,
                Ticket.title.icontains(f.text, autoescape=True),
                Ticket.content.icontains(f.text, autoescape=True),
            )
        )
        bind = db_session.get_bind()
        if bind.dialect.name == "postgresql" and len(_SEARCHABLE.sub("", f.text)) >= 2:
            # A second, separate condition: the rows whose bigrams include all of the phrase's,
            # which the GIN index (migration 0009) finds; the exact match above is then checked
            # on those rows only. Inside one OR with it, PostgreSQL re-computed every candidate's
            # bigrams as a filter (1.2 s for 5,000 rows).
            bigrams = literal_column(TEXT_BIGRAMS).op("@>")(func.jiesu_bigrams(f.text))
            stmt = stmt.where(or_(number, bigrams))
            indexed_text = True
    if f.created_from:
        stmt = stmt.where(Ticket.created_at >= _local_midnight_utc(f.created_from))
    if f.created_to:
        stmt = stmt.where(Ticket.created_at < _local_midnight_utc(f.created_to + timedelta(days=1)))
    if f.phone:
        stmt = stmt.where(Ticket.requester_phone == f.phone)
    if f.mine or f.summoned:
        part = select(Assignment.ticket_id).where(
            Assignment.unit_id == actor.unit_id, Assignment.active
        )
        if f.summoned:
            part = part.where(Assignment.role == "summoned", Assignment.replied_at.is_(None))
        stmt = stmt.where(Ticket.id.in_(part))
    if f.waiting:  # an exemption may be asked for until the order is closed (and after)
        states = ASSESSED if f.waiting == "exemption" else IN_UNIT_STATES
        stmt = stmt.where(Ticket.status.in_(states), _waiting(f.waiting))
    now = now or utcnow()
    # Overdue and due-soon concern the work still in a unit's hands (a reply stops the clock).
    if f.overdue:
        stmt = stmt.where(Ticket.status.in_(IN_UNIT_STATES), Ticket.due_at < now)
    if f.due_within is not None:
        stmt = stmt.where(
            Ticket.status.in_(IN_UNIT_STATES),
            Ticket.due_at >= now,
            Ticket.due_at < now + f.due_within,
        )
    if f.supervised:
        stmt = stmt.where(Ticket.id.in_(select(Event.ticket_id).where(Event.action == "supervise")))
    return stmt, indexed_text


def ticket_order(sort: str) -> tuple[Any, ...]:
    """The ORDER BY of a list's sort (`SORTS`), or an `Invalid`."""
    if sort not in SORTS:
        raise Invalid(f"未知的排序 {sort} / unknown sort", field="sort")
    return {
        "-created": (Ticket.created_at.desc(), Ticket.id.desc()),
        "created": (Ticket.created_at, Ticket.id),
        "due": (Ticket.due_at.is_(None), Ticket.due_at, Ticket.id),
        "-updated": (Ticket.updated_at.desc(), Ticket.id.desc()),
    }[sort]


def list_tickets(
    f: TicketFilter, *, actor: Principal, db_session: Session, page: int = 1, page_size: int = 20
) -> tuple[list[Ticket], int]:
    """One page of the list and its total, counted up to `COUNT_LIMIT` (a larger list answers
    `COUNT_LIMIT`: `total_capped` says so). Counting every match costs a read of the whole
    history — 105 ms for the centre's list and 23 s for a common word at 3 M orders, growing with
    every year kept (docs/benchmarks.md "Volume") — for a figure nobody pages through."""
    stmt, indexed_text = filtered(f, actor=actor, db_session=db_session)
    total = db_session.scalar(
        select(func.count()).select_from(stmt.order_by(None).limit(COUNT_LIMIT).subquery())
    )
    order = ticket_order(f.sort)
    total = total or 0
    if total <= SMALL_LIST and not total_capped(total) and (indexed_text or not f.text):
        query = stmt.where(Ticket.id.in_(_page_of_few(stmt, f.sort, page, page_size)))
    elif f.status and f.sort in ("created", "-created"):
        query = stmt.where(Ticket.id.in_(_page_by_status(stmt, f, page, page_size)))
    else:
        query = stmt.limit(page_size).offset((page - 1) * page_size)
    rows = db_session.scalars(
        query.order_by(*order).options(
            selectinload(Ticket.category),
            selectinload(Ticket.district),
            selectinload(Ticket.street),
            selectinload(Ticket.lead_unit),
        )
    ).all()
    return list(rows), total


# A list this short is sorted whole rather than read in index order (see `_page_of_few`).
SMALL_LIST = 20_000
# Lists are counted up to this many rows: a total that reaches it is a floor ("20,000+"), and
# such a list is paged in index order (the paging choice below needs no more than this).
COUNT_LIMIT = SMALL_LIST


def total_capped(total: int) -> bool:
    """Whether a list's total is the counting limit, not its size (there may be more)."""
    return total >= COUNT_LIMIT


# What `jiesu_bigrams` drops before cutting a text into bigrams (migration 0009): a phrase with
# fewer than two characters left has no bigram and is searched by reading rows.
_SEARCHABLE = re.compile(r"[\s\W_]+")


def _page_of_few(stmt: Select[Any], sort: str, page: int, page_size: int) -> Select[Any]:
    """The ids of one page of a list known (from its count) to hold at most `SMALL_LIST` rows,
    by sorting all of them.

    Given `ORDER BY created_at LIMIT 20`, a database walks the `created_at` index and tests each
    row against the filter, expecting matches to be spread evenly. When they are few, or all at
    the far end, it reads the whole table first: a department with no orders, or a street's
    list, read 977,000 rows through the assignments (600 ms on PostgreSQL with a million
    tickets). The count already says how many match; when they are few, the sort key is wrapped
    so that no index can supply the order (`coalesce(x, x)` is `x`), and the database finds the
    matches by their own indexes and sorts them. Not for a text search the bigram index cannot
    serve (SQLite, or a single character): its matches can only be found by reading rows, and
    reading them in order stops at the end of the page.
    """

    def opaque(column: Any) -> Any:
        return func.coalesce(column, column)

    key = {
        "-created": (opaque(Ticket.created_at).desc(), Ticket.id.desc()),
        "created": (opaque(Ticket.created_at), Ticket.id),
        "due": (Ticket.due_at.is_(None), opaque(Ticket.due_at), Ticket.id),
        "-updated": (opaque(Ticket.updated_at).desc(), Ticket.id.desc()),
    }[sort]
    return (
        stmt.with_only_columns(Ticket.id)
        .order_by(*key)
        .limit(page_size)
        .offset((page - 1) * page_size)
    )


def _page_by_status(stmt: Select[Any], f: TicketFilter, page: int, page_size: int) -> Select[Any]:
    """The ids of one page of a status-filtered list in creation order, one index range per
    status.

    With `status IN (…) ORDER BY created_at` the database cannot read `(status, created_at)` in
    order for several statuses at once, so it walks `created_at` from one end and filters: the
    dispatch queue (the oldest received and pending orders, which are among the newest rows)
    read 965,000 rows to find 20 with a million tickets (250 ms on PostgreSQL). Each status's
    first `page × page_size` rows in order, merged, give the same page from a few index ranges.
    """
    window = page * page_size
    ascending = f.sort == "created"
    key = (
        (Ticket.created_at, Ticket.id)
        if ascending
        else (Ticket.created_at.desc(), Ticket.id.desc())
    )
    parts = []
    for status in sorted(set(f.status or ())):
        part = (
            stmt.where(Ticket.status == status)
            .with_only_columns(Ticket.id, Ticket.created_at)
            .order_by(*key)
            .limit(window)
            .subquery()
        )
        parts.append(select(part.c.id, part.c.created_at))
    merged = union_all(*parts).subquery()
    by = (
        (merged.c.created_at, merged.c.id)
        if ascending
        else (merged.c.created_at.desc(), merged.c.id.desc())
    )
    return select(merged.c.id).order_by(*by).limit(page_size).offset((page - 1) * page_size)


# ---- output --------------------------------------------------------------------------------


def _local(t: datetime | None) -> datetime | None:
    return t.astimezone(city_tz()) if t else None


def _ref(obj: Unit | Category | None) -> Ref | None:
    if obj is None:
        return None
    name = obj.name if isinstance(obj, Unit) else obj.full_name
    return Ref(code=obj.code, name=name)


def deadline_out(d: Deadline) -> DeadlineOut:
    return DeadlineOut(
        phase=d.phase,
        phase_name=PHASE_NAMES[d.phase],
        unit=d.unit,
        limit=str(d.limit),
        start=_local(d.start),  # type: ignore[arg-type]
        due=_local(d.due),
        met_at=_local(d.met_at),
        remaining_seconds=round(d.remaining_seconds),
        progress=round(d.progress, 4),
        paused=d.paused,
        overdue=d.overdue,
    )


def masked_requester(ticket: Ticket) -> RequesterOut:
    if ticket.requester_confidential:
        return RequesterOut(name=None, phone=None, confidential=True, masked=True)
    return RequesterOut(
        name=mask_name(ticket.requester_name),
        phone=mask_phone(ticket.requester_phone),
        confidential=False,
        masked=True,
    )


def reveal_requester(
    ticket_id: int, *, actor: Principal, db_session: Session, ip: str | None = None
) -> RequesterOut:
    """The requester's name and phone, whole, for those SPEC §1 allows; the reveal is logged."""
    ticket = get_ticket(ticket_id, actor=actor, db_session=db_session)
    if not actor.sees_identity(
        confidential=ticket.requester_confidential, lead_unit_id=ticket.lead_unit_id
    ):
        if ticket.requester_confidential:
            raise Forbidden("诉求人要求保密，仅热线中心可查看 / confidential: the centre only")
        raise Forbidden(
            "仅热线中心和主办单位可查看诉求人信息 / only the centre and the lead unit may"
        )
    audit(
        "reveal", db_session=db_session, user=db_session.get(User, actor.user_id), ip=ip,
        ticket_id=ticket.id, fields=["name", "phone"], number=ticket.number,
    )  # fmt: skip
    return RequesterOut(
        name=ticket.requester_name,
        phone=ticket.requester_phone,
        confidential=ticket.requester_confidential,
        masked=False,
    )


def ticket_out(
    ticket: Ticket,
    actor: Principal,
    *,
    detail: bool = False,
    deadlines: list[Deadline] | None = None,
) -> TicketOut:
    # Name and phone are always masked in what is read; the centre and the lead unit get them
    # whole only through `reveal_requester`, which logs who looked (SPEC §1).
    requester = masked_requester(ticket)
    out = TicketOut(
        id=ticket.id,
        number=ticket.number,
        channel=ticket.channel,
        request_type=ticket.request_type,
        category=_ref(ticket.category),
        title=ticket.title,
        content=ticket.content,
        requester=requester,
        address=ticket.address,
        lat=ticket.lat,
        lng=ticket.lng,
        district=_ref(ticket.district),
        street=_ref(ticket.street),
        status=ticket.status,
        status_name=STATUS_NAMES[ticket.status],
        tier=ticket.tier,
        urgent=ticket.urgent,
        lead_unit=_ref(ticket.lead_unit),
        round=ticket.round,
        result=ticket.result,
        solved=ticket.solved,
        satisfaction=ticket.satisfaction,
        created_at=_local(ticket.created_at),  # type: ignore[arg-type]
        updated_at=_local(ticket.updated_at),  # type: ignore[arg-type]
        closed_at=_local(ticket.closed_at),
        due_at=_local(ticket.due_at),
        version=ticket.version,
    )
    if deadlines is not None:
        out.deadlines = [deadline_out(d) for d in deadlines]
    if detail:
        out.assignments = [
            AssignmentOut(
                unit=Ref(code=a.unit.code, name=a.unit.name),
                role=a.role,
                round=a.round,
                active=a.active,
                dispatched_at=_local(a.dispatched_at),  # type: ignore[arg-type]
                accepted_at=_local(a.accepted_at),
                contacted_at=_local(a.contacted_at),
                replied_at=_local(a.replied_at),
                ended_at=_local(a.ended_at),
                end_reason=a.end_reason,
            )
            for a in ticket.assignments
        ]
        out.events = [
            EventOut(
                seq=e.seq,
                action=e.action,
                at=_local(e.at),  # type: ignore[arg-type]
                actor=e.actor.name if e.actor else None,
                actor_unit=_ref(e.actor_unit),
                state_before=e.state_before,
                state_after=e.state_after,
                note=e.note,
                data=e.data,
            )
            for e in ticket.events
        ]
    return out
