"""One WeChat access token for every process: kept in the store with its expiry, refreshed by one lease holder.

A new token invalidates the previous one five minutes later and fetches are limited per day, so a
process never refreshes on its own: it takes the `wechat.access_token` lease (or waits for its holder
and re-reads). https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Get_access_token.html
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

log = logging.getLogger("kamibot.wechat")
LEASE_FOR = timedelta(seconds=30)


class TokenUnavailable(Exception):
    """No token could be had in time (the refresher is slow or WeChat refuses): try again later."""


class TokenStore(Protocol):
    """Where the token is shared and who may refresh it: the shop's store satisfies it (passed in by bot/)."""

    async def kv_get(self, key: str, now: datetime) -> str | None: ...
    async def kv_put(self, key: str, value: str, expires_at: datetime | None) -> None: ...
    async def try_lease(self, name: str, holder: str, until: datetime, now: datetime) -> bool: ...
    async def release_lease(self, name: str, holder: str) -> None: ...


@dataclass(frozen=True)
class _Cached:
    token: str
    refresh_at: datetime


class SharedAccessToken:
    def __init__(self, shared: TokenStore, app_id: str, fetch: Callable[[], Awaitable[tuple[str, int]]],
                 refresh_before: timedelta = timedelta(minutes=10), wait_s: float = 5.0, poll_s: float = 0.05,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.shared = shared
        self.fetch = fetch  # → (token, expires_in seconds)
        self.key = f"wechat:access_token:{app_id}"
        self.lease = f"wechat.access_token.{app_id}"
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.refresh_before = refresh_before
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.clock = clock
        self._lock = asyncio.Lock()  # one refresh attempt per process; the lease makes it one per shop

    async def _read(self) -> _Cached | None:
        raw = await self.shared.kv_get(self.key, self.clock())
        if raw is None:
            return None
        data = json.loads(raw)
        return _Cached(str(data["token"]), datetime.fromisoformat(data["refresh_at"]))

    def _good(self, cached: _Cached | None, stale: str | None) -> bool:
        return cached is not None and cached.token != stale and self.clock() < cached.refresh_at

    async def get(self) -> str:
        cached = await self._read()
        if cached is not None and self._good(cached, None):
            return cached.token
        return await self._refresh(None)

    async def invalidate(self, bad: str) -> str:
        """WeChat said 40001/42001 for `bad`: a token other than `bad`, fetched at most once across processes."""
        return await self._refresh(bad)

    async def _refresh(self, stale: str | None) -> str:
        async with self._lock:
            cached = await self._read()
            if cached is not None and self._good(cached, stale):
                return cached.token
            now = self.clock()
            if await self.shared.try_lease(self.lease, self.holder, now + LEASE_FOR, now):
                try:
                    return await self._fetch_and_share(stale)
                finally:
                    await self.shared.release_lease(self.lease, self.holder)
            # another process is refreshing: the current token is still valid for a while, else wait for theirs
            if cached is not None and cached.token != stale:
                return cached.token
            return await self._wait_for_other(stale)

    async def _fetch_and_share(self, stale: str | None) -> str:
        cached = await self._read()  # the previous holder may have finished just before we took the lease
        if cached is not None and self._good(cached, stale):
            return cached.token
        token, expires_in = await self.fetch()
        now = self.clock()
        expires_at = now + timedelta(seconds=expires_in)
        refresh_at = expires_at - min(self.refresh_before, timedelta(seconds=expires_in / 2))
        await self.shared.kv_put(self.key, json.dumps({"token": token, "refresh_at": refresh_at.isoformat()}),
                                expires_at)
        log.info("event=wechat.token_refreshed expires_in=%s", expires_in)  # never the token
        return token

    async def _wait_for_other(self, stale: str | None) -> str:
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(self.poll_s)
            cached = await self._read()
            if cached is not None and cached.token != stale:
                return cached.token
        raise TokenUnavailable("access token refresh by another process did not finish in time")
