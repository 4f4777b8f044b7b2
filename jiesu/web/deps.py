"""Dependencies every router shares: the database and the signed-in principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from jiesu.access.policy import Principal
from jiesu.auth.service import principal_for_token
from jiesu.db.engine import Database
from jiesu.errors import Unauthorized

bearer = HTTPBearer(auto_error=False, description="POST /api/v1/auth/token 取得的令牌")


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def read_session(db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    with db.read() as session:
        yield session


def current_principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    session: Annotated[Session, Depends(read_session)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("需要登录 / authentication required")
    return principal_for_token(credentials.credentials, db_session=session)


DB = Annotated[Database, Depends(get_db)]
ReadSession = Annotated[Session, Depends(read_session)]
CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
