"""Concurrent API orders placed together (SQLite group commit with storage/sqlite_api_bulk.py; PostgreSQL
kb_api_order_batch, migration 0019): each order gets the outcome it gets alone, a refused one changes nothing, and a
batched order writes the rows a lone order writes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from storage.errors import InsufficientStock, UnknownRecord
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
    burst = await asyncio.gather(*(store.place_api_order(_order(cid, shop.sku.id, f"B-{i}"), NOW, _nonce(f"b{i}"))
                                   for i in range(6)))
    for placed in (lone, *burst):
        order = await store.order_by_id(placed.order_id)
        assert order is not None
        assert placed.order == order
        assert (order.state, order.channel, order.user_id, order.chat_id) == (OrderState.DELIVERING, "api",
                                                                             f"client:{cid}", str(cid))
        assert placed.items == tuple(await store.order_items(order.id))
        assert await store.order_payment(order.id) == await _payment_shape(store, lone.order_id, order.id)
        assert [(e.from_state, e.to_state, e.type) for e in await store.order_events(order.id)] == \
            [(e.from_state, e.to_state, e.type) for e in await store.order_events(lone.order_id)]
    lines = sorted(await store.wallet_lines(cid, 20), key=lambda ln: ln.id)
    assert [ln.balance_after for ln in lines] == [10_000 - 1_000 * n for n in range(8)]
    assert {ln.kind for ln in lines[1:]} == {"order"}
    assert {ln.note for ln in lines[1:]} == {"L-1"} | {f"B-{i}" for i in range(6)}
    for i in range(6):
        assert await store.once_claimed("api.nonce", f"kk_1:b{i}", NOW)
    sales = [ln for ln in await store.ledger(NOW - timedelta(days=1), NOW + timedelta(days=1)) if ln.channel == "api"]
    assert sum(ln.amount for ln in sales if ln.kind == "sale") == 7_000
    assert sum(ln.amount for ln in sales if ln.kind == "cost") == -7 * 50


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
