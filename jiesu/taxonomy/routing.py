"""Routing by the dispatch catalogue (派单目录): category + place → the lead unit, with the reason.

Pure: works over plain rows, so the dispatcher's suggestion, automatic dispatch and the demo
history all route the same way. The most specific rule wins: a longer category code beats its
parent's, and a rule for the ticket's district beats the city-wide one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    category: str
    route: str  # street | district_function | unit
    function: str | None = None
    unit: str | None = None
    district: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class UnitInfo:
    code: str
    kind: str
    parent: str | None
    function: str | None


@dataclass(frozen=True)
class Route:
    unit: str
    rule: Rule
    reason: str


class Catalogue:
    def __init__(self, rules: list[Rule], units: Mapping[str, UnitInfo]) -> None:
        self.rules = {(r.category, r.district): r for r in rules}
        self.units = units
        self.by_function: dict[tuple[str | None, str], str] = {}
        for u in units.values():
            if u.function:
                self.by_function.setdefault((u.parent, u.function), u.code)

    def rule_for(self, category: str, district: str | None) -> Rule | None:
        for length in range(len(category), 0, -1):
            prefix = category[:length]
            rule = self.rules.get((prefix, district)) if district else None
            if rule is None:
                rule = self.rules.get((prefix, None))
            if rule is not None:
                return rule
        return None

    def route(self, category: str, district: str | None, street: str | None) -> Route | None:
        """The lead unit for a ticket, or None when the place is not known well enough."""
        rule = self.rule_for(category, district)
        if rule is None:
            return None
        if rule.route == "unit" and rule.unit:
            return Route(rule.unit, rule, rule.note or "派单目录指定单位")
        if rule.route == "street":
            if street is None:
                return None
            return Route(street, rule, rule.note or "直派属地街乡")
        if rule.route == "district_function" and rule.function:
            unit = self.by_function.get((district, rule.function)) if district else None
            if unit is None:
                city = next((u.code for u in self.units.values() if u.kind == "city"), None)
                unit = self.by_function.get((city, rule.function))
            if unit is None:
                return None
            return Route(unit, rule, rule.note or f"派属地职能部门（{rule.function}）")
        return None
