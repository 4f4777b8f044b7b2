"""The API shapes of a ticket: what intake accepts and what readers get back.

Input is strict (unknown fields, wrong types, oversize text and malformed phones are refused with
the field named); output is built per reader by `ticket_out`, which applies the masking rules.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from jiesu.intel.shapes import IntakeAdvice
from jiesu.tickets.models import Channel

# The one limit on a request's text, characters: the API, the console's intake form (maxlength)
# and the portal use it. A long letter fits, a pasted file does not.
MAX_CONTENT = 5_000

_PHONE_SEPARATORS = re.compile(r"[\s\-()（）]")
# JSON types are kept as sent: "39.9" is not a number and "yes" is not a boolean.
StrictFloat = Annotated[float, Strict()]
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{9,11}$")  # area code (3-4 digits, leading 0) + 7-8 digits
_LOCAL = re.compile(r"^[2-9]\d{6,7}$")


def normalise_phone(raw: str) -> str:
    """Digits only; +86/0086 dropped. Raises ValueError for anything that is not a phone."""
    digits = _PHONE_SEPARATORS.sub("", raw)
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            digits = digits[len(prefix) :]
    if len(digits) == 13 and digits.startswith("86") and _MOBILE.match(digits[2:]):
        digits = digits[2:]
    if _MOBILE.match(digits) or _LANDLINE.match(digits) or _LOCAL.match(digits):
        return digits
    raise ValueError("电话号码格式不正确 / invalid phone number")


Text200 = Annotated[StrictStr, StringConstraints(strip_whitespace=True, max_length=200)]
# A code names a row: blank (or only spaces) is no code, and is refused rather than stored.
Code = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1)]
# The call centre's call id (jiesu/calls): letters, digits and . _ : - as a telephony sends it
# (a UUID, a PBX's "1733216400.42").
CALL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$"
CallId = Annotated[
    StrictStr,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=CALL_ID_PATTERN),
]


class RequesterIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: StrictStr | None = Field(None, max_length=60)
    phone: StrictStr | None = Field(None, max_length=30)
    confidential: StrictBool = False

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        return normalise_phone(v) if v else None


class WindowIn(BaseModel):
    """办不成事窗口: why the normal path failed, and the orders it failed on."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    cause: Literal["policy", "coordination", "misconduct"]
    earlier: list[Annotated[StrictStr, StringConstraints(max_length=16)]] = Field(
        default_factory=list, max_length=20
    )


class TicketCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    channel: Channel
    content: StrictStr = Field(min_length=1, max_length=MAX_CONTENT)
    title: Text200 | None = None
    request_type: Code | None = Field(None, max_length=20)
    category_code: Code | None = Field(None, max_length=20)
    address: StrictStr | None = Field(None, max_length=300)
    street: Code | None = Field(
        None, max_length=40, description="所在街道（乡镇）的单位编码，已知时填写"
    )
    lat: StrictFloat | None = Field(None, ge=-90, le=90)
    lng: StrictFloat | None = Field(None, ge=-180, le=180)
    requester: RequesterIn = Field(default_factory=RequesterIn)
    window: WindowIn | None = None
    call_id: CallId | None = Field(
        None, description="来电的通话编号（话务系统推送过的）：工单与这通来电关联"
    )

    @model_validator(mode="after")
    def _point(self) -> TicketCreate:
        if (self.lat is None) != (self.lng is None):
            raise ValueError("经度和纬度须同时提供 / lat and lng go together")
        if (self.window is not None) != (self.channel == Channel.window):
            raise ValueError(
                "办不成事窗口的诉求须填写窗口信息（原因与此前工单），其他渠道不填 / "
                "window goes with the window channel, and only with it"
            )
        return self


class Ref(BaseModel):
    code: str
    name: str


class RequesterOut(BaseModel):
    name: str | None
    phone: str | None
    confidential: bool
    masked: bool


class AssignmentOut(BaseModel):
    unit: Ref
    role: str
    round: int
    active: bool
    dispatched_at: datetime
    accepted_at: datetime | None
    contacted_at: datetime | None
    replied_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None


class EventOut(BaseModel):
    seq: int
    action: str
    at: datetime
    actor: str | None
    actor_unit: Ref | None
    state_before: str | None
    state_after: str
    note: str | None
    data: dict[str, Any]


class DeadlineOut(BaseModel):
    phase: str  # accept | contact | complete | report
    phase_name: str
    unit: str | None = None  # report: the summoned unit
    limit: str  # as the pack writes it: 2wh, 24h, 7wd
    start: datetime
    due: datetime | None  # None while suspended with time left
    met_at: datetime | None
    remaining_seconds: int  # on the limit's own clock; negative when overdue
    progress: float
    paused: bool
    overdue: bool


class TicketOut(BaseModel):
    id: int
    number: str
    channel: str
    request_type: str | None
    category: Ref | None
    title: str
    content: str
    requester: RequesterOut
    address: str | None
    lat: float | None
    lng: float | None
    district: Ref | None
    street: Ref | None
    status: str
    status_name: str
    tier: str | None
    urgent: bool
    lead_unit: Ref | None
    round: int
    result: str | None
    solved: bool | None
    satisfaction: str | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    due_at: datetime | None
    version: int
    deadlines: list[DeadlineOut] | None = None
    assignments: list[AssignmentOut] | None = None
    events: list[EventOut] | None = None
    # At intake only: what intelligence suggested and whether the ticket was dispatched on it.
    suggestions: IntakeAdvice | None = None


class TicketPage(BaseModel):
    items: list[TicketOut]
    total: int = Field(
        description="符合条件的工单数；达到计数上限 20,000 件时为 20,000（见 total_capped）"
    )
    total_capped: bool = Field(
        False,
        description="true：总数达到计数上限 20,000，实际可能更多 / the count stopped at the limit",
    )
    page: int
    page_size: int
