"""Sending pace for Telegram: about one message per second per chat and about 30 per second overall.

PTB's AIORateLimiter does not enforce the per-private-chat limit, so the sending layer does: each send
reserves the next free slot of its chat and of the bot, then sleeps until it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Pacer:
    def __init__(self, per_chat_interval: float = 1.0, global_per_second: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_chat = per_chat_interval
        self.gap = 1.0 / global_per_second
        self.clock = clock
        self._next_chat: dict[str, float] = {}
        self._next_global = 0.0

    def reserve(self, chat_id: str) -> float:
        """Seconds to wait before sending to chat_id; the slot is taken at once (no await in between)."""
        now = self.clock()
        slot = max(now, self._next_chat.get(chat_id, 0.0), self._next_global)
        self._next_chat[chat_id] = slot + self.per_chat
        self._next_global = slot + self.gap
        if len(self._next_chat) > 50_000:
            self._next_chat = {c: t for c, t in self._next_chat.items() if t > now}
        return slot - now

    async def wait(self, chat_id: str) -> None:
        delay = self.reserve(chat_id)
        if delay > 0:
            await asyncio.sleep(delay)
