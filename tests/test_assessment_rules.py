"""The assessment's rules (SPEC §5) on hand-built timelines: facts, every rate, rankings. Pure."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jiesu.assessment.facts import PAUSED, Order, order_facts, parts
from jiesu.assessment.ranking import Entry, rank
from jiesu.assessment.rates import BY_KEY, composite, rate, rates, weights_for
from jiesu.citypack.parse import Duration
from jiesu.timelimits.calendar import WorkCalendar
from jiesu.timelimits.clocks import Clocks
from jiesu.timelimits.deadlines import Step

TZ = ZoneInfo("Asia/Shanghai")
CLOCKS = Clocks(WorkCalendar(), TZ)
LIMITS = {"accept": Duration(1, "h"), "contact": Duration(2, "h"), "complete": Duration(24, "h")}
SCORES = {"very_satisfied": 1.0, "satisfied": 1.0, "basically_satisfied": 0.8,
          "dissatisfied": 0.0, "very_dissatisfied": 0.0}  # fmt: skip
# Monday 1 June 2026, 10:00 in Beijing: a working day.
T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
H = timedelta(hours=1)


class Timeline:
    """A timeline written as the actors' moves, hours after T0."""

    def __init__(self) -> None:
        self.steps: list[Step] = [Step("receive", T0 - H, "C-RX", {"channel": "phone"})]

    def __call__(self, hours: float, action: str, unit: str | None = "C-RX", **data: Any
                 ) -> Timeline:  # fmt: skip
        self.steps.append(Step(action, T0 + hours * H, unit, data))
        return self

    def handled(self, unit: str = "S11", *, at: float = 0, reply: float = 10,
                satisfaction: str = "very_satisfied", solved: bool = True) -> Timeline:  # fmt: skip
        self(at, "dispatch", lead=unit)(at + 0.5, "accept", unit)(at + 1, "contact", unit)
        self(at + reply, "reply", unit, result="solved")(at + reply + 1, "audit", passed=True)
        return self(at + reply + 2, "evaluate", reached=True, solved=solved,
                    satisfaction=satisfaction)  # fmt: skip

    def facts(self) -> dict[str, dict[str, int]]:
        order = Order(self.steps, LIMITS, "C-RX")
        return {f.unit: dict(f.counters) for f in order_facts(order, clocks=CLOCKS, tz=TZ)}


def test_the_main_path_on_time_counts_everywhere() -> None:
    f = Timeline().handled().facts()
    assert f["S11"] == {
        "led": 1, "counted": 1, "accepted_on_time": 1, "responded": 1, "replied": 1,
        "replied_on_time": 1, "audited": 1, "callbacks": 1, "evaluated": 1, "solved": 1,
        "satisfied_n": 1, "level_very_satisfied": 1, "handling_seconds": 36_000,
    }  # fmt: skip
    assert f["C-RX"] == {"received": 1, "dispatched": 1}


def test_late_signing_contact_and_reply() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(1.5, "accept", "S11")(2.5, "contact", "S11")
    t(30, "reply", "S11", result="solved")
    f = t.facts()["S11"]
    assert "accepted_on_time" not in f and "responded" not in f
    assert f["replied"] == 1 and f["replied_late"] == 1 and "replied_on_time" not in f


def test_a_contact_exactly_at_the_limit_is_in_time() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(1, "accept", "S11")(2, "contact", "S11")
    assert t.facts()["S11"]["responded"] == 1
    assert t.facts()["S11"]["accepted_on_time"] == 1


def test_suspended_time_does_not_count_against_the_reply() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(0.5, "accept", "S11")(1, "contact", "S11")
    t(2, "suspend", "S11", reason="等待诉求人提供材料")(12, "resume", "S11")
    t(30, "reply", "S11", result="solved")  # 30 h after dispatch, 10 h of them suspended
    assert t.facts()["S11"]["replied_on_time"] == 1


def test_an_approved_extension_moves_the_limit_and_is_counted() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(0.5, "accept", "S11")(1, "contact", "S11")
    t(5, "request_extension", "S11", days=1, reason="等待施工")
    t(6, "review_extension", approved=True, days=1)
    t(30, "reply", "S11", result="solved")  # past 24 h, within 24 h + 1 working day
    f = t.facts()["S11"]
    assert f["extended"] == 1 and f["replied_on_time"] == 1


def test_a_rejected_extension_leaves_the_reply_late() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(0.5, "accept", "S11")(1, "contact", "S11")
    t(5, "request_extension", "S11", days=1, reason="等待施工")(6, "review_extension",
                                                                  approved=False)  # fmt: skip
    t(30, "reply", "S11", result="solved")
    f = t.facts()["S11"]
    assert "extended" not in f and f["replied_late"] == 1


def test_an_approved_return_counts_against_dispatch_not_against_the_unit() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(0.2, "request_return", "S11", reason="不在辖区")
    t(0.5, "review_return", approved=True).handled("S12", at=1)
    f = t.facts()
    assert f["S11"] == {"led": 1, "return_requested": 1, "return_approved": 1}
    assert f["S12"]["counted"] == 1 and f["S12"]["responded"] == 1
    assert f["C-RX"]["misdispatched"] == 1
    assert [p.unit for p in parts(t.steps)] == ["S11", "S12"]


def test_a_rejected_return_stays_with_the_unit_and_its_clock_ran() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(0.2, "request_return", "S11", reason="不在辖区")
    t(3, "review_return", approved=False)(3.5, "accept", "S11")(4, "contact", "S11")
    f = t.facts()["S11"]
    assert f["return_requested"] == 1 and f["return_rejected"] == 1 and f["counted"] == 1
    assert "accepted_on_time" not in f and "responded" not in f
    assert "misdispatched" not in t.facts()["C-RX"]


def test_only_the_last_rounds_evaluation_counts_and_the_reopen_is_counted() -> None:
    t = Timeline().handled(solved=False, satisfaction="dissatisfied")
    first = t.facts()["S11"]
    assert first["evaluated"] == 1 and "solved" not in first and first["dissatisfied"] == 1
    t(20, "reopen", note="诉求人反映未解决", round=2)
    pending = t.facts()["S11"]
    assert pending["reopened"] == 1 and "evaluated" not in pending and "callbacks" not in pending
    assert "replied" not in pending  # the new round has not replied yet
    assert pending["responded"] == 1  # the response is the first round's
    t(20.5, "accept", "S11")(21, "contact", "S11")(30, "reply", "S11", result="solved")
    t(31, "audit", passed=True)(32, "evaluate", reached=True, solved=True,
                                satisfaction="basically_satisfied")  # fmt: skip
    f = t.facts()["S11"]
    assert (f["evaluated"], f["solved"], f["level_basically_satisfied"], f["reopened"]) == (
        1, 1, 1, 1)  # fmt: skip
    assert "level_dissatisfied" not in f  # the first round's level no longer counts
    assert "dissatisfied" not in f and f["replied_on_time"] == 1


def test_an_unreachable_callback_is_a_callback_but_not_an_evaluation() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(0.5, "accept", "S11")(1, "contact", "S11")
    t(10, "reply", "S11", result="solved")(11, "audit", passed=True)(12, "evaluate", reached=False)
    f = t.facts()["S11"]
    assert f["callbacks"] == 1 and f["audited"] == 1
    assert not {"evaluated", "solved", "satisfied_n"} & f.keys()
    assert not any(k.startswith("level_") for k in f)


def test_a_citizen_rating_counts_as_an_evaluation() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(0.5, "accept", "S11")(1, "contact", "S11")
    t(10, "reply", "S11", result="solved")(11, "audit", passed=True)
    t(12, "rate", None, solved=False, satisfaction="very_dissatisfied")
    f = t.facts()["S11"]
    assert f["evaluated"] == 1 and "solved" not in f and f["dissatisfied"] == 1
    assert f["satisfied_n"] == 1 and f["level_very_dissatisfied"] == 1


def test_a_reply_sent_back_does_not_stand() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(0.5, "accept", "S11")(1, "contact", "S11")
    t(10, "reply", "S11", result="solved")(11, "audit", passed=False, note="回复过于简单")
    assert "replied" not in t.facts()["S11"]
    t(28, "reply", "S11", result="solved")
    f = t.facts()["S11"]
    assert f["replied"] == 1 and f["replied_late"] == 1
    assert f["handling_seconds"] == 28 * 3600


def test_an_approved_exemption_takes_the_order_out_of_the_rates() -> None:
    t = Timeline().handled(solved=False, satisfaction="very_dissatisfied")
    t(20, "request_exemption", "S11", reason="malicious", note="一月内同一诉求来电四十次")
    assert t.facts()["S11"]["counted"] == 1  # asked, not yet approved
    t(21, "review_exemption", approved=True)
    f = t.facts()["S11"]
    assert f["exempted"] == 1 and "counted" not in f and "evaluated" not in f


def test_a_rejected_exemption_leaves_the_order_counted() -> None:
    t = Timeline().handled()(20, "request_exemption", "S11", reason="unreasonable", note="x" * 10)
    t(21, "review_exemption", approved=False)
    f = t.facts()["S11"]
    assert f["counted"] == 1 and "exempted" not in f


def test_a_merged_repeat_counts_only_at_intake() -> None:
    t = Timeline()(0, "merge", master="2026060100001", master_id=1)
    assert t.facts() == {"C-RX": {"received": 1, "merged": 1}}


def test_intake_outcomes_count_for_the_centre() -> None:
    assert Timeline()(0, "answer", answer="供暖季为11月15日起").facts()["C-RX"]["answered"] == 1
    assert Timeline()(0, "transfer", to="119").facts()["C-RX"]["transferred"] == 1
    assert Timeline()(0, "reject", reason="litigation").facts()["C-RX"]["rejected"] == 1


def test_an_escalated_order_counts_for_the_level_above() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(0.5, "accept", "S11")
    t(3, "escalate", "S11", to="D1", reason="超出街道事权", **{"from": "S11"})
    t(3.5, "accept", "D1")(4, "contact", "D1")(20, "reply", "D1", result="solved")
    f = t.facts()
    assert f["S11"] == {"led": 1, "escalated_away": 1}
    assert f["D1"]["counted"] == 1 and f["D1"]["responded"] == 1
    assert f["D1"]["replied_on_time"] == 1


def test_a_redispatch_back_to_the_same_unit_is_one_fact_judged_on_the_part_that_stands() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(0.2, "request_return", "S11", reason="不在辖区")
    t(0.5, "review_return", approved=True)(5, "dispatch", lead="S11")(5.5, "accept", "S11")
    t(6, "contact", "S11")
    f = t.facts()["S11"]
    assert f["led"] == 1 and f["return_approved"] == 1 and f["counted"] == 1
    assert f["responded"] == 1 and f["accepted_on_time"] == 1  # from the second dispatch


def test_urges_and_supervision_while_leading() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(1, "urge", note="请加快")(2, "urge", note="再催")
    t(3, "supervise", note="列入督办")
    f = t.facts()["S11"]
    assert f["urged"] == 2 and f["supervised"] == 1


def test_the_day_is_the_city_local_day_the_unit_got_it() -> None:
    late_night = datetime(2026, 5, 31, 15, 30, tzinfo=UTC)  # 23:30 in Beijing
    steps = [Step("receive", late_night, "C-RX", {}),
             Step("dispatch", late_night + 2 * H, "C-RX", {"lead": "S11"})]  # fmt: skip
    facts = order_facts(Order(steps, LIMITS, "C-RX"), clocks=CLOCKS, tz=TZ)
    days = {f.unit: f.day for f in facts}
    assert days == {"C-RX": date(2026, 5, 31), "S11": date(2026, 6, 1)}


def test_no_tier_limits_means_no_counted_rates() -> None:
    t = Timeline().handled()
    facts = order_facts(Order(t.steps, None, "C-RX"), clocks=CLOCKS, tz=TZ)
    s11 = next(f for f in facts if f.unit == "S11")
    assert s11.get("led") == 1 and s11.get("counted") == 0


# ---- rates ---------------------------------------------------------------------------------------

TOTALS = {
    "led": 50, "counted": 40, "responded": 38, "accepted_on_time": 39, "evaluated": 20,
    "solved": 15, "level_very_satisfied": 10, "level_satisfied": 5, "level_basically_satisfied": 3,
    "level_dissatisfied": 2, "replied": 30, "replied_on_time": 27,
    "replied_late": 3, "overdue_open": 1, "extended": 4, "return_requested": 6,
    "return_approved": 5, "reopened": 2, "solved_grassroots": 12, "callbacks": 24, "audited": 25,
    "handling_seconds": 30 * 36_000,
}  # fmt: skip


@pytest.mark.parametrize(
    ("key", "numerator", "denominator", "value"),
    [
        ("response", 38, 40, 0.95),
        ("resolution", 15, 20, 0.75),
        ("satisfaction", 17.4, 20, 0.87),
        ("accept_on_time", 39, 40, 0.975),
        ("complete_on_time", 27, 30, 0.9),
        ("overdue", 4, 40, 0.1),
        ("extension", 4, 40, 0.1),
        ("return", 6, 50, 0.12),
        ("dispatch_accuracy", 5, 50, 0.9),
        ("reopen", 2, 40, 0.05),
        ("grassroots", 12, 15, 0.8),
        ("callback", 24, 25, 0.96),
        ("avg_hours", 300, 30, 10.0),
    ],
)
def test_every_rate_formula(key: str, numerator: float, denominator: int, value: float) -> None:
    r = rates(TOTALS)[key]
    assert (r.numerator, r.denominator) == (pytest.approx(numerator), denominator)
    assert r.value == pytest.approx(value)


def test_the_centres_own_rates() -> None:
    centre = {"received": 200, "answered": 50, "merged": 10, "dispatched": 120,
              "misdispatched": 6}  # fmt: skip
    r = rates(centre, centre=True)
    assert r["direct_answer"].value == 0.25 and r["repeat"].value == 0.05
    assert r["centre_dispatch_accuracy"].value == pytest.approx(0.95)
    assert "direct_answer" not in rates(centre)


def test_no_denominator_is_no_value_not_zero() -> None:
    r = rates({"counted": 3})
    assert r["resolution"].value is None and r["resolution"].percent == "—"
    assert r["response"].value == 0.0


def test_the_composite_uses_the_kinds_weights() -> None:
    three = {k: rate(BY_KEY[k], TOTALS) for k in ("response", "resolution", "satisfaction")}
    w = weights_for("street", {"default": {"response": 0.1, "resolution": 0.45,
                                           "satisfaction": 0.45},
                               "street": {"response": 0.2, "resolution": 0.4,
                                          "satisfaction": 0.4}})  # fmt: skip
    assert composite(three, w) == pytest.approx(100 * (0.2 * 0.95 + 0.4 * 0.75 + 0.4 * 0.87))
    default = weights_for("company", {"default": {"response": 0.1, "resolution": 0.45,
                                                  "satisfaction": 0.45}})  # fmt: skip
    assert composite(three, default) == pytest.approx(100 * (0.095 + 0.45 * 0.75 + 0.45 * 0.87))
    assert composite({k: rate(BY_KEY[k], {"counted": 5}) for k in three}, default) is None


# ---- rankings --------------------------------------------------------------------------------

W = {"response": 0.1, "resolution": 0.45, "satisfaction": 0.45}


def entry(code: str, counted: int, solved: int, evaluated: int = 10) -> Entry:
    totals = {
        "led": counted,
        "counted": counted,
        "responded": counted,
        "evaluated": evaluated,
        "solved": solved,
        "level_satisfied": solved,  # the rest: dissatisfied, 0 points
        "level_dissatisfied": evaluated - solved,
    }
    return Entry(code, f"单位{code}", "street", totals)


def test_ranking_by_composite_with_ties_sharing_a_rank() -> None:
    ranked = rank([entry("A", 40, 6), entry("B", 40, 9), entry("C", 40, 9), entry("D", 40, 3)],
                  weights=W, small_sample=30)  # fmt: skip
    assert [(r.code, r.rank) for r in ranked] == [("B", 1), ("C", 1), ("A", 3), ("D", 4)]


def test_small_samples_are_listed_not_ranked() -> None:
    ranked = rank([entry("A", 40, 6), entry("TINY", 3, 10, evaluated=10)], weights=W,
                  small_sample=30)  # fmt: skip
    tiny = ranked[-1]
    assert (tiny.code, tiny.rank, tiny.small_sample) == ("TINY", None, True)
    assert ranked[0].rank == 1


def test_change_against_last_month_and_the_task_force() -> None:
    entries = [entry(c, 40, s) for c, s in (("A", 9), ("B", 8), ("C", 7), ("D", 6), ("E", 5))]
    ranked = rank(entries, weights=W, small_sample=30, previous={"A": 3, "B": 1, "E": 5},
                  bottom=2)  # fmt: skip
    by = {r.code: r for r in ranked}
    assert (by["A"].change, by["B"].change, by["C"].change, by["E"].change) == (2, -1, None, 0)
    assert [r.code for r in ranked if r.task_force] == ["D", "E"]


def test_the_task_force_never_takes_more_than_half() -> None:
    ranked = rank([entry("A", 40, 9), entry("B", 40, 2)], weights=W, small_sample=30, bottom=10)
    assert [r.code for r in ranked if r.task_force] == ["B"]


def test_no_evaluation_yet_is_not_ranked() -> None:
    ranked = rank([entry("A", 40, 0, evaluated=0)], weights=W, small_sample=30)
    assert ranked[0].rank is None and ranked[0].composite is None and not ranked[0].small_sample


# ---- pending contacts and scores read at read time (issue 13 §4.1, §4.3) -----------------------


def _unit_fact(t: Timeline, unit: str = "S11") -> Any:
    facts = order_facts(Order(t.steps, LIMITS, "C-RX"), clocks=CLOCKS, tz=TZ)
    return next(f for f in facts if f.unit == unit)


def test_an_order_not_yet_contacted_carries_its_contact_due() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(0.5, "accept", "S11")
    assert _unit_fact(t).contact_due == T0 + 2 * H  # the contact limit is 2 h
    assert "responded" not in _unit_fact(t).counters
    t(1, "contact", "S11")
    assert _unit_fact(t).contact_due is None and _unit_fact(t).get("responded") == 1


def test_a_suspension_before_the_contact_keeps_it_pending_until_resumed() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(0.5, "accept", "S11")
    t(1, "suspend", "S11", reason="等待诉求人提供材料")
    assert _unit_fact(t).contact_due == PAUSED
    t(5, "resume", "S11")  # 1 h of the 2 was used: due 1 h after resuming
    assert _unit_fact(t).contact_due == T0 + 6 * H


def test_a_part_that_does_not_count_has_no_contact_due() -> None:
    t = Timeline()(0, "dispatch", lead="S11")(0.5, "request_return", "S11", reason="不属本辖区")
    t(1, "review_return", approved=True)(1.5, "dispatch", lead="S12")
    assert _unit_fact(t, "S11").contact_due is None
    assert _unit_fact(t, "S12").contact_due == T0 + 3.5 * H


def test_pending_contacts_leave_the_response_denominator() -> None:
    r = rates({"counted": 4, "responded": 3, "contact_pending": 1})["response"]
    assert (r.numerator, r.denominator, r.value) == (3, 3, 1.0)
    assert rates({"counted": 4, "responded": 3})["response"].value == 0.75


def test_the_satisfaction_rate_weighs_each_level_by_the_scores_given() -> None:
    totals = {"evaluated": 6, "level_very_satisfied": 1, "level_satisfied": 2,
              "level_basically_satisfied": 2, "level_dissatisfied": 1}  # fmt: skip
    assert rates(totals)["satisfaction"].numerator == pytest.approx(4.6)  # SPEC's scores
    changed = dict(SCORES, basically_satisfied=0.6)
    assert rates(totals, scores=changed)["satisfaction"].numerator == pytest.approx(4.2)
    ranked = rank([Entry("A", "甲", "street", {**totals, "counted": 40, "responded": 40,
                                                "solved": 6, "contact_pending": 2})],
                  weights=W, small_sample=30, scores=changed)  # fmt: skip
    assert ranked[0].rates["satisfaction"].value == pytest.approx(0.7)
    assert ranked[0].pending == 2 and ranked[0].rates["response"].denominator == 38
