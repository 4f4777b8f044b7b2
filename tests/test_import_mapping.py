"""The import's pure parts: dates, the mapping file, row conversion, and the timelines (every
imported timeline is one the lifecycle table allows, step by step)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jiesu.imports import timeline
from jiesu.imports.mapping import Converter, Lookup, MappingError, parse_datetime, parse_mapping
from jiesu.tickets import lifecycle
from jiesu.tickets.lifecycle import BY_NAME, MAX_ROUNDS

TZ = ZoneInfo("Asia/Shanghai")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ).astimezone(UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-01-02", utc(2019, 1, 2)),
        ("2019/1/2", utc(2019, 1, 2)),
        ("2019.1.2", utc(2019, 1, 2)),
        ("2019年1月2日", utc(2019, 1, 2)),
        ("20190102", utc(2019, 1, 2)),
        ("2019-01-02 13:45", utc(2019, 1, 2, 13, 45)),
        ("2019/1/2 8:05:09", utc(2019, 1, 2, 8, 5, 9)),
        ("2019年1月2日 13时45分", utc(2019, 1, 2, 13, 45)),
        ("2019年1月2日13:45:30", utc(2019, 1, 2, 13, 45, 30)),
        ("20190102 134530", utc(2019, 1, 2, 13, 45, 30)),
        ("2019-01-02T13:45:00", utc(2019, 1, 2, 13, 45)),
        ("2019-01-02T13:45:00+00:00", datetime(2019, 1, 2, 13, 45, tzinfo=UTC)),
        ("43467", utc(2019, 1, 2)),  # Excel serial day
        ("43467.5", utc(2019, 1, 2, 12)),
        (43467.75, utc(2019, 1, 2, 18)),
        (date(2019, 1, 2), utc(2019, 1, 2)),
        (datetime(2019, 1, 2, 9, 30), utc(2019, 1, 2, 9, 30)),  # a spreadsheet's naive time
    ],
)
def test_chinese_date_formats_read_as_city_time(text: Any, expected: datetime) -> None:
    got = parse_datetime(text, TZ)
    assert got == expected
    assert got.tzinfo is UTC


@pytest.mark.parametrize("text", ["2019-02-30", "2019年13月1日", "昨天", "2019-01", ""])
def test_bad_dates_raise_a_chinese_reason(text: str) -> None:
    with pytest.raises(ValueError, match="日期"):
        parse_datetime(text, TZ)


BASE = {"title": "t", "content": "c", "created_at": "d", "district": "dist"}


def test_the_mapping_file_is_checked() -> None:
    with pytest.raises(MappingError, match="created_at"):
        parse_mapping(
            {"fields": {"title": "t", "content": "c", "district": "d"}, "identity": ["t"]}
        )
    with pytest.raises(MappingError, match="unknown field"):
        parse_mapping({"fields": BASE | {"colour": "x"}, "identity": ["t"]})
    with pytest.raises(MappingError, match="identity"):
        parse_mapping({"fields": BASE})
    with pytest.raises(MappingError, match="channel"):
        parse_mapping({"fields": BASE | {"channel": {"column": "ch", "map": {"网站": "website"}}},
                       "identity": ["t"]})  # fmt: skip
    with pytest.raises(MappingError, match="exactly one"):
        parse_mapping({"fields": BASE | {"address": {"column": "a", "value": "b"}},
                       "identity": ["t"]})  # fmt: skip
    m = parse_mapping({"fields": BASE | {"address": {"template": "{dist}{river}"}},
                       "identity": ["t", "d"], "source": "s"})  # fmt: skip
    assert m.columns() == {"t", "c", "d", "dist", "river"}
    assert m.source == "s"


def lookup() -> Lookup:
    return Lookup(
        districts={"仓山区": 4, "仓山": 4, "350104": 4, "鼓楼区": 2},
        streets={(4, "上渡街道"): 41},
        streets_any={"上渡街道": [41]},
        categories={"020101": 7, "内河治理": 7},
        ambiguous_categories={"其他"},
        units={"350104-SL": 9, "仓山区水利局": 9},
        request_types={"complain": "complain", "投诉": "complain", "consult": "consult"},
    )


MAPPING = {
    "identity": ["district", "title", "date"],
    "fields": {
        "title": "title", "content": "content", "created_at": "date", "district": "district",
        "street": "street", "category": "category", "lead": "unit",
        "request_type": {"column": "type", "map": {"投诉件": "投诉"}},
        "channel": {"column": "channel", "map": {"网站": "web", "电话": "phone"}},
        "reopens": "redispatch", "replied_at": "replied",
    },
}  # fmt: skip
GOOD = {"title": "河水黑臭", "content": "龙津河黑臭", "date": "2019/8/5", "district": "仓山区",
        "street": "上渡街道", "category": "内河治理", "unit": "350104-SL", "type": "投诉件",
        "channel": "网站 ", "redispatch": "2", "replied": "2019年8月9日"}  # fmt: skip


def test_a_row_converts_to_jiesu_values() -> None:
    conv = Converter(parse_mapping(MAPPING), lookup(), TZ)
    row, errors = conv.convert(2, GOOD)
    assert errors == []
    assert row is not None
    v = row.values
    assert (v["district"], v["street"], v["category"], v["lead"]) == (4, 41, 7, 9)
    assert (v["request_type"], v["channel"], v["reopens"]) == ("complain", "web", 2)
    assert v["created_at"] == utc(2019, 8, 5)
    assert v["status"] == "closed"  # the default: a historical order is closed
    assert len(row.external_id) == 32
    # the same identity again in the file is told apart by its order
    again, _ = conv.convert(3, GOOD | {"content": "另一段内容"})
    assert again is not None and again.external_id == row.external_id + "#2"
    assert again.row_hash != row.row_hash


def test_every_error_of_a_row_is_listed_with_its_column() -> None:
    conv = Converter(parse_mapping(MAPPING), lookup(), TZ)
    bad = GOOD | {"date": "2019-02-30", "district": "火星区", "type": "吐槽", "content": " ",
                  "channel": "飞鸽", "redispatch": "两次", "category": "其他",
                  "unit": "无此单位"}  # fmt: skip
    row, errors = conv.convert(7, bad)
    assert row is None
    got = {(line, col) for line, col, _ in errors}
    assert got == {(7, "date"), (7, "district"), (7, "type"), (7, "content"), (7, "channel"),
                   (7, "redispatch"), (7, "category"), (7, "unit")}  # fmt: skip
    reasons = {c: r for _, c, r in errors}
    assert "火星区" in reasons["district"] and "吐槽" in reasons["type"]
    assert reasons["content"] == "必填，不能为空"
    assert "不唯一" in reasons["category"]
    _, errors = conv.convert(8, GOOD | {"replied": "2019-08-01"})
    assert errors == [(8, "replied", "早于受理时间")]


# ---- timelines --------------------------------------------------------------------------------


def city() -> timeline.City:
    units = {
        1: timeline.UnitRef(1, "FZ", "city", None),
        2: timeline.UnitRef(2, "FZ-RX", "department", 1),
        3: timeline.UnitRef(3, "FZ-JW", "department", 1),
        4: timeline.UnitRef(4, "350104", "district", 1),
        41: timeline.UnitRef(41, "350104001", "street", 4),
    }
    return timeline.City(centre_id=2, units=units, escalation_unit="FZ-JW",
                         unit_by_code={u.code: u.id for u in units.values()},
                         due=lambda start, tier: start + timedelta(days=15))  # fmt: skip


def replay(events: list[list[Any]]) -> list[str]:
    """Walk the events through the lifecycle table: each starts where the last ended, is allowed
    in that state and ends where the action leads. Returns the actions."""
    state = None
    for e in events:
        action, before, after = e[3], e[7], e[8]
        assert before == state, (action, before, state)
        if action == "receive":
            assert after == "received"
        else:
            a = BY_NAME[action]
            assert before in a.states, (action, before)
            if a.next == "=":
                assert after == before
            elif isinstance(a.next, str):
                assert after == a.next, (action, after)
            else:
                assert after in lifecycle.STATES
        state = after
    times = [e[4] for e in events]
    assert times == sorted(times)
    return [e[3] for e in events]


VALUES = {"title": "t", "content": "c", "created_at": utc(2019, 8, 5), "district": 4,
          "reply": "已清淤，水质好转。", "reopens": 0, "status": "closed"}  # fmt: skip


def test_a_closed_order_walks_the_whole_lifecycle() -> None:
    b = timeline.build(VALUES, 41, "2019080500001", "T15d", city(), source="s", external_id="x")
    assert replay(b.events) == ["receive", "dispatch", "accept", "contact", "reply", "audit",
                                "evaluate", "close"]  # fmt: skip
    assert b.ticket["status"] == "closed" and b.ticket["round"] == 1
    assert b.events[4][10]["content"] == "已清淤，水质好转。"
    assert b.events[6][10] == {"reached": False}  # no callback in the file: not reached
    assert b.assignments[0]["unit_id"] == 41 and b.assignments[0]["replied_at"] is not None


def test_reopen_rounds_escalate_beyond_the_last_round_as_a_live_reopen_would() -> None:
    assert timeline.MAX_ROUNDS == MAX_ROUNDS
    b = timeline.build(VALUES | {"reopens": 4}, 41, "n", "T15d", city(), source="s",
                       external_id="x")  # fmt: skip
    actions = replay(b.events)
    assert actions.count("reopen") == 4 and actions.count("reply") == 5
    assert b.ticket["round"] == 5
    # round 4 goes to the district above the street, round 5 to the escalation unit
    escalations = [e[10] for e in b.events if e[3] == "escalate"]
    assert escalations == [{"from": "350104001", "to": "350104"}, {"from": "350104", "to": "FZ-JW"}]
    assert [a["unit_id"] for a in b.assignments] == [41, 41, 41, 4, 3]
    assert [a["end_reason"] for a in b.assignments] == ["reopened"] * 4 + [None]
    # only the last round carries the file's reply
    replies = [e[10]["content"] for e in b.events if e[3] == "reply"]
    assert replies[-1] == "已清淤，水质好转。" and len(set(replies[:-1])) == 1


@pytest.mark.parametrize(
    ("status", "extra", "actions"),
    [
        ("answered", {}, ["receive", "answer", "close"]),
        ("transferred", {"transfer_to": "119"}, ["receive", "transfer", "close"]),
        ("rejected", {"reject_reason": "litigation"}, ["receive", "reject", "close"]),
        ("received", {}, ["receive"]),
        ("dispatched", {}, ["receive", "dispatch"]),
        ("accepted", {}, ["receive", "dispatch", "accept", "contact"]),
        ("replied", {}, ["receive", "dispatch", "accept", "contact", "reply"]),
        ("audited", {}, ["receive", "dispatch", "accept", "contact", "reply", "audit"]),
    ],
)
def test_each_status_ends_its_timeline_where_the_order_stood(
    status: str, extra: dict[str, Any], actions: list[str]
) -> None:
    b = timeline.build(VALUES | {"status": status} | extra, 41, "n", "T15d", city(),
                       source="s", external_id="x")  # fmt: skip
    assert replay(b.events) == actions
    assert b.ticket["status"] == b.events[-1][8]
    assert (b.ticket["closed_at"] is not None) == (actions[-1] == "close")


def test_file_times_are_kept_and_a_satisfaction_is_a_reached_evaluation() -> None:
    replied, closed = utc(2019, 8, 9, 10), utc(2019, 8, 12, 9)
    b = timeline.build(VALUES | {"replied_at": replied, "closed_at": closed,
                                 "satisfaction": "dissatisfied", "result": "partly_solved"},
                       41, "n", "T15d", city(), source="s", external_id="x")  # fmt: skip
    replay(b.events)
    at = {e[3]: e[4] for e in b.events}
    assert at["receive"] == utc(2019, 8, 5) and at["reply"] == replied and at["close"] == closed
    evaluation = next(e[10] for e in b.events if e[3] == "evaluate")
    assert evaluation == {"reached": True, "solved": False, "satisfaction": "dissatisfied"}
    assert b.ticket["satisfaction"] == "dissatisfied" and b.ticket["result"] == "partly_solved"
