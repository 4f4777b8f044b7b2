"""The knowledge base's text rules (issue 16): callers' words and entries' words made alike.

Pure: strings in, strings out (OpenCC, pypinyin and jieba are libraries, loaded once per
process). Both sides of a search go through the same steps:

1. `normalise`: NFKC (full-width letters and digits become ASCII), traditional characters
   become simplified (OpenCC t2s: 社會保障卡 → 社会保障卡), lower case, whitespace collapsed.
2. `terms`: the text's search terms — for each run of Chinese characters its character
   bigrams (robust to words jieba does not know and to colloquial phrasing) and its jieba words
   (search mode, so 社会保障卡 also gives 社会, 保障); for each run of letters or digits the run
   itself; and, where asked, pinyin: each bigram's and each word's toneless syllables joined
   (设保 and 社保 are both `shebao`: typos and homophones) and each word's initials (`sbk`,
   `gjj`: how people type on a phone).

`index_terms` gives an entry's terms per field (title, question, keyword, answer; pinyin for all
but the answer, whose size would double for little gain); `query_terms` gives a query's terms
with their kind (`word`: the caller's own characters, `pinyin`: from their sound, `latin`: typed
in letters, `synonym`: from a synonym group the query names) and weight.

`aligned` normalises character by character and keeps each output character's position in the
original text, so that the words a search matched can be marked in the text as written.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jieba

# One field's weight in a match, relative to the title (the re-ranker and both databases'
# rankings use the same order: title, question, keyword, answer).
FIELDS = ("title", "question", "keyword", "answer")
FIELD_WEIGHTS = {"title": 1.0, "question": 0.9, "keyword": 0.8, "answer": 0.35}
# A query term's weight by where it came from: the caller's own characters count most; a
# pinyin match (a typo or homophone) or a synonym a little less; letters typed as pinyin
# initials are as good as the word when they match.
KIND_WEIGHTS = {"word": 1.0, "latin": 0.9, "synonym": 0.8, "pinyin": 0.6}

MAX_QUERY_CHARS = 200  # a caller's request: the rest adds nothing but time
MAX_TERM_CHARS = 40  # longer runs of letters or digits are not terms (a URL, a serial)

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUN = re.compile(rf"[{_CJK}]+|[a-z0-9]+")
_IS_CJK = re.compile(rf"[{_CJK}]")
_SPACE = re.compile(r"\s+")
_SENTENCE = re.compile(r"[^。！？；!?;\n]+[。！？；!?;]?")

# Query words that say nothing about the matter (how a caller speaks around it). Measured on
# nothing but common sense; document frequency does the rest (their bigrams are in every
# entry's questions, so they weigh little anyway).
_QUERY_STOP = """
    请问 你好 您好 想问 问一下 问下 咨询 一下 我想 我要 我们 你们 他们 怎么 怎么办 怎样 如何 什么
    哪里 哪儿 哪个 可以 能不能 能否 是否 需要 要求 有没有 没有 是不是 知道 告诉 这个 那个 现在
    时候 的话 还是 或者 然后 就是 但是 因为 所以 已经 应该 一个 自己 啊 吧 呢 吗 啦 呀 哦 嗯
    咋整 咋办 咋弄 啥 咋 了 的 我 你 他 她 在 是 有 和 与 及 都 也 还 就 要 去 到 把 给
"""
QUERY_STOP = frozenset(_QUERY_STOP.split())


@dataclass(frozen=True)
class QueryTerm:
    term: str  # as indexed: a normalised word, bigram or pinyin string
    kind: str  # word | pinyin | latin | synonym
    weight: float  # KIND_WEIGHTS[kind]
    source: str  # what in the query (normalised) it came from, for marking matches


# ---- normalisation -----------------------------------------------------------------------

_t2s_converter: Any = None
_t2s_lock = threading.Lock()


def _t2s(text: str) -> str:
    global _t2s_converter
    if _t2s_converter is None:
        with _t2s_lock:
            if _t2s_converter is None:
                import opencc

                _t2s_converter = opencc.OpenCC("t2s")
    return str(_t2s_converter.convert(text))


def normalise(text: str) -> str:
    """NFKC, traditional → simplified, lower case, whitespace collapsed to one space."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text)
    text = _t2s(text).lower()
    return _SPACE.sub(" ", text).strip()


def aligned(text: str) -> tuple[str, list[int]]:
    """`normalise` done character by character: the normalised text and, for each of its
    characters, the index of the original character it came from (for marks)."""
    nf = unicodedata.normalize("NFKC", text).lower()
    if len(nf) == len(text):  # the common case: one character for one
        simplified = _t2s(nf)
        if len(simplified) == len(text):
            return simplified, list(range(len(text)))
    out: list[str] = []
    where: list[int] = []
    nfkc = [unicodedata.normalize("NFKC", c).lower() for c in text]
    joined = "".join(nfkc)
    simplified = _t2s(joined)
    if len(simplified) == len(joined):  # t2s is one to one for almost every text
        pos = 0
        for i, part in enumerate(nfkc):
            for _ in part:
                out.append(simplified[pos])
                where.append(i)
                pos += 1
    else:
        for i, part in enumerate(nfkc):
            for c in _t2s(part):
                out.append(c)
                where.append(i)
    return "".join(out), where


def sentences(text: str) -> list[tuple[int, str]]:
    """The text's sentences with their start: split after 。！？； and at line ends."""
    return [(m.start(), m.group()) for m in _SENTENCE.finditer(text) if m.group().strip()]


# ---- pinyin and words --------------------------------------------------------------------


@lru_cache(maxsize=65536)
def syllables(run: str) -> tuple[str, ...]:
    """One toneless pinyin syllable per character of a run of Chinese characters."""
    from pypinyin import Style, lazy_pinyin

    def each(chars: str) -> Any:  # a character without pinyin stays, one item each
        return list(chars)

    result = lazy_pinyin(run, style=Style.NORMAL, errors=each)
    if len(result) != len(run):  # pypinyin keeps one item per Chinese character
        result = [lazy_pinyin(c, style=Style.NORMAL)[0] for c in run]
    return tuple(s.replace("ü", "v") for s in result)


def _jieba() -> jieba.Tokenizer:
    from jiesu.intel.text import _jieba as shared  # one dictionary per process

    return shared()


@lru_cache(maxsize=65536)
def word_spans(run: str) -> tuple[tuple[int, int], ...]:
    """The jieba words of a run (search mode: long words and the words inside them), as
    (start, end) spans, two characters or more."""
    spans = {(s, e) for _w, s, e in _jieba().tokenize(run, mode="search") if e - s >= 2}
    return tuple(sorted(spans))


def runs(normalised: str) -> list[str]:
    return _RUN.findall(normalised)


def is_cjk(run: str) -> bool:
    return bool(_IS_CJK.match(run))


def text_terms(normalised: str, *, pinyin: bool) -> list[str]:
    """The terms of one normalised text, in order, repeats kept (term frequency)."""
    out: list[str] = []
    for run in runs(normalised):
        if not is_cjk(run):
            if len(run) <= MAX_TERM_CHARS:
                out.append(run)
            continue
        if len(run) == 1:
            out.append(run)
            if pinyin:
                out.extend(syllables(run))
            continue
        out.extend(run[i : i + 2] for i in range(len(run) - 1))
        spans = [(s, e) for s, e in word_spans(run) if e - s > 2]  # 2-char words are bigrams
        out.extend(run[s:e] for s, e in spans)
        if pinyin:
            syl = syllables(run)
            out.extend(syl[i] + syl[i + 1] for i in range(len(run) - 1))
            for s, e in [*spans, *((s, e) for s, e in word_spans(run) if e - s == 2)]:
                out.append("".join(syl[s:e]))
                out.append("".join(x[0] for x in syl[s:e] if x))
    return out


def index_terms(
    *, title: str, questions: Sequence[str], keywords: Sequence[str], answer: str
) -> dict[str, list[str]]:
    """An entry's terms per field (FIELDS), repeats kept."""
    return {
        "title": text_terms(normalise(title), pinyin=True),
        "question": [t for q in questions for t in text_terms(normalise(q), pinyin=True)],
        "keyword": [t for k in keywords for t in text_terms(normalise(k), pinyin=True)],
        "answer": text_terms(normalise(answer), pinyin=False),
    }


def _looks_like_pinyin(run: str) -> bool:
    return run.isascii() and run.isalpha()


_INITIALS = [
    "b",
    "p",
    "m",
    "f",
    "d",
    "t",
    "n",
    "l",
    "g",
    "k",
    "h",
    "j",
    "q",
    "x",
    "zh",
    "ch",
    "sh",
    "r",
    "z",
    "c",
    "s",
    "y",
    "w",
]
_FINALS = [
    "a",
    "o",
    "e",
    "i",
    "u",
    "v",
    "ai",
    "ei",
    "ui",
    "ao",
    "ou",
    "iu",
    "ie",
    "ve",
    "ue",
    "er",
    "an",
    "en",
    "in",
    "un",
    "vn",
    "ang",
    "eng",
    "ing",
    "ong",
    "ia",
    "iao",
    "ian",
    "iang",
    "iong",
    "ua",
    "uo",
    "uai",
    "uan",
    "uang",
]
SYLLABLES = frozenset([*(i + f for i in _INITIALS for f in _FINALS), *_FINALS])


@lru_cache(maxsize=4096)
def split_pinyin(run: str) -> tuple[str, ...]:
    """Letters typed as pinyin cut into syllables, the fewest that cover it ("lajifenlei" →
    la ji fen lei); () when they are not pinyin (initials such as "gjj", English words)."""
    if not run.isascii() or not run.isalpha() or len(run) > MAX_TERM_CHARS:
        return ()
    best: list[tuple[str, ...] | None] = [()] + [None] * len(run)
    for end in range(1, len(run) + 1):
        for start in range(max(0, end - 6), end):
            head = best[start]
            if head is None or run[start:end] not in SYLLABLES:
                continue
            cut = (*head, run[start:end])
            if best[end] is None or len(cut) < len(best[end] or ()):
                best[end] = cut
    return best[len(run)] or ()


def query_terms(query: str, synonyms: Iterable[Sequence[str]] = ()) -> list[QueryTerm]:
    """A query's terms, each once, with kind and weight: the caller's characters (bigrams,
    words), their pinyin (typos and homophones), letters as typed (pinyin or initials), and
    the other words of every synonym group the query names (their bigrams and words)."""
    q = normalise(query[: MAX_QUERY_CHARS * 2])[:MAX_QUERY_CHARS]
    found: dict[str, QueryTerm] = {}

    def add(term: str, kind: str, source: str) -> None:
        if not term or term in QUERY_STOP:
            return
        old = found.get(term)
        if old is None or KIND_WEIGHTS[kind] > old.weight:
            found[term] = QueryTerm(term, kind, KIND_WEIGHTS[kind], source)

    for run in runs(q):
        if not is_cjk(run):
            if len(run) <= MAX_TERM_CHARS and (len(run) >= 2 or run.isdigit()):
                add(run, "latin" if _looks_like_pinyin(run) else "word", run)
                sounds = split_pinyin(run)  # typed pinyin: its pairs of syllables, as indexed
                for i in range(len(sounds) - 1):
                    add(sounds[i] + sounds[i + 1], "latin", run)
            continue
        if len(run) == 1:
            continue  # one character alone says too little (了, 啊, 卡)
        syl = syllables(run)
        for i in range(len(run) - 1):
            add(run[i : i + 2], "word", run[i : i + 2])
        for s, e in word_spans(run):
            add(run[s:e], "word", run[s:e])
        for i in range(len(run) - 1):
            if run[i : i + 2] not in QUERY_STOP:
                add(syl[i] + syl[i + 1], "pinyin", run[i : i + 2])
        for s, e in word_spans(run):
            if e - s > 2 and run[s:e] not in QUERY_STOP:
                add("".join(syl[s:e]), "pinyin", run[s:e])
    for group in synonyms:
        present = [w for w in group if w and w in q]
        if not present:
            continue
        for word in group:
            if word in present or not word:
                continue
            for run in runs(word):
                if not is_cjk(run):
                    add(run, "synonym", word)
                    continue
                for i in range(len(run) - 1):
                    add(run[i : i + 2], "synonym", word)
                for s, e in word_spans(run):
                    add(run[s:e], "synonym", word)
    return list(found.values())


def phrase_spans(normalised: str, phrases: Iterable[str]) -> list[tuple[int, int]]:
    """Every occurrence of the phrases in a normalised text, overlapping spans merged."""
    spans: list[tuple[int, int]] = []
    for phrase in {p for p in phrases if p}:
        start = normalised.find(phrase)
        while start >= 0:
            spans.append((start, start + len(phrase)))
            start = normalised.find(phrase, start + 1)
    return merge(spans)


def merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def pinyin_spans(normalised: str, sounds: set[str]) -> list[tuple[int, int]]:
    """Bigrams of a normalised text whose pinyin is among `sounds` (a typo's match)."""
    spans: list[tuple[int, int]] = []
    if not sounds:
        return spans
    for m in _RUN.finditer(normalised):
        run = m.group()
        if not is_cjk(run) or len(run) < 2:
            continue
        syl = syllables(run)
        for i in range(len(run) - 1):
            if syl[i] + syl[i + 1] in sounds:
                spans.append((m.start() + i, m.start() + i + 2))
    return merge(spans)
