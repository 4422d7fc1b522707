"""One user's turn across instances (bot/user_lock.py): on Redis and as a lease in both databases, two
"instances" (two turn objects, two connections) never hold one key at once; a holder only ever gives back its
own turn; a dead holder's turn expires and the waiter goes on."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from bot.user_lock import PREFIX, LeaseTurns, RedisTurns
from fulfillment.orders import STATE_GROUPS
from handlers.ordering import InOrder
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore
from tests.conftest import PG_DSN, REDIS_URL, drop_pg_schema, pg_schema_or_skip
from tests.fakes.loopback import free_port
from tests.risk.conftest import redis_or_skip


@pytest.fixture
async def redis_pair() -> AsyncIterator[tuple[RedisTurns, RedisTurns]]:
    await redis_or_skip()
    clients = [aioredis.from_url(REDIS_URL) for _ in range(2)]
    yield RedisTurns(clients[0], ttl_s=0.6, wait_s=5), RedisTurns(clients[1], ttl_s=0.6, wait_s=5)
    for c in clients:
        await c.aclose()


@pytest.fixture(params=["redis", "lease-sqlite", "lease-postgres"])
async def pair(request, tmp_path) -> AsyncIterator[tuple]:
    """Two instances' turns over one shared backend: Redis, or a lease in SQLite or PostgreSQL."""
    if request.param == "redis":
        await redis_or_skip()
        clients = [aioredis.from_url(REDIS_URL) for _ in range(2)]
        yield RedisTurns(clients[0], ttl_s=0.6, wait_s=5), RedisTurns(clients[1], ttl_s=0.6, wait_s=5)
        for c in clients:
            await c.aclose()
        return
    schema = ""
    if request.param == "lease-sqlite":
        store = await SqliteStore(tmp_path / "shop.db", states=STATE_GROUPS).open()
    else:
        schema = await pg_schema_or_skip()
        store = await PostgresStore(PG_DSN, schema=schema, states=STATE_GROUPS).open()
    await store.migrate()
    yield LeaseTurns(store, ttl_s=0.6, wait_s=5), LeaseTurns(store, ttl_s=0.6, wait_s=5)
    await store.close()
    if schema:
        await drop_pg_schema(schema)


async def test_one_users_turn_is_held_in_one_instance_at_a_time(pair):
    key = f"telegram:{secrets.token_hex(4)}"
    inside, most, log = 0, 0, []

    async def tap(turns, n: int) -> None:
        nonlocal inside, most
        async with turns.hold(key):
            inside += 1
            most = max(most, inside)
            log.append(("in", n))
            await asyncio.sleep(0.002)
            log.append(("out", n))
            inside -= 1

    await asyncio.gather(*(tap(pair[n % 2], n) for n in range(16)))
    assert most == 1
    assert len(log) == 32
    assert all(log[i][1] == log[i + 1][1] for i in range(0, 32, 2))  # every turn ran whole, never interleaved
    assert pair[0].waits + pair[1].waits > 0  # they really did wait for each other


async def test_a_holder_gives_back_only_its_own_turn(pair):
    key = f"telegram:{secrets.token_hex(4)}"
    first, second = pair
    assert await first._take(key, "first")
    await asyncio.sleep(0.7)  # first's turn expired (it hung); second takes it
    assert await second._take(key, "second")
    await first._give_back(key, "first")  # the late release of the hung holder
    assert not await first._take(key, "third")  # still second's
    await second._give_back(key, "second")
    assert await first._take(key, "third")
    await first._give_back(key, "third")


async def test_a_dead_holders_turn_expires_and_the_waiter_goes_on(pair):
    key = f"wechat:{secrets.token_hex(4)}"
    assert await pair[0]._take(key, "killed-instance")  # never given back
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with pair[1].hold(key):
        waited = loop.time() - started
    assert 0.4 < waited < 3.0
    assert pair[1].waits == 1


async def test_a_long_turn_is_renewed_so_nobody_enters_it(redis_pair):
    key = f"telegram:{secrets.token_hex(4)}"
    first, second = redis_pair
    entered = asyncio.Event()

    async def long_turn() -> None:
        async with first.hold(key):
            entered.set()
            await asyncio.sleep(1.5)  # 2.5 × its ttl: kept alive by the renewal

    task = asyncio.create_task(long_turn())
    await entered.wait()
    await asyncio.sleep(0.9)
    assert not await second._take(key, "intruder")
    await task
    assert await second._take(key, "after")
    await second._give_back(key, "after")


async def test_redis_down_skips_the_shared_turn_and_keeps_the_user_served():
    client = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    turns = RedisTurns(client, ttl_s=1, wait_s=1)
    done = []
    order: InOrder[int] = InOrder(turns, "telegram")
    async with order.turn(7):
        done.append(7)
    await client.aclose()
    assert done == [7]


async def test_in_order_takes_the_shared_turn_under_its_scope(redis_pair):
    user = secrets.randbelow(10**9)
    first, _ = redis_pair
    order: InOrder[int] = InOrder(first, "telegram")
    async with order.turn(user):
        held = await first.redis.get(f"{PREFIX}telegram:{user}")
    assert held is not None
    assert await first.redis.get(f"{PREFIX}telegram:{user}") is None  # given back
