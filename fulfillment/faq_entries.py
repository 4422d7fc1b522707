"""The merchant's own FAQ entries (TOML text), shared by every process: the after-sales assistant reloads them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from storage.protocol import Store

FAQ_KEY = "faq.merchant_entries"


class FaqEntries:
    def __init__(self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock

    async def load(self) -> str:
        """The stored entries as TOML text ("" when the merchant has none)."""
        return await self.store.kv_get(FAQ_KEY, self.clock()) or ""

    async def save(self, text: str) -> None:
        await self.store.kv_put(FAQ_KEY, text, None)
