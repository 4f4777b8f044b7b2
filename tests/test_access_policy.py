"""The access rules (SPEC §1) as pure functions: masking of the requester's identity and what a
principal may see. No database."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jiesu.access.policy import INTAKE_ROLES, Principal, mask_name, mask_phone
from jiesu.citypack.parse import ROLES
from jiesu.tickets.shapes import normalise_phone

MOBILE = st.from_regex(r"\A1[3-9]\d{9}\Z")
LANDLINE = st.from_regex(r"\A0\d{9,11}\Z")
LOCAL = st.from_regex(r"\A[2-9]\d{6,7}\Z")
PHONES = st.one_of(MOBILE, LANDLINE, LOCAL)
NAMES = st.text(alphabet=st.characters(categories=("Lo", "Lu", "Ll")), min_size=2, max_size=12)


def principal(
    *,
    unit_id: int = 254,
    unit_path: str = "/1/17/254/",
    unit_function: str | None = None,
    role: str = "handler",
) -> Principal:
    return Principal(
        user_id=7,
        username="someone",
        name="某人",
        role=role,
        unit_id=unit_id,
        unit_path=unit_path,
        unit_function=unit_function,
    )


SERVICE_CENTRE = principal(unit_id=9, unit_path="/1/9/", unit_function="service_centre")
STREET = principal()  # unit 254 under district 17 under city 1


# ---- mask_phone ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13800138000", "138****8000"),
        ("01012345678", "010****5678"),
        ("031187654321", "031*****4321"),
        ("62345678", "****5678"),
        ("2345678", "***5678"),
    ],
)
def test_mask_phone_keeps_only_the_ends(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize("empty", [None, ""])
def test_mask_phone_of_nothing_is_nothing(empty: str | None) -> None:
    assert mask_phone(empty) == empty


@given(PHONES)
def test_a_masked_phone_never_contains_the_middle_digits(phone: str) -> None:
    masked = mask_phone(phone)
    assert masked is not None
    assert len(masked) == len(phone)
    assert masked.endswith(phone[-4:])
    if len(phone) >= 11:  # mobile-length: 3 + stars + 4
        assert masked[:3] == phone[:3]
        middle = masked[3:-4]
    else:  # short local numbers: only the last 4 stay
        middle = masked[:-4]
    assert middle == "*" * len(middle)
    assert len(middle) >= 3
    assert masked != phone


@given(PHONES)
def test_every_masked_position_is_a_star_or_the_original_digit(phone: str) -> None:
    masked = mask_phone(phone)
    assert masked is not None
    assert all(m in ("*", p) for m, p in zip(masked, phone, strict=True))
    assert sum(ch.isdigit() for ch in masked) <= 7


@given(PHONES)
def test_every_normalised_phone_masks_to_something_else(phone: str) -> None:
    stored = normalise_phone(phone)
    assert stored == phone
    assert mask_phone(stored) != stored


# ---- mask_name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张三", "张*"),
        ("张三丰", "张**"),
        ("欧阳修文", "欧阳**"),
        ("爱新觉罗溥仪", "爱新****"),
    ],
)
def test_mask_name_keeps_the_family_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


@pytest.mark.parametrize("empty", [None, ""])
def test_mask_name_of_nothing_is_nothing(empty: str | None) -> None:
    assert mask_name(empty) == empty


@given(NAMES)
def test_a_masked_name_never_shows_the_given_name(name: str) -> None:
    masked = mask_name(name)
    assert masked is not None
    assert masked != name
    keep = 2 if len(name) >= 4 else 1
    assert masked[:keep] == name[:keep]
    assert masked[keep:] == "*" * (len(name) - keep)


# ---- what a principal sees -----------------------------------------------------------------


def test_the_service_centre_is_the_unit_with_the_service_centre_function() -> None:
    assert SERVICE_CENTRE.is_service_centre
    assert not STREET.is_service_centre
    assert not principal(unit_function="housing").is_service_centre


@pytest.mark.parametrize("confidential", [False, True])
@pytest.mark.parametrize("lead_unit_id", [None, 9, 254, 999])
def test_the_service_centre_always_sees_identity(
    confidential: bool, lead_unit_id: int | None
) -> None:
    assert SERVICE_CENTRE.sees_identity(confidential=confidential, lead_unit_id=lead_unit_id)


def test_the_lead_unit_sees_identity_unless_confidential() -> None:
    assert STREET.sees_identity(confidential=False, lead_unit_id=254)
    assert not STREET.sees_identity(confidential=True, lead_unit_id=254)


@pytest.mark.parametrize("lead_unit_id", [None, 17, 1, 255])
def test_a_unit_that_does_not_lead_never_sees_identity(lead_unit_id: int | None) -> None:
    # not even the district above the lead street (17) or the city (1)
    assert not STREET.sees_identity(confidential=False, lead_unit_id=lead_unit_id)


@given(st.booleans(), st.one_of(st.none(), st.integers(min_value=1, max_value=10**9)))
def test_identity_is_shown_only_to_the_service_centre_or_a_non_confidential_lead(
    confidential: bool, lead_unit_id: int | None
) -> None:
    shows = STREET.sees_identity(confidential=confidential, lead_unit_id=lead_unit_id)
    assert shows == (not confidential and lead_unit_id == STREET.unit_id)


@pytest.mark.parametrize(
    ("path", "sees"),
    [
        ("/1/17/254/", True),  # itself
        ("/1/17/254/3001/", True),  # a community below it
        ("/1/17/254/3001/40001/", True),  # a grid below that
        ("/1/17/", False),  # its district
        ("/1/", False),  # the city
        ("/1/17/255/", False),  # a sibling street
        ("/1/17/2540/", False),  # an id that merely starts with the same digits
        ("/1/172/254/", False),
    ],
)
def test_a_unit_sees_itself_and_what_is_beneath_it(path: str, sees: bool) -> None:
    assert STREET.sees_unit_path(path) is sees


@given(st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=6))
def test_the_service_centre_sees_every_unit_path(ids: list[int]) -> None:
    assert SERVICE_CENTRE.sees_unit_path("/" + "/".join(map(str, ids)) + "/")


@given(
    st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=5),
    st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=5),
)
def test_seeing_a_path_means_being_an_ancestor_or_self(mine: list[int], other: list[int]) -> None:
    me = principal(unit_path="/" + "/".join(map(str, mine)) + "/")
    other_path = "/" + "/".join(map(str, other)) + "/"
    assert me.sees_unit_path(other_path) == (other[: len(mine)] == mine)


@pytest.mark.parametrize("role", ROLES)
def test_only_agents_dispatchers_and_admins_take_requests_in(role: str) -> None:
    assert principal(role=role).can_intake() is (role in {"agent", "dispatcher", "admin"})
    assert set(INTAKE_ROLES) <= set(ROLES)


def test_a_one_character_name_is_fully_masked() -> None:
    assert mask_name("张") == "*"
