"""Supplier prices to minor units: exact, rounded up, absurd values refused."""

from __future__ import annotations

import pytest

from fulfillment.suppliers.amounts import MAX_MINOR, minor_to_yuan, yuan_to_minor
from fulfillment.suppliers.errors import BadAnswer
from fulfillment.suppliers.protocol import Money, OrderStatus


@pytest.mark.parametrize(("raw", "minor"), [("3.0000", 300), ("9.9", 990), (12, 1200), (0.1, 10), ("0.0001", 1),
                                            (" 1.50 ", 150), ("0", 0)])
def test_yuan_to_minor_is_exact_and_rounds_sub_fen_up(raw, minor):
    assert yuan_to_minor(raw, "price") == minor


@pytest.mark.parametrize("raw", ["-1", "-0.01", "abc", "", "NaN", "Infinity", "1e400", None, True, [], "1,00",
                                 str(MAX_MINOR // 100 + 1)])
def test_yuan_to_minor_refuses_what_is_not_a_sane_price(raw):
    with pytest.raises(BadAnswer):
        yuan_to_minor(raw, "price")


def test_minor_to_yuan_writes_two_decimals():
    assert minor_to_yuan(990) == "9.90"
    assert minor_to_yuan(5) == "0.05"
    with pytest.raises(ValueError, match="negative"):
        minor_to_yuan(-1)


def test_money_is_integer_minor_units_only():
    with pytest.raises(TypeError):
        Money(9.9)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True)


def test_only_succeeded_and_failed_are_definitive():
    assert {s for s in OrderStatus if s.definitive} == {OrderStatus.SUCCEEDED, OrderStatus.FAILED}
