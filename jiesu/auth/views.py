"""Sign-in, sign-out, password change and system tokens (API).

The console's cookie sign-in lives in `console/views.py` and shares `auth/service.py`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from jiesu.access.policy import Principal
from jiesu.auth.models import ApiToken
from jiesu.auth.service import (
    audit,
    change_password,
    issue,
    issue_token,
    revoke_token,
    sign_in,
)
from jiesu.db.base import utcnow
from jiesu.errors import Invalid, NotFound
from jiesu.org.models import User
from jiesu.settings import get_settings
from jiesu.tickets.shapes import Channel
from jiesu.web.deps import DB, SESSION_COOKIE, bearer, client_ip, require
from jiesu.web.params import SmallId

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
admin_router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
SignedIn = Annotated[Principal, Depends(require("signed_in"))]
Admin = Annotated[Principal, Depends(require("admin"))]


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=60)
    password: str = Field(min_length=1, max_length=200)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime | None


@router.post("/token", response_model=TokenOut, summary="登录，取得访问令牌")
def token(body: TokenRequest, db: DB, request: Request) -> TokenOut:
    """Five wrong passwords in a row lock the account for 15 minutes; 20 failures from one
    address in 15 minutes answer 429 until the window passes."""
    with db.write() as session:
        user, error = sign_in(
            body.username, body.password, ip=client_ip(request), db_session=session
        )
        if user is not None:
            value, expires = issue_token(
                user, db_session=session, ttl=timedelta(hours=get_settings().token_ttl_hours)
            )
    if error is not None:
        raise error  # after the commit: the failure is remembered
    return TokenOut(access_token=value, expires_at=expires)


@router.post("/logout", status_code=204, summary="注销当前令牌或会话")
def logout(
    db: DB,
    principal: SignedIn,
    request: Request,
    response: Response,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """Revokes what signed this request in: the bearer token, or the console session its cookie
    names (a cookie-borne request has passed the CSRF check to get here)."""
    if principal.via == "session":
        value = request.cookies.get(SESSION_COOKIE)
        response.delete_cookie(SESSION_COOKIE, path="/")
    else:
        value = credentials.credentials if credentials is not None else None
    if value:
        with db.write() as session:
            revoke_token(value, db_session=session)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    old_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=200)


@router.post("/password", status_code=204, summary="修改本人密码（其他登录随之失效）")
def password(
    body: PasswordChange,
    db: DB,
    principal: SignedIn,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    with db.write() as session:
        user = session.get(User, principal.user_id)
        assert user is not None
        change_password(
            user,
            body.old_password,
            body.new_password,
            keep_token=credentials.credentials
            if credentials
            else request.cookies.get(SESSION_COOKIE),
            db_session=session,
            ip=client_ip(request),
        )


# ---- system tokens (admin) ---------------------------------------------------------------


class SystemTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=60, description="令牌代表的账号")
    name: str = Field(min_length=1, max_length=60, description="用途，如“微信公众号接入”")
    scope_channel: Channel | None = Field(None, description="只能受理此渠道的诉求")
    scope_role: str | None = Field(None, max_length=20, description="只能以此角色操作")
    days: int | None = Field(None, ge=1, le=3650, description="有效天数，不填则长期有效")


class SystemTokenOut(BaseModel):
    id: int
    username: str
    name: str | None
    scope_channel: str | None
    scope_role: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    token: str | None = None  # shown once, when issued


def token_out(row: ApiToken, value: str | None = None) -> SystemTokenOut:
    return SystemTokenOut(
        id=row.id,
        username=row.user.username,
        name=row.name,
        scope_channel=row.scope_channel,
        scope_role=row.scope_role,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        token=value,
    )


def issue_system_token(
    data: SystemTokenIn, *, by: Principal, db_session: Session, ip: str | None
) -> tuple[ApiToken, str]:
    user = db_session.scalar(select(User).where(User.username == data.username))
    if user is None:
        raise Invalid(f"没有账号 {data.username} / unknown user", field="username")
    # A token may narrow its user's powers, never widen them: the one role it may name is the
    # user's own (useful to pin an admin-run integration to what it needs).
    if data.scope_role is not None and data.scope_role != user.role:
        raise Invalid(
            f"令牌角色须为该账号的角色（{user.role}）/ a token cannot take another role",
            field="scope_role",
        )
    value, row = issue(
        user, db_session=db_session, ttl=timedelta(days=data.days) if data.days else None,
        kind="system", name=data.name,
        scope_channel=data.scope_channel.value if data.scope_channel else None,
        scope_role=data.scope_role,
    )  # fmt: skip
    audit(
        "token_issue", db_session=db_session, user=db_session.get(User, by.user_id), ip=ip,
        token_id=row.id, for_user=user.username, scope_channel=row.scope_channel,
        scope_role=row.scope_role,
    )  # fmt: skip
    return row, value


@admin_router.post(
    "/tokens", status_code=201, response_model=SystemTokenOut, summary="签发系统令牌"
)
def create_token(body: SystemTokenIn, db: DB, principal: Admin, request: Request) -> SystemTokenOut:
    """For a channel system (WeChat, app, SMS…): the value is shown once and stored hashed."""
    with db.write() as session:
        row, value = issue_system_token(
            body, by=principal, db_session=session, ip=client_ip(request)
        )
        return token_out(row, value)


@admin_router.get("/tokens", response_model=list[SystemTokenOut], summary="系统令牌列表")
def list_tokens(db: DB, _principal: Admin) -> list[SystemTokenOut]:
    with db.read() as session:
        rows = session.scalars(
            select(ApiToken).where(ApiToken.kind == "system").order_by(ApiToken.id.desc())
        ).all()
        return [token_out(r) for r in rows]


@admin_router.delete("/tokens/{token_id}", status_code=204, summary="吊销系统令牌")
def delete_token(token_id: SmallId, db: DB, principal: Admin, request: Request) -> None:
    with db.write() as session:
        revoke_system_token(token_id, by=principal, db_session=session, ip=client_ip(request))


def revoke_system_token(
    token_id: int, *, by: Principal, db_session: Session, ip: str | None
) -> None:
    row = db_session.get(ApiToken, token_id)
    if row is None or row.kind != "system":
        raise NotFound("没有这个系统令牌 / no such system token")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit("token_revoke", db_session=db_session, user=db_session.get(User, by.user_id),
              ip=ip, token_id=row.id)  # fmt: skip
