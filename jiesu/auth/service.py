"""Signing in and resolving bearer tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.access.policy import Principal
from jiesu.auth.models import ApiToken
from jiesu.auth.passwords import hash_password, verify_password
from jiesu.db.base import utcnow
from jiesu.errors import Unauthorized
from jiesu.org.models import Unit, User

TOKEN_PREFIX = "js_"  # recognisable in logs and secret scanners


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    user: User,
    *,
    db_session: Session,
    ttl: timedelta | None,
    kind: str = "login",
    name: str | None = None,
) -> tuple[str, datetime | None]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + ttl if ttl else None
    db_session.add(
        ApiToken(
            user_id=user.id, token_hash=_digest(token), kind=kind, name=name,
            created_at=now, expires_at=expires,
        )
    )  # fmt: skip
    return token, expires


def authenticate(username: str, password: str, *, db_session: Session) -> User:
    user = db_session.scalar(select(User).where(User.username == username))
    # Verify even for an unknown user so that timing does not reveal which usernames exist.
    ok = verify_password(user.password_hash if user else _dummy_hash(), password)
    if user is None or not ok or not user.active or not user.unit.active:
        raise Unauthorized("用户名或密码错误 / wrong username or password")
    return user


def principal_of(user: User, unit: Unit) -> Principal:
    """The permission view of a user in their unit."""
    return Principal(
        user_id=user.id,
        username=user.username,
        name=user.name,
        role=user.role,
        unit_id=unit.id,
        unit_path=unit.path,
        unit_function=unit.function,
    )


def principal_for_token(token: str, *, db_session: Session) -> Principal:
    row = db_session.execute(
        select(ApiToken.expires_at, ApiToken.revoked_at, User, Unit)
        .join(User, User.id == ApiToken.user_id)
        .join(Unit, Unit.id == User.unit_id)
        .where(ApiToken.token_hash == _digest(token))
    ).first()
    if row is None:
        raise Unauthorized("登录凭据无效 / invalid token")
    expires_at, revoked_at, user, unit = row
    if revoked_at is not None or (expires_at is not None and expires_at <= utcnow()):
        raise Unauthorized("登录凭据已失效，请重新登录 / token expired or revoked")
    if not user.active or not unit.active:
        raise Unauthorized("账号或所属单位已停用 / account or its unit disabled")
    return principal_of(user, unit)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(16))
