"""The knowledge base's text rules (knowledge/text.py, pure): normalisation, terms, pinyin,
synonyms, marks' alignment."""

from __future__ import annotations

import pytest

from jiesu.knowledge import text as T


def test_normalise_folds_width_case_traditional_and_spaces() -> None:
    assert T.normalise("  社會保障卡　ＡＢＣ１２３  丟了\n\t補辦 ") == "社会保障卡 abc123 丢了 补办"
    assert T.normalise("") == ""
    assert T.normalise("   ") == ""


def test_aligned_keeps_each_characters_origin() -> None:
    norm, where = T.aligned("社會ＡＢ卡")
    assert norm == "社会ab卡" and where == [0, 1, 2, 3, 4]
    norm, where = T.aligned("㈱社保")  # NFKC makes one character three
    assert norm == "(株)社保" and where == [0, 0, 0, 1, 2]
    assert T.aligned("") == ("", [])


def test_syllables_are_toneless_one_per_character() -> None:
    assert T.syllables("社保卡") == ("she", "bao", "ka")
    assert T.syllables("设保卡") == ("she", "bao", "ka")  # the homophone sounds the same
    assert T.syllables("绿化") == ("lv", "hua")  # ü as v, as typed


def test_text_terms_bigrams_words_and_pinyin() -> None:
    terms = T.text_terms(T.normalise("住房公积金提取"), pinyin=True)
    assert {"住房", "房公", "公积", "积金", "金提", "提取"} <= set(terms)  # bigrams
    assert "公积金" in terms  # a jieba word longer than two
    assert {"gongjijin", "gjj", "zhufang", "zf", "tiqu"} <= set(terms)  # pinyin, initials
    plain = T.text_terms(T.normalise("住房公积金 ABC 2026"), pinyin=False)
    assert "gjj" not in plain and "abc" in plain and "2026" in plain
    assert T.text_terms("卡", pinyin=True) == ["卡", "ka"]


def test_index_terms_per_field_answer_without_pinyin() -> None:
    fields = T.index_terms(
        title="社會保障卡补办", questions=["社保卡丢了"], keywords=["社保卡"], answer="到网点补办。"
    )
    assert set(fields) == set(T.FIELDS)
    assert "社会" in fields["title"]  # traditional folded
    assert "sbk" in fields["question"] and "sbk" in fields["keyword"]
    assert "补办" in fields["answer"] and "buban" not in fields["answer"]


def _by_term(query: str, synonyms: tuple[tuple[str, ...], ...] = ()) -> dict[str, T.QueryTerm]:
    return {t.term: t for t in T.query_terms(query, synonyms)}


def test_query_terms_kinds_and_weights() -> None:
    terms = _by_term("我设保卡丢了 sbk")
    assert terms["设保"].kind == "word" and terms["设保"].weight == T.KIND_WEIGHTS["word"]
    assert terms["shebao"].kind == "pinyin" and terms["shebao"].source == "设保"
    assert terms["sbk"].kind == "latin"
    assert "我" not in terms and "了" not in terms  # one character alone is no term


def test_query_terms_drop_the_callers_filler() -> None:
    terms = _by_term("请问一下怎么办")
    assert "请问" not in terms and "怎么办" not in terms and "怎么" not in terms


def test_synonyms_add_the_groups_other_words() -> None:
    groups = (("供暖", "暖气", "供热"), ("住房公积金", "公积金"))
    terms = _by_term("暖气不热", groups)
    assert terms["供暖"].kind == "synonym" and terms["供热"].kind == "synonym"
    assert terms["暖气"].kind == "word"  # the caller's own word keeps its weight
    assert "住房" in _by_term("公积金", groups)
    assert "供暖" not in _by_term("社保卡", groups)  # a group the query does not name


@pytest.mark.parametrize(
    "query",
    ["", "   ", "！？。", "%_'\"\\", "x" * 10000, "社保" * 5000, "\x00", "😀", "NEAR(a b)"],
)
def test_hostile_queries_give_plain_terms(query: str) -> None:
    terms = T.query_terms(query)
    assert all(t.term and len(t.term) <= T.MAX_TERM_CHARS for t in terms)
    assert all(t.term.isalnum() for t in terms)  # nothing a query syntax could read
    assert len(terms) <= 4 * T.MAX_QUERY_CHARS


def test_phrase_and_pinyin_spans() -> None:
    assert T.phrase_spans("社保卡丢了社保", ["社保", "保卡", ""]) == [(0, 3), (5, 7)]
    assert T.pinyin_spans("去社保卡网点", {"shebao"}) == [(1, 3)]
    assert T.pinyin_spans("去社保卡网点", set()) == []
    assert T.merge([(3, 5), (0, 2), (1, 3)]) == [(0, 5)]


def test_sentences_split_after_stops_and_lines() -> None:
    assert [s for _i, s in T.sentences("先挂失。再补办！\n带身份证")] == [
        "先挂失。",
        "再补办！",
        "带身份证",
    ]
    assert T.sentences("") == []


def test_typed_pinyin_is_cut_into_syllables_and_paired() -> None:
    assert T.split_pinyin("lajifenlei") == ("la", "ji", "fen", "lei")
    assert T.split_pinyin("xian") == ("xian",)  # the fewest syllables
    assert T.split_pinyin("gjj") == () and T.split_pinyin("app") == ()
    terms = _by_term("lajifenlei")
    assert {"laji", "jifen", "fenlei"} <= set(terms)
    assert terms["laji"].kind == "latin"
