"""Pure: what a citizen's SMS reply to the 回访邀请 says (短信回访).

The invitation asks for "1 满意 2 基本满意 3 不满意" (or 退订 to stop SMS). A reply is read after
NFKC folding (full-width digits and punctuation), with spaces and punctuation dropped:

- a leading digit 1/2/3 decides, whatever words follow ("1满意", "3 不满意，没解决");
  a digit that contradicts the words that follow it ("1不满意") is not guessed: unparseable;
- else the words: 非常满意 → very satisfied, 满意 → satisfied, 基本满意/还行/一般 → basically
  satisfied, 不满意/不太满意 → dissatisfied, 非常不满意/很不满意 → very dissatisfied;
- 退订 / TD / T / N / 取消 / 不要再发 (alone) → opt-out;
- anything else (a question, two digits, several choices, an empty text) → unparseable, for a
  callback agent.

`solved`: satisfied levels count as solved; 不满意 as not solved; words saying it was not
solved (没解决, 未解决, 没有解决, 没办) make it not solved whatever the level, and words saying it
was (已解决, 解决了) make it solved.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

DIGITS = {"1": "satisfied", "2": "basically_satisfied", "3": "dissatisfied"}
CHOICES_TEXT = "1 满意 2 基本满意 3 不满意"

# longest first: "非常不满意" must not read as "满意"
_WORDS: tuple[tuple[str, str], ...] = (
    ("非常不满意", "very_dissatisfied"),
    ("很不满意", "very_dissatisfied"),
    ("特别不满意", "very_dissatisfied"),
    ("不太满意", "dissatisfied"),
    ("不满意", "dissatisfied"),
    ("非常满意", "very_satisfied"),
    ("很满意", "very_satisfied"),
    ("特别满意", "very_satisfied"),
    ("基本满意", "basically_satisfied"),
    ("比较满意", "basically_satisfied"),
    ("还算满意", "basically_satisfied"),
    ("满意", "satisfied"),
    ("还行", "basically_satisfied"),
    ("一般", "basically_satisfied"),
)
_UNSOLVED = ("没解决", "未解决", "没有解决", "没办", "没有办", "未办", "不解决", "没处理", "未处理")
_SOLVED = ("已解决", "解决了", "已经解决", "已处理", "处理了")
_OPT_OUT = frozenset({"退订", "TD", "T", "N", "取消", "退", "不要再发", "取消订阅", "退订短信"})
SATISFIED = frozenset({"very_satisfied", "satisfied", "basically_satisfied"})
# what is dropped before reading: whitespace, punctuation and symbols of any width
_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)
MAX_TEXT = 160  # a reply longer than this is a message for a person, not a rating


@dataclass(frozen=True)
class Reply:
    kind: str  # "rating" | "opt_out" | "unparseable"
    satisfaction: str | None = None
    solved: bool | None = None


UNPARSEABLE = Reply("unparseable")


def normalise(text: str) -> str:
    """NFKC (full-width → half-width), upper case, no spaces or punctuation."""
    return _NOISE.sub("", unicodedata.normalize("NFKC", text)).upper()


def _level_of(words: str) -> str | None:
    """The one satisfaction level the words name, or None (none, or two that disagree)."""
    found: list[str] = []
    rest = words
    for phrase, level in _WORDS:
        if phrase in rest:
            found.append(level)
            rest = rest.replace(phrase, "|")
    return found[0] if len(set(found)) == 1 else None


def _solved(level: str, words: str) -> bool:
    if any(w in words for w in _UNSOLVED):
        return False
    if any(w in words for w in _SOLVED):
        return True
    return level in SATISFIED


def parse(text: str) -> Reply:
    """Read one SMS reply; never raises."""
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        return UNPARSEABLE
    clean = normalise(text)
    if not clean:
        return UNPARSEABLE
    if clean in _OPT_OUT:
        return Reply("opt_out")
    head, words = clean[0], clean[1:]
    if head.isdigit():
        if head not in DIGITS or any(c.isdigit() for c in words):
            return UNPARSEABLE
        level = DIGITS[head]
        named = _level_of(words)
        if words and named is None and any(p in words for p, _ in _WORDS):
            return UNPARSEABLE  # words naming two levels
        if named is not None and (named in SATISFIED) != (level in SATISFIED):
            return UNPARSEABLE  # "1不满意": the digit and the words disagree
        if named is not None and head == "1" and named == "very_satisfied":
            level = named  # "1 非常满意" keeps the stronger word
        return Reply("rating", level, _solved(level, words))
    if any(c.isdigit() for c in clean):
        return UNPARSEABLE
    said = _level_of(clean)
    if said is None:
        return UNPARSEABLE
    return Reply("rating", said, _solved(said, clean))
