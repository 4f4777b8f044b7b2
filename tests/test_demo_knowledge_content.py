"""The demo knowledge base's content and the relevance set, checked as files (no database).

Every demo entry in `citypacks/beijing/demo_knowledge/` parses, has a unique code, a real owning
department and category of the Beijing pack, lengths an agent can read on the call, and a source
marked as written for the demo; every relevance query names entries that exist.
"""

from __future__ import annotations

import csv
import functools
import re
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from jiesu.knowledge.relevance import shared_pairs

ROOT = Path(__file__).parent.parent
PACK = ROOT / "citypacks" / "beijing"
DEMO_DIR = PACK / "demo_knowledge"
RELEVANCE_DIR = Path(__file__).parent / "data" / "knowledge_relevance"

EXPIRES_SOON = "expires_soon"  # the marker jiesu/demo/knowledge.py reads
CODE = re.compile(r"^KB-[A-Z]{2,3}-\d{3}$")
FIELDS = {"code", "title", "category", "owner", "keywords", "questions", "answer", "valid_from"}
OPTIONAL = {"valid_to", "source", "link"}
KINDS = {
    "colloquial",
    "synonym",
    "typo",
    "homophone",
    "traditional",
    "pinyin",
    "no_common_keyword",
}
# Part B's files (10_…19_) and the domains the content list names for them.
B_DOMAINS = {
    "10_heating.yaml": "GN",
    "11_waste_sorting.yaml": "LJ",
    "12_vehicles.yaml": "CL",
    "13_school_admission.yaml": "JY",
    "14_elderly_care.yaml": "YL",
    "15_maternity.yaml": "SY",
    "16_employment.yaml": "JJ",
    "17_civil_affairs.yaml": "MZ",
    "18_utilities.yaml": "SD",
}


def _demo_files() -> list[Path]:
    return sorted(DEMO_DIR.glob("[0-9][0-9]_*.yaml"))


@functools.cache
def _entries(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, list), f"{path.name}: a list of entries"
    return data


def _all_entries() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, e) for p in _demo_files() for e in _entries(p)]


def _units() -> dict[str, str]:
    with (PACK / "units" / "20_departments.csv").open(encoding="utf-8") as f:
        return {row["code"]: row["kind"] for row in csv.DictReader(f)}


def _categories() -> set[str]:
    with (PACK / "categories.csv").open(encoding="utf-8") as f:
        return {row["code"] for row in csv.DictReader(f)}


@functools.cache
def _queries() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(RELEVANCE_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert isinstance(data, list), f"{path.name}: a list of queries"
        out.extend((path.name, q) for q in data)
    return out


def test_part_b_files_are_all_there_with_their_domain_codes() -> None:
    for name, domain in B_DOMAINS.items():
        entries = _entries(DEMO_DIR / name)
        assert len(entries) >= 18, name
        assert {e["code"].split("-")[1] for e in entries} == {domain}, name
    assert sum(len(_entries(DEMO_DIR / n)) for n in B_DOMAINS) >= 185


def test_every_entry_has_the_agreed_fields_and_no_others() -> None:
    for name, e in _all_entries():
        assert isinstance(e, dict), name
        missing = FIELDS - e.keys()
        extra = e.keys() - FIELDS - OPTIONAL
        assert not missing and not extra, (name, e.get("code"), missing, extra)
        assert CODE.match(e["code"]), (name, e["code"])


def test_codes_are_unique_across_all_demo_files() -> None:
    counts = Counter(e["code"] for _, e in _all_entries())
    assert [c for c, n in counts.items() if n > 1] == []


def test_titles_are_unique_across_all_demo_files() -> None:
    counts = Counter(e["title"].strip() for _, e in _all_entries())
    assert [t for t, n in counts.items() if n > 1] == []


def test_owners_are_city_departments_of_the_pack() -> None:
    units = _units()
    for name, e in _all_entries():
        # The pack's departments file holds government departments and the public utility
        # companies (热力集团, 自来水集团 …) that own their service answers; no districts.
        assert units.get(e["owner"]) in {"department", "company"}, (name, e["code"], e["owner"])


def test_categories_exist_in_the_pack_and_are_written_as_strings() -> None:
    categories = _categories()
    for name, e in _all_entries():
        # A bare 0501 in YAML would be read as a number and lose its leading zero.
        assert isinstance(e["category"], str), (name, e["code"], e["category"])
        assert e["category"] in categories, (name, e["code"], e["category"])


def test_lengths_are_within_what_an_agent_reads_on_the_call() -> None:
    for name, e in _all_entries():
        where = (name, e["code"])
        assert 6 <= len(e["title"].strip()) <= 60, where
        assert 120 <= len(e["answer"].strip()) <= 400, (where, len(e["answer"].strip()))
        assert 2 <= len(e["questions"]) <= 5, where
        assert all(isinstance(q, str) and 3 <= len(q) <= 60 for q in e["questions"]), where
        assert 1 <= len(e["keywords"]) <= 8, where
        assert all(isinstance(k, str) and 1 <= len(k) <= 20 for k in e["keywords"]), where
        assert len(set(e["questions"])) == len(e["questions"]), where


def test_part_b_keywords_and_questions_are_as_agreed() -> None:
    for name in B_DOMAINS:
        for e in _entries(DEMO_DIR / name):
            assert 3 <= len(e["keywords"]) <= 6, (name, e["code"])
            assert e["title"] not in e["questions"], (name, e["code"])


def test_every_source_is_marked_as_demo_content() -> None:
    for name, e in _all_entries():
        assert "演示内容" in (e.get("source") or ""), (name, e["code"])
    for name in B_DOMAINS:
        for e in _entries(DEMO_DIR / name):
            assert e["source"].endswith("（演示内容）"), (name, e["code"])


def test_dates_and_links_are_well_formed() -> None:
    for name, e in _all_entries():
        assert isinstance(e["valid_from"], date), (name, e["code"])
        valid_to = e.get("valid_to")
        # `expires_soon`: the demo loader sets the last day a few days after the load.
        assert valid_to is None or valid_to == EXPIRES_SOON or isinstance(valid_to, date), (
            name,
            e["code"],
            valid_to,
        )
        if isinstance(valid_to, date):
            assert valid_to >= e["valid_from"], (name, e["code"])
        link = e.get("link")
        assert link is None or link.startswith("https://"), (name, e["code"])


def test_part_b_has_entries_expiring_soon_after_the_demo_load() -> None:
    entries = [e for n in B_DOMAINS for e in _entries(DEMO_DIR / n)]
    soon = [e["code"] for e in entries if e.get("valid_to") == EXPIRES_SOON]
    assert len(soon) >= 2


def test_the_demo_base_has_at_least_300_entries() -> None:
    # The bar for the whole demo base: part A's files (0*) and part B's (1*) together.
    assert len(_all_entries()) >= 300


def test_every_relevance_query_expects_existing_entries() -> None:
    codes = {e["code"] for _, e in _all_entries()}
    queries = _queries()
    assert queries, "no relevance queries"
    for name, q in queries:
        assert isinstance(q.get("q"), str) and q["q"].strip(), (name, q)
        assert q.get("expect") and set(q["expect"]) <= codes, (name, q["q"], q.get("expect"))
        assert set(q.get("kinds") or []) <= KINDS, (name, q["q"], q.get("kinds"))


def test_relevance_queries_are_not_repeated() -> None:
    counts = Counter(q["q"].strip() for _, q in _queries())
    assert [t for t, n in counts.items() if n > 1] == []


def test_no_common_keyword_queries_really_share_no_word_with_the_title() -> None:
    titles = {e["code"]: e["title"] for _, e in _all_entries()}
    for name, q in _queries():
        if "no_common_keyword" not in (q.get("kinds") or []):
            continue
        for code in q["expect"]:
            shared = shared_pairs(q["q"], titles.get(code, ""))
            assert not shared, (name, q["q"], code, sorted(shared))


def test_part_b_queries_are_enough_and_a_third_share_no_word_with_the_title() -> None:
    data = yaml.safe_load((RELEVANCE_DIR / "b.yaml").read_text(encoding="utf-8"))
    assert len(data) >= 65
    no_common = [q for q in data if "no_common_keyword" in (q.get("kinds") or [])]
    assert len(no_common) * 3 >= len(data)
    kinds = Counter(k for q in data for k in q.get("kinds") or [])
    for kind in ("colloquial", "synonym", "typo", "homophone", "traditional", "pinyin"):
        assert kinds[kind] >= 1, kind


@pytest.mark.parametrize("name", sorted(B_DOMAINS))
def test_part_b_questions_read_as_callers_speak(name: str) -> None:
    # Callers ask; at least one question of each entry is a question, not a heading.
    asking = ("吗", "么", "咋", "啥", "哪", "怎", "能", "谁", "几", "多少", "没", "？", "不")
    for e in _entries(DEMO_DIR / name):
        assert any(any(w in q for w in asking) for q in e["questions"]), e["code"]
