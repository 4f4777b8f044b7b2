"""The knowledge base's version workflow (pure): every state × action × side against the table
written out by hand, and the diff of two versions ("who changed what")."""

from __future__ import annotations

from datetime import date

import pytest

from jiesu.errors import Conflict, Forbidden
from jiesu.knowledge import workflow as W
from jiesu.knowledge.models import VERSION_STATES

OW, C, S = W.OWNER, W.CENTRE, W.SYSTEM

# The workflow as the issue states it, independently of `W.TABLE`: (state, action) → (next, sides).
EXPECTED: dict[tuple[str, str], tuple[str, set[str]]] = {
    ("draft", "edit"): ("draft", {OW, C}),
    ("returned", "edit"): ("draft", {OW, C}),
    ("draft", "submit"): ("submitted", {OW, C}),
    ("returned", "submit"): ("submitted", {OW, C}),
    ("submitted", "recall"): ("draft", {OW}),
    ("submitted", "publish"): ("published", {C}),
    ("submitted", "return"): ("returned", {C}),
    ("draft", "discard"): ("discarded", {OW, C}),
    ("returned", "discard"): ("discarded", {OW, C}),
    ("published", "supersede"): ("superseded", {S}),
}


def test_the_states_are_the_tables_states() -> None:
    assert set(W.STATES) == set(VERSION_STATES)
    assert set(W.PENDING) == {"draft", "submitted", "returned"}


@pytest.mark.parametrize("state", VERSION_STATES)
@pytest.mark.parametrize("action", list(W.ACTIONS))
@pytest.mark.parametrize("side", W.SIDES)
def test_every_state_action_and_side(state: str, action: str, side: str) -> None:
    expected = EXPECTED.get((state, action))
    if expected is None:
        assert not W.allowed(state, action, side)
        with pytest.raises(Conflict):
            W.next_state(state, action, side)
    elif side in expected[1]:
        assert W.allowed(state, action, side)
        assert W.next_state(state, action, side) == expected[0]
    else:
        assert not W.allowed(state, action, side)
        with pytest.raises(Forbidden):
            W.next_state(state, action, side)


def test_published_and_finished_versions_cannot_be_edited_or_discarded() -> None:
    for state in ("submitted", "published", "superseded", "discarded"):
        for side in (OW, C):
            assert not W.allowed(state, "edit", side)
            assert not W.allowed(state, "discard", side)


def test_only_the_centre_reviews_and_only_the_system_supersedes() -> None:
    with pytest.raises(Forbidden, match="热线中心"):
        W.next_state("submitted", "publish", OW)
    with pytest.raises(Forbidden, match="热线中心"):
        W.next_state("submitted", "return", OW)
    with pytest.raises(Forbidden):
        W.next_state("published", "supersede", C)


def test_the_refusal_names_the_state_and_the_action_in_chinese() -> None:
    with pytest.raises(Conflict) as caught:
        W.next_state("published", "submit", OW)
    assert "已发布" in caught.value.message and "提交审核" in caught.value.message


def test_unknown_action_or_side_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        W.next_state("draft", "fly", OW)
    with pytest.raises(ValueError):
        W.next_state("draft", "edit", "citizen")


def test_available_actions_per_side() -> None:
    assert W.available("draft", {OW}) == ["edit", "submit", "discard"]
    assert W.available("submitted", {OW}) == ["recall"]
    assert W.available("submitted", {C, OW}) == ["recall", "publish", "return"]
    assert W.available("submitted", {C}) == ["publish", "return"]
    assert W.available("returned", {OW}) == ["edit", "submit", "discard"]
    assert W.available("published", {OW, C}) == []
    assert W.available("draft", set()) == []


# ---- diff -------------------------------------------------------------------------------------

OLD = {
    "title": "社保卡丢了怎么补办",
    "answer": "请携带身份证到任一社保卡服务网点办理挂失和补办。",
    "category_code": "0501",
    "owner_unit_id": 7,
    "keywords": ["社保卡", "挂失"],
    "questions": ["社保卡丢了怎么办"],
    "valid_from": date(2026, 1, 1),
    "valid_to": None,
    "source": None,
    "link": "",
}


def test_nothing_changed_is_an_empty_diff() -> None:
    assert W.diff(OLD, dict(OLD)) == []
    assert W.diff({"source": None, "link": ""}, {"source": "", "link": None}) == []


def test_scalar_fields_show_before_and_after_in_order() -> None:
    new = dict(OLD, answer="新的答复口径，内容更完整一些。", valid_to=date(2027, 12, 31))
    changes = W.diff(OLD, new)
    assert [c.field for c in changes] == ["answer", "valid_to"]
    assert changes[0].before == OLD["answer"] and changes[0].after == new["answer"]
    assert changes[1].before is None and changes[1].after == date(2027, 12, 31)
    assert [c.label for c in changes] == ["答复口径", "失效日期"]


def test_list_fields_show_what_was_added_and_removed() -> None:
    new = dict(OLD, keywords=["社保卡", "补办", "社会保障卡"], questions=["社保卡丢了怎么办"])
    (change,) = W.diff(OLD, new)
    assert change.field == "keywords"
    assert change.added == ("补办", "社会保障卡")
    assert change.removed == ("挂失",)
    assert change.before == ["社保卡", "挂失"] and change.after == new["keywords"]


def test_a_new_order_of_the_same_items_is_a_change_without_additions() -> None:
    new = dict(OLD, keywords=["挂失", "社保卡"])
    (change,) = W.diff(OLD, new)
    assert change.added == () and change.removed == ()


def test_the_first_version_shows_every_field_it_fills() -> None:
    changes = W.diff({}, OLD)
    assert [c.field for c in changes] == [
        "title", "answer", "category_code", "owner_unit_id", "keywords", "questions", "valid_from",
    ]  # fmt: skip
    assert all(c.before in (None, []) for c in changes)


def test_fields_outside_the_content_are_not_diffed() -> None:
    assert W.diff(dict(OLD, change_note="a"), dict(OLD, change_note="b", updated_at=1)) == []
