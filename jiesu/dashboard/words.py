"""The dashboard's 高频词: the problem terms (`reports.terms`) most requests of the period raise.

The one dashboard figure read from the requests' text rather than a rollup, so it is added to
the page's JSON by the view (`views.dashboard_data`), not by `service.dashboard`, which reads
rollups only. The sample: the period's first and last ticket id (two index lookups on
created_at, ids grow with time), then `SAMPLE` evenly spaced ids fetched by primary key (for a
district, eight times as many, filtered to it); the result is kept per database, period and
district for `KEEP_S` seconds, so the minute refresh costs a dictionary lookup.
"""

from __future__ import annotations

import threading
import time as clock
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.reports.terms import top_terms
from jiesu.settings import city_tz
from jiesu.tickets.models import Ticket

SAMPLE = 1000
TEXT_CHARS = 300  # the subject and the start of the content: where the problem is named
TOP = 15
KEEP_S = 600.0
_cache: dict[tuple[Any, ...], tuple[float, list[dict[str, Any]]]] = {}
_lock = threading.Lock()


def _start(day: date) -> datetime:
    return datetime.combine(day, time(0), city_tz())


def hot_words(start: date, end: date, *, db_session: Session,
              district_id: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """[{"name": "暖气不热", "n": 41, "share": 0.052}, …]: the top terms of the requests made
    from `start` to `end` (city days, inclusive), `n` the sampled requests raising each and
    `share` their fraction of the sample."""
    key = (str(db_session.get_bind().engine.url), start, end, district_id)
    with _lock:
        hit = _cache.get(key)
    if hit is not None and clock.monotonic() - hit[0] < KEEP_S:
        return hit[1]
    window = (Ticket.created_at >= _start(start), Ticket.created_at < _start(end + timedelta(1)))
    first = db_session.scalar(select(Ticket.id).where(*window).order_by(Ticket.created_at,
                                                                          Ticket.id).limit(1))  # fmt: skip
    last = db_session.scalar(select(Ticket.id).where(*window).order_by(Ticket.created_at.desc(),
                                                                         Ticket.id.desc()).limit(1))  # fmt: skip
    rows: list[Any] = []
    if first is not None and last is not None:
        lo, hi = min(first, last), max(first, last)
        want = SAMPLE * (8 if district_id is not None else 1)
        step = max(1.0, (hi - lo + 1) / want)
        ids = sorted({lo + int(i * step) for i in range(want) if lo + int(i * step) <= hi})
        where: list[Any] = [*window]
        if district_id is not None:
            where.append(Ticket.district_id == district_id)
        for i in range(0, len(ids), 1000):  # bound the IN list
            rows += db_session.execute(
                select(Ticket.title, Ticket.content).where(*where, Ticket.id.in_(ids[i : i + 1000]))
            ).all()
    texts = [f"{r.title or ''}。{(r.content or '')[:TEXT_CHARS]}" for r in rows]
    words = [{"name": w, "n": k, "share": round(k / len(texts), 4)}
             for w, k in top_terms(texts, TOP)] if texts else []  # fmt: skip
    with _lock:
        _cache[key] = (clock.monotonic(), words)
        if len(_cache) > 256:  # old days and districts: forget the oldest
            for old in sorted(_cache, key=lambda k: _cache[k][0])[:128]:
                del _cache[old]
    return words
