"""The citizen's tracking code (查询码): issued at intake for every order with a requester phone
(the portal's own submit passes in the code it shows), told once in the 受理回执 and stored only
as its SHA-256, like a password."""

from __future__ import annotations

import hashlib
import secrets

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud and typed back
CODE_LENGTH = 8


def new_tracking_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()
