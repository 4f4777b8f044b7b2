"""SMS notices as text (短信模板): the city's templates per notice kind, the signature, the length
rule of Chinese carriers and the sending hours. Pure: no database, no web.

Length rule (docs/notices.md): every character counts one, Chinese or ASCII. A message is the
signature followed by the text. Up to 70 characters it is one segment; longer, it is a long SMS
(长短信) of segments of 67 characters each (the carrier's 3 characters of header), the signature
counted once in the whole. A message never goes beyond the pack's `max_segments`: the reply
text (`{reply}`), the only free text, is cut and ends with "…"; nothing else is ever cut.
"""

from __future__ import annotations

import contextlib
import math
import re
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

SEGMENT = 70  # characters of a one-segment SMS
LONG_SEGMENT = 67  # characters per segment of a long SMS
ELLIPSIS = "…"

# The notice kinds an SMS template may exist for, and the placeholders each may use.
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "receipt": frozenset({"number", "tracking_code", "status"}),  # 受理回执
    "answer": frozenset({"number", "reply", "status"}),  # 直接答复 / 转办 / 不予受理
    "reply": frozenset({"number", "reply", "status"}),  # 办结答复
    "callback_invite": frozenset({"number", "link", "tracking_code"}),  # 回访邀请
    "close": frozenset({"number", "status"}),  # 办结
}
KIND_LABELS = {
    "receipt": "受理回执",
    "answer": "答复",
    "reply": "办结答复",
    "callback_invite": "回访邀请",
    "close": "办结通知",
}
# Values as long as they get, for checking at pack load that a template fits its segments.
WIDEST = {
    "number": "2026112200017",
    "tracking_code": "ABCD-EFGH-JK",
    "status": "待回访评价",
    "link": "https://12345.example.gov.cn/r/" + "x" * 24,
    "reply": "",  # cut to fit
}
DEFAULT_SIGNATURE = "【12345】"
DEFAULT_TEMPLATES = {
    "receipt": "您的诉求已受理，工单号{number}，查询码{tracking_code}，可凭查询码查询办理进度。",
    "answer": "您的诉求（工单{number}）已答复：{reply}",
    "reply": "您的诉求（工单{number}）已办结：{reply}",
    "callback_invite": "请评价工单{number}的办理：回复1满意 2基本满意 3不满意，或点击{link}",
}
DEFAULT_QUIET_HOURS = "21:00-08:00"
DEFAULT_MAX_SEGMENTS = 3
SMS_KEYS = ("signature", "templates", "quiet_hours", "urgent_at_night", "max_segments")
QUIET = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


@dataclass(frozen=True)
class QuietHours:
    """No SMS from `start` to `end`, city time; `start > end` runs across midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """ "21:00-08:00" → QuietHours; "" or None → None (send at any hour)."""
        if text is None or not str(text).strip():
            return None
        m = QUIET.match(str(text))
        if not m:
            raise ValueError(f"bad quiet hours {text!r} (write e.g. 21:00-08:00)")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        return cls(time(h1, m1), time(h2, m2))

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class SmsConfig:
    signature: str = DEFAULT_SIGNATURE
    templates: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    quiet_hours: QuietHours | None = QuietHours(time(21), time(8))
    urgent_at_night: bool = True
    max_segments: int = DEFAULT_MAX_SEGMENTS


@dataclass(frozen=True)
class Rendered:
    text: str  # signature + text, as sent
    segments: int
    cut: bool  # the reply was shortened to fit


def placeholders(template: str) -> list[str]:
    """The placeholder names of a template, in order; ValueError for a malformed one."""
    names = []
    for _literal, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(f"malformed placeholder {{{name}}}")
        names.append(name)
    return names


def segments(length: int) -> int:
    """How many segments a message of `length` characters (signature included) takes."""
    if length <= SEGMENT:
        return 1
    return math.ceil(length / LONG_SEGMENT)


def capacity(max_segments: int) -> int:
    """The most characters (signature included) that fit `max_segments` segments."""
    return SEGMENT if max_segments <= 1 else LONG_SEGMENT * max_segments


def render(template: str, values: dict[str, str], *, signature: str, max_segments: int) -> Rendered:
    """The message for `template` with `values`; the reply is cut with "…" to fit."""
    reply = values.get("reply", "")
    fixed = signature + template.format_map({**values, "reply": ""})
    room = capacity(max_segments) - len(fixed)
    cut = False
    if "{reply}" in template and len(reply) > max(room, 0):
        reply = reply[: max(room - 1, 0)] + ELLIPSIS if room > 0 else ""
        cut = True
    text = signature + template.format_map({**values, "reply": reply})
    return Rendered(text, segments(len(text)), cut)


def check_sms(raw: Any) -> list[tuple[tuple[str, ...], str]]:
    """Problems in the pack's `notices.sms` section as (path under notices.sms, reason)."""
    problems: list[tuple[tuple[str, ...], str]] = []
    if not isinstance(raw, dict):
        return [((), "notices.sms must be a mapping (signature, templates, quiet_hours …)")]
    for key in raw:
        if key not in SMS_KEYS:
            problems.append(((str(key),), f"notices.sms: unknown key '{key}'"))
    signature = raw.get("signature", DEFAULT_SIGNATURE)
    if not isinstance(signature, str) or not re.fullmatch(r"【[^【】]{1,12}】", signature):
        problems.append(
            (
                ("signature",),
                "notices.sms.signature must be 1-12 characters in 【】, e.g. 【北京12345】",
            )
        )
        signature = DEFAULT_SIGNATURE
    most = raw.get("max_segments", DEFAULT_MAX_SEGMENTS)
    if not isinstance(most, int) or isinstance(most, bool) or not 1 <= most <= 10:
        problems.append((("max_segments",), "notices.sms.max_segments must be a whole number 1-10"))
        most = DEFAULT_MAX_SEGMENTS
    if "urgent_at_night" in raw and not isinstance(raw["urgent_at_night"], bool):
        problems.append((("urgent_at_night",), "notices.sms.urgent_at_night must be true or false"))
    if "quiet_hours" in raw:
        try:
            QuietHours.parse(raw["quiet_hours"])
        except ValueError as exc:
            problems.append((("quiet_hours",), f"notices.sms.quiet_hours: {exc}"))
    templates = raw.get("templates", {})
    if not isinstance(templates, dict):
        problems.append((("templates",), "notices.sms.templates must map notice kinds to text"))
        return problems
    for kind, text in templates.items():
        where = ("templates", str(kind))
        if kind not in PLACEHOLDERS:
            problems.append(
                (
                    where,
                    f"notices.sms.templates: unknown notice kind '{kind}' "
                    f"(one of {', '.join(PLACEHOLDERS)})",
                )
            )
            continue
        if not isinstance(text, str) or not text.strip():
            problems.append((where, f"notices.sms.templates.{kind} must be a text"))
            continue
        try:
            names = placeholders(text)
        except ValueError as exc:
            problems.append((where, f"notices.sms.templates.{kind}: {exc}"))
            continue
        unknown = [n for n in names if n not in PLACEHOLDERS[kind]]
        if unknown:
            allowed = ", ".join(f"{{{n}}}" for n in sorted(PLACEHOLDERS[kind]))
            problems.append(
                (
                    where,
                    f"notices.sms.templates.{kind}: unknown placeholder "
                    f"{', '.join(f'{{{n}}}' for n in unknown)} (allowed: {allowed})",
                )
            )
            continue
        widest = len(signature + text.format_map({**WIDEST, "reply": ""}))
        if "{reply}" in text:
            widest += 10  # a reply cut to nothing says nothing: leave it room
        if widest > capacity(most):
            problems.append(
                (
                    where,
                    f"notices.sms.templates.{kind}: {widest} characters with the signature "
                    f"and the longest values; {most} segment(s) hold {capacity(most)}",
                )
            )
    return problems


def sms_config(settings: dict[str, Any]) -> SmsConfig:
    """The SMS settings in force from the pack's settings (defaults for what it leaves out).

    A pack that names its templates sends only those kinds."""
    raw = ((settings or {}).get("notices") or {}).get("sms") or {}
    base = SmsConfig()
    quiet = base.quiet_hours
    if "quiet_hours" in raw:
        # Refused at pack load; keep the default rather than fail a delivery round.
        with contextlib.suppress(ValueError):
            quiet = QuietHours.parse(raw["quiet_hours"])
    templates = raw.get("templates")
    return SmsConfig(
        signature=str(raw.get("signature") or base.signature),
        templates=dict(templates) if isinstance(templates, dict) else dict(base.templates),
        quiet_hours=quiet,
        urgent_at_night=bool(raw.get("urgent_at_night", base.urgent_at_night)),
        max_segments=int(raw.get("max_segments") or base.max_segments),
    )


def next_opening(
    now: datetime, quiet: QuietHours | None, zone: ZoneInfo, *, urgent: bool = False,
    urgent_at_night: bool = True,
) -> datetime | None:  # fmt: skip
    """None when an SMS may go now; else the UTC time the sending hours open again."""
    if quiet is None or (urgent and urgent_at_night):
        return None
    local = now.astimezone(zone)
    if not quiet.contains(local.time()):
        return None
    day = local.date()
    if quiet.start > quiet.end and local.time() >= quiet.start:
        day += timedelta(days=1)  # evening side of a quiet night: opens tomorrow morning
    return datetime.combine(day, quiet.end, tzinfo=zone).astimezone(UTC)
