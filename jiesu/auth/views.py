"""POST /api/v1/auth/token."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from jiesu.auth.service import authenticate, issue_token
from jiesu.settings import get_settings
from jiesu.web.deps import DB

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=60)
    password: str = Field(min_length=1, max_length=200)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime | None


@router.post("/token", response_model=TokenOut, summary="登录，取得访问令牌")
def token(body: TokenRequest, db: DB) -> TokenOut:
    with db.write() as session:
        user = authenticate(body.username, body.password, db_session=session)
        value, expires = issue_token(
            user, db_session=session, ttl=timedelta(hours=get_settings().token_ttl_hours)
        )
    return TokenOut(access_token=value, expires_at=expires)
