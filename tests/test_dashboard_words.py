"""The dashboard's 高频词: the problem terms of the period's requests (no function words), with
their count and share, cached between the page's refreshes; the page shows them. Both databases."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import time_machine
from fastapi.testclient import TestClient
from test_auth import Console, app_of
from test_reports_terms import FUNCTION_WORDS

from jiesu.dashboard import words as W
from jiesu.db.engine import Database
from jiesu.demo.generate import generate
from jiesu.settings import city_tz

TINY_PACK = Path(__file__).parent / "packs" / "tiny"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=city_tz())
ROOT = Path(__file__).resolve().parent.parent


def test_the_dashboard_lists_problem_terms(db: Database) -> None:
    generate(db, days=8, per_day=40, now=NOW, pack_dir=TINY_PACK, seed=3)
    W._cache.clear()
    with db.read() as s:
        words = W.hot_words(NOW.date() - timedelta(days=6), NOW.date(), db_session=s)
    assert 5 <= len(words) <= W.TOP, words
    names = [w["name"] for w in words]
    assert not FUNCTION_WORDS & set(names), names
    assert [w["n"] for w in words] == sorted((w["n"] for w in words), reverse=True)
    assert all(0 < w["share"] <= 1 and len(w["name"]) >= 2 for w in words)
    with db.read() as s:  # the next refresh reads the cache, not the texts
        start = NOW.date() - timedelta(days=6)
        assert W.hot_words(start, NOW.date(), db_session=s) is words


def test_the_dashboard_data_carries_the_words(db: Database, client: TestClient) -> None:
    W._cache.clear()
    with time_machine.travel(NOW, tick=True):  # the page's period is the clock's
        generate(db, days=3, per_day=30, now=NOW, pack_dir=TINY_PACK, seed=5)
        data = Console(app_of(client), "supervisor1").get("/console/dashboard/data?days=7").json()
    names = [w["name"] for w in data["words"]]
    assert names and not FUNCTION_WORDS & set(names), names


def test_the_page_has_the_words_table() -> None:
    page = (ROOT / "jiesu/console/templates/console/dashboard.html").read_text()
    script = (ROOT / "jiesu/web/static/dashboard.js").read_text()
    assert 'id="words-table"' in page and "高频词" in page
    assert "#words-table tbody" in script and "words(d);" in script
