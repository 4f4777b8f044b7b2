"""The knowledge base as a spreadsheet: the list's rows (its filters and visibility, shared with
the console's list page), export to XLSX (xlsxwriter, through `exports/writers.py`) and import
from XLSX (python-calamine).

Import works as `jiesu/imports/` does: `check` reads every row and lists every error as (row,
column, reason) and writes nothing; `commit` writes what `check` accepted in the caller's
transaction, and only when no row is wrong. A row whose code is new creates an entry; a row
whose code exists becomes a new version of that entry; a row equal to the entry's content is
left alone, so exporting and importing the file back changes nothing. The centre publishes
directly (`service.publish_direct`); anyone else's rows become drafts. The change note says 导入.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session, aliased

from jiesu.access.permissions import allows
from jiesu.access.policy import Principal
from jiesu.knowledge import service
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeVersion
from jiesu.knowledge.service import is_centre, visible
from jiesu.org.models import Unit
from jiesu.taxonomy.models import Category

# The spreadsheet's columns: (key, Chinese title, English aliases, width).
COLUMNS: tuple[tuple[str, str, tuple[str, ...], int], ...] = (
    ("code", "编码", ("code",), 12),
    ("title", "标题", ("title",), 30),
    ("answer", "答复口径", ("answer",), 60),
    ("category", "分类编码", ("category", "category_code"), 10),
    ("owner", "主管单位编码", ("owner", "owner_unit", "owner_unit_code", "unit"), 14),
    ("keywords", "关键词", ("keywords",), 24),
    ("questions", "常见问法", ("questions",), 40),
    ("valid_from", "生效日期", ("valid_from",), 12),
    ("valid_to", "失效日期", ("valid_to",), 12),
    ("source", "政策依据", ("source",), 30),
    ("link", "链接", ("link", "url"), 30),
    ("version", "版本", ("version",), 6),
    ("status", "状态", ("status",), 8),
    ("use_count", "使用次数", ("use_count", "uses"), 8),
)
TITLES = {key: title for key, title, _, _ in COLUMNS}
REQUIRED = ("title", "answer", "owner")
READ_ONLY = ("version", "status", "use_count")  # exported for people to read, never imported
STATUS_NAMES = {"draft": "草稿", "published": "已发布", "withdrawn": "已下架", "expired": "已过期"}
VERSION_STATE_NAMES = {"draft": "草稿", "submitted": "待审核", "returned": "已退回",
                       "published": "已发布", "superseded": "已被替代", "discarded": "已放弃"}  # fmt: skip
KEYWORD_SPLIT = re.compile(r"[、,，;；\n\r|]+")
CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,31}")
LINK = re.compile(r"https?://[^\s]+", re.IGNORECASE)
IMPORT_NOTE = "导入"
EXPIRING_DAYS = 30
MAX_ROWS = 20_000

Error = tuple[int, str, str]  # (row as the spreadsheet numbers it, column title, reason)


# ---- who sees what, and the list's filters ------------------------------------------------------


def sees_drafts(actor: Principal) -> bool:
    """Whether the actor works on entries at all (their own unit's, or the centre all): the
    list offers them the status filter."""
    return allows("knowledge.edit", actor.role)


def may_edit(actor: Principal, owner_path: str) -> bool:
    """A department user edits entries owned by their unit or a unit under it; the centre any."""
    if not allows("knowledge.edit", actor.role):
        return False
    return is_centre(actor) or owner_path.startswith(actor.unit_path)


@dataclass
class EntryFilter:
    """The list page's filters (and the export's, from the same query string)."""

    status: str = ""  # an ENTRY status, or "" (published for those who see only published)
    category: str = ""  # a category code: the entry's category or one under it
    owner: str = ""  # a unit code: entries owned by it or a unit under it
    expiring: bool = False  # valid_to within the next 30 days
    demo: str = ""  # "1" demo content only, "0" none of it
    ids: list[int] | None = None  # a search's hits (in their order)


def entry_query(f: EntryFilter, *, actor: Principal, today: date) -> Select[Any]:
    """Entries (with their owner unit) the actor may see under the filter, newest first."""
    owner = aliased(Unit)
    stmt = select(KnowledgeEntry, owner).join(owner, owner.id == KnowledgeEntry.owner_unit_id)
    stmt = visible(stmt, actor, owner)  # published to everyone, the rest to the owner's unit
    if f.status:
        stmt = stmt.where(KnowledgeEntry.status == f.status)
    if f.category:
        stmt = stmt.where(KnowledgeEntry.category_code.startswith(f.category, autoescape=True))
    if f.owner:
        unit = aliased(Unit)
        path = select(unit.path).where(unit.code == f.owner).scalar_subquery()
        stmt = stmt.where(owner.path.startswith(path))
    if f.expiring:
        stmt = stmt.where(
            and_(
                KnowledgeEntry.valid_to >= today,
                KnowledgeEntry.valid_to <= today + timedelta(days=EXPIRING_DAYS),
            )
        )
    if f.demo in ("0", "1"):
        stmt = stmt.where(KnowledgeEntry.demo.is_(f.demo == "1"))
    if f.ids is not None:
        stmt = stmt.where(KnowledgeEntry.id.in_(f.ids or [-1]))
    return stmt.order_by(KnowledgeEntry.updated_at.desc(), KnowledgeEntry.id.desc())


# ---- the content of a row -----------------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    """What the spreadsheet carries of an entry (the columns that import writes)."""

    title: str
    answer: str
    category: str | None
    owner: str
    keywords: tuple[str, ...]
    questions: tuple[str, ...]
    valid_from: date | None
    valid_to: date | None
    source: str | None
    link: str | None


def shown_version(entry: KnowledgeEntry, *, db_session: Session) -> KnowledgeVersion | None:
    """The version a list or an export shows: the answering one, else the one in progress."""
    vid = entry.published_version_id or entry.pending_version_id
    return db_session.get(KnowledgeVersion, vid) if vid else None


def content_of(v: KnowledgeVersion, owner_code: str) -> Content:
    return Content(
        title=v.title, answer=v.answer, category=v.category_code or None, owner=owner_code,
        keywords=tuple(v.keywords or ()), questions=tuple(v.questions or ()),
        valid_from=v.valid_from, valid_to=v.valid_to, source=v.source or None,
        link=v.link or None,
    )  # fmt: skip


def export_columns() -> list[Any]:
    from jiesu.exports.writers import Column

    return [Column(title, width) for _, title, _, width in COLUMNS]


def export_rows(f: EntryFilter, *, actor: Principal, db_session: Session,
                today: date) -> Iterator[Sequence[Any]]:  # fmt: skip
    """One row per entry the list shows, in the columns' order."""
    for entry, owner in db_session.execute(entry_query(f, actor=actor, today=today)):
        v = shown_version(entry, db_session=db_session)
        if v is None:
            continue
        c = content_of(v, owner.code)
        yield (
            entry.code, c.title, c.answer, c.category, c.owner, "、".join(c.keywords),
            "\n".join(c.questions), c.valid_from, c.valid_to, c.source, c.link, v.number,
            STATUS_NAMES.get(entry.status, entry.status), entry.use_count,
        )  # fmt: skip


def write_xlsx(f: EntryFilter, target: Path, *, actor: Principal, db_session: Session,
               today: date) -> int:  # fmt: skip
    """The list as an .xlsx file at `target`; returns the rows written."""
    import shutil

    from jiesu.exports.writers import xlsx_file

    rows = list(export_rows(f, actor=actor, db_session=db_session, today=today))
    made = xlsx_file(export_columns(), rows, sheet="知识库",
                     directory=target.resolve().parent)  # fmt: skip
    shutil.move(made, target)
    return len(rows)


# ---- import: reading and checking ---------------------------------------------------------------


@dataclass
class Row:
    line: int
    code: str | None
    content: Content
    entry_id: int | None = None  # an existing entry: a new version of it
    owner_unit_id: int = 0


@dataclass
class Report:
    rows: int = 0
    errors: list[Error] = field(default_factory=list)
    valid: list[Row] = field(default_factory=list)
    unchanged: int = 0
    created: int = 0
    updated: int = 0
    committed: bool = False

    @property
    def bad_rows(self) -> int:
        return len({line for line, _, _ in self.errors})

    @property
    def new(self) -> int:
        return sum(1 for r in self.valid if r.entry_id is None)

    @property
    def changed(self) -> int:
        return sum(1 for r in self.valid if r.entry_id is not None)


def _key(header: str) -> str | None:
    h = re.sub(r"\s+", "", str(header or "")).lower().lstrip("*")
    for key, title, aliases, _ in COLUMNS:
        if h == title or h in aliases:
            return key
    return None


def read_sheet(data: bytes) -> list[list[Any]]:
    """The first sheet's rows as values (header first). ValueError when it is not a workbook."""
    from python_calamine import CalamineWorkbook

    try:
        book = CalamineWorkbook.from_filelike(io.BytesIO(data))
        return list(book.get_sheet_by_index(0).to_python(skip_empty_area=False))
    except Exception as exc:  # calamine raises its own errors for anything that is not a book
        raise ValueError("不是有效的 Excel（.xlsx）文件 / not a readable workbook") from exc


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return str(v).strip()


DATE_FORMS = (
    re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})"),
    re.compile(r"(\d{4})/(\d{1,2})/(\d{1,2})"),
    re.compile(r"(\d{4})\.(\d{1,2})\.(\d{1,2})"),
    re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日?"),
)


def _day(v: Any) -> date | None:
    """A date cell, an Excel serial number or a written date (2026-01-01, 2026/1/1, 2026年1月1日).
    None when empty; ValueError when it is none of these."""
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        if 1 <= v < 2_958_466:  # Excel's serial days (1900 system)
            return date(1899, 12, 30) + timedelta(days=int(v))
        raise ValueError
    s = str(v).strip()
    if not s:
        return None
    s = s.split(" ")[0].split("T")[0]
    for form in DATE_FORMS:
        m = form.fullmatch(s)
        if m:
            return date(int(m[1]), int(m[2]), int(m[3]))
    raise ValueError


def split_keywords(text: str) -> tuple[str, ...]:
    seen: list[str] = []
    for word in KEYWORD_SPLIT.split(text):
        word = word.strip()
        if word and word not in seen:
            seen.append(word)
    return tuple(seen)


def split_questions(text: str) -> tuple[str, ...]:
    seen: list[str] = []
    for line in text.replace("\r", "\n").split("\n"):
        line = line.strip()
        if line and line not in seen:
            seen.append(line)
    return tuple(seen)


def check(data: bytes, *, actor: Principal, db_session: Session) -> Report:
    """Read the workbook and check every row; nothing is written."""
    report = Report()
    try:
        rows = read_sheet(data)
    except ValueError as exc:
        report.errors.append((1, "文件", str(exc).split(" / ")[0]))
        return report
    if not rows:
        report.errors.append((1, "文件", "工作表是空的"))
        return report
    keys = [_key(h) for h in rows[0]]
    for key in REQUIRED:
        if key not in keys:
            report.errors.append((1, TITLES[key], f"缺少列「{TITLES[key]}」"))
    if report.errors:
        return report
    units = {code: (uid, path) for uid, code, path in
             db_session.execute(select(Unit.id, Unit.code, Unit.path).where(Unit.active))}  # fmt: skip
    categories = set(db_session.scalars(select(Category.code).where(Category.active)))
    seen: dict[str, int] = {}
    for line, values in enumerate(rows[1:], start=2):
        if all(v is None or str(v).strip() == "" for v in values):
            continue
        report.rows += 1
        if report.rows > MAX_ROWS:
            report.errors.append((line, "文件", f"一次最多导入 {MAX_ROWS} 行"))
            break
        cells = {k: v for k, v in zip(keys, values, strict=False) if k}
        row = _check_row(line, cells, actor=actor, units=units, categories=categories,
                         seen=seen, report=report, db_session=db_session)  # fmt: skip
        if row is not None:
            report.valid.append(row)
    return report


def _check_row(line: int, cells: dict[str, Any], *, actor: Principal,
               units: dict[str, tuple[int, str]], categories: set[str], seen: dict[str, int],
               report: Report, db_session: Session) -> Row | None:  # fmt: skip
    errors: list[Error] = []

    def bad(key: str, reason: str) -> None:
        errors.append((line, TITLES[key], reason))

    text = {k: _text(cells.get(k)) for k in TITLES if k not in ("valid_from", "valid_to")}
    for key, value in text.items():  # no column of any database stores a NUL
        if "\x00" in value:
            bad(key, "含有无法识别的控制字符（空字符）")
            text[key] = value.replace("\x00", "")
    code = text["code"] or None
    if code is not None:
        if not CODE.fullmatch(code):
            bad("code", "编码只能由字母、数字、- 和 _ 组成，最多 32 个字符")
        elif code in seen:
            bad("code", f"编码与第 {seen[code]} 行重复")
        else:
            seen[code] = line
    title, answer = text["title"], text["answer"]
    if len(title) < 4 or len(title) > 200:
        bad("title", "标题须为 4 至 200 个字")
    if len(answer) < 20 or len(answer) > 5000:
        bad("answer", "答复口径须为 20 至 5000 个字")
    category = text["category"] or None
    if category is not None and category not in categories:
        bad("category", f"未知的分类编码「{category}」")
    owner = text["owner"]
    found = units.get(owner)
    if not owner:
        bad("owner", "须填写主管单位编码")
    elif found is None:
        bad("owner", f"未知的单位编码「{owner}」")
    elif not may_edit(actor, found[1]):
        bad("owner", f"无权维护「{owner}」的知识条目（只能维护本单位及下级单位的条目）")
    days: dict[str, date | None] = {}
    for key in ("valid_from", "valid_to"):
        try:
            days[key] = _day(cells.get(key))
        except (ValueError, OverflowError):
            bad(key, f"日期无法识别「{_text(cells.get(key))}」，请写作 2026-01-31")
            days[key] = None
        else:
            d = days[key]
            if d is not None and not date(2000, 1, 1) <= d <= date(2100, 12, 31):
                bad(key, "日期须在 2000-01-01 至 2100-12-31 之间")
    if days["valid_from"] and days["valid_to"] and days["valid_to"] < days["valid_from"]:
        bad("valid_to", "失效日期早于生效日期")
    keywords = split_keywords(text["keywords"])
    if any(len(k) > 40 for k in keywords) or len(keywords) > 50:
        bad("keywords", "关键词每个最多 40 字，最多 50 个")
    questions = split_questions(text["questions"])
    if any(len(q) > 200 for q in questions) or len(questions) > 50:
        bad("questions", "常见问法每条最多 200 字，最多 50 条")
    source = text["source"] or None
    if source is not None and len(source) > 300:
        bad("source", "政策依据最多 300 字")
    link = text["link"] or None
    if link is not None and (len(link) > 500 or not LINK.fullmatch(link)):
        bad("link", "链接须以 http:// 或 https:// 开头，最多 500 个字符")
    entry = None
    if code is not None and not errors:
        entry = db_session.scalar(select(KnowledgeEntry).where(KnowledgeEntry.code == code))
        if entry is not None:
            owner_path = db_session.scalar(select(Unit.path).where(Unit.id == entry.owner_unit_id))
            if not may_edit(actor, owner_path or ""):
                bad("code", f"无权修改条目 {code}（它属于其他单位）")
    report.errors.extend(errors)
    if errors or found is None:
        return None
    content = Content(
        title=title, answer=answer, category=category, owner=owner, keywords=keywords,
        questions=questions, valid_from=days["valid_from"], valid_to=days["valid_to"],
        source=source, link=link,
    )  # fmt: skip
    if entry is not None:
        current = shown_version(entry, db_session=db_session)
        if current is not None and _same(current, content, db_session=db_session):
            report.unchanged += 1  # the round trip: the same content is no new version
            return None
    return Row(line, code, content, entry.id if entry else None, found[0])


def _same(v: KnowledgeVersion, c: Content, *, db_session: Session) -> bool:
    owner = db_session.scalar(select(Unit.code).where(Unit.id == v.owner_unit_id)) or ""
    return content_of(v, owner) == c


# ---- import: writing ----------------------------------------------------------------------------


def commit(report: Report, *, actor: Principal, db_session: Session, now: datetime) -> Report:
    """Write the checked rows in the caller's transaction; nothing when any row is wrong."""
    if report.errors:
        return report
    for row in report.valid:
        c = row.content
        content = service.EntryContent(
            title=c.title, answer=c.answer, category_code=c.category,
            owner_unit_id=row.owner_unit_id, keywords=list(c.keywords),
            questions=list(c.questions), valid_from=c.valid_from, valid_to=c.valid_to,
            source=c.source, link=c.link, change_note=IMPORT_NOTE,
        )  # fmt: skip
        if is_centre(actor):
            service.publish_direct(content, actor=actor, db_session=db_session, now=now,
                                   code=row.code, entry_id=row.entry_id)  # fmt: skip
        elif row.entry_id is None:
            service.create_entry(content, actor=actor, db_session=db_session, now=now,
                                 code=row.code)  # fmt: skip
        else:
            service.save_draft(row.entry_id, content, actor=actor, db_session=db_session, now=now)
        if row.entry_id is None:
            report.created += 1
        else:
            report.updated += 1
    report.committed = True
    return report
