"""Same-event duplicates (SPEC §8): text similarity + place + time window + category → merge
suggestions at intake and in the batch pass."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from jiesu.intel.duplicates import (
    Doc,
    batch_groups,
    candidates,
    evaluate_hot_messages,
    haversine_m,
    similar_pairs,
    text_similarity,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LABELS = Path(__file__).parent / "data" / "hot_messages_duplicates.csv"
NOON = datetime(2026, 11, 22, 12, 0)

LAMP = "朝阳区望京西园三区5号楼门口路灯不亮\n5号楼门口的两盏路灯已经坏了一个星期，晚上出门黑乎乎的，老人孩子容易摔倒，请尽快修理。"
LAMP_AGAIN = "朝阳区望京西园三区5号楼门口路灯不亮\n5号楼门口两盏路灯坏了一个多星期了，晚上出门很黑，老人孩子容易摔倒，上次反映后还没修，请尽快处理。"
LAMP_EDITED = "望京西园三区5号楼路灯坏了没人修\n门口的两盏路灯已经坏了一个星期，晚上出门黑乎乎的，老人孩子容易摔倒，请尽快修理。"
NOISE = "丰台区某工地夜间施工扰民\n工地每天晚上施工到凌晨两点，打桩声音很大，附近居民无法休息。"


def doc(
    id: str,
    text: str,
    hours_ago: float = 1,
    *,
    street: int | None = None,
    point: tuple[float, float] | None = None,
    category: str | None = None,
) -> Doc:
    return Doc(id, text, NOON - timedelta(hours=hours_ago), street, point, category)


def new(
    text: str,
    *,
    street: int | None = None,
    point: tuple[float, float] | None = None,
    category: str | None = None,
) -> Doc:
    return Doc("new", text, NOON, street, point, category)


def test_the_same_text_is_an_exact_repeat_despite_spacing_width_and_excel_artefacts() -> None:
    messy = LAMP.replace("，", ", ").replace("5", "５") + "_x000D_ "
    found = candidates(new(messy), [doc("a", LAMP)])
    assert [(c.id, c.kind, c.score) for c in found] == [("a", "exact", 1.0)]
    assert found[0].reasons_zh[0] == "内容相同"


def test_exact_repeats_rank_before_near_ones_and_near_ones_by_score() -> None:
    recent = [
        doc("edited", LAMP_EDITED, 2),
        doc("noise", NOISE, 1),
        doc("again", LAMP_AGAIN, 3),
        doc("same", LAMP, 5),
    ]
    found = candidates(new(LAMP), recent)
    assert found[0].id == "same"
    assert {c.id for c in found[1:]} == {"edited", "again"}
    assert [c.kind for c in found] == ["exact", "near", "near"]
    assert found[1].score >= found[2].score
    assert all(0.5 <= c.text_similarity <= 1 for c in found)


def test_limit_keeps_the_best() -> None:
    recent = [doc(f"r{i}", LAMP, i + 1) for i in range(8)]
    found = candidates(new(LAMP), recent, limit=3)
    assert [c.id for c in found] == ["r0", "r1", "r2"]  # equal scores: the most recent first


def test_a_ticket_outside_the_window_is_not_a_candidate() -> None:
    recent = [doc("old", LAMP, hours_ago=8 * 24), doc("recent", LAMP, hours_ago=6 * 24)]
    assert [c.id for c in candidates(new(LAMP), recent)] == ["recent"]
    assert [c.id for c in candidates(new(LAMP), recent, window=timedelta(days=10))] == [
        "recent",
        "old",
    ]


def test_points_within_the_distance_match_and_farther_ones_do_not() -> None:
    here = (39.9950, 116.4700)
    near_by = (39.9960, 116.4710)  # ~140 m
    far = (40.0100, 116.4700)  # ~1.7 km
    assert 100 < haversine_m(here, near_by) < 200
    recent = [doc("near", LAMP, point=near_by), doc("far", LAMP, point=far)]
    found = candidates(new(LAMP, point=here), recent)
    assert [c.id for c in found] == ["near"]
    assert any(r.startswith("相距约") for r in found[0].reasons_zh)
    assert [c.id for c in candidates(new(LAMP, point=here), recent, max_distance_m=2000)] == [
        "near",
        "far",
    ]


def test_a_different_street_excludes_and_the_same_street_is_a_reason() -> None:
    recent = [doc("same", LAMP_AGAIN, street=101), doc("other", LAMP_AGAIN, street=102)]
    found = candidates(new(LAMP, street=101), recent)
    assert [c.id for c in found] == ["same"]
    assert "同一街乡" in found[0].reasons_zh
    assert found[0].score > found[0].text_similarity  # the place adds to the score


def test_a_known_different_category_excludes_unless_the_city_allows_it() -> None:
    recent = [doc("same", LAMP_AGAIN, category="010203"), doc("other", LAMP_AGAIN, category="0601")]
    assert [c.id for c in candidates(new(LAMP, category="010203"), recent)] == ["same"]
    relaxed = candidates(new(LAMP, category="010203"), recent, require_same_category=False)
    assert {c.id for c in relaxed} == {"same", "other"}
    unknown = candidates(new(LAMP), recent)
    assert {c.id for c in unknown} == {"same", "other"}


def test_a_complaint_copied_for_another_estate_is_another_event() -> None:
    template = "{}临街门面油烟直排扰民\n{}楼下烧烤摊、快餐店无证经营，长期油烟熏人，一天到晚都是烟，请政府处理。"
    first = template.format("劳动东路魅力之城小区", "魅力之城小区")
    copy = template.format("梅溪湖看云路润芳园小区", "润芳园小区")
    assert text_similarity(first, copy) >= 0.5
    assert candidates(new(copy), [doc("a", first)]) == []
    repost = template.format("劳动东路魅力之城小区", "魅力之城")
    found = candidates(new(repost), [doc("a", first)])
    assert [c.id for c in found] == ["a"]
    assert any(r.startswith("提到同一地点") for r in found[0].reasons_zh)


def test_a_kept_title_over_a_rewritten_body_is_a_near_repeat() -> None:
    first = "中海国际社区三期与四期中间空地夜间施工噪音扰民\n几个月来晚上一直有挖掘机作业，凌晨还在运土，孩子没法睡觉。"
    again = "中海国际社区三四期中间空地夜间施工噪音扰民\n物业说不归他们管，城管来了就停，走了又干，已经投诉三次了，请彻底解决。"
    assert text_similarity(first, again) >= 0.5
    assert [c.kind for c in candidates(new(again), [doc("a", first)])] == ["near"]


def test_a_short_note_is_not_contained_in_every_long_letter() -> None:
    letter = "尊敬的领导：" + NOISE * 6 + "另外小区门口路灯不亮，希望一并解决。"
    assert text_similarity("路灯不亮", letter) < 0.5


def test_batch_groups_join_repeats_transitively_and_leave_singletons_out() -> None:
    docs = [
        doc("l1", LAMP, 30),
        doc("l2", LAMP_EDITED, 20),
        doc("l3", LAMP_AGAIN, 10),
        doc("n1", NOISE, 25),
        doc("n2", NOISE.replace("凌晨两点", "凌晨三点"), 5),
        doc("x", "海淀区某小区垃圾清运不及时\n垃圾桶满了三天没人清理，臭味很大。", 2),
    ]
    groups = batch_groups(docs)
    assert groups == [["l1", "l2", "l3"], ["n1", "n2"]]
    pairs = {(docs[a].id, docs[b].id, c.kind) for a, b, c in similar_pairs(docs)}
    assert ("n1", "n2", "near") in pairs


def test_batch_groups_respect_the_window_and_the_place() -> None:
    docs = [
        doc("a", LAMP, 24 * 20, street=1),
        doc("b", LAMP, 1, street=1),
        doc("c", LAMP, 2, street=2),
    ]
    assert batch_groups(docs) == []  # a is too old; c is on another street
    assert batch_groups(docs, window=timedelta(days=30)) == [["a", "b"]]


def test_candidates_answer_within_a_few_milliseconds_for_500_recent_tickets() -> None:
    recent = [
        doc(
            f"r{i}",
            f"第{i}号楼{['路灯不亮', '楼道漏水', '电梯故障', '垃圾满溢'][i % 4]}\n{LAMP_EDITED[20:]}{i}",
            i % 100,
        )
        for i in range(500)
    ]
    candidates(new(LAMP), recent)  # warm: texts are prepared once per process
    start = time.perf_counter()
    for _ in range(20):
        candidates(new(LAMP_AGAIN), recent)
    per_call = (time.perf_counter() - start) / 20
    # ~3 ms measured for intake-length texts; the bound leaves room for a busy CI.
    assert per_call < 0.03


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / "teddycup2020" / "hot_messages.csv").exists(),
    reason="shared/data/teddycup2020 is absent (real data is not shipped with the project)",
)
def test_hot_messages_precision_and_recall() -> None:
    result = evaluate_hot_messages(
        SHARED_DATA / "teddycup2020" / "hot_messages.csv", LABELS, window=timedelta(days=7)
    )
    exact, near, groups = result["exact"], result["near"], result["groups"]
    assert isinstance(exact, dict) and isinstance(near, dict) and isinstance(groups, dict)
    # Measured (7-day window): exact P 1.0 R 1.0 (60 pairs); near P 0.976 (330 predicted, all
    # judged), R 0.52 weighted (0.69 re-posts by one user, 0.35 reports by different users).
    assert exact["precision"] == 1.0 and exact["recall"] == 1.0
    assert near["unjudged"] == 0
    assert near["precision"] >= 0.95
    assert near["recall"] >= 0.48
    assert near["recall_same_user"] >= 0.65
    assert groups["precision"] >= 0.95
