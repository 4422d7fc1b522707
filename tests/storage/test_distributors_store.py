"""Distributor store verbs on both backends: records, price lists, commission rates, costs, payouts against the
payable balance, balances and lines by period (the accrual passes run on real orders in
tests/fulfillment/test_distributors.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage.protocols.api import Sealed
from storage.protocols.distributors import DistributorPrice, DistributorTaken, PayableExceeded
from tests.storage.seed import NOW, make_shop


async def _client(store, name="shopb"):
    return await store.create_api_client("kk_" + name, name, ("orders:write",), Sealed("k1", b"n" * 12, b"c"), NOW)


async def test_distributor_records_are_unique_by_name_code_and_client(store):
    client = await _client(store)
    acme = await store.create_distributor("acme", "acme", client.id, NOW)
    assert (await store.distributor("acme")) == acme
    assert (await store.distributor_of_client(client.id)) == acme
    assert acme.discount_bp == 0
    assert acme.commission_bp == 0
    with pytest.raises(DistributorTaken):
        await store.create_distributor("acme", "other", None, NOW)
    with pytest.raises(DistributorTaken):
        await store.create_distributor("beta", "beta", client.id, NOW)
    beta = await store.create_distributor("beta", "beta", None, NOW)
    with pytest.raises(DistributorTaken):
        await store.update_distributor(beta.id, api_client_id=client.id)
    assert (await store.distributor("beta")).api_client_id is None
    changed = await store.update_distributor(beta.id, discount_bp=250, commission_bp=1000)
    assert (changed.discount_bp, changed.commission_bp, changed.api_client_id) == (250, 1000, None)
    assert [d.name for d in await store.distributors()] == ["acme", "beta"]


async def test_prices_rates_and_the_pools_newest_batch_cost(store):
    seeded = await make_shop(store, codes=2, unit_cost=50)
    acme = await store.create_distributor("acme", "acme", None, NOW)
    await store.set_distributor_price(acme.id, seeded.sku.id, DistributorPrice(seeded.sku.id, "CNY", 40, True))
    await store.set_distributor_price(acme.id, seeded.big.id, DistributorPrice(seeded.big.id, "CNY", 900))
    await store.set_distributor_price(acme.id, seeded.big.id, DistributorPrice(seeded.big.id, "CNY", 950))
    assert await store.distributor_prices(acme.id) == {
        seeded.sku.id: DistributorPrice(seeded.sku.id, "CNY", 40, True),
        seeded.big.id: DistributorPrice(seeded.big.id, "CNY", 950, False)}
    await store.set_distributor_price(acme.id, seeded.sku.id, None)
    assert list(await store.distributor_prices(acme.id)) == [seeded.big.id]
    await store.set_commission_rate(acme.id, seeded.sku.id, 300)
    await store.set_commission_rate(acme.id, seeded.big.id, 700)
    await store.set_commission_rate(acme.id, seeded.big.id, None)
    assert await store.commission_rates(acme.id) == {seeded.sku.id: 300}
    assert await store.pool_last_cost(seeded.pool.id) == (50, "CNY")
    await store.create_batch(seeded.pool.id, "acme", 65, "CNY", "second")
    assert await store.pool_last_cost(seeded.pool.id) == (65, "CNY")
    empty = await store.upsert_pool("empty-pool", "Nothing", 1)
    assert await store.pool_last_cost(empty.id) is None


async def test_payouts_never_exceed_the_payable_balance_and_periods_read_the_ledger(store):
    acme = await store.create_distributor("acme", "acme", None, NOW)
    with pytest.raises(PayableExceeded):
        await store.record_payout(acme.id, "CNY", 1, "nothing owed", NOW)
    assert await store.commission_balances(acme.id) == {}
    assert await store.commission_lines(acme.id, NOW - timedelta(days=1), NOW + timedelta(days=1)) == []


async def test_wallet_lines_between_reads_only_the_period(store):
    client = await _client(store)
    await store.adjust_wallet(client.id, "CNY", 5000, "topup", "first", NOW - timedelta(days=40))
    await store.adjust_wallet(client.id, "CNY", -1000, "topup", "fix", NOW)
    await store.adjust_wallet(client.id, "CNY", 300, "topup", "later", NOW + timedelta(days=40))
    lines = await store.wallet_lines_between(client.id, NOW - timedelta(days=1), NOW + timedelta(days=1))
    assert [(ln.amount, ln.balance_after, ln.note) for ln in lines] == [(-1000, 4000, "fix")]
