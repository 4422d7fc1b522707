"""Delivery retries back off exponentially with jitter, so rows that failed together do not retry together."""

from __future__ import annotations

from datetime import timedelta

from fulfillment.delivery import MAX_BACKOFF, retry_delay


def test_retry_delay_spreads_between_half_and_whole_step():
    low, high = retry_delay(3, 0.0), retry_delay(3, 0.999)
    assert low == timedelta(seconds=4)
    assert timedelta(seconds=7.9) < high < timedelta(seconds=8)


def test_rows_failing_together_get_different_retry_times():
    delays = {retry_delay(5, j / 10) for j in range(10)}
    assert len(delays) == 10


def test_retry_delay_never_exceeds_the_cap():
    assert retry_delay(30, 0.999) <= MAX_BACKOFF
    assert retry_delay(30, 0.0) == MAX_BACKOFF / 2
