"""What intake intelligence answers (API output): the suggestions for one new ticket, each with
its confidence and its reason, and what was done with them."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Ranked(BaseModel):
    code: str
    name: str
    confidence: float


class LabelSuggestion(BaseModel):
    """A classifier's answer: the best label and the runners-up."""

    code: str
    name: str
    confidence: float = Field(description="0–1")
    ranked: list[Ranked] = Field(default_factory=list)
    model: str | None = Field(None, description="model name and version")


class PlaceSuggestion(BaseModel):
    district: str | None = None
    district_name: str | None = None
    street: str | None = None
    street_name: str | None = None
    community: str | None = None
    confidence: float = 0.0
    source: str = Field(description="address | point | given")
    evidence: list[str] = Field(default_factory=list)
    candidates: list[Ranked] = Field(default_factory=list, description="streets, when ambiguous")


class LeadSuggestion(BaseModel):
    unit: str
    name: str
    reason: str
    confidence: float | None = Field(
        None,
        description="0–1: the category's confidence (1 when given) times the place's when the "
        "catalogue routes by place and the place was resolved, not given",
    )


class DuplicateCandidate(BaseModel):
    id: int
    number: str
    title: str
    score: float
    kind: str = Field(description="exact | near")
    reasons: list[str] = Field(default_factory=list)


class UrgencySuggestion(BaseModel):
    level: str = Field(description="emergency | urgent | normal")
    signs: list[str] = Field(default_factory=list)
    tier: str | None = None
    transfer: str | None = Field(None, description="110 | 119 | 120 | 122")
    reason: str | None = None


class IntakeAdvice(BaseModel):
    """Suggestions at intake (SPEC §8) and whether the ticket was dispatched on them."""

    category: LabelSuggestion | None = None
    request_type: LabelSuggestion | None = None
    place: PlaceSuggestion | None = None
    lead: LeadSuggestion | None = None
    duplicates: list[DuplicateCandidate] = Field(default_factory=list)
    urgency: UrgencySuggestion | None = None
    applied: list[str] = Field(
        default_factory=list, description="what intake took from the suggestions"
    )
    auto_dispatched: bool = False
    why_not_automatic: list[str] = Field(default_factory=list)
    missing: dict[str, str] = Field(
        default_factory=dict,
        description="why a suggestion is absent, by field (category, request_type, place, lead)",
    )
