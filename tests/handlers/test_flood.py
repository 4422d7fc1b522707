"""Chat flood control (handlers/flood.py): over the bucket a message is dropped; one notice per flood."""

from __future__ import annotations

from bot.demo import MERCHANT_ID, make_context
from handlers.flood import Admission, FloodGate
from handlers.router import Conversation
from handlers.types import Incoming

BURST = 20  # the default rules: chat_burst 20, chat_per_minute 60


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _gate(demo, clock: Clock) -> FloodGate:
    demo.shop.risk.clock = clock  # the bucket's time and the gate's are one
    return FloodGate(make_context(demo.shop, {MERCHANT_ID}), clock=clock)


async def test_a_burst_is_answered_then_one_notice_then_silence(demo):
    clock = Clock()
    gate = _gate(demo, clock)
    got = [await gate.admit("console", "chatty") for _ in range(BURST + 30)]
    assert got[:BURST] == [Admission.ANSWER] * BURST
    assert got[BURST:] == [Admission.NOTICE] + [Admission.DROP] * 29
    assert await gate.admit("console", "someone-else") is Admission.ANSWER
    assert all([await gate.admit("console", MERCHANT_ID) is Admission.ANSWER for _ in range(BURST * 3)])


async def test_a_steady_flood_at_the_refill_rate_gets_one_notice_not_one_per_second(demo):
    """Between drops the bucket lets one message a second through: that must not start a new flood."""
    clock = Clock()
    conversation = Conversation(make_context(demo.shop, {MERCHANT_ID}))
    conversation.flood = _gate(demo, clock)
    notices = answered = 0
    for n in range(BURST + 240):  # four messages a second for a minute
        clock.now += 0.25 if n >= BURST else 0.0
        replies = await conversation.handle(Incoming("console", "chatty", "chatty", text="/help", language="en"))
        notices += any("too fast" in r.text for r in replies)
        answered += bool(replies) and not any("too fast" in r.text for r in replies)
    assert notices == 1
    assert BURST + 55 <= answered <= BURST + 61  # the bucket's refill: one a second


async def test_after_a_quiet_spell_a_new_flood_gets_its_notice(demo):
    clock = Clock()
    gate = _gate(demo, clock)
    first = [await gate.admit("console", "chatty") for _ in range(BURST + 2)]
    clock.now += 60  # calm for a minute: the bucket is full again
    second = [await gate.admit("console", "chatty") for _ in range(BURST + 2)]
    assert first[BURST:] == second[BURST:] == [Admission.NOTICE, Admission.DROP]
