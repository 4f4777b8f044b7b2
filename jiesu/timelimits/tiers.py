"""Handling tiers (SPEC §4): which tier an order gets, and that tier's phase limits. Pure.

A city pack lists its tiers (`tiers`: tier -> phase -> duration) and ordered `tier_rules`; each
category may name a tier of its own (or inherit its parent's: the caller resolves that).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jiesu.citypack.parse import PHASES, Duration


def rule_matches(
    rule: Mapping[str, Any], *, category_code: str | None, request_type: str | None, urgent: bool
) -> bool:
    """Whether every condition the rule names holds. A rule with no conditions matches all.

    `category` is a code prefix: rule 01 matches category 01 and everything under it (0101,
    010101 …), as category codes extend their parent's code.
    """
    if "category" in rule:
        prefix = str(rule["category"])
        if category_code is None or not str(category_code).startswith(prefix):
            return False
    if "request_type" in rule and rule["request_type"] != request_type:
        return False
    return not ("urgent" in rule and bool(rule["urgent"]) != urgent)


def choose_tier(
    rules: Sequence[Mapping[str, Any]],
    *,
    category_code: str | None,
    request_type: str | None,
    urgent: bool,
    category_tier: str | None,
    default_tier: str,
) -> str:
    """The first matching rule's tier; else the category's own (or inherited) tier; else the
    pack's default tier."""
    for rule in rules:
        if rule_matches(
            rule, category_code=category_code, request_type=request_type, urgent=urgent
        ):
            return str(rule["tier"])
    return category_tier or default_tier


def phase_limits(tiers: Mapping[str, Mapping[str, str]], tier: str) -> dict[str, Duration]:
    """The tier's limit for each phase (accept 签收, contact 联系, complete 办结), parsed.

    Raises KeyError for an unknown tier or a missing phase, ValueError for a bad duration: a
    validated pack has neither.
    """
    try:
        limits = tiers[tier]
    except KeyError:
        raise KeyError(f"unknown tier {tier!r} (one of {', '.join(map(str, tiers))})") from None
    result: dict[str, Duration] = {}
    for phase in PHASES:
        if phase not in limits:
            raise KeyError(f"tier {tier}: missing phase {phase!r}")
        result[phase] = Duration.parse(limits[phase])
    return result
