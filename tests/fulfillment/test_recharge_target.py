"""Recharge targets: mainland mobile numbers normalised and their carrier named, account ids by the SKU's pattern,
bad patterns refused when the merchant sets them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fulfillment.recharge_target import (
    MAX_TARGET,
    PREFIXES,
    BadTarget,
    Carrier,
    carrier_of,
    check_rule,
    check_target,
    masked,
    normalise_mobile,
)


@pytest.mark.parametrize(("typed", "number", "carrier"), [
    ("13800138000", "13800138000", Carrier.CHINA_MOBILE),
    ("+86 138 0013 8000", "13800138000", Carrier.CHINA_MOBILE),
    ("0086-186-1234-5678", "18612345678", Carrier.CHINA_UNICOM),
    ("8618912345678", "18912345678", Carrier.CHINA_TELECOM),
    ("１９２ １２３４ ５６７８", "19212345678", Carrier.CHINA_BROADNET),  # full-width digits from a Chinese keyboard
    ("(170) 0123-4567", "17001234567", Carrier.VIRTUAL),
    ("138–0013—8000", "13800138000", Carrier.CHINA_MOBILE),  # en and em dashes
    ("13412345678", "13412345678", Carrier.CHINA_MOBILE),
])
def test_mobile_numbers_are_normalised_and_their_carrier_named(typed, number, carrier):
    assert check_target("mobile", typed) == number
    assert carrier_of(number) is carrier


@pytest.mark.parametrize(("typed", "reason"), [
    ("", "empty"),
    ("  - ", "empty"),
    ("1380013800", "wrong_length"),
    ("138001380001", "wrong_length"),
    ("1380013800x", "not_digits"),
    ("١٣٨٠٠١٣٨٠٠٠", "not_digits"),  # Arabic-Indic digits are digits to Python, not to a phone network
    ("12012345678", "unknown_prefix"),
    ("13491234567", "unknown_prefix"),  # 1349: satellite
    ("14012345678", "unknown_prefix"),  # 140-144: IoT
    ("23800138000", "unknown_prefix"),
    ("1" * 200, "too_long"),
])
def test_bad_mobile_numbers_are_refused_with_a_reason(typed, reason):
    with pytest.raises(BadTarget) as refused:
        check_target("mobile", typed)
    assert refused.value.reason == reason


def test_every_prefix_belongs_to_one_carrier_and_is_a_mobile_prefix():
    assert all(len(p) in (3, 4) and p.startswith("1") for p in PREFIXES)
    assert {"170", "171", "162", "165", "167"} <= {p for p, c in PREFIXES.items() if c is Carrier.VIRTUAL}
    assert PREFIXES["192"] is Carrier.CHINA_BROADNET
    assert "134" not in PREFIXES
    assert "1349" not in PREFIXES


_prefix = st.sampled_from(sorted(p for p in PREFIXES))
_separator = st.sampled_from(["", " ", "-", "  ", " - ", "."])


@st.composite
def typed_numbers(draw):
    prefix = draw(_prefix)
    number = prefix + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=11 - len(prefix),
                                            max_size=11 - len(prefix))))
    country = draw(st.sampled_from(["", "+86", "0086", "86", "+86 ", "0086-"]))
    pieces, rest = [], number
    while rest:
        cut = draw(st.integers(1, len(rest)))
        pieces.append(rest[:cut])
        rest = rest[cut:]
    sep = draw(_separator)
    return number, draw(st.sampled_from(["", " "])) + country + sep.join(pieces) + draw(_separator)


@settings(max_examples=150, deadline=None)
@given(typed_numbers())
def test_any_way_of_typing_a_valid_number_normalises_to_its_11_digits(case):
    number, typed = case
    assert normalise_mobile(typed) == number
    assert normalise_mobile(number) == number  # idempotent
    assert carrier_of(number) is PREFIXES.get(number[:3], PREFIXES.get(number[:4]))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_anything_typed_is_either_a_valid_number_or_refused_with_a_reason(text):
    try:
        number = normalise_mobile(text)
    except BadTarget as exc:
        reason = exc.reason
    else:
        reason = ""
        assert re.fullmatch("1[0-9]{10}", number)
        assert carrier_of(number) is not None
        assert normalise_mobile(number) == number
    assert reason in ("", *BadTarget.REASONS)


@pytest.mark.parametrize(("rule", "typed", "value"), [
    (r"re:\d{5,12}", " 123456 ", "123456"),
    (r"re:\d{5,12}", "１２３４５６", "123456"),
    (r"re:[A-Za-z0-9_]{4,20}", "Player_01", "Player_01"),
])
def test_account_ids_must_match_the_whole_pattern(rule, typed, value):
    assert check_target(rule, typed) == value


@pytest.mark.parametrize(("typed", "reason"), [
    ("1234", "no_match"),  # too short
    ("123456x", "no_match"),  # the pattern matches a part only: refused (full match)
    ("x123456", "no_match"),
    ("12345\n6", "no_match"),
    ("", "empty"),
    ("1" * (MAX_TARGET + 1), "too_long"),
])
def test_ids_that_do_not_fit_are_refused(typed, reason):
    with pytest.raises(BadTarget) as refused:
        check_target(r"re:\d{5,12}", typed)
    assert refused.value.reason == reason


@pytest.mark.parametrize("rule", ["re:(", "re:", "re:" + "a" * 300, "re:(a+)+$", "re:(a|aa)*", "re:(\\w*)*x",
                                  "phone", "re:[z-a]"])
def test_bad_rules_are_refused_when_set(rule):
    with pytest.raises(BadTarget) as refused:
        check_rule(rule)
    assert refused.value.reason == "bad_rule"


def test_good_rules_and_no_rule():
    assert check_rule("mobile") == "mobile"
    assert check_rule(r" re:\d{5,12} ") == r"re:\d{5,12}"
    assert check_rule(None) is None
    assert check_rule("none") is None


def test_a_hostile_id_against_an_accepted_pattern_is_answered_at_once():
    rule = check_rule(r"re:[a-z]+\d*[a-z]*\d+")
    assert rule is not None
    with pytest.raises(BadTarget):  # returns (a refused pattern would hang until the per-test timeout)
        check_target(rule, "a" * MAX_TARGET + "!")


def test_masking_for_order_lists():
    assert masked("13800138000") == "138****8000"
    assert masked("Player_01") == "Pl*****01"
    assert masked("abc") == "a**"
