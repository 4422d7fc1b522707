"""The Telegram sending pace (handlers/telegram/pacing.py), on a clock the test moves."""

from __future__ import annotations

import pytest

from handlers.telegram.pacing import Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def test_a_chat_gets_its_burst_at_once_then_one_message_a_second():
    pacer = Pacer(1.0, 30.0, burst=4, clock=Clock())
    delays = [pacer.reserve("7") for _ in range(7)]
    assert delays == pytest.approx([0, 0, 0, 0, 1, 2, 3])


def test_the_bucket_refills_while_the_chat_is_quiet():
    clock = Clock()
    pacer = Pacer(1.0, 30.0, burst=4, clock=clock)
    for _ in range(4):
        pacer.reserve("7")
    clock.now += 2.5  # two and a half tokens back
    assert [pacer.reserve("7") for _ in range(3)] == pytest.approx([0, 0, 0.5])


def test_edits_have_their_own_bucket_per_chat():
    clock = Clock()
    pacer = Pacer(1.0, 30.0, burst=4, edit_burst=5, clock=clock)
    for _ in range(4):
        pacer.reserve("7")
    assert [pacer.edits.reserve("7") for _ in range(6)] == pytest.approx([0, 0, 0, 0, 0, 1])


def test_overall_at_most_the_rate_in_any_window_and_at_once_below_it():
    pacer = Pacer(1.0, 30.0, burst=1, clock=Clock())
    delays = [pacer.reserve_global() for _ in range(31)]
    assert delays[:30] == [0.0] * 30  # answers are not spaced 33 ms apart when the bot is quiet
    assert delays[30] == pytest.approx(1.0)


def test_a_chat_waiting_for_its_own_bucket_delays_no_other_chat():
    """A flooding chat has reserved messages seconds ahead; another chat's message still goes at once."""
    clock = Clock()
    pacer = Pacer(1.0, 30.0, burst=4, clock=clock)
    ahead = [pacer.reserve("flood") for _ in range(20)]
    assert max(ahead) == pytest.approx(16)
    assert pacer.reserve("buyer") == 0
    assert pacer.reserve_global() == 0  # the flooder's future messages hold no place in the overall window


async def test_waits_are_counted(monkeypatch):
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("handlers.telegram.pacing.asyncio.sleep", sleep)
    pacer = Pacer(1.0, 30.0, burst=2, clock=Clock())
    for _ in range(3):
        await pacer.wait("7")
    await pacer.wait_edit("7")
    assert (pacer.chat_waits, pacer.global_waits, slept) == (1, 0, [pytest.approx(1.0)])
