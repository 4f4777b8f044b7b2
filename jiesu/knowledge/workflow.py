"""The knowledge base's workflow as one table (pure): a version's states, who may move it, and
what changed between two versions.

A **version** of an entry is written by the owning department (the *owner* side: a user whose
unit is the owner unit or above it) and reviewed by the service centre (the *centre* side:
supervisors and admins, who may also write any entry as its owner would). The *system* side is
the service itself (a version superseded when the next one publishes).

    draft ──submit──▶ submitted ──publish──▶ published ──(next publishes)──▶ superseded
      ▲  ◀──recall (its author)──┘    │
      │                               └──return──▶ returned ──edit──▶ draft
      └──edit                                       │
    draft / returned ──discard──▶ discarded ◀───────┘

An entry under review keeps its published version answering: publishing a version is the only
thing that moves another one (the old published → superseded).

`diff(old, new)` lists what changed between two versions' contents ("who changed what" on the
entry page): scalar fields as before/after, list fields (keywords, questions) as added/removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jiesu.errors import Conflict, Forbidden

OWNER, CENTRE, SYSTEM = "owner", "centre", "system"
SIDES = (OWNER, CENTRE, SYSTEM)

STATES: dict[str, str] = {
    "draft": "草稿",
    "submitted": "待审核",
    "returned": "已退回",
    "published": "已发布",
    "superseded": "已被新版本替代",
    "discarded": "已放弃",
}
ACTIONS: dict[str, str] = {
    "edit": "编辑草稿",
    "submit": "提交审核",
    "recall": "撤回审核",
    "publish": "发布",
    "return": "退回",
    "discard": "放弃草稿",
    "supersede": "被新版本替代",
}
# The states a version may still be worked on in (the entry's `pending_version_id`).
PENDING = frozenset({"draft", "submitted", "returned"})
EDITABLE = frozenset({"draft", "returned"})

_BOTH = frozenset({OWNER, CENTRE})


@dataclass(frozen=True)
class Transition:
    state: str
    action: str
    to: str
    sides: frozenset[str]


# The whole workflow: (state, action) → next state and the sides that may take it.
TABLE: tuple[Transition, ...] = (
    Transition("draft", "edit", "draft", _BOTH),
    Transition("returned", "edit", "draft", _BOTH),  # reworked after the centre's note
    Transition("draft", "submit", "submitted", _BOTH),
    Transition("returned", "submit", "submitted", _BOTH),
    Transition("submitted", "recall", "draft", frozenset({OWNER})),  # the author takes it back
    Transition("submitted", "publish", "published", frozenset({CENTRE})),
    Transition("submitted", "return", "returned", frozenset({CENTRE})),
    Transition("draft", "discard", "discarded", _BOTH),
    Transition("returned", "discard", "discarded", _BOTH),
    Transition("published", "supersede", "superseded", frozenset({SYSTEM})),
)
_BY_KEY = {(t.state, t.action): t for t in TABLE}


def transition(state: str, action: str) -> Transition | None:
    return _BY_KEY.get((state, action))


def allowed(state: str, action: str, side: str) -> bool:
    t = _BY_KEY.get((state, action))
    return t is not None and side in t.sides


def next_state(state: str, action: str, role_side: str) -> str:
    """The state `action` leads to from `state` when taken by `role_side`. Conflict (409) when
    the action does not apply in this state, Forbidden (403) when this side may not take it."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if role_side not in SIDES:
        raise ValueError(f"unknown side {role_side!r}")
    t = _BY_KEY.get((state, action))
    if t is None:
        raise Conflict(
            f"版本{STATES.get(state, state)}，不能{ACTIONS[action]} / cannot {action} a version "
            f"that is {state}"
        )
    if role_side not in t.sides:
        who = "热线中心审核" if CENTRE in t.sides else "主管单位"
        raise Forbidden(f"{ACTIONS[action]}须由{who}操作 / {role_side} may not {action}")
    return t.to


def available(state: str, sides: Iterable[str]) -> list[str]:
    """The actions (in table order, without repeats) that any of `sides` may take now."""
    have = set(sides)
    out: list[str] = []
    for t in TABLE:
        if t.state == state and t.sides & have and t.action not in out:
            out.append(t.action)
    return out


# ---- what changed -----------------------------------------------------------------------------

# A version's content, in the order the entry page shows it.
FIELDS: dict[str, str] = {
    "title": "标题",
    "answer": "答复口径",
    "category_code": "事项分类",
    "owner_unit_id": "主管单位",
    "keywords": "关键词",
    "questions": "常见问法",
    "valid_from": "生效日期",
    "valid_to": "失效日期",
    "source": "政策依据",
    "link": "链接",
}
LIST_FIELDS = frozenset({"keywords", "questions"})


@dataclass(frozen=True)
class Change:
    field: str
    before: Any
    after: Any
    added: tuple[str, ...] = ()  # list fields: items only in the new version
    removed: tuple[str, ...] = ()  # … only in the old one

    @property
    def label(self) -> str:
        return FIELDS.get(self.field, self.field)


def _items(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _blank(value: Any) -> Any:
    return None if value == "" or value == [] else value


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """What changed from `old` to `new` (two versions' contents; `{}` for "nothing before"),
    in `FIELDS` order; fields outside `FIELDS` (the change note, times) are not content."""
    changes: list[Change] = []
    for name in FIELDS:
        before, after = _blank(old.get(name)), _blank(new.get(name))
        if name in LIST_FIELDS:
            was, now = _items(before), _items(after)
            added = tuple(x for x in now if x not in was)
            removed = tuple(x for x in was if x not in now)
            if added or removed or was != now:  # a new order is a change too
                changes.append(Change(name, was, now, added, removed))
        elif before != after:
            changes.append(Change(name, before, after))
    return changes
