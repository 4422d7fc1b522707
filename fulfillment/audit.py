"""The merchant audit trail: who did what, from which channel, when (file contents and codes never)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from storage.protocol import Store

MAX_DETAIL = 200


class AuditTrail:
    def __init__(self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock

    async def record(self, channel: str, actor: str, action: str, detail: str) -> None:
        await self.store.audit(channel, actor, action, detail[:MAX_DETAIL], self.clock())
