"""A customer's recharge checkout in progress: the SKU and quantity chosen, waiting for the target they type.

The dialog is otherwise stateless (each button carries what its step needs), but a typed mobile number or account
id is free text, so what it answers is kept here, per channel and user, in the shared store (any process may get
the next message), for DRAFT_FOR. A draft holds the target once checked; the checkout that follows checks it again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

DRAFT_FOR = timedelta(minutes=15)


class DraftKv(Protocol):
    async def kv_get(self, key: str, now: datetime) -> str | None: ...
    async def kv_put(self, key: str, value: str, expires_at: datetime | None) -> None: ...


@dataclass(frozen=True, slots=True)
class RechargeDraft:
    sku_id: int
    quantity: int
    unit_price: int  # the price the customer was shown; a checkout at another price is refused
    target: str | None = None  # normalised, once the customer typed a valid one


class RechargeDrafts:
    def __init__(self, store: DraftKv, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock

    @staticmethod
    def _key(channel: str, user_id: str) -> str:
        return f"recharge.draft:{channel}:{user_id}"

    async def start(self, channel: str, user_id: str, draft: RechargeDraft) -> None:
        await self.store.kv_put(self._key(channel, user_id), json.dumps(asdict(draft), separators=(",", ":")),
                                self.clock() + DRAFT_FOR)

    async def current(self, channel: str, user_id: str) -> RechargeDraft | None:
        raw = await self.store.kv_get(self._key(channel, user_id), self.clock())
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return RechargeDraft(int(data["sku_id"]), int(data["quantity"]), int(data["unit_price"]),
                                 data.get("target"))
        except (ValueError, KeyError, TypeError):
            return None

    async def drop(self, channel: str, user_id: str) -> None:
        await self.store.kv_put(self._key(channel, user_id), "", self.clock())
