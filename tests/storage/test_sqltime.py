"""storage/sqltime.py: every stored time is fixed-width UTC text, the same for one instant whatever zone it came in,
and read back as the same instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.sqltime import from_ts, ts

ZONES = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))])
# hypothesis takes naive bounds and adds the zone itself
INSTANTS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=ZONES)  # noqa: DTZ001


@given(INSTANTS)
def test_one_instant_is_one_fixed_width_text_read_back_as_itself(dt: datetime) -> None:
    text = ts(dt)
    assert len(text) == 27
    assert text.endswith("Z")
    assert text == ts(dt.astimezone(timezone(timedelta(hours=3))))  # the UTC fast path and the converted one agree
    assert from_ts(text) == dt
    assert from_ts(text).tzinfo is UTC


def test_texts_sort_as_their_instants() -> None:
    base = datetime(2026, 12, 3, 23, 59, 59, 999_999, tzinfo=UTC)
    later = (base + timedelta(hours=1)).astimezone(timezone(timedelta(hours=8)))
    times = [base, base + timedelta(microseconds=1), later]
    assert sorted(ts(t) for t in reversed(times)) == [ts(t) for t in times]
    assert ts(base) == "2026-12-03T23:59:59.999999Z"
    assert ts(datetime(2026, 1, 1, 8, tzinfo=timezone(timedelta(hours=8)))) == "2026-01-01T00:00:00.000000Z"


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        ts(datetime(2026, 1, 1))  # noqa: DTZ001 - the mistake under test
