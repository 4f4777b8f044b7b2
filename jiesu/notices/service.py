"""SMS opt-outs (退订) and units' notice e-mail addresses: queries and writes.

Keyword-only `db_session=`; nothing here commits (the caller's `db.write()` does).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from jiesu.errors import Invalid, NotFound
from jiesu.notices.models import SmsOptOut, UnitNoticeEmail
from jiesu.org.models import Unit

OPT_OUT_SOURCES = ("sms", "admin", "portal")
EMAIL = re.compile(r"^[^@\s<>\"',;]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


def normalise_phone(phone: str) -> str:
    """The digits a phone is matched by: spaces, dashes and a +86 / 0086 prefix dropped."""
    digits = re.sub(r"[\s\-()（）]", "", phone or "")
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 11:
            digits = digits[len(prefix) :]
    return digits


def opt_out(
    phone: str, *, db_session: Session, now: datetime, source: str, actor_id: int | None = None
) -> None:
    """No more SMS to `phone` (idempotent: a second 退订 changes nothing)."""
    number = normalise_phone(phone)
    if not number or not number.isdigit() or len(number) > 20:
        raise Invalid("号码无效 / invalid phone number", field="phone")
    if source not in OPT_OUT_SOURCES:
        raise Invalid(f"未知来源 {source} / unknown source", field="source")
    if db_session.scalar(select(SmsOptOut.id).where(SmsOptOut.phone == number)) is not None:
        return
    db_session.add(SmsOptOut(phone=number, source=source, created_by_id=actor_id, created_at=now))
    db_session.flush()


def opted_out(phone: str, *, db_session: Session) -> bool:
    number = normalise_phone(phone)
    return db_session.scalar(select(SmsOptOut.id).where(SmsOptOut.phone == number)) is not None


def undo_opt_out(opt_out_id: int, *, db_session: Session) -> SmsOptOut:
    """The phone gets SMS again; returns the removed row (for the audit log)."""
    row = db_session.get(SmsOptOut, opt_out_id)
    if row is None:
        raise NotFound("没有这条退订记录 / no such opt-out")
    db_session.delete(row)
    db_session.flush()
    return row


def list_opt_outs(*, db_session: Session, limit: int = 50, offset: int = 0) -> list[SmsOptOut]:
    return list(
        db_session.scalars(
            select(SmsOptOut).order_by(SmsOptOut.created_at.desc(), SmsOptOut.id.desc())
            .limit(limit).offset(offset)
        )
    )  # fmt: skip


def unit_emails(*, db_session: Session) -> list[UnitNoticeEmail]:
    return list(
        db_session.scalars(
            select(UnitNoticeEmail).options(selectinload(UnitNoticeEmail.unit))
            .order_by(UnitNoticeEmail.unit_id, UnitNoticeEmail.id)
        )
    )  # fmt: skip


def addresses_for(unit_id: int, kind: str, *, db_session: Session) -> list[str]:
    """The active addresses of `unit_id` that want notices of `kind`."""
    rows = db_session.scalars(
        select(UnitNoticeEmail).where(
            UnitNoticeEmail.unit_id == unit_id, UnitNoticeEmail.active.is_(True)
        )
    )
    return [r.address for r in rows if not r.kinds or kind in r.kinds]


def save_unit_email(
    *, db_session: Session, now: datetime, unit_code: str, address: str, kinds: list[str],
    allowed_kinds: tuple[str, ...], active: bool = True, email_id: int | None = None,
) -> UnitNoticeEmail:  # fmt: skip
    """Add (or with `email_id` change) a unit's notice address."""
    address = (address or "").strip()
    if not EMAIL.match(address) or len(address) > 200:
        raise Invalid("邮箱地址无效 / invalid e-mail address", field="address")
    unknown = [k for k in kinds if k not in allowed_kinds]
    if unknown:
        raise Invalid(f"未知通知类型 {', '.join(unknown)} / unknown notice kind", field="kinds")
    unit = db_session.scalar(select(Unit).where(Unit.code == (unit_code or "").strip()))
    if unit is None:
        raise Invalid("没有这个单位 / unknown unit", field="unit")
    same = db_session.scalar(
        select(UnitNoticeEmail.id).where(
            UnitNoticeEmail.unit_id == unit.id, UnitNoticeEmail.address == address
        )
    )
    if same is not None and same != email_id:
        raise Invalid("该单位已有这个邮箱 / the unit already has this address", field="address")
    row: Any
    if email_id is not None:
        row = db_session.get(UnitNoticeEmail, email_id)
        if row is None:
            raise NotFound("没有这个通知邮箱 / no such address")
    else:
        row = UnitNoticeEmail(created_at=now)
        db_session.add(row)
    row.unit_id, row.address, row.kinds, row.active = unit.id, address, list(kinds), active
    row.updated_at = now
    db_session.flush()
    return row  # type: ignore[no-any-return]


def delete_unit_email(email_id: int, *, db_session: Session) -> UnitNoticeEmail:
    """Removes a unit's notice address; returns the removed row (for the audit log)."""
    row = db_session.get(UnitNoticeEmail, email_id)
    if row is None:
        raise NotFound("没有这个通知邮箱 / no such address")
    row.unit  # noqa: B018  (loaded before the row is gone)
    db_session.delete(row)
    db_session.flush()
    return row
