"""SMS templates, segments and sending hours (jiesu/notices/templates.py): pure, no database."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jiesu.citypack.parse import read_pack
from jiesu.notices.templates import (
    DEFAULT_TEMPLATES,
    ELLIPSIS,
    QuietHours,
    capacity,
    check_sms,
    next_opening,
    placeholders,
    render,
    segments,
    sms_config,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
SIG = "【北京12345】"  # 9 characters
TINY_PACK = Path(__file__).parent / "packs" / "tiny"
BEIJING_PACK = Path(__file__).parent.parent / "citypacks" / "beijing"


def local(hh: int, mm: int = 0, day: int = 7) -> datetime:
    """A moment given in city time, as the UTC the code receives."""
    return datetime(2026, 12, day, hh, mm, tzinfo=SHANGHAI).astimezone(UTC)


# ---- segments --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "expected"),
    [(0, 1), (1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4), (670, 10)],
)
def test_segments_follow_the_long_sms_rule(length: int, expected: int) -> None:
    assert segments(length) == expected


def test_every_length_up_to_ten_segments_fits_the_segments_it_is_counted_as() -> None:
    for length in range(700):
        n = segments(length)
        assert length <= capacity(n)
        assert n == 1 or length > capacity(n - 1)


def test_capacity_is_70_for_one_segment_and_67_per_segment_beyond() -> None:
    assert [capacity(n) for n in (1, 2, 3)] == [70, 134, 201]


# ---- rendering -------------------------------------------------------------------------------


def test_a_short_receipt_is_one_segment_with_the_signature_counted() -> None:
    msg = render(
        "受理回执：工单{number}，查询码{tracking_code}",
        {"number": "2026112200017", "tracking_code": "AB12CD34"},
        signature=SIG,
        max_segments=3,
    )
    assert msg.text == "【北京12345】受理回执：工单2026112200017，查询码AB12CD34"
    assert (msg.segments, msg.cut) == (1, False)


def test_chinese_and_ascii_count_one_character_each() -> None:
    body = "a" * 30 + "中" * 31  # 61 + signature 9 = 70: exactly one segment
    assert render(body, {}, signature=SIG, max_segments=1).segments == 1
    assert render(body + "b", {}, signature=SIG, max_segments=3).segments == 2


def test_a_long_reply_is_cut_with_an_ellipsis_to_fit_max_segments() -> None:
    reply = "路灯已修复，" * 60
    for most in (1, 2, 3, 5):
        msg = render("工单{number}已办结：{reply}", {"number": "1", "reply": reply},
                     signature=SIG, max_segments=most)  # fmt: skip
        assert msg.cut
        assert msg.text.endswith(ELLIPSIS)
        assert len(msg.text) == capacity(most)
        assert msg.segments == most
        assert msg.text.startswith(SIG + "工单1已办结：路灯已修复")


def test_a_reply_that_fits_exactly_is_not_cut() -> None:
    fixed = len(SIG + "办结：")
    reply = "好" * (capacity(2) - fixed)
    msg = render("办结：{reply}", {"reply": reply}, signature=SIG, max_segments=2)
    assert not msg.cut and msg.text.endswith("好") and len(msg.text) == capacity(2)
    over = render("办结：{reply}", {"reply": reply + "好"}, signature=SIG, max_segments=2)
    assert over.cut and len(over.text) == capacity(2) and over.text.endswith(ELLIPSIS)


def test_only_the_reply_is_ever_cut() -> None:
    link = "https://12345.example.gov.cn/r/" + "k" * 24
    msg = render("请点击{link}评价" + "。" * 150, {"link": link}, signature=SIG, max_segments=1)
    assert link in msg.text and not msg.cut and msg.segments > 1


@settings(max_examples=300, deadline=None)
@given(
    reply=st.text(alphabet=st.sampled_from("满意ab 1。，中z"), max_size=400),
    most=st.integers(min_value=1, max_value=6),
)
def test_any_reply_fits_the_segments_and_keeps_its_start(reply: str, most: int) -> None:
    msg = render("工单{number}：{reply}", {"number": "2026112200017", "reply": reply},
                 signature=SIG, max_segments=most)  # fmt: skip
    assert len(msg.text) <= capacity(most)
    assert msg.segments <= most
    assert msg.text.startswith(SIG + "工单2026112200017：")
    shown = msg.text[len(SIG + "工单2026112200017：") :]
    if msg.cut:
        assert shown.endswith(ELLIPSIS) and reply.startswith(shown[:-1])
    else:
        assert shown == reply


# ---- placeholders and the pack section --------------------------------------------------------


def test_placeholders_are_listed_in_order() -> None:
    assert placeholders("工单{number}，查询码{tracking_code}") == ["number", "tracking_code"]
    assert placeholders("没有占位符") == []


@pytest.mark.parametrize("bad", ["工单{number", "工单{0}", "工单{number:>5}", "工单{number!r}"])
def test_a_malformed_placeholder_is_refused(bad: str) -> None:
    problems = check_sms({"templates": {"receipt": bad}})
    assert len(problems) == 1
    assert problems[0][0] == ("templates", "receipt")


def test_an_unknown_placeholder_is_a_pack_error_naming_the_allowed_ones() -> None:
    (problem,) = check_sms({"templates": {"receipt": "工单{number}，{link}"}})
    assert problem[0] == ("templates", "receipt")
    assert "{link}" in problem[1] and "{tracking_code}" in problem[1]


def test_each_kind_has_its_own_placeholders() -> None:
    assert check_sms({"templates": {"callback_invite": "评价{number}：{link}"}}) == []
    assert check_sms({"templates": {"reply": "评价{number}：{link}"}}) != []


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"signature": "北京12345"}, ("signature",)),
        ({"signature": "【】"}, ("signature",)),
        ({"max_segments": 0}, ("max_segments",)),
        ({"max_segments": True}, ("max_segments",)),
        ({"quiet_hours": "9pm-8am"}, ("quiet_hours",)),
        ({"quiet_hours": "25:00-08:00"}, ("quiet_hours",)),
        ({"urgent_at_night": "yes"}, ("urgent_at_night",)),
        ({"templates": {"birthday": "生日快乐"}}, ("templates", "birthday")),
        ({"templates": {"receipt": ""}}, ("templates", "receipt")),
        ({"templates": ["receipt"]}, ("templates",)),
        ({"colour": "red"}, ("colour",)),
        ({"max_segments": 1, "templates": {"receipt": "很长" * 40 + "{number}"}},
         ("templates", "receipt")),
    ],
)  # fmt: skip
def test_a_bad_sms_section_is_refused_where_it_is_wrong(raw: dict, path: tuple) -> None:
    problems = check_sms(raw)
    assert [p for p, _reason in problems] == [path]


def test_the_default_and_beijing_templates_are_valid() -> None:
    assert check_sms({"templates": DEFAULT_TEMPLATES}) == []
    pack = read_pack(BEIJING_PACK)
    assert pack.ok, pack.errors
    assert check_sms(pack.settings["notices"]["sms"]) == []


def _pack_with(tmp_path: Path, section: str) -> Path:
    root = tmp_path / "pack"
    shutil.copytree(TINY_PACK, root)
    with (root / "pack.yaml").open("a", encoding="utf-8") as f:
        f.write(section)
    return root


def test_an_unknown_placeholder_in_the_pack_reports_file_and_line(tmp_path: Path) -> None:
    root = _pack_with(
        tmp_path,
        "notices:\n  sms:\n    signature: 【小城12345】\n    templates:\n"
        "      receipt: 已受理，工单{number}\n      reply: 已办结：{answer}\n",
    )
    line = (root / "pack.yaml").read_text(encoding="utf-8").splitlines().index(
        "      reply: 已办结：{answer}"
    ) + 1
    pack = read_pack(root)
    assert [str(e).split(": ", 1)[0] for e in pack.errors] == [f"pack.yaml:{line}"]
    assert "{answer}" in str(pack.errors[0])


def test_an_unknown_notices_key_is_a_pack_error(tmp_path: Path) -> None:
    pack = read_pack(_pack_with(tmp_path, "notices:\n  wechat: {}\n"))
    assert len(pack.errors) == 1 and "notices: unknown key 'wechat'" in str(pack.errors[0])


def test_without_a_notices_section_the_defaults_apply() -> None:
    config = sms_config({})
    assert config.templates == DEFAULT_TEMPLATES
    assert config.signature == "【12345】" and config.max_segments == 3
    assert config.quiet_hours == QuietHours(time(21), time(8))


def test_a_pack_that_names_its_templates_sends_only_those_kinds() -> None:
    config = sms_config({"notices": {"sms": {"templates": {"receipt": "已受理{number}"},
                                             "quiet_hours": "", "max_segments": 2}}})  # fmt: skip
    assert config.templates == {"receipt": "已受理{number}"}
    assert config.quiet_hours is None and config.max_segments == 2


# ---- sending hours -----------------------------------------------------------------------------

NIGHT = QuietHours(time(21), time(8))


@pytest.mark.parametrize(
    ("at", "opens"),
    [
        (local(20, 59), None),
        (local(21, 0), local(8, 0, day=8)),
        (local(23, 30), local(8, 0, day=8)),
        (local(0, 0), local(8, 0)),
        (local(0, 30), local(8, 0)),
        (local(7, 59), local(8, 0)),
        (local(8, 0), None),
        (local(12, 0), None),
    ],
)
def test_quiet_hours_across_midnight_defer_to_the_next_morning(
    at: datetime, opens: datetime | None
) -> None:
    assert next_opening(at, NIGHT, SHANGHAI) == opens


def test_every_minute_of_a_day_is_either_sent_now_or_held_until_the_opening() -> None:
    start = local(0, 0)
    for minute in range(24 * 60):
        now = start + timedelta(minutes=minute)
        opens = next_opening(now, NIGHT, SHANGHAI)
        hour = now.astimezone(SHANGHAI).hour
        if 8 <= hour < 21:
            assert opens is None, now
        else:
            assert opens is not None and opens > now, now
            assert opens.astimezone(SHANGHAI).time() == time(8)
            assert opens - now <= timedelta(hours=11)


def test_quiet_hours_within_a_day() -> None:
    noon = QuietHours(time(12), time(13, 30))
    assert next_opening(local(11, 59), noon, SHANGHAI) is None
    assert next_opening(local(12, 45), noon, SHANGHAI) == local(13, 30)
    assert next_opening(local(13, 30), noon, SHANGHAI) is None


def test_no_quiet_hours_and_empty_quiet_hours_send_at_any_time() -> None:
    assert QuietHours.parse("") is None and QuietHours.parse(None) is None  # type: ignore[arg-type]
    assert next_opening(local(3), None, SHANGHAI) is None
    assert next_opening(local(3), QuietHours(time(8), time(8)), SHANGHAI) is None


def test_urgent_orders_go_at_night_unless_the_pack_says_otherwise() -> None:
    assert next_opening(local(23), NIGHT, SHANGHAI, urgent=True) is None
    assert next_opening(local(23), NIGHT, SHANGHAI, urgent=True, urgent_at_night=False) == local(
        8, 0, day=8
    )


def test_quiet_hours_read_from_text() -> None:
    assert QuietHours.parse("21:00-08:00") == NIGHT
    assert QuietHours.parse(" 9:30 - 10:00 ") == QuietHours(time(9, 30), time(10))
    assert str(NIGHT) == "21:00-08:00"
    with pytest.raises(ValueError):
        QuietHours.parse("21:00")
