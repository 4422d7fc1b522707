"""Races of the order API on both backends (in one process, many concurrent requests through the real app and
store): one idempotency key retried 20 times at once gives one order and 20 identical answers; many orders on
one wallet never overdraw it, each order is debited once and the wallet ledger adds up."""

from __future__ import annotations

import asyncio

from tests.api.conftest import PRICE, ApiShop


async def test_same_post_retried_20_times_concurrently_gives_one_order(api: ApiShop) -> None:
    # when one order is sent 20 times at once under one Idempotency-Key (each a freshly signed request)
    answers = await asyncio.gather(*(api.order("A-1", 2, idem="retry-1") for _ in range(20)))
    # then every answer is the first one, byte for byte, and there is one order, debited once
    assert {r.status_code for r in answers} == {201}
    assert len({r.content for r in answers}) == 1
    orders = await api.shop.store.orders_for_user("api", f"client:{api.key.client.id}", 100, 0)
    assert len(orders) == 1
    assert await api.shop.store.wallet_balances(api.key.client.id) == {"CNY": 10_000 - 2 * PRICE}


async def test_same_order_number_without_key_20_times_concurrently_gives_one_order(api: ApiShop) -> None:
    answers = await asyncio.gather(*(api.order("A-1", 1) for _ in range(20)))
    assert {r.status_code for r in answers} == {201}
    assert len({r.json()["order_no"] for r in answers}) == 1
    assert await api.shop.store.wallet_balances(api.key.client.id) == {"CNY": 10_000 - PRICE}


async def test_concurrent_orders_on_one_wallet_never_overdraw_it(api: ApiShop) -> None:
    # given a wallet that pays for 14 orders (10 000 // 700) and stock for 20
    # when 40 different orders arrive at once
    answers = await asyncio.gather(*(api.order(f"B-{i}", 1) for i in range(40)))
    # then exactly 14 are placed, the rest refused for the balance, and the money adds up
    codes = sorted(r.json()["code"] if r.status_code != 201 else "OK" for r in answers)
    assert codes.count("OK") == 14
    assert set(codes) == {"OK", "INSUFFICIENT_BALANCE"}
    store, cid = api.shop.store, api.key.client.id
    balance = (await store.wallet_balances(cid))["CNY"]
    assert balance == 10_000 - 14 * PRICE >= 0
    lines = await store.wallet_lines(cid, 1000)
    debits = [ln for ln in lines if ln.kind == "order"]
    assert len(debits) == 14
    assert len({ln.order_id for ln in debits}) == 14
    assert sum(ln.amount for ln in lines) == balance
    assert all(ln.balance_after >= 0 for ln in lines)
    orders = await store.orders_for_user("api", f"client:{cid}", 1000, 0)
    assert sorted(o.id for o in orders) == sorted(ln.order_id for ln in debits)
