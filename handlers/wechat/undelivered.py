"""Codes WeChat would not let us send (45015: 48-hour window passed; 43004: unfollowed) go out with the
customer's next message: their message reopens the window and the passive reply needs no quota.

Remembered per openid in the shared store; each failure is handed out once (a claim), so two processes
answering two quick messages do not both show it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from handlers.wechat.numbering import SharedKv

KEEP_FOR = timedelta(days=30)


class SharedKvClaims(SharedKv, Protocol):
    """Shared key-values plus once-only claims across processes (the composition root passes the store)."""

    async def claim_once(self, scope: str, key: str, expires_at: datetime, now: datetime) -> bool: ...


class Undelivered:
    def __init__(self, shared: SharedKvClaims, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.shared = shared
        self.clock = clock

    @staticmethod
    def _key(openid: str) -> str:
        return f"wechat:undelivered:{openid}"

    async def add(self, openid: str, order_id: int) -> None:
        now = self.clock()
        raw = await self.shared.kv_get(self._key(openid), now)
        pending = [p for p in (json.loads(raw) if raw else []) if p[0] != order_id][-19:]
        pending.append([order_id, secrets.token_hex(4)])
        await self.shared.kv_put(self._key(openid), json.dumps(pending), now + KEEP_FOR)

    async def take(self, openid: str) -> list[int]:
        """Order ids whose codes this answer should carry (usually none: one indexed read)."""
        now = self.clock()
        raw = await self.shared.kv_get(self._key(openid), now)
        if not raw or raw == "[]":
            return []
        await self.shared.kv_put(self._key(openid), "[]", now + KEEP_FOR)
        taken = []
        for order_id, tag in json.loads(raw):
            if await self.shared.claim_once("wechat.undelivered", f"{order_id}:{tag}", now + KEEP_FOR, now):
                taken.append(int(order_id))
        return taken
