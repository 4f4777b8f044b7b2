"""Open311 GeoReport v2 shapes (pure: no database, no web): formats, dates, statuses, errors,
the scrubbing of personal data, and the one renderer that writes the same content as JSON or as
XML (`xml.etree`, UTF-8 with its declaration, the specification's element names).

The specification: http://wiki.open311.org/GeoReport_v2 (and Service_Discovery); the updates:
mySociety's "Open311 FMS - Complete Spec" (`servicerequestupdates`, extended states).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

FORMATS = {"json": "application/json", "xml": "text/xml"}
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
UPDATES_SPECIFICATION = "https://github.com/mysociety/fixmystreet/wiki/Open311-FMS---Complete-Spec"

DEFAULT_WINDOW = timedelta(days=90)  # "the range defaults to most recent 90 days"
MAX_SPAN = timedelta(days=90)  # "may not span more than 90 days"
MAX_RESULTS = 1000  # "default 1,000 results"

# jiesu's states seen from outside. GeoReport has two (open, closed): an order is closed once it
# carries its final public answer (an audited reply, a direct answer, a transfer, a refusal, a
# merge) and open again if reopened.
CLOSED_STATES = frozenset(
    {"audited", "evaluated", "closed", "answered", "transferred", "rejected", "merged"}
)
# mySociety's extended states for the updates (FMS "Additional states").
EXTENDED_STATES = {
    "received": "open",
    "pending_dispatch": "open",
    "dispatched": "in_progress",
    "accepted": "in_progress",
    "replied": "in_progress",
    "audited": "closed",
    "evaluated": "closed",
    "closed": "closed",
    "answered": "closed",
    "transferred": "internal_referral",
    "rejected": "not_councils_responsibility",
    "merged": "duplicate",
}


class Open311Error(Exception):
    """An answer in the specification's error format: `[{"code": 400, "description": …}]`."""

    def __init__(self, code: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after


def public_status(state: str) -> str:
    return "closed" if state in CLOSED_STATES else "open"


def extended_status(state: str) -> str:
    return EXTENDED_STATES.get(state, "open")


def split_format(name: str) -> tuple[str, str]:
    """`requests.json` → ("requests", "json"); no or an unknown suffix: 400 (404 would say the
    resource is missing, when only its format is)."""
    stem, dot, fmt = name.rpartition(".")
    if not dot or not stem:
        raise Open311Error(
            400, "缺少格式后缀（.json 或 .xml）/ format suffix missing: use .json or .xml"
        )
    if fmt not in FORMATS:
        raise Open311Error(400, f"不支持的格式 {fmt[:10]}，请用 .json 或 .xml / unsupported format")
    return stem, fmt


def comma_list(raw: str | None, *, most: int = 100) -> list[str]:
    items = [x.strip() for x in (raw or "").split(",") if x.strip()]
    if len(items) > most:
        raise Open311Error(400, f"列表最多 {most} 项 / at most {most} values in a comma list")
    return list(dict.fromkeys(items))


def parse_datetime(raw: str | None, field: str, *, tz: tzinfo) -> datetime | None:
    """A W3C (ISO 8601) datetime; without an offset it is read as the city's time."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise Open311Error(
            400,
            f"{field} 不是有效的 ISO 8601 时间（如 2026-11-05T08:00:00+08:00）/ "
            f"{field} is not a W3C datetime",
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value


def w3c(value: datetime | None, tz: tzinfo) -> str | None:
    """A stored UTC instant as the specification writes it, in the city's offset."""
    if value is None:
        return None
    return value.astimezone(tz).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def window(start: datetime | None, end: datetime | None, *, now: datetime) -> Window:
    """`start_date`/`end_date` with the specification's defaults: the most recent 90 days, and
    never a span over 90 days (400)."""
    if start is not None and end is not None:
        if end < start:
            raise Open311Error(400, "end_date 早于 start_date / end_date is before start_date")
        if end - start > MAX_SPAN:
            raise Open311Error(
                400,
                "start_date 与 end_date 之间不能超过 90 天 / the range may not span more "
                "than 90 days",
            )
        return Window(start, end)
    if start is not None:
        return Window(start, min(now, start + DEFAULT_WINDOW) if start < now else start)
    if end is not None:
        return Window(end - DEFAULT_WINDOW, end)
    return Window(now - DEFAULT_WINDOW, now)


def positive(raw: str | None, field: str, *, default: int, most: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    if not raw.strip().isdigit() or not 1 <= int(raw.strip()) <= most:
        raise Open311Error(400, f"{field} 须为 1–{most} 的整数 / {field} must be 1..{most}")
    return int(raw.strip())


# ---- personal data ----------------------------------------------------------------------------

# Mobile numbers, landlines with an area code, resident ID numbers: never in an answer, whatever
# text they hide in (a reply that names the caller's number, a title cut from the content).
_PHONE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)0\d{2,3}[- ]?\d{7,8}(?!\d)")
_ID_NUMBER = re.compile(r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def scrub(text: str | None, *, names: tuple[str, ...] = ()) -> str | None:
    """The text without phone numbers, ID numbers, e-mail addresses and the given names."""
    if text is None:
        return None
    text = _EMAIL.sub("***", text)
    text = _ID_NUMBER.sub("***", text)
    text = _PHONE.sub("***", text)
    text = _LANDLINE.sub("***", text)
    for name in names:
        if name and len(name) >= 2:
            text = text.replace(name, name[0] + "*" * (len(name) - 1))
    return text


# ---- rendering -----------------------------------------------------------------------------

# The element a list's items get in XML (the JSON is the same content with plain arrays).
ITEM_TAGS = {
    "endpoints": "endpoint",
    "formats": "format",
    "attributes": "attribute",
    "values": "value",
    "services": "service",
    "service_requests": "request",
    "service_request_updates": "request_update",
    "errors": "error",
}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fill(element: ET.Element, key: str, value: Any) -> None:
    child = ET.SubElement(element, key)
    if isinstance(value, dict):
        for k, v in value.items():
            _fill(child, k, v)
    elif isinstance(value, list):
        tag = ITEM_TAGS.get(key, "item")
        for item in value:
            if isinstance(item, dict):
                _items(child, tag, item)
            else:
                _fill(child, tag, item)
    else:
        child.text = _text(value)


def _items(parent: ET.Element, tag: str, item: dict[str, Any]) -> None:
    element = ET.SubElement(parent, tag)
    for k, v in item.items():
        _fill(element, k, v)


XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def to_xml(root: str, content: dict[str, Any] | list[dict[str, Any]]) -> bytes:
    """`<root>` holding a list's items (each under the root's item tag) or an object's fields."""
    element = ET.Element(root)
    if isinstance(content, list):
        tag = ITEM_TAGS[root]
        for item in content:
            _items(element, tag, item)
    else:
        for k, v in content.items():
            _fill(element, k, v)
    return XML_DECLARATION + ET.tostring(element, encoding="unicode").encode("utf-8")


def errors_content(code: int, description: str) -> list[dict[str, Any]]:
    return [{"code": code, "description": description}]
