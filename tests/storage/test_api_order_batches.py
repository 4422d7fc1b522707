"""Concurrent API orders placed together (SQLite group commit with storage/sqlite_api_bulk.py; PostgreSQL
kb_api_order_bulk for plain orders, migration 0023, then kb_api_order_batch, migration 0019): each order gets the
outcome it gets alone, a refused one changes nothing, and a batched order writes the rows a lone order writes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, timedelta, timezone

import asyncpg
import pytest

from storage import events
from storage.errors import InsufficientStock, UnknownRecord
from storage.postgres_api_batch import ApiOrderBatcher
from storage.protocols.api import ApiOrderIn, ApiOrderPlaced, DuplicateOrderNo, InsufficientBalance, NonceUsed
from storage.records import OnceKey, OrderState
from tests.storage.seed import NOW, make_shop

from .test_api_conformance import _client


def _order(cid: int, sku_id: int, no: str, qty: int = 1, amount: int = 1_000) -> ApiOrderIn:
    return ApiOrderIn(cid, no, f"hash-{no}-{qty}", "", sku_id, qty, amount, "CNY", NOW + timedelta(minutes=5))


def _nonce(n: str) -> OnceKey:
    return OnceKey("api.nonce", f"kk_1:{n}", NOW + timedelta(minutes=10))


async def test_each_order_of_a_burst_gets_its_own_outcome(store):
    shop = await make_shop(store, codes=10)
    cid = await _client(store, funds=6_000)
    calls = [(_order(cid, shop.sku.id, f"A-{i}"), _nonce(f"n{i}")) for i in range(1, 6)]
    calls += [
        (_order(cid, shop.sku.id, "A-1"), None),  # a retry of A-1: the same order
        (_order(cid, shop.sku.id, "A-2", qty=2), None),  # A-2's number with another body
        (_order(cid, shop.sku.id, "A-6"), _nonce("n1")),  # n1 is A-1's
        (_order(cid, shop.sku.id, "A-7", amount=9_000), None),  # more than the wallet holds
        (_order(cid, shop.big.id, "A-8", qty=50), None),  # 100 uses of a pool of 10
        (_order(cid, 999, "A-9"), None),
    ]
    results = await asyncio.gather(*(store.place_api_order(o, NOW, n) for o, n in calls), return_exceptions=True)
    placed = results[:5]
    assert all(isinstance(p, ApiOrderPlaced) and p.fresh and len(p.items) == 1 for p in placed)
    assert len({p.items[0].code.id for p in placed}) == 5  # type: ignore[union-attr]
    retry = results[5]
    assert isinstance(retry, ApiOrderPlaced)
    assert (retry.order_id, retry.fresh, retry.items) == (placed[0].order_id, False, placed[0].items)  # type: ignore[union-attr]
    assert [type(r) for r in results[6:]] == [DuplicateOrderNo, NonceUsed, InsufficientBalance, InsufficientStock,
                                              UnknownRecord]
    assert await store.wallet_balances(cid) == {"CNY": 1_000}
    assert sorted(ln.amount for ln in await store.wallet_lines(cid, 20)) == [-1_000] * 5 + [6_000]
    assert await store.pool_available(shop.pool.id) == 5
    assert await store.pending_outbox() == 5
    for no in ("A-6", "A-7", "A-8", "A-9"):
        assert await store.api_order(cid, no) is None
    assert await store.orders_for_user("api", f"client:{cid}", 20, 0) != []
    assert len(await store.orders_for_user("api", f"client:{cid}", 20, 0)) == 5


async def test_a_batched_order_writes_what_a_lone_order_writes(store):
    shop = await make_shop(store, codes=10)
    cid = await _client(store, funds=10_000)
    lone = await store.place_api_order(_order(cid, shop.sku.id, "L-1"), NOW, _nonce("l1"))
    # half of the burst in Chinese, its times given in UTC+8: the answer says what the row says, in UTC
    east = timezone(timedelta(hours=8))

    def zh(o: ApiOrderIn) -> ApiOrderIn:
        return replace(o, language="zh_CN", expires_at=o.expires_at.astimezone(east))

    burst = await asyncio.gather(*(
        store.place_api_order(zh(_order(cid, shop.sku.id, f"B-{i}")), NOW.astimezone(east), _nonce(f"b{i}")) if i % 2
        else store.place_api_order(_order(cid, shop.sku.id, f"B-{i}"), NOW, _nonce(f"b{i}")) for i in range(6)))
    assert [p.order.language for p in burst] == ["en", "zh_CN"] * 3
    for placed in (lone, *burst):
        order = await store.order_by_id(placed.order_id)
        assert order is not None
        assert placed.order == order
        assert (placed.order.created_at, placed.order.expires_at) == (NOW, NOW + timedelta(minutes=5))
        assert placed.order.created_at.tzinfo is UTC
        assert placed.order.expires_at.tzinfo is UTC
        assert (order.state, order.channel, order.user_id, order.chat_id) == (OrderState.DELIVERING, "api",
                                                                             f"client:{cid}", str(cid))
        assert placed.items == tuple(await store.order_items(order.id))
        assert await store.order_payment(order.id) == await _payment_shape(store, lone.order_id, order.id)
        assert [(e.from_state, e.to_state, e.type) for e in await store.order_events(order.id)] == \
            [(e.from_state, e.to_state, e.type) for e in await store.order_events(lone.order_id)]
        txn = f"{cid}:{(await store.api_order_of(order.id)).client_order_no}"
        assert [dict(e.params) for e in await store.order_events(order.id)] == \
            [dict(e.params, txn=txn) if "txn" in e.params else dict(e.params)
             for e in await store.order_events(lone.order_id)]
    lines = sorted(await store.wallet_lines(cid, 20), key=lambda ln: ln.id)
    assert [ln.balance_after for ln in lines] == [10_000 - 1_000 * n for n in range(8)]
    assert {ln.kind for ln in lines[1:]} == {"order"}
    assert {ln.note for ln in lines[1:]} == {"L-1"} | {f"B-{i}" for i in range(6)}
    for i in range(6):
        assert await store.once_claimed("api.nonce", f"kk_1:b{i}", NOW)
    sales = [ln for ln in await store.ledger(NOW - timedelta(days=1), NOW + timedelta(days=1)) if ln.channel == "api"]
    assert sum(ln.amount for ln in sales if ln.kind == "sale") == 7_000
    assert sum(ln.amount for ln in sales if ln.kind == "cost") == -7 * 50


async def test_a_batch_of_multi_use_codes_hands_out_each_use_once_by_the_smallest_free_number(store):
    # given: three codes of three uses each, three uses sold and one of them freed again by a refund
    shop = await make_shop(store, codes=3, uses=3)
    cid = await _client(store, funds=100_000)
    first = await asyncio.gather(*(store.place_api_order(_order(cid, shop.sku.id, f"F-{i}"), NOW) for i in range(3)))
    freed = (first[1].items[0].code.id, first[1].items[0].use_no)
    assert await store.refund(first[1].order_id, events.refunded(reason="merchant"), NOW)
    # when: a burst needs 1 + 2 + 2 + 2 = 7 uses, all that are left, the freed one among them
    burst = await asyncio.gather(
        store.place_api_order(_order(cid, shop.sku.id, "M-1"), NOW),
        store.place_api_order(_order(cid, shop.big.id, "M-2", amount=2_000), NOW),
        store.place_api_order(_order(cid, shop.sku.id, "M-3", qty=2, amount=2_000), NOW),
        store.place_api_order(_order(cid, shop.big.id, "M-4", amount=2_000), NOW))
    # then: every order has its uses, no (code, use) is held twice, and the pool is empty
    assert [len(p.items) for p in burst] == [1, 2, 2, 2]
    live = [(it.code.id, it.use_no) for p in (first[0], first[2], *burst) for it in p.items]
    assert len(live) == len(set(live)) == 9
    assert freed in {(it.code.id, it.use_no) for p in burst for it in p.items}
    assert {u for _, u in live} == {1, 2, 3}
    for p in burst:
        assert [it.item_no for it in p.items] == list(range(1, len(p.items) + 1))
        assert p.items == tuple(await store.order_items(p.order_id))
    assert await store.pool_available(shop.pool.id) == 0
    refused = await asyncio.gather(store.place_api_order(_order(cid, shop.sku.id, "M-5"), NOW),
                                   return_exceptions=True)
    assert isinstance(refused[0], InsufficientStock)


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
async def test_the_bulk_call_places_the_plain_orders_and_leaves_every_other_one(store):
    # given: a batch of plain orders mixed with ones only the order-by-order path may decide
    shop = await make_shop(store, codes=10)
    limited = await make_shop(store, codes=5, per_user_limit=3, slug="limited")
    cid = await _client(store, funds=5_500)
    await store.place_api_order(_order(cid, shop.sku.id, "K-0"), NOW, _nonce("used"))
    calls = [
        (_order(cid, shop.sku.id, "K-1"), _nonce("k1")),  # plain
        (_order(cid, shop.sku.id, "K-0"), None),  # a number placed before
        (_order(cid, shop.sku.id, "K-2"), _nonce("used")),  # a nonce claimed before
        (_order(cid, shop.sku.id, "K-3"), None),  # the same number twice in the batch: both left
        (_order(cid, shop.sku.id, "K-3"), None),
        (_order(cid, limited.sku.id, "K-4"), None),  # a per-user limit
        (_order(cid, 999, "K-5"), None),  # an unknown SKU
        (_order(cid, shop.sku.id, "K-6"), _nonce("twice")),  # one nonce on two orders: both left
        (_order(cid, shop.sku.id, "K-7"), _nonce("twice")),
        (_order(cid, shop.sku.id, "K-8"), None),  # plain: 2,000 of the wallet's 4,500 taken with K-1's
        (_order(cid, shop.sku.id, "K-9", amount=3_000), None),  # more than the wallet holds after the ones before
    ]
    loop = asyncio.get_running_loop()
    batch = [(o, NOW, n, loop.create_future()) for o, n in calls]
    batcher = store._api_batcher or ApiOrderBatcher(store.kept_connections(), *_batcher_args(store))
    # when: the bulk call alone
    left = await batcher._together(batcher.bulk_sql, list(batch))
    # then: the plain ones are placed and answered, every other one is left untouched
    placed = {it[0].client_order_no for it in batch if it[3].done()}
    assert placed == {"K-1", "K-8"}
    assert sorted(it[0].client_order_no for it in left) == ["K-0", "K-2", "K-3", "K-3", "K-4", "K-5", "K-6", "K-7",
                                                         "K-9"]
    assert await store.wallet_balances(cid) == {"CNY": 5_500 - 3_000}
    assert await store.pool_available(shop.pool.id) == 10 - 3
    assert await store.pool_available(limited.pool.id) == 5
    for no in ("K-2", "K-4", "K-5", "K-6", "K-7", "K-9"):
        assert await store.api_order(cid, no) is None
    assert not await store.once_claimed("api.nonce", "kk_1:twice", NOW)
    assert await store.once_claimed("api.nonce", "kk_1:k1", NOW)
    for it in batch:
        if it[3].done():
            got = it[3].result()
            assert got.fresh
            assert got.items == tuple(await store.order_items(got.order_id))


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
async def test_a_bulk_call_that_meets_a_shortage_writes_nothing(store):
    # given: the pool's counter says 3, but another transaction holds two of its three codes
    shop = await make_shop(store, codes=3)
    cid = await _client(store, funds=10_000)
    loop = asyncio.get_running_loop()
    batch = [(_order(cid, shop.sku.id, f"S-{i}"), NOW, _nonce(f"s{i}"), loop.create_future()) for i in range(3)]
    batcher = store._api_batcher or ApiOrderBatcher(store.kept_connections(), *_batcher_args(store))
    async with store.pool.acquire() as other, other.transaction():
        await other.execute("SELECT 1 FROM codes WHERE pool_id = $1 ORDER BY id LIMIT 2 FOR UPDATE", shop.pool.id)
        # when: the bulk call finds one free use for three orders
        with pytest.raises(asyncpg.PostgresError) as raised:
            await store.pool.fetch(batcher.bulk_sql, *batcher.args(batch))
        left = await batcher._together(batcher.bulk_sql, list(batch))
    # then: it raised, nothing was written, and every order goes on to the next step
    assert raised.value.sqlstate == "KB003"
    assert len(left) == 3
    assert not any(it[3].done() for it in batch)
    assert await store.wallet_balances(cid) == {"CNY": 10_000}
    assert await store.pool_available(shop.pool.id) == 3
    assert not await store.once_claimed("api.nonce", "kk_1:s0", NOW)
    assert await store.api_order(cid, "S-0") is None


def _batcher_args(store) -> tuple[object, ...]:
    from storage.postgres_api import _PLACED_COLS, _PLACED_ORDER_N

    return (_PLACED_COLS, _PLACED_ORDER_N, store._closed, store._payable, store.place_api_order_one)


async def _payment_shape(store, lone_id: int, order_id: int) -> tuple[str, str, int] | None:
    """The lone order's payment row with this order's transaction id: provider and amount must match."""
    first = await store.order_payment(lone_id)
    mine = await store.order_payment(order_id)
    assert first is not None
    assert mine is not None
    return (first[0], mine[1], first[2])


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
async def test_a_batch_whose_wallet_was_drained_meanwhile_is_placed_order_by_order(store):
    # given: a wallet of five orders' worth, and another transaction about to take three of them
    shop = await make_shop(store, codes=10)
    cid = await _client(store, funds=5_000)
    async with store.pool.acquire() as other:
        drain = other.transaction()
        await drain.start()
        await other.execute("UPDATE api_wallets SET balance = balance - 3000 WHERE client_id = $1", cid)
        # when: a batch of four checks them against the committed 5,000 and waits for the wallet row at its end
        burst = asyncio.ensure_future(asyncio.gather(
            *(store.place_api_order(_order(cid, shop.sku.id, f"D-{i}"), NOW) for i in range(4)),
            return_exceptions=True))
        await _until_someone_waits_for(other)
        await drain.commit()
        results = await burst
    # then: the batch's debit no longer fits, so it is undone whole and each order placed alone
    assert sorted(type(r).__name__ for r in results) == ["ApiOrderPlaced"] * 2 + ["InsufficientBalance"] * 2
    assert await store.wallet_balances(cid) == {"CNY": 0}
    assert [ln.balance_after for ln in await store.wallet_lines(cid, 10)] == [0, 1_000, 5_000]
    assert await store.pool_available(shop.pool.id) == 8
    assert await store.pending_outbox() == 2


async def _until_someone_waits_for(conn) -> None:
    """Until a backend waits for a lock that `conn`'s open transaction holds (the batch at its end)."""
    for _ in range(1000):
        if await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))",
                               conn.get_server_pid()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no batch came to wait for the wallet row")


@pytest.mark.parametrize("store", ["postgres"], indirect=True)
async def test_the_bulk_call_claims_nonces_before_the_number_locks_as_the_one_by_one_path(store):
    # given: another transaction placing an order one by one has claimed its nonce, not yet its number's lock
    shop = await make_shop(store, codes=5)
    cid = await _client(store, funds=10_000)
    loop = asyncio.get_running_loop()
    batch = [(_order(cid, shop.sku.id, "X-1"), NOW, _nonce("x1"), loop.create_future()),
             (_order(cid, shop.sku.id, "X-2"), NOW, _nonce("x2"), loop.create_future())]
    batcher = store._api_batcher or ApiOrderBatcher(store.kept_connections(), *_batcher_args(store))
    async with store.pool.acquire() as other:
        one = other.transaction()
        await one.start()
        await other.execute("INSERT INTO once_keys (scope, key, expires_at) VALUES ('api.nonce', 'kk_1:x1', $1)",
                            NOW + timedelta(minutes=10))
        # when: the bulk call runs (it waits for that nonce) and the other transaction then takes the number's lock
        bulk = asyncio.ensure_future(store.pool.fetch(batcher.bulk_sql, *batcher.args(batch)))
        await _until_someone_waits_for(other)
        await other.execute("SELECT pg_advisory_xact_lock(hashtext('kb.api_order'), hashtext($1))", f"{cid}:X-1")
        await one.commit()
        # then: no deadlock: the other side got its lock, the bulk call failed on the nonce alone, wrote nothing
        with pytest.raises(asyncpg.UniqueViolationError):
            await bulk
    assert await store.api_order(cid, "X-2") is None
    assert await store.pool_available(shop.pool.id) == 5
