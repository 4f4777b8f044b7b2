"""Issue 13 §3: what the lifecycle refuses, and where an order goes when nothing names the unit.

Pure: `decide()` and the escalation rules, no database. Fields that another field (or the
ticket's state) makes required are the field stage's answer (422 naming the field), never a
guard's 409; escalation goes up, never down or sideways; every unit of both packs has somewhere
to go after its third round.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from jiesu.citypack.parse import read_pack
from jiesu.tickets.lifecycle import (
    SATISFIED,
    Actor,
    BadField,
    GuardFailed,
    TicketFacts,
    UnitRef,
    available,
    decide,
    escalation_refusal,
    level_above,
)

ROOT = Path(__file__).parent.parent
PACKS = {"tiny": ROOT / "tests" / "packs" / "tiny", "beijing": ROOT / "citypacks" / "beijing"}
CENTRE, STREET, DISTRICT = "C-RX", "S11", "D1"
PATHS = {CENTRE: "/1/9/", DISTRICT: "/1/2/", STREET: "/1/2/4/"}


def actor(role: str, unit: str = CENTRE) -> Actor:
    return Actor(user_id=1, role=role, unit=unit, unit_path=PATHS[unit], is_centre=unit == CENTRE)


def facts(status: str, **kw: Any) -> TicketFacts:
    base: dict[str, Any] = {"lead": STREET, "lead_path": PATHS[STREET], "contacted": True}
    return TicketFacts(status=status, **{**base, **kw})


def refused_field(name: str, f: TicketFacts, who: Actor, data: dict[str, Any]) -> str | None:
    with pytest.raises(BadField) as bad:
        decide(name, f, who, data)
    assert bad.value.status == 422
    return bad.value.field


# ---- 1. a field another field makes required is a 422 naming it --------------------------------

REPLY = {"content": "经核实超出现行政策规定范围，已向诉求人解释"}


def test_a_not_solvable_reply_without_its_reason_is_422_naming_reason() -> None:
    who = actor("handler", STREET)
    data = {**REPLY, "result": "not_solvable"}
    assert refused_field("reply", facts("accepted"), who, data) == "reason"
    # The field stage comes before the guards: even before any contact, the answer is the 422.
    assert refused_field("reply", facts("accepted", contacted=False), who, data) == "reason"
    assert decide("reply", facts("accepted"), who, {**data, "reason": "policy"}).after == "replied"


@pytest.mark.parametrize("result", ["solved", "partly_solved"])
def test_a_reply_whose_reason_contradicts_its_result_is_422(result: str) -> None:
    data = {**REPLY, "result": result, "reason": "policy"}
    assert refused_field("reply", facts("accepted"), actor("handler", STREET), data) == "reason"


def test_sending_a_reply_back_without_a_note_is_422_naming_note() -> None:
    assert (
        refused_field("audit", facts("replied"), actor("dispatcher"), {"passed": False}) == "note"
    )
    assert decide("audit", facts("replied"), actor("dispatcher"), {"passed": True}).after == (
        "audited"
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"reached": True, "solved": True}, "satisfaction"),
        ({"reached": True, "satisfaction": "satisfied"}, "solved"),
        ({"reached": True}, "solved"),
    ],
)
def test_a_reached_callback_without_its_answers_is_422_naming_the_field(
    data: dict[str, Any], field: str
) -> None:
    assert refused_field("evaluate", facts("audited"), actor("callback_agent"), data) == field


# ---- 5. what makes no sense is refused ---------------------------------------------------------


def test_escalating_a_pending_dispatch_order_needs_to() -> None:
    # A returned order has no lead: "the level above" would be a guess (it was the district of
    # the street whose return was just approved).
    f = TicketFacts(status="pending_dispatch")
    who, reason = actor("supervisor"), {"reason": "跨区协调，超出街道事权"}
    assert refused_field("escalate", f, who, reason) == "to"
    assert decide("escalate", f, who, {**reason, "to": DISTRICT}).after == "dispatched"
    # An order with a lead may still leave `to` out: the level above is known.
    assert decide("escalate", facts("accepted"), who, reason).after == "dispatched"


@pytest.mark.parametrize("level", sorted(SATISFIED))
def test_an_order_rated_solved_and_satisfied_is_reopened_only_by_a_supervisor_with_a_reason(
    level: str,
) -> None:
    f = facts("evaluated", solved=True, satisfaction=level)
    note = {"note": "督办复核发现问题仍存在"}
    assert refused_field("reopen", f, actor("callback_agent"), note) == "reason"
    with pytest.raises(GuardFailed, match="督办员"):
        decide("reopen", f, actor("callback_agent"), {**note, "reason": "现场复核仍未修复"})
    assert refused_field("reopen", f, actor("supervisor"), note) == "reason"
    t = decide("reopen", f, actor("supervisor"), {**note, "reason": "现场复核仍未修复"})
    assert t.after == "dispatched" and t.round == 2 and t.data["reason"] == "现场复核仍未修复"
    offered = {a.name for a in available(f, actor("callback_agent"))}
    assert "reopen" not in offered and "close" in offered
    assert "reopen" in {a.name for a in available(f, actor("supervisor"))}


@pytest.mark.parametrize(
    ("solved", "satisfaction"),
    [(False, "satisfied"), (True, "dissatisfied"), (True, "very_dissatisfied"), (None, None)],
)
def test_an_unsolved_unhappy_or_unreached_order_is_reopened_as_before(
    solved: bool | None, satisfaction: str | None
) -> None:
    f = facts("evaluated", solved=solved, satisfaction=satisfaction)
    t = decide("reopen", f, actor("callback_agent"), {"note": "诉求人反映仍未解决"})
    assert t.after == "dispatched" and t.round == 2


# ---- escalation goes up -------------------------------------------------------------------------

CITY = UnitRef("C", "city", "/C/")
D1 = UnitRef("D1", "district", "/C/D1/")
D2 = UnitRef("D2", "district", "/C/D2/")
S11 = UnitRef("S11", "street", "/C/D1/S11/")
S12 = UnitRef("S12", "street", "/C/D1/S12/")
M11 = UnitRef("M11", "community", "/C/D1/S11/M11/")
D1_JW = UnitRef("D1-JW", "department", "/C/D1/D1-JW/")
C_ZJW = UnitRef("C-ZJW", "department", "/C/C-ZJW/")
C_RL = UnitRef("C-RL", "company", "/C/C-RL/")
C_JW = UnitRef("C-JW", "department", "/C/C-JW/")


@pytest.mark.parametrize(
    ("lead", "target"),
    [
        (D1, S11),  # down: a street from a district
        (D1, M11),
        (S11, M11),
        (S11, S12),  # sideways
        (D1, D2),
        (D1, D1_JW),  # a district's own department hangs below it
        (C_ZJW, C_RL),  # one city unit to another
        (C_ZJW, D1),  # down from the city's level
    ],
)
def test_escalating_down_or_sideways_is_refused(lead: UnitRef, target: UnitRef) -> None:
    why = escalation_refusal(lead, target, "C-JW")
    assert why is not None and target.code in why and "提级" in why


@pytest.mark.parametrize(
    ("lead", "target"),
    [(S11, D1), (M11, S11), (M11, D1), (S11, D1_JW), (D1_JW, D1), (D1_JW, C_ZJW), (S11, C_ZJW),
     (D1, C_ZJW), (C_ZJW, C_JW), (C_RL, C_JW), (D1, C_JW)],
)  # fmt: skip
def test_escalating_up_or_to_the_escalation_unit_is_allowed(lead: UnitRef, target: UnitRef) -> None:
    assert escalation_refusal(lead, target, "C-JW") is None


def test_the_level_above_a_unit_under_the_city_is_the_escalation_unit() -> None:
    assert level_above(S11, D1, "C-JW") == "D1"
    assert level_above(D1, CITY, "C-JW") == "C-JW"
    assert level_above(C_ZJW, CITY, "C-JW") == "C-JW"
    assert level_above(C_JW, CITY, "C-JW") is None  # the top keeps it
    assert level_above(C_ZJW, CITY, None) is None  # a pack without one: the lead keeps it


def _refs(pack_dir: Path) -> tuple[dict[str, UnitRef], dict[str, str | None], dict[str, Any]]:
    pack = read_pack(pack_dir)
    assert pack.ok, pack.errors[:3]
    rows = {u.code: u for u in pack.units}

    def path(code: str) -> str:
        parent = rows[code].parent
        return (path(parent) if parent else "/") + f"{code}/"

    refs = {code: UnitRef(code, u.kind, path(code)) for code, u in rows.items()}
    return refs, {code: u.parent for code, u in rows.items()}, pack.settings


@pytest.mark.parametrize("pack", sorted(PACKS))
def test_every_unit_of_every_kind_has_somewhere_valid_to_go_after_round_three(pack: str) -> None:
    refs, parents, settings = _refs(PACKS[pack])
    top, centre = str(settings["escalation_unit"]), str(settings["service_centre_unit"])
    kinds = set()
    for code, unit in refs.items():
        if unit.kind == "city" or code == centre:  # neither ever leads an order
            continue
        kinds.add(unit.kind)
        parent = parents[code]
        target = level_above(unit, refs[parent] if parent else None, top)
        if code == top:
            assert target is None  # the top keeps its order for another round
            continue
        assert target is not None, code
        assert target in refs and target != code, code
        assert refs[target].kind != "city" and target != centre, (code, target)
        assert escalation_refusal(unit, refs[target], top) is None, (code, target)
    expected = {"tiny": {"district", "street", "community", "department", "company"},
                "beijing": {"district", "street", "department", "company"}}  # fmt: skip
    assert kinds >= expected[pack]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("S11", "not a department directly under the city"),
        ("D1-JW", "not a department directly under the city"),  # under a district
        ("NOPE", "not a department directly under the city"),
        ("C-RX", "is the service centre"),
        (None, "missing setting 'escalation_unit'"),
    ],
)
def test_the_packs_escalation_unit_is_checked_when_the_pack_is_read(
    tmp_path: Path, value: str | None, reason: str
) -> None:
    root = tmp_path / "tiny"
    shutil.copytree(PACKS["tiny"], root)
    text = (root / "pack.yaml").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("escalation_unit:"))
    new = "" if value is None else f"escalation_unit: {value}"
    (root / "pack.yaml").write_text(text.replace(line, new), encoding="utf-8")
    errors = read_pack(root).errors
    assert any(e.file == "pack.yaml" and reason in e.reason for e in errors), errors
