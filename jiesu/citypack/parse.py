"""Read and validate a city pack folder (docs/citypack.md) into plain values. Pure: no database.

Every problem found is collected as a `PackError` naming the file, the line and the reason, so a
city fixes a pack in one round instead of one error at a time.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from jiesu.notices.templates import check_sms
from jiesu.org.names import duplicate_of, name_problem

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
# places.csv: what a name is (docs/citypack.md) and the units a place may belong to.
PLACE_KINDS = ("alias", "landmark", "road", "community", "estate")
PLACE_UNIT_KINDS = ("district", "street", "community")
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
# Column widths in the database: a longer value is an error here, not a failed load later.
LIMITS = {
    "unit.code": 40, "unit.name": 100, "unit.short_name": 60, "unit.function": 40,
    "unit.alias": 60, "category.code": 20, "category.name": 60, "category.keyword": 30,
    "user.username": 60, "user.name": 60, "user.password": 200, "dispatch.note": 200,
    "calendar.note": 60, "request_type": 20, "place.name": 60, "place.alias": 60,
    "synonym.word": 30,
}  # fmt: skip


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
class PlaceRow:
    line: int
    name: str
    kind: str
    unit: str
    aliases: list[str] = field(default_factory=list)


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
    places: list[PlaceRow] = field(default_factory=list)
    # synonyms.csv: the city's own synonym groups for the knowledge base (first word canonical)
    synonyms: list[list[str]] = field(default_factory=list)

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

    def too_long(self, file: str, line: int, what: str, value: str | None) -> bool:
        if value is not None and len(value) > LIMITS[what]:
            self.error(
                file, line, f"{what} is {len(value)} characters long; at most {LIMITS[what]}"
            )
            return True
        return False

    def any_too_long(self, file: str, line: int, checks: Sequence[tuple[str, str | None]]) -> bool:
        """Checks every value (each over-long one is reported), True if any was."""
        found = [self.too_long(file, line, what, value) for what, value in checks]
        return any(found)

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
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # e.g. a cell beyond the csv module's size limit
                # The failing line was not counted yet.
                self.error(rel, reader.line_num + 1, f"unreadable CSV: {exc}")
                break
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
    places = _read_places(r, units)
    synonyms = _read_synonyms(r)
    return Pack(
        r.root,
        settings,
        units,
        categories,
        dispatch,
        users,
        calendar,
        r.errors,
        places=places,
        synonyms=synonyms,
    )


DEFAULT_REQUEST_TYPES = {
    "consult": "咨询",
    "help": "求助",
    "complain": "投诉",
    "report": "举报",
    "suggest": "建议",
    "praise": "表扬",
}
DEFAULT_WEIGHTS = {"default": {"response": 0.10, "resolution": 0.45, "satisfaction": 0.45}}
DEFAULT_SCORES = dict(zip(SATISFACTION_LEVELS, (1.0, 1.0, 0.8, 0.0, 0.0), strict=True))
SETTINGS_KEYS = {
    "code", "name", "timezone", "city_unit", "service_centre_unit", "discipline_unit", "center",
    "escalation_unit",
    "request_types", "tiers", "default_tier", "tier_rules", "whistle_report_limit", "weights",
    "satisfaction_scores", "small_sample", "intel", "task_force", "warnings", "assessment",
    "notices",
}  # fmt: skip
# The assessment month's cut-off (docs/citypack.md): the day of the next month whose end closes
# the month, and where what arrives later counts (own_month: in its own month's live figures
# only; the published figures stay).
ASSESSMENT_KEYS = ("cutoff_day", "late")
LATE_CHANGES = ("own_month",)
# Early warnings (SPEC §6): the detectors' thresholds (jiesu/analysis/detect.py has the defaults).
WARNING_COUNTS = ("burst_min_count", "repeat_window_days", "repeat_min_orders",
                  "bounce_min_returns", "bounce_min_units", "inaction_min_dispatched")  # fmt: skip
WARNING_RATIOS = ("burst_min_ratio",)
# Intake intelligence (SPEC §8): thresholds from 0 to 1, and the same-event window.
INTEL_SHARES = ("auto_dispatch", "place_confidence", "duplicate_block")
INTEL_COUNTS = ("duplicate_window_days", "duplicate_distance_m")
RULE_KEYS = {"tier", "category", "request_type", "urgent"}


def _yaml_lines(text: str) -> dict[tuple[str, ...], int]:
    """The 1-based line of every mapping key, by its path: ("tiers", "T2h", "accept") -> 12."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value, 1):
                sub = (*path, f"#{i}")
                lines[sub] = item.start_mark.line + 1
                walk(item, sub)

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _whole(value: Any, least: int) -> bool:
    """A whole number (not a YAML boolean) of at least `least`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _read_settings(r: _Reader) -> dict[str, Any]:
    f = "pack.yaml"
    try:
        text = (r.root / f).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        lines = _yaml_lines(text)
    except FileNotFoundError:
        r.error(f, None, "file is missing")
        return {}
    except UnicodeDecodeError as exc:
        r.error(f, None, f"not UTF-8 ({exc.reason})")
        return {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        r.error(f, mark.line + 1 if mark else None, f"not valid YAML: {exc}")
        return {}
    if not isinstance(data, dict):
        r.error(f, 1, "must be a mapping of settings")
        return {}

    def err(path: tuple[str, ...], reason: str) -> None:
        line = None
        for n in range(len(path), 0, -1):  # the deepest part of the path the file has
            if path[:n] in lines:
                line = lines[path[:n]]
                break
        r.error(f, line, reason)

    for key in data:
        if key not in SETTINGS_KEYS:
            err((str(key),), f"unknown setting '{key}'")
    for key in ("code", "name", "timezone", "city_unit", "service_centre_unit", "escalation_unit",
                "tiers"):  # fmt: skip
        if key not in data:
            r.error(f, None, f"missing setting '{key}'")
    zone = data.get("timezone")
    if zone is not None:
        try:
            ZoneInfo(str(zone))
        except (ZoneInfoNotFoundError, ValueError):
            err(("timezone",), f"unknown time zone '{zone}' (e.g. Asia/Shanghai)")

    tiers = data.get("tiers")
    if not isinstance(tiers, dict) or not tiers:
        err(("tiers",), "'tiers' must map tier names to phase limits")
        tiers = data["tiers"] = {}
    for name, limits in list(tiers.items()):
        if not isinstance(limits, dict):
            err(("tiers", str(name)), f"tier {name}: must map phases to durations")
            del tiers[name]
            continue
        for phase in PHASES:
            if phase not in limits:
                err(("tiers", str(name)), f"tier {name}: missing phase '{phase}'")
        for phase, value in limits.items():
            if phase not in PHASES:
                err(("tiers", str(name), str(phase)), f"tier {name}: unknown phase '{phase}'")
                continue
            try:
                Duration.parse(value)
            except ValueError as exc:
                err(("tiers", str(name), str(phase)), f"tier {name}.{phase}: {exc}")
    tier_names = {str(t) for t in tiers}
    default_tier = data.setdefault("default_tier", next(iter(tiers), None))
    if not isinstance(default_tier, str) or default_tier not in tier_names:
        err(("default_tier",), f"default_tier {default_tier!r} is not one of the tiers")
        data["default_tier"] = next(iter(tiers), None)

    request_types = data.setdefault("request_types", dict(DEFAULT_REQUEST_TYPES))
    if not isinstance(request_types, dict) or not request_types:
        err(("request_types",), "'request_types' must map codes to names")
        data["request_types"] = request_types = dict(DEFAULT_REQUEST_TYPES)
    for code, name in request_types.items():
        if not isinstance(code, str) or not CODE.match(code) or len(code) > LIMITS["request_type"]:
            err(("request_types", str(code)), f"request type code {code!r} is not a plain code")
        if not isinstance(name, str) or not name or len(name) > 20:
            err(
                ("request_types", str(code)),
                f"request type {code}: needs a name of 1-20 characters",
            )

    rules = data.setdefault("tier_rules", [])
    if not isinstance(rules, list):
        err(("tier_rules",), "'tier_rules' must be a list of rules")
        data["tier_rules"] = rules = []
    for i, rule in enumerate(rules, 1):
        where = ("tier_rules", f"#{i}")
        if not isinstance(rule, dict):
            err(where, f"tier_rules #{i}: must be a mapping like {{urgent: true, tier: T2h}}")
            continue
        if set(rule) - RULE_KEYS:
            err(where, f"tier_rules #{i}: unknown keys {sorted(map(str, set(rule) - RULE_KEYS))}")
        if not isinstance(rule.get("tier"), str) or rule["tier"] not in tier_names:
            err(where, f"tier_rules #{i}: needs a 'tier' among {', '.join(sorted(tier_names))}")
        if "request_type" in rule and rule["request_type"] not in request_types:
            err(where, f"tier_rules #{i}: unknown request type {rule['request_type']!r}")
        if "urgent" in rule and not isinstance(rule["urgent"], bool):
            err(where, f"tier_rules #{i}: 'urgent' must be true or false")
        if "category" in rule and not isinstance(rule["category"], str):
            # YAML reads 0101 as the octal number 65: a code must be quoted.
            err(where, f'tier_rules #{i}: quote the category code, e.g. category: "0101"')

    weights = data.setdefault("weights", dict(DEFAULT_WEIGHTS))
    if not isinstance(weights, dict) or "default" not in weights:
        err(("weights",), "'weights' must map unit kinds (and 'default') to three weights")
        data["weights"] = weights = dict(DEFAULT_WEIGHTS)
    for kind, w in weights.items():
        where = ("weights", str(kind))
        if kind != "default" and kind not in UNIT_KINDS:
            err(where, f"weights: unknown unit kind '{kind}'")
        if not isinstance(w, dict) or set(w) != {"response", "resolution", "satisfaction"}:
            err(where, f"weights.{kind}: needs response, resolution and satisfaction")
            continue
        values = [_number(v) for v in w.values()]
        if any(v is None or v < 0 for v in values):
            err(where, f"weights.{kind}: weights must be numbers >= 0")
        elif abs(sum(v for v in values if v is not None) - 1.0) > 1e-9:
            err(
                where,
                f"weights.{kind}: must sum to 1 (they sum to {sum(v or 0 for v in values):g})",
            )

    scores = data.setdefault("satisfaction_scores", dict(DEFAULT_SCORES))
    if not isinstance(scores, dict) or set(scores) != set(SATISFACTION_LEVELS):
        err(
            ("satisfaction_scores",),
            f"satisfaction_scores: needs exactly {', '.join(SATISFACTION_LEVELS)}",
        )
    elif any((v := _number(x)) is None or not 0 <= v <= 1 for x in scores.values()):
        err(
            ("satisfaction_scores",),
            "satisfaction_scores: every score must be a number from 0 to 1",
        )

    data.setdefault("whistle_report_limit", "30m")
    try:
        Duration.parse(data["whistle_report_limit"])
    except ValueError as exc:
        err(("whistle_report_limit",), f"whistle_report_limit: {exc}")
    intel = data.get("intel")
    if intel is not None:
        if not isinstance(intel, dict):
            err(("intel",), "intel must be a mapping")
        else:
            for key, value in intel.items():
                if key in INTEL_SHARES:
                    if value is not None and ((v := _number(value)) is None or not 0 <= v <= 1):
                        err(("intel", str(key)), f"intel.{key} must be a number from 0 to 1")
                elif key in INTEL_COUNTS:
                    if not _whole(value, 1):
                        err(("intel", str(key)), f"intel.{key} must be a whole number > 0")
                else:
                    err(("intel", str(key)), f"intel: unknown key '{key}'")
    task_force = data.get("task_force")
    if task_force is not None:
        if not isinstance(task_force, dict):
            err(("task_force",), "task_force must map unit kinds to how many are flagged")
        else:
            for kind, n in task_force.items():
                if kind not in UNIT_KINDS:
                    err(("task_force", str(kind)), f"task_force: unknown unit kind '{kind}'")
                elif not _whole(n, 0):
                    err(("task_force", str(kind)), f"task_force.{kind} must be a whole number >= 0")
    warnings = data.get("warnings")
    if warnings is not None:
        if not isinstance(warnings, dict):
            err(("warnings",), "warnings must be a mapping")
        else:
            for key, value in warnings.items():
                if key in WARNING_COUNTS:
                    if not _whole(value, 1):
                        err(("warnings", str(key)), f"warnings.{key} must be a whole number > 0")
                elif key in WARNING_RATIOS:
                    if (v := _number(value)) is None or v < 1:
                        err(("warnings", str(key)), f"warnings.{key} must be a number >= 1")
                else:
                    err(("warnings", str(key)), f"warnings: unknown key '{key}'")
    assessment = data.get("assessment")
    if assessment is not None:
        if not isinstance(assessment, dict):
            err(("assessment",), "assessment must be a mapping like {cutoff_day: 5}")
        else:
            for key, value in assessment.items():
                if key == "cutoff_day":
                    if not _whole(value, 1) or value > 28:
                        err(("assessment", "cutoff_day"),
                            "assessment.cutoff_day must be a whole number from 1 to 28")  # fmt: skip
                elif key == "late":
                    if value not in LATE_CHANGES:
                        err(("assessment", "late"),
                            f"assessment.late must be one of {', '.join(LATE_CHANGES)}")  # fmt: skip
                else:
                    err(("assessment", str(key)), f"assessment: unknown key '{key}'")
    notices = data.get("notices")
    if notices is not None:
        # SMS templates per notice kind (docs/notices.md): placeholders and lengths checked now.
        if not isinstance(notices, dict):
            err(("notices",), "notices must be a mapping like {sms: {...}}")
        else:
            for key in notices:
                if key != "sms":
                    err(("notices", str(key)), f"notices: unknown key '{key}'")
            if "sms" in notices:
                for path, reason in check_sms(notices["sms"]):
                    err(("notices", "sms", *path), reason)
    small = data.setdefault("small_sample", 30)
    if not _whole(small, 0):
        err(("small_sample",), "small_sample must be a whole number >= 0")
    for key in ("code", "name", "city_unit", "service_centre_unit", "discipline_unit",
                "escalation_unit"):  # fmt: skip
        if key in data and not isinstance(data[key], str | int):
            err((key,), f"'{key}' must be a single value")
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
            aliases = split_list(_cell(row, "aliases"))
            checks = [("unit.code", code), ("unit.name", name), ("unit.short_name", _cell(row, "short_name")),
                      ("unit.function", _cell(row, "function"))] + [("unit.alias", a) for a in aliases]  # fmt: skip
            if r.any_too_long(rel, line, checks):
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
                aliases,
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
    centre = seen.get(str(settings.get("service_centre_unit")))
    centres = [u.code for u in rows if u.function == "service_centre"]
    if centre is not None and centres != [centre.code]:
        r.error(
            centre.file,
            centre.line,
            f"the service centre '{centre.code}' (pack.yaml service_centre_unit) must be the one "
            f"unit with function service_centre; units with it: {', '.join(centres) or 'none'}",
        )
    if settings.get("discipline_unit") and str(settings["discipline_unit"]) not in seen:
        r.error("pack.yaml", None, f"discipline_unit '{settings['discipline_unit']}' is unknown")
    top = settings.get("escalation_unit")
    if top is not None:
        # Where an order goes when the level above its lead is the city itself (a city
        # department's, company's or district's order escalated, or reopened beyond its rounds).
        above = seen.get(str(top))
        city = str(settings.get("city_unit"))
        if above is None or above.kind != "department" or above.parent != city:
            r.error("pack.yaml", None, f"escalation_unit '{top}' is not a department directly "
                    f"under the city unit '{city}' in units/")  # fmt: skip
        elif above.function == "service_centre":
            r.error("pack.yaml", None, f"escalation_unit '{top}' is the service centre, which "
                    "does not handle orders")  # fmt: skip
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
        keywords = split_list(_cell(row, "keywords"))
        checks = [("category.code", code), ("category.name", name)]
        checks += [("category.keyword", k) for k in keywords]
        if r.any_too_long(f, line, checks):
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
        cat = CategoryRow(line, code, name, _cell(row, "parent"), tier, haves, qualities, keywords)
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
        r.too_long(f, line, "dispatch.note", d.note)
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
    names: list[tuple[str, str]] = []
    for line, row in r.csv_rows(f, ("username", "name", "role", "unit"), ("password",)):
        username, name = _cell(row, "username"), _cell(row, "name")
        role, unit = _cell(row, "role"), _cell(row, "unit")
        if not username or not name or not role or not unit:
            continue
        if username in seen:
            r.error(f, line, f"duplicate username '{username}' (first at line {seen[username]})")
            continue
        seen[username] = line
        password = _cell(row, "password")
        checks = [("user.username", username), ("user.name", name), ("user.password", password)]
        if r.any_too_long(f, line, checks):
            continue
        problem = name_problem(name)
        if problem:
            r.error(f, line, f"name: {problem}")
        elif (same := duplicate_of(name, names)) is not None:
            r.error(f, line, f"name '{name}' is the same as the name of {same} (names must differ)")
        names.append((f"'{username}' at line {line}", name))
        if role not in ROLES:
            r.error(f, line, f"unknown role '{role}' (one of {', '.join(ROLES)})")
        if unit not in codes:
            r.error(f, line, f"unknown unit '{unit}'")
        rows.append(UserRow(line, username, name, role, unit, password))
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
        if r.too_long(f, line, "calendar.note", _cell(row, "note")):
            continue
        seen[day] = line
        rows.append(CalendarRow(line, day, kind, _cell(row, "note")))
    return rows


def _read_places(r: _Reader, units: list[UnitRow]) -> list[PlaceRow]:
    """places.csv: the address gazetteer's names beyond the official divisions. The same name
    may stand for places in two units (a real ambiguity the resolver ranks); the same name
    twice for one unit is a mistake."""
    f = "places.csv"
    if not (r.root / f).exists():
        return []
    by_code = {u.code: u for u in units}
    rows: list[PlaceRow] = []
    seen: dict[tuple[str, str], int] = {}
    for line, row in r.csv_rows(f, ("name", "kind", "unit"), ("aliases",)):
        name, kind, unit = _cell(row, "name"), _cell(row, "kind"), _cell(row, "unit")
        if not name or not kind or not unit:
            continue
        aliases = split_list(_cell(row, "aliases"))
        checks = [("place.name", name)] + [("place.alias", a) for a in aliases]
        if r.any_too_long(f, line, checks):
            continue
        if kind not in PLACE_KINDS:
            r.error(f, line, f"unknown kind '{kind}' (one of {', '.join(PLACE_KINDS)})")
            continue
        target = by_code.get(unit)
        if target is None:
            r.error(f, line, f"unknown unit '{unit}'")
            continue
        if target.kind not in PLACE_UNIT_KINDS:
            r.error(f, line, f"unit '{unit}' is a {target.kind}; a place belongs to a "
                             f"{', '.join(PLACE_UNIT_KINDS)}")  # fmt: skip
            continue
        duplicate = False
        for n in (name, *aliases):
            if (n, unit) in seen:
                r.error(f, line, f"duplicate name '{n}' for unit '{unit}' (first at line "
                                 f"{seen[(n, unit)]})")  # fmt: skip
                duplicate = True
        if duplicate:
            continue
        for n in (name, *aliases):
            seen[(n, unit)] = line
        rows.append(PlaceRow(line, name, kind, unit, aliases))
    return rows


def _read_synonyms(r: _Reader) -> list[list[str]]:
    """synonyms.csv (optional): one group of words a caller uses for the same thing a line,
    `|`-separated, the canonical (formal) word first; a word in two groups is a mistake."""
    f = "synonyms.csv"
    if not (r.root / f).exists():
        return []
    groups: list[list[str]] = []
    seen: dict[str, int] = {}
    for line, row in r.csv_rows(f, ("words",), ("note",)):
        words = split_list(_cell(row, "words"))
        if not words:
            continue
        if r.any_too_long(f, line, [("synonym.word", w) for w in words]):
            continue
        if len(set(words)) < 2:
            r.error(f, line, "a group needs at least two different words")
            continue
        again = [w for w in words if w in seen]
        if again:
            r.error(f, line, f"'{again[0]}' is already in the group at line {seen[again[0]]}")
            continue
        for w in words:
            seen[w] = line
        groups.append(list(dict.fromkeys(words)))
    return groups
