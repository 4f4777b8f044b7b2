"""Server-rendered pages: one Jinja2 environment, the interface's Chinese labels, display filters.

Autoescaping is on for every template: any text a user typed is escaped wherever it is shown
(a test plants `<script>` in every field). Labels for codes (channels, roles, unit kinds, states,
phases) live here, in one catalogue, so that no page shows a raw code.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from jiesu import __version__
from jiesu.access.permissions import allows
from jiesu.org.models import ROLE_NAMES
from jiesu.settings import city_tz
from jiesu.tickets.lifecycle import SATISFACTION, STATES
from jiesu.timelimits.deadlines import PHASE_NAMES
from jiesu.web.labels import (
    ASSIGNMENT_ROLE_NAMES,
    AUDIT_ACTIONS,
    CHANNEL_NAMES,
    CHOICE_LABELS,
    END_REASONS,
    REQUEST_TYPE_NAMES,
    UNIT_KIND_NAMES,
)

PACKAGE = Path(__file__).resolve().parent.parent


def zh(message: str | None) -> str:
    """The Chinese half of a bilingual "中文 / English" message (what the interface shows)."""
    if not message:
        return ""
    return message.split(" / ", 1)[0]


def local(t: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if t is None:
        return ""
    return t.astimezone(city_tz()).strftime(fmt)


def short_time(t: datetime | None) -> str:
    """Today: 14:05; this year: 11-21 14:05; else the full date."""
    if t is None:
        return ""
    here, now = t.astimezone(city_tz()), datetime.now(city_tz())
    if here.date() == now.date():
        return here.strftime("%H:%M")
    if here.year == now.year:
        return here.strftime("%m-%d %H:%M")
    return here.strftime("%Y-%m-%d %H:%M")


WEEKDAYS = "一二三四五六日"


def due_text(t: datetime | None, full: bool = False) -> str:
    """When a deadline ends, as people count it. A due at 00:00 exactly is the end of the day
    before: 12月15日（周二）24:00, never 12月16日 00:00 (a 7-working-day limit ends with its
    seventh working day). Compact (lists): 今日 18:00 / 明日 24:00 / 12月15日（周二）24:00, the
    year only when it is not this year; `full` (the ticket page) always names the year."""
    if t is None:
        return "—"
    here = t.astimezone(city_tz())
    day, clock = here.date(), here.strftime("%H:%M")
    if here.time() == time():
        day, clock = day - timedelta(days=1), "24:00"
    today = datetime.now(city_tz()).date()
    if not full and day == today:
        return f"今日 {clock}"
    if not full and day == today + timedelta(days=1):
        return f"明日 {clock}"
    date = f"{day.month}月{day.day}日（周{WEEKDAYS[day.weekday()]}）"
    if full or day.year != today.year:
        date = f"{day.year}年{date}"
    return f"{date}{clock}"


def remaining(seconds: float | None) -> str:
    """A readable countdown: 剩 2天3小时 / 剩 45分钟 / 超期 1天2小时."""
    if seconds is None:
        return ""
    late = seconds < 0
    s = int(abs(seconds))
    days, hours, minutes = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if days:
        text = f"{days}天{hours}小时"
    elif hours:
        text = f"{hours}小时{minutes}分"
    else:
        text = f"{max(minutes, 1)}分钟"
    return ("超期 " if late else "剩 ") + text


DURATION_UNITS = {"m": "分钟", "h": "小时", "wh": "个工作小时", "d": "天", "wd": "个工作日"}


def duration_text(value: object) -> str:
    """2wh → 2个工作小时, 7wd → 7个工作日, 24h → 24小时 (a limit as people say it)."""
    text = str(value or "")
    digits = "".join(ch for ch in text if ch.isdigit())
    unit = text[len(digits) :]
    return f"{digits}{DURATION_UNITS[unit]}" if digits and unit in DURATION_UNITS else text


def tier_text(tier: str | None) -> str:
    """T7d → 7日件, T2h → 2小时件 (the handling tier as the hotline names it)."""
    if not tier:
        return "—"
    body = tier.removeprefix("T")
    digits = "".join(ch for ch in body if ch.isdigit())
    unit = {"h": "小时件", "d": "日件", "wd": "个工作日件"}.get(body[len(digits) :])
    return f"{digits}{unit}" if digits and unit else tier


def period_text(period: str) -> str:
    """A report's period as people write it: 2026-W45 → 2026年第45周 (days and months as they are;
    `reports.build.canonical_period` reads it back)."""
    year, sep, week = period.partition("-W")
    return f"{year}年第{int(week)}周" if sep and week.isdigit() else period


def urgency_class(progress: float | None, overdue: bool = False) -> str:
    """Colour by how much of the limit is used: green, amber, red (80% warns), dark red."""
    if overdue:
        return "dl-over"
    if progress is None:
        return "dl-none"
    if progress >= 0.8:
        return "dl-warn"
    if progress >= 0.5:
        return "dl-mid"
    return "dl-ok"


def _env() -> Environment:
    loader = ChoiceLoader(
        [
            FileSystemLoader(PACKAGE / "web" / "templates"),
            FileSystemLoader(PACKAGE / "console" / "templates"),
            FileSystemLoader(PACKAGE / "portal" / "templates"),
        ]
    )
    env = Environment(loader=loader, autoescape=select_autoescape(default=True), auto_reload=False)
    env.filters.update(
        local=local,
        short_time=short_time,
        remaining=remaining,
        due=due_text,
        zh=zh,
        urgency=urgency_class,
        duration=duration_text,
        tier_name=tier_text,
        period_text=period_text,
        status_name=lambda s: STATES.get(s, s),
        channel_name=lambda c: CHANNEL_NAMES.get(c, c),
        role_name=lambda r: ROLE_NAMES.get(r, r),
        kind_name=lambda k: UNIT_KIND_NAMES.get(k, k),
        phase_name=lambda p: PHASE_NAMES.get(p, p),
        type_name=lambda t: REQUEST_TYPE_NAMES.get(t, t or ""),
        assignment_role=lambda r: ASSIGNMENT_ROLE_NAMES.get(r, r),
        end_reason=lambda r: END_REASONS.get(r, r or ""),
        audit_action=lambda a: AUDIT_ACTIONS.get(a, a),
    )
    env.globals.update(
        version=__version__,
        STATES=STATES,
        CHANNEL_NAMES=CHANNEL_NAMES,
        ROLE_NAMES=ROLE_NAMES,
        UNIT_KIND_NAMES=UNIT_KIND_NAMES,
        REQUEST_TYPE_NAMES=REQUEST_TYPE_NAMES,
        CHOICE_LABELS=CHOICE_LABELS,
        SATISFACTION=SATISFACTION,
        allows=allows,  # a link only for the roles whose permission opens its page
    )
    return env


templates = Jinja2Templates(env=_env())


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render a page; a first visit also gets its double-submit CSRF cookie here."""
    from jiesu.web.deps import CSRF_COOKIE, csrf_token

    ctx = {"request": request, "csrf_token": csrf_token(request), **(context or {})}
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    new = getattr(request.state, "new_csrf", None)
    if new:
        response.set_cookie(
            CSRF_COOKIE, new, httponly=True, samesite="strict", secure=secure_cookies(request)
        )
    return response


def secure_cookies(request: Request) -> bool:
    """Secure cookies over HTTPS: the request's own scheme, which uvicorn sets from
    `X-Forwarded-Proto` only when a proxy named in JIESU_TRUSTED_PROXIES sent it."""
    import os

    setting = os.environ.get("JIESU_COOKIE_SECURE", "auto")
    if setting in ("1", "true", "yes"):
        return True
    if setting in ("0", "false", "no"):
        return False
    return request.url.scheme == "https"
