"""What the knowledge base is missing: consultations it could not answer, clustered by theme. Pure.

`suggest.py` hands over the texts (title + content) of the consultations that were answered
without an entry or had to be dispatched; this module groups them into themes and describes each
one (its representative text, its words), so a department is shown "32 callers asked how to
change the bank card of their pension" rather than 32 orders.

The method, chosen and measured on the demo history (docs/knowledge.md, "The base learns"):

1. every text is brought to one form with the classifiers' normalisation (`intel/text.py`:
   NFKC, lower case, punctuation and whitespace gone, stop words, digits and lone letters
   deleted), so "我想问一下社保卡丢了怎么办？" and "社保卡丢失 如何补办" share their words;
2. character 2–3-gram TF-IDF (no segmenter needed; typos and variants still share most
   n-grams), rows L2-normalised, cosine similarity between every pair;
3. agglomerative clustering with **average** linkage cut at a cosine of `THRESHOLD`: a text
   joins a group only when it is close to the group as a whole, not to one member of it, which
   a threshold graph's connected components allow (one bridging text chains two themes into one
   unreadable cluster). Groups under `MIN_SIZE` are noise and are left out.

A cluster's **representative** is its medoid (the member closest on average to the others);
its **terms** are the jieba words found in many of its members and rarely elsewhere.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from jiesu.intel.text import normalise, strip_stop_words, words

THRESHOLD = 0.20  # the cosine (average linkage) a group must keep: measured on the demo history
MIN_SIZE = 3  # fewer consultations than this are not a theme
MAX_TEXTS = 4000  # the similarity matrix is n²: the most recent texts beyond this are dropped
MAX_TERMS = 6
_PHONE_OR_ID = re.compile(r"\d[\d\s-]{3,}\d[xX]?")  # 5+ digits (phones, ids, card numbers)


@dataclass(frozen=True)
class Cluster:
    members: tuple[int, ...]  # indices into the texts given, the representative first
    terms: tuple[str, ...]
    cohesion: float  # the mean cosine between the members (1.0: all alike)

    @property
    def representative(self) -> int:
        return self.members[0]

    @property
    def size(self) -> int:
        return len(self.members)


def prepare(text: str) -> str:
    """The form the texts are compared in (the classifiers' normalisation, stop words out)."""
    return strip_stop_words(normalise(text))


def cluster(
    texts: Sequence[str], *, threshold: float = THRESHOLD, min_size: int = MIN_SIZE
) -> list[Cluster]:
    """Themes among `texts`, largest first; texts in no theme of `min_size` are left out."""
    import numpy as np
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.text import TfidfVectorizer

    prepared = [prepare(t) for t in texts]
    usable = [i for i, p in enumerate(prepared) if len(p) >= 2]
    if len(usable) < max(min_size, 2):
        return []
    vectoriser = TfidfVectorizer(analyzer="char", ngram_range=(2, 3), sublinear_tf=True)
    matrix = vectoriser.fit_transform([prepared[i] for i in usable])
    similarity = np.asarray((matrix @ matrix.T).todense(), dtype=np.float64)
    np.clip(similarity, 0.0, 1.0, out=similarity)
    labels = AgglomerativeClustering(
        n_clusters=None,
        metric="precomputed",
        linkage="average",
        distance_threshold=1.0 - threshold,
    ).fit_predict(1.0 - similarity)

    groups: dict[int, list[int]] = {}
    for position, label in enumerate(labels):
        groups.setdefault(int(label), []).append(position)
    doc_words = [set(_words(prepared[i])) for i in usable]
    everywhere = Counter(w for ws in doc_words for w in ws)
    found: list[Cluster] = []
    for positions in groups.values():
        if len(positions) < min_size:
            continue
        block = similarity[np.ix_(positions, positions)]
        closeness = (block.sum(axis=1) - 1.0) / (len(positions) - 1)
        order = sorted(range(len(positions)), key=lambda k: (-closeness[k], positions[k]))
        members = tuple(usable[positions[k]] for k in order)
        cohesion = float((block.sum() - len(positions)) / (len(positions) * (len(positions) - 1)))
        terms = _terms([doc_words[p] for p in positions], everywhere, len(usable))
        found.append(Cluster(members, terms, round(cohesion, 4)))
    found.sort(key=lambda c: (-c.size, c.members[0]))
    return found


def _words(prepared: str) -> list[str]:
    return [w for w in words(prepared) if len(w) >= 2]


def _terms(members: Sequence[set[str]], everywhere: Counter[str], total: int) -> tuple[str, ...]:
    """Words in at least a third of the members (two at least), by how much more often they
    appear inside the cluster than in all the texts."""
    inside = Counter(w for ws in members for w in ws)
    least = max(2, -(-len(members) // 3))
    scored = [
        (count / len(members) - everywhere[w] / total, w)
        for w, count in inside.items()
        if count >= least
    ]
    scored = [(s, w) for s, w in scored if s >= 0.25]  # not a word every text has
    scored.sort(key=lambda sw: (-sw[0], sw[1]))
    return tuple(w for _, w in scored[:MAX_TERMS])


def mask(text: str, names: Sequence[str] = (), *, limit: int = 120) -> str:
    """A sample fit to show a department: digit runs (phones, ids, card numbers) and the given
    names starred, cut to `limit` characters."""
    text = _PHONE_OR_ID.sub("****", text)
    for name in names:
        if name and len(name) >= 2:
            text = text.replace(name, name[0] + "*" * (len(name) - 1))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def key_for(category: str | None, owner: str | None, terms: Sequence[str], first: str) -> str:
    """A suggestion's stable fingerprint: its category, owner and three leading words (sorted,
    so the same theme found again keeps its key), or its representative text without words."""
    basis = "|".join([category or "", owner or "", *sorted(terms[:3])]) if terms else first
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def overlap(a: Sequence[int], b: Sequence[int]) -> float:
    """How much of the smaller of two sets of orders the other one holds (0–1)."""
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / min(len(sa), len(sb))
