"""Write the city as it now stands back into a city pack (the pack stays the source of truth).

`export_pack(dir)` writes, in the format `parse.read_pack` reads (docs/citypack.md):
pack.yaml (the settings as in force, the admin's edits included, intake thresholds set on the
admin page merged into `intel:`), units/units.csv, categories.csv, dispatch_catalogue.csv,
users.csv (no passwords: every user sets one again after a load into a fresh database),
calendar.csv (the pack's and the admin's days) and places.csv. Only what is active is
written: a unit, category, catalogue entry or place that was deactivated or merged is not in
the pack, so loading the export into a database that has it deactivates it there too. Users of
units that are not written, the portal's own account (made by every load) and inactive users
are left out. `export_zip()` gives the same files as one zip (the admin page's download).
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.citypack.load import PORTAL_USERNAME
from jiesu.intel.models import Place
from jiesu.org.models import Unit, User
from jiesu.taxonomy.models import CalendarOverride, Category, CitySetting, DispatchRule

HEADER = (
    "# 城市包：由 jiesu citypack export 从当前数据库导出 / exported by `jiesu citypack export`\n"
)


def _csv(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def _join(values: list[str] | None) -> str:
    return "|".join(values or [])


def settings_of(db_session: Session) -> dict[str, Any]:
    """The settings as in force: the pack's (with the admin's edits) and the admin's intake
    thresholds (`intel` row) over the pack's `intel:`."""
    row = db_session.get(CitySetting, "pack")
    settings: dict[str, Any] = dict(row.value) if row is not None else {}
    own = db_session.get(CitySetting, "intel")
    if own is not None and own.value:
        intel = {**(settings.get("intel") or {}),
                 **{k: v for k, v in own.value.items() if v is not None}}  # fmt: skip
        if own.value.get("auto_dispatch", 0) is None:  # switched off on the admin page
            intel.pop("auto_dispatch", None)
        settings["intel"] = intel
    return settings


def pack_files(*, db_session: Session) -> tuple[dict[str, str], Counter[str]]:
    """Every file of the pack by its relative path, and what was written (counts)."""
    stats: Counter[str] = Counter()
    files: dict[str, str] = {}
    settings = settings_of(db_session)
    files["pack.yaml"] = HEADER + yaml.safe_dump(settings, allow_unicode=True, sort_keys=False)

    units = list(db_session.scalars(select(Unit).order_by(Unit.path)))
    by_id = {u.id: u for u in units}
    written: dict[int, Unit] = {}
    for u in units:  # by path: a parent always comes before its children
        parent = by_id.get(u.parent_id) if u.parent_id else None
        if u.active and (parent is None or parent.id in written):
            if u.parent_id and parent is None:
                continue
            written[u.id] = u
    stats["units"] = len(written)
    stats["units.left_out"] = len(units) - len(written)
    files["units/units.csv"] = _csv(
        ("code", "name", "kind", "parent", "short_name", "function", "aliases"),
        [(u.code, u.name, u.kind, by_id[u.parent_id].code if u.parent_id else None,
          u.short_name, u.function, _join(u.aliases)) for u in written.values()],
    )  # fmt: skip

    cats = list(db_session.scalars(select(Category).order_by(Category.level, Category.code)))
    cat_by_id = {c.id: c for c in cats}
    kept: dict[int, Category] = {}
    for c in cats:
        if c.active and (c.parent_id is None or c.parent_id in kept):
            kept[c.id] = c
    stats["categories"] = len(kept)
    files["categories.csv"] = _csv(
        ("code", "name", "parent", "tier", "seven_haves", "five_qualities", "keywords"),
        [(c.code, c.name, cat_by_id[c.parent_id].code if c.parent_id else None, c.tier,
          _join(c.seven_haves), _join(c.five_qualities), _join(c.keywords))
         for c in sorted(kept.values(), key=lambda c: c.code)],
    )  # fmt: skip

    rules = [
        r for r in db_session.scalars(select(DispatchRule).order_by(DispatchRule.id))
        if r.active and r.category_id in kept
        and (r.unit_id is None or r.unit_id in written)
        and (r.district_id is None or r.district_id in written)
    ]  # fmt: skip
    stats["dispatch"] = len(rules)
    files["dispatch_catalogue.csv"] = _csv(
        ("category", "route", "function", "unit", "district", "note"),
        [(kept[r.category_id].code, r.route, r.function,
          written[r.unit_id].code if r.unit_id else None,
          written[r.district_id].code if r.district_id else None, r.note) for r in rules],
    )  # fmt: skip

    users = [
        u for u in db_session.scalars(select(User).order_by(User.username))
        if u.active and u.unit_id in written and u.username != PORTAL_USERNAME
    ]  # fmt: skip
    stats["users"] = len(users)
    files["users.csv"] = _csv(
        ("username", "name", "role", "unit"),
        [(u.username, u.name, u.role, written[u.unit_id].code) for u in users],
    )

    days = list(db_session.scalars(select(CalendarOverride).order_by(CalendarOverride.day)))
    stats["calendar"] = len(days)
    files["calendar.csv"] = _csv(
        ("date", "kind", "note"), [(d.day.isoformat(), d.kind, d.note) for d in days]
    )

    places = [
        p for p in db_session.scalars(select(Place).order_by(Place.id))
        if p.active and p.unit_id in written
    ]  # fmt: skip
    stats["places"] = len(places)
    files["places.csv"] = _csv(
        ("name", "kind", "unit", "aliases"),
        [(p.name, p.kind, written[p.unit_id].code, _join(p.aliases)) for p in places],
    )

    synonyms = db_session.get(CitySetting, "synonyms")  # the knowledge base's city words
    groups = [g for g in (synonyms.value if synonyms is not None else None) or [] if g]
    if groups:
        stats["synonyms"] = len(groups)
        files["synonyms.csv"] = _csv(("words",), [(_join(g),) for g in groups])
    return files, stats


def export_pack(root: str | Path, *, db_session: Session) -> Counter[str]:
    """Write the pack into `root` (created; files of the same name are replaced)."""
    files, stats = pack_files(db_session=db_session)
    base = Path(root)
    for rel, text in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return stats


def export_zip(*, db_session: Session) -> bytes:
    """The pack as one zip (the admin page's download)."""
    files, _ = pack_files(db_session=db_session)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for rel, text in files.items():
            z.writestr(rel, text.encode("utf-8"))
    return out.getvalue()
