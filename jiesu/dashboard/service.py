"""The dashboard's (数据大屏) figures: one JSON object per period, from the rollups and indexes.

Counting requests never scans the `ticket` table: at the scale of a capital city (70,000
requests a day, millions of orders) the page must answer within a second, so every count of
requests comes from `intake_rollup` (kept up to date at intake, `assessment/service.py`), the
three rates from `metric_rollup`, and the live figures (open orders past due, open warnings)
from indexed counts. The queries, whatever the period:

1. `intake_rollup` over the period, grouped by dim, key and district (areas, distributions,
   items, 七有五性);
2. `intake_rollup` over the previous period of equal length (categories and the total only);
3. `intake_rollup` dim `all` per day over the trend window and the same days a year before;
4. `metric_rollup` summed per unit over the period (三率, as `scope_rates` sums them);
5. open orders past due (`ticket` index status, due_at) and due within 24 hours;
6. open warnings by kind (`warning` index status, day);
7. the latest geolocated requests of the last 24 hours (`ticket` index created_at), at most
   `POINTS_LIMIT`, rounded to about 100 m.

`dashboard(days)` answers (every count an int, every rate a fraction 0–1 or null when it has no
denominator, every change a fraction or null when the previous period had nothing)::

    {
      "generated_at": "2026-11-20T09:00:00+08:00", "today": "2026-11-20", "days": 7,
      "period":   {"start": "2026-11-14", "end": "2026-11-20"},
      "previous": {"start": "2026-11-07", "end": "2026-11-13"},
      "headline": {
        "requests": 812, "previous": 790, "change": 0.0278, "today": 131,
        "rates": {"response": {"name": "响应率", "value": 0.97, "numerator": 680,
                               "denominator": 701}, "resolution": {…}, "satisfaction": {…}},
        "overdue_open": 12, "due_soon": 30, "warnings_open": 4
      },
      "areas": {"districts": [{"code", "name", "n",
                               "streets": [{"code", "name", "n"}, …]}, …],   # n descending
                "unknown": 3},                         # requests with no district
      "map": {"available": false, "url": "/console/dashboard/boundaries.json"},
      "points": [[116.407, 39.904], …],                # [lng, lat], the city's datum
      "center": [116.4074, 39.9042] | null,            # the pack's `center`
      "distribution": {"type": [{"key", "name", "n"}, …], "top": […], "channel": […]},
      "items": [{"code", "name", "top", "top_name", "n", "previous", "change"}, …],  # top 10
      "trend": {"days": ["2026-10-22", …], "counts": [..],          # ≥ 30 days, to today
                "last_year": [..] | null,              # null when the rollup has none
                "last_year_days": ["2025-10-22", …] | null,
                "partial": {"day": "2026-11-20", "until": "09:00",   # today, not over:
                            "label": "今日（截至 09:00）"}},          # drawn apart
      "seven_haves":   [{"name": "幼有所育", "n"}, …],  # the pack's order, zeros included
      "five_qualities": [{"name": "便利性", "n"}, …],
      "alerts": {"overdue_by_district": [{"code", "name", "n"}, …],
                 "warnings_by_kind": [{"kind", "name", "n"}, …]}
    }

A request counts in each 七有 (五性) dimension its category has (a sub-category without its own
takes its parents', as `category_index` gives them), once per dimension.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, true
from sqlalchemy.orm import Session

from jiesu.assessment import service as A
from jiesu.assessment.models import IntakeRollup, Warning
from jiesu.assessment.rates import BY_KEY, THREE, rate
from jiesu.citypack.parse import FIVE_QUALITIES, SEVEN_HAVES
from jiesu.db.base import utcnow
from jiesu.org.models import Unit
from jiesu.settings import city_tz, get_settings
from jiesu.taxonomy.service import pack_settings
from jiesu.tickets.models import Ticket
from jiesu.web.labels import CHANNEL_NAMES, REQUEST_TYPE_NAMES, WARNING_KIND_NAMES

PERIODS = (1, 7, 30)  # 今日, 近7日, 近30日
TREND_MIN_DAYS = 30
TOP_ITEMS = 10
POINTS_LIMIT = 2_000
POINTS_HOURS = 24
OPEN_STATES = ("dispatched", "accepted")  # an order someone is handling and owes a reply
PERIOD_DIMS = ("all", "street", "top", "category", "channel", "type")
BOUNDARIES_URL = "/console/dashboard/boundaries.json"
UNKNOWN = "未定位"
WARNING_KINDS = WARNING_KIND_NAMES


def year_before(day: date) -> date:
    """The same calendar day a year earlier (29 February → 28 February)."""
    try:
        return day.replace(year=day.year - 1)
    except ValueError:
        return day.replace(year=day.year - 1, day=28)


def change(now: int, before: int) -> float | None:
    """(now − before) / before; None when there was nothing before (no baseline, not +∞)."""
    return None if before <= 0 else round((now - before) / before, 4)


def _sorted(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (-r["n"], str(r.get("code") or r.get("key") or "")))


def dashboard(
    days: int, *, db_session: Session, now: datetime | None = None, district: str | None = None
) -> dict[str, Any]:
    """The dashboard's figures for the last `days` city-local days, today included (see the
    module docstring for the shape); with `district` (a unit code), that district's alone."""
    if days not in PERIODS:
        raise ValueError(f"days must be one of {PERIODS}")
    tz = city_tz()
    now = now or utcnow()
    today = now.astimezone(tz).date()
    start = today - timedelta(days=days - 1)
    prev_end = start - timedelta(days=1)
    prev_start = prev_end - timedelta(days=days - 1)
    units = A.unit_index(db_session=db_session)
    by_code = {c.code: c for c in A.category_index(db_session=db_session).values()}
    settings = pack_settings(db_session=db_session)
    scope = units.by_code.get(district) if district else None
    if district and scope is None:
        raise ValueError(f"unknown district {district}")
    # Everything below reads this district's rows only (the rollups carry the district).
    in_scope: Any = IntakeRollup.district_id == scope.id if scope else true()

    # 1. the period by dim, key and district
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    district_n: dict[int, int] = defaultdict(int)
    street_n: dict[tuple[int, str], int] = defaultdict(int)
    for dim, key, district, n in db_session.execute(
        select(IntakeRollup.dim, IntakeRollup.key, IntakeRollup.district_id,
               func.sum(IntakeRollup.n))
        .where(IntakeRollup.day.between(start, today), IntakeRollup.dim.in_(PERIOD_DIMS),
               in_scope)
        .group_by(IntakeRollup.dim, IntakeRollup.key, IntakeRollup.district_id)
    ):  # fmt: skip
        n = int(n or 0)
        counts[dim][key] += n
        if dim == "all":
            district_n[int(district)] += n
        elif dim == "street":
            street_n[(int(district), key)] += n

    # 2. the previous period: categories and the total
    before: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for dim, key, n in db_session.execute(
        select(IntakeRollup.dim, IntakeRollup.key, func.sum(IntakeRollup.n))
        .where(IntakeRollup.day.between(prev_start, prev_end),
               IntakeRollup.dim.in_(("all", "category")), in_scope)
        .group_by(IntakeRollup.dim, IntakeRollup.key)
    ):  # fmt: skip
        before[dim][key] += int(n or 0)

    # 3. the trend and last year's same days
    trend_days = [today - timedelta(days=i) for i in range(max(days, TREND_MIN_DAYS) - 1, -1, -1)]
    last_days = [year_before(d) for d in trend_days]
    per_day: dict[date, int] = {}
    for day, n in db_session.execute(
        select(IntakeRollup.day, func.sum(IntakeRollup.n))
        .where(IntakeRollup.dim == "all", in_scope,
               or_(IntakeRollup.day.between(trend_days[0], today),
                   IntakeRollup.day.between(last_days[0], last_days[-1])))
        .group_by(IntakeRollup.day)
    ):  # fmt: skip
        per_day[day] = int(n or 0)
    last_year = [per_day.get(d, 0) for d in last_days]
    has_last_year = any(last_year)

    requests = sum(counts["all"].values())
    previous = sum(before["all"].values())
    overdue_by_district, overdue, due_soon = _overdue(now, units, db_session=db_session,
                                                       scope=scope)  # fmt: skip
    warnings = _warnings(db_session=db_session, scope=scope)
    return {
        "generated_at": now.astimezone(tz).isoformat(timespec="seconds"),
        "today": today.isoformat(),
        "days": days,
        "period": {"start": start.isoformat(), "end": today.isoformat()},
        "previous": {"start": prev_start.isoformat(), "end": prev_end.isoformat()},
        "headline": {
            "requests": requests,
            "previous": previous,
            "change": change(requests, previous),
            "today": per_day.get(today, 0),
            "rates": _three_rates(start, today, units, db_session=db_session, scope=scope, now=now),
            "overdue_open": overdue,
            "due_soon": due_soon,
            "warnings_open": sum(w["n"] for w in warnings),
        },
        "areas": _areas(district_n, street_n, units),
        "map": {
            "available": bool(district_boundaries(db_session=db_session)["features"]),
            "url": BOUNDARIES_URL,
        },
        "scope": {"code": scope.code, "name": scope.name} if scope else None,
        "points": _points(now, db_session=db_session, scope=scope),
        "center": settings.get("center"),
        "distribution": {
            "type": _named(counts["type"], _type_names(settings)),
            "top": _named(counts["top"], {c: r.name for c, r in by_code.items()}),
            "channel": _named(counts["channel"], CHANNEL_NAMES),
        },
        "items": _items(counts["category"], before["category"], by_code),
        "trend": {
            "days": [d.isoformat() for d in trend_days],
            "counts": [per_day.get(d, 0) for d in trend_days],
            "last_year": last_year if has_last_year else None,
            "last_year_days": [d.isoformat() for d in last_days] if has_last_year else None,
            # today is not over: the page draws its count apart (dashed, 今日（截至 10:30）),
            # so a partial day never reads as a plunge
            "partial": {
                "day": today.isoformat(),
                "until": now.astimezone(tz).strftime("%H:%M"),
                "label": f"今日（截至 {now.astimezone(tz).strftime('%H:%M')}）",
            },
        },
        "seven_haves": _dimensions(counts["category"], by_code, "seven_haves", SEVEN_HAVES),
        "five_qualities": _dimensions(
            counts["category"], by_code, "five_qualities", FIVE_QUALITIES
        ),
        "alerts": {"overdue_by_district": overdue_by_district, "warnings_by_kind": warnings},
    }


def _three_rates(
    start: date, end: date, units: A.UnitIndex, *, db_session: Session,
    scope: A.UnitRow | None = None, now: datetime | None = None,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """响应率, 解决率, 满意率 of the city (or the district): the sums `scope_rates` takes,
    without its live count of orders past due, which only the overdue rate needs (the page
    keeps its reads of the ticket table to the indexed live figures). The contacts still
    pending (by the contact_due index) stay out of 响应率; 满意率 takes the pack's scores."""
    totals = A.unit_totals(start, end, db_session=db_session)
    for unit_id, n in A.contact_pending(start, end, db_session=db_session, now=now).items():
        totals.setdefault(unit_id, {})["contact_pending"] = n
    summed = A.scope_totals(totals, scope, units)
    scores = pack_settings(db_session=db_session).get("satisfaction_scores")
    out = {}
    for key in THREE:
        r = rate(BY_KEY[key], summed, scores)
        out[key] = {"name": BY_KEY[key].name, "value": r.value, "numerator": r.numerator,
                    "denominator": r.denominator}  # fmt: skip
    return out


def _areas(
    district_n: Mapping[int, int], street_n: Mapping[tuple[int, str], int], units: A.UnitIndex
) -> dict[str, Any]:
    streets: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for (district, code), n in street_n.items():
        if not n or not district:
            continue
        unit = units.by_code.get(code) if code else None
        streets[district].append(
            {"code": code, "name": unit.name if unit else f"{UNKNOWN}街道", "n": n}
        )
    districts = []
    for district, n in district_n.items():
        unit = units.by_id.get(district) if district else None
        if unit is None or not n:
            continue
        districts.append({"code": unit.code, "name": unit.name, "n": n,
                          "streets": _sorted(streets.get(district, []))})  # fmt: skip
    unknown = sum(n for d, n in district_n.items() if not d or d not in units.by_id)
    return {"districts": _sorted(districts), "unknown": unknown}


def _type_names(settings: Mapping[str, Any]) -> dict[str, str]:
    pack = settings.get("request_types") or {}
    return {**REQUEST_TYPE_NAMES, **{str(k): str(v) for k, v in dict(pack).items()}}


def _named(counts: Mapping[str, int], names: Mapping[str, str]) -> list[dict[str, Any]]:
    return _sorted(
        {"key": key, "name": names.get(key, key) if key else "未分类", "n": n}
        for key, n in counts.items()
        if n
    )


def _items(
    now: Mapping[str, int], before: Mapping[str, int], by_code: Mapping[str, A.CategoryRow]
) -> list[dict[str, Any]]:
    """The most frequent categories of the period, with their count in the previous one."""
    top = sorted(((n, code) for code, n in now.items() if n), key=lambda x: (-x[0], x[1]))
    out = []
    for n, code in top[:TOP_ITEMS]:
        row = by_code.get(code)
        parent = by_code.get(row.top) if row else None
        prev = before.get(code, 0)
        out.append({"code": code, "name": row.name if row else code,
                    "top": row.top if row else "", "top_name": parent.name if parent else "",
                    "n": n, "previous": prev, "change": change(n, prev)})  # fmt: skip
    return out


def _dimensions(
    counts: Mapping[str, int], by_code: Mapping[str, A.CategoryRow], attr: str,
    names: Iterable[str],
) -> list[dict[str, Any]]:  # fmt: skip
    totals = dict.fromkeys(names, 0)
    for code, n in counts.items():
        row = by_code.get(code)
        for name in set(getattr(row, attr)) if row else ():
            totals[name] = totals.get(name, 0) + n
    return [{"name": name, "n": n} for name, n in totals.items()]


def _overdue(
    now: datetime, units: A.UnitIndex, *, db_session: Session, scope: A.UnitRow | None = None
) -> tuple[list[dict[str, Any]], int, int]:
    """Open orders past their due, by district; and how many fall due within 24 hours."""
    in_scope: Any = Ticket.district_id == scope.id if scope else true()
    rows = db_session.execute(
        select(Ticket.district_id, func.count())
        .where(Ticket.status.in_(OPEN_STATES), Ticket.due_at < now, in_scope)
        .group_by(Ticket.district_id)
    ).all()
    by_district: list[dict[str, Any]] = []
    for district, n in rows:
        unit = units.by_id.get(district) if district else None
        by_district.append({"code": unit.code if unit else "", "name": unit.name if unit
                            else UNKNOWN, "n": int(n)})  # fmt: skip
    soon = db_session.scalar(
        select(func.count())
        .select_from(Ticket)
        .where(Ticket.status.in_(OPEN_STATES), Ticket.due_at >= now,
               Ticket.due_at < now + timedelta(hours=24), in_scope)
    )  # fmt: skip
    return _sorted(by_district), sum(r["n"] for r in by_district), int(soon or 0)


def _warnings(*, db_session: Session, scope: A.UnitRow | None = None) -> list[dict[str, Any]]:
    stmt = select(Warning.kind, func.count()).where(Warning.status == "open")
    if scope is not None:  # warnings about a place or a unit in the district
        under = select(Unit.id).where(Unit.path.startswith(scope.path))
        stmt = stmt.where(or_(Warning.area_unit_id.in_(under), Warning.unit_id.in_(under)))
    rows = db_session.execute(stmt.group_by(Warning.kind)).all()
    return _sorted({"kind": k, "name": WARNING_KINDS.get(k, k), "n": int(n)} for k, n in rows)


def _points(
    now: datetime, *, db_session: Session, scope: A.UnitRow | None = None
) -> list[list[float]]:
    """The latest geolocated requests (a point layer), newest first, rounded to ~100 m: enough
    for a heat view, not enough to point at someone's door."""
    rows = db_session.execute(
        select(Ticket.lng, Ticket.lat)
        .where(Ticket.created_at >= now - timedelta(hours=POINTS_HOURS),
               Ticket.lat.is_not(None), Ticket.lng.is_not(None),
               Ticket.district_id == scope.id if scope else true())
        .order_by(Ticket.created_at.desc())
        .limit(POINTS_LIMIT)
    ).all()  # fmt: skip
    return [
        [round(lng, 3), round(lat, 3)] for lng, lat in rows if lng is not None and lat is not None
    ]


# ---- the district map (only where the deployment has boundaries) ---------------------------

_boundaries_lock = threading.Lock()
_boundaries: dict[tuple[str, float, str], dict[str, Any]] = {}
EMPTY: dict[str, Any] = {"type": "FeatureCollection", "features": []}


def district_boundaries(*, db_session: Session) -> dict[str, Any]:
    """The districts of `JIESU_BOUNDARIES` (GCJ-02 GeoJSON) as ECharts registers a map: one
    feature per district unit with `properties` {code, name}; empty without the file (or when
    no feature is a district of this city). Read once per file version."""
    path = get_settings().boundaries
    if path is None or not path.is_file():
        return EMPTY
    units = A.unit_index(db_session=db_session)
    districts = {u.code: u.name for u in units.by_id.values() if u.kind == "district"}
    key = (str(path), path.stat().st_mtime, json.dumps(sorted(districts.items())))
    with _boundaries_lock:
        hit = _boundaries.get(key)
        if hit is None:
            hit = _read_districts(path, districts)
            _boundaries.clear()  # one deployment, one file: keep only the current version
            _boundaries[key] = hit
    return hit


def _read_districts(path: Path, districts: Mapping[str, str]) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return EMPTY  # a broken file must not break the page: the treemap stands in
    features = []
    for feature in (data.get("features") or []) if isinstance(data, dict) else []:
        props = feature.get("properties") or {}
        code = next((props[k] for k in ("code", "adcode", "id") if props.get(k) not in (None, "")),
                    feature.get("id"))  # fmt: skip
        if code is None or str(code) not in districts or not feature.get("geometry"):
            continue
        features.append({"type": "Feature", "geometry": feature["geometry"],
                         "properties": {"code": str(code), "name": districts[str(code)]}})  # fmt: skip
    return {"type": "FeatureCollection", "features": features}
