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


EVERY_TIER = "*"  # `changed_tiers`: a limit every tier shares changed
NO_TIER = ""  # `changed_tiers`: orders without a tier of their own (the default tier applies)


def changed_tiers(old: Mapping[str, Any], new: Mapping[str, Any]) -> frozenset[str]:
    """The tiers whose limits differ between two pack settings: a tier added, removed or with
    another limit for a phase. `NO_TIER` when the default tier (what orders without a tier
    take) is another one or its limits changed; `EVERY_TIER` when the whistle's report-in limit
    changed, which every order may run. Tier rules are not compared: an order keeps the tier it
    was given at intake (or by a recategorisation, in its timeline)."""
    old_tiers: Mapping[str, Any] = old.get("tiers") or {}
    new_tiers: Mapping[str, Any] = new.get("tiers") or {}
    changed = {
        str(t) for t in old_tiers.keys() | new_tiers.keys() if old_tiers.get(t) != new_tiers.get(t)
    }
    default_old, default_new = old.get("default_tier"), new.get("default_tier")
    if default_old != default_new or default_new in changed:
        changed.add(NO_TIER)
    if old.get("whistle_report_limit", "30m") != new.get("whistle_report_limit", "30m"):
        changed.add(EVERY_TIER)
    return frozenset(changed)
