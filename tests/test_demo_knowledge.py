"""The demo knowledge base: the pack's files, the loader (validation, idempotence, a realistic
past) and the demo history answering consultations with its entries."""

from __future__ import annotations

import csv
import random
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from jiesu.db.engine import Database
from jiesu.demo.generate import DEFAULT_PACK, generate
from jiesu.demo.knowledge import (
    DemoBase,
    DemoEntry,
    DemoKnowledgeError,
    demo_base,
    load_demo_base,
    read_items,
)
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeFlag, KnowledgeUse, KnowledgeVersion
from jiesu.knowledge.text import normalise
from jiesu.tickets.models import Event, Ticket
from tests.conftest import TINY_PACK

NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)  # 14:00 in Beijing
DOMAINS_A = ("KB-SB", "KB-YB", "KB-HJ", "KB-JZ", "KB-GJ", "KB-BD")
FILLER = "办理时请携带本人有效身份证件和相关材料原件，具体要求以主管部门窗口一次性告知为准。"


def _answer(head: str) -> str:
    text = head
    while len(text) < 130:
        text += FILLER
    return text


def _entry(code: str, category: str, owner: str, keywords: list[str], **extra: object) -> dict:
    return {
        "code": code, "title": f"{keywords[0]}相关事项的办理", "category": category,
        "owner": owner, "keywords": keywords,
        "questions": [f"{keywords[0]}怎么办", f"{keywords[0]}去哪里问"],
        "answer": _answer(f"关于{keywords[0]}：可向主管部门咨询。"),
        "valid_from": "2025-01-01", "source": "《测试指南》（演示内容）", **extra,
    }  # fmt: skip


def _pack(tmp_path: Path, files: dict[str, list[dict]]) -> Path:
    folder = tmp_path / "pack" / "demo_knowledge"
    folder.mkdir(parents=True)
    for name, rows in files.items():
        (folder / name).write_text(yaml.safe_dump(rows, allow_unicode=True), encoding="utf-8")
    return tmp_path / "pack"


def _tiny_base() -> list[dict]:
    """Twelve entries of the tiny city (its categories and departments)."""
    rows = [
        _entry("KB-GN-001", "0301", "C-RL", ["供暖", "暖气", "采暖费"]),
        _entry("KB-GN-002", "0301", "C-RL", ["报停", "停暖"], valid_to="expires_soon"),
        _entry("KB-GN-003", "0301", "C-RL", ["暖气不热", "室温"]),
        _entry("KB-WY-001", "0101", "C-ZJW", ["物业", "业主"]),
        _entry("KB-WY-002", "0101", "C-ZJW", ["物业费", "收费"]),
        _entry("KB-WY-003", "010101", "C-ZJW", ["物业服务", "保安"]),
        _entry("KB-WY-004", "0101", "C-ZJW", ["维修资金", "大修"]),
        _entry("KB-JY-001", "0201", "D1-JW", ["学校", "入学"]),
        _entry("KB-JY-002", "0201", "D1-JW", ["老师", "作业"]),
        _entry("KB-JY-003", "0201", "D2-JW", ["转学", "学籍"]),
        _entry("KB-JY-004", "0201", "D2-JW", ["课后服务", "放学"]),
        _entry("KB-JY-005", "0201", "D1-JW", ["校服", "午餐"], valid_to="expires_soon"),
    ]
    return rows


# ---- the pack's own files (no database) -----------------------------------------------------


def test_the_beijing_demo_files_validate_against_the_pack() -> None:
    items, problems = read_items(DEFAULT_PACK)
    assert problems == []
    units = {r["code"] for f in (DEFAULT_PACK / "units").glob("*.csv")
             for r in csv.DictReader(f.open(encoding="utf-8"))}  # fmt: skip
    with (DEFAULT_PACK / "categories.csv").open(encoding="utf-8") as f:
        categories = {r["code"] for r in csv.DictReader(f)}
    assert [i.code for i in items if i.owner not in units] == []
    assert [i.code for i in items if i.category not in categories] == []
    mine = [i for i in items if i.code[:5] in DOMAINS_A]
    assert Counter(i.code[:5] for i in mine) == dict.fromkeys(DOMAINS_A, 20)
    for item in mine:
        assert 3 <= len(item.keywords) <= 6, item.code
        assert 2 <= len(item.questions) <= 5, item.code
        assert 120 <= len(item.answer) <= 400, item.code
        assert item.source and item.source.endswith("（演示内容）"), item.code
        assert item.file.startswith("0"), item.code
    assert 3 <= sum(i.valid_to == "expires_soon" for i in mine) <= 4


def _pairs(text: str) -> set[str]:
    text = re.sub(r"[\W_]+", "", normalise(text))
    return {text[k : k + 2] for k in range(len(text) - 1)}


def test_relevance_queries_a_name_real_entries_and_speak_like_callers() -> None:
    items, _ = read_items(DEFAULT_PACK)
    titles = {i.code: i.title for i in items}
    path = Path(__file__).parent / "data" / "knowledge_relevance" / "a.yaml"
    queries = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert len(queries) >= 45
    assert len({q["q"] for q in queries}) == len(queries)
    no_common = 0
    for q in queries:
        assert q["expect"] and all(code in titles for code in q["expect"]), q["q"]
        assert all(code[:5] in DOMAINS_A for code in q["expect"]), q["q"]
        shared = set().union(*(_pairs(q["q"]) & _pairs(titles[c]) for c in q["expect"]))
        assert ("no_common_keyword" in q["kinds"]) == (not shared), (q["q"], shared)
        no_common += not shared
    assert no_common * 3 >= len(queries)


def test_entry_for_goes_by_category_then_distinctive_words() -> None:
    t0 = NOW - timedelta(days=400)
    base = DemoBase(
        (
            DemoEntry(1, "KB-A-1", "0110", ("公积金", "租房提取"), "租房可提取。", ((t0, 1),)),
            DemoEntry(2, "KB-A-2", "0110", ("公积金", "贷款额度"), "额度看余额。", ((t0, 1),)),
            DemoEntry(3, "KB-A-3", "0110", ("公积金", "转移"), "可转移。", ((t0, 1),)),
            DemoEntry(
                4,
                "KB-B-1",
                "1003",
                ("身份证",),
                "补领身份证。",
                ((t0, 1), (NOW - timedelta(days=5), 2)),
            ),
        ),
        share=1.0,
    )
    rng = random.Random(1)
    assert base.entry_for("0110", "想问一下租房提取公积金每月能提多少", rng) == "KB-A-1"
    assert base.entry_for("0110", "公积金最多能贷多少，贷款额度怎么算", rng) == "KB-A-2"
    # 公积金 is in every entry of the category: it tells nothing apart
    assert base.entry_for("0110", "想咨询一下公积金方面的政策", rng) is None
    assert base.entry_for("0603", "租房提取公积金", rng) is None  # no entry in that category
    old = base.answer_for("1003", "身份证丢了", NOW - timedelta(days=30), rng)
    new = base.answer_for("1003", "身份证丢了", NOW, rng)
    assert old == (4, "KB-B-1", 1, "补领身份证。") and new == (4, "KB-B-1", 2, "补领身份证。")
    assert base.answer_for("1003", "身份证丢了", t0 - timedelta(days=1), rng) is None
    never = DemoBase(base.entries, share=0.0)
    assert never.entry_for("0110", "租房提取公积金", rng) is None


# ---- the loader --------------------------------------------------------------------------


def test_bad_files_are_refused_naming_file_and_entry(db: Database, tmp_path: Path) -> None:
    good = _entry("KB-GN-001", "0301", "C-RL", ["供暖", "暖气"])
    pack = _pack(tmp_path, {
        "01_a.yaml": [good, _entry("KB-GN-002", "0301", "NO-SUCH", ["报停"])],
        "02_b.yaml": [
            _entry("KB-GN-001", "0301", "C-RL", ["重复"]),
            _entry("KB-GN-003", "9999", "C-RL", ["类别"]),
            {**_entry("KB-GN-004", "0301", "C-RL", ["短"]), "answer": "太短了。"},
            {**_entry("KB-GN-005", "0301", "C-RL", ["日期"]), "valid_to": "next year"},
        ],
    })  # fmt: skip
    with pytest.raises(DemoKnowledgeError) as caught:
        load_demo_base(db, pack, now=NOW)
    message = str(caught.value)
    assert "01_a.yaml: KB-GN-002: unknown owner unit 'NO-SUCH'" in message
    assert "02_b.yaml: KB-GN-001: code already used in 01_a.yaml" in message
    assert "02_b.yaml: KB-GN-003: unknown category '9999'" in message
    assert "02_b.yaml: KB-GN-004: answer has 4 characters" in message
    assert "02_b.yaml: KB-GN-005: valid_to 'next year' is not a date" in message
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(KnowledgeEntry)) == 0


def _state(db: Database) -> tuple[list[tuple], list[tuple], int]:
    with db.read() as s:
        entries = [(e.code, e.status, e.revision, e.published_version_id, e.pending_version_id,
                    e.valid_to, e.open_flags) for e in s.scalars(select(KnowledgeEntry)
                                                              .order_by(KnowledgeEntry.code))]  # fmt: skip
        versions = [(v.entry_id, v.number, v.state) for v in s.scalars(
            select(KnowledgeVersion).order_by(KnowledgeVersion.id))]  # fmt: skip
        flags = s.scalar(select(func.count()).select_from(KnowledgeFlag)) or 0
    return entries, versions, flags


def test_the_load_publishes_demo_entries_with_a_past_once(db: Database, tmp_path: Path) -> None:
    pack = _pack(tmp_path, {"01_tiny.yaml": _tiny_base()})
    assert load_demo_base(db, pack, now=NOW) == 12
    first = _state(db)
    with db.read() as s:
        entries = list(s.scalars(select(KnowledgeEntry).order_by(KnowledgeEntry.code)))
        assert all(e.demo and e.status == "published" for e in entries)
        by_code = {e.code: e for e in entries}
        # expiring soon: within 30 days of the load's city date, the owner will be warned
        for code in ("KB-GN-002", "KB-JY-005"):
            days = (by_code[code].valid_to - NOW.date()).days
            assert 0 < days <= 30, (code, days)
        assert by_code["KB-GN-001"].valid_to is None
        pending = [e for e in entries if e.pending_version_id is not None]
        assert len(pending) == 1
        waiting = s.get(KnowledgeVersion, pending[0].pending_version_id)
        assert waiting is not None and waiting.state == "submitted" and waiting.change_note
        # an entry under review keeps its published version answering
        assert pending[0].published_version_id is not None
        updated = s.execute(
            select(KnowledgeVersion.entry_id, func.count())
            .where(KnowledgeVersion.state.in_(("published", "superseded")))
            .group_by(KnowledgeVersion.entry_id)
            .having(func.count() > 1)
        ).all()
        assert len(updated) == round(12 * 0.15)
        for entry_id, _ in updated:
            last = s.scalars(select(KnowledgeVersion).where(KnowledgeVersion.entry_id == entry_id,
                             KnowledgeVersion.state == "published")).one()  # fmt: skip
            assert last.number == 2 and last.change_note and last.reviewed_by_id
            assert last.published_at is not None and _aware(last.published_at) < NOW
        flags = list(s.scalars(select(KnowledgeFlag)))
        assert len(flags) == 1 and flags[0].status == "open" and flags[0].note
        assert by_code_of(s, flags[0].entry_id).open_flags == 1
    # a second run changes nothing
    assert load_demo_base(db, pack, now=NOW + timedelta(days=3)) == 0
    assert _state(db) == first


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def by_code_of(s: object, entry_id: int) -> KnowledgeEntry:
    entry = s.get(KnowledgeEntry, entry_id)  # type: ignore[attr-defined]
    assert entry is not None
    return entry


def test_the_history_answers_consultations_with_entries(db: Database, tmp_path: Path) -> None:
    pack = _pack(tmp_path, {"01_tiny.yaml": _tiny_base()})
    load_demo_base(db, pack, now=NOW - timedelta(days=1))
    base = demo_base(db)
    assert base is not None and len(base.entries) == 12
    generate(db, days=4, per_day=300, now=NOW, pack_dir=TINY_PACK, metrics=False)
    with db.read() as s:
        answers = list(s.scalars(select(Event).where(Event.action == "answer")))
        uses = {u.ticket_id: u for u in s.scalars(select(KnowledgeUse))}
        entries = {e.id: e for e in s.scalars(select(KnowledgeEntry))}
        code_id = {e.code: e.id for e in entries.values()}
        tickets = {t.id: t for t in s.scalars(select(Ticket))}
    linked = [e for e in answers if "entry" in (e.data or {})]
    assert answers and linked
    assert 0.2 < len(linked) / len(answers) < 1  # some answered from the agent's own knowledge
    assert len(uses) == len(linked)
    for e in linked:
        data = e.data
        use = uses[e.ticket_id]
        assert use.entry_id == code_id[data["entry"]]
        assert use.version_number == data["entry_version"]
        assert use.user_id == e.actor_id == tickets[e.ticket_id].created_by_id
        assert use.used_at == e.at
        assert e.note and e.note != "已依据政策口径当场答复"
    counts = Counter(u.entry_id for u in uses.values())
    for entry_id, entry in entries.items():
        assert entry.use_count == counts.get(entry_id, 0)
        if counts.get(entry_id):
            assert entry.last_used_at == max(u.used_at for u in uses.values()
                                             if u.entry_id == entry_id)  # fmt: skip
    assert sum(counts.values()) == len(uses)
