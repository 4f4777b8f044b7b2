"""The knowledge base's API shapes: what an author sends and what readers get back.

Input is strict like the ticket shapes (unknown fields, wrong types and oversize text are refused
with the field named in Chinese, `web/validation.LABELS`). Times go out in the city's zone,
dates as the city's days.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, StringConstraints

from jiesu.web.params import in_day_range

Keyword = Annotated[
    StrictStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)
]
Question = Annotated[
    StrictStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]
Day = Annotated[date | None, AfterValidator(in_day_range)]
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
FlagReason = Literal["wrong", "outdated", "unclear", "other"]


def _http(value: str | None) -> str | None:
    if value and (
        not value.lower().startswith(("http://", "https://")) or any(c.isspace() for c in value)
    ):
        raise ValueError("须为 http:// 或 https:// 开头的地址 / an http(s) URL")
    return value or None


class EntryIn(BaseModel):
    """A version's content as an author writes it (a new entry's draft, or the next draft)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: StrictStr = Field(min_length=1, max_length=200, description="标题：市民的问题")
    answer: StrictStr = Field("", max_length=5000, description="答复口径：话务员读给市民的话")
    category_code: StrictStr | None = Field(None, max_length=20, description="事项分类编码")
    owner: StrictStr | None = Field(
        None, max_length=40, description="主管单位编码（缺省为本人所在单位）"
    )
    keywords: list[Keyword] = Field(default_factory=list, max_length=30, description="关键词")
    questions: list[Question] = Field(
        default_factory=list, max_length=20, description="常见问法（市民怎么问）"
    )
    valid_from: Day = Field(None, description="生效日期")
    valid_to: Day = Field(None, description="失效日期（最后一天）")
    source: StrictStr | None = Field(None, max_length=300, description="政策依据")
    link: Annotated[StrictStr | None, AfterValidator(_http)] = Field(
        None, max_length=500, description="链接（http 或 https）"
    )
    change_note: StrictStr | None = Field(None, max_length=500, description="修改说明")


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: StrictStr | None = Field(None, max_length=500, description="说明（退回时必填）")


class FlagIn(BaseModel):
    """An entry reported wrong or outdated (from the call: with the order's id)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: FlagReason = Field(description="问题类型：内容有误、政策已过时、表述不清、其他")
    note: StrictStr | None = Field(None, max_length=1000, description="说明")
    ticket_id: int | None = Field(None, ge=1, le=2**63 - 1, description="来电的工单编号（id）")


class FlagResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    status: Literal["fixed", "dismissed"] = Field(description="处理结果：已修正、不采纳")
    note: StrictStr | None = Field(None, max_length=1000, description="处理说明")


# ---- output ----------------------------------------------------------------------------------


class UnitRef(BaseModel):
    id: int
    code: str
    name: str


class UserRef(BaseModel):
    username: str
    name: str


class VersionOut(BaseModel):
    number: int
    state: str
    state_name: str
    title: str
    answer: str
    category_code: str | None
    owner: UnitRef | None
    keywords: list[str]
    questions: list[str]
    valid_from: date | None
    valid_to: date | None
    source: str | None
    link: str | None
    change_note: str | None
    author: UserRef | None
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    reviewed_by: UserRef | None
    reviewed_at: datetime | None
    review_note: str | None
    published_at: datetime | None


class ChangeOut(BaseModel):
    field: str
    label: str
    before: str | list[str] | int | None
    after: str | list[str] | int | None
    added: list[str]
    removed: list[str]


class VersionChanges(VersionOut):
    changes: list[ChangeOut]  # from the version before it


class EntrySummary(BaseModel):
    code: str
    status: str
    status_name: str
    title: str
    category_code: str | None
    owner: UnitRef | None
    valid_from: date | None
    valid_to: date | None
    use_count: int
    last_used_at: datetime | None
    open_flags: int
    demo: bool
    revision: int
    updated_at: datetime
    published_at: datetime | None
    pending_state: str | None  # only for those who may see work in progress


class EntryOut(EntrySummary):
    answering: VersionOut | None  # what answers callers today
    published: VersionOut | None  # the last published (also when expired or withdrawn)
    pending: VersionOut | None  # the version being worked on, for those who may see it
    actions: list[str]  # what the reader may do now: edit, submit, recall, publish, …


class EntryPage(BaseModel):
    items: list[EntrySummary]
    total: int
    limit: int
    offset: int


class HitOut(BaseModel):
    code: str
    title: str
    version: int
    score: float
    passage: str
    marks: list[tuple[int, int]]
    field: str
    owner_unit_id: int
    category_code: str | None
    valid_to: date | None
    use_count: int


class SearchOut(BaseModel):
    query: str
    hits: list[HitOut]


class FlagOut(BaseModel):
    id: int
    entry: str  # the entry's code
    entry_title: str
    version_number: int | None
    ticket_id: int | None
    reason: str
    reason_name: str
    note: str | None
    status: str
    raised_by: UserRef | None
    raised_at: datetime
    resolved_by: UserRef | None
    resolved_at: datetime | None
    resolution_note: str | None


class FlagPage(BaseModel):
    items: list[FlagOut]
    total: int
    limit: int
    offset: int
