"""The WeChat Pay watch list: trade numbers (out_trade_no) with a live prepay, in one kv value shared by all
processes; updates are read-modify-write under a short lease so processes do not lose each other's updates."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from storage.protocol import Store

WATCH_KEY = "wechatpay.watch"
WATCH_LOCK = "wechatpay.watch.lock"


class WatchList:
    """Trade numbers (out_trade_no) with a live prepay, in one kv value; updates are read-modify-write under a lease."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock

    async def refs(self) -> dict[str, float]:
        raw = await self.store.kv_get(WATCH_KEY, self.clock())
        data = json.loads(raw) if raw else {}
        return data if isinstance(data, dict) else {}

    async def _update(self, change: Callable[[dict[str, float]], None]) -> None:
        holder = secrets.token_hex(8)
        for _ in range(200):
            now = self.clock()
            if await self.store.try_lease(WATCH_LOCK, holder, now + timedelta(seconds=5), now):
                try:
                    refs = await self.refs()
                    change(refs)
                    await self.store.kv_put(WATCH_KEY, json.dumps(refs, separators=(",", ":")), None)
                finally:
                    await self.store.release_lease(WATCH_LOCK, holder)
                return
            await asyncio.sleep(0.01)
        raise TimeoutError("wechatpay watch list is locked")

    async def add(self, ref: str) -> None:
        at = self.clock().timestamp()

        def change(refs: dict[str, float]) -> None:
            refs.setdefault(ref, at)

        await self._update(change)

    async def remove(self, done: set[str]) -> None:
        def change(refs: dict[str, float]) -> None:
            for ref in done:
                refs.pop(ref, None)

        if done:
            await self._update(change)
