"""Open311 GeoReport v2 over jiesu's tables: keys, the service list and definitions, taking a
request in as an order (channel `open311`), and the public view of orders and their updates.
Services take `db_session=` and never commit.

What leaves through Open311 is public: never a name, a phone number or an e-mail address.
- `description`: an order that came in through Open311 shows what the citizen wrote for the
  civic app (with phone, ID numbers, e-mails and the requester's name scrubbed); an order from
  any other channel (a phone call, the portal …) shows only its title, scrubbed the same way; a
  confidential order (保密, common for 举报) or a 举报 shows no text at all, and no address or
  point either.
- `status_notes`: the public answer (the audited reply, the direct answer, the refusal's reason,
  the transfer), as the portal shows it to the citizen, scrubbed; while open, the portal's
  plain-language status.
- coordinates: stored as GCJ-02 (the datum of Chinese maps, SPEC §8 / intel/geo.py); Open311
  speaks WGS-84, so points are converted on the way in and on the way out.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from jiesu.access.policy import Principal
from jiesu.auth.limits import Budget
from jiesu.auth.service import audit, principal_of
from jiesu.errors import DomainError
from jiesu.intel.geo import gcj02_to_wgs84, wgs84_to_gcj02
from jiesu.open311.models import Open311Key, Open311Request
from jiesu.open311.shapes import (
    CLOSED_STATES,
    MAX_RESULTS,
    SPECIFICATION,
    Open311Error,
    Window,
    extended_status,
    public_status,
    scrub,
    w3c,
)
from jiesu.org.models import Unit, User
from jiesu.portal.service import STATUS_TEXT, progress_of
from jiesu.taxonomy.models import Category, RequestType
from jiesu.taxonomy.service import pack_settings
from jiesu.tickets.models import Channel, Event, Ticket
from jiesu.tickets.shapes import MAX_CONTENT, TicketCreate, normalise_phone

KEY_PREFIX = "o311_"
CHANNEL = Channel.open311.value
INTAKE_ROLES = frozenset({"agent", "dispatcher", "admin"})
# A key's creates per minute (a civic app's whole user base behind one key); counted in
# `rate_counter` like the portal's submissions.
CREATES_PER_MINUTE = 120
CREATE_BUDGET = Budget(limit=CREATES_PER_MINUTE, window=timedelta(minutes=1))
RATE_SCOPE = "open311"

# The attributes of every service definition besides the request type (code → definition).
CONTACT_TIMES = {"morning": "上午", "afternoon": "下午", "evening": "晚上"}
CONFIDENTIAL = {"yes": "是，请对我的身份保密", "no": "否"}
HIDDEN_TYPES = frozenset({"report"})  # 举报: the text stays inside, whatever the channel


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# ---- keys -------------------------------------------------------------------------------------


def issue_key(
    name: str, username: str, *, by: Principal, db_session: Session, now: datetime
) -> tuple[str, Open311Key]:
    """A new key for a civic app acting as `username` (an intake role): the value, shown once."""
    name = name.strip()
    if not name or len(name) > 60:
        raise Open311Invalid("请填写接入应用名称（60 字以内）/ the app's name is required")
    user = db_session.scalar(select(User).where(User.username == username.strip()))
    if user is None or not user.active:
        raise Open311Invalid(f"没有这个启用的账号：{username[:60]} / no such active user")
    if user.role not in INTAKE_ROLES:
        raise Open311Invalid(
            "该账号的角色不能受理诉求，请选择话务员等受理账号 / the user's role cannot take requests"
        )
    value = KEY_PREFIX + secrets.token_urlsafe(32)
    row = Open311Key(name=name, key_hash=_digest(value), hint=value[:9], user_id=user.id,
                     created_by_id=by.user_id, created_at=now)  # fmt: skip
    db_session.add(row)
    db_session.flush()
    audit("open311_key_issue", db_session=db_session, username=by.username, now=now,
          name=name, target=user.username)  # fmt: skip
    return value, row


def revoke_key(key_id: int, *, by: Principal, db_session: Session, now: datetime) -> None:
    row = db_session.get(Open311Key, key_id)
    if row is None:
        from jiesu.errors import NotFound

        raise NotFound("没有这个 Open311 密钥 / no such key")
    if row.revoked_at is None:
        row.revoked_at = now
        audit("open311_key_revoke", db_session=db_session, username=by.username, now=now,
              name=row.name)  # fmt: skip


def keys(*, db_session: Session) -> list[Open311Key]:
    return list(db_session.scalars(
        select(Open311Key).options(selectinload(Open311Key.user)).order_by(Open311Key.id.desc())
    ))  # fmt: skip


class Open311Invalid(DomainError):
    status = 422
    code = "invalid"


def key_principal(api_key: str | None, *, db_session: Session) -> tuple[Principal, Open311Key]:
    """The principal a live key acts as: its user, narrowed to the agent role and the open311
    channel. Missing, unknown or revoked: 403, as the specification has it."""
    if not api_key or not api_key.strip():
        raise Open311Error(403, "缺少 api_key / api_key is required")
    row = db_session.execute(
        select(Open311Key, User, Unit)
        .join(User, User.id == Open311Key.user_id)
        .join(Unit, Unit.id == User.unit_id)
        .where(Open311Key.key_hash == _digest(api_key.strip()))
    ).first()
    if row is None or row[0].revoked_at is not None:
        raise Open311Error(403, "api_key 无效或已吊销 / invalid api_key")
    key, user, unit = row
    if not user.active or not unit.active or user.role not in INTAKE_ROLES:
        raise Open311Error(403, "api_key 对应的账号已停用 / the key's account is disabled")
    base = principal_of(user, unit)
    return Principal(user_id=base.user_id, username=base.username, name=base.name, role="agent",
                     unit_id=base.unit_id, unit_path=base.unit_path,
                     unit_function=base.unit_function, channel=CHANNEL), key  # fmt: skip


# ---- the city ----------------------------------------------------------------------------------


def jurisdiction(*, db_session: Session) -> str:
    """The city's `jurisdiction_id`: the pack's code (e.g. `beijing`)."""
    return str(pack_settings(db_session=db_session).get("code") or "")


def check_jurisdiction(given: str | None, *, db_session: Session) -> None:
    if given is not None and given.strip() and given.strip() != jurisdiction(db_session=db_session):
        raise Open311Error(
            404, f"没有这个 jurisdiction_id：{given[:40]} / jurisdiction_id not found"
        )


def changeset(*, db_session: Session, tz: tzinfo) -> str | None:
    latest = db_session.scalar(select(func.max(Category.updated_at)))
    return w3c(latest, tz)


def discovery(*, db_session: Session, base_url: str, tz: tzinfo) -> dict[str, Any]:
    settings = pack_settings(db_session=db_session)
    stamp = changeset(db_session=db_session, tz=tz)
    return {
        "changeset": stamp,
        "contact": f"{settings.get('name', '')} 12345 市民服务热线（拨打 12345）",
        "key_service": "向热线中心的系统管理员申请（控制台 系统管理 → Open311 接入）",
        "endpoints": [
            {"specification": SPECIFICATION, "url": base_url, "changeset": stamp,
             "type": "production", "formats": ["text/xml", "application/json"]},
        ],
    }  # fmt: skip


# ---- services ----------------------------------------------------------------------------------


def _listed(db_session: Session) -> list[Category]:
    """The categories a request can name: every active one below the top level, and a top-level
    one without active children."""
    rows = list(db_session.scalars(
        select(Category).where(Category.active).options(selectinload(Category.parent))
        .order_by(Category.code)
    ))  # fmt: skip
    parents = {c.parent_id for c in rows if c.parent_id}
    return [c for c in rows if c.parent_id is not None or c.id not in parents]


def services(*, db_session: Session) -> list[dict[str, Any]]:
    return [
        {
            "service_code": c.code,
            "service_name": c.name,
            "description": c.full_name,
            "metadata": True,
            "type": "realtime",
            "keywords": ", ".join(c.keywords or []) or None,
            "group": c.parent.name if c.parent is not None else None,
        }
        for c in _listed(db_session)
    ]


def service(code: str, *, db_session: Session) -> Category:
    category = db_session.scalar(select(Category).where(Category.code == code, Category.active))
    if category is None:
        raise Open311Error(404, f"没有这个 service_code：{code[:20]} / service_code not found")
    return category


def request_types(*, db_session: Session) -> dict[str, str]:
    rows = db_session.scalars(select(RequestType).where(RequestType.active))
    return {r.code: r.name for r in rows}


def definition(code: str, *, db_session: Session) -> dict[str, Any]:
    category = service(code, db_session=db_session)
    types = request_types(db_session=db_session)

    def values(choices: Mapping[str, str]) -> list[dict[str, str]]:
        return [{"key": k, "name": v} for k, v in choices.items()]

    return {
        "service_code": category.code,
        "attributes": [
            {"variable": True, "code": "request_type", "datatype": "singlevaluelist",
             "required": False, "datatype_description": None, "order": 1,
             "description": "诉求类型（不填时由热线判断）", "values": values(types)},
            {"variable": True, "code": "title", "datatype": "string", "required": False,
             "datatype_description": "一句话概括，200 字以内", "order": 2,
             "description": "标题"},
            {"variable": True, "code": "confidential", "datatype": "singlevaluelist",
             "required": False, "datatype_description": None, "order": 3,
             "description": "是否要求对诉求人身份保密（举报常用）",
             "values": values(CONFIDENTIAL)},
            {"variable": True, "code": "contact_time", "datatype": "multivaluelist",
             "required": False, "datatype_description": "可多选", "order": 4,
             "description": "方便承办单位联系您的时段", "values": values(CONTACT_TIMES)},
        ],
    }  # fmt: skip


# ---- taking a request in ---------------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    """What a POST requests carried, read from the form (`attribute[code]`, `attribute[code][]`)."""

    fields: dict[str, str]
    attributes: dict[str, list[str]]


def read_form(items: Sequence[tuple[str, str]]) -> Posted:
    fields: dict[str, str] = {}
    attributes: dict[str, list[str]] = {}
    for key, value in items:
        if key.startswith("attribute[") and "]" in key:
            code = key[len("attribute[") : key.index("]")]
            attributes.setdefault(code, []).append(value)
        elif key not in fields:
            fields[key] = value
    return Posted(fields, attributes)


def _float(raw: str, field: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise Open311Error(400, f"{field} 不是数字 / {field} is not a number") from None
    if not low <= value <= high:
        raise Open311Error(400, f"{field} 超出范围 / {field} out of range")
    return value


def _short(fields: Mapping[str, str], key: str, most: int) -> str | None:
    value = (fields.get(key) or "").strip()
    if len(value) > most:
        raise Open311Error(400, f"{key} 超过 {most} 个字符 / {key} longer than {most}")
    return value or None


def _one(attributes: Mapping[str, list[str]], code: str, choices: Mapping[str, str]) -> str | None:
    given = [v.strip() for v in attributes.get(code, []) if v.strip()]
    if not given:
        return None
    if len(given) > 1 or given[0] not in choices:
        raise Open311Error(400, f"attribute[{code}] 的取值无效 / invalid value for {code}")
    return given[0]


def ticket_input(posted: Posted, category: Category, *, db_session: Session) -> TicketCreate:
    """The order an Open311 POST describes, or a 400 naming the field."""
    f, attrs = posted.fields, posted.attributes
    unknown = sorted(set(attrs) - {"request_type", "title", "confidential", "contact_time"})
    if unknown:
        raise Open311Error(400, f"未知的 attribute：{unknown[0][:30]} / unknown attribute code")
    lat_raw, lng_raw = (f.get("lat") or "").strip(), (f.get("long") or "").strip()
    if bool(lat_raw) != bool(lng_raw):
        raise Open311Error(400, "lat 与 long 须同时提供 / lat and long go together")
    address = _short(f, "address_string", 300)
    address_id = _short(f, "address_id", 100)
    if not (lat_raw or address or address_id):
        raise Open311Error(
            400,
            "须提供位置：lat 与 long、address_string 或 address_id 之一 / a location is "
            "required: lat & long, address_string or address_id",
        )
    lat = lng = None
    if lat_raw:
        wgs_lat = _float(lat_raw, "lat", -90, 90)
        wgs_lng = _float(lng_raw, "long", -180, 180)
        gcj_lng, gcj_lat = wgs84_to_gcj02(wgs_lng, wgs_lat)
        lat, lng = round(gcj_lat, 7), round(gcj_lng, 7)
    types = request_types(db_session=db_session)
    request_type = _one(attrs, "request_type", types)
    confidential = _one(attrs, "confidential", CONFIDENTIAL) == "yes"
    title_values = [v.strip() for v in attrs.get("title", []) if v.strip()]
    title = title_values[0] if title_values else None
    if title is not None and len(title) > 200:
        raise Open311Error(400, "标题超过 200 字 / title longer than 200 characters")
    times = [v.strip() for v in attrs.get("contact_time", []) if v.strip()]
    if any(t not in CONTACT_TIMES for t in times):
        raise Open311Error(400, "attribute[contact_time] 的取值无效 / invalid contact_time")
    description = (f.get("description") or "").strip()
    content = description or f"{category.name}（市民通过 Open311 应用反映，未填写描述）"
    if times:
        content += f"\n方便联系时段：{'、'.join(CONTACT_TIMES[t] for t in dict.fromkeys(times))}"
    if len(content) > MAX_CONTENT:
        raise Open311Error(400, f"description 超过 {MAX_CONTENT} 字 / description too long")
    name = "".join(x for x in (_short(f, "last_name", 30), _short(f, "first_name", 30)) if x)
    phone = None
    if (f.get("phone") or "").strip():
        try:
            phone = normalise_phone(f["phone"].strip())
        except ValueError:
            raise Open311Error(
                400, "phone 不是有效的电话号码 / phone is not a valid number"
            ) from None
    try:
        return TicketCreate.model_validate({
            "channel": CHANNEL, "content": content, "title": title,
            "request_type": request_type, "category_code": category.code,
            "address": address, "lat": lat, "lng": lng,
            "requester": {"name": name or None, "phone": phone, "confidential": confidential},
        })  # fmt: skip
    except ValueError as exc:
        raise Open311Error(400, f"请求内容无效 / invalid request: {str(exc)[:200]}") from None


def media_url(posted: Posted) -> str | None:
    url = _short(posted.fields, "media_url", 500)
    if url is not None and not url.lower().startswith(("http://", "https://")):
        raise Open311Error(400, "media_url 须为 http(s) 地址 / media_url must be an http(s) URL")
    return url


def keep_request(
    ticket: Ticket, posted: Posted, key: Open311Key, *, db_session: Session, now: datetime
) -> Open311Request:
    """What GeoReport has and the ticket has not; the token the answer carries."""
    f = posted.fields
    row = Open311Request(
        ticket_id=ticket.id, key_id=key.id, token=secrets.token_urlsafe(16),
        address_id=_short(f, "address_id", 100), media_url=media_url(posted),
        device_id=_short(f, "device_id", 100), account_id=_short(f, "account_id", 100),
        attributes={k: v for k, v in posted.attributes.items() if k != "title"}, created_at=now,
    )  # fmt: skip
    db_session.add(row)
    key.last_used_at = now
    db_session.flush()
    return row


def created(ticket: Ticket, row: Open311Request) -> list[dict[str, Any]]:
    return [{
        "service_request_id": ticket.number,
        "token": row.token,
        "service_notice": f"已受理，工单编号 {ticket.number}，可凭编号查询办理进度。",
        "account_id": row.account_id,
    }]  # fmt: skip


def token(value: str, *, db_session: Session) -> list[dict[str, Any]]:
    row = db_session.execute(
        select(Open311Request.token, Ticket.number)
        .join(Ticket, Ticket.id == Open311Request.ticket_id)
        .where(Open311Request.token == value)
    ).first()
    if row is None:
        raise Open311Error(404, "没有这个 token / token not found")
    return [{"service_request_id": row.number, "token": row.token}]


# ---- reading requests --------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestQuery:
    ids: list[str]
    codes: list[str]
    window: Window | None
    statuses: list[str]
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    page: int = 1
    page_size: int = MAX_RESULTS


def _names(ticket: Ticket) -> tuple[str, ...]:
    return (ticket.requester_name,) if ticket.requester_name else ()


def _hidden(ticket: Ticket) -> bool:
    return ticket.requester_confidential or ticket.request_type in HIDDEN_TYPES


def description_of(ticket: Ticket) -> str | None:
    if _hidden(ticket):
        return None
    text = ticket.content if ticket.channel == CHANNEL else ticket.title
    return scrub(text, names=_names(ticket))


def status_notes(ticket: Ticket, *, db_session: Session) -> str | None:
    if public_status(ticket.status) == "open":
        headline, explanation = STATUS_TEXT.get(ticket.status, ("", ""))
        return f"{headline}：{explanation}" if headline else None
    view = progress_of(ticket, db_session=db_session)
    parts = [view.headline]
    if view.answer:
        parts.append(view.answer)
    if view.reply:
        parts.append(view.reply)
    if view.reject_reason:
        parts.append(view.reject_reason)
    if view.channel_advice:
        parts.append(view.channel_advice)
    if view.transferred_to:
        parts.append(f"已转 {view.transferred_to}")
    return scrub("：".join(p for p in parts if p), names=_names(ticket))


def _point(ticket: Ticket) -> tuple[float | None, float | None]:
    if ticket.lat is None or ticket.lng is None or _hidden(ticket):
        return None, None
    lng, lat = gcj02_to_wgs84(ticket.lng, ticket.lat)
    return round(lat, 6), round(lng, 6)


def request_out(
    ticket: Ticket,
    extra: Open311Request | None,
    *,
    db_session: Session,
    tz: tzinfo,
    now: datetime,
    extensions: bool,
    type_names: Mapping[str, str],
) -> dict[str, Any]:
    lat, lng = _point(ticket)
    out: dict[str, Any] = {
        "service_request_id": ticket.number,
        "status": public_status(ticket.status),
        "status_notes": status_notes(ticket, db_session=db_session),
        "service_name": ticket.category.name if ticket.category else None,
        "service_code": ticket.category.code if ticket.category else None,
        "description": description_of(ticket),
        "agency_responsible": ticket.lead_unit.name if ticket.lead_unit else None,
        "service_notice": None,
        "requested_datetime": w3c(ticket.created_at, tz),
        "updated_datetime": w3c(ticket.updated_at, tz),
        "expected_datetime": w3c(ticket.due_at, tz),
        "address": None if _hidden(ticket) else scrub(ticket.address, names=_names(ticket)),
        "address_id": extra.address_id if extra and not _hidden(ticket) else None,
        "zipcode": None,
        "lat": lat,
        "long": lng,
        "media_url": extra.media_url if extra and not _hidden(ticket) else None,
    }
    if extensions:
        open_ = public_status(ticket.status) == "open"
        deadline = None
        if open_ and ticket.due_at is not None:
            deadline = "overdue" if now > ticket.due_at else "within"
        out["extended_attributes"] = {
            "channel": ticket.channel,
            "request_type": ticket.request_type,
            "request_type_name": type_names.get(ticket.request_type or ""),
            "state": ticket.status,
            "district_code": ticket.district.code if ticket.district else None,
            "district_name": ticket.district.name if ticket.district else None,
            "street_code": ticket.street.code if ticket.street else None,
            "street_name": ticket.street.name if ticket.street else None,
            "tier": ticket.tier,
            "urgent": ticket.urgent,
            "deadline_state": deadline,
            "round": ticket.round,
        }
    return out


def _loaded(stmt: Any) -> Any:
    return stmt.options(
        selectinload(Ticket.category), selectinload(Ticket.lead_unit),
        selectinload(Ticket.district), selectinload(Ticket.street), selectinload(Ticket.events),
    )  # fmt: skip


def _render(
    tickets: Sequence[Ticket], *, db_session: Session, tz: tzinfo, now: datetime, extensions: bool
) -> list[dict[str, Any]]:
    extras = {
        r.ticket_id: r for r in db_session.scalars(
            select(Open311Request).where(Open311Request.ticket_id.in_([t.id for t in tickets]))
        )
    } if tickets else {}  # fmt: skip
    type_names = request_types(db_session=db_session)
    return [request_out(t, extras.get(t.id), db_session=db_session, tz=tz, now=now,
                        extensions=extensions, type_names=type_names) for t in tickets]  # fmt: skip


def find_requests(
    q: RequestQuery, *, db_session: Session, tz: tzinfo, now: datetime, extensions: bool
) -> list[dict[str, Any]]:
    """GET requests: ids override every other filter (as the specification says)."""
    stmt = select(Ticket)
    if q.ids:
        stmt = stmt.where(Ticket.number.in_(q.ids))
    else:
        if q.codes:
            stmt = stmt.join(Category, Category.id == Ticket.category_id).where(
                Category.code.in_(q.codes)
            )
        if q.window is not None:
            stmt = stmt.where(
                Ticket.created_at >= q.window.start, Ticket.created_at <= q.window.end
            )
        if q.updated_after is not None:
            stmt = stmt.where(Ticket.updated_at > q.updated_after)
        if q.updated_before is not None:
            stmt = stmt.where(Ticket.updated_at < q.updated_before)
        if set(q.statuses) == {"open"}:
            stmt = stmt.where(Ticket.status.not_in(sorted(CLOSED_STATES)))
        elif set(q.statuses) == {"closed"}:
            stmt = stmt.where(Ticket.status.in_(sorted(CLOSED_STATES)))
    stmt = _loaded(stmt.order_by(Ticket.created_at.desc(), Ticket.id.desc()))
    stmt = stmt.limit(q.page_size).offset((q.page - 1) * q.page_size)
    tickets = list(db_session.scalars(stmt))
    return _render(tickets, db_session=db_session, tz=tz, now=now, extensions=extensions)


def one_request(
    number: str, *, db_session: Session, tz: tzinfo, now: datetime, extensions: bool
) -> list[dict[str, Any]]:
    ticket = db_session.scalar(_loaded(select(Ticket).where(Ticket.number == number)))
    if ticket is None:
        raise Open311Error(404, f"没有这个 service_request_id：{number[:20]} / not found")
    return _render([ticket], db_session=db_session, tz=tz, now=now, extensions=extensions)


# ---- updates (mySociety servicerequestupdates) ----------------------------------------------


def updates(
    w: Window, *, db_session: Session, tz: tzinfo, page: int, page_size: int
) -> list[dict[str, Any]]:
    """Each change of an order's state in the window, as mySociety's request updates: the
    extended status after it and the public text the citizen would read."""
    rows = db_session.execute(
        select(Event, Ticket)
        .join(Ticket, Ticket.id == Event.ticket_id)
        .where(Event.at >= w.start, Event.at <= w.end,
               or_(Event.state_before.is_(None), Event.state_before != Event.state_after))
        .order_by(Event.at, Event.id)
        .limit(page_size).offset((page - 1) * page_size)
    ).all()  # fmt: skip
    out = []
    for event, ticket in rows:
        headline, explanation = STATUS_TEXT.get(event.state_after, ("", ""))
        text = f"{headline}：{explanation}" if headline else None
        if public_status(event.state_after) == "closed" and event.id == _last_change(ticket):
            text = status_notes(ticket, db_session=db_session)
        out.append({
            "update_id": event.id,
            "service_request_id": ticket.number,
            "status": extended_status(event.state_after),
            "updated_datetime": w3c(event.at, tz),
            "description": scrub(text, names=_names(ticket)),
            "media_url": None,
        })  # fmt: skip
    return out


def _last_change(ticket: Ticket) -> int | None:
    """The id of the ticket's latest state-changing event (whose text is the current answer)."""
    changes = [e for e in ticket.events if e.state_before != e.state_after]
    return changes[-1].id if changes else None
