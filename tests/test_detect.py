"""The early-warning detectors (SPEC §6), on plain data: no database, no web."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from jiesu.analysis.detect import (
    Order,
    UnitMonth,
    bounces,
    bursts,
    inaction,
    repeats,
    themes,
    topics,
)

# ---- bursts ------------------------------------------------------------------------------------

WEEKDAY = (1.2, 1.1, 1.0, 1.0, 1.1, 0.7, 0.6)  # Monday busiest, Sunday quietest
START, END = date(2024, 11, 1), date(2026, 12, 31)
HEATING = ("110105001", "05")  # doubles from November to mid-March, every year
NOISE = ("110105002", "07")  # no season
BIG = ("110106", "05")  # a district-sized key, also heating
QUIET = ("110105003", "01")  # under one a day


def heating_season(day: date) -> bool:
    return day.month in (11, 12, 1, 2) or (day.month == 3 and day.day <= 15)


def simulate(seed: int = 7) -> dict[tuple[str, str], dict[date, int]]:
    """Two years and two months of daily counts: weekly rhythm, 10% yearly growth, Poisson noise,
    and for the heating keys a doubling every heating season."""
    rng = np.random.default_rng(seed)
    levels = {HEATING: (12.0, True), NOISE: (6.0, False), BIG: (40.0, True), QUIET: (0.5, False)}
    series: dict[tuple[str, str], dict[date, int]] = {}
    for key, (level, seasonal) in levels.items():
        counts = {}
        day = START
        while day <= END:
            lam = level * WEEKDAY[day.weekday()] * 1.1 ** ((day - START).days / 365)
            if seasonal and heating_season(day):
                lam *= 2
            counts[day] = int(rng.poisson(lam))
            day += timedelta(days=1)
        series[key] = counts
    return series


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def test_planted_burst_is_found_with_its_key_and_figures() -> None:
    series = simulate()
    day = date(2026, 6, 10)
    series[NOISE][day] += 25
    found = bursts(
        series, day, area_names={"110105002": "三里屯街道"}, category_names={"07": "噪声"}
    )
    assert [s.key for s in found] == ["burst:110105002:07:2026-06-10"]
    signal = found[0]
    assert signal.kind == "burst"
    assert signal.title == "三里屯街道 噪声 诉求激增"
    assert signal.evidence == ()
    assert (signal.area, signal.category) == NOISE
    figures = signal.figures
    assert figures["observed"] == series[NOISE][day]
    assert 5 <= figures["expected"] <= 10  # about 6 a day, 1.1× a year later
    assert figures["expected"] < figures["threshold"] <= figures["observed"]
    assert str(series[NOISE][day]) in signal.explanation


def test_burst_in_the_heating_season_is_found_against_the_raised_baseline() -> None:
    series = simulate()
    day = date(2026, 12, 9)
    series[BIG][day] += 150
    found = bursts(series, day)
    assert [s.key for s in found] == ["burst:110106:05:2026-12-09"]
    assert found[0].figures["expected"] > 80  # the season's level, not the summer's


@pytest.mark.parametrize("separate_last_year", [False, True])
def test_a_steady_seasonal_year_raises_no_burst(separate_last_year: bool) -> None:
    series = simulate()
    last_year = None
    if separate_last_year:
        this_year = date(2026, 1, 1) - timedelta(days=7 * 8 + 7)  # enough for the baseline
        last_year = series
        series = {k: {d: n for d, n in c.items() if d >= this_year} for k, c in series.items()}
    raised = [
        s.key
        for day in days(date(2026, 1, 1), END)
        for s in bursts(series, day, last_year=last_year)
    ]
    assert raised == []


def test_the_november_rise_warns_when_last_year_is_unknown() -> None:
    series = simulate()
    this_year = {k: {d: n for d, n in c.items() if d.year == 2026} for k, c in series.items()}
    raised = {
        s.key
        for day in days(date(2026, 10, 25), date(2026, 11, 10))
        for s in bursts(this_year, day)
    }
    assert any(key.startswith("burst:110106:05:2026-11-0") for key in raised)


def test_tiny_numbers_never_warn() -> None:
    series = simulate()
    day = date(2026, 6, 10)
    series[QUIET][day] = 9  # 18 times the usual half an order, but only 9
    assert bursts(series, day) == []
    series[QUIET][day] = 12
    assert [s.key for s in bursts(series, day)] == ["burst:110105003:01:2026-06-10"]


def flat(level: int, day: date, observed: int, weekday: tuple[int, ...] = ()) -> dict[date, int]:
    """Nine weeks at `level` a day; the same weekday before `day` cycling through `weekday`."""
    counts = dict.fromkeys(days(day - timedelta(weeks=9), day), level)
    for k, n in enumerate((weekday * 8)[:8], start=1):
        counts[day - timedelta(weeks=k)] = n
    counts[day] = observed
    return counts


def test_a_big_key_needs_the_minimum_ratio_not_just_significance() -> None:
    day = date(2026, 6, 10)
    series = {("110105", "01"): flat(300, day, 400)}  # 5.8 Poisson deviations, only 1.33×
    assert bursts(series, day) == []
    found = bursts(series, day, min_ratio=1.2)
    assert [s.figures["threshold"] for s in found] == [368]  # the Poisson tail at p < 1e-4


def test_a_key_that_swings_more_than_poisson_needs_a_larger_count() -> None:
    day = date(2026, 6, 10)
    series = {("110105", "01"): flat(30, day, 100, weekday=(10, 50))}  # median 30, MAD 20
    assert bursts(series, day) == []  # 30 + 4 × 1.4826 × 20 ≈ 149 needed
    assert len(bursts(series, day, z=0)) == 1


# ---- repeats -----------------------------------------------------------------------------------


def order(
    id: int,
    day: date,
    *,
    phone: str | None = None,
    address: str | None = None,
    category: str | None = "010101",
    text: str = "",
    returns: int = 0,
    units_led: int = 0,
    has_lead: bool = False,
    open: bool = True,
) -> Order:
    return Order(
        id=id,
        number=f"20261{id:08d}",
        day=day,
        category=category,
        category_top=category[:2] if category else None,
        category_name="物业服务" if category == "010101" else category,
        district="110105",
        street="110105001",
        area_name="三里屯街道",
        phone=phone,
        address_key=address,
        text=text,
        returns=returns,
        units_led=units_led,
        has_lead=has_lead,
        open=open,
    )


D0 = date(2026, 9, 1)


def at(offset: int) -> date:
    return D0 + timedelta(days=offset)


def test_same_caller_three_times_in_thirty_days_is_a_repeat() -> None:
    orders = [
        order(1, at(0), phone="13800001111"),  # outside the fullest window
        order(2, at(40), phone="13800001111"),
        order(3, at(50), phone="13800001111"),
        order(4, at(69), phone="13800001111"),
        order(5, at(45), phone="13900002222"),
    ]
    found = repeats(orders)
    assert len(found) == 1
    signal = found[0]
    assert signal.evidence == (2, 3, 4)
    assert signal.key.startswith("repeat:phone:") and signal.key.endswith(":2")
    assert "13800001111" not in signal.key and "13800001111" not in signal.title
    assert "尾号1111" in signal.title
    assert signal.figures == {"orders": 3, "days": 30}


def test_repeat_key_stays_when_a_later_order_joins_the_window() -> None:
    orders = [order(i, at(d), phone="13800001111") for i, d in [(1, 0), (2, 5), (3, 9)]]
    first = repeats(orders)
    second = repeats([*orders, order(4, at(20), phone="13800001111")])
    assert first[0].key == second[0].key
    assert second[0].evidence == (1, 2, 3, 4)


def test_two_in_thirty_days_or_three_over_ninety_are_not_repeats() -> None:
    orders = [
        order(1, at(0), phone="13800001111"),
        order(2, at(29), phone="13800001111"),
        order(3, at(0), phone="13900002222"),
        order(4, at(45), phone="13900002222"),
        order(5, at(89), phone="13900002222"),
        order(6, at(0), phone="13700003333"),
        order(7, at(15), phone="13700003333"),
        order(8, at(30), phone="13700003333"),  # 30 days after the first: another window
    ]
    assert repeats(orders) == []


def test_same_address_and_category_three_times_is_a_repeat() -> None:
    orders = [
        order(10, at(0), phone="13800000001", address="朝阳区工体北路8号院3号楼"),
        order(11, at(3), phone="13800000002", address="朝阳区工体北路8号院3号楼"),
        order(12, at(20), phone=None, address="朝阳区工体北路8号院3号楼"),
        order(13, at(21), address="朝阳区工体北路8号院3号楼", category="020202"),
        order(14, at(22), address="朝阳区工体北路8号院4号楼"),
    ]
    found = repeats(orders)
    assert [s.evidence for s in found] == [(10, 11, 12)]
    assert found[0].key.startswith("repeat:place:") and found[0].key.endswith(":010101:10")
    assert found[0].category == "010101"
    assert "物业服务" in found[0].title


def test_one_caller_at_one_address_is_one_repeat() -> None:
    orders = [order(i, at(i), phone="13800001111", address="工体北路8号") for i in (1, 2, 3)]
    assert [s.key.split(":")[1] for s in repeats(orders)] == ["phone"]


# ---- bounces -----------------------------------------------------------------------------------


def test_bounced_orders_are_found_by_returns_and_by_units_without_a_lead() -> None:
    orders = [
        order(1, at(0), returns=3, units_led=1, has_lead=True),
        order(2, at(0), returns=1, units_led=3, has_lead=False),
        order(3, at(0), returns=2, units_led=2, has_lead=False),  # not yet
        order(4, at(0), returns=0, units_led=4, has_lead=True),  # someone leads it
        order(5, at(0), returns=0, units_led=3, has_lead=False, open=False),  # closed
        order(6, at(0), returns=5, units_led=4, has_lead=False),
    ]
    found = bounces(orders)
    assert [s.evidence for s in found] == [(6,), (1,), (2,)]  # worst first
    assert [s.key for s in found] == ["bounce:6", "bounce:1", "bounce:2"]
    assert "多次退单" in found[1].title and "无人主办" in found[2].title
    assert found[0].figures == {"returns": 5, "units_led": 4}


# ---- inaction ----------------------------------------------------------------------------------


def unit_months(unit: str, rows: list[tuple[int, int, int, int, int]]) -> list[UnitMonth]:
    """(dispatched, overdue, returns, evaluated, dissatisfied) for 2026-08, -09, -10."""
    return [UnitMonth(unit, f"单位{unit}", f"2026-{8 + k:02d}", *row) for k, row in enumerate(rows)]


def test_a_deteriorating_unit_drifts_into_inaction_and_others_do_not() -> None:
    months = [
        *unit_months("worse", [(100, 5, 4, 80, 8), (100, 9, 7, 80, 12), (100, 14, 11, 80, 12)]),
        *unit_months("stable", [(100, 5, 4, 80, 8), (100, 5, 5, 80, 8), (100, 5, 4, 80, 8)]),
        *unit_months("better", [(100, 14, 11, 80, 16), (100, 9, 7, 80, 12), (100, 5, 4, 80, 8)]),
        *unit_months("tiny", [(15, 1, 1, 10, 1), (15, 3, 3, 10, 3), (15, 6, 6, 10, 6)]),
        # rising, but only overdue clearly: one rate is not enough
        *unit_months("one", [(100, 5, 4, 80, 8), (100, 10, 4, 80, 8), (100, 15, 4, 80, 8)]),
        *unit_months("other", [(200, 10, 10, 150, 15)] * 3),
    ]
    found = inaction(months, "2026-10")
    assert [s.key for s in found] == ["inaction:worse:2026-10"]
    signal = found[0]
    assert signal.unit == "worse"
    assert "超期率" in signal.title and "退单率" in signal.title and "不满意率" not in signal.title
    assert signal.figures["overdue_first"] == pytest.approx(0.05)
    assert signal.figures["overdue_latest"] == pytest.approx(0.14)
    assert signal.figures["returns_latest"] == pytest.approx(0.11)
    assert signal.score == pytest.approx(9 + 7)


def test_inaction_needs_the_latest_rates_above_the_median_unit() -> None:
    rising = unit_months("rising", [(100, 1, 1, 80, 1), (100, 3, 3, 80, 2), (100, 5, 5, 80, 3)])
    busy = [m for i in range(3) for m in unit_months(f"b{i}", [(100, 10, 10, 80, 8)] * 3)]
    calm = [m for i in range(3) for m in unit_months(f"c{i}", [(100, 1, 1, 80, 1)] * 3)]
    assert inaction(rising + busy, "2026-10") == []
    assert [s.unit for s in inaction(rising + calm, "2026-10")] == ["rising"]


def test_inaction_needs_every_month_of_the_span() -> None:
    worse = unit_months("worse", [(100, 5, 4, 80, 8), (100, 9, 7, 80, 12), (100, 14, 11, 80, 12)])
    calm = [m for i in range(3) for m in unit_months(f"c{i}", [(100, 1, 1, 80, 1)] * 3)]
    months = worse + calm
    assert inaction(months[1:], "2026-10") == []
    assert len(inaction(months, "2026-10")) == 1


# ---- topics ------------------------------------------------------------------------------------


def docs(start_id: int, texts: list[str]) -> list[Order]:
    return [order(start_id + i, at(i % 28), text=t) for i, t in enumerate(texts)]


def test_a_new_word_is_an_emerging_topic_and_steady_words_are_not() -> None:
    baseline = docs(1000, ["噪音 施工"] * 20 + ["停车 占道"] * 30 + ["物业 费用"] * 50)
    recent = docs(
        1,
        ["噪音 施工"] * 4
        + ["停车 占道"] * 6
        + ["充电桩 起火 物业"] * 6
        + ["共享单车 乱停"] * 4  # new, but only 4 tickets
        + ["物业 费用"] * 10,
    )
    found = topics(recent, baseline, tokenize=str.split)
    assert [s.key for s in found] == ["topic:充电桩:2026-09"]  # 起火 joins it, not a second one
    signal = found[0]
    assert signal.evidence == (11, 12, 13, 14, 15, 16)
    assert "起火" in signal.title
    assert signal.figures["recent_docs"] == 6 and signal.figures["baseline_docs"] == 0
    assert signal.figures["expected"] == pytest.approx(30 / 101)


def test_a_word_that_only_doubles_is_no_topic() -> None:
    baseline = docs(1000, ["电梯 故障"] * 10 + ["其他 事项"] * 90)
    recent = docs(1, ["电梯 故障"] * 6 + ["其他 事项"] * 24)  # 20% against 10%
    assert topics(recent, baseline, tokenize=str.split) == []
    assert topics(recent, baseline, tokenize=str.split, ratio=1.5) != []


def test_numbers_single_characters_and_stop_words_are_not_topics() -> None:
    recent = docs(1, ["2026 楼 反映 我们 12.5"] * 10)
    assert topics(recent, docs(100, ["其他"] * 50), tokenize=str.split) == []


def test_topics_use_jieba_by_default() -> None:
    baseline = docs(1000, ["小区门口道路积水严重，希望尽快处理。"] * 30)
    recent = docs(1, ["楼下充电桩起火，电动自行车烧毁。"] * 5 + ["小区门口道路积水。"] * 5)
    found = topics(recent, baseline)
    assert [s.evidence for s in found] == [(1, 2, 3, 4, 5)]  # one topic, its words grouped
    assert "充电" in found[0].title


def test_a_place_name_is_never_a_topic_and_the_evidence_holds_the_term() -> None:
    """Eight unrelated tickets from 三间房 made a topic "三间房"; now a place alone never does,
    and a topic's every evidence ticket contains its term."""
    baseline = docs(1000, ["小区门口道路积水严重，希望尽快处理。"] * 40)
    recent = docs(1, [
        "三间房地区的路灯坏了好几天", "三间房这边有人占道经营", "三间房小区暖气不热",
        "三间房的公交站牌倒了", "三间房附近工地夜间施工噪音", "三间房楼道堆放杂物",
        "三间房菜市场卫生差", "三间房路口红绿灯不亮",
        "楼道里给电动车锂电池充电冒烟", "换电柜锂电池鼓包冒烟", "锂电池充电起火隐患",
        "外卖骑手换锂电池冒烟", "锂电池充电柜离居民楼太近",
    ])  # fmt: skip
    places = frozenset({"三间房", "三间房地区"})
    found = topics(recent, baseline, places=places)
    assert found and all(s.key.split(":")[1] not in places for s in found)
    assert found[0].key == "topic:锂电池:2026-09"
    texts = {o.id: o.text for o in recent}
    for s in found:
        term = s.key.split(":")[1]
        assert all(term in texts[i] for i in s.evidence), s.key


# ---- themes ------------------------------------------------------------------------------------


def test_persistent_top_categories_are_monthly_theme_candidates() -> None:
    months = [f"2026-{m:02d}" for m in range(5, 11)]
    monthly: dict[str, dict[str, int]] = {}
    for k, month in enumerate(months):
        counts = {f"c{i:02d}": 1000 - 50 * i for i in range(20)}  # c00..c09 are the top 10
        counts["heat"] = 2000 if k >= 2 else 10  # top in 4 of the 6 months
        counts["flood"] = 2000 if k in (1, 2, 3) else 10  # top in 3: not persistent
        monthly[month] = counts
    found = themes(monthly, "2026-10", names={"heat": "供暖"}, top=10)
    keys = [s.key for s in found]
    assert "theme:heat:2026-10" in keys
    assert "theme:flood:2026-10" not in keys and "theme:c09:2026-10" not in keys
    # heat and flood push c08 out in 2 months (still 4 in) and c09 out in 5
    assert {k.split(":")[1] for k in keys} == {"heat", *(f"c{i:02d}" for i in range(9))}
    heat = next(s for s in found if s.category == "heat")
    assert heat.title == "每月一题候选：供暖"
    assert heat.figures == {"months_in_top": 4, "total": 8020, "months": 6}
    assert "2026-10 2000件（第1）" in heat.explanation and "2026-05 10件" in heat.explanation
    assert found[0].category == "c00"  # 6 months × 1,000 outweighs 4 × 2,000 × 4/6
