"""The relevance set's harness (pure; issue 16): reading the queries, checking them, scoring
ranked answers. Used by `tests/test_knowledge_relevance.py` and `bench/knowledge_relevance.py`;
the files' format is in `tests/data/knowledge_relevance/README.md`.
"""

from __future__ import annotations

import statistics
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

KINDS = (
    "colloquial",
    "synonym",
    "typo",
    "homophone",
    "traditional",
    "pinyin",
    "no_common_keyword",
)
NO_COMMON = "no_common_keyword"
TOP = 5  # a query is found when an expected entry is among the first TOP hits
Q_CHARS = (2, 80)


@dataclass(frozen=True)
class Query:
    file: str
    q: str
    expect: tuple[str, ...]
    kinds: tuple[str, ...]


def read_queries(folder: Path) -> tuple[list[Query], list[str]]:
    """Every `*.yaml` in `folder`, in name order, and the problems of shape found."""
    queries: list[Query] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        except yaml.YAMLError as exc:
            problems.append(f"{path.name}: not YAML: {exc}")
            continue
        if not isinstance(raw, list):
            problems.append(f"{path.name}: not a list")
            continue
        for i, row in enumerate(raw, 1):
            where = f"{path.name} #{i}"
            if not isinstance(row, dict):
                problems.append(f"{where}: not a mapping")
                continue
            q, expect, kinds = row.get("q"), row.get("expect"), row.get("kinds")
            if set(row) - {"q", "expect", "kinds", "note"}:
                problems.append(
                    f"{where}: unknown keys {sorted(set(row) - {'q', 'expect', 'kinds', 'note'})}"
                )
            if not isinstance(q, str) or not Q_CHARS[0] <= len(q.strip()) <= Q_CHARS[1]:
                problems.append(f"{where}: q must be text of {Q_CHARS[0]}–{Q_CHARS[1]} characters")
                continue
            if (
                not isinstance(expect, list)
                or not expect
                or not all(isinstance(c, str) for c in expect)
            ):
                problems.append(f"{where} ({q}): expect must be a list of entry codes")
                continue
            if not isinstance(kinds, list) or not kinds or set(kinds) - set(KINDS):
                problems.append(f"{where} ({q}): kinds must be some of {', '.join(KINDS)}")
                continue
            q = q.strip()
            if q in seen:
                problems.append(f"{where}: the query {q!r} is already in {seen[q]}")
                continue
            seen[q] = where
            queries.append(Query(path.name, q, tuple(expect), tuple(dict.fromkeys(kinds))))
    return queries, problems


@lru_cache(maxsize=1)
def _t2s() -> Callable[[str], str]:
    import opencc

    return opencc.OpenCC("t2s").convert


def normalise(text: str) -> str:
    """NFKC, traditional → simplified, lower case: the check's own (the same steps as
    `text.normalise`, kept here so that the check does not move with the search)."""
    return _t2s()(unicodedata.normalize("NFKC", text)).lower()


def _runs(text: str) -> list[str]:
    """The runs of letters and digits (CJK characters included), punctuation and spaces out."""
    runs, current = [], []
    for ch in normalise(text):
        if ch.isalnum():
            current.append(ch)
        elif current:
            runs.append("".join(current))
            current = []
    if current:
        runs.append("".join(current))
    return runs


def pairs(text: str) -> set[str]:
    """Every two consecutive letters or characters of the normalised text."""
    return {run[i : i + 2] for run in _runs(text) for i in range(len(run) - 1)}


def shared_pairs(q: str, title: str) -> set[str]:
    return pairs(q) & pairs(title)


def check(
    queries: Sequence[Query], entries: dict[str, dict[str, Any]], *, at_least: int = 100
) -> list[str]:
    """What is wrong with the set against the demo entries (code → {title, …}): unknown codes,
    too few queries, too few `no_common_keyword`, a `no_common_keyword` mark that is false."""
    problems = []
    for x in queries:
        for code in x.expect:
            if code not in entries:
                problems.append(f"{x.file}: {x.q!r} expects {code}, which no demo entry has")
        if NO_COMMON in x.kinds:
            for code in x.expect:
                if code in entries:
                    shared = shared_pairs(x.q, entries[code]["title"])
                    if shared:
                        problems.append(
                            f"{x.file}: {x.q!r} is marked {NO_COMMON} but shares "
                            f"{'、'.join(sorted(shared))} with {code}'s title "
                            f"{entries[code]['title']!r}"
                        )
    if len(queries) < at_least:
        problems.append(f"{len(queries)} queries; at least {at_least} wanted")
    marked = sum(1 for x in queries if NO_COMMON in x.kinds)
    if queries and marked * 3 < len(queries):
        problems.append(f"{marked} of {len(queries)} queries are {NO_COMMON}; a third wanted")
    return problems


@dataclass
class Score:
    """Recall@1, recall@5 and MRR (reciprocal rank of the first expected hit, 0 beyond the
    ranked list) over some queries."""

    n: int = 0
    at1: int = 0
    at5: int = 0
    rr: float = 0.0
    missed: list[str] = field(default_factory=list)

    def add(self, query: Query, ranked: Sequence[str]) -> None:
        self.n += 1
        rank = next((i for i, code in enumerate(ranked, 1) if code in query.expect), None)
        if rank is not None:
            self.rr += 1 / rank
            self.at1 += rank == 1
            self.at5 += rank <= TOP
        if rank is None or rank > TOP:
            self.missed.append(query.q)

    @property
    def recall1(self) -> float:
        return self.at1 / self.n if self.n else 0.0

    @property
    def recall5(self) -> float:
        return self.at5 / self.n if self.n else 0.0

    @property
    def mrr(self) -> float:
        return self.rr / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "recall@1": round(self.recall1, 3),
            "recall@5": round(self.recall5, 3),
            "mrr": round(self.mrr, 3),
        }


def score(
    queries: Iterable[Query], ranked_for: Callable[[Query], Sequence[str]]
) -> tuple[Score, dict[str, Score]]:
    """The overall score and one per kind (a query counts in each of its kinds)."""
    overall, per_kind = Score(), {k: Score() for k in KINDS}
    for x in queries:
        ranked = ranked_for(x)
        overall.add(x, ranked)
        for kind in x.kinds:
            per_kind[kind].add(x, ranked)
    return overall, {k: s for k, s in per_kind.items() if s.n}


def report(overall: Score, per_kind: dict[str, Score]) -> str:
    lines = [f"{'kind':<20} {'n':>4} {'R@1':>6} {'R@5':>6} {'MRR':>6}"]
    for name, s in [("all", overall), *per_kind.items()]:
        lines.append(f"{name:<20} {s.n:>4} {s.recall1:>6.3f} {s.recall5:>6.3f} {s.mrr:>6.3f}")
    return "\n".join(lines)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0–100), nearest rank."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0
