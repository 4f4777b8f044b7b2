"""The call centre's API shapes: what the telephony sends and what it gets back.

Input is strict like the ticket shapes (unknown fields, wrong types and malformed numbers are
refused with the field named in Chinese, `web/validation.LABELS`).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictStr, field_validator

from jiesu.tickets.shapes import CallId, normalise_phone


class CallIn(BaseModel):
    """POST /api/v1/calls: an incoming call, routed by the telephony to one agent."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    call_id: CallId = Field(description="话务系统的通话编号（同一编号重复推送只记一次）")
    caller: StrictStr = Field(min_length=1, max_length=30, description="主叫号码")
    called: StrictStr = Field(min_length=1, max_length=30, description="被叫线路，如 12345")
    agent: StrictStr = Field(min_length=1, max_length=60, description="接听坐席的用户名")
    started_at: AwareDatetime | None = Field(None, description="来电时间（带时区），缺省为收到时")

    @field_validator("caller")
    @classmethod
    def _caller(cls, v: str) -> str:
        return normalise_phone(v)


class RecordingIn(BaseModel):
    """POST /api/v1/calls/{call_id}/recording: where the call's recording can be heard."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: StrictStr = Field(min_length=1, max_length=500, description="录音地址（http 或 https）")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.lower().startswith(("http://", "https://")) or any(c.isspace() for c in v):
            raise ValueError("须为 http:// 或 https:// 开头的地址 / an http(s) URL")
        return v


class EndIn(BaseModel):
    """POST /api/v1/calls/{call_id}/end: the call is over (optional for the telephony)."""

    model_config = ConfigDict(extra="forbid")

    ended_at: AwareDatetime | None = Field(None, description="挂机时间（带时区），缺省为收到时")


class CallOut(BaseModel):
    call_id: str
    caller: str | None  # masked unless the reader is the service centre
    called: str
    agent: str
    started_at: datetime
    ended_at: datetime | None
    ticket_id: int | None
    ticket_number: str | None
    recording_url: str | None
