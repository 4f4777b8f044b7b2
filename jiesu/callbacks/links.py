"""Rating links (评价链接): a short absolute URL to the portal's rating page that carries a
signed, expiring token, so the 回访邀请 SMS can say "rate here" without a tracking code.

The token is 24 URL-safe characters: the ticket id (5 bytes), the expiry in minutes since the
Unix epoch (4 bytes) and the first 9 bytes of an HMAC-SHA256 over those 9 bytes, base64url.
The key is `JIESU_SECRET_KEY` when set (several app servers must share it), else a random key
created once in the var dir (`secret.key`, mode 0600). A token is good for `LINK_DAYS` days
(the invitation's callback window); after that the citizen is asked to use the tracking code.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from jiesu.settings import get_settings

LINK_DAYS = 7
TOKEN_LENGTH = 24
_MAC_BYTES = 9
_KEY_FILE = "secret.key"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


class LinkError(Exception):
    """A token that is not valid (forged, mangled) or no longer valid (expired)."""

    status = 404
    reason = "invalid"


class LinkExpired(LinkError):
    status = 410
    reason = "expired"


def public_url() -> str:
    return (os.environ.get("JIESU_PUBLIC_URL") or DEFAULT_PUBLIC_URL).rstrip("/")


def _key_from_file(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return bytes.fromhex(key)


def secret_key() -> bytes:
    """The signing key: JIESU_SECRET_KEY, else the var dir's secret.key (created once)."""
    configured = os.environ.get("JIESU_SECRET_KEY", "").strip()
    if configured:
        return configured.encode()
    return _key_from_file(get_settings().var_dir / _KEY_FILE)


def _mac(body: bytes, key: bytes) -> bytes:
    return hmac.new(key, b"jiesu-rating-link:" + body, hashlib.sha256).digest()[:_MAC_BYTES]


def sign(ticket_id: int, *, now: datetime, days: int = LINK_DAYS) -> str:
    """The token for `ticket_id`, valid until `now + days`."""
    if not 0 < ticket_id < 2**40:
        raise ValueError("ticket id out of range for a rating link")
    expires = int((now + timedelta(days=days)).timestamp() // 60)
    body = ticket_id.to_bytes(5, "big") + expires.to_bytes(4, "big")
    return base64.urlsafe_b64encode(body + _mac(body, secret_key())).decode()


def rating_link(ticket_id: int, *, now: datetime) -> str:
    """A short absolute URL to the rating page of `ticket_id` (for the 回访邀请 SMS)."""
    return f"{public_url()}/r/{sign(ticket_id, now=now)}"


def expires_at(token: str) -> datetime:
    body = _decode(token)
    return datetime.fromtimestamp(int.from_bytes(body[5:9], "big") * 60, UTC)


def _decode(token: str) -> bytes:
    if len(token) != TOKEN_LENGTH or not token.isascii():
        raise LinkError("malformed token")
    try:
        raw = base64.urlsafe_b64decode(token.encode())
    except (binascii.Error, ValueError):
        raise LinkError("malformed token") from None
    if len(raw) != 9 + _MAC_BYTES:
        raise LinkError("malformed token")
    return raw


def verify(token: str, *, now: datetime) -> int:
    """The ticket id a token was signed for; `LinkError` (forged, mangled) or `LinkExpired`."""
    raw = _decode(token)
    body, mac = raw[:9], raw[9:]
    if not hmac.compare_digest(mac, _mac(body, secret_key())):
        raise LinkError("bad signature")
    expires = int.from_bytes(body[5:9], "big") * 60
    if now.timestamp() >= expires:
        raise LinkExpired("expired")
    return int.from_bytes(body[:5], "big")
