"""Several instances sending for one bot keep to a share of Telegram's overall rate (bot/telegram.py
SenderShare), counted by live leases in the shared database: SQLite and PostgreSQL."""

from __future__ import annotations

from bot.telegram import SenderShare
from handlers.telegram.pacing import Pacer


async def test_instances_split_the_bots_rate_and_a_stopped_one_gives_its_share_back(store):
    pacers = [Pacer(1.0, 30.0) for _ in range(3)]
    shares = [SenderShare(store, pacer, f"host:{n}") for n, pacer in enumerate(pacers)]
    for share in shares:
        await share.tick()
    for share in shares:  # the first ticked before the others had joined: its next tick sees them
        await share.tick()
    assert [p.shares for p in pacers] == [3, 3, 3]
    assert pacers[0]._window_n == 10  # ten places a second each
    await shares[2].release()  # an instance stopping cleanly
    await shares[0].tick()
    await shares[1].tick()
    assert [p.shares for p in pacers[:2]] == [2, 2]
    await shares[1].release()
    await shares[0].tick()
    assert (pacers[0].shares, pacers[0]._window_n) == (1, 30)
