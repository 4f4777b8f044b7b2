"""The knowledge base's entries: versions through their workflow, reading with visibility,
flags, expiry and the owners' warnings. Keyword-only `db_session=` and `now=`; never commits
(the caller's `Database.write()` does).

- An entry's content lives in versions (`workflow.py` is the state table). The owning
  department writes a draft (`create_entry`, `save_draft`), submits it; the service centre
  publishes or returns it. While a version is pending, the published one keeps answering.
- The entry's own columns (title, category, owner, validity) always equal its *published*
  version's; an entry never published yet shows its first draft's.
- Who may do what: every account reads published entries; the owner side (a department user
  whose unit is the entry's owner unit or above it) and the centre (supervisors, admins) see
  and write the rest; only the centre reviews (publish, return, withdraw).
- Publishing indexes the version for search (`search.index_entry`, and the encoder's when it is
  on); withdrawal and expiry take it out. Publish, return and withdraw are audit-logged.
- Expiry (`expire_due`) and the 30-day warning (`warn_expiring`) are the worker's daily-ish
  step (`run_knowledge_jobs`), in the city's days. A warning is recorded on the entry
  (`expiry_warned_for`: once per `valid_to` value) and read by the owner's page; the outbox
  needs an order (`outbox.ticket_id` is required), so nothing is e-mailed (docs/knowledge.md).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.orm import Session

from jiesu.access.permissions import allows
from jiesu.access.policy import Principal
from jiesu.auth.service import audit
from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.errors import Conflict, Forbidden, Invalid, NotFound
from jiesu.knowledge import workflow
from jiesu.knowledge.models import (
    FLAG_REASONS,
    KnowledgeEntry,
    KnowledgeFlag,
    KnowledgeSuggestion,
    KnowledgeVersion,
)
from jiesu.knowledge.uses import answers_on
from jiesu.org.models import Unit, User
from jiesu.settings import city_tz
from jiesu.taxonomy.models import Category

log = logging.getLogger("jiesu.knowledge")

CODE_PREFIX = "KB-"
WARN_DAYS = 30  # the owner is warned this many days before an entry's last day
MIN_TITLE, MIN_ANSWER = 4, 20  # characters, checked before a version is submitted or published
MAX_TITLE, MAX_ANSWER = 200, 5000


@dataclass
class EntryContent:
    """What an author writes: one version's content (the API's `shapes.EntryIn` → this)."""

    title: str
    answer: str
    category_code: str | None
    owner_unit_id: int
    keywords: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)  # as callers ask
    valid_from: date | None = None
    valid_to: date | None = None
    source: str | None = None
    link: str | None = None
    change_note: str | None = None


def city_today(now: datetime) -> date:
    """The city's calendar day at `now` (an aware instant)."""
    return now.astimezone(city_tz()).date()


def content_of(version: KnowledgeVersion) -> dict[str, Any]:
    """A version's content as `workflow.diff` compares it."""
    return {
        "title": version.title,
        "answer": version.answer,
        "category_code": version.category_code,
        "owner_unit_id": version.owner_unit_id,
        "keywords": list(version.keywords or []),
        "questions": list(version.questions or []),
        "valid_from": version.valid_from,
        "valid_to": version.valid_to,
        "source": version.source,
        "link": version.link,
    }


def _content_dict(content: EntryContent) -> dict[str, Any]:
    data = asdict(content)
    data.pop("change_note", None)
    return data


# ---- who may ---------------------------------------------------------------------------------


def is_centre(actor: Principal) -> bool:
    """The service centre's reviewers (supervisors, admins): any entry, both sides."""
    return allows("knowledge.review", actor.role)


def _unit(unit_id: int, *, db_session: Session) -> Unit | None:
    return db_session.get(Unit, unit_id)


def sides(actor: Principal, owner_unit_id: int, *, db_session: Session) -> set[str]:
    """The workflow sides `actor` acts on for an entry owned by `owner_unit_id`."""
    out: set[str] = set()
    if is_centre(actor):
        out |= {workflow.CENTRE, workflow.OWNER}
    elif allows("knowledge.edit", actor.role):
        unit = _unit(owner_unit_id, db_session=db_session)
        if unit is not None and unit.path.startswith(actor.unit_path):
            out.add(workflow.OWNER)
    return out


def sees_work(actor: Principal, owner_unit_id: int, *, db_session: Session) -> bool:
    """Drafts, pending versions and entries not answering: the owner's unit and those above
    it, and the centre."""
    if is_centre(actor):
        return True
    unit = _unit(owner_unit_id, db_session=db_session)
    return unit is not None and unit.path.startswith(actor.unit_path)


def _require_side(
    actor: Principal, entry: KnowledgeEntry, side: str, *, db_session: Session
) -> None:
    if side not in sides(actor, entry.owner_unit_id, db_session=db_session):
        if side == workflow.CENTRE:
            raise Forbidden("只有热线中心可以审核知识库条目 / only the service centre reviews")
        raise Forbidden(
            "只能编辑本单位及下级单位的知识库条目 / you may edit only your own unit's entries"
        )


def _user(actor: Principal, *, db_session: Session) -> User | None:
    return db_session.get(User, actor.user_id)


# ---- checks ----------------------------------------------------------------------------------


def _check_draft(content: EntryContent, *, db_session: Session) -> None:
    """What even a draft must hold: a title, an owner that exists, known category, dates in
    order."""
    content.title = (content.title or "").strip()
    content.answer = (content.answer or "").strip()
    if not content.title:
        raise Invalid("请填写标题 / title is required", field="title")
    if len(content.title) > MAX_TITLE:
        raise Invalid(f"标题最多 {MAX_TITLE} 字 / title too long", field="title")
    if len(content.answer) > MAX_ANSWER:
        raise Invalid(f"答复口径最多 {MAX_ANSWER} 字 / answer too long", field="answer")
    unit = _unit(content.owner_unit_id, db_session=db_session)
    if unit is None or not unit.active:
        raise Invalid("主管单位不存在或已停用 / no such active unit", field="owner_unit_id")
    if content.category_code:
        content.category_code = content.category_code.strip()
        exists = db_session.scalar(
            select(Category.id).where(Category.code == content.category_code)
        )
        if exists is None:
            raise Invalid(
                f"事项分类「{content.category_code[:20]}」不存在 / unknown category",
                field="category_code",
            )
    else:
        content.category_code = None
    if content.valid_from and content.valid_to and content.valid_to < content.valid_from:
        raise Invalid("失效日期不能早于生效日期 / valid_to before valid_from", field="valid_to")
    content.keywords = _clean_list(content.keywords)
    content.questions = _clean_list(content.questions)
    content.source = (content.source or "").strip() or None
    content.link = (content.link or "").strip() or None
    content.change_note = (content.change_note or "").strip() or None


def _clean_list(items: list[str] | None) -> list[str]:
    out: list[str] = []
    for item in items or []:
        text = str(item).strip()
        if text and text not in out:
            out.append(text)
    return out


def check_publishable(content: dict[str, Any], *, today: date) -> None:
    """Before a version goes to the centre or answers callers: Invalid naming the field."""
    title = (content.get("title") or "").strip()
    answer = (content.get("answer") or "").strip()
    if len(title) < MIN_TITLE:
        raise Invalid(f"标题至少 {MIN_TITLE} 个字 / title: at least {MIN_TITLE} characters",
                      field="title")  # fmt: skip
    if len(answer) < MIN_ANSWER:
        raise Invalid(f"答复口径至少 {MIN_ANSWER} 个字 / answer: at least {MIN_ANSWER} characters",
                      field="answer")  # fmt: skip
    valid_from, valid_to = content.get("valid_from"), content.get("valid_to")
    if valid_from and valid_to and valid_to < valid_from:
        raise Invalid("失效日期不能早于生效日期 / valid_to before valid_from", field="valid_to")
    if valid_to and valid_to < today:
        raise Invalid(f"失效日期 {valid_to} 已过，不能发布 / valid_to is past", field="valid_to")


def _check_version(version: KnowledgeVersion, *, db_session: Session, today: date) -> None:
    content = content_of(version)
    check_publishable(content, today=today)
    _check_draft(_as_content(content), db_session=db_session)  # owner and category still exist


def _as_content(data: dict[str, Any], change_note: str | None = None) -> EntryContent:
    return EntryContent(**data, change_note=change_note)


# ---- codes and rows --------------------------------------------------------------------------


def _new_code(entry: KnowledgeEntry, *, db_session: Session) -> str:
    """KB-000123 from the entry's id (unique by construction; an imported code of that form
    already taken gets a suffix)."""
    code = f"{CODE_PREFIX}{entry.id:06d}"
    n = 1
    while db_session.scalar(select(KnowledgeEntry.id).where(KnowledgeEntry.code == code)):
        n += 1
        code = f"{CODE_PREFIX}{entry.id:06d}-{n}"
    return code


def _touch(entry: KnowledgeEntry, now: datetime) -> None:
    entry.revision = (entry.revision or 0) + 1
    entry.updated_at = now


def _fill(
    version: KnowledgeVersion, content: EntryContent, *, actor: Principal, now: datetime
) -> None:
    version.title = content.title
    version.answer = content.answer
    version.category_code = content.category_code
    version.owner_unit_id = content.owner_unit_id
    version.keywords = list(content.keywords)
    version.questions = list(content.questions)
    version.valid_from = content.valid_from
    version.valid_to = content.valid_to
    version.source = content.source
    version.link = content.link
    version.change_note = content.change_note
    version.author_id = actor.user_id
    version.updated_at = now


def _mirror(entry: KnowledgeEntry, version: KnowledgeVersion) -> None:
    """The entry's columns follow the version (its published one; a never-published entry's
    draft)."""
    entry.title = version.title
    entry.category_code = version.category_code
    entry.owner_unit_id = version.owner_unit_id
    entry.valid_from = version.valid_from
    entry.valid_to = version.valid_to


def _pending(entry: KnowledgeEntry, *, db_session: Session) -> KnowledgeVersion | None:
    if entry.pending_version_id is None:
        return None
    return db_session.get(KnowledgeVersion, entry.pending_version_id)


def _published(entry: KnowledgeEntry, *, db_session: Session) -> KnowledgeVersion | None:
    if entry.published_version_id is None:
        return None
    return db_session.get(KnowledgeVersion, entry.published_version_id)


def pending_version(entry: KnowledgeEntry, *, db_session: Session) -> KnowledgeVersion | None:
    """The version being worked on (draft, submitted or returned), if any."""
    return _pending(entry, db_session=db_session)


def published_version(entry: KnowledgeEntry, *, db_session: Session) -> KnowledgeVersion | None:
    """The last published version (answering only while the entry is published and valid)."""
    return _published(entry, db_session=db_session)


def _entry_for_update(entry_id: int, *, db_session: Session) -> KnowledgeEntry:
    entry = db_session.get(KnowledgeEntry, entry_id, with_for_update=True)
    if entry is None:
        raise NotFound("没有这个知识库条目 / no such entry")
    return entry


def _next_number(entry_id: int, *, db_session: Session) -> int:
    top = db_session.scalar(
        select(func.max(KnowledgeVersion.number)).where(KnowledgeVersion.entry_id == entry_id)
    )
    return int(top or 0) + 1


# ---- the workflow ----------------------------------------------------------------------------


def create_entry(
    content: EntryContent,
    *,
    actor: Principal,
    db_session: Session,
    now: datetime,
    code: str | None = None,
    demo: bool = False,
) -> KnowledgeEntry:
    """A new entry with its first version as a draft, owned by `content.owner_unit_id` (which
    the actor must be able to write for)."""
    _check_draft(content, db_session=db_session)
    if workflow.OWNER not in sides(actor, content.owner_unit_id, db_session=db_session):
        raise Forbidden(
            "只能为本单位及下级单位新建知识库条目 / you may create entries only for your own unit"
        )
    if code is not None:
        code = code.strip()
        if not code or len(code) > 32:
            raise Invalid("条目编码须为 1–32 个字符 / code: 1–32 characters", field="code")
        if db_session.scalar(select(KnowledgeEntry.id).where(KnowledgeEntry.code == code)):
            raise Conflict(f"条目编码 {code} 已存在 / code {code} exists", field="code")
    entry = KnowledgeEntry(
        code=code or f"tmp-{uuid.uuid4().hex[:24]}",
        status="draft",
        owner_unit_id=content.owner_unit_id,
        category_code=content.category_code,
        title=content.title,
        valid_from=content.valid_from,
        valid_to=content.valid_to,
        use_count=0,
        open_flags=0,
        demo=demo,
        revision=1,
        created_by_id=actor.user_id,
        created_at=now,
        updated_at=now,
    )
    db_session.add(entry)
    db_session.flush()
    if code is None:
        entry.code = _new_code(entry, db_session=db_session)
    version = KnowledgeVersion(entry_id=entry.id, number=1, state="draft", created_at=now)
    _fill(version, content, actor=actor, now=now)
    db_session.add(version)
    db_session.flush()
    entry.pending_version_id = version.id
    return entry


def save_draft(
    entry_id: int, content: EntryContent, *, actor: Principal, db_session: Session, now: datetime
) -> KnowledgeVersion:
    """Write the entry's pending version (a draft, or a returned one, which becomes a draft
    again), or open a new one beside the published version."""
    entry = _entry_for_update(entry_id, db_session=db_session)
    _check_draft(content, db_session=db_session)
    _require_side(actor, entry, workflow.OWNER, db_session=db_session)
    if workflow.OWNER not in sides(actor, content.owner_unit_id, db_session=db_session):
        raise Forbidden(
            "不能把条目交给本单位以外的单位 / you may not give the entry to another unit"
        )
    side = workflow.CENTRE if is_centre(actor) else workflow.OWNER
    version = _pending(entry, db_session=db_session)
    if version is None:
        version = KnowledgeVersion(
            entry_id=entry.id,
            number=_next_number(entry.id, db_session=db_session),
            state="draft",
            created_at=now,
        )
        db_session.add(version)
    else:
        version.state = workflow.next_state(version.state, "edit", side)
    _fill(version, content, actor=actor, now=now)
    db_session.flush()
    entry.pending_version_id = version.id
    if entry.published_version_id is None:
        _mirror(entry, version)
    _touch(entry, now)
    return version


def _pending_or_conflict(entry: KnowledgeEntry, *, db_session: Session) -> KnowledgeVersion:
    version = _pending(entry, db_session=db_session)
    if version is None:
        raise Conflict("该条目没有待处理的版本 / the entry has no pending version")
    return version


def submit(
    entry_id: int,
    *,
    actor: Principal,
    db_session: Session,
    now: datetime,
    note: str | None = None,
) -> KnowledgeVersion:
    """The pending version goes to the centre for review (checked as for publishing)."""
    entry = _entry_for_update(entry_id, db_session=db_session)
    _require_side(actor, entry, workflow.OWNER, db_session=db_session)
    version = _pending_or_conflict(entry, db_session=db_session)
    side = workflow.CENTRE if is_centre(actor) else workflow.OWNER
    to = workflow.next_state(version.state, "submit", side)
    _check_version(version, db_session=db_session, today=city_today(now))
    version.state = to
    version.submitted_at = now
    version.updated_at = now
    if note and note.strip():
        version.change_note = note.strip()[:500]
    _touch(entry, now)
    return version


def recall(
    entry_id: int, *, actor: Principal, db_session: Session, now: datetime
) -> KnowledgeVersion:
    """Its author takes a submitted version back to a draft (before the centre decides)."""
    entry = _entry_for_update(entry_id, db_session=db_session)
    _require_side(actor, entry, workflow.OWNER, db_session=db_session)
    version = _pending_or_conflict(entry, db_session=db_session)
    to = workflow.next_state(version.state, "recall", workflow.OWNER)
    if version.author_id is not None and version.author_id != actor.user_id:
        raise Forbidden("只有提交人可以撤回审核 / only its author may recall a version")
    version.state = to
    version.submitted_at = None
    version.updated_at = now
    _touch(entry, now)
    return version


def publish(
    entry_id: int,
    *,
    actor: Principal,
    db_session: Session,
    now: datetime,
    note: str | None = None,
) -> KnowledgeVersion:
    """The centre publishes the submitted version: it answers from now on, the one before is
    superseded, the entry's columns follow and the search index is brought up to date."""
    entry = _entry_for_update(entry_id, db_session=db_session)
    _require_side(actor, entry, workflow.CENTRE, db_session=db_session)
    version = _pending_or_conflict(entry, db_session=db_session)
    to = workflow.next_state(version.state, "publish", workflow.CENTRE)
    _check_version(version, db_session=db_session, today=city_today(now))
    old = _published(entry, db_session=db_session)
    if old is not None and old.id != version.id:
        old.state = workflow.next_state(old.state, "supersede", workflow.SYSTEM)
        old.updated_at = now
    version.state = to
    version.reviewed_by_id = actor.user_id
    version.reviewed_at = now
    version.review_note = (note or "").strip()[:500] or None
    version.published_at = now
    version.updated_at = now
    entry.published_version_id = version.id
    entry.pending_version_id = None
    entry.status = "published"
    entry.published_at = now
    _mirror(entry, version)
    _touch(entry, now)
    db_session.flush()
    _index(entry, version, db_session=db_session)
    audit("kb_publish", db_session=db_session, user=_user(actor, db_session=db_session), now=now,
          entry=entry.code, version=version.number, note=version.review_note)  # fmt: skip
    return version


def return_version(
    entry_id: int, *, actor: Principal, db_session: Session, now: datetime, note: str | None
) -> KnowledgeVersion:
    """The centre sends the submitted version back to its owner with a note (required)."""
    note = (note or "").strip()
    entry = _entry_for_update(entry_id, db_session=db_session)
    _require_side(actor, entry, workflow.CENTRE, db_session=db_session)
    version = _pending_or_conflict(entry, db_session=db_session)
    to = workflow.next_state(version.state, "return", workflow.CENTRE)
    if not note:
        raise Invalid("退回须写明原因 / a return needs a note", field="note")
    version.state = to
    version.reviewed_by_id = actor.user_id
    version.reviewed_at = now
    version.review_note = note[:500]
    version.updated_at = now
    _touch(entry, now)
    audit("kb_return", db_session=db_session, user=_user(actor, db_session=db_session), now=now,
          entry=entry.code, version=version.number, note=version.review_note)  # fmt: skip
    return version


def withdraw(
    entry_id: int, *, actor: Principal, db_session: Session, now: datetime, note: str | None
) -> KnowledgeEntry:
    """The centre takes an entry off the base (下架): it answers no more and leaves the
    search index; a pending version stays, and publishing one brings the entry back."""
    entry = _entry_for_update(entry_id, db_session=db_session)
    _require_side(actor, entry, workflow.CENTRE, db_session=db_session)
    if entry.status not in ("published", "expired"):
        raise Conflict("只有已发布或已过期的条目可以下架 / only a published entry is withdrawn")
    entry.status = "withdrawn"
    _touch(entry, now)
    _unindex(entry.id, db_session=db_session)
    audit("kb_withdraw", db_session=db_session, user=_user(actor, db_session=db_session), now=now,
          entry=entry.code, note=(note or "").strip()[:500] or None)  # fmt: skip
    return entry


def discard_draft(entry_id: int, *, actor: Principal, db_session: Session, now: datetime) -> None:
    """Throw the pending draft (or returned version) away. An entry never published goes
    with it (a suggestion it was drafted from is open again)."""
    entry = _entry_for_update(entry_id, db_session=db_session)
    _require_side(actor, entry, workflow.OWNER, db_session=db_session)
    version = _pending_or_conflict(entry, db_session=db_session)
    side = workflow.CENTRE if is_centre(actor) else workflow.OWNER
    version.state = workflow.next_state(version.state, "discard", side)
    version.updated_at = now
    entry.pending_version_id = None
    if entry.published_version_id is None:
        db_session.execute(
            update(KnowledgeSuggestion)
            .where(KnowledgeSuggestion.entry_id == entry.id)
            .values(entry_id=None, status="open")
        )
        db_session.flush()
        db_session.execute(delete(KnowledgeVersion).where(KnowledgeVersion.entry_id == entry.id))
        db_session.delete(entry)
        db_session.flush()
        return
    _touch(entry, now)


def publish_direct(
    content: EntryContent,
    *,
    actor: Principal,
    db_session: Session,
    now: datetime,
    code: str | None = None,
    demo: bool = False,
    entry_id: int | None = None,
) -> KnowledgeEntry:
    """Import and demo path (the centre): create the entry or give it a new version, and
    publish at once; the change note is kept. Content equal to the last published version's
    changes nothing (an export imported again, a demo loaded twice)."""
    if not is_centre(actor):
        raise Forbidden("只有热线中心可以直接发布 / only the service centre publishes directly")
    entry: KnowledgeEntry | None = None
    if entry_id is not None:
        entry = db_session.get(KnowledgeEntry, entry_id)
        if entry is None:
            raise NotFound("没有这个知识库条目 / no such entry")
    elif code:
        entry = db_session.scalar(select(KnowledgeEntry).where(KnowledgeEntry.code == code.strip()))
    if entry is None:
        entry = create_entry(content, actor=actor, db_session=db_session, now=now, code=code,
                             demo=demo)  # fmt: skip
    else:
        _check_draft(content, db_session=db_session)
        old = _published(entry, db_session=db_session)
        if (
            old is not None
            and entry.pending_version_id is None
            and content_of(old) == _content_dict(content)
        ):
            if demo and not entry.demo:
                entry.demo = True
                _touch(entry, now)
            return entry
        version = _pending(entry, db_session=db_session)
        if version is not None and version.state == "submitted":
            version.state = "draft"  # the centre overwrites it: back to a draft first
        save_draft(entry.id, content, actor=actor, db_session=db_session, now=now)
        if demo:
            entry.demo = True
    submit(entry.id, actor=actor, db_session=db_session, now=now)
    publish(entry.id, actor=actor, db_session=db_session, now=now)
    return entry


def _index(entry: KnowledgeEntry, version: KnowledgeVersion, *, db_session: Session) -> None:
    from jiesu.knowledge import encoder, search

    search.index_entry(entry, version, db_session=db_session)
    if encoder.enabled():
        encoder.index_entry(entry, version, db_session=db_session)


def _unindex(entry_id: int, *, db_session: Session) -> None:
    from jiesu.knowledge import encoder, search

    search.unindex_entry(entry_id, db_session=db_session)
    # whatever the setting: switching the encoder on later must find no stale vector
    encoder.unindex_entry(entry_id, db_session=db_session)


# ---- reading ---------------------------------------------------------------------------------


def get_entry(code_or_id: str | int, *, actor: Principal, db_session: Session) -> KnowledgeEntry:
    """The entry by code (or id) as `actor` may see it: NotFound otherwise (an entry not
    answering is seen only by its owner's units and the centre)."""
    if isinstance(code_or_id, int):
        entry = db_session.get(KnowledgeEntry, code_or_id)
    else:
        entry = db_session.scalar(
            select(KnowledgeEntry).where(KnowledgeEntry.code == str(code_or_id).strip())
        )
    if entry is None or not (
        entry.status == "published" or sees_work(actor, entry.owner_unit_id, db_session=db_session)
    ):
        raise NotFound("没有这个知识库条目 / no such entry")
    return entry


def answering_version(
    entry: KnowledgeEntry, *, db_session: Session, today: date
) -> KnowledgeVersion | None:
    """The version that answers callers on `today`: the published one while the entry is
    published and within its validity; None otherwise."""
    if not answers_on(entry.status, entry.valid_from, entry.valid_to, today):
        return None
    return _published(entry, db_session=db_session)


def visible(stmt: Select[Any], actor: Principal, owner: Any = Unit) -> Select[Any]:
    """`stmt` (entries joined to their owner unit, `owner`) narrowed to what `actor` may see:
    published entries to everyone, the rest to the owner's unit and those above it; the centre
    every entry."""
    if is_centre(actor):
        return stmt
    return stmt.where(
        or_(KnowledgeEntry.status == "published", owner.path.startswith(actor.unit_path))
    )


def list_entries(
    *,
    actor: Principal,
    db_session: Session,
    q: str | None = None,
    status: str | None = None,
    owner_unit_id: int | None = None,
    category: str | None = None,
    expiring_within_days: int | None = None,
    demo: bool | None = None,
    limit: int = 50,
    offset: int = 0,
    today: date | None = None,
) -> tuple[list[KnowledgeEntry], int]:
    """One page of the entries `actor` may see, most recently changed first, and how many
    there are. `q`: in the code or title (the real search is `search.search`); `category`:
    the code and those under it; `owner_unit_id`: that unit and those under it;
    `expiring_within_days`: published entries whose last day is within that many days of
    `today` (the city's today when not given)."""
    stmt = select(KnowledgeEntry).join(Unit, Unit.id == KnowledgeEntry.owner_unit_id)
    stmt = visible(stmt, actor)
    if q and q.strip():
        pattern = "%" + _like(q.strip()[:100]) + "%"
        stmt = stmt.where(
            or_(
                KnowledgeEntry.title.ilike(pattern, escape="\\"),
                KnowledgeEntry.code.ilike(pattern, escape="\\"),
            )
        )
    if status:
        stmt = stmt.where(KnowledgeEntry.status == status)
    if owner_unit_id is not None:
        owner = _unit(owner_unit_id, db_session=db_session)
        if owner is None:
            return [], 0
        stmt = stmt.where(Unit.path.startswith(owner.path))
    if category:
        stmt = stmt.where(
            KnowledgeEntry.category_code.startswith(category.strip(), autoescape=True)
        )
    if expiring_within_days is not None:
        day = today or city_today(utcnow())
        stmt = stmt.where(
            KnowledgeEntry.status == "published",
            KnowledgeEntry.valid_to >= day,
            KnowledgeEntry.valid_to <= day + timedelta(days=expiring_within_days),
        )
    if demo is not None:
        stmt = stmt.where(KnowledgeEntry.demo.is_(demo))
    total = db_session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    rows = db_session.scalars(
        stmt.order_by(KnowledgeEntry.updated_at.desc(), KnowledgeEntry.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total or 0)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def versions(entry_id: int, *, db_session: Session) -> list[KnowledgeVersion]:
    """Every version of the entry, oldest first (discarded ones included: the record)."""
    return list(
        db_session.scalars(
            select(KnowledgeVersion)
            .where(KnowledgeVersion.entry_id == entry_id)
            .order_by(KnowledgeVersion.number)
        ).all()
    )


def version_changes(
    entry_id: int, *, db_session: Session
) -> list[tuple[KnowledgeVersion, list[workflow.Change]]]:
    """Each version with what it changed from the one before ("who changed what")."""
    out: list[tuple[KnowledgeVersion, list[workflow.Change]]] = []
    before: dict[str, Any] = {}
    for version in versions(entry_id, db_session=db_session):
        now = content_of(version)
        out.append((version, workflow.diff(before, now)))
        before = now
    return out


# ---- flags -----------------------------------------------------------------------------------


def raise_flag(
    entry_id: int,
    *,
    reason: str,
    note: str | None,
    ticket_id: int | None,
    actor: Principal,
    db_session: Session,
    now: datetime,
) -> KnowledgeFlag:
    """Report an entry as wrong or outdated (from the call): an open flag for its owner. The
    same person's open flag on the same entry, order and reason is not repeated."""
    if reason not in FLAG_REASONS:
        raise Invalid("请选择问题类型 / unknown reason", field="reason")
    note = (note or "").strip()[:1000] or None
    entry = db_session.get(KnowledgeEntry, entry_id)
    if (
        entry is None
        or entry.published_version_id is None
        or not (
            entry.status == "published"
            or sees_work(actor, entry.owner_unit_id, db_session=db_session)
        )
    ):
        raise NotFound("没有这个知识库条目 / no such entry")
    if ticket_id is not None:
        from jiesu.tickets.models import Ticket

        if db_session.get(Ticket, ticket_id) is None:
            raise Invalid("没有这个工单 / no such ticket", field="ticket_id")
    same = db_session.scalar(
        select(KnowledgeFlag).where(
            KnowledgeFlag.entry_id == entry_id,
            KnowledgeFlag.status == "open",
            KnowledgeFlag.raised_by_id == actor.user_id,
            KnowledgeFlag.reason == reason,
            KnowledgeFlag.ticket_id.is_(None)
            if ticket_id is None
            else KnowledgeFlag.ticket_id == ticket_id,
        )
    )
    if same is not None:
        return same
    version = _published(entry, db_session=db_session)
    flag = KnowledgeFlag(
        entry_id=entry_id,
        version_number=version.number if version else None,
        ticket_id=ticket_id,
        reason=reason,
        note=note,
        status="open",
        raised_by_id=actor.user_id,
        raised_at=now,
    )
    db_session.add(flag)
    db_session.execute(
        update(KnowledgeEntry)
        .where(KnowledgeEntry.id == entry_id)
        .values(open_flags=KnowledgeEntry.open_flags + 1)
        .execution_options(synchronize_session=False)
    )
    db_session.flush()
    db_session.expire(entry, ["open_flags"])
    return flag


def resolve_flag(
    flag_id: int,
    *,
    status: str,
    note: str | None,
    actor: Principal,
    db_session: Session,
    now: datetime,
) -> KnowledgeFlag:
    """The owner (or the centre) closes a flag: `fixed` (已修正) or `dismissed` (不采纳)."""
    if status not in ("fixed", "dismissed"):
        raise Invalid("请选择处理结果 / status: fixed or dismissed", field="status")
    flag = db_session.get(KnowledgeFlag, flag_id, with_for_update=True)
    if flag is None:
        raise NotFound("没有这条纠错反馈 / no such flag")
    entry = db_session.get(KnowledgeEntry, flag.entry_id)
    assert entry is not None
    _require_side(actor, entry, workflow.OWNER, db_session=db_session)
    if flag.status != "open":
        raise Conflict("这条反馈已处理 / the flag is already resolved")
    flag.status = status
    flag.resolved_by_id = actor.user_id
    flag.resolved_at = now
    flag.resolution_note = (note or "").strip()[:1000] or None
    db_session.execute(
        update(KnowledgeEntry)
        .where(KnowledgeEntry.id == entry.id, KnowledgeEntry.open_flags > 0)
        .values(open_flags=KnowledgeEntry.open_flags - 1)
        .execution_options(synchronize_session=False)
    )
    db_session.flush()
    db_session.expire(entry, ["open_flags"])
    return flag


def list_flags(
    *,
    actor: Principal,
    db_session: Session,
    status: str | None = None,
    entry_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[KnowledgeFlag], int]:
    """Flags `actor` may read, newest first: the centre all; anyone else those on entries of
    their unit's tree and those they raised."""
    stmt = (
        select(KnowledgeFlag)
        .join(KnowledgeEntry, KnowledgeEntry.id == KnowledgeFlag.entry_id)
        .join(Unit, Unit.id == KnowledgeEntry.owner_unit_id)
    )
    if not is_centre(actor):
        stmt = stmt.where(
            or_(Unit.path.startswith(actor.unit_path), KnowledgeFlag.raised_by_id == actor.user_id)
        )
    if status:
        stmt = stmt.where(KnowledgeFlag.status == status)
    if entry_id is not None:
        stmt = stmt.where(KnowledgeFlag.entry_id == entry_id)
    total = db_session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    rows = db_session.scalars(
        stmt.order_by(KnowledgeFlag.raised_at.desc(), KnowledgeFlag.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total or 0)


# ---- expiry and warnings ---------------------------------------------------------------------


def expire_due(*, db_session: Session, today: date) -> int:
    """Published entries whose last day is before `today` (city date) expire: they answer no
    more and leave the search index. How many expired."""
    due = db_session.scalars(
        select(KnowledgeEntry)
        .where(KnowledgeEntry.status == "published", KnowledgeEntry.valid_to < today)
        .order_by(KnowledgeEntry.id)
        .with_for_update(skip_locked=True)
    ).all()
    now = utcnow()
    for entry in due:
        entry.status = "expired"
        _touch(entry, now)
        _unindex(entry.id, db_session=db_session)
    return len(due)


def warn_expiring(*, db_session: Session, today: date, days: int = WARN_DAYS) -> int:
    """Warn the owners of published entries whose last day is within `days` of `today`: once
    per `valid_to` value (a new date warns again). Recorded on the entry
    (`expiry_warned_for`), which the owner's page reads. How many were warned."""
    due = db_session.scalars(
        select(KnowledgeEntry)
        .where(
            KnowledgeEntry.status == "published",
            KnowledgeEntry.valid_to >= today,
            KnowledgeEntry.valid_to <= today + timedelta(days=days),
            or_(
                KnowledgeEntry.expiry_warned_for.is_(None),
                KnowledgeEntry.expiry_warned_for != KnowledgeEntry.valid_to,
            ),
        )
        .order_by(KnowledgeEntry.id)
        .with_for_update(skip_locked=True)
    ).all()
    for entry in due:
        entry.expiry_warned_for = entry.valid_to
        log.info("knowledge entry %s expires on %s: owner unit %s warned", entry.code,
                 entry.valid_to, entry.owner_unit_id)  # fmt: skip
    return len(due)


def run_knowledge_jobs(db: Database, *, now: datetime | None = None) -> int:
    """The worker's step: expire what is past its date, warn what is 30 days from it
    (idempotent: a second run the same day does nothing)."""
    today = city_today(now or utcnow())
    with db.read() as session:  # an idle round takes no write lock (SQLite has one)
        horizon = today + timedelta(days=WARN_DAYS)
        owed = session.scalar(
            select(KnowledgeEntry.id)
            .where(
                KnowledgeEntry.status == "published",
                KnowledgeEntry.valid_to <= horizon,
                or_(
                    KnowledgeEntry.valid_to < today,
                    KnowledgeEntry.expiry_warned_for.is_(None),
                    KnowledgeEntry.expiry_warned_for != KnowledgeEntry.valid_to,
                ),
            )
            .limit(1)
        )
    if owed is None:
        return 0
    with db.write() as session:
        done = expire_due(db_session=session, today=today)
        done += warn_expiring(db_session=session, today=today)
    return done
