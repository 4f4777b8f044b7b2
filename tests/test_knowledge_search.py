"""The knowledge base's search (knowledge/search.py) on SQLite and PostgreSQL: callers' words
(colloquial, synonyms, typos and homophones, traditional characters, pinyin initials), only
what answers today, ranking ties broken by use and freshness, passages and marks, hostile input,
and both databases ranking alike."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from conftest import Templates, require_backend
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from jiesu.db.engine import Database
from jiesu.knowledge import search as S
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeVersion
from jiesu.org.models import Unit

TODAY = date(2026, 3, 10)
NOW = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


@dataclass
class E:
    code: str
    title: str
    answer: str
    questions: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    category: str | None = "0501"
    valid_from: date | None = date(2025, 1, 1)
    valid_to: date | None = date(2027, 12, 31)
    use_count: int = 0
    published_at: datetime = datetime(2025, 6, 1, tzinfo=UTC)
    status: str = "published"


BASE = [
    E(
        "KB-SB-001",
        "社会保障卡丢失后如何挂失和补办",
        "社会保障卡丢失后，请先拨打服务热线或通过手机应用办理临时挂失。挂失后携带本人有效"
        "身份证件到就近的社保卡服务网点申请补办，一般当场制卡。补卡工本费按规定收取。",
        ["社保卡丢了怎么办", "社保卡掉了去哪里补"],
        ["社保卡", "挂失", "补办"],
    ),
    E(
        "KB-GJJ-001",
        "住房公积金提取的条件和办理流程",
        "职工购买、建造、翻建、大修自住住房，或无房租赁住房的，可以申请提取住房公积金。"
        "可通过网上服务平台或到管理部柜台办理，审核通过后资金转入本人银行卡。",
        ["租房可以提公积金吗", "公积金怎么取出来"],
        ["公积金", "提取", "租房"],
        category="0502",
    ),
    E(
        "KB-GN-001",
        "供暖期室内温度不达标如何反映",
        "供暖期内居室温度不应低于十八摄氏度。温度偏低时请先联系供热单位报修，供热单位应在"
        "二十四小时内上门检测；对处理结果不满意的，可向所在区城市管理部门反映。",
        ["家里供热温度低怎么办", "供热单位不上门检测"],
        ["供热", "室温", "报修"],
        category="0601",
    ),
    E(
        "KB-HJ-001",
        "新生儿出生登记户口办理",
        "新生儿出生后一个月内，由监护人持出生医学证明、父母双方户口簿和身份证、结婚证，"
        "到一方户口所在地派出所办理出生登记。部分地区可在线上预约办理。",
        ["孩子出生了怎么上户口", "新生儿落户需要什么材料"],
        ["新生儿", "出生登记", "落户"],
        category="0503",
    ),
    E(
        "KB-LJ-001",
        "生活垃圾分类投放要求",
        "本市生活垃圾分为厨余垃圾、可回收物、有害垃圾和其他垃圾四类。厨余垃圾应去除包装后"
        "投放，大件垃圾需预约清运，不得随意堆放。",
        ["垃圾怎么分类", "大件家具怎么扔"],
        ["垃圾分类", "厨余垃圾", "大件垃圾"],
        category="0701",
    ),
]


def _owner(session: Session) -> int:
    return int(session.scalars(select(Unit.id).order_by(Unit.id)).first() or 0)


def add(session: Session, e: E, *, index: bool = True) -> KnowledgeEntry:
    owner = _owner(session)
    entry = KnowledgeEntry(
        code=e.code,
        status=e.status,
        owner_unit_id=owner,
        category_code=e.category,
        title=e.title,
        valid_from=e.valid_from,
        valid_to=e.valid_to,
        use_count=e.use_count,
        created_at=NOW,
        updated_at=NOW,
        published_at=e.published_at,
    )
    session.add(entry)
    session.flush()
    version = KnowledgeVersion(
        entry_id=entry.id,
        number=1,
        state="published",
        title=e.title,
        answer=e.answer,
        category_code=e.category,
        owner_unit_id=owner,
        keywords=e.keywords,
        questions=e.questions,
        valid_from=e.valid_from,
        valid_to=e.valid_to,
        created_at=NOW,
        updated_at=NOW,
        published_at=e.published_at,
    )
    session.add(version)
    session.flush()
    entry.published_version_id = version.id
    if index:
        S.index_entry(entry, version, db_session=session)
    return entry


@pytest.fixture
def base(db: Database) -> Database:
    with db.write() as session:
        for e in BASE:
            add(session, e)
    return db


def codes(db: Database, query: str, **kwargs: object) -> list[str]:
    with db.read() as session:
        hits = S.search(query, db_session=session, today=TODAY, **kwargs)  # type: ignore[arg-type]
    return [h.code for h in hits]


def top(db: Database, query: str) -> str | None:
    found = codes(db, query)
    return found[0] if found else None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("我社保卡丢了咋整啊", "KB-SB-001"),  # colloquial
        ("孩子刚生下来想给他上户口，要带啥", "KB-HJ-001"),  # colloquial
        ("暖气不热找谁", "KB-GN-001"),  # synonym: 暖气 → 供暖/供热
        ("公积金能不能取出来付房租", "KB-GJJ-001"),  # synonym 公积金 → 住房公积金
        ("设保卡丢了怎么办", "KB-SB-001"),  # typo / homophone (设 for 社)
        ("社會保障卡丟失怎麼補辦", "KB-SB-001"),  # traditional characters
        ("gjj怎么提取", "KB-GJJ-001"),  # pinyin initials
        ("sbk 补办", "KB-SB-001"),  # pinyin initials
        ("zhufang gongjijin", "KB-GJJ-001"),  # full pinyin typed in letters
        ("旧沙发之类的大件家具扔哪", "KB-LJ-001"),  # colloquial, no word of the title
    ],
)
def test_callers_words_find_the_entry(base: Database, query: str, expected: str) -> None:
    assert top(base, query) == expected


def test_only_published_entries_valid_today_are_found(db: Database) -> None:
    word = "独一无二的测试事项"
    with db.write() as session:
        add(session, E("KB-T-001", f"{word}现行", "现行答复。", questions=[word]))
        add(session, E("KB-T-002", f"{word}草稿", "草稿答复。", status="draft"))
        add(session, E("KB-T-003", f"{word}未生效", "未来答复。", valid_from=date(2026, 3, 11)))
        add(session, E("KB-T-004", f"{word}已过期", "过期答复。", valid_to=date(2026, 3, 9)))
        add(session, E("KB-T-005", f"{word}撤回", "撤回答复。", status="withdrawn"))
        add(session, E("KB-T-006", f"{word}今天到期", "到期答复。", valid_to=TODAY))
    assert sorted(codes(db, word, limit=10)) == ["KB-T-001", "KB-T-006"]


def test_withdrawn_or_expired_entry_is_gone_once_unindexed(base: Database) -> None:
    assert top(base, "社保卡丢了") == "KB-SB-001"
    with base.write() as session:
        entry = session.scalars(
            select(KnowledgeEntry).where(KnowledgeEntry.code == "KB-SB-001")
        ).one()
        S.unindex_entry(entry.id, db_session=session)
        S.unindex_entry(entry.id, db_session=session)  # twice is harmless
    assert "KB-SB-001" not in codes(base, "社保卡丢了")
    with base.read() as session:
        n = session.execute(text("SELECT df FROM kb_search_term WHERE term = ''")).scalar()
        stale = session.execute(
            text("SELECT count(*) FROM kb_search_term WHERE df <= 0 AND term <> ''")
        ).scalar()
    assert n == len(BASE) - 1
    assert stale == 0


def test_a_new_version_replaces_the_old_in_the_index(base: Database) -> None:
    with base.write() as session:
        entry = session.scalars(
            select(KnowledgeEntry).where(KnowledgeEntry.code == "KB-LJ-001")
        ).one()
        v2 = KnowledgeVersion(
            entry_id=entry.id,
            number=2,
            state="published",
            title="废旧电池回收点查询",
            answer="废旧电池请投放到社区的有害垃圾收集容器。",
            owner_unit_id=entry.owner_unit_id,
            keywords=["电池"],
            questions=["旧电池扔哪"],
            created_at=NOW,
            updated_at=NOW,
        )
        session.add(v2)
        session.flush()
        S.index_entry(entry, v2, db_session=session)
    with base.read() as session:
        hits = S.search("旧电池扔哪里", db_session=session, today=TODAY)
    assert hits[0].code == "KB-LJ-001" and hits[0].version == 2
    assert "KB-LJ-001" not in codes(base, "厨余要去掉包装吗")


def test_reindex_all_rebuilds_from_the_answering_versions(base: Database) -> None:
    with base.write() as session:
        session.execute(text("DELETE FROM kb_search_term"))
        draft = add(
            session, E("KB-T-009", "未发布的草稿条目", "草稿。", status="draft"), index=False
        )
        assert draft.id
        assert S.reindex_all(db_session=session) == len(BASE)
    assert top(base, "社保卡丢了") == "KB-SB-001"
    assert codes(base, "未发布的草稿条目") == []


def test_use_and_freshness_break_ties(db: Database) -> None:
    same = {"answer": "一模一样的答复内容。", "questions": ["完全相同的问题"]}
    with db.write() as session:
        add(session, E("KB-T-101", "完全相同的标题", use_count=0, **same))  # type: ignore[arg-type]
        add(session, E("KB-T-102", "完全相同的标题", use_count=40, **same))  # type: ignore[arg-type]
        add(
            session,
            E(
                "KB-T-103",
                "完全相同的标题",
                use_count=0,
                published_at=datetime(2026, 3, 1, tzinfo=UTC),
                **same,  # type: ignore[arg-type]
            ),
        )
        add(
            session,
            E("KB-T-104", "完全相同的标题", valid_to=date(2026, 3, 20), **same),  # type: ignore[arg-type]
        )
    assert codes(db, "完全相同的标题") == ["KB-T-102", "KB-T-103", "KB-T-101", "KB-T-104"]


def test_relevance_outranks_use(db: Database) -> None:
    with db.write() as session:
        add(session, E("KB-T-201", "居住证办理条件", "居住证的申领条件。", use_count=500))
        add(session, E("KB-T-202", "居住证签注续期", "居住证每年签注一次，可以网上签注续期。"))
    assert top(db, "居住证签注怎么续期") == "KB-T-202"


def test_passage_is_the_best_sentence_with_its_words_marked(base: Database) -> None:
    with base.read() as session:
        hit = S.search("补办社保卡要带什么证件", db_session=session, today=TODAY)[0]
    assert hit.code == "KB-SB-001" and hit.version == 1
    assert hit.passage.startswith("挂失后携带本人有效身份证件")
    marked = [hit.passage[s:e] for s, e in hit.marks]
    assert "补办" in marked and "证件" in "".join(marked)
    assert all(0 <= s < e <= len(hit.passage) for s, e in hit.marks)
    assert len(hit.passage) <= S.PASSAGE_CHARS
    assert hit.field in ("title", "question", "keyword", "answer")
    assert hit.valid_to == date(2027, 12, 31) and hit.category_code == "0501"


def test_marks_point_into_the_text_as_written(base: Database) -> None:
    with base.read() as session:
        typo = S.search("设保卡掉了", db_session=session, today=TODAY)[0]
        trad = S.search("新生兒落戶", db_session=session, today=TODAY)[0]
    # 设保 is marked as the entry writes it (社保: the same sound); 掉了 and 丢了 are synonyms
    assert typo.code == "KB-SB-001"
    assert typo.passage in ("社保卡掉了去哪里补", "社保卡丢了怎么办")
    assert [typo.passage[s:e] for s, e in typo.marks] == [typo.passage[:5]]
    assert trad.code == "KB-HJ-001"
    marked = [trad.passage[s:e] for s, e in trad.marks]
    assert any("新生儿" in m or "落户" in m for m in marked), (trad.passage, marked)


def test_a_long_answer_sentence_is_cut_around_the_match(db: Database) -> None:
    long = "一" * 300 + "特殊关键词组合出现在这里。"
    with db.write() as session:
        add(session, E("KB-T-301", "长答复条目", long))
    with db.read() as session:
        hit = S.search("特殊关键词组合", db_session=session, today=TODAY)[0]
    assert len(hit.passage) == S.PASSAGE_CHARS
    assert [hit.passage[s:e] for s, e in hit.marks] == ["特殊关键词组合"]


def test_filters_by_category_and_owner(base: Database) -> None:
    assert codes(base, "社保卡 公积金", category="0502") == ["KB-GJJ-001"]
    assert codes(base, "社保卡 公积金", category="05")[:2] != []
    assert set(codes(base, "社保卡 公积金", category="05")) <= {"KB-SB-001", "KB-GJJ-001"}
    with base.read() as session:
        owner = _owner(session)
    assert "KB-SB-001" in codes(base, "社保卡", owner_unit_id=owner)
    assert codes(base, "社保卡", owner_unit_id=owner + 100000) == []


@pytest.mark.parametrize(
    "query",
    [
        "",
        "   ",
        "！？。，、",
        "%_'\"\\",
        "' OR 1=1 --",
        '" OR "a',
        "社保卡\x00丢了",
        "社保" * 5000,
        "x" * 10000,
        "NEAR(a b) AND NOT c*",
        "a:b -c ^d",
        "😀🙏",
        "\u200b\ufeff",
    ],
)
def test_hostile_input_never_raises(base: Database, query: str) -> None:
    with base.read() as session:
        hits = S.search(query, db_session=session, today=TODAY)
    assert isinstance(hits, list) and len(hits) <= 5


def test_limit_and_hybrid_without_encoder(base: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(codes(base, "办理", limit=2)) <= 2
    assert codes(base, "社保卡", limit=0) == []
    monkeypatch.delenv("JIESU_KB_ENCODER", raising=False)
    assert codes(base, "社保卡丢了", mode="hybrid") == codes(base, "社保卡丢了", mode="lexical")


def test_an_empty_index_finds_nothing(db: Database) -> None:
    assert codes(db, "社保卡") == []


# ---- both databases rank alike -----------------------------------------------------------

SAME_QUERIES = [
    "社保卡丢了怎么办",
    "暖气不热",
    "gjj",
    "设保卡",
    "怎么办理",
    "垃圾",
    "户口",
    "温度低报修",
]


@pytest.fixture
def both(templates: Templates, tmp_path: Path) -> Iterator[list[Database]]:
    require_backend("postgresql")
    sqlite = templates.fresh_url("sqlite", True, tmp_path / "s")
    pg = templates.fresh_url("postgresql", True, tmp_path / "p")
    (tmp_path / "s").mkdir()
    (tmp_path / "p").mkdir()
    dbs = [Database(next(sqlite)), Database(next(pg))]
    yield dbs
    for d in dbs:
        d.dispose()
    for gen in (sqlite, pg):
        next(gen, None)


def test_sqlite_and_postgresql_rank_alike(both: list[Database]) -> None:
    for d in both:
        with d.write() as session:
            for e in BASE:
                add(session, e)
    for query in SAME_QUERIES:
        lite, post = (
            [(h.code, h.score, h.passage, h.marks, h.field) for h in _hits(d, query)] for d in both
        )
        assert lite == post, query
        assert lite, query


def _hits(d: Database, query: str) -> list[S.Hit]:
    with d.read() as session:
        return S.search(query, db_session=session, today=TODAY, limit=5)


def test_the_cli_reindexes(base: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from jiesu.cli import app as cli
    from jiesu.settings import get_settings

    with base.write() as session:
        session.execute(text("DELETE FROM kb_search_term"))
    assert codes(base, "社保卡丢了") == []
    monkeypatch.setenv("JIESU_DATABASE_URL", base.url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["knowledge", "reindex"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert f"{len(BASE)} 条" in result.output
    assert top(base, "社保卡丢了") == "KB-SB-001"


def test_hybrid_fuses_the_encoders_candidates(
    base: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jiesu.knowledge import encoder

    with base.read() as session:
        rows = session.execute(select(KnowledgeEntry.code, KnowledgeEntry.id)).all()
        ids = {row[0]: row[1] for row in rows}
    asked: list[str] = []

    def candidates(query: str, **kwargs: object) -> list[tuple[int, float]]:
        asked.append(query)
        return [(ids["KB-LJ-001"], 0.9), (ids["KB-SB-001"], 0.8)]

    monkeypatch.setattr(encoder, "enabled", lambda: True)
    monkeypatch.setattr(encoder, "candidates", candidates)
    with base.read() as session:
        hits = S.search("社保卡丢了", db_session=session, today=TODAY, mode="hybrid")
    assert asked == ["社保卡丢了"]
    # first in both lists beats first in one; the encoder's own find comes in with its passage
    assert [h.code for h in hits[:2]] == ["KB-SB-001", "KB-LJ-001"]
    assert hits[0].score > hits[1].score
    assert hits[1].passage and hits[1].version == 1

    def broken(query: str, **kwargs: object) -> list[tuple[int, float]]:
        raise RuntimeError("model missing")

    monkeypatch.setattr(encoder, "candidates", broken)
    assert codes(base, "社保卡丢了", mode="hybrid") == codes(base, "社保卡丢了", mode="lexical")
