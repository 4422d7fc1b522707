"""Order numbers (storage.sqlite_orders.new_ref): "K" and 11 symbols customers can type (no 0/O/1/I), each symbol
drawn uniformly, so a number cannot be guessed from others."""

from __future__ import annotations

import re
from collections import Counter

from storage.sqlite_orders import new_ref

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def test_an_order_number_is_k_and_eleven_typeable_symbols() -> None:
    refs = [new_ref() for _ in range(5_000)]
    assert all(re.fullmatch(r"K[2-9A-HJ-NP-Z]{11}", r) for r in refs)
    assert len(set(refs)) == len(refs)


def test_every_symbol_is_drawn_evenly_at_every_position() -> None:
    refs = [new_ref() for _ in range(32_000)]
    for pos in (1, 6, 11):
        counts = Counter(r[pos] for r in refs)
        assert set(counts) == set(ALPHABET)
        # 1,000 expected each: a symbol dropped or doubled would be ~0 or ~2,000; 5 sigma is ~160
        assert all(800 < n < 1_200 for n in counts.values()), counts
