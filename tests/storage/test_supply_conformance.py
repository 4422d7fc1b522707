"""The SupplyStore verbs on every Store backend (SQLite, PostgreSQL) via `store`: suppliers, procurements exactly
once (planned -> sent -> settled once; one live procurement per order, one open restock per pool), codes of a
settlement deduplicated against the vault, SKU sourcing."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from storage.records_supply import (
    NewProcurement,
    ProcurementState,
    SealedSecret,
    Settlement,
    SkuSource,
    SkuSourcing,
    SupplierRecord,
)
from tests.storage.seed import NOW, fake_code, make_shop, new_order

S = ProcurementState


def _supplier(name: str = "kw") -> SupplierRecord:
    return SupplierRecord(name, "kashangwl", "http://127.0.0.1:9", "10939", SealedSecret("k1", b"n" * 12, b"ct"),
                          product_ids=("41847", "41848"), low_balance=500)


async def test_suppliers_round_trip_and_update_by_name(store):
    saved = await store.save_supplier(_supplier(), NOW)
    assert saved.id >= 1
    assert replace(saved, id=0) == _supplier()
    changed = await store.save_supplier(replace(_supplier(), base_url="http://127.0.0.1:10", active=False), NOW)
    assert (changed.id, changed.base_url, changed.active) == (saved.id, "http://127.0.0.1:10", False)
    assert [s.name for s in await store.suppliers()] == ["kw"]
    assert await store.supplier_by_name("nobody") is None


def _new(ref: str, pool_id: int, order_id: int | None = None, quantity: int = 2) -> NewProcurement:
    return NewProcurement(ref, "kw", "41847", quantity, 990, "CNY", pool_id, order_id)


async def test_a_procurement_is_sent_once_and_settled_once(store):
    shop = await make_shop(store, codes=0)
    p = await store.plan_procurement(_new("P1", shop.pool.id), NOW)
    assert (p.state, p.received, p.held) == (S.PLANNED, 0, False)
    assert await store.settle_procurement("P1", Settlement(S.SUCCEEDED), [fake_code()], NOW) is None  # not sent
    assert await store.mark_procurement_sent("P1", NOW) is True
    assert await store.mark_procurement_sent("P1", NOW) is False
    assert await store.mark_procurement_unknown("P1", "supplier.outcome_unknown", NOW) is True
    codes = [fake_code(), fake_code()]
    done = await store.settle_procurement("P1", Settlement(S.SUCCEEDED, "557", 1980, "ok"), codes, NOW)
    assert (done.state, done.supplier_order_id, done.cost, done.received, done.shortfall) == (
        S.SUCCEEDED, "557", 1980, 2, 0)
    assert await store.pool_available(shop.pool.id) == 2
    # the callback after the query: nothing changes, no second batch
    assert await store.settle_procurement("P1", Settlement(S.SUCCEEDED, "557", 1980), [fake_code()], NOW) is None
    assert await store.settle_procurement("P1", Settlement(S.FAILED), [], NOW) is None
    assert await store.pool_available(shop.pool.id) == 2
    assert (await store.procurement_by_ref("P1")).batch_id == done.batch_id


async def test_codes_the_vault_holds_are_counted_not_added(store):
    shop = await make_shop(store, codes=0)
    held = fake_code()
    batch = await store.create_batch(shop.pool.id, "manual", 0, "CNY", "seed")
    await store.insert_codes(batch, shop.pool.id, [held])
    await store.plan_procurement(_new("P2", shop.pool.id, quantity=3), NOW)
    await store.mark_procurement_sent("P2", NOW)
    fresh = fake_code()
    done = await store.settle_procurement("P2", Settlement(S.SUCCEEDED, cost=2970), [held, fresh, fresh], NOW)
    assert (done.received, done.duplicates, done.shortfall) == (1, 2, 2)
    assert await store.pool_available(shop.pool.id) == 2


async def test_one_live_procurement_per_order_and_one_open_restock_per_pool(store):
    shop = await make_shop(store, codes=1)
    order = await store.reserve(new_order(shop.sku), NOW)
    assert await store.plan_procurement(_new("O1", shop.pool.id, order.id), NOW) is not None
    assert await store.plan_procurement(_new("O2", shop.pool.id, order.id), NOW) is None
    assert await store.settle_procurement("O1", Settlement(S.FAILED, detail="never sent"), [], NOW) is not None
    assert await store.plan_procurement(_new("O3", shop.pool.id, order.id), NOW) is not None  # after a failure
    assert await store.plan_procurement(_new("R1", shop.pool.id), NOW) is not None
    assert await store.plan_procurement(_new("R2", shop.pool.id), NOW) is None
    assert await store.plan_procurement(_new("R1", shop.pool.id, order.id), NOW) is None  # our_ref unique
    assert [p.our_ref for p in await store.order_procurements(order.id)] == ["O1", "O3"]
    assert [p.our_ref for p in await store.procurements([S.PLANNED], 10)] == ["O3", "R1"]


async def test_concurrent_settlements_settle_once(store):
    shop = await make_shop(store, codes=0)
    await store.plan_procurement(_new("C1", shop.pool.id, quantity=1), NOW)
    await store.mark_procurement_sent("C1", NOW)
    results = await asyncio.gather(*(store.settle_procurement("C1", Settlement(S.SUCCEEDED, cost=990),
                                                              [fake_code()], NOW) for _ in range(8)))
    assert sum(r is not None for r in results) == 1
    assert await store.pool_available(shop.pool.id) == 1


async def test_held_keeps_its_reason(store):
    shop = await make_shop(store, codes=0)
    await store.plan_procurement(_new("H1", shop.pool.id), NOW)
    await store.mark_procurement_sent("H1", NOW)
    assert await store.hold_procurement("H1", "supplier says product 999", NOW) is True
    await store.mark_procurement_unknown("H1", "supplier.outcome_unknown", NOW)
    p = await store.procurement_by_ref("H1")
    assert (p.state, p.held, p.detail) == (S.UNKNOWN, True, "supplier says product 999")


async def test_sku_sourcing_and_restock_candidates(store):
    shop = await make_shop(store, codes=5)  # low_stock 3: not low yet
    s = SkuSourcing(shop.sku.id, own=True, sources=(SkuSource("kw", "41847"), SkuSource("acg", "X")),
                    max_unit_cost=1000, restock_quantity=10, on_demand=True, margin_floor=5, markup_bp=1500,
                    price_unit=10)
    await store.save_sku_sourcing(s)
    assert await store.sku_sourcing(shop.sku.id) == s
    assert await store.sku_sourcings() == [s]
    assert await store.restock_candidates() == []
    await store.upsert_pool(shop.pool.slug, shop.pool.name, 5)
    assert await store.restock_candidates() == [(shop.pool.id, s)]
