"""One user's turn across instances (handlers.ordering.UserTurns): Redis when configured, else a lease in the
shared PostgreSQL database; SQLite is one instance and needs neither (the process lock suffices).

Redis: `SET key token NX PX ttl` takes the turn, a Lua compare-and-delete gives it back (only the holder's own
token, https://redis.io/docs/latest/develop/use/patterns/distributed-locks/), a compare-and-pexpire renews it
while a long turn runs. The database lease is `store.try_lease`/`release_lease` under the same name scheme.
A waiter polls (5 ms doubling to 50 ms). A holder that died leaves its turn to expire after `ttl`; a waiter
gives up after `wait` and goes on unlocked (logged): a lost instance must not silence a user for good.
When Redis itself fails, the turn is skipped (logged), like the limiter's fail-open policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from redis.exceptions import RedisError

log = logging.getLogger("kamibot.turns")
PREFIX = "kamibot:turn:"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2])"
          " else return 0 end")


class Leases(Protocol):
    async def try_lease(self, name: str, holder: str, until: datetime, now: datetime) -> bool: ...
    async def release_lease(self, name: str, holder: str) -> None: ...


class _Turns:
    """The wait loop and the renewal shared by both backends; subclasses take, renew and give back."""

    def __init__(self, ttl_s: float = 30.0, wait_s: float = 35.0) -> None:
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self.waits = 0  # turns that had to wait for another holder (tests, metrics)

    async def _take(self, key: str, token: str) -> bool:
        raise NotImplementedError

    async def _renew(self, key: str, token: str) -> bool:
        raise NotImplementedError

    async def _give_back(self, key: str, token: str) -> None:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        token = secrets.token_hex(12)
        held = await self._wait_for(key, token)
        renewer = asyncio.create_task(self._keep(key, token)) if held else None
        try:
            yield
        finally:
            if renewer is not None:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
                try:
                    await self._give_back(key, token)
                except Exception as exc:  # noqa: BLE001 - the turn then expires after ttl
                    log.warning("event=turn.release_failed error=%s", type(exc).__name__)

    async def _wait_for(self, key: str, token: str) -> bool:
        deadline, pause, waited = time.monotonic() + self.wait_s, 0.005, False
        while True:
            try:
                if await self._take(key, token):
                    return True
            except (RedisError, OSError) as exc:
                log.warning("event=turn.unavailable error=%s", type(exc).__name__)
                return False
            if not waited:
                waited = True
                self.waits += 1
            if time.monotonic() >= deadline:
                log.warning("event=turn.wait_exceeded seconds=%s", self.wait_s)
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    async def _keep(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                if not await self._renew(key, token):
                    log.warning("event=turn.lost")
                    return
            except Exception as exc:  # noqa: BLE001 - try again at the next renewal
                log.warning("event=turn.renew_failed error=%s", type(exc).__name__)


class RedisTurns(_Turns):
    def __init__(self, redis: Any, ttl_s: float = 30.0, wait_s: float = 35.0) -> None:
        super().__init__(ttl_s, wait_s)
        self.redis = redis
        self._release = redis.register_script(_RELEASE)
        self._renewal = redis.register_script(_RENEW)

    async def _take(self, key: str, token: str) -> bool:
        return bool(await self.redis.set(PREFIX + key, token, nx=True, px=int(self.ttl_s * 1000)))

    async def _renew(self, key: str, token: str) -> bool:
        return bool(await self._renewal(keys=[PREFIX + key], args=[token, int(self.ttl_s * 1000)]))

    async def _give_back(self, key: str, token: str) -> None:
        await self._release(keys=[PREFIX + key], args=[token])


class LeaseTurns(_Turns):
    """Turns as leases in the shared database (two round trips per turn: take and give back)."""

    def __init__(self, store: Leases, ttl_s: float = 30.0, wait_s: float = 35.0) -> None:
        super().__init__(ttl_s, wait_s)
        self.store = store

    async def _take(self, key: str, token: str) -> bool:
        now = datetime.now(UTC)
        return await self.store.try_lease("turn:" + key, token, now + timedelta(seconds=self.ttl_s), now)

    _renew = _take

    async def _give_back(self, key: str, token: str) -> None:
        await self.store.release_lease("turn:" + key, token)
