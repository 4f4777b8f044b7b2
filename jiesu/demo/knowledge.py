"""The demo knowledge base (知识库, issue 16): entries written for the demo city, loaded from the
pack's `demo_knowledge/*.yaml`, and the entry that answers a demo consultation.

`load_demo_base` validates every file (unique codes, known owner and category, lengths: errors
name the file and the entry), then publishes each new entry through the knowledge service as the
centre's admin, marked demo content, and gives the base a realistic past: some entries updated by
their owner and published again by a supervisor, a few with a version under review, a few flagged
by an agent, a few expiring within 30 days. Idempotent by code: a second run changes nothing.

In a file, `valid_to: expires_soon` is an entry expiring soon after the load: the loader puts
its last day 9 to 28 days after the load's city date, so the owner's 30-day warning shows
whatever day the demo is set up.

`DemoBase` is the published base as plain values for the history's stories (`demo/story.py`,
pure, pickled to worker processes): `entry_for` / `answer_for` name the entry that answers a
consultation, by category, then by the entry's distinctive keywords found in the request's text;
a consultation no entry fits is answered without one (those feed the base's suggestions).
"""

from __future__ import annotations

import contextlib
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from jiesu.db.engine import Database

EXPIRES_SOON = "expires_soon"
EXPIRY_OFFSETS = (9, 16, 23, 28)  # days after the load, in turn, for `valid_to: expires_soon`
CODE = re.compile(r"^KB-[A-Z]{2,3}-\d{3}$")
ANSWER_CHARS = (120, 400)
QUESTIONS = (2, 5)
KEYWORDS = (1, 8)
LINKED_SHARE = 0.9  # consultations an entry fits, answered with it (the rest from memory)
COMMON_AFTER = 3  # a keyword shared by this many entries of a category tells nothing apart
MIN_SCORE = 4  # an entry fits a consultation from this score (see DemoBase.best)
# Consultations in a category with entries that ask one of the questions the entries were
# written for (the rest come from the pack's demo texts): every entry gets asked, not only the
# few that the pack's texts happen to name.
ASKED_SHARE = 0.6
ASKING = ("", "您好，", "请问", "我想咨询一下，", "问一下，", "你好，我想问问", "打扰一下，")
THANKS = ("", "", "谢谢。", "麻烦给说一下。", "谢谢您。")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DemoKnowledgeError(ValueError):
    """The demo entries do not validate; the message lists every problem, file and entry."""


@dataclass(frozen=True)
class DemoItem:
    """One entry as written in a file."""

    file: str
    code: str
    title: str
    category: str
    owner: str
    keywords: list[str]
    questions: list[str]
    answer: str
    valid_from: date | None
    valid_to: date | str | None  # a date, or EXPIRES_SOON
    source: str | None
    link: str | None


def read_items(pack_dir: Path) -> tuple[list[DemoItem], list[str]]:
    """Every entry of `pack_dir/demo_knowledge/*.yaml` (files in name order) and the problems
    found reading them (shape, lengths, duplicate codes); owners and categories are checked
    against the database by `validate`."""
    items: list[DemoItem] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for path in sorted((pack_dir / "demo_knowledge").glob("*.yaml")):
        try:
            raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or []
        except yaml.YAMLError as exc:
            problems.append(f"{path.name}: not YAML: {exc}")
            continue
        if not isinstance(raw, list):
            problems.append(f"{path.name}: a list of entries expected")
            continue
        for n, row in enumerate(raw, 1):
            where = f"{path.name}: entry {n}"
            if not isinstance(row, dict):
                problems.append(f"{where}: a mapping expected")
                continue
            code = str(row.get("code") or "")
            if code:
                where = f"{path.name}: {code}"
            item, errors = _item(path.name, code, row)
            problems.extend(f"{where}: {e}" for e in errors)
            if code in seen:
                problems.append(f"{where}: code already used in {seen[code]}")
            elif code:
                seen[code] = path.name
            if item is not None and not errors:
                items.append(item)
    return items, problems


def _text_list(value: Any) -> list[str] | None:
    """A list of non-empty texts (a bare number such as 95598 read as its text)."""
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        return None
    texts = [str(v).strip() for v in value]
    return texts if all(texts) else None


def _item(file: str, code: str, row: dict[str, Any]) -> tuple[DemoItem | None, list[str]]:
    errors = []
    if not CODE.match(code):
        errors.append(f"code {code!r} is not KB-<2–3 letters>-NNN")
    title = str(row.get("title") or "").strip()
    if not title or len(title) > 60:
        errors.append("title missing or longer than 60 characters")
    answer = str(row.get("answer") or "").strip()
    if not ANSWER_CHARS[0] <= len(answer) <= ANSWER_CHARS[1]:
        errors.append(
            f"answer has {len(answer)} characters ({ANSWER_CHARS[0]}–{ANSWER_CHARS[1]} expected)"
        )
    keywords = _text_list(row.get("keywords"))
    if keywords is None or not KEYWORDS[0] <= len(keywords) <= KEYWORDS[1]:
        errors.append(f"keywords: a list of {KEYWORDS[0]}–{KEYWORDS[1]} words expected")
    questions = _text_list(row.get("questions"))
    if questions is None or not QUESTIONS[0] <= len(questions) <= QUESTIONS[1]:
        errors.append(f"questions: a list of {QUESTIONS[0]}–{QUESTIONS[1]} questions expected")
    category = str(row.get("category") or "")
    owner = str(row.get("owner") or "")
    if not category:
        errors.append("category missing")
    if not owner:
        errors.append("owner missing")
    source = row.get("source")
    if source is not None and "演示内容" not in str(source):
        errors.append("source must say （演示内容）")
    dates: dict[str, Any] = {}
    for key in ("valid_from", "valid_to"):
        value = row.get(key)
        if isinstance(value, datetime):
            value = value.date()
        if isinstance(value, str) and value != EXPIRES_SOON:
            with contextlib.suppress(ValueError):
                value = date.fromisoformat(value)
        if value is not None and not isinstance(value, date):
            if key == "valid_to" and value == EXPIRES_SOON:
                pass
            else:
                errors.append(f"{key} {value!r} is not a date (YYYY-MM-DD)")
                value = None
        dates[key] = value
    if (
        isinstance(dates["valid_from"], date)
        and isinstance(dates["valid_to"], date)
        and dates["valid_to"] < dates["valid_from"]
    ):
        errors.append("valid_to before valid_from")
    if errors:
        return None, errors
    link = row.get("link")
    return DemoItem(
        file=file, code=code, title=title, category=category, owner=owner,
        keywords=keywords or [], questions=questions or [], answer=answer,
        valid_from=dates["valid_from"], valid_to=dates["valid_to"],
        source=str(source) if source else None, link=str(link) if link else None,
    ), []  # fmt: skip


def validate(items: list[DemoItem], problems: list[str], *, units: set[str],
             categories: set[str]) -> None:  # fmt: skip
    """Raise DemoKnowledgeError listing every problem (reading's and unknown owners/categories)."""
    problems = list(problems)
    for item in items:
        if item.owner not in units:
            problems.append(f"{item.file}: {item.code}: unknown owner unit {item.owner!r}")
        if item.category not in categories:
            problems.append(f"{item.file}: {item.code}: unknown category {item.category!r}")
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise DemoKnowledgeError(f"demo knowledge base: {len(problems)} problems\n  {shown}{more}")


def _expiry(item: DemoItem, today: date, turn: int) -> date | None:
    if item.valid_to == EXPIRES_SOON:
        return today + timedelta(days=EXPIRY_OFFSETS[turn % len(EXPIRY_OFFSETS)])
    return item.valid_to if isinstance(item.valid_to, date) else None


UPDATE_NOTES = (
    "根据最新办事指南更新办理渠道和材料",
    "补充群众常问的问法，调整答复口径",
    "办理时限按新版服务指南修改",
    "增加线上办理入口的说明",
)
PENDING_NOTES = (
    "拟按新版政策文件调整办理条件，请审核",
    "窗口地址调整，拟同步更新",
    "补充特殊情形的办理方式",
)
FLAG_NOTES = (
    ("outdated", "来电人反映窗口已不再受理此项业务，条目所述办理地点可能已调整，请核实。"),
    ("unclear", "条目对材料要求表述不够清楚，来电人追问是否需要原件，坐席无法确认。"),
    ("wrong", "来电人称线上渠道入口名称与条目不一致，请主管部门核实后更新。"),
)
ADDED = "如有疑问，可拨打12345热线咨询。"


def load_demo_base(db: Database, pack_dir: Path, *, now: datetime) -> int:
    """Publish the pack's demo entries not yet in the base (by code) with their past; returns how
    many were added. Raises DemoKnowledgeError (nothing written) when a file does not validate."""
    from sqlalchemy import select

    from jiesu.auth.service import principal_of
    from jiesu.knowledge import service
    from jiesu.knowledge.models import KnowledgeEntry
    from jiesu.org.models import Unit, User
    from jiesu.settings import city_tz
    from jiesu.taxonomy.models import Category

    items, problems = read_items(pack_dir)
    if not items and not problems:
        return 0
    with db.write() as s:
        units = {u.code: u for u in s.scalars(select(Unit).where(Unit.active))}
        categories = set(s.scalars(select(Category.code)))
        validate(items, problems, units=set(units), categories=categories)
        existing = set(s.scalars(select(KnowledgeEntry.code)))
        new = [i for i in items if i.code not in existing]
        if not new:
            return 0
        by_id = {u.id: u for u in units.values()}
        users = [u for u in s.scalars(select(User).where(User.active)) if u.password_hash]

        def principal(user: User) -> Any:
            return principal_of(user, by_id[user.unit_id])

        centre = [u for u in users if by_id.get(u.unit_id) and by_id[u.unit_id].function
                  == "service_centre"]  # fmt: skip
        admin = next((u for u in centre if u.role == "admin"), None)
        if admin is None:
            raise DemoKnowledgeError("demo knowledge base: no admin in the service centre")
        supervisor = next((u for u in centre if u.role == "supervisor"), admin)
        agents = [u for u in centre if u.role == "agent"] or [admin]
        editors: dict[int, User] = {}
        for u in users:
            if u.role in ("handler", "unit_admin"):
                editors.setdefault(u.unit_id, u)
        today = now.astimezone(city_tz()).date()
        rng = random.Random("jiesu-demo-knowledge")
        n = len(new)
        order = list(range(n))
        rng.shuffle(order)
        pending = set(order[: min(5, max(1, n // 60))])
        rest = order[len(pending) :]
        flagged = set(rest[: min(3, max(1, n // 100))])
        updated = set(rest[len(flagged) : len(flagged) + round(n * 0.15)])
        turn = 0
        for k, item in enumerate(new):
            valid_to = _expiry(item, today, turn)
            turn += item.valid_to == EXPIRES_SOON
            content = service.EntryContent(
                title=item.title, answer=item.answer, category_code=item.category,
                owner_unit_id=units[item.owner].id, keywords=item.keywords,
                questions=item.questions, valid_from=item.valid_from, valid_to=valid_to,
                source=item.source, link=item.link, change_note="演示内容首次发布",
            )  # fmt: skip
            first = now - timedelta(days=rng.uniform(95, 420))
            entry = service.publish_direct(content, actor=principal(admin), db_session=s,
                                           now=first, code=item.code, demo=True)  # fmt: skip
            owner_user = editors.get(content.owner_unit_id)
            author = principal(owner_user) if owner_user else principal(supervisor)
            if k in updated or k in pending:
                at = now - timedelta(days=rng.uniform(2, 6) if k in pending else rng.uniform(8, 60))
                notes = PENDING_NOTES if k in pending else UPDATE_NOTES
                longer = item.answer + ADDED
                changed = service.EntryContent(
                    **{**content.__dict__,
                       "answer": longer if len(longer) <= ANSWER_CHARS[1] else item.answer,
                       "questions": [*item.questions[:4], f"{item.title}？"],
                       "change_note": notes[k % len(notes)]},
                )  # fmt: skip
                service.save_draft(entry.id, changed, actor=author, db_session=s, now=at)
                service.submit(entry.id, actor=author, db_session=s, now=at + timedelta(hours=1))
                if k in updated:
                    service.publish(entry.id, actor=principal(supervisor), db_session=s,
                                    now=at + timedelta(hours=rng.uniform(3, 30)),
                                    note="审核通过")  # fmt: skip
            if k in flagged:
                reason, note = FLAG_NOTES[len(flagged & set(range(k))) % len(FLAG_NOTES)]
                service.raise_flag(entry.id, reason=reason, note=note, ticket_id=None,
                                   actor=principal(agents[k % len(agents)]), db_session=s,
                                   now=now - timedelta(days=rng.uniform(1, 9)))  # fmt: skip
    return n


# ---- the history's view of the base ---------------------------------------------------------


@dataclass(frozen=True)
class DemoEntry:
    entry_id: int
    code: str
    category: str
    keywords: tuple[str, ...]
    head: str  # the answer's first sentence: the answer event's note
    versions: tuple[tuple[datetime, int], ...]  # (published at, number), oldest first
    phrases: tuple[str, ...] = ()  # the title and the callers' questions


_NOT_WORD = re.compile(r"[\W_\d]+")


def _pairs(text: str) -> set[str]:
    """The text's two-character pieces (punctuation and digits dropped)."""
    text = _NOT_WORD.sub(" ", text)
    return {p for k in range(len(text) - 1) if " " not in (p := text[k : k + 2])}


@dataclass
class DemoBase:
    entries: tuple[DemoEntry, ...]
    share: float = LINKED_SHARE
    _memo: dict[str, tuple[tuple[DemoEntry, tuple[str, ...], frozenset[str]], ...]] = field(
        default_factory=dict, repr=False
    )

    def candidates(
        self, category_code: str
    ) -> tuple[tuple[DemoEntry, tuple[str, ...], frozenset[str]], ...]:
        """The entries filed under the category, its parent or its children, each with its
        keywords and the two-character pieces of its title and questions that tell it apart
        from the others (shared by fewer than COMMON_AFTER of them)."""
        found = self._memo.get(category_code)
        if found is None:
            near = [e for e in self.entries
                    if e.category.startswith(category_code) or category_code.startswith(e.category)]  # fmt: skip
            words = Counter(w for e in near for w in set(e.keywords))
            pairs = {e.code: _pairs(" ".join((*e.phrases, *e.keywords))) for e in near}
            shared = Counter(p for e in near for p in pairs[e.code])
            found = tuple(
                (e, tuple(w for w in e.keywords if words[w] < COMMON_AFTER),
                 frozenset(p for p in pairs[e.code] if shared[p] < COMMON_AFTER))
                for e in near
            )  # fmt: skip
            self._memo[category_code] = found
        return found

    def best(self, category_code: str, text: str, rng: random.Random) -> DemoEntry | None:
        """The entry whose own words the text has most of: a distinctive keyword counts twice
        its length, a distinctive piece of its title or questions one; MIN_SCORE at least."""
        candidates = self.candidates(category_code)
        if not candidates:
            return None
        pieces = _pairs(text)
        best, score = None, MIN_SCORE - 1
        for entry, words, pairs in candidates:
            s = 2 * sum(len(w) for w in words if w in text) + len(pieces & pairs)
            if s > score:
                best, score = entry, s
        if best is None or rng.random() >= self.share:
            return None
        return best

    def question_for(self, category_code: str, rng: random.Random) -> tuple[str, str] | None:
        """(title, content) of a consultation asking one of the category's entries' questions
        as a caller would, or None (no entry, or the pack's own texts this time)."""
        candidates = self.candidates(category_code)
        if not candidates or rng.random() >= ASKED_SHARE:
            return None
        entry = candidates[int(rng.random() * len(candidates))][0]
        asked = entry.phrases[1:] or entry.phrases
        question = asked[int(rng.random() * len(asked))].rstrip("？?。 ")
        opening = ASKING[int(rng.random() * len(ASKING))]
        closing = THANKS[int(rng.random() * len(THANKS))]
        return question[:30], f"{opening}{question}？{closing}"

    def entry_for(self, category_code: str, text: str, rng: random.Random) -> str | None:
        """The code of the entry an agent would answer this consultation with, or None."""
        entry = self.best(category_code, text, rng)
        return entry.code if entry else None

    def answer_for(
        self, category_code: str, text: str, at: datetime, rng: random.Random
    ) -> tuple[int, str, int, str] | None:
        """(entry id, code, version answering at `at`, answer head), or None."""
        entry = self.best(category_code, text, rng)
        if entry is None:
            return None
        version = 0
        for published, number in entry.versions:
            if published <= at:
                version = number
        if not version:
            return None
        return entry.entry_id, entry.code, version, entry.head


def _head(answer: str) -> str:
    first = re.split(r"(?<=[。！？])", answer.strip(), maxsplit=1)[0]
    return first if len(first) <= 80 else first[:79] + "…"


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def demo_base(db: Database) -> DemoBase | None:
    """The published demo entries as the history needs them (None: no demo base loaded)."""
    from sqlalchemy import select

    from jiesu.knowledge.models import KnowledgeEntry, KnowledgeVersion

    with db.read() as s:
        rows = s.execute(
            select(KnowledgeEntry, KnowledgeVersion)
            .join(KnowledgeVersion, KnowledgeVersion.id == KnowledgeEntry.published_version_id)
            .where(KnowledgeEntry.demo, KnowledgeEntry.status == "published")
            .order_by(KnowledgeEntry.code)
        ).all()
        if not rows:
            return None
        history: dict[int, list[tuple[datetime, int]]] = {}
        for entry_id, published, number in s.execute(
            select(KnowledgeVersion.entry_id, KnowledgeVersion.published_at,
                   KnowledgeVersion.number)
            .where(KnowledgeVersion.state.in_(("published", "superseded")),
                   KnowledgeVersion.published_at.is_not(None))
            .order_by(KnowledgeVersion.entry_id, KnowledgeVersion.number)
        ):  # fmt: skip
            if published is not None:
                history.setdefault(entry_id, []).append((_aware(published), number))
    return DemoBase(
        tuple(
            DemoEntry(
                entry_id=e.id,
                code=e.code,
                category=v.category_code or "",
                keywords=tuple(v.keywords or ()),
                head=_head(v.answer),
                versions=tuple(history.get(e.id, ())),
                phrases=(v.title, *(v.questions or ())),
            )
            for e, v in rows
        )
    )


def count_uses(db: Database) -> int:
    """Each entry's use_count and last_used_at from its kb_use rows (after the bulk history);
    returns the number of uses."""
    from sqlalchemy import func, select, update

    from jiesu.knowledge.models import KnowledgeEntry, KnowledgeUse

    with db.write() as s:
        uses = select(func.count()).where(KnowledgeUse.entry_id == KnowledgeEntry.id)
        last = select(func.max(KnowledgeUse.used_at)).where(
            KnowledgeUse.entry_id == KnowledgeEntry.id
        )
        s.execute(
            update(KnowledgeEntry).values(
                use_count=uses.scalar_subquery(), last_used_at=last.scalar_subquery()
            )
        )
        return int(s.scalar(select(func.count()).select_from(KnowledgeUse)) or 0)
