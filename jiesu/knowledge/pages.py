"""The knowledge base's console pages (知识库): browse and search, an entry with its versions,
drafting and review, the owner's work (drafts, returns, flags, expiring entries), XLSX import and
export.

Every write goes through `knowledge/service.py` (the same rules as the API: a department edits
its own entries, the centre reviews and publishes), so a page can do nothing the API would
refuse, and answers with the same reasons in Chinese.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased
from starlette.background import BackgroundTask

from jiesu.access.permissions import allows
from jiesu.access.policy import Principal
from jiesu.console.lookup import display_name, options, resolve
from jiesu.console.service import FormValues
from jiesu.console.views import frame
from jiesu.db.base import utcnow
from jiesu.errors import DomainError, Forbidden, Invalid, NotFound
from jiesu.knowledge import service, xlsx
from jiesu.knowledge.models import (
    ENTRY_STATUSES,
    FLAG_REASONS,
    KnowledgeEntry,
    KnowledgeFlag,
    KnowledgeVersion,
)
from jiesu.org.models import Unit, User
from jiesu.settings import city_tz, get_settings
from jiesu.taxonomy.models import Category
from jiesu.web.deps import DB, ReadSession, require_page
from jiesu.web.params import SmallId, form_page
from jiesu.web.templating import render, zh

router = APIRouter(prefix="/console/knowledge", include_in_schema=False)


def page(permission: str) -> Any:
    return Annotated[Principal, Depends(require_page(permission))]


Reader = page("knowledge.read")
Editor = page("knowledge.edit")
Reviewer = page("knowledge.review")
Importer = page("knowledge.import")

PAGE_SIZE = 20
SEARCH_LIMIT = 50
MINE_LIMIT = 100
CODE_PATH = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,31}")
FIELD_LABELS = {
    "title": "标题", "answer": "答复口径", "category_code": "分类", "owner_unit_id": "主管单位",
    "keywords": "关键词", "questions": "常见问法", "valid_from": "生效日期",
    "valid_to": "失效日期", "source": "政策依据", "link": "链接", "change_note": "修改说明",
}  # fmt: skip
FLAG_STATUS_NAMES = {"open": "待处理", "fixed": "已修正", "dismissed": "不采纳"}
DONE = {
    "saved": "草稿已保存",
    "submit": "已提交审核",
    "publish": "已发布",
    "return": "已退回修改",
    "withdraw": "已下架",
    "discard": "草稿已放弃",
    "recall": "已撤回审核，可继续修改",
    "resolved": "已处理该反馈",
    "imported": "导入完成",
}


def today_now() -> tuple[date, Any]:
    now = utcnow()
    return now.astimezone(city_tz()).date(), now


def _frame(request: Request, actor: Principal, session: Session, *, title: str,
           **context: Any) -> dict[str, Any]:  # fmt: skip
    ctx = frame(request, actor, session, title=title, **context)
    done = request.query_params.get("done")
    if done in DONE:
        ctx["flash"] = {"kind": "ok", "text": DONE[done]}
    ctx.update(
        STATUS_NAMES=xlsx.STATUS_NAMES, VERSION_STATE_NAMES=xlsx.VERSION_STATE_NAMES,
        FLAG_REASONS=FLAG_REASONS, FLAG_STATUS_NAMES=FLAG_STATUS_NAMES,
        may_review=allows("knowledge.review", actor.role),
        may_edit_any=allows("knowledge.edit", actor.role),
        may_import=allows("knowledge.import", actor.role),
        counts=work_counts(actor, db_session=session),
    )  # fmt: skip
    return ctx


def work_counts(actor: Principal, *, db_session: Session) -> dict[str, int]:
    """The tabs' badges: versions waiting for the centre (待审核); for the owner's page, the
    returned versions and open flags of the actor's units (the centre: all)."""
    counts: dict[str, int] = {}
    if allows("knowledge.review", actor.role):
        counts["review"] = db_session.scalar(
            select(func.count()).select_from(KnowledgeVersion)
            .where(KnowledgeVersion.state == "submitted")
        ) or 0  # fmt: skip
    if allows("knowledge.edit", actor.role):
        owner = aliased_owner()
        scope = [] if service.is_centre(actor) else [owner.path.startswith(actor.unit_path)]
        returned = db_session.scalar(
            select(func.count()).select_from(KnowledgeEntry)
            .join(owner, owner.id == KnowledgeEntry.owner_unit_id)
            .join(KnowledgeVersion, KnowledgeVersion.id == KnowledgeEntry.pending_version_id)
            .where(KnowledgeVersion.state == "returned", *scope)
        ) or 0  # fmt: skip
        flags = db_session.scalar(
            select(func.coalesce(func.sum(KnowledgeEntry.open_flags), 0))
            .join(owner, owner.id == KnowledgeEntry.owner_unit_id).where(*scope)
        ) or 0  # fmt: skip
        counts["mine"] = int(returned) + int(flags)
    return counts


def _unit_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(ids))).all())


def _user_names(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    return dict(session.execute(select(User.id, User.name).where(User.id.in_(wanted))).all())


def _category_names(session: Session) -> dict[str, str]:
    return dict(session.execute(select(Category.code, Category.name)).all())


# ---- the list -----------------------------------------------------------------------------------


def _list_filter(request: Request, actor: Principal) -> tuple[xlsx.EntryFilter, dict[str, str]]:
    q = request.query_params
    args = {k: q.get(k, "")[:100].strip() for k in
            ("q", "status", "category", "owner", "expiring", "demo")}  # fmt: skip
    f = xlsx.EntryFilter()
    if args["status"] in ENTRY_STATUSES and xlsx.sees_drafts(actor):
        f.status = args["status"]
    else:
        args["status"] = ""
    f.category = args["category"][:20]
    f.owner = args["owner"].split(" ")[0][:40]
    f.expiring = args["expiring"] == "1"
    f.demo = args["demo"] if args["demo"] in ("0", "1") else ""
    return f, args


def _search(query: str, f: xlsx.EntryFilter, *, session: Session, today: date) -> list[Any]:
    from jiesu.knowledge.search import search

    owner_id = None
    if f.owner:
        owner_id = session.scalar(select(Unit.id).where(Unit.code == f.owner)) or -1
    return search(query, db_session=session, today=today, limit=SEARCH_LIMIT,
                  category=f.category or None, owner_unit_id=owner_id)  # fmt: skip


@router.get("", response_class=HTMLResponse)
def list_page(request: Request, actor: Reader, session: ReadSession) -> Response:
    today, _ = today_now()
    f, args = _list_filter(request, actor)
    page_no = form_page(request.query_params.get("page"))
    hits: dict[int, Any] = {}
    if args["q"]:
        found = _search(args["q"], f, session=session, today=today)
        hits = {h.entry_id: h for h in found}
        f.ids = list(hits)
    stmt = xlsx.entry_query(f, actor=actor, today=today)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    if hits:  # the search's order (relevance), all on one page
        rows = sorted(session.execute(stmt).all(), key=lambda r: list(hits).index(r[0].id))
        pages = 1
    else:
        rows = list(session.execute(stmt.limit(PAGE_SIZE).offset((page_no - 1) * PAGE_SIZE)))
        pages = max(1, -(-total // PAGE_SIZE))
    keep = {k: v for k, v in args.items() if v}
    query = "&".join(f"{k}={quote(v)}" for k, v in keep.items())
    owners = session.execute(
        select(Unit.code, Unit.name)
        .where(Unit.id.in_(select(KnowledgeEntry.owner_unit_id).distinct()))
        .order_by(Unit.code)
    ).all()
    categories = session.execute(
        select(Category.code, Category.name).where(Category.parent_id.is_(None), Category.active)
        .order_by(Category.code)
    ).all()  # fmt: skip
    ctx = _frame(
        request, actor, session, title="知识库", rows=rows, hits=hits, total=total,
        page=page_no, pages=pages, args=args, query=query, owners=owners,
        categories=categories, category_names=_category_names(session),
        sees_drafts=xlsx.sees_drafts(actor), today=today,
        soon=today + timedelta(days=xlsx.EXPIRING_DAYS),
    )  # fmt: skip
    return render(request, "knowledge/list.html", ctx)


@router.get("/export.xlsx")
def export_xlsx(request: Request, actor: Reader, db: DB) -> Response:
    """The list as it is filtered, every page, as an Excel file (the import's own columns)."""
    from jiesu.auth.service import audit
    from jiesu.web.deps import client_ip

    today, _ = today_now()
    f, args = _list_filter(request, actor)
    folder = Path(tempfile.mkdtemp(prefix="jiesu-kb-"))
    target = folder / "knowledge.xlsx"
    with db.read() as session:
        if args["q"]:
            f.ids = [h.entry_id for h in _search(args["q"], f, session=session, today=today)]
        xlsx.write_xlsx(f, target, actor=actor, db_session=session, today=today)
    with db.write() as session:
        audit("export", db_session=session, user=session.get(User, actor.user_id),
              ip=client_ip(request), list="knowledge", format="xlsx",
              filters={k: v for k, v in args.items() if v})  # fmt: skip

    def clean() -> None:
        target.unlink(missing_ok=True)
        folder.rmdir()

    name = f"知识库-{today.isoformat()}.xlsx"
    return FileResponse(
        target, filename=name, background=BackgroundTask(clean),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )  # fmt: skip


# ---- the owner's work and the review queue ------------------------------------------------------


@router.get("/mine", response_class=HTMLResponse)
def mine_page(request: Request, actor: Editor, session: ReadSession) -> Response:
    """本单位知识库: drafts and returned versions, open flags, entries expiring or expired."""
    today, _ = today_now()
    owner = aliased_owner()
    base = select(KnowledgeEntry).join(owner, owner.id == KnowledgeEntry.owner_unit_id)
    if not service.is_centre(actor):
        base = base.where(owner.path.startswith(actor.unit_path))
    work = session.execute(
        base.add_columns(KnowledgeVersion)
        .join(KnowledgeVersion, KnowledgeVersion.id == KnowledgeEntry.pending_version_id)
        .where(KnowledgeVersion.state.in_(("draft", "returned", "submitted")))
        .order_by(KnowledgeVersion.updated_at.desc())
        .limit(MINE_LIMIT)
    ).all()
    flags = session.execute(
        base.add_columns(KnowledgeFlag)
        .join(KnowledgeFlag, KnowledgeFlag.entry_id == KnowledgeEntry.id)
        .where(KnowledgeFlag.status == "open")
        .order_by(KnowledgeFlag.raised_at)
        .limit(MINE_LIMIT)
    ).all()
    soon = today + timedelta(days=xlsx.EXPIRING_DAYS)
    expiring = session.scalars(
        base.where(KnowledgeEntry.status == "published", KnowledgeEntry.valid_to >= today,
                   KnowledgeEntry.valid_to <= soon)
        .order_by(KnowledgeEntry.valid_to).limit(MINE_LIMIT)
    ).all()  # fmt: skip
    expired = session.scalars(
        base.where(KnowledgeEntry.status == "expired")
        .order_by(KnowledgeEntry.valid_to.desc()).limit(MINE_LIMIT)
    ).all()  # fmt: skip
    returned = sum(1 for _, v in work if v.state == "returned")
    ctx = _frame(
        request, actor, session, title="本单位知识库", work=work, flags=flags,
        expiring=expiring, expired=expired, returned=returned, today=today,
        users=_user_names(session, {f.raised_by_id for _, f in flags}),
    )  # fmt: skip
    return render(request, "knowledge/mine.html", ctx)


def aliased_owner() -> Any:
    return aliased(Unit)


def _content_dict(v: KnowledgeVersion | None) -> dict[str, Any]:
    from jiesu.knowledge.service import content_of

    return content_of(v) if v is not None else {}


def changes(old: KnowledgeVersion | None, new: KnowledgeVersion, *, units: dict[int, str],
            categories: dict[str, str]) -> list[dict[str, Any]]:  # fmt: skip
    """What `new` changed against `old`, as the page shows it: field name, before, after, and
    for list fields what was added and removed (`workflow.diff`)."""
    from jiesu.knowledge.workflow import diff

    def shown(name: str, value: Any) -> Any:
        if value is None or value == "" or value == []:
            return ""
        if name == "owner_unit_id":
            return units.get(value, str(value))
        if name == "category_code":  # by its name (a bare code means nothing to a reader)
            return categories.get(value) or value
        if isinstance(value, date):
            return value.isoformat()
        return value

    out = []
    for c in diff(_content_dict(old), _content_dict(new)):
        name = str(c.field)
        out.append({
            "field": name, "label": FIELD_LABELS.get(name, name),
            "before": shown(name, getattr(c, "before", None)),
            "after": shown(name, getattr(c, "after", None)),
            "added": list(getattr(c, "added", None) or []),
            "removed": list(getattr(c, "removed", None) or []),
        })  # fmt: skip
    return out


@router.get("/review", response_class=HTMLResponse)
def review_page(request: Request, actor: Reviewer, session: ReadSession) -> Response:
    """待审核: submitted versions, oldest first, each with what it changes."""
    rows = session.execute(
        select(KnowledgeVersion, KnowledgeEntry)
        .join(KnowledgeEntry, KnowledgeEntry.id == KnowledgeVersion.entry_id)
        .where(KnowledgeVersion.state == "submitted")
        .order_by(KnowledgeVersion.submitted_at, KnowledgeVersion.id)
        .limit(MINE_LIMIT)
    ).all()
    published = {
        v.entry_id: v
        for v in session.scalars(
            select(KnowledgeVersion).where(
                KnowledgeVersion.id.in_(
                    [e.published_version_id for _, e in rows if e.published_version_id] or [-1]
                )
            )
        )
    }
    units = _unit_names(session, {v.owner_unit_id for v, _ in rows}
                        | {v.owner_unit_id for v in published.values()})  # fmt: skip
    categories = _category_names(session)
    items = [
        {"v": v, "e": e, "old": published.get(e.id),
         "changes": changes(published.get(e.id), v, units=units, categories=categories)}
        for v, e in rows
    ]  # fmt: skip
    ctx = _frame(request, actor, session, title="知识库待审核", items=items, units=units,
                 users=_user_names(session, {v.author_id for v, _ in rows}))  # fmt: skip
    return render(request, "knowledge/review.html", ctx)


# ---- import -------------------------------------------------------------------------------------


def _upload_dir() -> Path:
    return get_settings().var_dir / "knowledge_imports"


@router.get("/import", response_class=HTMLResponse)
def import_page(request: Request, actor: Importer, session: ReadSession) -> Response:
    ctx = _frame(request, actor, session, title="知识库导入", report=None, digest="",
                 columns=xlsx.COLUMNS)  # fmt: skip
    return render(request, "knowledge/import.html", ctx)


@router.post("/import", response_class=HTMLResponse)
async def import_check(request: Request, actor: Importer, db: DB) -> Response:
    """Upload → the check's report (nothing written); a clean file can then be committed."""
    form = await request.form()
    upload = form.get("file")
    data = await upload.read() if upload is not None and hasattr(upload, "read") else b""
    digest = ""
    if data:
        digest = hashlib.sha256(data).hexdigest()
        folder = _upload_dir()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{digest}.xlsx").write_bytes(data)
    with db.read() as session:
        report = xlsx.check(data, actor=actor, db_session=session) if data else None
        ctx = _frame(request, actor, session, title="知识库导入", report=report,
                     digest=digest if report and not report.errors else "",
                     columns=xlsx.COLUMNS)  # fmt: skip
        if not data:
            ctx["flash"] = {"kind": "error", "text": "请选择要导入的 Excel 文件"}
    status = 422 if not data or (report and report.errors) else 200
    return render(request, "knowledge/import.html", ctx, status_code=status)


@router.post("/import/commit", response_class=HTMLResponse)
async def import_commit(request: Request, actor: Importer, db: DB) -> Response:
    form = FormValues(list((await request.form()).multi_items()))  # type: ignore[arg-type]
    digest = form.first("digest")
    path = _upload_dir() / f"{digest}.xlsx"
    if not re.fullmatch(r"[0-9a-f]{64}", digest) or not path.exists():
        with db.read() as session:
            ctx = _frame(request, actor, session, title="知识库导入", report=None, digest="",
                         columns=xlsx.COLUMNS)  # fmt: skip
        ctx["flash"] = {"kind": "error", "text": "上传的文件已失效，请重新上传"}
        return render(request, "knowledge/import.html", ctx, status_code=422)
    data = path.read_bytes()
    _, now = today_now()
    try:
        with db.write() as session:
            report = xlsx.check(data, actor=actor, db_session=session)
            if not report.errors:
                xlsx.commit(report, actor=actor, db_session=session, now=now)
    except DomainError as exc:
        with db.read() as session:
            ctx = _frame(request, actor, session, title="知识库导入", report=None, digest="",
                         columns=xlsx.COLUMNS)  # fmt: skip
        ctx["flash"] = {"kind": "error", "text": zh(exc.message)}
        return render(request, "knowledge/import.html", ctx, status_code=exc.status)
    if report.committed:
        path.unlink(missing_ok=True)
    with db.read() as session:
        ctx = _frame(request, actor, session, title="知识库导入", report=report, digest="",
                     columns=xlsx.COLUMNS)  # fmt: skip
    if report.committed:
        ctx["flash"] = {"kind": "ok", "text": f"导入完成：新建 {report.created} 条，更新 "
                        f"{report.updated} 条，未变 {report.unchanged} 条"}  # fmt: skip
    return render(request, "knowledge/import.html", ctx, status_code=200 if report.committed
                  else 422)  # fmt: skip


# ---- the draft form -----------------------------------------------------------------------------

FORM_FIELDS = ("title", "answer", "category_code", "owner", "keywords", "questions",
               "valid_from", "valid_to", "source", "link", "change_note")  # fmt: skip


def _form_context(request: Request, actor: Principal, session: Session, *,
                  entry: KnowledgeEntry | None, form: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    owner_fixed = not service.is_centre(actor)
    picked = {
        "category_code": display_name(form.get("category_code"), "categories",
                                      db_session=session),
        "owner": display_name(form.get("owner"), "units", db_session=session),
    }  # fmt: skip
    owner_name = ""
    if owner_fixed:
        uid = entry.owner_unit_id if entry else actor.unit_id
        owner_name = session.scalar(select(Unit.name).where(Unit.id == uid)) or ""
    title = f"编辑：{entry.title}" if entry else "新建知识条目"
    return _frame(request, actor, session, title=title, entry=entry, form=form, picked=picked,
                  owner_fixed=owner_fixed, owner_name=owner_name)  # fmt: skip


def _form_of(v: KnowledgeVersion, session: Session) -> dict[str, str]:
    owner = session.scalar(select(Unit.code).where(Unit.id == v.owner_unit_id)) or ""
    return {
        "title": v.title, "answer": v.answer, "category_code": v.category_code or "",
        "owner": owner, "keywords": "\n".join(v.keywords or []),
        "questions": "\n".join(v.questions or []),
        "valid_from": v.valid_from.isoformat() if v.valid_from else "",
        "valid_to": v.valid_to.isoformat() if v.valid_to else "", "source": v.source or "",
        "link": v.link or "", "change_note": "",
    }  # fmt: skip


def _day(text: str, field: str, label: str) -> date | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{label}：请按 2026-01-31 的格式填写日期", field=field) from None
    if not date(2000, 1, 1) <= day <= date(2100, 12, 31):
        raise Invalid(f"{label}：日期须在 2000-01-01 至 2100-12-31 之间", field=field)
    return day


def content_from_form(form: dict[str, str], *, actor: Principal, session: Session,
                      entry: KnowledgeEntry | None) -> Any:  # fmt: skip
    """The form as an `EntryContent`; Invalid (field named) for what cannot be read."""
    from jiesu.knowledge.service import EntryContent

    category = None
    if form.get("category_code"):
        category = resolve(form["category_code"], options("categories", db_session=session),
                           kind="categories", field="category_code", label="分类")  # fmt: skip
    if not service.is_centre(actor):
        owner_id = entry.owner_unit_id if entry else actor.unit_id
    elif form.get("owner"):
        code = resolve(form["owner"], options("units", db_session=session), kind="units",
                       field="owner", label="主管单位")  # fmt: skip
        owner_id = session.scalar(select(Unit.id).where(Unit.code == code)) or 0
    elif entry is not None:
        owner_id = entry.owner_unit_id
    else:
        raise Invalid("主管单位：请选择主管单位", field="owner")
    for key, limit, label in (("title", 200, "标题"), ("answer", 5000, "答复口径"),
                              ("source", 300, "政策依据"), ("link", 500, "链接"),
                              ("change_note", 500, "修改说明")):  # fmt: skip
        if len(form.get(key, "")) > limit:
            raise Invalid(f"{label}：最多 {limit} 个字", field=key)
    if not form.get("title"):
        raise Invalid("标题：请填写标题", field="title")
    if not form.get("answer"):
        raise Invalid("答复口径：请填写答复口径", field="answer")
    link = form.get("link") or None
    if link and not xlsx.LINK.fullmatch(link):
        raise Invalid("链接：须以 http:// 或 https:// 开头", field="link")
    return EntryContent(
        title=form["title"], answer=form["answer"], category_code=category,
        owner_unit_id=owner_id, keywords=list(xlsx.split_keywords(form.get("keywords", ""))),
        questions=list(xlsx.split_questions(form.get("questions", ""))),
        valid_from=_day(form.get("valid_from", ""), "valid_from", "生效日期"),
        valid_to=_day(form.get("valid_to", ""), "valid_to", "失效日期"),
        source=form.get("source") or None, link=link,
        change_note=form.get("change_note") or None,
    )  # fmt: skip


async def _posted(request: Request) -> dict[str, str]:
    form = FormValues(list((await request.form()).multi_items()))  # type: ignore[arg-type]
    return {k: form.first(k)[:6000] for k in FORM_FIELDS}


@router.get("/new", response_class=HTMLResponse)
def new_page(request: Request, actor: Editor, session: ReadSession) -> Response:
    ctx = _form_context(request, actor, session, entry=None, form={})
    return render(request, "knowledge/edit.html", ctx)


@router.post("/new", response_class=HTMLResponse)
async def new_entry(request: Request, actor: Editor, db: DB) -> Response:
    form = await _posted(request)
    _, now = today_now()
    try:
        with db.write() as session:
            content = content_from_form(form, actor=actor, session=session, entry=None)
            entry = service.create_entry(content, actor=actor, db_session=session, now=now)
            code = entry.code
    except DomainError as exc:
        with db.read() as session:
            ctx = _form_context(request, actor, session, entry=None, form=form)
        ctx["flash"] = {"kind": "error", "text": zh(exc.message)}
        ctx["error_field"] = getattr(exc, "field", None)
        return render(request, "knowledge/edit.html", ctx, status_code=exc.status)
    return RedirectResponse(f"/console/knowledge/{quote(code)}?done=saved", status_code=303)


# ---- flags --------------------------------------------------------------------------------------


@router.post("/flags/{flag_id}/resolve", response_class=HTMLResponse)
async def resolve_flag(flag_id: SmallId, request: Request, actor: Editor, db: DB) -> Response:
    """The owner answers a flag: 已修正 (fixed) or 不采纳 (dismissed), with a note."""
    form = FormValues(list((await request.form()).multi_items()))  # type: ignore[arg-type]
    status, note = form.first("status"), form.first("note")[:1000]
    back = form.first("back")
    safe = back.startswith("/console/knowledge") and "//" not in back and "\\" not in back
    back = back if safe else ""
    _, now = today_now()
    try:
        if status not in ("fixed", "dismissed"):
            raise Invalid("请选择处理结果：已修正或不采纳", field="status")
        if not note:
            raise Invalid("请填写处理说明", field="note")
        with db.write() as session:
            flag = service.resolve_flag(flag_id, status=status, note=note, actor=actor,
                                        db_session=session, now=now)  # fmt: skip
            code = session.scalar(select(KnowledgeEntry.code)
                                  .where(KnowledgeEntry.id == flag.entry_id))  # fmt: skip
    except DomainError as exc:
        with db.read() as session:
            flag_row = session.get(KnowledgeFlag, flag_id)
            entry = session.get(KnowledgeEntry, flag_row.entry_id) if flag_row else None
            if entry is None or isinstance(exc, NotFound):
                raise
            return _entry_page(request, actor, session, entry.code, error=exc)
    return RedirectResponse(back or f"/console/knowledge/{quote(code or '')}?done=resolved",
                            status_code=303)  # fmt: skip


# ---- the entry ----------------------------------------------------------------------------------


def _entry(code: str, actor: Principal, session: Session) -> KnowledgeEntry:
    if not CODE_PATH.fullmatch(code):
        raise NotFound("没有这个知识条目 / no such entry")
    entry: KnowledgeEntry = service.get_entry(code, actor=actor, db_session=session)
    return entry


def _entry_page(request: Request, actor: Principal, session: Session, code: str, *,
                error: DomainError | None = None, note: str = "") -> Response:  # fmt: skip
    today, _ = today_now()
    entry = _entry(code, actor, session)
    owner = session.get(Unit, entry.owner_unit_id)
    answering = service.answering_version(entry, db_session=session, today=today)
    published = session.get(KnowledgeVersion, entry.published_version_id) if (
        entry.published_version_id) else None  # fmt: skip
    shown = answering or published
    pending = session.get(KnowledgeVersion, entry.pending_version_id) if (
        entry.pending_version_id) else None  # fmt: skip
    editable = xlsx.may_edit(actor, owner.path if owner else "")
    sees_pending = editable or service.is_centre(actor)
    if shown is None and sees_pending:
        shown = pending
    history = list(service.versions(entry.id, db_session=session))
    history.sort(key=lambda v: v.number)
    if not sees_pending:
        history = [v for v in history if v.state in ("published", "superseded")]
    units = _unit_names(session, {v.owner_unit_id for v in history} | {entry.owner_unit_id})
    categories = _category_names(session)
    rows, previous = [], None
    for v in history:
        rows.append({"v": v, "changes": changes(previous, v, units=units,
                                                categories=categories)})  # fmt: skip
        if v.state in ("published", "superseded"):
            previous = v
    rows.reverse()  # newest first
    flags = list(session.scalars(
        select(KnowledgeFlag).where(KnowledgeFlag.entry_id == entry.id)
        .order_by(KnowledgeFlag.raised_at.desc()).limit(50)
    ))  # fmt: skip
    users = _user_names(session, {v.author_id for v in history} | {v.reviewed_by_id for v in
                        history} | {f.raised_by_id for f in flags}
                        | {f.resolved_by_id for f in flags})  # fmt: skip
    state = pending.state if pending is not None else None
    review = service.is_centre(actor)
    acts = {
        "edit": editable,
        "submit": editable and state in ("draft", "returned"),
        "discard": editable and state in ("draft", "returned"),
        "recall": editable
        and state == "submitted"
        and pending is not None
        and pending.author_id == actor.user_id,
        "publish": review and state == "submitted",
        "return": review and state == "submitted",
        "withdraw": review and entry.status in ("published", "expired"),
    }
    ctx = _frame(
        request, actor, session, title=entry.title, entry=entry, owner=owner,
        shown=shown, answering=answering, pending=pending if sees_pending else None,
        rows=rows, flags=flags, users=users, units=units, categories=categories,
        acts=acts, sees_pending=sees_pending, editable=editable, today=today, note=note,
    )  # fmt: skip
    if error is not None:
        ctx["flash"] = {"kind": "error", "text": zh(error.message)}
    return render(request, "knowledge/entry.html", ctx,
                  status_code=error.status if error else 200)  # fmt: skip


@router.get("/{code}", response_class=HTMLResponse)
def entry_page(code: str, request: Request, actor: Reader, session: ReadSession) -> Response:
    return _entry_page(request, actor, session, code)


@router.get("/{code}/edit", response_class=HTMLResponse)
def edit_page(code: str, request: Request, actor: Editor, session: ReadSession) -> Response:
    entry = _entry(code, actor, session)
    owner_path = session.scalar(select(Unit.path).where(Unit.id == entry.owner_unit_id)) or ""
    if not xlsx.may_edit(actor, owner_path):
        raise Forbidden("只能编辑本单位及下级单位的知识条目")
    vid = entry.pending_version_id or entry.published_version_id
    v = session.get(KnowledgeVersion, vid) if vid else None
    form = _form_of(v, session) if v is not None else {}
    ctx = _form_context(request, actor, session, entry=entry, form=form)
    return render(request, "knowledge/edit.html", ctx)


@router.post("/{code}/edit", response_class=HTMLResponse)
async def edit_entry(code: str, request: Request, actor: Editor, db: DB) -> Response:
    form = await _posted(request)
    _, now = today_now()
    try:
        with db.write() as session:
            entry = _entry(code, actor, session)
            content = content_from_form(form, actor=actor, session=session, entry=entry)
            service.save_draft(entry.id, content, actor=actor, db_session=session, now=now)
    except DomainError as exc:
        with db.read() as session:
            entry = _entry(code, actor, session)
            ctx = _form_context(request, actor, session, entry=entry, form=form)
        ctx["flash"] = {"kind": "error", "text": zh(exc.message)}
        ctx["error_field"] = getattr(exc, "field", None)
        return render(request, "knowledge/edit.html", ctx, status_code=exc.status)
    return RedirectResponse(f"/console/knowledge/{quote(code)}?done=saved", status_code=303)


async def _act(code: str, action: str, request: Request, actor: Principal, db: Any) -> Response:
    form = FormValues(list((await request.form()).multi_items()))  # type: ignore[arg-type]
    note = form.first("note")[:500]
    _, now = today_now()
    back_to = ""
    try:
        with db.write() as session:
            entry = _entry(code, actor, session)
            if action == "recall":
                service.recall(entry.id, actor=actor, db_session=session, now=now)
            elif action == "submit":
                service.submit(entry.id, actor=actor, db_session=session, now=now,
                               note=note or None)  # fmt: skip
            elif action == "discard":
                gone = entry.published_version_id is None  # a never-published entry goes
                service.discard_draft(entry.id, actor=actor, db_session=session, now=now)
                if gone:
                    back_to = "/console/knowledge/mine?done=discard"
            elif action == "publish":
                service.publish(entry.id, actor=actor, db_session=session, now=now,
                                note=note or None)  # fmt: skip
            elif action in ("return", "withdraw"):
                if not note:
                    raise Invalid("请填写说明（退回原因或下架原因）", field="note")
                do = service.return_version if action == "return" else service.withdraw
                do(entry.id, actor=actor, db_session=session, now=now, note=note)
    except DomainError as exc:
        with db.read() as session:
            return _entry_page(request, actor, session, code, error=exc, note=note)
    back = form.first("back")
    if back_to:
        return RedirectResponse(back_to, status_code=303)
    if back == "review":
        return RedirectResponse(f"/console/knowledge/review?done={action}", status_code=303)
    return RedirectResponse(f"/console/knowledge/{quote(code)}?done={action}", status_code=303)


@router.post("/{code}/submit", response_class=HTMLResponse)
async def submit(code: str, request: Request, actor: Editor, db: DB) -> Response:
    return await _act(code, "submit", request, actor, db)


@router.post("/{code}/recall", response_class=HTMLResponse)
async def recall(code: str, request: Request, actor: Editor, db: DB) -> Response:
    """The author takes a submitted version back to draft (撤回审核)."""
    return await _act(code, "recall", request, actor, db)


@router.post("/{code}/discard", response_class=HTMLResponse)
async def discard(code: str, request: Request, actor: Editor, db: DB) -> Response:
    return await _act(code, "discard", request, actor, db)


@router.post("/{code}/publish", response_class=HTMLResponse)
async def publish(code: str, request: Request, actor: Reviewer, db: DB) -> Response:
    return await _act(code, "publish", request, actor, db)


@router.post("/{code}/return", response_class=HTMLResponse)
async def return_(code: str, request: Request, actor: Reviewer, db: DB) -> Response:
    return await _act(code, "return", request, actor, db)


@router.post("/{code}/withdraw", response_class=HTMLResponse)
async def withdraw(code: str, request: Request, actor: Reviewer, db: DB) -> Response:
    return await _act(code, "withdraw", request, actor, db)
