"""The import mapping (docs/import.md): a YAML file → per-row conversion. Pure.

A mapping names, for each jiesu field, where its value comes from in the file (`column`, a
`template` over columns, or a constant `value`), a `map` of the file's words to jiesu's codes and
a `default` for blanks. `convert` turns one raw row into a `Row` of jiesu values (units,
categories and districts resolved through a `Lookup` the caller fills from the database) or a list
of (column, reason) errors: every field is checked, every error kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

# The glossary's channels and the statuses an imported order may end in.
CHANNELS = ("phone", "web", "app", "wechat", "sms", "email", "open311", "collection_point",
            "window", "import")  # fmt: skip
STATUSES = ("closed", "answered", "transferred", "rejected", "received", "dispatched",
            "accepted", "replied", "audited", "evaluated")  # fmt: skip
RESULTS = ("solved", "partly_solved", "not_solvable")
LEVELS = ("very_satisfied", "satisfied", "basically_satisfied", "dissatisfied",
          "very_dissatisfied")  # fmt: skip
TRANSFER_TO = ("110", "119", "120", "122")
REJECT_REASONS = ("litigation", "arbitration", "discipline", "disclosure", "petition",
                  "public_order")  # fmt: skip

# Every field a mapping may name, with what it holds.
FIELDS: dict[str, str] = {
    "external_id": "text",  # the row's id in the old system (else a hash of `identity`)
    "number": "text",  # 工单编号 (else generated for the order's own day)
    "title": "text",
    "content": "text",
    "created_at": "datetime",  # 受理时间 (a date alone: 00:00 city time)
    "request_type": "request_type",
    "channel": "channel",
    "category": "category",  # by code or name
    "district": "district",  # by name, short name, alias or code
    "street": "street",
    "address": "text",
    "requester_name": "text",
    "requester_phone": "text",
    "lead": "unit",  # the unit that handled it (else the dispatch catalogue, street, district)
    "status": "status",
    "reply": "text",  # 答复内容 (the reply of the last round, or the direct answer)
    "replied_at": "datetime",
    "closed_at": "datetime",
    "result": "result",
    "satisfaction": "satisfaction",
    "solved": "bool",
    "reopens": "int",  # 重办 rounds after the first (e.g. a re-dispatch count)
    "transfer_to": "transfer_to",
    "reject_reason": "reject_reason",
}
REQUIRED = ("title", "content", "created_at", "district")
# The values the timeline is made from (events are append-only: a later change is reported,
# never written); the others are the order's descriptive columns, updated by a re-run.
TIMELINE = ("number", "created_at", "category", "lead", "status", "reply", "replied_at",
            "closed_at", "result", "satisfaction", "solved", "reopens", "transfer_to",
            "reject_reason")  # fmt: skip
DESCRIPTIVE = ("title", "content", "request_type", "channel", "district", "street", "address",
               "requester_name", "requester_phone")  # fmt: skip
LIMITS = {"title": 200, "address": 300, "requester_name": 60, "requester_phone": 20,
          "number": 16, "external_id": 100}  # fmt: skip
TRUE_WORDS = {"1", "true", "yes", "y", "是", "已解决", "解决", "对"}
FALSE_WORDS = {"0", "false", "no", "n", "否", "未解决", "不"}


class MappingError(ValueError):
    """The mapping file itself is wrong (a key, a field, a map value): nothing is read."""


@dataclass(frozen=True)
class FieldSpec:
    name: str
    column: str | None = None
    template: str | None = None
    value: Any = None
    map: Mapping[str, Any] = field(default_factory=dict)
    default: Any = None

    @property
    def columns(self) -> list[str]:
        if self.column:
            return [self.column]
        if self.template:
            return re.findall(r"\{([^{}]+)\}", self.template)
        return []


@dataclass(frozen=True)
class Mapping_:
    source: str
    fields: dict[str, FieldSpec]
    identity: tuple[str, ...]  # columns hashed into the external id when no id column
    sheet: str | int | None = None
    encoding: str | None = None

    def columns(self) -> set[str]:
        out = set(self.identity)
        for spec in self.fields.values():
            out.update(spec.columns)
        return out


def load_mapping(path: Path) -> Mapping_:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(f"映射文件无法读取 / cannot read the mapping: {exc}") from exc
    return parse_mapping(raw)


def parse_mapping(raw: Any) -> Mapping_:
    if not isinstance(raw, dict):
        raise MappingError("映射文件应为 YAML 字典 / the mapping must be a YAML mapping")
    unknown = set(raw) - {"source", "fields", "identity", "sheet", "encoding"}
    if unknown:
        raise MappingError(f"未知的键 / unknown keys: {', '.join(sorted(unknown))}")
    fields_raw = raw.get("fields") or {}
    if not isinstance(fields_raw, dict):
        raise MappingError("fields 应为字典 / fields must be a mapping")
    specs: dict[str, FieldSpec] = {}
    for name, spec in fields_raw.items():
        if name not in FIELDS:
            raise MappingError(f"未知的字段 {name} / unknown field (known: {', '.join(FIELDS)})")
        if isinstance(spec, str):  # shorthand: the column's name
            spec = {"column": spec}
        if not isinstance(spec, dict):
            raise MappingError(f"字段 {name} 应为列名或字典 / field {name}: a column or a mapping")
        bad = set(spec) - {"column", "template", "value", "map", "default"}
        if bad:
            raise MappingError(f"字段 {name} 的未知键 / unknown keys: {', '.join(sorted(bad))}")
        sources = [k for k in ("column", "template", "value") if spec.get(k) is not None]
        if len(sources) != 1:
            raise MappingError(
                f"字段 {name} 须且只须有 column、template、value 之一 "
                f"/ field {name} needs exactly one of column, template, value"
            )
        value_map = {str(k).strip(): v for k, v in (spec.get("map") or {}).items()}
        specs[name] = FieldSpec(name, spec.get("column"), spec.get("template"), spec.get("value"),
                                value_map, spec.get("default"))  # fmt: skip
    missing = [f for f in REQUIRED if f not in specs]
    if missing:
        raise MappingError(f"映射缺少必填字段 / the mapping lacks: {', '.join(missing)}")
    for name, spec in specs.items():
        kind = FIELDS[name]
        allowed = {"channel": CHANNELS, "status": STATUSES, "result": RESULTS,
                   "satisfaction": LEVELS, "transfer_to": TRANSFER_TO,
                   "reject_reason": REJECT_REASONS}.get(kind)  # fmt: skip
        if allowed:
            for target in [*spec.map.values(), spec.value, spec.default]:
                if target is not None and str(target) not in allowed:
                    raise MappingError(
                        f"字段 {name} 的取值 {target} 不是 {'/'.join(allowed)} 之一 "
                        f"/ field {name}: {target} is not one of them"
                    )
    identity = raw.get("identity") or []
    if not isinstance(identity, list) or not all(isinstance(c, str) for c in identity):
        raise MappingError("identity 应为列名列表 / identity must be a list of columns")
    if "external_id" not in specs and not identity:
        raise MappingError(
            "没有外部编号列时须列出 identity（用于识别同一行的列）"
            " / without an external_id column, name the identity columns"
        )
    return Mapping_(str(raw.get("source") or "import"), specs, tuple(identity),
                    raw.get("sheet"), raw.get("encoding"))  # fmt: skip


# ---- dates ------------------------------------------------------------------------------------

_DATE = re.compile(
    r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[\sT]*(\d{1,2})\s*[:时点]\s*(\d{1,2})(?:\s*[:分]\s*(\d{1,2})(?:\.(\d{1,6}))?\s*秒?)?\s*分?)?"
    r"\s*$"
)
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:[\sT]?(\d{2})(\d{2})(\d{2})?)?$")
_SERIAL = re.compile(r"^\d{1,5}(?:\.\d+)?$")
EXCEL_EPOCH = datetime(1899, 12, 30)  # Excel's day 0 (its 1900 leap-year bug included)


def parse_datetime(value: Any, tz: ZoneInfo) -> datetime:
    """A date or time as Chinese files write it, read as city time, returned in UTC.

    2019-01-02, 2019/1/2, 2019.1.2, 2019年1月2日, 20190102, each with an optional time
    (13:45, 13:45:30, 13时45分, 20190102 134530), ISO 8601, Excel serial days (43467.5), and the
    date/datetime values a spreadsheet reader gives. Raises ValueError with a Chinese reason."""
    if isinstance(value, datetime):
        local = value if value.tzinfo else value.replace(tzinfo=tz)
        return local.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tz).astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _serial(float(value), tz)
    text = str(value).strip()
    if not text:
        raise ValueError("日期为空")
    m = _DATE.match(text) or _COMPACT.match(text)
    if m:
        y, mo, d, h, mi, s = (int(g) if g else 0 for g in m.groups()[:6])
        frac = m.groups()[6] if len(m.groups()) > 6 else None
        micro = int((frac or "0").ljust(6, "0"))
        try:
            return datetime(y, mo, d, h, mi, s, micro, tz).astimezone(UTC)
        except ValueError:
            raise ValueError(f"日期不存在：{text}") from None
    if _SERIAL.match(text):
        return _serial(float(text), tz)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"无法识别的日期：{text}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)).astimezone(UTC)


def _serial(days: float, tz: ZoneInfo) -> datetime:
    if not 1 <= days < 2_958_466:  # 1900-01-01 … 9999-12-31
        raise ValueError(f"Excel 日期序号超出范围：{days}")
    naive = EXCEL_EPOCH + timedelta(days=days)
    naive = naive.replace(microsecond=round(naive.microsecond / 1000) * 1000 % 1_000_000)
    return naive.replace(tzinfo=tz).astimezone(UTC)


# ---- the city's names -------------------------------------------------------------------------


@dataclass
class Lookup:
    """The city's names → ids, filled by the caller from the database (plain dicts)."""

    districts: dict[str, int]  # name, short name, alias, code → district id
    streets: dict[tuple[int, str], int]  # (district id, name/alias/code) → street id
    streets_any: dict[str, list[int]]  # name → street ids (when the district is not known)
    categories: dict[str, int]  # code → id; unambiguous names → id
    ambiguous_categories: set[str]
    units: dict[str, int]  # code, name, short name → handling unit id
    request_types: dict[str, str]  # code and Chinese name → code


@dataclass
class Row:
    """One converted row: jiesu values, ids resolved."""

    line: int
    values: dict[str, Any]
    external_id: str = ""
    row_hash: str = ""
    timeline_hash: str = ""


Error = tuple[int, str, str]  # (line, column, reason)


def _text(v: Any) -> str:
    """A cell as text: numbers without a trailing .0, a spreadsheet's date cell as 2019-01-02
    (with " 13:45:00" when it has a time), so an xlsx and its CSV hash alike."""
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.date().isoformat() if v.time() == time() else v.isoformat(" ")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


class Converter:
    def __init__(self, mapping: Mapping_, lookup: Lookup, tz: ZoneInfo) -> None:
        self.m, self.lookup, self.tz = mapping, lookup, tz
        self.specs = [mapping.fields[name] for name in FIELDS if name in mapping.fields]
        self.seen: dict[str, int] = {}  # identity hash → rows seen (a repeat gets "#2" …)

    def raw_value(self, spec: FieldSpec, raw: Mapping[str, Any]) -> Any:
        if spec.column is not None:
            value = raw.get(spec.column)
        elif spec.template is not None:
            value = spec.template.format_map({c: _text(raw.get(c)) for c in spec.columns})
        else:
            value = spec.value
        if spec.map:
            key = _text(value)
            if key in spec.map:
                value = spec.map[key]
        if _text(value) == "" and spec.default is not None:
            value = spec.default
        return value

    def convert(self, line: int, raw: Mapping[str, Any]) -> tuple[Row | None, list[Error]]:
        errors: list[Error] = []
        values: dict[str, Any] = {}
        for spec in self.specs:
            column = spec.column or spec.template or spec.name
            value = self.raw_value(spec, raw)
            try:
                values[spec.name] = self._field(spec.name, value, values)
            except ValueError as exc:
                errors.append((line, column, str(exc)))
        for name in REQUIRED:
            if values.get(name) in (None, "") and not any(e[1] == self._col(name) for e in errors):
                errors.append((line, self._col(name), "必填，不能为空"))
        if values.get("reopens") is None:
            values["reopens"] = 0
        values.setdefault("channel", "import")
        values.setdefault("status", "closed")
        status = values.get("status")
        if status == "transferred" and not values.get("transfer_to"):
            errors.append(
                (line, self._col("transfer_to"), "转警转急的工单须有转至（110/119/120/122）")
            )
        if status == "rejected" and not values.get("reject_reason"):
            errors.append((line, self._col("reject_reason"), "不予受理的工单须有原因"))
        created = values.get("created_at")
        for later in ("replied_at", "closed_at"):
            at = values.get(later)
            if created and at and at < created:
                errors.append((line, self._col(later), "早于受理时间"))
        if errors:
            return None, errors
        row = Row(line, values)
        row.external_id = self.external_id(values, raw)
        row.row_hash = digest([values.get(k) for k in FIELDS])
        row.timeline_hash = digest([values.get(k) for k in TIMELINE])
        return row, []

    def _col(self, name: str) -> str:
        spec = self.m.fields.get(name)
        return (spec.column or spec.template or name) if spec else name

    def external_id(self, values: Mapping[str, Any], raw: Mapping[str, Any]) -> str:
        if values.get("external_id"):
            return str(values["external_id"])
        key = hashlib.sha256(
            "\x1f".join(_text(raw.get(c)) for c in self.m.identity).encode()
        ).hexdigest()[:32]
        n = self.seen[key] = self.seen.get(key, 0) + 1
        return key if n == 1 else f"{key}#{n}"

    def _field(self, name: str, value: Any, values: Mapping[str, Any]) -> Any:
        kind = FIELDS[name]
        text = _text(value)
        if kind == "datetime":
            return parse_datetime(value, self.tz) if text else None
        if text == "":
            return None
        if kind == "text":
            limit = LIMITS.get(name)
            if limit and len(text) > limit:
                if name == "title":  # a long title is cut, as intake would show it
                    return text[: limit - 1] + "…"
                raise ValueError(f"超过 {limit} 个字符")
            return text
        if kind == "int":
            try:
                n = int(float(text))
            except ValueError:
                raise ValueError(f"不是整数：{text}") from None
            if not 0 <= n <= 50:
                raise ValueError(f"超出范围（0–50）：{n}")
            return n
        if kind == "bool":
            low = text.lower()
            if low in TRUE_WORDS:
                return True
            if low in FALSE_WORDS:
                return False
            raise ValueError(f"无法识别的是否：{text}")
        lookup = self.lookup
        if kind == "request_type":
            code = lookup.request_types.get(text)
            if code is None:
                raise ValueError(f"未知的诉求类型：{text}")
            return code
        if kind in ("channel", "status", "result", "satisfaction", "transfer_to", "reject_reason"):
            allowed = {"channel": CHANNELS, "status": STATUSES, "result": RESULTS,
                       "satisfaction": LEVELS, "transfer_to": TRANSFER_TO,
                       "reject_reason": REJECT_REASONS}[kind]  # fmt: skip
            if text not in allowed:
                raise ValueError(f"未映射的取值：{text}")
            return text
        if kind == "district":
            found = lookup.districts.get(text)
            if found is None:
                raise ValueError(f"未知的区县：{text}")
            return found
        if kind == "street":
            district = values.get("district")
            if district is not None:
                found = lookup.streets.get((district, text))
            else:
                ids = lookup.streets_any.get(text, [])
                found = ids[0] if len(ids) == 1 else None
            if found is None:
                raise ValueError(f"未知的街乡镇：{text}")
            return found
        if kind == "category":
            if text in lookup.ambiguous_categories:
                raise ValueError(f"事项分类名称不唯一，请用编码：{text}")
            found = lookup.categories.get(text)
            if found is None:
                raise ValueError(f"未知的事项分类：{text}")
            return found
        if kind == "unit":
            found = lookup.units.get(text)
            if found is None:
                raise ValueError(f"未知的承办单位：{text}")
            return found
        raise AssertionError(kind)


def digest(values: Sequence[Any]) -> str:
    """SHA-256 of the values in order (times as ISO 8601)."""
    parts = [v.isoformat() if isinstance(v, datetime) else "" if v is None else str(v)
             for v in values]  # fmt: skip
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
