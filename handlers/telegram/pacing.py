"""Sending pace for Telegram: token buckets per chat (a small burst, then about one message per second) and at
most about 30 messages in any second overall.

https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this: "In a single chat, avoid
sending more than one message per second. We may allow short bursts that go over this limit". So a chat's
first few messages go out at once (the answer to the buyer's own tap never waits) and only a longer run is
spread out. PTB's AIORateLimiter does not enforce the per-private-chat limit, so the sending layer does.
A menu that moves on in place (an edit) adds no message to the chat: edits have a bucket of their own per
chat, so a few taps are answered at once whatever the bot has just sent, and a user tapping without pause
is still held to about one edit per second.

The overall limit ("not more than 30 messages per second", same page) is a sliding window: a message goes at
once while fewer than 30 went out in the last second, so answers are not spaced 33 ms apart when the bot is
quiet. Fairness: a message first waits for its own chat's bucket and only then queues for the overall window,
first come first served. A chat that has used its burst waits alone; it never holds a place in the overall
queue (and so never delays another chat) while it waits for its own tokens, and no chat can put more than
its two bursts into the window at once.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

MAX_CHATS = 50_000
#: the overall window keeps at most this many send times (a very high rate gets a proportionally shorter window)
MAX_WINDOW = 1000


class ChatBuckets:
    """A token bucket per chat, kept as its theoretical arrival time (GCRA): full when the time has passed."""

    def __init__(self, interval: float, burst: int, clock: Callable[[], float]) -> None:
        self.interval = interval
        self.burst = max(1, burst)
        self.clock = clock
        self._tat: dict[str, float] = {}

    def reserve(self, chat_id: str) -> float:
        """Seconds until chat_id's bucket has a token; the token is taken at once (no await in between)."""
        now = self.clock()
        tat = max(self._tat.get(chat_id, now), now)
        send_at = max(now, tat - (self.burst - 1) * self.interval)
        self._tat[chat_id] = tat + self.interval
        if len(self._tat) > MAX_CHATS:  # a full bucket needs no entry
            self._tat = {c: t for c, t in self._tat.items() if t > now}
        return send_at - now


class Pacer:
    def __init__(self, per_chat_interval: float = 1.0, global_per_second: float = 30.0, burst: int = 4,
                 edit_burst: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.messages = ChatBuckets(per_chat_interval, burst, clock)
        self.edits = ChatBuckets(per_chat_interval, edit_burst, clock)
        self._window_n = max(1, min(math.ceil(global_per_second), MAX_WINDOW))
        self._window_s = self._window_n / global_per_second
        self._recent: deque[float] = deque(maxlen=self._window_n)  # the last places taken, oldest first
        #: how often a message had to wait for its chat's bucket / for the overall window (tests and benchmarks)
        self.chat_waits = 0
        self.global_waits = 0

    def reserve(self, chat_id: str) -> float:
        return self.messages.reserve(chat_id)

    def reserve_global(self) -> float:
        """Seconds until the overall window has room; the place is taken at once (first come, first served)."""
        now = self.clock()
        slot = now
        if self._recent:
            slot = max(slot, self._recent[-1])
            if len(self._recent) == self._window_n:
                slot = max(slot, self._recent[0] + self._window_s)
        self._recent.append(slot)
        return slot - now

    async def wait(self, chat_id: str) -> None:
        """Before a new message to chat_id."""
        await self._wait(self.messages.reserve(chat_id))

    async def wait_edit(self, chat_id: str) -> None:
        """Before an edit of a message in chat_id (a menu moving on in answer to the user's tap)."""
        await self._wait(self.edits.reserve(chat_id))

    async def _wait(self, delay: float) -> None:
        if delay > 0:
            self.chat_waits += 1
            await asyncio.sleep(delay)
        delay = self.reserve_global()
        if delay > 0:
            self.global_waits += 1
            await asyncio.sleep(delay)
