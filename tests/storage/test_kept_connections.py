"""KeptConnections (storage/postgres_base.py): a batcher's calls run on the same few backends, where its PL/pgSQL
function is compiled once; a small pool is never emptied by them; a call that fails hands its connection back;
closing the store hands every kept one back (asyncpg's pool.close waits for all of them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from fulfillment.orders import STATE_GROUPS
from storage.postgres import PostgresStore
from tests.conftest import PG_DSN, give_back_pg_schema, take_pg_schema


@asynccontextmanager
async def _opened(max_size: int) -> AsyncIterator[PostgresStore]:
    """A store on a pool of `max_size`, closed at the end within 10 s (a connection never handed back would make
    asyncpg's pool.close wait for ever)."""
    schema = await take_pg_schema()
    store = await PostgresStore(PG_DSN, schema=schema, min_size=1, max_size=max_size, states=STATE_GROUPS).open()
    try:
        await store.migrate()
        yield store
    finally:
        await asyncio.wait_for(store.close(), 10)
        await give_back_pg_schema(schema)


async def test_calls_run_on_the_same_backends_and_close_hands_them_back():
    async with _opened(max_size=20) as store:
        kept = store.kept_connections()
        assert kept.keep == 4
        pids = {r[0] for _ in range(20) for r in await kept.fetch("SELECT pg_backend_pid()")}
        assert len(pids) == 1  # one call at a time: one backend
        at_once = await asyncio.gather(*(kept.fetch("SELECT pg_backend_pid(), pg_sleep(0.05)") for _ in range(6)))
        assert len({rows[0][0] for rows in at_once}) == 6  # six at once: six connections, four of them kept
        again = await asyncio.gather(*(kept.fetch("SELECT pg_backend_pid(), pg_sleep(0.05)") for _ in range(4)))
        assert {rows[0][0] for rows in again} <= {rows[0][0] for rows in at_once}
        assert store.pool.get_size() - store.pool.get_idle_size() == 4  # the kept ones, still out of the pool


async def test_a_failed_call_hands_its_connection_back():
    async with _opened(max_size=20) as store:
        kept = store.kept_connections()
        with pytest.raises(asyncpg.PostgresError):
            await kept.fetch("SELECT 1/0")
        assert store.pool.get_size() == store.pool.get_idle_size()  # nothing kept out of the pool
        assert (await kept.fetch("SELECT 1"))[0][0] == 1


async def test_a_small_pool_is_left_to_everything_else():
    async with _opened(max_size=4) as store:
        payments, orders = store.kept_connections(), store.kept_connections()
        assert (payments.keep, orders.keep) == (0, 0)
        await asyncio.gather(*(k.fetch("SELECT pg_sleep(0.02)") for k in (payments, orders) for _ in range(4)))
        assert store.pool.get_size() == store.pool.get_idle_size()
        # every pooled connection is free for the store's own reads
        assert await asyncio.wait_for(asyncio.gather(*(store.pool.fetchval("SELECT 1") for _ in range(4))), 5) \
            == [1] * 4


async def test_closing_waits_for_a_call_in_flight_and_takes_its_connection_back():
    async with _opened(max_size=20) as store:
        kept = store.kept_connections()
        await kept.fetch("SELECT 1")  # one kept
        running = asyncio.ensure_future(kept.fetch("SELECT pg_sleep(0.3), 2"))
        await asyncio.sleep(0.05)
    assert (await running)[0][1] == 2
