"""Whole numbers typed by people (quantities, prices in minor units): plain ASCII digits only, in range."""

from __future__ import annotations

from fulfillment.errors import ShopError


def parse_whole(raw: object, low: int, high: int, error: type[ShopError], what: str) -> int:
    """'9.99', '-1', '1e3', '١٢' (non-ASCII digits), True and floats are refused with `error`."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        value = int(raw.strip())
    else:
        raise error(f"{what} must be a whole number")
    if not low <= value <= high:
        raise error(f"{what} out of range")
    return value
