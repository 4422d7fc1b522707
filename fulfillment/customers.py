"""Customers as the shop remembers them: first and last seen, chosen language, reachable or not."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from storage.protocol import Store


class Customers:
    def __init__(self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock

    async def touch(self, channel: str, user_id: str, chat_id: str, referrer: str = "") -> None:
        """Remember a customer; a referrer is kept only the first time (and never oneself)."""
        await self.store.touch_user(channel, user_id, chat_id, self.clock(), referrer)

    async def language(self, channel: str, user_id: str) -> str | None:
        return await self.store.user_language(channel, user_id)

    async def choose_language(self, channel: str, user_id: str, chat_id: str, language: str) -> None:
        # two writes: the customer row must exist before its language is set (touch creates it)
        await self.store.touch_user(channel, user_id, chat_id, self.clock())
        await self.store.set_user_language(channel, user_id, language)

    async def set_reachable(self, channel: str, user_id: str, reachable: bool) -> None:
        """Unfollowed / blocked the bot (False), or came back (True): broadcasts skip the unreachable."""
        await self.store.set_user_blocked(channel, user_id, not reachable)
