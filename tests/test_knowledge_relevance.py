"""The knowledge base's relevance set (issue 16): the queries are true to the demo entries, and
the default search finds an answering entry in its top five for at least 90% of them, on
SQLite and on PostgreSQL (recall and MRR printed per kind; `bench/knowledge_relevance.py`
compares the modes)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from jiesu.citypack.load import load_pack
from jiesu.citypack.parse import read_pack
from jiesu.db.engine import Database
from jiesu.demo.generate import DEFAULT_PACK
from jiesu.demo.knowledge import load_demo_base, read_items
from jiesu.knowledge import relevance, search
from jiesu.knowledge.relevance import Query, Score
from jiesu.settings import city_tz

SET = Path(__file__).parent / "data" / "knowledge_relevance"
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Beijing, a heating-season Monday
RECALL_AT_5 = 0.9


def _entries() -> dict[str, dict[str, str]]:
    items, problems = read_items(DEFAULT_PACK)
    assert not problems, problems
    return {i.code: {"title": i.title} for i in items}


def test_the_set_is_true_to_the_demo_entries() -> None:
    queries, problems = relevance.read_queries(SET)
    assert not problems, "\n".join(problems)
    problems = relevance.check(queries, _entries(), at_least=100)
    assert not problems, "\n".join(problems)
    assert {x.file for x in queries} >= {"a.yaml", "b.yaml", "hard.yaml"}
    hard = [x for x in queries if x.file == "hard.yaml"]
    assert len(hard) >= 30
    for kind in ("traditional", "typo", "homophone", "pinyin", "colloquial"):
        assert any(kind in x.kinds for x in hard), f"hard.yaml has no {kind} query"


def test_no_common_keyword_is_computed_on_the_normalised_text() -> None:
    assert relevance.pairs("社保卡，丢了!") == {"社保", "保卡", "丢了"}
    assert relevance.shared_pairs("我社保卡丢了", "社会保障卡丢失后如何补办") == {"卡丢"}
    # traditional characters and full-width letters are compared simplified and half-width
    assert relevance.shared_pairs("戶籍證明", "户籍证明开具") == {"户籍", "籍证", "证明"}
    assert relevance.shared_pairs("ＳＢＫ", "sbk") == {"sb", "bk"}
    assert relevance.shared_pairs("暖气片冰凉咋回事", "供暖期内暖气不热的自查与报修") == {"暖气"}
    assert relevance.shared_pairs("屋里冻得慌", "供暖期内暖气不热的自查与报修") == set()
    entries = {"KB-X-001": {"title": "居民身份证遗失补领"}}
    lying = [Query("x.yaml", "身份证没了咋办", ("KB-X-001",), ("no_common_keyword",))]
    honest = [Query("x.yaml", "证件没了咋办", ("KB-X-001",), ("no_common_keyword",))]
    unknown = [Query("x.yaml", "证件没了咋办", ("KB-X-404",), ("colloquial",))]
    assert any("shares 份证、身份" in p for p in relevance.check(lying, entries, at_least=1))
    assert relevance.check(honest, entries, at_least=1) == []
    problems = relevance.check(unknown, entries, at_least=2)
    assert any("KB-X-404" in p for p in problems)
    assert any("1 queries; at least 2" in p for p in problems)
    assert any("0 of 1 queries are no_common_keyword" in p for p in problems)


def test_a_malformed_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(
        "- q: 社保卡丢了\n  expect: [KB-SB-001]\n  kinds: [colloquial]\n"
        "- q: 社保卡丢了\n  expect: [KB-SB-002]\n  kinds: [colloquial]\n"
        "- q: 暖气\n  expect: KB-GN-001\n  kinds: [colloquial]\n"
        "- q: 暖气不热\n  expect: [KB-GN-001]\n  kinds: [slang]\n",
        encoding="utf-8",
    )
    queries, problems = relevance.read_queries(tmp_path)
    assert [x.q for x in queries] == ["社保卡丢了"]
    assert len(problems) == 3
    assert "already in x.yaml #1" in problems[0]
    assert "expect must be a list" in problems[1]
    assert "kinds must be" in problems[2]


def test_scores_are_recall_and_reciprocal_rank() -> None:
    a = Query("x", "a", ("A",), ("colloquial",))
    b = Query("x", "b", ("B", "C"), ("typo", "colloquial"))
    c = Query("x", "c", ("D",), ("typo",))
    ranked = {"a": ["A"], "b": ["X", "Y", "C"], "c": ["1", "2", "3", "4", "5", "D"]}
    overall, kinds = relevance.score([a, b, c], lambda x: ranked[x.q])
    assert (overall.n, overall.at1, overall.at5) == (3, 1, 2)
    assert overall.mrr == pytest.approx((1 + 1 / 3 + 1 / 6) / 3)
    assert overall.missed == ["c"]
    assert kinds["typo"].as_dict() == {"n": 2, "recall@1": 0.0, "recall@5": 0.5, "mrr": 0.25}
    assert kinds["colloquial"].recall5 == 1.0
    assert Score().recall5 == 0.0
    assert relevance.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 95) == 5.0
    assert relevance.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0


def test_the_default_search_finds_the_answering_entry(empty_url: str) -> None:
    queries, problems = relevance.read_queries(SET)
    assert not problems, "\n".join(problems)
    db = Database(empty_url)
    try:
        with db.write() as s:
            load_pack(read_pack(DEFAULT_PACK), db_session=s)
        assert load_demo_base(db, DEFAULT_PACK, now=NOW) == len(_entries())
        today = NOW.astimezone(city_tz()).date()
        with db.read() as s:
            codes: dict[str, list[str]] = {}
            for x in queries:
                hits = search.search(x.q, db_session=s, today=today, limit=relevance.TOP)
                codes[x.q] = [h.code for h in hits]
        overall, kinds = relevance.score(queries, lambda x: codes[x.q])
    finally:
        db.dispose()
    print("\n" + relevance.report(overall, kinds))
    missed = "\n".join(f"  {q} → {codes[q]}" for q in overall.missed)
    assert overall.recall5 >= RECALL_AT_5, (
        f"recall@5 {overall.recall5:.3f} < {RECALL_AT_5}; missed:\n{missed}"
    )
