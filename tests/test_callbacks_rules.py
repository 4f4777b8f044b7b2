"""短信回访's pure rules: reading an SMS reply (jiesu/callbacks/replies.py) and the signed,
expiring rating link (jiesu/callbacks/links.py). No database, no web."""

from __future__ import annotations

import base64
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jiesu.callbacks import links
from jiesu.callbacks.replies import CHOICES_TEXT, Reply, normalise, parse
from jiesu.settings import get_settings

# ---- the reply parser --------------------------------------------------------------------------

S, B, D = "satisfied", "basically_satisfied", "dissatisfied"

RATINGS = [
    # (what the citizen typed, satisfaction, solved)
    ("1", S, True),
    ("１", S, True),  # full-width digit
    (" 1 ", S, True),
    ("1。", S, True),
    ("1!", S, True),
    ("1满意", S, True),
    ("1 满意", S, True),
    ("１ 满意！", S, True),
    ("1、满意", S, True),
    ("满意", S, True),
    ("满意。", S, True),
    ("非常满意", "very_satisfied", True),
    ("很满意！", "very_satisfied", True),
    ("1 非常满意", "very_satisfied", True),
    ("2", B, True),
    ("２", B, True),
    ("2基本满意", B, True),
    ("基本满意", B, True),
    ("比较满意", B, True),
    ("还行吧", B, True),
    ("3", D, False),
    ("３", D, False),
    ("3不满意", D, False),
    ("不满意", D, False),
    ("不满意，没解决", D, False),
    ("不满意 没解决", D, False),
    ("3 没解决", D, False),
    ("非常不满意", "very_dissatisfied", False),
    ("很不满意！！", "very_dissatisfied", False),
    ("3 非常不满意", D, False),  # the digit decides; the words agree it is dissatisfied
    ("2 没解决", B, False),  # satisfied with the service, but the problem remains
    ("满意，但是没解决", S, False),
    ("不满意，但已解决", D, True),
    ("满意 已解决", S, True),
]

OPT_OUTS = ["退订", "TD", "td", "Td", " TD ", "ＴＤ", "退订。", "T", "N", "取消", "不要再发"]

UNPARSEABLE = [
    "",
    "   ",
    "。。。",
    "4",
    "0",
    "12",
    "1 2",
    "13800138000",
    "1不满意",  # the digit and the words disagree: a person should ask
    "3 满意",
    "满意不满意",
    "谢谢",
    "什么时候来修？",
    "路灯还是不亮，请再派人来看看",
    "好",
    "1" * 200,  # far too long for a choice
    "满意" * 100,
]


@pytest.mark.parametrize(("text", "satisfaction", "solved"), RATINGS)
def test_a_rating_reply_is_read_as_its_level_and_solved(
    text: str, satisfaction: str, solved: bool
) -> None:
    assert parse(text) == Reply("rating", satisfaction, solved)


@pytest.mark.parametrize("text", OPT_OUTS)
def test_td_and_退订_opt_out(text: str) -> None:
    assert parse(text).kind == "opt_out"


@pytest.mark.parametrize("text", UNPARSEABLE)
def test_anything_else_is_unparseable_for_an_agent(text: str) -> None:
    assert parse(text) == Reply("unparseable")


def test_the_invitation_offers_exactly_the_digits_the_parser_reads() -> None:
    assert CHOICES_TEXT == "1 满意 2 基本满意 3 不满意"
    for digit, word in (("1", "满意"), ("2", "基本满意"), ("3", "不满意")):
        assert parse(digit) == parse(word)


def test_normalise_folds_width_and_drops_spaces_and_punctuation() -> None:
    assert normalise(" １，满 意！") == "1满意"
    assert normalise("ｔｄ") == "TD"


@given(st.text(max_size=200))
def test_the_parser_never_raises_and_answers_one_of_three_kinds(text: str) -> None:
    reply = parse(text)
    assert reply.kind in ("rating", "opt_out", "unparseable")
    if reply.kind == "rating":
        assert reply.satisfaction is not None and reply.solved is not None
    else:
        assert reply.satisfaction is None and reply.solved is None


# ---- the rating link ---------------------------------------------------------------------------

NOW = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JIESU_SECRET_KEY", "test-key-shared-by-all-app-servers")
    monkeypatch.setenv("JIESU_PUBLIC_URL", "https://12345.example.gov.cn/")


def test_the_link_is_short_absolute_and_verifies_to_its_ticket(key: None) -> None:
    url = links.rating_link(20261103, now=NOW)
    assert url.startswith("https://12345.example.gov.cn/r/")
    token = url.rsplit("/", 1)[1]
    assert len(token) == links.TOKEN_LENGTH == 24
    assert all(c.isalnum() or c in "-_" for c in token)
    assert len(url) <= 60  # fits in an SMS beside the invitation's words
    assert links.verify(token, now=NOW) == 20261103
    assert links.verify(token, now=NOW + timedelta(days=6, hours=23)) == 20261103


def test_the_link_expires_after_its_days(key: None) -> None:
    token = links.sign(7, now=NOW)
    assert links.expires_at(token) == NOW + timedelta(days=links.LINK_DAYS)
    with pytest.raises(links.LinkExpired):
        links.verify(token, now=NOW + timedelta(days=links.LINK_DAYS))
    with pytest.raises(links.LinkExpired):
        links.verify(links.sign(7, now=NOW, days=1), now=NOW + timedelta(days=2))


def test_a_forged_or_mangled_token_is_refused(key: None) -> None:
    token = links.sign(42, now=NOW)
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[4] = 43  # another ticket, same signature
    forged = base64.urlsafe_b64encode(bytes(raw)).decode()
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[8] ^= 0xFF  # a later expiry
    later = base64.urlsafe_b64encode(bytes(raw)).decode()
    for bad in (forged, later, token[:-1], token + "A", "", "x" * 24, "%%%%" * 6, "点" * 24):
        with pytest.raises(links.LinkError) as caught:
            links.verify(bad, now=NOW)
        assert not isinstance(caught.value, links.LinkExpired)


def test_a_token_signed_with_another_key_is_refused(
    key: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = links.sign(42, now=NOW)
    monkeypatch.setenv("JIESU_SECRET_KEY", "another city's key")
    with pytest.raises(links.LinkError):
        links.verify(token, now=NOW)


def test_without_a_configured_key_one_is_made_once_in_the_var_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JIESU_SECRET_KEY", raising=False)
    monkeypatch.setenv("JIESU_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    try:
        token = links.sign(5, now=NOW)
        path = tmp_path / "var" / "secret.key"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        first = path.read_text()
        assert links.verify(token, now=NOW) == 5  # the same key read back
        assert path.read_text() == first
        path.write_text(os.urandom(32).hex())  # a new key: old links stop working
        with pytest.raises(links.LinkError):
            links.verify(token, now=NOW)
    finally:
        get_settings.cache_clear()


@settings(max_examples=50)
@given(st.integers(min_value=1, max_value=2**40 - 1))
def test_every_ticket_id_round_trips(ticket_id: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JIESU_SECRET_KEY", "round-trip")
        token = links.sign(ticket_id, now=NOW)
        assert links.verify(token, now=NOW) == ticket_id
