"""Limiter backends for the one shared suite: in-process, and real Redis (127.0.0.1:6379) under a fresh prefix."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from risk.limiters import Limiter, MemoryLimiter
from tests.conftest import REDIS_URL, REQUIRE_SERVICES


async def redis_or_skip() -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError):
        if REQUIRE_SERVICES:
            pytest.fail(f"Redis required (KAMIBOT_REQUIRE_SERVICES=1) but not reachable at {REDIS_URL}")
        pytest.skip("Redis not reachable on 127.0.0.1:6379")
    finally:
        await client.aclose()


async def drop_prefix(prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    if request.param == "memory":
        yield MemoryLimiter()
        return
    from risk.redis_limiter import RedisLimiter

    await redis_or_skip()
    prefix = f"kbt:{secrets.token_hex(4)}:"
    redis_limiter = RedisLimiter(REDIS_URL, prefix=prefix, timeout_s=5)  # a loaded CI machine is slow, not down
    yield redis_limiter
    await redis_limiter.close()
    await drop_prefix(prefix)
