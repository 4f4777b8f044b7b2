"""The lifecycle table (SPEC §3): every action in every state, every refusal. Pure, no database."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from jiesu.cli import app as cli
from jiesu.tickets.lifecycle import (
    ACTIONS,
    BY_NAME,
    MAX_ROUNDS,
    OPEN,
    STATES,
    Actor,
    BadField,
    GuardFailed,
    NotAllowed,
    TicketFacts,
    UnknownAction,
    WrongState,
    decide,
    possible_after,
    render_markdown,
)

CENTRE = "C-RX"
STREET, OTHER_STREET, DISTRICT = "S11", "S12", "D1"
PATHS = {
    CENTRE: "/1/9/",
    DISTRICT: "/1/2/",
    STREET: "/1/2/4/",
    OTHER_STREET: "/1/2/5/",
    "D2": "/1/3/",
}


def actor(role: str, unit: str = CENTRE) -> Actor:
    return Actor(user_id=1, role=role, unit=unit, unit_path=PATHS[unit], is_centre=unit == CENTRE)


def facts(status: str, **kw: Any) -> TicketFacts:
    """A ticket led by STREET (the state matrix asks about the state alone, lead or not)."""
    base: dict[str, Any] = {"lead": STREET, "lead_path": PATHS[STREET], "contacted": True}
    return TicketFacts(status=status, **{**base, **kw})


# One way to take each action legitimately: who, extra facts, and the fields.
LEGAL: dict[str, tuple[Actor, dict[str, Any], dict[str, Any]]] = {
    "answer": (actor("agent"), {}, {"answer": "供暖季为11月15日至次年3月15日"}),
    "transfer": (actor("agent"), {}, {"to": "119"}),
    "reject": (actor("agent"), {}, {"reason": "litigation", "channel_advice": "请向法院起诉"}),
    "accept_with_missing": (actor("agent"), {}, {"missing": "房产证复印件", "promised_days": 5}),
    "fulfil_missing": (actor("agent"), {"promise_pending": True}, {"note": "材料已补交"}),
    "dispatch": (actor("dispatcher"), {}, {"lead": STREET}),
    "accept": (actor("handler", STREET), {}, {}),
    "request_return": (actor("handler", STREET), {}, {"reason": "不属于本辖区"}),
    "review_return": (actor("dispatcher"), {"return_pending": True}, {"approved": True}),
    "contact": (actor("handler", STREET), {}, {"note": "已电话联系诉求人"}),
    "request_extension": (actor("handler", STREET), {}, {"days": 5, "reason": "需等待施工"}),
    "review_extension": (actor("dispatcher"), {"extension_pending": True}, {"approved": True}),
    "suspend": (actor("handler", STREET), {}, {"reason": "等待诉求人提供材料"}),
    "resume": (actor("handler", STREET), {"suspended": True}, {}),
    "whistle": (actor("unit_admin", STREET), {}, {"units": ["D2"], "note": "需区城管委配合"}),
    "report": (actor("handler", "D2"), {"summoned_pending": frozenset({"D2"})}, {"note": "已派执法队"}),
    "reply": (actor("handler", STREET), {}, {"result": "solved", "content": "已到现场维修完毕并回复"}),
    "audit": (actor("dispatcher"), {}, {"passed": True}),
    "evaluate": (actor("callback_agent"), {}, {"reached": True, "solved": True, "satisfaction": "satisfied"}),
    "rate": (actor("citizen"), {}, {"solved": False, "satisfaction": "dissatisfied"}),
    "reopen": (actor("callback_agent"), {}, {"note": "诉求人反映未解决"}),
    "escalate": (actor("supervisor"), {}, {"to": DISTRICT, "reason": "超出街道事权"}),
    "urge": (actor("supervisor"), {}, {"note": "请加快办理"}),
    "supervise": (actor("supervisor"), {}, {"note": "列入督办"}),
    "merge": (actor("agent"), {}, {"master": "2026112200001"}),
    "answer_by_task": (actor("dispatcher"), {}, {"task": "2026112200002", "result": "solved", "content": "已由主动治理任务统一排查处理完毕"}),
    "recategorize": (actor("dispatcher"), {}, {"category": "0301"}),
    "close": (actor("dispatcher"), {}, {}),
    "request_exemption": (actor("unit_admin", STREET), {}, {"reason": "malicious", "note": "诉求人一月内同一诉求来电四十次，已核实"}),
    "review_exemption": (actor("supervisor"), {"exemption_pending": True}, {"approved": True}),
}  # fmt: skip


def test_every_action_has_a_legal_example() -> None:
    assert set(LEGAL) == set(BY_NAME)


@pytest.mark.parametrize("name", sorted(BY_NAME))
@pytest.mark.parametrize("state", sorted(STATES))
def test_each_action_is_allowed_exactly_in_its_states(name: str, state: str) -> None:
    who, extra, data = LEGAL[name]
    f = facts(state, **extra)
    if state in BY_NAME[name].states:
        t = decide(name, f, who, data)
        assert t.before == state and t.after in possible_after(BY_NAME[name], state)
    else:
        with pytest.raises(WrongState) as refused:
            decide(name, f, who, data)
        assert refused.value.status == 409
        assert BY_NAME[name].label in refused.value.message


def test_the_main_path_from_intake_to_close() -> None:
    path = [
        ("received", "dispatch", "dispatched"),
        ("dispatched", "accept", "accepted"),
        ("accepted", "contact", "accepted"),
        ("accepted", "reply", "replied"),
        ("replied", "audit", "audited"),
        ("audited", "evaluate", "evaluated"),
        ("evaluated", "close", "closed"),
    ]
    for before, name, after in path:
        who, extra, data = LEGAL[name]
        f = facts(before, **extra) if before != "received" else TicketFacts(status="received")
        assert decide(name, f, who, data).after == after


def test_return_approved_goes_back_to_pending_dispatch() -> None:
    f = facts("accepted", return_pending=True)
    assert (
        decide("review_return", f, actor("dispatcher"), {"approved": True}).after
        == "pending_dispatch"
    )


def test_return_rejected_leaves_the_ticket_with_the_unit() -> None:
    for state in ("dispatched", "accepted"):
        f = facts(state, return_pending=True)
        t = decide("review_return", f, actor("dispatcher"), {"approved": False})
        assert t.after == state


def test_a_second_return_request_waits_for_the_first() -> None:
    with pytest.raises(GuardFailed, match="退单"):
        decide(
            "request_return", facts("accepted", return_pending=True), *LEGAL["request_return"][::2]
        )


def test_audit_sends_a_poor_reply_back_and_needs_a_note() -> None:
    f = facts("replied")
    assert (
        decide("audit", f, actor("dispatcher"), {"passed": False, "note": "未说明处理结果"}).after
        == "accepted"
    )
    with pytest.raises(BadField, match="note") as bad:
        decide("audit", f, actor("dispatcher"), {"passed": False})
    assert bad.value.field == "note"


def test_reply_needs_a_contact_first_and_every_summoned_unit_reported() -> None:
    who, _, data = LEGAL["reply"]
    with pytest.raises(GuardFailed, match="联系"):
        decide("reply", facts("accepted", contacted=False), who, data)
    with pytest.raises(GuardFailed, match="D2"):
        decide("reply", facts("accepted", summoned_pending=frozenset({"D2"})), who, data)
    with pytest.raises(GuardFailed, match="挂起"):
        decide("reply", facts("accepted", suspended=True), who, data)


def test_a_not_solvable_reply_must_say_why() -> None:
    who = LEGAL["reply"][0]
    data = {"result": "not_solvable", "content": "经核实超出现行政策规定范围"}
    with pytest.raises(BadField, match="reason") as bad:
        decide("reply", facts("accepted"), who, data)
    assert bad.value.field == "reason"
    assert decide("reply", facts("accepted"), who, {**data, "reason": "policy"}).after == "replied"


def test_evaluation_unreachable_or_complete() -> None:
    who = actor("callback_agent")
    assert decide("evaluate", facts("audited"), who, {"reached": False}).after == "evaluated"
    with pytest.raises(BadField) as missing:
        decide("evaluate", facts("audited"), who, {"reached": True, "solved": True})
    assert missing.value.field == "satisfaction"
    with pytest.raises(BadField) as bad:
        decide(
            "evaluate",
            facts("audited"),
            who,
            {"reached": True, "solved": True, "satisfaction": "ok"},
        )
    assert bad.value.field == "satisfaction"


def test_reopen_counts_rounds_and_escalates_beyond_the_third() -> None:
    who, _, data = LEGAL["reopen"]
    for current in range(1, MAX_ROUNDS + 1):
        t = decide("reopen", facts("evaluated", round=current), who, data)
        assert t.round == current + 1 and t.after == "dispatched"
        assert t.escalates == (current + 1 > MAX_ROUNDS)


def test_suspend_and_resume_toggle_the_clock() -> None:
    who = actor("handler", STREET)
    assert decide("suspend", facts("accepted"), who, {"reason": "等待第三方检测"}).effects
    with pytest.raises(GuardFailed):
        decide("suspend", facts("accepted", suspended=True), who, {"reason": "再次挂起原因"})
    with pytest.raises(GuardFailed):
        decide("resume", facts("accepted"), who, {})


@pytest.mark.parametrize(
    ("name", "who"),
    [
        ("dispatch", actor("handler", STREET)),  # units do not dispatch
        ("accept", actor("agent")),  # the centre does not sign for a unit
        ("evaluate", actor("dispatcher")),  # callbacks are the callback agents'
        ("urge", actor("handler", STREET)),
        ("reply", actor("callback_agent")),
    ],
)
def test_a_role_that_may_never_take_the_action_is_403(name: str, who: Actor) -> None:
    _, extra, data = LEGAL[name]
    with pytest.raises(NotAllowed) as refused:
        decide(name, facts(next(iter(BY_NAME[name].states)), **extra), who, data)
    assert refused.value.status == 403


@pytest.mark.parametrize("name", ["accept", "contact", "reply", "request_return", "whistle"])
def test_another_units_handler_cannot_act_on_the_ticket(name: str) -> None:
    _, extra, data = LEGAL[name]
    state = "dispatched" if name in ("accept", "request_return") else "accepted"
    with pytest.raises(NotAllowed):
        decide(name, facts(state, **extra), actor("unit_admin", OTHER_STREET), data)


def test_a_unit_cannot_act_on_a_ticket_nobody_leads_yet() -> None:
    f = TicketFacts(status="pending_dispatch")
    with pytest.raises(NotAllowed):
        decide("contact", f, actor("handler", STREET), {"note": "已电话联系诉求人"})


def test_a_co_handler_signs_without_moving_the_ticket() -> None:
    f = facts("dispatched", co_handlers=frozenset({OTHER_STREET}))
    assert decide("accept", f, actor("handler", OTHER_STREET)).after == "dispatched"
    assert decide("accept", f, actor("handler", STREET)).after == "accepted"


def test_only_summoned_units_that_have_not_reported_may_report() -> None:
    who, _, data = LEGAL["report"]
    with pytest.raises(NotAllowed):
        decide("report", facts("accepted"), who, data)


def test_a_district_supervises_its_streets_but_not_another_districts() -> None:
    f = facts("accepted")
    district = Actor(2, "supervisor", DISTRICT, PATHS[DISTRICT], is_centre=False)
    other = Actor(3, "supervisor", "D2", PATHS["D2"], is_centre=False)
    assert decide("urge", f, district, {"note": "请加快办理"}).after == "accepted"
    with pytest.raises(NotAllowed):
        decide("urge", f, other, {"note": "请加快办理"})


def test_a_unit_admin_may_escalate_its_own_ticket_only() -> None:
    data = {"reason": "超出街道事权"}
    assert (
        decide("escalate", facts("accepted"), actor("unit_admin", STREET), data).after
        == "dispatched"
    )
    with pytest.raises(NotAllowed):
        decide("escalate", facts("accepted"), actor("unit_admin", DISTRICT), data)


@pytest.mark.parametrize(
    ("name", "data", "field"),
    [
        ("reject", {"channel_advice": "请向法院起诉"}, "reason"),
        ("reject", {"reason": "nonsense", "channel_advice": "请向法院起诉"}, "reason"),
        ("transfer", {"to": "911"}, "to"),
        ("request_extension", {"days": 0, "reason": "需等待施工"}, "days"),
        ("request_extension", {"days": "5", "reason": "需等待施工"}, "days"),
        ("review_return", {"approved": "yes"}, "approved"),
        ("whistle", {"units": [], "note": "需配合处理"}, "units"),
        ("whistle", {"units": ["D2", "D2"], "note": "需配合处理"}, "units"),
        ("contact", {"note": "好"}, "note"),
        ("reply", {"result": "solved", "content": "x" * 5000}, "content"),
        ("dispatch", {"lead": STREET, "surprise": 1}, "surprise"),
    ],
)
def test_a_missing_or_bad_field_is_422_naming_it(
    name: str, data: dict[str, Any], field: str
) -> None:
    who, extra, _ = LEGAL[name]
    state = next(s for s in sorted(BY_NAME[name].states))
    with pytest.raises(BadField) as bad:
        decide(name, facts(state, **extra), who, data)
    assert bad.value.status == 422 and bad.value.field == field


def test_an_unknown_action_is_404() -> None:
    with pytest.raises(UnknownAction):
        decide("teleport", facts("accepted"), actor("admin"), {})


def test_open_states_and_the_table_agree_with_the_spec() -> None:
    assert set(STATES) == {
        "received", "answered", "transferred", "rejected", "pending_dispatch", "dispatched",
        "accepted", "replied", "audited", "evaluated", "merged", "closed",
    }  # fmt: skip
    assert "closed" not in OPEN and "merged" not in OPEN
    # Only the assessment's exemption (考核剔除) reaches a closed order, and it keeps the state.
    exemption = {"request_exemption", "review_exemption"}
    assert all(BY_NAME[a].next == "=" for a in exemption)
    terminal = {
        s for s in STATES if not any(s in a.states for a in ACTIONS if a.name not in exemption)
    }
    assert terminal == {"closed", "merged"}  # merged closes with its master


def test_docs_lifecycle_md_is_generated_from_the_table() -> None:
    result = CliRunner().invoke(cli, ["docs", "lifecycle", "--check"])
    assert result.exit_code == 0, "docs/lifecycle.md is stale: run `jiesu docs lifecycle`"
    text = render_markdown()
    for a in ACTIONS:
        assert f"| `{a.name}` | {a.label} |" in text
    assert "stateDiagram-v2" in text
