"""Sending pace for Telegram: a token bucket per chat (a small burst, then about one message per second) and
about 30 messages per second overall.

https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this: "In a single chat, avoid
sending more than one message per second. We may allow short bursts that go over this limit". So a chat's
first few messages go out at once (the answer to the buyer's own tap never waits) and only a longer run is
spread out. PTB's AIORateLimiter does not enforce the per-private-chat limit, so the sending layer does.

Fairness: a message first waits for its own chat's bucket and only then queues for the overall pace, first
come first served. A chat that has sent its burst waits alone; it never holds a place in the overall queue
(and so never delays another chat) while it waits for its own tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

MAX_CHATS = 50_000


class Pacer:
    def __init__(self, per_chat_interval: float = 1.0, global_per_second: float = 30.0, burst: int = 4,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_chat = per_chat_interval
        self.burst = max(1, burst)
        self.gap = 1.0 / global_per_second
        self.clock = clock
        #: per chat, the bucket as a theoretical arrival time (GCRA): empty when it is `burst` intervals ahead
        self._tat: dict[str, float] = {}
        self._next_global = 0.0
        #: how often a message had to wait for its chat's bucket / for the overall pace (tests and benchmarks)
        self.chat_waits = 0
        self.global_waits = 0

    def reserve(self, chat_id: str) -> float:
        """Seconds until chat_id's bucket has a token; the token is taken at once (no await in between)."""
        now = self.clock()
        tat = max(self._tat.get(chat_id, now), now)
        send_at = max(now, tat - (self.burst - 1) * self.per_chat)
        self._tat[chat_id] = tat + self.per_chat
        if len(self._tat) > MAX_CHATS:  # a full bucket needs no entry
            self._tat = {c: t for c, t in self._tat.items() if t > now}
        return send_at - now

    def reserve_global(self) -> float:
        now = self.clock()
        slot = max(now, self._next_global)
        self._next_global = slot + self.gap
        return slot - now

    async def wait(self, chat_id: str) -> None:
        """Before a new message to chat_id."""
        delay = self.reserve(chat_id)
        if delay > 0:
            self.chat_waits += 1
            await asyncio.sleep(delay)
        await self.wait_global()

    async def wait_global(self) -> None:
        """Before an edit of a message in answer to the user's own tap: it adds no message to the chat, so it takes
        no token of the chat's bucket (the flood gate bounds how often a user can tap), only its overall place."""
        delay = self.reserve_global()
        if delay > 0:
            self.global_waits += 1
            await asyncio.sleep(delay)
