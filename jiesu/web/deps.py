"""Dependencies every router shares: the database, the signed-in principal, permissions, CSRF.

A request is signed in either by `Authorization: Bearer` (API and system tokens) or by the
console's session cookie. A cookie-signed request that changes anything must also carry the
page's CSRF token (form field `csrf_token` or header `X-CSRF-Token`); a bearer request needs
none, since a browser never attaches one by itself.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from jiesu.access.permissions import PERMISSIONS, allows
from jiesu.access.policy import Principal
from jiesu.auth.service import csrf_token_for, principal_for_token
from jiesu.db.engine import Database
from jiesu.errors import Forbidden, Unauthorized

bearer = HTTPBearer(auto_error=False, description="POST /api/v1/auth/token 取得的令牌")

SESSION_COOKIE = "jiesu_session"
CSRF_COOKIE = "jiesu_csrf"  # double-submit token for pages shown before signing in
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(Unauthorized):
    """Raised on console pages: the answer is a redirect to the sign-in page, not JSON."""


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def read_session(db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    with db.read() as session:
        yield session


def analysis_session(db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    """A read-only session on the read replica where one is set (`Database.analysis`): for the
    pages that read much and may lag a few seconds."""
    with db.analysis() as session:
        yield session


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def csrf_token(request: Request) -> str:
    """The token a page embeds in its forms (and htmx sends as a header)."""
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        return csrf_token_for(session)
    existing = getattr(request.state, "csrf", None) or request.cookies.get(CSRF_COOKIE)
    if not existing:
        existing = secrets.token_urlsafe(24)
        request.state.new_csrf = existing  # the page's response sets the cookie
    request.state.csrf = existing
    return str(existing)


async def check_csrf(request: Request) -> None:
    """Refuse an unsafe cookie-borne request without the page's token (403). Callers call it
    only for requests signed in by cookie (or not at all): an unrelated Authorization header
    excuses nothing."""
    if request.method in SAFE_METHODS:
        return
    session = request.cookies.get(SESSION_COOKIE)
    expected = csrf_token_for(session) if session else request.cookies.get(CSRF_COOKIE)
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(expected, sent):
        raise Forbidden("页面已过期或来源不明，请刷新后重试 / missing or wrong CSRF token")


def _principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    session: Session,
) -> Principal:
    if credentials is not None:
        if credentials.scheme.lower() != "bearer":
            raise Unauthorized("需要登录 / authentication required")
        return principal_for_token(credentials.credentials, db_session=session)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return principal_for_token(cookie, db_session=session, kinds=("session",))
    raise Unauthorized("需要登录 / authentication required")


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    db: Annotated[Database, Depends(get_db)],
) -> Principal:
    # A session of its own, closed at once: as a `read_session` dependency it held a pooled
    # connection (idle in a transaction) until the response was sent, two connections per
    # create with the write's, and 16 concurrent creates emptied a worker's pool.
    with db.read() as session:
        principal = _principal(request, credentials, session)
    if principal.via == "session":
        await check_csrf(request)
    return principal


def require(permission: str) -> Callable[..., Principal]:
    """The dependency a route declares: signed in, and the role holds `permission`."""
    assert permission in PERMISSIONS, permission

    def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not allows(permission, principal.role):
            raise Forbidden("当前角色无权使用此功能 / this role may not use this")
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]  # read by the matrix test
    return dependency


def require_page(permission: str) -> Callable[..., Principal]:
    """As `require`, for console pages: not signed in → the sign-in page."""
    assert permission in PERMISSIONS, permission

    async def dependency(
        request: Request,
        session: Annotated[Session, Depends(read_session)],
    ) -> Principal:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise LoginRequired("请先登录 / please sign in")
        try:
            principal = principal_for_token(cookie, db_session=session, kinds=("session",))
        except Unauthorized as exc:
            raise LoginRequired(exc.message) from exc
        await check_csrf(request)
        if not allows(permission, principal.role):
            raise Forbidden("当前角色无权使用此页面 / this role may not use this page")
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


DB = Annotated[Database, Depends(get_db)]
ReadSession = Annotated[Session, Depends(read_session)]
AnalysisSession = Annotated[Session, Depends(analysis_session)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
