"""The knowledge base's search (issue 16 §2): callers' words → the entries that answer them.

Two stages, the same on both databases:

1. **Candidates** from the database's own full-text index (migration 0021): SQLite's FTS5
   table ranked by `bm25()` with column weights, PostgreSQL's `tsvector` + GIN ranked by
   `ts_rank` with field weights. The query asks for its most specific terms only (lowest
   document frequency, from `kb_search_term`, within a budget of postings): an OR of common
   terms would rank half the base. Only published entries valid on the day are asked for.
2. **Re-ranking** in Python of the best `CANDIDATES`: each query term found in an entry counts
   its idf × its kind's weight (the caller's words, pinyin for typos and homophones, letters
   typed as pinyin or initials, synonyms) × the best field it is in (title, question, keyword,
   answer); the caller's phrasing against the entry's title and questions (rapidfuzz) adds a
   little; then use (log of `use_count`) and freshness (recently published a little higher,
   ending within 30 days a little lower) scale the score, and break ties.

The index holds each entry's answering (published) version; `index_entry`/`unindex_entry` are
called by the workflow (publish, withdraw, expire) in the caller's transaction, `reindex_all`
rebuilds it (`jiesu knowledge reindex`, after a bulk load). `mode="hybrid"` fuses the lexical
ranking with the encoder's candidates (reciprocal rank fusion) when the encoder is enabled.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from jiesu.knowledge import text as T
from jiesu.knowledge.models import KnowledgeEntry, KnowledgeVersion

log = logging.getLogger(__name__)

CANDIDATES = 40  # entries the database hands to the re-ranker
# The terms the database is asked for: the most specific first, their document frequencies
# adding up to POSTINGS_BUDGET at most (one term at least), and no more than MAX_DB_TERMS once
# they pass FREE_POSTINGS (a small base asks for every term). Measured at 50,000 entries
# (docs/benchmarks.md): the database's ranking costs in rows × terms.
POSTINGS_BUDGET = 1200
MAX_DB_TERMS = 10
FREE_POSTINGS = 400
HARD_MAX_TERMS = 40
PASSAGE_CHARS = 140
PHRASING_TOP = 12  # candidates whose phrasing is compared with the query's (rapidfuzz)
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009)
MODES = ("lexical", "hybrid")
INDEX_TABLES = ("kb_search_term", "kb_search", "kb_search_fts")  # + FTS5's kb_search_fts_*


def is_index_table(name: str) -> bool:
    """The search index's tables (not on the models: tests/test_migrations.py skips them)."""
    return name.startswith("kb_search")


@dataclass(frozen=True)
class Hit:
    entry_id: int
    code: str
    title: str
    version: int
    score: float
    passage: str  # ≤ 140 chars of the answering version: its best-matching sentence
    marks: tuple[tuple[int, int], ...]  # spans in `passage` to highlight (start, end)
    field: str  # title | question | keyword | answer
    owner_unit_id: int
    category_code: str | None
    valid_to: date | None
    use_count: int


def default_mode() -> str:
    mode = os.environ.get("JIESU_KB_SEARCH", "lexical").strip().lower()
    return mode if mode in MODES else "lexical"


def _dialect(db_session: Session) -> str:
    return db_session.get_bind().dialect.name


# ---- indexing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Doc:
    entry_id: int
    version: int
    fields: dict[str, list[str]]
    texts: str  # normalised title and questions, one a line (the phrasing comparison)
    valid_from: date | None = None
    valid_to: date | None = None

    def terms(self) -> set[str]:
        return {t for f in T.FIELDS for t in self.fields[f] if len(t) <= 64}


def _doc(entry_id: int, version: KnowledgeVersion) -> _Doc:
    fields = {  # each term once per field: the re-ranker asks only whether it is there
        f: list(dict.fromkeys(terms))
        for f, terms in T.index_terms(
            title=version.title or "",
            questions=list(version.questions or []),
            keywords=list(version.keywords or []),
            answer=version.answer or "",
        ).items()
    }
    lines = [T.normalise(version.title or ""), *(T.normalise(q) for q in version.questions or [])]
    texts = "\n".join(x for x in lines if x)
    return _Doc(entry_id, version.number, fields, texts, version.valid_from, version.valid_to)


def _tsvector(doc: _Doc) -> str:
    """The tsvector's text form: each term once, one position per field it is in, weighted
    A title, B question, C keyword, D answer (terms hold no quote or backslash)."""
    where: dict[str, list[str]] = {}
    pos = 0
    for f, weight in zip(T.FIELDS, "ABCD", strict=True):
        for term in dict.fromkeys(doc.fields[f]):
            if len(term) > 64:
                continue
            pos = min(pos + 1, 16383)
            where.setdefault(term, []).append(f"{pos}{weight}")
    return " ".join(f"'{t}':{','.join(p[:256])}" for t, p in where.items())


def _row(doc: _Doc) -> dict[str, Any]:
    row: dict[str, Any] = {f: " ".join(doc.fields[f]) for f in T.FIELDS}
    row.update(entry_id=doc.entry_id, version=doc.version, texts=doc.texts)
    return row


def _insert_docs(docs: Sequence[_Doc], *, db_session: Session) -> None:
    if not docs:
        return
    if _dialect(db_session) == "postgresql":
        db_session.execute(
            text(
                "INSERT INTO kb_search (entry_id, version, tsv, title, question, keyword, "
                "answer, texts, valid_from, valid_to) VALUES (:entry_id, :version, "
                "CAST(:tsv AS tsvector), :title, :question, :keyword, :answer, :texts, "
                ":valid_from, :valid_to)"
            ),
            [
                {**_row(d), "tsv": _tsvector(d), "valid_from": d.valid_from, "valid_to": d.valid_to}
                for d in docs
            ],
        )
    else:
        db_session.execute(
            text(
                "INSERT INTO kb_search_fts (rowid, title, question, keyword, answer, texts, "
                "version) VALUES (:entry_id, :title, :question, :keyword, :answer, :texts, "
                ":version)"
            ),
            [_row(d) for d in docs],
        )


def _stored_terms(entry_id: int, *, db_session: Session) -> set[str] | None:
    table, key = _table_key(db_session)
    row = db_session.execute(
        text(f"SELECT title, question, keyword, answer FROM {table} WHERE {key} = :id"),
        {"id": entry_id},
    ).first()
    if row is None:
        return None
    return {t for part in row for t in (part or "").split() if len(t) <= 64}


def _table_key(db_session: Session) -> tuple[str, str]:
    if _dialect(db_session) == "postgresql":
        return "kb_search", "entry_id"
    return "kb_search_fts", "rowid"


def _count_terms(counts: Counter[str], *, db_session: Session) -> None:
    """Adds `counts` (term → documents, negative to remove) to the document frequencies, in
    term order (two writers lock the rows in the same order)."""
    ups = [{"term": t, "n": n} for t, n in sorted(counts.items()) if n > 0]
    downs = [{"term": t, "n": -n} for t, n in sorted(counts.items()) if n < 0]
    if ups:
        db_session.execute(
            text(
                "INSERT INTO kb_search_term (term, df) VALUES (:term, :n) "
                "ON CONFLICT (term) DO UPDATE SET df = kb_search_term.df + excluded.df"
            ),
            ups,
        )
    if downs:
        db_session.execute(text("UPDATE kb_search_term SET df = df - :n WHERE term = :term"), downs)
        db_session.execute(text("DELETE FROM kb_search_term WHERE df <= 0 AND term <> ''"))


def _remove(entry_id: int, *, db_session: Session) -> bool:
    old = _stored_terms(entry_id, db_session=db_session)
    if old is None:
        return False
    table, key = _table_key(db_session)
    db_session.execute(text(f"DELETE FROM {table} WHERE {key} = :id"), {"id": entry_id})
    counts = Counter(dict.fromkeys(old, -1))
    counts[""] -= 1
    _count_terms(counts, db_session=db_session)
    return True


def index_entry(entry: KnowledgeEntry, version: KnowledgeVersion, *, db_session: Session) -> None:
    """Indexes `version` as the entry's answering version (replacing what was indexed)."""
    db_session.flush()
    _remove(entry.id, db_session=db_session)
    doc = _doc(entry.id, version)
    _insert_docs([doc], db_session=db_session)
    counts = Counter(doc.terms())
    counts[""] += 1
    _count_terms(counts, db_session=db_session)


def unindex_entry(entry_id: int, *, db_session: Session) -> None:
    """Takes the entry out of the index (withdrawn, expired); nothing happens if it is not in."""
    db_session.flush()
    _remove(entry_id, db_session=db_session)


def reindex_all(*, db_session: Session, batch: int = 500) -> int:
    """Rebuilds the index from every published entry's answering version; the count."""
    db_session.flush()
    table, _key = _table_key(db_session)
    db_session.execute(text(f"DELETE FROM {table}"))
    db_session.execute(text("DELETE FROM kb_search_term"))
    rows = db_session.execute(
        select(KnowledgeEntry.id, KnowledgeVersion)
        .join(KnowledgeVersion, KnowledgeVersion.id == KnowledgeEntry.published_version_id)
        .where(KnowledgeEntry.status == "published")
        .order_by(KnowledgeEntry.id)
        .execution_options(yield_per=batch)
    )
    counts: Counter[str] = Counter()
    docs: list[_Doc] = []
    n = 0
    for entry_id, version in rows:
        doc = _doc(entry_id, version)
        counts.update(doc.terms())
        docs.append(doc)
        n += 1
        if len(docs) >= batch:
            _insert_docs(docs, db_session=db_session)
            docs = []
    _insert_docs(docs, db_session=db_session)
    counts[""] = n
    db_session.execute(
        text("INSERT INTO kb_search_term (term, df) VALUES (:term, :n)"),
        [{"term": t, "n": c} for t, c in sorted(counts.items())],
    )
    return n


# ---- searching ---------------------------------------------------------------------------


@dataclass
class _Candidate:
    entry_id: int
    code: str
    title: str
    version: int
    owner_unit_id: int
    category_code: str | None
    valid_to: date | None
    use_count: int
    published_at: datetime | None
    fields: dict[str, str]  # per field its terms, space-separated with a space at each end
    texts: str
    score: float = 0.0
    field: str = "title"
    matched: tuple[T.QueryTerm, ...] = ()


def _synonym_groups(db_session: Session) -> Sequence[Sequence[str]]:
    try:
        from jiesu.knowledge import synonyms

        return synonyms.groups(db_session=db_session)
    except Exception:  # a search never fails for want of synonyms
        log.exception("knowledge search: synonym groups unavailable")
        return ()


def _frequencies(terms: Iterable[str], *, db_session: Session) -> dict[str, int]:
    wanted = sorted({t for t in terms if len(t) <= 64} | {""})
    rows = db_session.execute(
        text("SELECT term, df FROM kb_search_term WHERE term IN :terms").bindparams(
            bindparam("terms", expanding=True)
        ),
        {"terms": wanted},
    )
    return {t: int(df) for t, df in rows}


def _idf(df: int, n: int) -> float:
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


def _chosen(terms: Sequence[T.QueryTerm], df: dict[str, int]) -> list[str]:
    """The terms the database is asked for: the most specific first, within the budget."""
    ranked = sorted((df[t.term], -t.weight, t.term) for t in terms if df.get(t.term, 0) > 0)
    out: list[str] = []
    total = 0
    for n, _w, term in ranked:
        if len(out) >= HARD_MAX_TERMS or (out and total + n > POSTINGS_BUDGET):
            break
        if len(out) >= MAX_DB_TERMS and total + n > FREE_POSTINGS:
            break
        out.append(term)
        total += n
    return out


_ENTRY_COLUMNS = (
    "e.id, e.code, e.title, e.owner_unit_id, e.category_code, e.valid_to, e.use_count, "
    "e.published_at"
)


def _filters(category: str | None, owner_unit_id: int | None) -> str:
    where = (
        "e.status = 'published' AND (e.valid_from IS NULL OR e.valid_from <= :today) "
        "AND (e.valid_to IS NULL OR e.valid_to >= :today)"
    )
    if category:
        where += " AND (e.category_code = :category OR e.category_code LIKE :category_prefix)"
    if owner_unit_id is not None:
        where += " AND e.owner_unit_id = :owner"
    return where


def _candidates(
    terms: list[str],
    *,
    db_session: Session,
    today: date,
    category: str | None,
    owner_unit_id: int | None,
    limit: int,
) -> list[_Candidate]:
    params: dict[str, Any] = {
        "today": today,
        "limit": limit,
        "category": category,
        "category_prefix": (category or "").replace("%", "").replace("_", "") + "%",
        "owner": owner_unit_id,
    }
    where = _filters(category, owner_unit_id)
    # The best rows are chosen on their rank alone; only they are read whole (a sort that
    # carried every matching row's terms cost more than the ranking).
    if _dialect(db_session) == "postgresql":
        params["q"] = " | ".join(f"'{t}'" for t in terms)
        if category or owner_unit_id is not None:  # the entry's columns are needed
            inner = f"JOIN kb_entry e ON e.id = s.entry_id WHERE {where} AND"
        else:  # the index's own copy of the validity: no join while ranking
            inner = (
                "WHERE (s.valid_from IS NULL OR s.valid_from <= :today) "
                "AND (s.valid_to IS NULL OR s.valid_to >= :today) AND"
            )
        sql = (
            f"SELECT {_ENTRY_COLUMNS}, s.version, s.title, s.question, s.keyword, s.answer, "
            "s.texts FROM (SELECT s.entry_id AS id, ts_rank('{0.35, 0.8, 0.9, 1.0}', s.tsv, "
            f"CAST(:q AS tsquery)) AS r FROM kb_search s {inner} s.tsv @@ CAST(:q AS tsquery) "
            "ORDER BY r DESC, id LIMIT :limit) best JOIN kb_search s ON s.entry_id = best.id "
            f"JOIN kb_entry e ON e.id = best.id WHERE {where} ORDER BY best.r DESC, best.id"
        )
    else:
        params["q"] = " OR ".join(f'"{t}"' for t in terms)
        sql = (
            f"SELECT {_ENTRY_COLUMNS}, f.version, f.title, f.question, f.keyword, f.answer, "
            "f.texts FROM (SELECT f.rowid AS id, bm25(kb_search_fts, 1.0, 0.9, 0.8, 0.35, "
            "0.0, 0.0) AS r FROM kb_search_fts f JOIN kb_entry e ON e.id = f.rowid "
            f"WHERE kb_search_fts MATCH :q AND {where} ORDER BY r, id LIMIT :limit) best "
            "JOIN kb_search_fts f ON f.rowid = best.id JOIN kb_entry e ON e.id = best.id "
            "ORDER BY best.r, best.id"
        )
    out = []
    for row in db_session.execute(text(sql), params):
        published = row[7]
        if isinstance(published, str):  # SQLite hands raw text for a text() query
            published = datetime.fromisoformat(published)
        if published is not None:
            published = (
                published.replace(tzinfo=UTC)
                if published.tzinfo is None
                else published.astimezone(UTC)
            )
        valid_to = row[5]
        if isinstance(valid_to, str):
            valid_to = date.fromisoformat(valid_to)
        out.append(
            _Candidate(
                entry_id=int(row[0]),
                code=row[1],
                title=row[2],
                owner_unit_id=int(row[3]),
                category_code=row[4],
                valid_to=valid_to,
                use_count=int(row[6] or 0),
                published_at=published,
                version=int(row[8]),
                fields={f: f" {row[9 + i] or ''} " for i, f in enumerate(T.FIELDS)},
                texts=row[13] or "",
            )
        )
    return out


def _phrasing(query_core: str, texts: str) -> float:
    """How closely the caller's phrasing follows the entry's title or one of its questions
    (0..1; rapidfuzz's partial ratio above 60)."""
    if not query_core or not texts:
        return 0.0
    from rapidfuzz import fuzz

    best = max(fuzz.partial_ratio(query_core, line) for line in texts.split("\n"))
    return max(0.0, (best - 60.0) / 40.0)


def _rerank(
    found: list[_Candidate],
    terms: Sequence[T.QueryTerm],
    df: dict[str, int],
    *,
    query_core: str,
    today: date,
) -> list[_Candidate]:
    n = max(df.get("", 0), 1)
    weighted = [(t, _idf(df[t.term], n) * t.weight) for t in terms if df.get(t.term, 0) > 0]
    possible = sum(w for t, w in weighted if t.kind in ("word", "latin")) or 1.0
    for c in found:
        by_field: dict[str, float] = dict.fromkeys(T.FIELDS, 0.0)
        rel = 0.0
        matched = []
        for term, w in weighted:
            needle = f" {term.term} "
            for f in T.FIELDS:  # best field first (FIELD_WEIGHTS descend)
                if needle in c.fields[f]:
                    rel += w * T.FIELD_WEIGHTS[f]
                    by_field[f] += w * T.FIELD_WEIGHTS[f]
                    matched.append(term)
                    break
        c.score = rel / possible
        c.field = max(T.FIELDS, key=lambda f: (by_field[f], -T.FIELDS.index(f)))
        c.matched = tuple(matched)
    # the phrasing is compared for the best by their terms only (it adds at most 0.25)
    for rank, c in enumerate(sorted(found, key=lambda c: (-c.score, c.entry_id))):
        relevance = c.score
        if rank < PHRASING_TOP:
            relevance += 0.25 * _phrasing(query_core, c.texts)
        use = 1.0 + 0.03 * math.log1p(max(c.use_count, 0))
        fresh = 1.0
        if c.published_at is not None:
            age = (today - c.published_at.date()).days
            fresh += 0.02 * max(0.0, 1.0 - max(age, 0) / 365.0)
        if c.valid_to is not None and c.valid_to <= today + timedelta(days=30):
            fresh -= 0.03
        c.score = round(relevance * use * fresh, 6)

    def order(c: _Candidate) -> tuple[float, int, float, int]:
        published = c.published_at.timestamp() if c.published_at else 0.0
        return (-c.score, -c.use_count, -published, c.entry_id)

    return sorted((c for c in found if c.score > 0), key=order)


def _passage(
    version: KnowledgeVersion | None, title: str, matched: Sequence[T.QueryTerm]
) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The best-matching sentence of the answering version (answer, question or title) with
    the spans of the matched words, cut to PASSAGE_CHARS around the first mark."""
    own = {t.term for t in matched if t.kind in ("word", "latin")}
    others = {t.term for t in matched if t.kind == "synonym"} - own
    # a sound is marked only where the caller's own characters did not match (a typo)
    sounds = {t.term for t in matched if t.kind == "pinyin" and t.source not in own}
    pieces: list[tuple[int, str]] = [(0, title)]
    if version is not None:
        pieces = [(0, version.title or title)]
        pieces += [(1, q) for q in version.questions or [] if q]
        pieces += [(2, s.strip()) for _i, s in T.sentences(version.answer or "") if s.strip()]
    best: tuple[float, int, str, list[tuple[int, int]]] | None = None
    for rank, piece in pieces:
        norm, where = T.aligned(piece)
        heard = T.pinyin_spans(norm, sounds)
        spans = T.merge([*T.phrase_spans(norm, own | others), *heard])
        # the most matched terms: the caller's own count fully, synonyms and sounds half
        covered = sum(1.0 for t in own if t in norm) + 0.5 * (
            sum(1 for t in others if t in norm) + len(heard)
        )
        marks = [(where[s], where[e - 1] + 1) for s, e in spans if e > s]
        if best is None or (covered, rank) > (best[0], best[1]):
            best = (covered, rank, piece, marks)
    assert best is not None
    _covered, _rank, piece, marks = best
    if len(piece) > PASSAGE_CHARS:
        start = max(0, min(marks[0][0] - 20 if marks else 0, len(piece) - PASSAGE_CHARS))
        piece = piece[start : start + PASSAGE_CHARS]
        marks = [
            (max(s - start, 0), min(e - start, len(piece)))
            for s, e in marks
            if e > start and s < start + len(piece)
        ]
    return piece, tuple(T.merge(marks))


def _hits(
    chosen: Sequence[_Candidate], *, db_session: Session, scores: dict[int, float] | None = None
) -> list[Hit]:
    versions: dict[tuple[int, int], KnowledgeVersion] = {}
    if chosen:
        rows = db_session.scalars(
            select(KnowledgeVersion).where(
                KnowledgeVersion.entry_id.in_([c.entry_id for c in chosen])
            )
        )
        wanted = {(c.entry_id, c.version) for c in chosen}
        versions = {(v.entry_id, v.number): v for v in rows if (v.entry_id, v.number) in wanted}
    out = []
    for c in chosen:
        passage, marks = _passage(versions.get((c.entry_id, c.version)), c.title, c.matched)
        out.append(
            Hit(
                entry_id=c.entry_id,
                code=c.code,
                title=c.title,
                version=c.version,
                score=scores[c.entry_id] if scores else c.score,
                passage=passage,
                marks=marks,
                field=c.field,
                owner_unit_id=c.owner_unit_id,
                category_code=c.category_code,
                valid_to=c.valid_to,
                use_count=c.use_count,
            )
        )
    return out


def _lexical(
    query: str,
    *,
    db_session: Session,
    today: date,
    limit: int,
    category: str | None,
    owner_unit_id: int | None,
) -> list[_Candidate]:
    terms = T.query_terms(query, _synonym_groups(db_session))
    if not terms:
        return []
    df = _frequencies([t.term for t in terms], db_session=db_session)
    chosen = _chosen(terms, df)
    if not chosen or df.get("", 0) <= 0:
        return []
    found = _candidates(
        chosen,
        db_session=db_session,
        today=today,
        category=category,
        owner_unit_id=owner_unit_id,
        limit=max(CANDIDATES, limit),
    )
    core = "".join(T.runs(T.normalise(query[: T.MAX_QUERY_CHARS * 2])))[: T.MAX_QUERY_CHARS]
    return _rerank(found, terms, df, query_core=core, today=today)


def search(
    query: str,
    *,
    db_session: Session,
    today: date,
    limit: int = 5,
    category: str | None = None,
    owner_unit_id: int | None = None,
    mode: str | None = None,
) -> list[Hit]:
    """The published entries valid on `today` that answer `query`, best first (at most
    `limit`). Never raises on odd input: an empty or meaningless query finds nothing."""
    if not isinstance(query, str) or limit <= 0:
        return []
    limit = min(limit, 100)
    mode = mode if mode in MODES else default_mode()
    ranked = _lexical(
        query,
        db_session=db_session,
        today=today,
        limit=limit,
        category=category,
        owner_unit_id=owner_unit_id,
    )
    if mode == "hybrid":
        fused = _hybrid(
            query,
            ranked,
            db_session=db_session,
            today=today,
            limit=limit,
            category=category,
            owner_unit_id=owner_unit_id,
        )
        if fused is not None:
            return fused
    return _hits(ranked[:limit], db_session=db_session)


def _hybrid(
    query: str,
    ranked: list[_Candidate],
    *,
    db_session: Session,
    today: date,
    limit: int,
    category: str | None,
    owner_unit_id: int | None,
) -> list[Hit] | None:
    """Reciprocal rank fusion of the lexical ranking and the encoder's candidates; None when
    the encoder is not there (the lexical ranking stands)."""
    if query.isascii():  # letters typed as pinyin: the encoder cannot read them (measured)
        return None
    try:
        from jiesu.knowledge import encoder

        if not encoder.enabled():
            return None
        dense = encoder.candidates(query, db_session=db_session, today=today, limit=CANDIDATES)
    except Exception:
        log.exception("knowledge search: encoder candidates unavailable, lexical only")
        return None
    fused: dict[int, float] = {}
    for rank, c in enumerate(ranked[:CANDIDATES]):
        fused[c.entry_id] = fused.get(c.entry_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    for rank, (entry_id, _cos) in enumerate(dense):
        fused[int(entry_id)] = fused.get(int(entry_id), 0.0) + 1.0 / (RRF_K + rank + 1)
    best = sorted(fused, key=lambda i: (-fused[i], i))
    known = {c.entry_id: c for c in ranked}
    missing = [i for i in best[: limit * 3] if i not in known]
    if missing:
        for c in _by_ids(
            missing,
            db_session=db_session,
            today=today,
            category=category,
            owner_unit_id=owner_unit_id,
        ):
            known[c.entry_id] = c
    chosen = [known[i] for i in best if i in known][:limit]
    scores = {c.entry_id: round(fused[c.entry_id], 6) for c in chosen}
    return _hits(chosen, db_session=db_session, scores=scores)


def _by_ids(
    ids: list[int],
    *,
    db_session: Session,
    today: date,
    category: str | None,
    owner_unit_id: int | None,
) -> list[_Candidate]:
    """Entries the encoder found but the lexical search did not: the same filters."""
    q = select(KnowledgeEntry).where(
        KnowledgeEntry.id.in_(ids),
        KnowledgeEntry.status == "published",
        (KnowledgeEntry.valid_from.is_(None)) | (KnowledgeEntry.valid_from <= today),
        (KnowledgeEntry.valid_to.is_(None)) | (KnowledgeEntry.valid_to >= today),
    )
    if category:
        q = q.where(
            (KnowledgeEntry.category_code == category)
            | KnowledgeEntry.category_code.startswith(category, autoescape=True)
        )
    if owner_unit_id is not None:
        q = q.where(KnowledgeEntry.owner_unit_id == owner_unit_id)
    out = []
    for e in db_session.scalars(q):
        version = db_session.get(KnowledgeVersion, e.published_version_id or -1)
        if version is None:
            continue
        out.append(
            _Candidate(
                entry_id=e.id,
                code=e.code,
                title=e.title,
                version=version.number,
                owner_unit_id=e.owner_unit_id,
                category_code=e.category_code,
                valid_to=e.valid_to,
                use_count=e.use_count or 0,
                published_at=e.published_at,
                fields=dict.fromkeys(T.FIELDS, " "),
                texts="",
                field="answer",
            )
        )
    return out
