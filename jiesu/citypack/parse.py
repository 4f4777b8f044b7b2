"""Read and validate a city pack folder (docs/citypack.md) into plain values. Pure: no database.

Every problem found is collected as a `PackError` naming the file, the line and the reason, so a
city fixes a pack in one round instead of one error at a time.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

UNIT_KINDS = ("city", "district", "street", "community", "grid", "department", "company")
# A unit of this kind may only hang under one of these kinds.
PARENT_KINDS: dict[str, tuple[str, ...]] = {
    "city": (),
    "district": ("city",),
    "street": ("district",),
    "community": ("street",),
    "grid": ("community", "street"),
    "department": ("city", "district", "street"),
    "company": ("city", "district"),
}
ROLES = (
    "agent",
    "dispatcher",
    "handler",
    "unit_admin",
    "callback_agent",
    "supervisor",
    "analyst",
    "admin",
)
REQUEST_TYPES = ("consult", "help", "complain", "report", "suggest", "praise")
SEVEN_HAVES = ("幼有所育", "学有所教", "劳有所得", "病有所医", "老有所养", "住有所居", "弱有所扶")
FIVE_QUALITIES = ("便利性", "宜居性", "多样性", "公正性", "安全性")
ROUTES = ("street", "district_function", "unit")
SATISFACTION_LEVELS = (
    "very_satisfied",
    "satisfied",
    "basically_satisfied",
    "dissatisfied",
    "very_dissatisfied",
)
PHASES = ("accept", "contact", "complete")
DURATION = re.compile(r"^(\d+)(m|h|wh|d|wd)$")
CODE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
MAX_CATEGORY_LEVEL = 3


@dataclass(frozen=True)
class PackError:
    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Duration:
    amount: int
    unit: str  # m h wh d wd

    @classmethod
    def parse(cls, text: str) -> Duration:
        m = DURATION.match(str(text).strip())
        if not m:
            raise ValueError(f"bad duration {text!r} (write e.g. 30m, 2h, 2wh, 3d, 7wd)")
        return cls(int(m.group(1)), m.group(2))

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


@dataclass
class UnitRow:
    line: int
    file: str
    code: str
    name: str
    kind: str
    parent: str | None
    short_name: str | None = None
    function: str | None = None
    aliases: list[str] = field(default_factory=list)


@dataclass
class CategoryRow:
    line: int
    code: str
    name: str
    parent: str | None
    tier: str | None
    seven_haves: list[str]
    five_qualities: list[str]
    keywords: list[str]


@dataclass
class DispatchRow:
    line: int
    category: str
    route: str
    function: str | None
    unit: str | None
    district: str | None
    note: str | None


@dataclass
class UserRow:
    line: int
    username: str
    name: str
    role: str
    unit: str
    password: str | None


@dataclass
class CalendarRow:
    line: int
    day: date
    kind: str
    note: str | None


@dataclass
class Pack:
    root: Path
    settings: dict[str, Any]
    units: list[UnitRow]
    categories: list[CategoryRow]
    dispatch: list[DispatchRow]
    users: list[UserRow]
    calendar: list[CalendarRow]
    errors: list[PackError]

    @property
    def ok(self) -> bool:
        return not self.errors


def split_list(cell: str | None) -> list[str]:
    return [p.strip() for p in (cell or "").split("|") if p.strip()]


def _cell(row: dict[str, str | None], name: str) -> str | None:
    value = row.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


class _Reader:
    """Reads one pack, collecting errors instead of stopping at the first."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.errors: list[PackError] = []

    def error(self, file: str, line: int | None, reason: str) -> None:
        self.errors.append(PackError(file, line, reason))

    def csv_rows(
        self, rel: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
    ) -> list[tuple[int, dict[str, str | None]]]:
        path = self.root / rel
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            self.error(rel, None, "file is missing")
            return []
        except UnicodeDecodeError as exc:
            self.error(rel, None, f"not UTF-8 ({exc.reason})")
            return []
        reader = csv.DictReader(text.splitlines())
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            self.error(rel, 1, f"missing column(s): {', '.join(missing)}")
            return []
        unknown = [c for c in header if c not in required + optional]
        if unknown:
            self.error(rel, 1, f"unknown column(s): {', '.join(unknown)}")
        reader.fieldnames = header
        rows = []
        for row in reader:
            line = reader.line_num
            if not any((v or "").strip() for k, v in row.items() if k is not None):
                continue
            if None in row:
                self.error(rel, line, "more cells than columns (quote cells that contain commas)")
                continue
            for col in required:
                if not _cell(row, col) and col not in ("parent",):
                    self.error(rel, line, f"empty required column '{col}'")
            rows.append((line, row))
        return rows


def read_pack(root: str | Path) -> Pack:
    """Read and validate the pack in `root`. Never raises for a bad pack: see `Pack.errors`."""
    r = _Reader(Path(root))
    settings = _read_settings(r)
    units = _read_units(r, settings)
    categories = _read_categories(r, settings)
    dispatch = _read_dispatch(r, units, categories)
    users = _read_users(r, units)
    calendar = _read_calendar(r)
    return Pack(r.root, settings, units, categories, dispatch, users, calendar, r.errors)


def _read_settings(r: _Reader) -> dict[str, Any]:
    f = "pack.yaml"
    try:
        data = yaml.safe_load((r.root / f).read_text(encoding="utf-8"))
    except FileNotFoundError:
        r.error(f, None, "file is missing")
        return {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        r.error(f, mark.line + 1 if mark else None, f"not valid YAML: {exc}")
        return {}
    if not isinstance(data, dict):
        r.error(f, 1, "must be a mapping of settings")
        return {}
    for key in ("code", "name", "timezone", "city_unit", "service_centre_unit", "tiers"):
        if key not in data:
            r.error(f, None, f"missing setting '{key}'")
    tiers = data.get("tiers") or {}
    if not isinstance(tiers, dict) or not tiers:
        r.error(f, None, "'tiers' must map tier names to phase limits")
        tiers = {}
    for name, limits in tiers.items():
        if not isinstance(limits, dict):
            r.error(f, None, f"tier {name}: must map phases to durations")
            continue
        for phase in PHASES:
            if phase not in limits:
                r.error(f, None, f"tier {name}: missing phase '{phase}'")
        for phase, text in limits.items():
            if phase not in PHASES:
                r.error(f, None, f"tier {name}: unknown phase '{phase}'")
                continue
            try:
                Duration.parse(text)
            except ValueError as exc:
                r.error(f, None, f"tier {name}.{phase}: {exc}")
    default_tier = data.setdefault("default_tier", next(iter(tiers), None))
    if default_tier not in tiers:
        r.error(f, None, f"default_tier '{default_tier}' is not one of the tiers")
    for i, rule in enumerate(data.get("tier_rules") or [], 1):
        if not isinstance(rule, dict) or rule.get("tier") not in tiers:
            r.error(f, None, f"tier_rules #{i}: needs a 'tier' among {', '.join(tiers)}")
        elif set(rule) - {"tier", "category", "request_type", "urgent"}:
            r.error(f, None, f"tier_rules #{i}: unknown keys {sorted(set(rule) - {'tier'})}")
    request_types = data.setdefault(
        "request_types",
        {
            "consult": "咨询",
            "help": "求助",
            "complain": "投诉",
            "report": "举报",
            "suggest": "建议",
            "praise": "表扬",
        },
    )
    if not isinstance(request_types, dict):
        r.error(f, None, "'request_types' must map codes to names")
    else:
        for code in request_types:
            if not CODE.match(str(code)):
                r.error(f, None, f"request type code {code!r} is not a plain code")
    weights = data.setdefault(
        "weights", {"default": {"response": 0.10, "resolution": 0.45, "satisfaction": 0.45}}
    )
    for kind, w in (weights or {}).items():
        if kind != "default" and kind not in UNIT_KINDS:
            r.error(f, None, f"weights: unknown unit kind '{kind}'")
        if not isinstance(w, dict) or set(w) != {"response", "resolution", "satisfaction"}:
            r.error(f, None, f"weights.{kind}: needs response, resolution and satisfaction")
        elif abs(sum(float(v) for v in w.values()) - 1.0) > 1e-9:
            r.error(f, None, f"weights.{kind}: must sum to 1 (they sum to {sum(w.values())})")
    scores = data.setdefault(
        "satisfaction_scores",
        dict(zip(SATISFACTION_LEVELS, (1.0, 1.0, 0.8, 0.0, 0.0), strict=True)),
    )
    if not isinstance(scores, dict) or set(scores) != set(SATISFACTION_LEVELS):
        r.error(f, None, f"satisfaction_scores: needs exactly {', '.join(SATISFACTION_LEVELS)}")
    elif any(not 0 <= float(v) <= 1 for v in scores.values()):
        r.error(f, None, "satisfaction_scores: every score must be between 0 and 1")
    data.setdefault("whistle_report_limit", "30m")
    try:
        Duration.parse(data["whistle_report_limit"])
    except ValueError as exc:
        r.error(f, None, f"whistle_report_limit: {exc}")
    data.setdefault("small_sample", 30)
    return data


def _read_units(r: _Reader, settings: dict[str, Any]) -> list[UnitRow]:
    units_dir = r.root / "units"
    files = sorted(units_dir.glob("*.csv")) if units_dir.is_dir() else []
    if not files:
        r.error("units/", None, "no unit files (units/*.csv)")
        return []
    rows: list[UnitRow] = []
    seen: dict[str, UnitRow] = {}
    for path in files:
        rel = f"units/{path.name}"
        for line, row in r.csv_rows(
            rel, ("code", "name", "kind", "parent"), ("short_name", "function", "aliases")
        ):
            code, name, kind = _cell(row, "code"), _cell(row, "name"), _cell(row, "kind")
            if not code or not name or not kind:
                continue
            if not CODE.match(code):
                r.error(rel, line, f"code {code!r} may hold only letters, digits and _ . -")
                continue
            if kind not in UNIT_KINDS:
                r.error(rel, line, f"unknown kind '{kind}' (one of {', '.join(UNIT_KINDS)})")
                continue
            if code in seen:
                first = seen[code]
                r.error(rel, line, f"duplicate code '{code}' (first at {first.file}:{first.line})")
                continue
            unit = UnitRow(
                line,
                rel,
                code,
                name,
                kind,
                _cell(row, "parent"),
                _cell(row, "short_name"),
                _cell(row, "function"),
                split_list(_cell(row, "aliases")),
            )
            seen[code] = unit
            rows.append(unit)
    for unit in rows:
        if unit.parent is None:
            if unit.kind != "city":
                r.error(unit.file, unit.line, f"unit '{unit.code}' has no parent")
            continue
        parent = seen.get(unit.parent)
        if parent is None:
            r.error(unit.file, unit.line, f"unknown parent '{unit.parent}'")
        elif parent.kind not in PARENT_KINDS[unit.kind]:
            r.error(
                unit.file,
                unit.line,
                f"a {unit.kind} cannot hang under a {parent.kind} ('{parent.code}')",
            )
    for unit in rows:
        trail, node = [unit.code], unit
        while node.parent and node.parent in seen:
            node = seen[node.parent]
            if node.code in trail:
                r.error(
                    unit.file, unit.line, f"cycle in parents: {' -> '.join([*trail, node.code])}"
                )
                break
            trail.append(node.code)
    roots = [u for u in rows if u.kind == "city"]
    if len(roots) != 1:
        r.error("units/", None, f"there must be exactly one unit of kind city, found {len(roots)}")
    wanted: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("city_unit", ("city",)),
        ("service_centre_unit", ("department", "city")),
    )
    for key, kinds in wanted:
        code = settings.get(key)
        if code is not None and (str(code) not in seen or seen[str(code)].kind not in kinds):
            r.error("pack.yaml", None, f"{key} '{code}' is not a {' or '.join(kinds)} in units/")
    if settings.get("discipline_unit") and str(settings["discipline_unit"]) not in seen:
        r.error("pack.yaml", None, f"discipline_unit '{settings['discipline_unit']}' is unknown")
    return rows


def _read_categories(r: _Reader, settings: dict[str, Any]) -> list[CategoryRow]:
    f = "categories.csv"
    tiers = settings.get("tiers") or {}
    rows: list[CategoryRow] = []
    seen: dict[str, CategoryRow] = {}
    for line, row in r.csv_rows(
        f,
        ("code", "name", "parent"),
        ("tier", "seven_haves", "five_qualities", "keywords"),
    ):
        code, name = _cell(row, "code"), _cell(row, "name")
        if not code or not name:
            continue
        if code in seen:
            r.error(f, line, f"duplicate code '{code}' (first at line {seen[code].line})")
            continue
        tier = _cell(row, "tier")
        if tier is not None and tier not in tiers:
            r.error(f, line, f"bad tier '{tier}' (one of {', '.join(tiers)})")
        haves, qualities = (
            split_list(_cell(row, "seven_haves")),
            split_list(_cell(row, "five_qualities")),
        )
        for tag in haves:
            if tag not in SEVEN_HAVES:
                r.error(f, line, f"unknown 七有 tag '{tag}'")
        for tag in qualities:
            if tag not in FIVE_QUALITIES:
                r.error(f, line, f"unknown 五性 tag '{tag}'")
        cat = CategoryRow(
            line, code, name, _cell(row, "parent"), tier, haves, qualities,
            split_list(_cell(row, "keywords")),
        )  # fmt: skip
        seen[code] = cat
        rows.append(cat)
    for cat in rows:
        if cat.parent is not None and cat.parent not in seen:
            r.error(f, cat.line, f"unknown parent '{cat.parent}'")
            continue
        depth, node, trail = 1, cat, [cat.code]
        while node.parent and node.parent in seen:
            node = seen[node.parent]
            if node.code in trail:
                r.error(f, cat.line, f"cycle in parents: {' -> '.join([*trail, node.code])}")
                break
            trail.append(node.code)
            depth += 1
        if depth > MAX_CATEGORY_LEVEL:
            r.error(f, cat.line, f"category '{cat.code}' is at level {depth}; at most 3 levels")
    return rows


def _read_dispatch(
    r: _Reader, units: list[UnitRow], categories: list[CategoryRow]
) -> list[DispatchRow]:
    f = "dispatch_catalogue.csv"
    by_code = {u.code: u for u in units}
    functions = {u.function for u in units if u.function}
    cats = {c.code: c for c in categories}
    rows: list[DispatchRow] = []
    seen: dict[tuple[str, str | None], int] = {}
    for line, row in r.csv_rows(f, ("category", "route"), ("function", "unit", "district", "note")):
        category, route = _cell(row, "category"), _cell(row, "route")
        if not category or not route:
            continue
        d = DispatchRow(
            line, category, route, _cell(row, "function"), _cell(row, "unit"),
            _cell(row, "district"), _cell(row, "note"),
        )  # fmt: skip
        if category not in cats:
            r.error(f, line, f"unknown category '{category}'")
        if route not in ROUTES:
            r.error(f, line, f"unknown route '{route}' (one of {', '.join(ROUTES)})")
        elif route == "district_function":
            if not d.function:
                r.error(f, line, "route district_function needs a 'function'")
            elif d.function not in functions:
                r.error(f, line, f"no unit has function '{d.function}'")
        elif route == "unit":
            if not d.unit:
                r.error(f, line, "route unit needs a 'unit'")
            elif d.unit not in by_code:
                r.error(f, line, f"unknown unit '{d.unit}'")
        if d.district is not None and (
            d.district not in by_code or by_code[d.district].kind != "district"
        ):
            r.error(f, line, f"'{d.district}' is not a district in units/")
        key = (category, d.district)
        if key in seen:
            r.error(
                f, line, f"duplicate rule for category '{category}' (first at line {seen[key]})"
            )
        seen[key] = line
        rows.append(d)
    covered = {d.category for d in rows if d.district is None}
    for cat in categories:
        node: CategoryRow | None = cat
        while node is not None and node.code not in covered:
            node = cats.get(node.parent) if node.parent else None
        if node is None and (r.root / f).exists():
            r.error(
                "categories.csv",
                cat.line,
                f"category '{cat.code}' {cat.name} has no dispatch rule (nor has any parent)",
            )
    return rows


def _read_users(r: _Reader, units: list[UnitRow]) -> list[UserRow]:
    f = "users.csv"
    if not (r.root / f).exists():
        return []
    codes = {u.code for u in units}
    rows: list[UserRow] = []
    seen: dict[str, int] = {}
    for line, row in r.csv_rows(f, ("username", "name", "role", "unit"), ("password",)):
        username, name = _cell(row, "username"), _cell(row, "name")
        role, unit = _cell(row, "role"), _cell(row, "unit")
        if not username or not name or not role or not unit:
            continue
        if username in seen:
            r.error(f, line, f"duplicate username '{username}' (first at line {seen[username]})")
            continue
        seen[username] = line
        if role not in ROLES:
            r.error(f, line, f"unknown role '{role}' (one of {', '.join(ROLES)})")
        if unit not in codes:
            r.error(f, line, f"unknown unit '{unit}'")
        rows.append(UserRow(line, username, name, role, unit, _cell(row, "password")))
    return rows


def _read_calendar(r: _Reader) -> list[CalendarRow]:
    f = "calendar.csv"
    if not (r.root / f).exists():
        return []
    rows: list[CalendarRow] = []
    seen: dict[date, int] = {}
    for line, row in r.csv_rows(f, ("date", "kind"), ("note",)):
        text, kind = _cell(row, "date"), _cell(row, "kind")
        if not text or not kind:
            continue
        try:
            day = date.fromisoformat(text)
        except ValueError:
            r.error(f, line, f"bad date '{text}' (write YYYY-MM-DD)")
            continue
        if kind not in ("holiday", "workday"):
            r.error(f, line, f"unknown kind '{kind}' (holiday or workday)")
            continue
        if day in seen:
            r.error(f, line, f"duplicate date {day} (first at line {seen[day]})")
            continue
        seen[day] = line
        rows.append(CalendarRow(line, day, kind, _cell(row, "note")))
    return rows
