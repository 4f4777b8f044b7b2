"""The access rules as pure functions over a `Principal` and plain values."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Roles that may take a request in (受理) through the API.
INTAKE_ROLES = frozenset({"agent", "dispatcher", "admin"})


@dataclass(frozen=True)
class Principal:
    """The signed-in user, as every permission check needs them."""

    user_id: int
    username: str
    name: str
    role: str
    unit_id: int
    unit_path: str  # "/1/17/254/"
    unit_function: str | None
    # A system token narrowed to one intake channel (None: any channel the role may use).
    channel: str | None = None
    # How the request was authenticated: "bearer" (API token) or "session" (console cookie).
    via: str = "bearer"

    @property
    def is_service_centre(self) -> bool:
        return self.unit_function == "service_centre"

    def can_intake(self) -> bool:
        return self.role in INTAKE_ROLES

    def sees_unit_path(self, unit_path: str) -> bool:
        """A unit sees its own work and the work of every unit beneath it."""
        return self.is_service_centre or unit_path.startswith(self.unit_path)

    def sees_identity(self, *, confidential: bool, lead_unit_id: int | None) -> bool:
        """May this actor reveal the requester's name and phone (a logged act, see `reveal`)?"""
        if self.is_service_centre:
            return True
        return not confidential and lead_unit_id is not None and lead_unit_id == self.unit_id


_PHONE_DIGITS = re.compile(r"\d")


def mask_phone(phone: str | None) -> str | None:
    """138****1234: keep the first 3 and last 4 digits of a mobile; landlines keep the last 4."""
    if not phone:
        return phone
    if len(phone) >= 11:
        return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]
    return "*" * max(len(phone) - 4, 0) + phone[-4:]


def mask_name(name: str | None) -> str | None:
    """张** / 欧阳**: the family name stays, the given name is hidden."""
    if not name:
        return name
    if len(name) == 1:
        return "*"
    keep = 2 if len(name) >= 4 else 1
    return name[:keep] + "*" * max(len(name) - keep, 1)
