"""Numbered buttons across messages: the user's next "1" presses button 1 of the last answer.

Kept in the shared store by openid (any process may answer the next message), for a short while.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class SharedKv(Protocol):
    """The part of the shop's store the button numbers live in (the composition root passes the store)."""

    async def kv_get(self, key: str, now: datetime) -> str | None: ...
    async def kv_put(self, key: str, value: str, expires_at: datetime | None) -> None: ...


class ButtonMemory:
    def __init__(self, shared: SharedKv, ttl: timedelta = timedelta(minutes=30),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.shared = shared
        self.ttl = ttl
        self.clock = clock

    @staticmethod
    def _key(openid: str) -> str:
        return f"wechat:buttons:{openid}"

    async def remember(self, openid: str, buttons: dict[str, str], quantity_sku: str = "") -> None:
        value = json.dumps({"n": buttons, "qty": quantity_sku}, separators=(",", ":"))
        await self.shared.kv_put(self._key(openid), value, self.clock() + self.ttl)

    async def press(self, openid: str, number: str) -> str | None:
        """The button data `number` stands for in the last answer, or None (no such number, or it expired)."""
        if not number.isdigit() or len(number) > 4:
            return None
        raw = await self.shared.kv_get(self._key(openid), self.clock())
        if not raw:
            return None
        last = json.loads(raw)
        if number in last["n"]:
            return str(last["n"][number])
        if last["qty"] and int(number) > 0:  # a quantity without a button of its own; checkout checks its range
            return f"qty:{last['qty']}:{int(number)}"
        return None
