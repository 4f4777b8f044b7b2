"""Early-warning detectors (SPEC §6): plain figures in, `Signal`s out.

Pure: no database, no web. The service loads tickets and rollups into `Order`s, daily series
and `UnitMonth`s, calls the detectors, and stores each `Signal` as a warning under its `key`
(the same key is never raised twice); a warning can then become a proactive task. Every
detector explains itself in Chinese with the numbers behind it, and puts those numbers in
`figures`.

The rules, one per detector (thresholds are keyword arguments; the defaults are what a city of
a few million would start from):

- `bursts` (诉求激增): an area × top-level category whose count on a day is far above its own
  seasonal baseline: the larger of the same weekday over the previous 8 weeks (median), the
  last 7 days' mean, and last year's seasonal shape applied to this year's level. The count
  must reach 10, 1.5× the expectation, the Poisson upper tail at p < 1e-4 and 4 robust standard
  deviations of the weekday sample.
- `repeats` (重复诉求): the same caller, or the same address and category, 3 or more times within
  30 days; one signal per group, over its fullest 30-day window.
- `bounces` (推诿扯皮): a ticket returned 3 or more times, or led by 3 or more units and open
  with no lead now.
- `inaction` (不作为、慢作为): a unit whose overdue, return or dissatisfaction rate rose every
  month for 3 months, ended 3 points above where it started and above the median unit; two of
  the three rates drifting make a warning. Units under 20 dispatched orders a month are ignored.
- `topics` (新热点): a word in at least 5 recent tickets whose document frequency is 4× or
  more what the baseline window (smoothed by one document) predicts.
- `themes` (每月一题候选): a category in the city's top 10 by volume in at least 4 of the last 6
  months.
"""

from __future__ import annotations

import hashlib
import math
import re
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import pairwise
from statistics import fmean, median


@dataclass(frozen=True)
class Order:
    """One ticket as detection needs it."""

    id: int
    number: str  # ticket number, e.g. "2026110300012"
    day: date  # city-local day of intake
    category: str | None  # leaf category code
    category_top: str | None  # top-level category code
    category_name: str | None
    district: str | None  # unit code of the district
    street: str | None  # unit code of the street
    area_name: str | None  # street (or district) name for messages
    phone: str | None  # the requester's phone, normalised
    address_key: str | None  # normalised address, or None
    text: str = ""  # title + content
    returns: int = 0  # return requests (申请退单) over its life
    units_led: int = 0  # distinct units that have led it
    has_lead: bool = False  # a unit leads it now
    open: bool = True


@dataclass(frozen=True)
class UnitMonth:
    """One unit's figures for one month, from the assessment rollups."""

    unit: str
    unit_name: str
    month: str  # "2026-10"
    dispatched: int
    overdue: int
    returns: int
    evaluated: int
    dissatisfied: int


@dataclass(frozen=True)
class Signal:
    """What every detector returns: one candidate warning."""

    kind: str  # burst | repeat | bounce | inaction | topic | theme
    key: str  # stable identity, so the same warning is not raised twice
    title: str  # Chinese, one line
    explanation: str  # Chinese, says why with the numbers
    score: float  # severity, larger = worse, comparable within a kind
    evidence: tuple[int, ...] = ()  # order ids behind it
    area: str | None = None
    category: str | None = None
    unit: str | None = None
    figures: Mapping[str, float] = field(default_factory=dict)


def _ranked(signals: Iterable[Signal]) -> list[Signal]:
    return sorted(signals, key=lambda s: (-s.score, s.key))


# ---- bursts ------------------------------------------------------------------------------------


def _poisson_threshold(lam: float, alpha: float) -> int:
    """The smallest k with P(X ≥ k) ≤ alpha for X ~ Poisson(lam)."""
    if lam <= 0:
        return 1
    k = math.floor(lam)
    pk = math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1))
    tail, term, j = 0.0, pk, k
    while term > 1e-18 or j <= lam:
        tail += term
        j += 1
        term *= lam / j
    while tail > alpha:
        tail -= pk
        k += 1
        pk *= lam / k
    return k


def _seasonal_factor(counts: Mapping[date, int] | None, day: date, weeks: int) -> float:
    """How much last year rose from its previous `weeks` weeks to the week around `day`.

    The best of the weeks centred a week before, on and a week after `day`: a seasonal rise
    keeps no calendar to the day. Never below 1: a quiet or missing last year must not make
    this year look like a burst.
    """
    if not counts:
        return 1.0
    before = fmean(counts.get(day - timedelta(days=k), 0) for k in range(1, 7 * weeks + 1))
    if before <= 0:
        return 1.0
    around = max(
        fmean(counts.get(day + timedelta(days=shift + k), 0) for k in range(-3, 4))
        for shift in (-7, 0, 7)
    )
    return max(1.0, around / before)


def bursts(
    series: Mapping[tuple[str, str], Mapping[date, int]],
    day: date,
    *,
    area_names: Mapping[str, str] | None = None,
    category_names: Mapping[str, str] | None = None,
    last_year: Mapping[tuple[str, str], Mapping[date, int]] | None = None,
    weeks: int = 8,
    min_count: int = 10,
    min_ratio: float = 1.5,
    alpha: float = 1e-4,
    z: float = 4.0,
) -> list[Signal]:
    """Area × category counts on `day` far above their own seasonal baseline.

    `series` maps (area code, top category code) to daily counts, a missing day counting 0.
    The expectation is the largest of: the median of the same weekday over the previous
    `weeks` weeks (the weekly rhythm), the mean of the last 7 days (a level that has already
    risen is not news again), and the mean of those same weekdays times last year's seasonal
    factor (`_seasonal_factor` on the series 364 days back, from `last_year` or else from
    `series` itself), so a category that rises every November as it did last year raises
    nothing. The count warns when it reaches all of `min_count`, `min_ratio` × expected, the
    Poisson upper tail at p < `alpha` and expected + `z` robust standard deviations (1.4826 ×
    MAD) of the weekday sample, which guards the keys that vary more than Poisson. Score: the
    Poisson standard deviations above expected. Evidence is left to the caller.
    """
    history = series if last_year is None else last_year
    signals = []
    for (area, category), counts in series.items():
        observed = counts.get(day, 0)
        if observed < min_count:
            continue
        weekdays = [counts.get(day - timedelta(weeks=k), 0) for k in range(1, weeks + 1)]
        weekday_median = median(weekdays)
        recent_mean = fmean(counts.get(day - timedelta(days=k), 0) for k in range(1, 8))
        factor = _seasonal_factor(history.get((area, category)), day - timedelta(days=364), weeks)
        seasonal = fmean(weekdays) * factor
        expected = max(weekday_median, recent_mean, seasonal)
        spread = 1.4826 * median(abs(n - weekday_median) for n in weekdays)
        threshold = max(
            min_count,
            math.ceil(min_ratio * expected),
            _poisson_threshold(expected, alpha),
            math.ceil(expected + z * spread),
        )
        if observed < threshold:
            continue
        ratio = observed / max(expected, 1.0)
        area_name = (area_names or {}).get(area, area)
        category_name = (category_names or {}).get(category, category)
        signals.append(
            Signal(
                kind="burst",
                key=f"burst:{area}:{category}:{day.isoformat()}",
                title=f"{area_name} {category_name} 诉求激增",
                explanation=(
                    f"{day.isoformat()} {area_name} {category_name}类诉求 {observed} 件，"
                    f"预期 {expected:.1f} 件（前{weeks}周同星期中位数 {weekday_median:g}、"
                    f"近7日日均 {recent_mean:.1f}、按去年同期季节系数 {factor:.2f} 推算 "
                    f"{seasonal:.1f}），为预期的 {ratio:.1f} 倍，达到预警阈值 {threshold} 件"
                    f"（至少 {min_count} 件、预期的 {min_ratio:g} 倍，且超出正常波动）。"
                ),
                score=(observed - expected) / math.sqrt(max(expected, 1.0)),
                area=area,
                category=category,
                figures={
                    "observed": observed,
                    "expected": expected,
                    "threshold": threshold,
                    "ratio": ratio,
                    "weekday_median": weekday_median,
                    "recent_mean": recent_mean,
                    "seasonal": seasonal,
                    "seasonal_factor": factor,
                    "weeks": weeks,
                },
            )
        )
    return _ranked(signals)


# ---- repeats and bounces -----------------------------------------------------------------------


def _digest(value: str) -> str:
    """A short stable hash, so that keys carry no phone number or address."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def _fullest_window(orders: Sequence[Order], window_days: int) -> list[Order]:
    """The most orders whose intake days fit in `window_days` days (the earliest on a tie)."""
    ordered = sorted(orders, key=lambda o: (o.day, o.id))
    best: list[Order] = []
    start = 0
    for end, order in enumerate(ordered):
        while (order.day - ordered[start].day).days >= window_days:
            start += 1
        if end + 1 - start > len(best):
            best = ordered[start : end + 1]
    return best


def _categories(orders: Sequence[Order]) -> str:
    names = dict.fromkeys(o.category_name or o.category or "未分类" for o in orders)
    return "、".join(names)


def repeats(orders: Iterable[Order], *, window_days: int = 30, min_orders: int = 3) -> list[Signal]:
    """The same caller, or the same address and category, `min_orders`+ times in `window_days`.

    Orders are grouped by phone, and by (address_key, category); a group warns when some
    `window_days`-day span of intake days holds `min_orders` or more of its orders. One signal
    per group, over its fullest window (the earliest of equals), keyed by the group's hash and
    the window's first order, so a later order in the same window does not raise it again. An
    address group with exactly the orders of a caller group is the same story and is dropped.
    Score: the orders in the window.
    """
    by_phone: dict[str, list[Order]] = defaultdict(list)
    by_place: dict[tuple[str, str], list[Order]] = defaultdict(list)
    for order in orders:
        if order.phone:
            by_phone[order.phone].append(order)
        if order.address_key and order.category:
            by_place[(order.address_key, order.category)].append(order)

    signals = []
    callers: set[tuple[int, ...]] = set()
    for phone, group in by_phone.items():
        window = _fullest_window(group, window_days)
        if len(window) < min_orders:
            continue
        ids = tuple(o.id for o in window)
        callers.add(ids)
        first, last = window[0], window[-1]
        signals.append(
            Signal(
                kind="repeat",
                key=f"repeat:phone:{_digest(phone)}:{first.id}",
                title=f"同一来电人（尾号{phone[-4:]}）{window_days}天内诉求 {len(window)} 次",
                explanation=(
                    f"{first.day.isoformat()} 至 {last.day.isoformat()} 同一来电人诉求 "
                    f"{len(window)} 件（{'、'.join(o.number for o in window)}），涉及"
                    f"{_categories(window)}，达到 {window_days} 天内 {min_orders} 次的重复诉求标准。"
                ),
                score=len(window),
                evidence=ids,
                area=last.street or last.district,
                category=last.category,
                figures={"orders": len(window), "days": (last.day - first.day).days + 1},
            )
        )
    for (address, category), group in by_place.items():
        window = _fullest_window(group, window_days)
        ids = tuple(o.id for o in window)
        if len(window) < min_orders or ids in callers:
            continue
        first, last = window[0], window[-1]
        place = last.area_name or ""
        signals.append(
            Signal(
                kind="repeat",
                key=f"repeat:place:{_digest(address)}:{category}:{first.id}",
                title=(
                    f"{place}同一地址{_categories(window)}诉求{window_days}天内 {len(window)} 次"
                ),
                explanation=(
                    f"{first.day.isoformat()} 至 {last.day.isoformat()} 同一地址同一类别"
                    f"（{_categories(window)}）诉求 {len(window)} 件"
                    f"（{'、'.join(o.number for o in window)}），达到 {window_days} 天内 "
                    f"{min_orders} 次的重复诉求标准。"
                ),
                score=len(window),
                evidence=ids,
                area=last.street or last.district,
                category=category,
                figures={"orders": len(window), "days": (last.day - first.day).days + 1},
            )
        )
    return _ranked(signals)


def bounces(orders: Iterable[Order], *, min_returns: int = 3, min_units: int = 3) -> list[Signal]:
    """Tickets bounced between units: `min_returns`+ returns, or open with no lead after
    `min_units`+ units have led it. Score: returns + units that have led it."""
    signals = []
    for order in orders:
        returned = order.returns >= min_returns
        orphaned = order.open and not order.has_lead and order.units_led >= min_units
        if not (returned or orphaned):
            continue
        labels, reasons = [], []
        if returned:
            labels.append("多次退单")
            reasons.append(f"申请退单 {order.returns} 次（标准 {min_returns} 次）")
        if orphaned:
            labels.append("无人主办")
            reasons.append(f"先后 {order.units_led} 个单位主办，目前无主办单位")
        signals.append(
            Signal(
                kind="bounce",
                key=f"bounce:{order.id}",
                title=f"工单 {order.number} {'、'.join(labels)}",
                explanation=f"工单 {order.number}（{_categories([order])}）{'，'.join(reasons)}，存在推诿扯皮风险。",
                score=order.returns + order.units_led,
                evidence=(order.id,),
                area=order.street or order.district,
                category=order.category,
                figures={"returns": order.returns, "units_led": order.units_led},
            )
        )
    return _ranked(signals)


# ---- inaction ----------------------------------------------------------------------------------


def _shift_month(month: str, months: int) -> str:
    year, number = (int(part) for part in month.split("-"))
    total = year * 12 + number - 1 + months
    return f"{total // 12:04d}-{total % 12 + 1:02d}"


_RATES = (("overdue", "超期率"), ("returns", "退单率"), ("dissatisfied", "不满意率"))


def _rate(row: UnitMonth, rate: str) -> float | None:
    if rate == "overdue":
        return row.overdue / row.dispatched if row.dispatched else None
    if rate == "returns":
        return row.returns / row.dispatched if row.dispatched else None
    return row.dissatisfied / row.evaluated if row.evaluated else None


def inaction(
    months: Sequence[UnitMonth],
    month: str,
    *,
    span: int = 3,
    min_dispatched: int = 20,
    min_rise: float = 0.03,
    min_rates: int = 2,
) -> list[Signal]:
    """Units drifting into inaction over the `span` months ending at `month`.

    A rate (overdue / dispatched, returns / dispatched, dissatisfied / evaluated) drifts when
    it rose every month of the span, ended at least `min_rise` (3 percentage points) above the
    unit's first month, and ended above the median of all units that month. `min_rates` of the
    three drifting make a warning. A unit needs every month of the span with `min_dispatched`
    or more orders; smaller samples say nothing. Score: the summed rise, in points.
    """
    table = {(row.unit, row.month): row for row in months}
    span_months = [_shift_month(month, k - span + 1) for k in range(span)]
    current = [row for row in months if row.month == month and row.dispatched >= min_dispatched]
    medians = {}
    for rate, _ in _RATES:
        values = [v for row in current if (v := _rate(row, rate)) is not None]
        medians[rate] = median(values) if values else 0.0

    signals = []
    for unit in sorted({row.unit for row in current}):
        found = [table.get((unit, m)) for m in span_months]
        rows = [row for row in found if row is not None and row.dispatched >= min_dispatched]
        if len(rows) < span:
            continue
        drifting: list[tuple[str, str, list[float]]] = []
        for rate, label in _RATES:
            maybe = [_rate(row, rate) for row in rows]
            values = [v for v in maybe if v is not None]
            if (
                len(values) == span
                and all(b > a for a, b in pairwise(values))
                and values[-1] - values[0] >= min_rise
                and values[-1] > medians[rate]
            ):
                drifting.append((rate, label, values))
        if len(drifting) < min_rates:
            continue
        name = rows[-1].unit_name
        details = "；".join(
            f"{label} "
            + " → ".join(f"{v:.1%}" for v in values)
            + f"（当月中位数 {medians[rate]:.1%}）"
            for rate, label, values in drifting
        )
        figures: dict[str, float] = {"dispatched": rows[-1].dispatched}
        for rate, _, values in drifting:
            figures[f"{rate}_first"] = values[0]
            figures[f"{rate}_latest"] = values[-1]
            figures[f"{rate}_median"] = medians[rate]
        signals.append(
            Signal(
                kind="inaction",
                key=f"inaction:{unit}:{month}",
                title=f"{name} 办理效能下滑：{'、'.join(label for _, label, _ in drifting)}连续上升",
                explanation=(
                    f"{span_months[0]} 至 {month}，{name}{details}，"
                    f"连续 {span} 个月上升且高于全市单位中位数，当月派单 {rows[-1].dispatched} 件。"
                ),
                score=100 * sum(values[-1] - values[0] for _, _, values in drifting),
                unit=unit,
                figures=figures,
            )
        )
    return _ranked(signals)


# ---- topics ------------------------------------------------------------------------------------

_NUMBER = re.compile(r"[\d.,:/%-]+")


def _problem_terms(text: str) -> list[str]:
    """The default tokeniser: the problem terms of `reports.terms` (jieba with parts of speech
    and a stop list: what the matter is, never function words or person names), loaded once per
    process on first use."""
    from jiesu.reports.terms import problem_terms

    return problem_terms(text)


def _usable(word: str, places: Collection[str]) -> bool:
    """A word that can carry a topic: 2+ characters, not a number, not a place name alone."""
    from jiesu.reports.terms import STOP_TERMS

    return (
        len(word) >= 2
        and word not in STOP_TERMS
        and word not in places
        and not _NUMBER.fullmatch(word)
    )


def content_words(
    text: str,
    tokenize: Callable[[str], Iterable[str]] | None = None,
    places: Collection[str] = (),
) -> set[str]:
    """The words of a text that can carry a topic (`_usable`)."""
    split = tokenize or _problem_terms
    return {w for w in split(text) if _usable(w, places)}


def _doc_counts(words: Iterable[str], texts: Sequence[str]) -> Counter[str]:
    """How many of `texts` contain each word: one search of the texts joined, each match
    placed in its text by bisection (a substring test per word and text was most of a scan)."""
    joined = "\x00".join(texts)
    starts, at = [], 0
    for text in texts:
        starts.append(at)
        at += len(text) + 1
    out: Counter[str] = Counter()
    for word in words:
        holders, i = set(), joined.find(word)
        while i >= 0:
            holder = bisect_right(starts, i) - 1
            holders.add(holder)
            i = joined.find(word, starts[holder + 1] if holder + 1 < len(starts) else len(joined))
        out[word] = len(holders)
    return out


def topics(
    recent: Sequence[Order],
    baseline: Sequence[Order],
    *,
    min_docs: int = 5,
    ratio: float = 4.0,
    smoothing: float = 1.0,
    overlap: float = 0.5,
    tokenize: Callable[[str], Iterable[str]] | None = None,
    places: Collection[str] = (),
) -> list[Signal]:
    """Emerging topics: problem terms far more frequent in `recent` tickets than in `baseline`.

    A term (by default `reports.terms.problem_terms`: words and phrases about the matter, never
    function words; 2+ characters, not a number, not one of `places`: the city's divisions,
    roads, estates and landmarks, so a place is never a topic alone) counts once per ticket. It
    warns when at least `min_docs` recent tickets contain it and its share of recent tickets is
    `ratio` times or more its share of the baseline, smoothed by `smoothing` pseudo-tickets
    ((df + 1) / (n + 1)) so that a word absent before needs volume, not luck; a baseline ticket
    holds a term when its text contains it. Words that mostly
    share their tickets (`overlap` of the smaller set) are one topic, named by the strongest.
    Key: the word and the month of the latest recent ticket, so a topic warns once a month.
    Score: recent tickets above expectation. Evidence: the recent tickets with the topic's word.
    """
    if not recent:
        return []

    def vocabulary(order: Order) -> set[str]:
        return content_words(order.text, tokenize, places)

    holders: dict[str, list[int]] = defaultdict(list)
    for order in recent:
        for word in vocabulary(order):
            holders[word].append(order.id)
    candidates = {w: ids for w, ids in holders.items() if len(ids) >= min_docs}
    # The baseline is only searched for the candidates (a ticket holds a term when its text
    # contains it): segmenting four weeks of tickets cost most of a scan, and a substring test
    # counts at least every segmented occurrence, so no topic is raised that segmenting would
    # not raise.
    before = _doc_counts(candidates, [o.text for o in baseline])

    n_recent, n_base = len(recent), len(baseline)
    found = []
    for word, ids in candidates.items():
        base_share = (before[word] + smoothing) / (n_base + smoothing)
        expected = base_share * n_recent
        lift = len(ids) / expected
        if lift >= ratio:
            found.append((len(ids) - expected, word, ids, expected, lift))
    found.sort(key=lambda f: (-f[0], f[1]))

    groups: list[tuple[tuple[float, str, list[int], float, float], list[str]]] = []
    for candidate in found:
        mine = set(candidate[2])
        for head, related in groups:
            theirs = set(head[2])
            if len(mine & theirs) >= overlap * min(len(mine), len(theirs)):
                related.append(candidate[1])
                break
        else:
            groups.append((candidate, []))

    month = max(o.day for o in recent).strftime("%Y-%m")
    signals = []
    for (excess, word, ids, expected, lift), related in groups:
        also = f"（相关：{'、'.join(related[:5])}）" if related else ""
        signals.append(
            Signal(
                kind="topic",
                key=f"topic:{word}:{month}",
                title=f"新出现的热点：{word}{also}",
                explanation=(
                    f"近期 {n_recent} 件工单中 {len(ids)} 件提到“{word}”（{len(ids) / n_recent:.1%}），"
                    f"此前 {n_base} 件中 {before[word]} 件，按窗口大小折算预期 {expected:.1f} 件，"
                    f"为预期的 {lift:.1f} 倍（标准：至少 {min_docs} 件且达到 {ratio:g} 倍）。"
                ),
                score=excess,
                evidence=tuple(sorted(ids)),
                figures={
                    "recent_docs": len(ids),
                    "baseline_docs": before[word],
                    "recent_size": n_recent,
                    "baseline_size": n_base,
                    "expected": expected,
                    "ratio": lift,
                },
            )
        )
    return _ranked(signals)


# ---- monthly themes ----------------------------------------------------------------------------


def themes(
    monthly: Mapping[str, Mapping[str, int]],
    month: str,
    *,
    months: int = 6,
    top: int = 10,
    persist: int = 4,
    names: Mapping[str, str] | None = None,
) -> list[Signal]:
    """每月一题 candidates: categories persistently among the city's most frequent.

    `monthly` maps a month ("2026-10") to category code → ticket count. A category's rank in a
    month is 1 + the categories with more tickets (ties share a rank); it is a candidate when it
    ranked within `top` in at least `persist` of the `months` months ending at `month`. Score:
    its tickets over those months × the share of months it was in the top.
    """
    window = [_shift_month(month, k - months + 1) for k in range(months)]
    ranks: dict[str, dict[str, int]] = defaultdict(dict)
    for m in window:
        counts = monthly.get(m, {})
        volumes = sorted(counts.values(), reverse=True)
        for category, n in counts.items():
            if n > 0:
                ranks[category][m] = 1 + sum(1 for v in volumes if v > n)

    signals = []
    for category, by_month in ranks.items():
        in_top = [m for m, rank in by_month.items() if rank <= top]
        if len(in_top) < persist:
            continue
        total = sum(monthly.get(m, {}).get(category, 0) for m in window)
        name = (names or {}).get(category, category)
        listing = "、".join(
            f"{m} {monthly.get(m, {}).get(category, 0)}件（第{by_month[m]}）"
            if m in by_month
            else f"{m} 0件"
            for m in window
        )
        signals.append(
            Signal(
                kind="theme",
                key=f"theme:{category}:{month}",
                title=f"每月一题候选：{name}",
                explanation=(
                    f"{window[0]} 至 {month} 的 {months} 个月中，{name} 有 {len(in_top)} 个月"
                    f"位列全市诉求量前 {top}（标准 {persist} 个月），共 {total} 件：{listing}。"
                ),
                score=total * len(in_top) / months,
                category=category,
                figures={"months_in_top": len(in_top), "total": total, "months": months},
            )
        )
    return _ranked(signals)
