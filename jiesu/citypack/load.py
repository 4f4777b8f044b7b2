"""Load a validated city pack into the database, in place.

Rows are matched by code. New rows are created, changed rows updated, rows that left the pack
deactivated (tickets and history still point at them). An attribute set to the value it already
has is not an update, so loading the same pack twice writes nothing. The caller owns the
transaction: a failure anywhere leaves nothing half-loaded.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.auth.passwords import hash_password
from jiesu.citypack.parse import CategoryRow, Pack, UnitRow
from jiesu.intel.models import Place
from jiesu.org.models import Unit, User
from jiesu.taxonomy.models import (
    CalendarOverride,
    Category,
    CitySetting,
    DispatchRule,
    RequestType,
)
from jiesu.taxonomy.service import bump_reference
from jiesu.timelimits.calendar import changed_days
from jiesu.timelimits.tiers import changed_tiers


class PackInvalid(ValueError):
    def __init__(self, pack: Pack) -> None:
        self.errors = pack.errors
        super().__init__("\n".join(str(e) for e in pack.errors))


def _assign(obj: Any, values: dict[str, Any], stats: Counter[str], label: str) -> None:
    changed = False
    for key, value in values.items():
        if getattr(obj, key) != value:
            setattr(obj, key, value)
            changed = True
    if changed:
        stats[f"{label}.updated"] += 1


def load_pack(pack: Pack, *, db_session: Session) -> Counter[str]:
    """Load `pack`; returns counts like {'units.created': 343, 'categories.updated': 2}."""
    if not pack.ok:
        raise PackInvalid(pack)
    stats: Counter[str] = Counter()
    rules_before = _rules(db_session)
    units = _load_units(pack.units, db_session, stats)
    categories = _load_categories(pack, db_session, stats)
    _load_request_types(pack, db_session, stats)
    _load_dispatch(pack, units, categories, db_session, stats)
    _load_users(pack, units, db_session, stats)
    _load_places(pack, units, db_session, stats)
    _ensure_portal_account(units, db_session, stats)
    _load_calendar(pack, db_session, stats)
    _load_settings(pack, db_session, stats)
    _load_synonyms(pack, db_session, stats)
    if stats:
        bump_reference(db_session=db_session)
    db_session.flush()
    calendar = stats["calendar.created"] + stats["calendar.updated"] + stats["calendar.deleted"]
    if calendar or stats["settings.updated"]:
        _propagate(rules_before, _rules(db_session), db_session, stats)
    return stats


Rules = tuple[dict[str, Any], dict[date, bool]]


def _rules(s: Session) -> Rules:
    """What deadlines are computed from: the pack's settings and the calendar's overrides."""
    row = s.get(CitySetting, "pack")
    overrides = {o.day: o.kind == "workday" for o in s.scalars(select(CalendarOverride))}
    return (dict(row.value) if row is not None else {}), overrides


def _propagate(before: Rules, after: Rules, s: Session, stats: Counter[str]) -> None:
    """A pack that moves deadlines (a calendar day, a tier's limits) brings the orders they
    affect up to date (tickets/rule_changes.py); reported in the stats."""
    from jiesu.tickets.rule_changes import RuleChange, propagate

    days = changed_days(before[1], after[1])
    tiers = changed_tiers(before[0], after[0]) if before[0] else frozenset()
    change = RuleChange(RuleChange.calendar(days).days, tiers)
    outcome = propagate(change, db_session=s)
    if outcome.recomputed:
        stats["orders.recomputed"] += outcome.recomputed
    if outcome.queued:
        stats["orders.queued"] += outcome.queued


def _depth(code: str, parents: dict[str, str | None]) -> int:
    depth = 0
    while (code := parents.get(code) or "") and depth < 100:
        depth += 1
    return depth


def _load_units(rows: list[UnitRow], s: Session, stats: Counter[str]) -> dict[str, Unit]:
    existing = {u.code: u for u in s.scalars(select(Unit))}
    parents = {r.code: r.parent for r in rows}
    for level_rows in _by_depth(rows, parents):
        for row in level_rows:
            unit = existing.get(row.code)
            parent = existing[row.parent] if row.parent else None
            values = {
                "name": row.name,
                "short_name": row.short_name,
                "kind": row.kind,
                "function": row.function,
                "aliases": row.aliases,
                "parent_id": parent.id if parent else None,
                "active": True,
            }
            if unit is None:
                unit = Unit(code=row.code, path="", **values)
                s.add(unit)
                existing[row.code] = unit
                stats["units.created"] += 1
            else:
                _assign(unit, values, stats, "units")
        s.flush()  # ids for the next level's parent_id and for the paths
        for row in level_rows:
            unit = existing[row.code]
            parent_path = existing[row.parent].path if row.parent else "/"
            path = f"{parent_path}{unit.id}/"
            if unit.path != path:
                unit.path = path
    in_pack = set(parents)
    for code, unit in existing.items():
        if code not in in_pack and unit.active:
            unit.active = False
            stats["units.deactivated"] += 1
    return existing


def _by_depth(rows: list[Any], parents: dict[str, str | None]) -> list[list[Any]]:
    levels: dict[int, list[Any]] = {}
    for row in rows:
        levels.setdefault(_depth(row.code, parents), []).append(row)
    return [levels[d] for d in sorted(levels)]


def _load_categories(pack: Pack, s: Session, stats: Counter[str]) -> dict[str, Category]:
    existing = {c.code: c for c in s.scalars(select(Category))}
    rows: list[CategoryRow] = pack.categories
    parents = {r.code: r.parent for r in rows}
    default_tier = pack.settings["default_tier"]
    for level, level_rows in enumerate(_by_depth(rows, parents), 1):
        for row in level_rows:
            parent = existing[row.parent] if row.parent else None
            values = {
                "name": row.name,
                "parent_id": parent.id if parent else None,
                "level": level,
                "full_name": f"{parent.full_name} › {row.name}" if parent else row.name,
                "tier": row.tier,
                "effective_tier": row.tier or (parent.effective_tier if parent else default_tier),
                "seven_haves": row.seven_haves,
                "five_qualities": row.five_qualities,
                "keywords": row.keywords,
                "active": True,
            }
            cat = existing.get(row.code)
            if cat is None:
                cat = Category(code=row.code, **values)
                s.add(cat)
                existing[row.code] = cat
                stats["categories.created"] += 1
            else:
                _assign(cat, values, stats, "categories")
        s.flush()
    for code, cat in existing.items():
        if code not in parents and cat.active:
            cat.active = False
            stats["categories.deactivated"] += 1
    return existing


def _load_request_types(pack: Pack, s: Session, stats: Counter[str]) -> None:
    existing = {t.code: t for t in s.scalars(select(RequestType))}
    wanted: dict[str, str] = pack.settings["request_types"]
    for code, name in wanted.items():
        if code in existing:
            _assign(existing[code], {"name": name, "active": True}, stats, "request_types")
        else:
            s.add(RequestType(code=code, name=name, active=True))
            stats["request_types.created"] += 1
    for code, rt in existing.items():
        if code not in wanted and rt.active:
            rt.active = False
            stats["request_types.deactivated"] += 1


def _load_dispatch(
    pack: Pack,
    units: dict[str, Unit],
    categories: dict[str, Category],
    s: Session,
    stats: Counter[str],
) -> None:
    existing = {(r.category_id, r.district_id): r for r in s.scalars(select(DispatchRule))}
    seen = set()
    for row in pack.dispatch:
        key = (categories[row.category].id, units[row.district].id if row.district else None)
        seen.add(key)
        values = {
            "route": row.route,
            "function": row.function,
            "unit_id": units[row.unit].id if row.unit else None,
            "note": row.note,
            "active": True,
        }
        if key in existing:
            _assign(existing[key], values, stats, "dispatch_rules")
        else:
            s.add(DispatchRule(category_id=key[0], district_id=key[1], **values))
            stats["dispatch_rules.created"] += 1
    for key, rule in existing.items():
        if key not in seen and rule.active:
            rule.active = False
            stats["dispatch_rules.deactivated"] += 1


def _load_users(pack: Pack, units: dict[str, Unit], s: Session, stats: Counter[str]) -> None:
    # Users the admin created in the console are not in the pack: never deactivate by absence.
    # A pack's password is an initial password only: reloading never resets a changed one.
    existing = {u.username: u for u in s.scalars(select(User))}
    for row in pack.users:
        values = {"name": row.name, "role": row.role, "unit_id": units[row.unit].id}
        user = existing.get(row.username)
        if user is None:
            s.add(
                User(
                    username=row.username,
                    password_hash=hash_password(row.password) if row.password else None,
                    active=True,
                    **values,
                )
            )
            stats["users.created"] += 1
        else:
            _assign(user, values, stats, "users")


def _load_places(pack: Pack, units: dict[str, Unit], s: Session, stats: Counter[str]) -> None:
    """places.csv, matched by (name, unit): a place that leaves the pack is deactivated, like
    the units, so that nothing the pack no longer vouches for is read as an address."""
    existing = {(p.name, p.unit_id): p for p in s.scalars(select(Place))}
    seen = set()
    for row in pack.places:
        key = (row.name, units[row.unit].id)
        seen.add(key)
        values = {"kind": row.kind, "aliases": row.aliases, "active": True}
        if key in existing:
            _assign(existing[key], values, stats, "places")
        else:
            s.add(Place(name=key[0], unit_id=key[1], **values))
            stats["places.created"] += 1
    for key, place in existing.items():
        if key not in seen and place.active:
            place.active = False
            stats["places.deactivated"] += 1


PORTAL_USERNAME = "portal"


def _ensure_portal_account(units: dict[str, Unit], s: Session, stats: Counter[str]) -> None:
    """The account the citizen portal takes requests in as: in the service centre, with no
    password (it cannot sign in), so every portal order has a real author in its timeline."""
    centre = next((u for u in units.values() if u.function == "service_centre"), None)
    if centre is None or s.scalar(select(User).where(User.username == PORTAL_USERNAME)):
        return
    s.add(User(username=PORTAL_USERNAME, name="市民服务入口", role="agent", unit_id=centre.id,
               password_hash=None, active=True))  # fmt: skip
    stats["users.created"] += 1


def _load_calendar(pack: Pack, s: Session, stats: Counter[str]) -> None:
    existing = {c.day: c for c in s.scalars(select(CalendarOverride))}
    wanted = {row.day: row for row in pack.calendar}
    for day, row in wanted.items():
        current = existing.get(day)
        if current is None:
            s.add(CalendarOverride(day=day, kind=row.kind, note=row.note, source="pack"))
            stats["calendar.created"] += 1
        elif current.source == "pack":  # an admin's own override wins over the pack
            _assign(current, {"kind": row.kind, "note": row.note}, stats, "calendar")
    for day, current in existing.items():
        if day not in wanted and current.source == "pack":
            s.delete(current)
            stats["calendar.deleted"] += 1


def _load_settings(pack: Pack, s: Session, stats: Counter[str]) -> None:
    current = s.get(CitySetting, "pack")
    if current is None:
        s.add(CitySetting(key="pack", value=pack.settings))
        stats["settings.created"] += 1
    elif current.value != pack.settings:
        current.value = pack.settings
        stats["settings.updated"] += 1


SYNONYMS_KEY = "synonyms"  # knowledge/synonyms.SETTING_KEY (the knowledge base reads it)


def _load_synonyms(pack: Pack, s: Session, stats: Counter[str]) -> None:
    """synonyms.csv's groups, one city_setting row (the knowledge base's search reads it); a
    pack without the file leaves no row."""
    current = s.get(CitySetting, SYNONYMS_KEY)
    if not pack.synonyms:
        if current is not None:
            s.delete(current)
            stats["synonyms.deleted"] += 1
        return
    if current is None:
        s.add(CitySetting(key=SYNONYMS_KEY, value=pack.synonyms))
        stats["synonyms.created"] += 1
    elif current.value != pack.synonyms:
        current.value = pack.synonyms
        stats["synonyms.updated"] += 1
