"""Text normalisation for the classifiers: raw and pre-segmented text made alike.

Pure: strings in, strings out. The classifiers learn from files such as the Teddy Cup training
set, whose messages were word-segmented and had their stop words removed, and are then asked
about raw text as a citizen typed it. A model only generalises from one to the other when both
are brought to the same form, so every text goes through the same steps at training and at
prediction time:

1. `normalise`: NFKC (full-width letters, digits and punctuation become ASCII), the `_x000D_`
   carriage-return artefacts of Excel exports removed, lower case, and everything that is not a
   letter, a digit or a CJK character removed — whitespace included, which erases the original
   segmentation ("咨询 社保 问题" and "咨询社保问题" become the same string).
2. `strip_stop_words` (optional): every occurrence of a `STOP_WORDS` entry deleted, then digits
   and lone Latin letters. The raw text then looks like the segmented text with its spaces
   removed; applied to segmented text it changes little, because those words are already gone.

The features built on top (classify.py) are character n-grams, which do not depend on any
segmentation; `words` re-segments a prepared text with jieba for the optional word features.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jieba

# The stop words the Teddy Cup training file was stripped of, measured, not guessed: 261 raw
# messages in hot_messages.csv and messages_replies.csv are the raw form of training rows; jieba
# was run on each raw text and a word is listed when jieba produced it at least 4 times and it
# never survived in the segmented version of the same message. Removed by hand from that
# measurement: content words that only failed to survive because the two segmenters split them
# differently (保险, 消防栓, 标识 …) and single digits and letters, handled by the rules below.
# Deleting them as substrings (not as jieba tokens) is deliberate: it needs no segmenter, it is
# about 25 times faster, and measured on the same 261 pairs it brings the raw text closer to the
# segmented one (character 3-gram Jaccard 0.94, against 0.46 for whitespace removal alone and
# 0.93 for jieba tokens minus the list).
_STOP_WORDS = """
    的 在 了 是 和 我们 我 不 有 也 没有 就 都 为 到 与 给 对 等 还 该 让 要 向 将 可以 并 及 被 而 能 这 关于 不能 但 又 本人 多 他们 按 吗
    作为 有关 上 会 如果 从 或 因为 一 任何 以 这样 去 来 你 但是 于 由 更 通过 不是 人民 还是 根据 就是 开始 这个 由于 自己 多次 可 很 所 们 才 什么
    个 为了 把 其他 这些 还有 为什么 不得 大 且 此 着 没 很多 内 同时 二 并且 以及 过 按照 结果 自 而且 您 他 必须 之 为何 经过 对于 均 才能 用 因
    非常 那 基本 你们 只有 各 怎么 三 其中 可能 尽快 近 得 比如 时候 甚至 不要 各种 呢 所以 如下 如 可是 因此 其 第 比 只是 如何 出 至 这里 看 经 本
    他人 难道 或者 个人 老 即 如此 拿 地 多少 另外 谁 经常 有些 那么 管 极大 起来 当 虽然 其它 仅 像 各位 这么 一般 打 本身 到底 四 随着 不仅 等等 据
    不会 跟 起 首先 仅仅 带 哪里 离 望 另 极为 然而 连 一旦 除 出来 叫 一样 则 吧 于是 那些 啊 较 另行 共 便 么 每 大家 几乎 如今 反而 更加 既 待 同
    否则 理应 不少 既然 仍 及其 其实 不但 然后 从未 到处 怎么办 刚 本着 仍然 哪 即使 它 这边 往 加上 自从 仍旧 别人 七 不再 之一 以免 大概 竟 五 很少 呀
    不管 除了 不同 自身 若 哪些 别的 不了 不成 光 见 鉴于 即便 毫无 加以 人人 只要 怕 从而 万一 基于 从来 不得不 基本上 就算 而是 加之 充分 己 综上所述 满
    何时
"""
STOP_WORDS: tuple[str, ...] = tuple(_STOP_WORDS.split())

# How many prepared characters make a text's head: about a message's subject (留言主题: median 19
# characters, 15 once prepared), which says more about the category than any other part of the
# text. 20 did a little better than 30 in cross-validation on the Teddy Cup training file.
HEAD_CHARS = 20

# Excel writes a carriage return inside a cell as _x000D_ (and a line feed as _x000A_).
_ARTEFACT = re.compile(r"_x000[da]_", re.IGNORECASE)
# Everything but letters, digits and CJK characters: punctuation, symbols and whitespace.
_NON_WORD = re.compile(r"[\W_]+")
# Longest first, so that 不得不 is deleted whole rather than leaving a 不 behind 不得.
_STOP = re.compile("|".join(re.escape(w) for w in sorted(STOP_WORDS, key=len, reverse=True)))
# The segmented file dropped lone letters (the "A" of a masked "A市") and one-digit numbers but
# kept "A3" and "2019": deleting every digit run and then every lone letter treats both forms
# alike ("A3区" and "A3 区" both become "a区"); numbers carry no category anyway.
_LONE_LETTER = re.compile(r"(?<![a-z0-9])[a-z](?![a-z0-9])")
_DIGITS = re.compile(r"\d+")


def normalise(text: str) -> str:
    """NFKC, Excel artefacts removed, lower case, only letters, digits and CJK characters left."""
    text = _ARTEFACT.sub("", unicodedata.normalize("NFKC", text))
    return _NON_WORD.sub("", text.lower())


def strip_stop_words(normalised: str) -> str:
    """Delete the stop words, digits and lone letters from a `normalise`d text."""
    return _DIGITS.sub("", _LONE_LETTER.sub("", _STOP.sub("", normalised)))


def prepare(text: str, *, stop_words: bool = True) -> str:
    """The form a classifier sees: `normalise`, then `strip_stop_words` unless told not to.

    Keep the stop words where they carry the label: a request type (咨询 asks 如何, 为什么, 吗)
    is partly told by exactly the function words a topic classifier drops.
    """
    normalised = normalise(text)
    return strip_stop_words(normalised) if stop_words else normalised


def head(prepared: str) -> str:
    """The first `HEAD_CHARS` characters of a prepared text: roughly its subject."""
    return prepared[:HEAD_CHARS]


_tokenizer: jieba.Tokenizer | None = None
_tokenizer_lock = threading.Lock()


def _jieba() -> jieba.Tokenizer:
    """One jieba tokenizer per process, loaded on first use.

    Loading reads a 5 MB dictionary (about a second; jieba caches the parsed form in the
    temporary folder), so it happens once, and only in processes that need words.
    """
    global _tokenizer
    if _tokenizer is None:
        with _tokenizer_lock:
            if _tokenizer is None:
                import logging

                import jieba

                jieba.setLogLevel(logging.WARNING)
                tokenizer = jieba.Tokenizer()
                tokenizer.initialize()
                _tokenizer = tokenizer
    return _tokenizer


def words(prepared: str) -> list[str]:
    """jieba's words of a prepared text (no HMM: unknown words fall back to characters, which
    the character n-grams already cover, and it is a third faster)."""
    return list(_jieba().lcut(prepared, HMM=False))
