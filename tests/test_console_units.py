"""The console's pure pieces: possible actions, form → fields, countdown text and colour,
safe redirects, bilingual messages, the deadline a list shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_lifecycle import CENTRE, OTHER_STREET, STREET, actor, facts

from jiesu.console.lookup import _option, resolve
from jiesu.console.service import FormValues, form_to_fields
from jiesu.console.views import _safe_next, row_deadline
from jiesu.db.engine import Database
from jiesu.tickets.lifecycle import ACTIONS, BY_NAME, available, decide
from jiesu.tickets.service import title_from
from jiesu.timelimits.deadlines import Deadline
from jiesu.web.templating import duration_text, remaining, tier_text, urgency_class, zh


def names(actions: list) -> set[str]:  # type: ignore[type-arg]
    return {a.name for a in actions}


def test_a_dispatcher_is_offered_dispatch_on_a_received_ticket() -> None:
    offered = names(available(facts("received", lead=None, lead_path=None), actor("dispatcher")))
    assert {"dispatch", "transfer", "reject", "merge", "recategorize"} <= offered
    assert "accept" not in offered and "answer" not in offered  # answer is the agent's


def test_the_lead_street_is_offered_its_work_and_another_street_nothing() -> None:
    f = facts("accepted", accepted=frozenset({STREET}))
    assert {"contact", "reply", "request_return", "request_extension", "whistle", "suspend"} <= (
        names(available(f, actor("handler", STREET)))
    )
    assert names(available(f, actor("handler", OTHER_STREET))) == set()


def test_a_waiting_return_hides_a_second_request_and_offers_the_review() -> None:
    f = facts("accepted", return_pending=True)
    assert "request_return" not in names(available(f, actor("handler", STREET)))
    assert "review_return" in names(available(f, actor("dispatcher")))


def test_only_a_citizen_is_offered_rate() -> None:
    for role in ("callback_agent", "admin", "agent", "dispatcher"):
        assert "rate" not in names(available(facts("audited"), actor(role)))
    assert names(available(facts("audited"), actor("citizen"))) == {"rate"}


@pytest.mark.parametrize("status", ["received", "dispatched", "accepted", "replied", "audited"])
@pytest.mark.parametrize("role", ["agent", "dispatcher", "callback_agent", "supervisor", "admin"])
def test_every_offered_action_passes_role_relation_and_state(status: str, role: str) -> None:
    """What the page offers is what decide() lets through (fields aside)."""
    f = facts(status, promise_pending=False)
    who = actor(role, CENTRE)
    for action in available(f, who):
        try:
            decide(action.name, f, who, {})
        except Exception as exc:  # only field errors (422) may remain
            assert getattr(exc, "status", None) in (422, 409), (action.name, exc)


def test_form_values_become_typed_fields() -> None:
    form = FormValues([("approved", "true"), ("days", "5"), ("note", " 同意 ")])
    assert form_to_fields(BY_NAME["review_extension"], form) == {
        "approved": True,
        "days": 5,
        "note": "同意",
    }


def test_a_unit_picked_from_the_list_keeps_only_its_code() -> None:
    """The form keeps what was sent (code, name or label); the picker's resolution
    (`console.lookup.resolve_fields`, tests/test_pickers.py) turns it into the code."""
    form = FormValues([("lead", "110101001 东华门街道"), ("co_handlers", "A1"),
                       ("co_handlers", ""), ("co_handlers", "B2")])  # fmt: skip
    fields = form_to_fields(BY_NAME["dispatch"], form)
    assert fields == {"lead": "110101001 东华门街道", "co_handlers": ["A1", "B2"]}
    units = (_option("110101001", "东华门街道", "东城区", "street"),)
    assert (
        resolve(fields["lead"], units, kind="units", field="lead", label="主办单位") == "110101001"
    )


def test_empty_and_unknown_inputs_are_left_for_the_lifecycle_to_refuse() -> None:
    form = FormValues([("approved", "maybe"), ("days", "五"), ("stray", "x"), ("note", "")])
    fields = form_to_fields(BY_NAME["review_extension"], form)
    assert fields == {"approved": "maybe", "days": "五"}
    with pytest.raises(Exception) as refused:
        decide("review_extension", facts("accepted", extension_pending=True),
               actor("dispatcher"), fields)  # fmt: skip
    assert getattr(refused.value, "status", None) == 422


def test_every_action_field_kind_is_handled_by_the_form_converter() -> None:
    kinds = {f.kind for a in ACTIONS for f in a.fields}
    assert kinds <= {"text", "bool", "choice", "unit", "units", "int", "ticket", "entry"}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (3 * 86400 + 2 * 3600 + 59, "剩 3天2小时"),
        (5 * 3600 + 7 * 60, "剩 5小时7分"),
        (42 * 60, "剩 42分钟"),
        (10, "剩 1分钟"),
        (-(86400 + 3600), "超期 1天1小时"),
    ],
)
def test_countdown_text(seconds: float, text: str) -> None:
    assert remaining(seconds) == text


def test_colour_by_how_much_of_the_limit_is_used() -> None:
    assert urgency_class(0.1) == "dl-ok"
    assert urgency_class(0.5) == "dl-mid"
    assert urgency_class(0.8) == "dl-warn"  # the worker warns at 80% too
    assert urgency_class(0.99, overdue=True) == "dl-over"
    assert urgency_class(None) == "dl-none"


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("/console/inbox", "/console/inbox"),
        ("/console/tickets?status=accepted", "/console/tickets?status=accepted"),
        ("//evil.example/x", None),
        ("https://evil.example/", None),
        ("/\\evil.example", None),  # browsers read the backslash as a slash
        ("javascript:alert(1)", None),
        (None, None),
    ],
)
def test_after_sign_in_only_a_path_on_this_site_is_followed(
    target: str | None, safe: str | None
) -> None:
    assert _safe_next(target) == safe


def test_the_interface_shows_the_chinese_half_of_a_message() -> None:
    assert zh("工单已关闭 / the ticket is closed") == "工单已关闭"
    assert zh("只有中文") == "只有中文"
    assert zh(None) == ""


def _deadline(phase: str, unit: str | None, due_in_h: float, met: bool = False) -> Deadline:
    now = datetime(2026, 11, 20, 9, tzinfo=UTC)
    return Deadline(
        phase=phase, unit=unit, limit=None, start=now, due=now + timedelta(hours=due_in_h),  # type: ignore[arg-type]
        met_at=now if met else None, remaining_seconds=due_in_h * 3600, progress=0.1,
        paused=False,
    )  # fmt: skip


def test_a_list_shows_the_soonest_open_deadline_of_the_readers_unit_first() -> None:
    ds = [_deadline("accept", "S1", 1, met=True), _deadline("complete", "S1", 50),
          _deadline("report", "D9", 0.5)]  # fmt: skip
    assert row_deadline(ds, "S1").phase == "complete"  # type: ignore[union-attr]
    assert row_deadline(ds, "X").phase == "report"  # type: ignore[union-attr]
    assert row_deadline([_deadline("accept", "S1", 1, met=True)]) is None


@pytest.mark.parametrize(
    ("limit", "text"),
    [
        ("2wh", "2个工作小时"),
        ("7wd", "7个工作日"),
        ("24h", "24小时"),
        ("30m", "30分钟"),
        ("3d", "3天"),
        ("odd", "odd"),
    ],
)
def test_a_limit_reads_as_people_say_it(limit: str, text: str) -> None:
    assert duration_text(limit) == text


def test_a_tier_reads_as_the_hotline_names_it() -> None:
    assert [tier_text(t) for t in ("T2h", "T24h", "T7d", "T15d", None)] == [
        "2小时件", "24小时件", "7日件", "15日件", "—"]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "title"),
    [
        ("小区暖气不热，已经三天了", "小区暖气不热，已经三天了"),
        ("楼下垃圾桶满溢三天了。物业一直不来清理，气味很大", "楼下垃圾桶满溢三天了"),
        (
            "东华门大街路口的红绿灯坏了很久都没有人来修理实在太危险了请尽快处理",
            "东华门大街路口的红绿灯坏了很久都没有人来修理实在太危险了请…",
        ),
        ("第一行\n第二行", "第一行"),
    ],
)
def test_a_missing_title_is_the_first_sentence_or_ends_with_an_ellipsis(
    content: str, title: str
) -> None:
    assert title_from(content) == title
    assert len(title_from(content)) <= 30


def test_the_dispatch_pickers_never_offer_the_service_centre(db: Database) -> None:
    """The lifecycle refuses the centre as a handler (issue 13 §3.5): the pickers leave it out."""
    from jiesu.console.service import handling_units

    with db.read() as s:
        codes = {u.code for u in handling_units(db_session=s)}
    assert codes and "C-RX" not in codes  # C-RX: the tiny pack's service_centre_unit
