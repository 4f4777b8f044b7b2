"""The knowledge base's REST API (`/api/v1/knowledge/…`): search, entries and their workflow,
versions with what each changed, flags.

Every account reads and searches (`knowledge.read`) and flags (`knowledge.flag`); departments
and the centre write (`knowledge.edit`: whose entries is the service's check, 403); the centre
reviews (`knowledge.review`). Dates are the city's days; times go out in the city's zone.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.access.policy import Principal
from jiesu.db.base import utcnow
from jiesu.errors import Invalid
from jiesu.knowledge import service, workflow
from jiesu.knowledge.models import (
    FLAG_REASONS,
    FLAG_STATUSES,
    KnowledgeEntry,
    KnowledgeFlag,
    KnowledgeVersion,
)
from jiesu.knowledge.shapes import (
    CODE_PATTERN,
    ChangeOut,
    EntryIn,
    EntryOut,
    EntryPage,
    EntrySummary,
    FlagIn,
    FlagOut,
    FlagPage,
    FlagResolveIn,
    HitOut,
    NoteIn,
    SearchOut,
    UnitRef,
    UserRef,
    VersionChanges,
    VersionOut,
)
from jiesu.org.models import Unit, User
from jiesu.settings import city_tz
from jiesu.web.deps import DB, ReadSession, require
from jiesu.web.params import BigId, Offset

router = APIRouter(prefix="/api/v1/knowledge", tags=["知识库"])

Reader = Annotated[Principal, Depends(require("knowledge.read"))]
Flagger = Annotated[Principal, Depends(require("knowledge.flag"))]
Editor = Annotated[Principal, Depends(require("knowledge.edit"))]
Reviewer = Annotated[Principal, Depends(require("knowledge.review"))]
EntryCode = Annotated[
    str, Path(min_length=1, max_length=32, pattern=CODE_PATTERN, description="条目编码")
]
Limit = Annotated[int, Query(ge=1, le=200, description="条数")]

ENTRY_STATUS_NAMES = {"draft": "未发布", "published": "已发布", "withdrawn": "已下架",
                      "expired": "已过期"}  # fmt: skip
FLAG_STATUS_NAMES = {"open": "待处理", "fixed": "已修正", "dismissed": "不采纳"}


def _today() -> date:
    return service.city_today(utcnow())


def _local(t: datetime | None) -> datetime | None:
    return t.astimezone(city_tz()) if t else None


def _at(t: datetime) -> datetime:
    return t.astimezone(city_tz())


class _Names:
    """Units and users by id, read once per answer."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.units: dict[int, UnitRef | None] = {}
        self.users: dict[int, UserRef | None] = {}

    def unit(self, unit_id: int | None) -> UnitRef | None:
        if unit_id is None:
            return None
        if unit_id not in self.units:
            u = self.session.get(Unit, unit_id)
            self.units[unit_id] = UnitRef(id=u.id, code=u.code, name=u.name) if u else None
        return self.units[unit_id]

    def user(self, user_id: int | None) -> UserRef | None:
        if user_id is None:
            return None
        if user_id not in self.users:
            u = self.session.get(User, user_id)
            self.users[user_id] = UserRef(username=u.username, name=u.name) if u else None
        return self.users[user_id]


def _version_out(v: KnowledgeVersion, names: _Names) -> VersionOut:
    return VersionOut(
        number=v.number, state=v.state, state_name=workflow.STATES.get(v.state, v.state),
        title=v.title, answer=v.answer, category_code=v.category_code,
        owner=names.unit(v.owner_unit_id), keywords=list(v.keywords or []),
        questions=list(v.questions or []), valid_from=v.valid_from, valid_to=v.valid_to,
        source=v.source, link=v.link, change_note=v.change_note, author=names.user(v.author_id),
        created_at=_at(v.created_at), updated_at=_at(v.updated_at),
        submitted_at=_local(v.submitted_at), reviewed_by=names.user(v.reviewed_by_id),
        reviewed_at=_local(v.reviewed_at), review_note=v.review_note,
        published_at=_local(v.published_at),
    )  # fmt: skip


def _summary_fields(
    e: KnowledgeEntry, names: _Names, *, sees_work: bool, session: Session
) -> dict[str, Any]:
    pending = service.pending_version(e, db_session=session) if sees_work else None
    return {
        "code": e.code,
        "status": e.status,
        "status_name": ENTRY_STATUS_NAMES.get(e.status, e.status),
        "title": e.title,
        "category_code": e.category_code,
        "owner": names.unit(e.owner_unit_id),
        "valid_from": e.valid_from,
        "valid_to": e.valid_to,
        "use_count": e.use_count,
        "last_used_at": _local(e.last_used_at),
        "open_flags": e.open_flags,
        "demo": e.demo,
        "revision": e.revision,
        "updated_at": _at(e.updated_at),
        "published_at": _local(e.published_at),
        "pending_state": pending.state if pending else None,
    }


def _entry_out(e: KnowledgeEntry, actor: Principal, session: Session) -> EntryOut:
    names = _Names(session)
    sees_work = service.sees_work(actor, e.owner_unit_id, db_session=session)
    answering = service.answering_version(e, db_session=session, today=_today())
    published = service.published_version(e, db_session=session)
    pending = service.pending_version(e, db_session=session) if sees_work else None
    sides = service.sides(actor, e.owner_unit_id, db_session=session)
    actions = workflow.available(pending.state, sides) if pending else []
    if pending is None and workflow.OWNER in sides:
        actions.append("edit")  # opens the next version
    if workflow.CENTRE in sides and e.status in ("published", "expired"):
        actions.append("withdraw")
    if (
        "recall" in actions
        and pending is not None
        and pending.author_id not in (None, actor.user_id)
    ):
        actions.remove("recall")
    return EntryOut(
        **_summary_fields(e, names, sees_work=sees_work, session=session),
        answering=_version_out(answering, names) if answering else None,
        published=_version_out(published, names) if published else None,
        pending=_version_out(pending, names) if pending else None,
        actions=actions,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    return value


def _flag_out(f: KnowledgeFlag, names: _Names) -> FlagOut:
    entry = names.session.get(KnowledgeEntry, f.entry_id)
    assert entry is not None
    return FlagOut(
        id=f.id, entry=entry.code, entry_title=entry.title, version_number=f.version_number,
        ticket_id=f.ticket_id, reason=f.reason, reason_name=FLAG_REASONS.get(f.reason, f.reason),
        note=f.note, status=f.status, raised_by=names.user(f.raised_by_id),
        raised_at=_at(f.raised_at), resolved_by=names.user(f.resolved_by_id),
        resolved_at=_local(f.resolved_at), resolution_note=f.resolution_note,
    )  # fmt: skip


def _content(body: EntryIn, actor: Principal, session: Session) -> service.EntryContent:
    owner_id = actor.unit_id
    if body.owner:
        unit_id = session.scalar(select(Unit.id).where(Unit.code == body.owner))
        if unit_id is None:
            raise Invalid(f"没有单位「{body.owner}」 / no such unit", field="owner")
        owner_id = unit_id
    return service.EntryContent(
        title=body.title, answer=body.answer, category_code=body.category_code or None,
        owner_unit_id=owner_id, keywords=list(body.keywords), questions=list(body.questions),
        valid_from=body.valid_from, valid_to=body.valid_to, source=body.source, link=body.link,
        change_note=body.change_note,
    )  # fmt: skip


def _entry_id(code: str, actor: Principal, session: Session) -> int:
    return service.get_entry(code, actor=actor, db_session=session).id


# ---- search and reading -----------------------------------------------------------------------


@router.get("/search", response_model=SearchOut, summary="搜索知识库（今日有效的已发布条目）")
def search_entries(
    session: ReadSession,
    principal: Reader,
    q: Annotated[str, Query(max_length=500, description="市民的原话或关键词")] = "",
    limit: Annotated[int, Query(ge=1, le=20, description="条数")] = 5,
    category: Annotated[str | None, Query(max_length=20, description="事项分类编码")] = None,
) -> SearchOut:
    from jiesu.knowledge.search import search

    hits = search(q, db_session=session, today=_today(), limit=limit, category=category or None)
    return SearchOut(
        query=q,
        hits=[
            HitOut(
                code=h.code,
                title=h.title,
                version=h.version,
                score=h.score,
                passage=h.passage,
                marks=[(a, b) for a, b in h.marks],
                field=h.field,
                owner_unit_id=h.owner_unit_id,
                category_code=h.category_code,
                valid_to=h.valid_to,
                use_count=h.use_count,
            )
            for h in hits
        ],
    )


@router.get("/entries", response_model=EntryPage, summary="知识库条目列表（按权限过滤）")
def index(
    session: ReadSession,
    principal: Reader,
    q: Annotated[str | None, Query(max_length=100, description="编码或标题中的词")] = None,
    status: Annotated[
        str | None, Query(pattern="^(draft|published|withdrawn|expired)$", description="状态")
    ] = None,
    owner: Annotated[str | None, Query(max_length=40, description="主管单位编码（含下级）")] = None,
    category: Annotated[
        str | None, Query(max_length=20, description="事项分类编码（含下级）")
    ] = None,
    expiring_within_days: Annotated[
        int | None, Query(ge=0, le=3660, description="多少天内到期")
    ] = None,
    demo: Annotated[bool | None, Query(description="演示内容")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> EntryPage:
    owner_id: int | None = None
    if owner:
        owner_id = session.scalar(select(Unit.id).where(Unit.code == owner))
        if owner_id is None:
            raise Invalid(f"没有单位「{owner}」 / no such unit", field="owner")
    rows, total = service.list_entries(
        actor=principal, db_session=session, q=q, status=status, owner_unit_id=owner_id,
        category=category, expiring_within_days=expiring_within_days, demo=demo, limit=limit,
        offset=offset, today=_today(),
    )  # fmt: skip
    names = _Names(session)
    items = [
        EntrySummary(
            **_summary_fields(
                e,
                names,
                session=session,
                sees_work=service.sees_work(principal, e.owner_unit_id, db_session=session),
            )
        )
        for e in rows
    ]
    return EntryPage(items=items, total=total, limit=limit, offset=offset)


@router.get(
    "/entries/{code}", response_model=EntryOut, summary="知识库条目（今日答复的版本及待审版本）"
)
def show(code: EntryCode, session: ReadSession, principal: Reader) -> EntryOut:
    entry = service.get_entry(code, actor=principal, db_session=session)
    return _entry_out(entry, principal, session)


@router.get(
    "/entries/{code}/versions",
    response_model=list[VersionChanges],
    summary="版本记录：谁改了什么",
)
def entry_versions(
    code: EntryCode, session: ReadSession, principal: Reader
) -> list[VersionChanges]:
    entry = service.get_entry(code, actor=principal, db_session=session)
    sees_work = service.sees_work(principal, entry.owner_unit_id, db_session=session)
    names = _Names(session)
    out: list[VersionChanges] = []
    before: dict[str, Any] = {}
    for v in service.versions(entry.id, db_session=session):
        if not sees_work and v.state not in ("published", "superseded"):
            continue  # work in progress: its owner's units and the centre only
        now = service.content_of(v)
        changes = [
            ChangeOut(
                field=c.field,
                label=c.label,
                before=_plain(c.before),
                after=_plain(c.after),
                added=list(c.added),
                removed=list(c.removed),
            )
            for c in workflow.diff(before, now)
        ]
        out.append(VersionChanges(**_version_out(v, names).model_dump(), changes=changes))
        before = now
    return out


# ---- writing and the workflow ----------------------------------------------------------------


@router.post("/entries", status_code=201, response_model=EntryOut, summary="新建知识库条目（草稿）")
def create(body: EntryIn, db: DB, principal: Editor, response: Response) -> EntryOut:
    with db.write() as session:
        content = _content(body, principal, session)
        entry = service.create_entry(content, actor=principal, db_session=session, now=utcnow())
        out = _entry_out(entry, principal, session)
    response.headers["Location"] = f"/api/v1/knowledge/entries/{out.code}"
    return out


@router.put(
    "/entries/{code}/draft", response_model=EntryOut, summary="保存草稿（修改待审版本或新开一版）"
)
def save_draft(code: EntryCode, body: EntryIn, db: DB, principal: Editor) -> EntryOut:
    with db.write() as session:
        entry_id = _entry_id(code, principal, session)
        content = _content(body, principal, session)
        if body.owner is None:  # a new draft keeps its owner unless one is named
            entry = session.get(KnowledgeEntry, entry_id)
            assert entry is not None
            content.owner_unit_id = entry.owner_unit_id
        service.save_draft(entry_id, content, actor=principal, db_session=session, now=utcnow())
        return _entry_out(service.get_entry(entry_id, actor=principal, db_session=session),
                          principal, session)  # fmt: skip


def _after(session: Session, entry_id: int, principal: Principal) -> EntryOut:
    entry = service.get_entry(entry_id, actor=principal, db_session=session)
    return _entry_out(entry, principal, session)


@router.post("/entries/{code}/submit", response_model=EntryOut, summary="提交审核")
def submit(code: EntryCode, db: DB, principal: Editor, body: NoteIn | None = None) -> EntryOut:
    with db.write() as session:
        entry_id = _entry_id(code, principal, session)
        service.submit(entry_id, actor=principal, db_session=session, now=utcnow(),
                       note=body.note if body else None)  # fmt: skip
        return _after(session, entry_id, principal)


@router.post("/entries/{code}/recall", response_model=EntryOut, summary="撤回审核（提交人）")
def recall(code: EntryCode, db: DB, principal: Editor) -> EntryOut:
    with db.write() as session:
        entry_id = _entry_id(code, principal, session)
        service.recall(entry_id, actor=principal, db_session=session, now=utcnow())
        return _after(session, entry_id, principal)


@router.post("/entries/{code}/publish", response_model=EntryOut, summary="审核通过并发布")
def publish(code: EntryCode, db: DB, principal: Reviewer, body: NoteIn | None = None) -> EntryOut:
    with db.write() as session:
        entry_id = _entry_id(code, principal, session)
        service.publish(entry_id, actor=principal, db_session=session, now=utcnow(),
                        note=body.note if body else None)  # fmt: skip
        return _after(session, entry_id, principal)


@router.post("/entries/{code}/return", response_model=EntryOut, summary="退回修改（须写明原因）")
def return_version(
    code: EntryCode, db: DB, principal: Reviewer, body: NoteIn | None = None
) -> EntryOut:
    with db.write() as session:
        entry_id = _entry_id(code, principal, session)
        service.return_version(entry_id, actor=principal, db_session=session, now=utcnow(),
                               note=body.note if body else None)  # fmt: skip
        return _after(session, entry_id, principal)


@router.post("/entries/{code}/withdraw", response_model=EntryOut, summary="下架条目")
def withdraw(code: EntryCode, db: DB, principal: Reviewer, body: NoteIn | None = None) -> EntryOut:
    with db.write() as session:
        entry_id = _entry_id(code, principal, session)
        service.withdraw(entry_id, actor=principal, db_session=session, now=utcnow(),
                         note=body.note if body else None)  # fmt: skip
        return _after(session, entry_id, principal)


@router.post(
    "/entries/{code}/discard",
    status_code=204,
    response_class=Response,
    summary="放弃草稿（从未发布的条目一并删除）",
)
def discard(code: EntryCode, db: DB, principal: Editor) -> Response:
    with db.write() as session:
        entry_id = _entry_id(code, principal, session)
        service.discard_draft(entry_id, actor=principal, db_session=session, now=utcnow())
    return Response(status_code=204)


# ---- flags -----------------------------------------------------------------------------------


@router.post(
    "/entries/{code}/flags", status_code=201, response_model=FlagOut, summary="纠错：条目有误或过时"
)
def flag(code: EntryCode, body: FlagIn, db: DB, principal: Flagger) -> FlagOut:
    with db.write() as session:
        entry_id = _entry_id(code, principal, session)
        f = service.raise_flag(
            entry_id, reason=body.reason, note=body.note, ticket_id=body.ticket_id,
            actor=principal, db_session=session, now=utcnow(),
        )  # fmt: skip
        return _flag_out(f, _Names(session))


@router.get("/flags", response_model=FlagPage, summary="纠错反馈列表")
def flags(
    session: ReadSession,
    principal: Reader,
    status: Annotated[
        str | None, Query(pattern="^(" + "|".join(FLAG_STATUSES) + ")$", description="状态")
    ] = None,
    entry: Annotated[
        str | None, Query(max_length=32, pattern=CODE_PATTERN, description="条目编码")
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> FlagPage:
    entry_id = _entry_id(entry, principal, session) if entry else None
    rows, total = service.list_flags(actor=principal, db_session=session, status=status,
                                     entry_id=entry_id, limit=limit, offset=offset)  # fmt: skip
    names = _Names(session)
    return FlagPage(
        items=[_flag_out(f, names) for f in rows], total=total, limit=limit, offset=offset
    )


@router.post("/flags/{flag_id}/resolve", response_model=FlagOut, summary="处理纠错反馈")
def resolve(flag_id: BigId, body: FlagResolveIn, db: DB, principal: Editor) -> FlagOut:
    with db.write() as session:
        f = service.resolve_flag(flag_id, status=body.status, note=body.note, actor=principal,
                                 db_session=session, now=utcnow())  # fmt: skip
        return _flag_out(f, _Names(session))
