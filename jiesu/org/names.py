"""Display names of staff (pure: no database, no web).

A name is shown to colleagues on every ticket's timeline, so it must read as what it is: no
bidirectional or other invisible format controls (U+202E turns "张三 exe.txt" around), no
zero-width or blank-looking characters, and not another user's name in disguise. Two names are
the same when they match after NFKC, case folding and the removal of all whitespace
("张 三", "张三" and "ＺＨＡＮＧ" all collapse).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

# Letters (Lo) that render as nothing: Hangul fillers, the braille blank, the Khmer vowel
# inherents; anything in the categories below is refused as well.
INVISIBLE = frozenset("\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")
# Cc controls, Cf format (bidi embeddings, overrides and isolates, LRM/RLM/ALM, zero-width
# space/joiners, word joiner, BOM, soft hyphen, tags …), Co private use, Cs surrogates, Cn
# unassigned, Zl/Zp line and paragraph separators.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a display name (bilingual, Chinese first), or None."""
    for char in name:
        if char in INVISIBLE or unicodedata.category(char) in REFUSED_CATEGORIES:
            return (
                f"姓名含有不可见或控制字符 U+{ord(char):04X}，请删除 / the name holds an invisible "
                f"or control character U+{ord(char):04X}"
            )
        if char.isspace() and char != " ":
            return (
                f"姓名中只能使用普通空格（U+{ord(char):04X} 不可用） / only plain spaces in a name "
                f"(not U+{ord(char):04X})"
            )
    return None


def name_key(name: str) -> str:
    """The form two names are compared in: NFKC, case folded, without any whitespace."""
    return "".join(unicodedata.normalize("NFKC", name).casefold().split())


def duplicate_of(name: str, others: Iterable[tuple[str, str]]) -> str | None:
    """The first of `others` (label, name) whose name is the same as `name`, or None."""
    key = name_key(name)
    return next((label for label, other in others if name_key(other) == key), None)
