"""Signing in and resolving bearer tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from jiesu.access.policy import Principal
from jiesu.auth.limits import (
    ACCOUNT_FAILURES,
    ACCOUNT_LOCK,
    FORGET_AFTER,
    account_lock,
    minutes,
    seconds,
)
from jiesu.auth.models import ApiToken, AuditLog
from jiesu.auth.passwords import hash_password, verify_password
from jiesu.db.base import utcnow
from jiesu.errors import DomainError, Invalid, TooManyRequests, Unauthorized
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
    scope_channel: str | None = None,
    scope_role: str | None = None,
) -> tuple[str, datetime | None]:
    token, row = issue(
        user, db_session=db_session, ttl=ttl, kind=kind, name=name,
        scope_channel=scope_channel, scope_role=scope_role,
    )  # fmt: skip
    return token, row.expires_at


def issue(
    user: User,
    *,
    db_session: Session,
    ttl: timedelta | None,
    kind: str = "login",
    name: str | None = None,
    scope_channel: str | None = None,
    scope_role: str | None = None,
) -> tuple[str, ApiToken]:
    """A new token for `user`: the value (shown once) and its stored row."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    row = ApiToken(
        user_id=user.id, token_hash=_digest(token), kind=kind, name=name, created_at=now,
        expires_at=now + ttl if ttl else None, scope_channel=scope_channel, scope_role=scope_role,
    )  # fmt: skip
    db_session.add(row)
    db_session.flush()
    return token, row


# Lockout and rate limit (GB/T 22239 level 3 asks for both). An account is locked after every
# 5 wrong passwords since its last good sign-in, for 15 minutes and twice as long each time after
# (auth/limits.py), from whatever addresses they came; while locked it answers exactly as a wrong
# password does. An address with IP_FAILURES failed sign-ins within IP_WINDOW is refused (429)
# until the window passes, so one noisy address locks out at most a few accounts.
IP_FAILURES = 20
IP_WINDOW = timedelta(minutes=15)
WRONG = "用户名或密码错误 / wrong username or password"
FAILURES = ("login_failed", "login_locked")


def audit(
    action: str,
    *,
    db_session: Session,
    user: User | None = None,
    username: str | None = None,
    ip: str | None = None,
    ticket_id: int | None = None,
    now: datetime | None = None,
    **detail: object,
) -> None:
    db_session.add(
        AuditLog(
            at=now or utcnow(), action=action, user_id=user.id if user else None,
            username=username or (user.username if user else None), ip=ip,
            ticket_id=ticket_id, detail=detail,
        )
    )  # fmt: skip


def sign_in(
    username: str,
    password: str,
    *,
    ip: str | None,
    db_session: Session,
    now: datetime | None = None,
) -> tuple[User | None, DomainError | None]:
    """Check a sign-in and record its outcome in `db_session`; the caller commits, then raises
    the error if there is one (a failure must be remembered even though the request fails)."""
    now = now or utcnow()
    wait = address_wait(ip, db_session=db_session, now=now)
    if wait is not None:
        return None, TooManyRequests(
            f"登录失败次数过多，请 {minutes(wait)} 分钟后再试 / too many failed sign-ins from this "
            "address: try again later",
            retry_after=seconds(wait),
        )
    user = db_session.scalar(select(User).where(User.username == username))
    # Verify even for an unknown or a locked user: the answer and its cost are the same either
    # way, so neither timing nor wording tells a guesser which usernames exist or are locked.
    ok = verify_password(user.password_hash if user else _dummy_hash(), password)
    if user is not None:
        # Concurrent sign-ins of one account queue here (after the costly check), so a burst of
        # parallel guesses is counted one by one and none slips past a lock another just set.
        db_session.refresh(user, with_for_update=True)
    if user is not None and user.locked_until is not None and user.locked_until > now:
        audit("login_locked", db_session=db_session, user=user, ip=ip, now=now)
        return None, Unauthorized(WRONG)
    if user is None or not ok:
        audit("login_failed", db_session=db_session, user=user, username=username[:60], ip=ip,
              now=now)  # fmt: skip
        if user is not None:
            user.failed_logins, until = account_lock(user.failed_logins or 0, user.locked_until,
                                                     now)  # fmt: skip
            if until is not None:
                user.locked_until = until
                audit("lockout", db_session=db_session, user=user, ip=ip, now=now,
                      minutes=minutes(until - now))  # fmt: skip
        return None, Unauthorized(WRONG)
    if not user.active or not user.unit.active:
        audit("login_failed", db_session=db_session, user=user, ip=ip, now=now, why="disabled")
        return None, Unauthorized(WRONG)
    user.failed_logins = 0
    user.locked_until = None
    audit("login", db_session=db_session, user=user, ip=ip, now=now)
    return user, None


def attempts_left(username: str, ip: str | None, *, db_session: Session,
                  now: datetime | None = None) -> int:  # fmt: skip
    """How many more wrong passwords before the lock, as the sign-in page warns: counted per
    submitted username and address from the audit log (failures since that name's last good
    sign-in, within a day), so an unknown username counts down exactly as a known one does and
    the warning never tells whether the account exists."""
    now = now or utcnow()
    since = now - FORGET_AFTER
    last_good = db_session.scalar(
        select(func.max(AuditLog.at)).where(
            AuditLog.action == "login", AuditLog.username == username[:60], AuditLog.at > since
        )
    )
    failures = (
        db_session.scalar(
            select(func.count())
            .select_from(AuditLog)
            .where(
                AuditLog.action.in_(FAILURES),
                AuditLog.username == username[:60],
                AuditLog.ip == ip if ip is not None else AuditLog.ip.is_(None),
                AuditLog.at > (last_good or since),
            )
        )
        or 0
    )
    return max(ACCOUNT_FAILURES - failures, 0)


def wrong_with_warning(left: int) -> str:
    """The sign-in page's answer to a wrong username or password, with the attempts left."""
    if left > 0:
        return (f"用户名或密码错误。剩余尝试次数 {left} 次，连续 {ACCOUNT_FAILURES} 次错误将锁定账号 "
                f"{minutes(ACCOUNT_LOCK)} 分钟")  # fmt: skip
    return (f"用户名或密码错误。已连续 {ACCOUNT_FAILURES} 次错误，账号已锁定，请 "
            f"{minutes(ACCOUNT_LOCK)} 分钟后再试，或联系管理员解锁")  # fmt: skip


def address_wait(ip: str | None, *, db_session: Session, now: datetime) -> timedelta | None:
    """How long an address with too many recent failed sign-ins must wait (None: it may try).
    The wait ends when the oldest of its last IP_FAILURES failures leaves the window."""
    if ip is None:
        return None
    nth = db_session.scalar(
        select(AuditLog.at)
        .where(AuditLog.action.in_(FAILURES), AuditLog.ip == ip, AuditLog.at > now - IP_WINDOW)
        .order_by(AuditLog.at.desc())
        .offset(IP_FAILURES - 1)
        .limit(1)
    )
    return None if nth is None else max(nth + IP_WINDOW - now, timedelta(seconds=1))


def authenticate(username: str, password: str, *, db_session: Session) -> User:
    """Sign-in without the lockout bookkeeping (scripts and tests that hold the password)."""
    user = db_session.scalar(select(User).where(User.username == username))
    ok = verify_password(user.password_hash if user else _dummy_hash(), password)
    if user is None or not ok or not user.active or not user.unit.active:
        raise Unauthorized(WRONG)
    return user


MIN_PASSWORD = 8


def check_new_password(user: User, new: str) -> None:
    if len(new) < MIN_PASSWORD:
        raise Invalid(f"新密码至少 {MIN_PASSWORD} 位 / at least {MIN_PASSWORD} characters",
                      field="new_password")  # fmt: skip
    if new.lower() == user.username.lower() or (new.isdigit() and len(set(new)) == 1):
        raise Invalid("新密码过于简单 / the new password is too easy to guess",
                      field="new_password")  # fmt: skip


def change_password(
    user: User,
    old: str,
    new: str,
    *,
    keep_token: str | None,
    db_session: Session,
    ip: str | None = None,
) -> None:
    """The user's own change: the old password is required; every other sign-in ends."""
    if not verify_password(user.password_hash, old):
        raise Invalid("原密码不正确 / the current password is wrong", field="old_password")
    if old == new:
        raise Invalid("新密码不能与原密码相同 / choose a different password", field="new_password")
    check_new_password(user, new)
    set_password(user, new, db_session=db_session, keep_token=keep_token)
    audit("password_change", db_session=db_session, user=user, ip=ip)


def set_password(
    user: User, new: str, *, db_session: Session, keep_token: str | None = None
) -> None:
    user.password_hash = hash_password(new)
    user.password_changed_at = utcnow()
    user.failed_logins = 0
    user.locked_until = None
    keep = _digest(keep_token) if keep_token else None
    for token in db_session.scalars(
        select(ApiToken).where(
            ApiToken.user_id == user.id, ApiToken.kind.in_(("login", "session")),
            ApiToken.revoked_at.is_(None),
        )
    ):  # fmt: skip
        if token.token_hash != keep:
            token.revoked_at = utcnow()


def revoke_token(token: str, *, db_session: Session) -> None:
    row = db_session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token)))
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()


def csrf_token_for(session_token: str) -> str:
    """The CSRF token that goes with a session: only a page that holds the cookie can know it."""
    return hashlib.sha256(b"jiesu-csrf:" + session_token.encode()).hexdigest()[:40]


def principal_of(
    user: User, unit: Unit, *, token: ApiToken | None = None, via: str = "bearer"
) -> Principal:
    """The permission view of a user in their unit (narrowed by a scoped system token)."""
    return Principal(
        user_id=user.id,
        username=user.username,
        name=user.name,
        role=token.scope_role if token is not None and token.scope_role else user.role,
        unit_id=unit.id,
        unit_path=unit.path,
        unit_function=unit.function,
        channel=token.scope_channel if token is not None else None,
        via=via,
    )


def principal_for_token(
    token: str, *, db_session: Session, kinds: tuple[str, ...] = ("login", "system")
) -> Principal:
    """The principal of a live token. Session cookies and bearer tokens are not interchangeable:
    a console cookie cannot be replayed as a bearer token, nor an API token as a cookie.

    Exact on every request (a revoked token, a disabled account stop working at once), and
    cheap: one indexed query for the columns a principal needs, a Core statement built once,
    no ORM rows (loading the token, user and unit as ORM objects was 8% of a create's CPU)."""
    row = (
        db_session.connection()
        .execute(_token_query(), {"digest": _digest(token), "kinds": list(kinds)})
        .first()
    )
    if row is None:
        raise Unauthorized("登录凭据无效 / invalid token")
    kind, scope_role, scope_channel, expires_at, revoked_at = row[:5]
    user_id, username, name, role, user_active, unit_id, unit_path, function, unit_active = row[5:]
    if expires_at is not None and expires_at.tzinfo is None:  # SQLite hands back naive UTC
        expires_at = expires_at.replace(tzinfo=UTC)
    if revoked_at is not None or (expires_at is not None and expires_at <= utcnow()):
        raise Unauthorized("登录凭据已失效，请重新登录 / token expired or revoked")
    if not user_active or not unit_active:
        raise Unauthorized("账号或所属单位已停用 / account or its unit disabled")
    return Principal(
        user_id=user_id, username=username, name=name, role=scope_role or role,
        unit_id=unit_id, unit_path=unit_path, unit_function=function, channel=scope_channel,
        via="session" if kind == "session" else "bearer",
    )  # fmt: skip


@lru_cache(maxsize=1)
def _token_query() -> Any:
    t, u, n = ApiToken.__table__.c, User.__table__.c, Unit.__table__.c
    return (
        select(t.kind, t.scope_role, t.scope_channel, t.expires_at, t.revoked_at,
               u.id, u.username, u.name, u.role, u.active,
               n.id, n.path, n.function, n.active)
        .select_from(ApiToken.__table__.join(User.__table__, u.id == t.user_id)
                     .join(Unit.__table__, n.id == u.unit_id))
        .where(t.token_hash == bindparam("digest"), t.kind.in_(bindparam("kinds", expanding=True)))
    )  # fmt: skip


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(16))
