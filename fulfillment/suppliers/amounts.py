"""Supplier prices ("3.0000" yuan strings, JSON numbers) to integer minor units and back, refusing absurd values."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal, InvalidOperation

from fulfillment.suppliers.errors import BadAnswer

MAX_MINOR = 100_000_000  # 1,000,000.00 yuan: a supplier price above this is a bug or an attack, not a price
_CENT = Decimal("0.01")


def yuan_to_minor(raw: object, what: str) -> int:
    """'3.0000' / 3 / 3.5 yuan to fen. Sub-fen remainders round up (a cost is never understated).
    Negative, non-numeric, non-finite or absurd values raise BadAnswer."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise BadAnswer(f"{what} is not a number")
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise BadAnswer(f"{what} is not a number") from None
    if not value.is_finite() or value < 0:
        raise BadAnswer(f"{what} is negative or not finite")
    if value > Decimal(MAX_MINOR) / 100:  # checked first: quantize() of a huge exponent raises
        raise BadAnswer(f"{what} is absurdly high")
    return int((value.quantize(_CENT, rounding=ROUND_CEILING) * 100).to_integral_value())


def minor_to_yuan(minor: int) -> str:
    """Fen to the '12.34' string the suppliers read."""
    if minor < 0:
        raise ValueError("negative amount")
    return f"{minor // 100}.{minor % 100:02d}"
