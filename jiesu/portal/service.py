"""The citizen portal's rules: what a citizen may send, how a ticket is found again, what it shows.

A citizen is anonymous. A request taken in here is created by the pack's `portal` account (an
agent of the service centre with no password), so its timeline has a real author; the citizen
gets the ticket number and a tracking code, shown once. Only the code's SHA-256 is stored.

Finding a ticket needs both the number and the code, and a wrong pair gets one answer whichever
half was wrong. Failures are written to `audit_log` (`track_failed`, with the address) and an
address with too many of them is refused for a while, as sign-in does.

What the progress page shows is chosen here, field by field (`progress_of`): the request as the
citizen wrote it, a plain-language status, and the centre-checked reply. Nothing else of the
timeline — no staff, no units, no internal notes — ever reaches the template.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import math
import os
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from jiesu.access.policy import Principal
from jiesu.auth import counters
from jiesu.auth.limits import Budget, minutes, seconds
from jiesu.auth.models import AuditLog
from jiesu.auth.service import audit, principal_of
from jiesu.citypack.load import PORTAL_USERNAME
from jiesu.db.base import utcnow
from jiesu.db.engine import Database
from jiesu.errors import DomainError, Invalid, NotFound, TooManyRequests
from jiesu.intel.service import advise
from jiesu.org.models import Unit, User
from jiesu.settings import get_settings
from jiesu.taxonomy.models import RequestType
from jiesu.tickets.lifecycle import REJECT_REASONS, REPLY_RESULTS, SATISFACTION, TRANSFER_TO
from jiesu.tickets.models import Attachment, Event, Ticket
from jiesu.tickets.service import create_ticket, number_ticket
from jiesu.tickets.shapes import MAX_CONTENT, TicketCreate, normalise_phone
from jiesu.tickets.tracking import CODE_ALPHABET as CODE_ALPHABET
from jiesu.tickets.tracking import code_hash, new_tracking_code
from jiesu.web.labels import REQUEST_TYPE_NAMES

# ---- limits ----------------------------------------------------------------------------------

CONTENT_MIN, CONTENT_MAX = 10, MAX_CONTENT
TITLE_MAX = 100
ADDRESS_MAX = 300
NAME_MAX = 60
NOTE_MAX = 500
MAX_PHOTOS = 3
MAX_PHOTO_BYTES = 2 * 1024 * 1024  # each
MAX_PHOTO_PIXELS = 50_000_000  # a 2 MB file that decodes to more is not a phone photo
PHOTO_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
PHOTO_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
# What POST /portal/submit may weigh at most: three photos at the limit, the text fields and the
# multipart framing. The app's request-size guard must let this path through up to here.
SUBMIT_BODY_LIMIT = 7 * 1024 * 1024

# The request types a citizen picks from, in this order (the pack must know them).
PORTAL_TYPES = ("consult", "help", "complain", "report", "suggest", "praise")
DEFAULT_TYPE = "complain"

TRACK_FAILURES = 10  # wrong number/code pairs from one address …
TRACK_WINDOW = timedelta(minutes=15)  # … within this window: refused until it passes
# Wrong codes for one ticket number, from whatever addresses: every 5 close the number for
# 15 minutes, twice as long each time after (up to a day). A carrier NAT's citizens share an
# address, not a ticket number, so this holds off guessers without locking out everyone behind
# one address.
NUMBER_BUDGET = Budget(limit=5, window=timedelta(minutes=15), backoff=True)
WRONG_PAIR = "工单编号或查询码不正确"
FAILED_ACTION = "track_failed"
TRACK_NUMBER = "track_number"  # rate_counter scopes
SUBMIT_ADDRESS = "submit_address"
SUBMIT_ALL = "submit_all"


class PortalUnavailable(DomainError):
    status = 503
    code = "unavailable"


# ---- the portal's principal -------------------------------------------------------------------


def portal_principal(*, db_session: Session) -> Principal:
    """The `portal` account in its unit; 503 when the city pack has not been loaded."""
    row = db_session.execute(
        select(User, Unit)
        .join(Unit, Unit.id == User.unit_id)
        .where(User.username == PORTAL_USERNAME, User.active, Unit.active)
    ).first()
    if row is None:
        raise PortalUnavailable(
            "市民服务入口暂不可用：城市数据包尚未加载，请拨打 12345 热线反映 / "
            "the portal account is missing: the city pack is not loaded"
        )
    user, unit = row
    return principal_of(user, unit)


def citizen_principal(portal: Principal) -> Principal:
    """The portal account acting for the citizen who holds the code: only `rate` takes it."""
    return dataclasses.replace(portal, role="citizen")


# ---- tracking codes -----------------------------------------------------------------------------


# Issued and hashed by the ticket package at intake (`tickets/tracking.py`).
_CODE_NOISE = re.compile(r"[\s\-_·]")


def normalise_code(raw: str) -> str:
    """As typed: case, spaces and dashes do not matter (full-width characters are folded)."""
    return _CODE_NOISE.sub("", unicodedata.normalize("NFKC", raw)).upper()[:32]


def normalise_number(raw: str) -> str:
    return re.sub(r"\s", "", unicodedata.normalize("NFKC", raw))[:32]


# ---- the submit form ---------------------------------------------------------------------------


def type_choices(*, db_session: Session) -> list[tuple[str, str]]:
    """The request types to offer: the portal's six, as far as the city pack knows them."""
    active = set(db_session.scalars(select(RequestType.code).where(RequestType.active)))
    return [(code, REQUEST_TYPE_NAMES[code]) for code in PORTAL_TYPES if code in active]


def _coordinate(raw: str, low: float, high: float) -> float | None:
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise Invalid("位置信息无效，请重新定位或填写地址", field="location") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise Invalid("位置信息无效，请重新定位或填写地址", field="location")
    return round(value, 6)


def submission(values: dict[str, str], *, types: list[tuple[str, str]]) -> TicketCreate:
    """The form as a `TicketCreate` for the web channel, or an `Invalid` saying (in Chinese)
    which field to fix. `values` are the form's stripped text fields."""
    codes = {code for code, _ in types}
    request_type = values.get("request_type", "")
    if codes and request_type not in codes:
        raise Invalid("请选择诉求类型", field="request_type")
    content = values.get("content", "")
    if len(content) < CONTENT_MIN:
        raise Invalid(f"请详细描述您的诉求，至少 {CONTENT_MIN} 个字", field="content")
    if len(content) > CONTENT_MAX:
        raise Invalid(f"诉求内容不能超过 {CONTENT_MAX} 字", field="content")
    title = values.get("title", "")
    if len(title) > TITLE_MAX:
        raise Invalid(f"标题不能超过 {TITLE_MAX} 字", field="title")
    address = values.get("address", "")
    if len(address) > ADDRESS_MAX:
        raise Invalid(f"地址不能超过 {ADDRESS_MAX} 字", field="address")
    lat = _coordinate(values.get("lat", ""), -90, 90)
    lng = _coordinate(values.get("lng", ""), -180, 180)
    if (lat is None) != (lng is None):
        raise Invalid("位置信息无效，请重新定位或填写地址", field="location")
    name = values.get("name", "")
    if len(name) > NAME_MAX:
        raise Invalid(f"姓名不能超过 {NAME_MAX} 字", field="name")
    phone = values.get("phone", "")
    if not phone:
        raise Invalid("请填写联系电话，以便承办单位联系您", field="phone")
    try:
        phone = normalise_phone(phone[:30])
    except ValueError:
        raise Invalid("联系电话格式不正确，请填写手机号或带区号的固定电话", field="phone") from None
    if any(_bad_char(v) for v in (content, title, address, name)):
        raise Invalid("内容中含有无法识别的控制字符，请删除后重试", field="content")
    try:
        return TicketCreate.model_validate({
            "channel": "web",
            "content": content,
            "title": title or None,
            "request_type": request_type or None,
            "address": address or None,
            "lat": lat,
            "lng": lng,
            "requester": {"name": name or None, "phone": phone,
                          "confidential": values.get("confidential") == "on"},
        })  # fmt: skip
    except ValidationError as exc:  # the checks above should leave nothing for here
        raise Invalid("填写的内容有误，请检查后重试", field="content") from exc


def _bad_char(text: str) -> bool:
    """Control characters other than line breaks and tabs (a NUL never gets this far)."""
    return any(unicodedata.category(c) == "Cc" and c not in "\r\n\t" for c in text)


# ---- photos ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    filename: str
    content_type: str
    data: bytes
    sha256: str


def photo_from(filename: str | None, data: bytes, index: int) -> Photo:
    """A photo checked by its content (never its name or the browser's type): a real JPEG,
    PNG or WebP of at most 2 MB. Raises `Invalid` in Chinese."""
    label = f"第 {index} 张照片"
    if len(data) > MAX_PHOTO_BYTES:
        raise Invalid(f"{label}超过 2 MB，请压缩后再上传", field="photos")
    if not data:
        raise Invalid(f"{label}是空文件，请重新选择", field="photos")
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = image.format
            width, height = image.size
            image.verify()
    except Exception:  # Pillow raises many kinds on a broken or foreign file: all mean "no"
        raise Invalid(f"{label}不是有效的图片，请上传 JPG、PNG 或 WebP 格式的照片",
                      field="photos") from None  # fmt: skip
    if kind not in PHOTO_FORMATS:
        raise Invalid(f"{label}格式不支持，请上传 JPG、PNG 或 WebP 格式的照片", field="photos")
    if width * height > MAX_PHOTO_PIXELS:
        raise Invalid(f"{label}尺寸过大，请缩小后再上传", field="photos")
    data = without_metadata(data, kind)
    return Photo(
        filename=_safe_filename(filename, index, PHOTO_EXTENSIONS[kind]),
        content_type=PHOTO_FORMATS[kind],
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def without_metadata(data: bytes, kind: str) -> bytes:
    """The picture only: EXIF (GPS position, device, time) and other metadata are dropped by
    re-encoding, so a photo cannot reveal where or who a (perhaps confidential) citizen is.
    The orientation EXIF carried is applied to the pixels first."""
    with Image.open(io.BytesIO(data)) as image:
        upright = ImageOps.exif_transpose(image)
        out = io.BytesIO()
        options: dict[str, Any] = {"quality": 90} if kind in ("JPEG", "WEBP") else {}
        if kind == "JPEG" and upright.mode not in ("RGB", "L"):
            upright = upright.convert("RGB")
        upright.save(out, format=kind, **options)
        return out.getvalue()


def _safe_filename(raw: str | None, index: int, extension: str) -> str:
    """The name as the citizen's device gave it, for display only: no path, no control
    characters, at most 100 characters."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[-100:] or f"照片{index}.{extension}"


def store_photo(photo: Photo, path: Path) -> None:
    """Write the bytes once under their checksum (the same photo twice is stored once)."""
    if path.exists() and path.stat().st_size == len(photo.data):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    partial.write_bytes(photo.data)
    os.replace(partial, path)


# ---- submitting -------------------------------------------------------------------------------


def submit_budgets() -> tuple[Budget, Budget]:
    """Per address and in all, from the deployment's settings (`JIESU_PORTAL_SUBMITS_*`)."""
    settings = get_settings()
    window = timedelta(minutes=settings.portal_submit_window_minutes)
    return (Budget(limit=settings.portal_submits_per_address, window=window),
            Budget(limit=settings.portal_submits_total, window=window))  # fmt: skip


def submit_allowed(
    ip: str | None, *, db: Database, now: datetime | None = None
) -> TooManyRequests | None:
    """Spend one submission of the address's budget, then one of the portal's; the refusal to
    show when either is spent. Each counter is changed in its own short transaction, so
    concurrent submissions never wait on the whole intake's transaction."""
    now = now or utcnow()
    per_address, total = submit_budgets()
    if ip is not None:
        with db.write() as session:
            wait = counters.take(SUBMIT_ADDRESS, ip, per_address, db_session=session, now=now)
        if wait is not None:
            return TooManyRequests(
                f"您提交得太频繁了，请 {minutes(wait)} 分钟后再提交。紧急情况请直接拨打 12345 热线。"
                " / too many submissions from this address", retry_after=seconds(wait),
            )  # fmt: skip
    with db.write() as session:
        wait = counters.take(SUBMIT_ALL, "*", total, db_session=session, now=now)
    if wait is not None:
        return TooManyRequests(
            f"当前提交人数较多，请 {minutes(wait)} 分钟后再提交。紧急情况请直接拨打 12345 热线。"
            " / the portal is busy: too many submissions", retry_after=seconds(wait),
        )  # fmt: skip
    return None


def submit(
    data: TicketCreate,
    photos: list[Photo],
    *,
    db_session: Session,
    photo_path: Callable[[str], Path],
    now: datetime | None = None,
    idempotency_key: str | None = None,
) -> tuple[Ticket, str]:
    """Take the request in as the portal account; the ticket and its tracking code (the only
    time the code exists in clear). `photo_path(sha256)` says where a photo's bytes go."""
    now = now or utcnow()
    actor = portal_principal(db_session=db_session)
    code = new_tracking_code()  # one code per order: intake stores its hash, the 受理回执 tells it
    ticket = create_ticket(data, actor=actor, db_session=db_session, now=now, number_later=True,
                           idempotency_key=idempotency_key, tracking_code=code)  # fmt: skip
    advise(ticket, actor=actor, db_session=db_session, now=now)
    for photo in photos:
        store_photo(photo, photo_path(photo.sha256))
        db_session.add(
            Attachment(
                ticket_id=ticket.id, filename=photo.filename, content_type=photo.content_type,
                size=len(photo.data), sha256=photo.sha256, created_at=now,
            )
        )  # fmt: skip
    db_session.flush()
    number_ticket(ticket, db_session=db_session)  # last: the day's counter row is hot
    return ticket, code


# ---- finding a ticket again ------------------------------------------------------------------


def address_wait(ip: str | None, *, db_session: Session, now: datetime) -> timedelta | None:
    """How long an address with TRACK_FAILURES failed look-ups in the window must wait (None:
    it may look up). The wait ends when the oldest of its last TRACK_FAILURES leaves it."""
    if ip is None:
        return None
    nth = db_session.scalar(
        select(AuditLog.at)
        .where(AuditLog.action == FAILED_ACTION, AuditLog.ip == ip,
               AuditLog.at > now - TRACK_WINDOW)
        .order_by(AuditLog.at.desc())
        .offset(TRACK_FAILURES - 1)
        .limit(1)
    )  # fmt: skip
    return None if nth is None else max(nth + TRACK_WINDOW - now, timedelta(seconds=1))


def find_tracked(
    number: str, code: str, *, ip: str | None, db_session: Session, now: datetime | None = None
) -> tuple[Ticket | None, DomainError | None]:
    """The ticket this number and code open, or the error to show. A failure is recorded in
    `db_session`: the caller commits it even though the answer is an error (like sign-in)."""
    now = now or utcnow()
    wait = address_wait(ip, db_session=db_session, now=now)
    if wait is not None:
        return None, TooManyRequests(
            f"查询失败次数过多，请 {minutes(wait)} 分钟后再试 / too many failed look-ups from this "
            "address", retry_after=seconds(wait),
        )  # fmt: skip
    number, code = normalise_number(number), normalise_code(code)
    # The number's own limit is checked before the code, for numbers that exist and numbers that
    # do not alike, so it tells nothing about either.
    wait = counters.blocked(TRACK_NUMBER, number, db_session=db_session, now=now)
    if wait is not None:
        return None, TooManyRequests(
            f"该工单编号查询错误次数过多，请 {minutes(wait)} 分钟后再试 / too many wrong codes for "
            "this number", retry_after=seconds(wait),
        )  # fmt: skip
    ticket = None
    if number.isascii() and number.isdigit() and len(number) <= 16:
        ticket = db_session.scalar(
            select(Ticket).where(Ticket.number == number).options(selectinload(Ticket.events))
        )
    # Hash even when there is no ticket, so that timing does not tell which numbers exist.
    given = code_hash(code)
    stored = ticket.tracking_hash if ticket is not None and ticket.tracking_hash else ""
    if not stored or not code or not hmac.compare_digest(given, stored):
        audit(FAILED_ACTION, db_session=db_session, ip=ip, now=now, number=number[:20])
        counters.count(TRACK_NUMBER, number, NUMBER_BUDGET, db_session=db_session, now=now)
        return None, NotFound(WRONG_PAIR)
    return ticket, None


# ---- what the citizen sees -----------------------------------------------------------------

STEPS = ("已受理", "已派单办理中", "已办结", "已评价/已关闭")
STEP_OF = {
    "received": 0, "pending_dispatch": 0, "dispatched": 1, "accepted": 1, "replied": 1,
    "audited": 2, "evaluated": 3, "closed": 3,
}  # fmt: skip
STATUS_TEXT = {
    "received": ("已受理", "您的诉求已受理，正在分派给承办单位。"),
    "pending_dispatch": ("已受理", "您的诉求已受理，正在分派给承办单位。"),
    "dispatched": ("办理中", "已派单至承办单位办理，承办单位可能会电话联系您，请保持电话畅通。"),
    "accepted": ("办理中", "承办单位正在办理，可能会电话联系您，请保持电话畅通。"),
    "replied": ("办理中", "承办单位已提交办理结果，热线中心正在审核。"),
    "audited": ("已办结", "承办单位已办结并答复，请查看办理结果，欢迎您评价。"),
    "evaluated": ("已评价", "已完成评价，感谢您对 12345 热线工作的支持。"),
    "closed": ("已关闭", "工单已办结关闭。"),
    "answered": ("已答复", "您的诉求已由热线直接答复，答复内容见下方。"),
    "rejected": ("不予受理", "您的诉求不在 12345 热线的受理范围内，请按下方告知的途径办理。"),
    "transferred": ("已转紧急服务", "您的诉求属于紧急事项，已转交紧急服务部门处理。"),
    "merged": ("合并办理", "您反映的问题已有其他市民反映，将合并办理，办理结果一并答复您。"),
}
REPLY_SHOWN = frozenset({"audited", "evaluated", "closed"})
OTHER_PATHS = frozenset({"answered", "rejected", "transferred", "merged"})


@dataclass
class Progress:
    number: str
    status: str  # the ticket's state, for the chip's colour
    headline: str
    explanation: str
    steps: list[tuple[str, bool]]
    title: str
    content: str
    address: str | None
    request_type: str | None
    received_at: datetime
    reply: str | None = None
    result: str | None = None
    answer: str | None = None
    reject_reason: str | None = None
    channel_advice: str | None = None
    transferred_to: str | None = None
    can_rate: bool = False
    solved: bool | None = None
    satisfaction: str | None = None
    photos: int = 0


def _path(ticket: Ticket) -> str:
    """Which road the ticket took: its state, or for a closed one the state it closed from."""
    if ticket.status != "closed":
        return ticket.status
    closing = next((e for e in reversed(ticket.events) if e.state_after == "closed"), None)
    before = closing.state_before if closing is not None else None
    return before if before in OTHER_PATHS else "closed"


def _latest(events: list[Event], action: str) -> Event | None:
    return next((e for e in reversed(events) if e.action == action), None)


def progress_of(ticket: Ticket, *, db_session: Session) -> Progress:
    """The citizen's view of a ticket, field by field: nothing internal is copied in."""
    path = _path(ticket)
    closed = ticket.status == "closed"
    headline, explanation = STATUS_TEXT.get(path, (ticket.status, ""))
    if closed and path in OTHER_PATHS:
        headline, explanation = f"{headline}（已关闭）", explanation
    view = Progress(
        number=ticket.number, status=ticket.status, headline=headline, explanation=explanation,
        steps=[], title=ticket.title, content=ticket.content, address=ticket.address,
        request_type=REQUEST_TYPE_NAMES.get(ticket.request_type or "") or None,
        received_at=ticket.created_at,
        photos=db_session.scalar(
            select(func.count()).select_from(Attachment).where(Attachment.ticket_id == ticket.id)
        ) or 0,
    )  # fmt: skip
    if path in OTHER_PATHS:
        middle = {"answered": "已直接答复", "rejected": "不予受理", "transferred": "已转紧急服务",
                  "merged": "合并办理"}[path]  # fmt: skip
        view.steps = [("已受理", True), (middle, True), ("已关闭", closed)]
    else:
        reached = STEP_OF.get(ticket.status, 0)
        view.steps = [(name, i <= reached) for i, name in enumerate(STEPS)]
    if path == "answered":
        event = _latest(ticket.events, "answer")
        view.answer = str(event.data.get("answer", "")) if event else None
    elif path == "rejected":
        event = _latest(ticket.events, "reject")
        if event is not None:
            view.reject_reason = REJECT_REASONS.get(str(event.data.get("reason", "")))
            view.channel_advice = str(event.data.get("channel_advice", "")) or None
    elif path == "transferred":
        event = _latest(ticket.events, "transfer")
        to = str(event.data.get("to", "")) if event else ""
        view.transferred_to = f"{to}（{TRANSFER_TO[to]}）" if to in TRANSFER_TO else None
    elif path == "merged":
        master = _root_master(ticket, db_session=db_session)
        if master is not None and _path(master) == "answered":
            event = _latest(master.events, "answer")
            view.answer = str(event.data.get("answer", "")) if event else None
        elif master is not None and master.status in REPLY_SHOWN:
            _reply_into(view, list(master.events))
    elif ticket.status in REPLY_SHOWN:
        _reply_into(view, list(ticket.events))
    if ticket.status in ("evaluated", "closed") and ticket.satisfaction:
        view.solved = ticket.solved
        view.satisfaction = SATISFACTION.get(ticket.satisfaction)
    view.can_rate = ticket.status == "audited"
    return view


def _root_master(ticket: Ticket, *, db_session: Session) -> Ticket | None:
    """The order a merged one is answered with: its master's master … up to the root (an order
    may have been merged before its own master was merged into another)."""
    seen = {ticket.id}
    master = db_session.get(Ticket, ticket.master_id) if ticket.master_id else None
    while master is not None and master.master_id is not None and master.id not in seen:
        seen.add(master.id)
        master = db_session.get(Ticket, master.master_id)
    return master


def _reply_into(view: Progress, events: list[Event]) -> None:
    event = _latest(events, "reply")
    if event is not None:
        view.reply = str(event.data.get("content", "")) or None
        view.result = REPLY_RESULTS.get(str(event.data.get("result", "")))


# ---- rating ---------------------------------------------------------------------------------


def rating_fields(values: dict[str, str]) -> dict[str, Any]:
    """The rate form as the lifecycle's fields, or an `Invalid` in Chinese."""
    solved = values.get("solved", "")
    if solved not in ("yes", "no"):
        raise Invalid("请选择问题是否已解决", field="solved")
    satisfaction = values.get("satisfaction", "")
    if satisfaction not in SATISFACTION:
        raise Invalid("请选择满意度", field="satisfaction")
    note = values.get("note", "")
    if len(note) > NOTE_MAX:
        raise Invalid(f"意见建议不能超过 {NOTE_MAX} 字", field="note")
    if _bad_char(note):
        raise Invalid("意见建议中含有无法识别的控制字符，请删除后重试", field="note")
    data: dict[str, Any] = {"solved": solved == "yes", "satisfaction": satisfaction}
    if note:
        data["note"] = note
    return data


def rating_refusal(ticket: Ticket) -> str | None:
    """Why this ticket cannot be rated now, in words for a citizen (None: it can)."""
    if ticket.status == "audited":
        return None
    if ticket.status in ("evaluated", "closed") and ticket.satisfaction:
        return "您已评价过该工单，感谢您的反馈"
    if ticket.status in ("evaluated", "closed"):
        return "该工单已完成回访，无需再评价"
    return "工单尚未办结，暂不能评价"
