"""Price and stock sync on SQLite and PostgreSQL against both fake suppliers: cost changes recorded and audited,
prices under cost + margin alerted once, auto-repricing rounded to the price unit and never under the floor,
out-of-stock sources ignored, Stars prices left alone, one sync at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fulfillment.price_sync import PriceSync, reprice
from storage.records import Price
from storage.records_supply import SkuSource, SkuSourcing
from tests.fulfillment.procurement.conftest import CARD_PRICE, Bench

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _sync(bench: Bench) -> tuple[PriceSync, list[tuple[str, dict[str, object]]]]:
    sync = PriceSync(bench.store, bench.registry, "t")
    alerts: list[tuple[str, dict[str, object]]] = []

    async def alert(msgid: str, params: dict[str, object]) -> None:
        alerts.append((msgid, params))

    sync.alert = alert
    return sync, alerts


def test_reprice_rounds_up_to_the_unit_and_respects_the_floor():
    assert reprice(990, 2000, 0, 1) == 1188
    assert reprice(990, 2000, 0, 100) == 1200
    assert reprice(990, 500, 1100, 10) == 1100
    assert reprice(999, 1, 0, 1) == 1000  # a fraction of a fen is rounded up, never down


async def test_costs_recorded_changes_audited_and_below_cost_alerted_once(bench):
    sku = bench.shop.sku
    await bench.store.save_sku_sourcing(SkuSourcing(sku.id, sources=(SkuSource("kw", "41847"),
                                                                     SkuSource("acg", "STEAM10")),
                                                    max_unit_cost=2000, margin_floor=50))
    await bench.store.set_price(Price(sku.id, "console", "CNY", 1000))  # 9.90 + 0.50 = 10.40 > 10.00
    sync, alerts = _sync(bench)
    report = await sync.sync()
    assert report.suppliers == 2
    assert {(c.supplier, c.product_id, c.old_cost) for c in report.cost_changes} == {
        ("kw", "41847", None), ("acg", "STEAM10", None)}
    assert report.below_cost == [(sku.id, "console")]
    assert [a[0] for a in alerts] == ["supply.below_cost"]
    again = await sync.sync()
    assert (again.cost_changes, len(alerts)) == ([], 1)  # same cost: no change recorded, no second alert
    bench.kashangwl.products["41847"].price = 1100  # kw now dearer than acg's 10.00
    third = await sync.sync()
    assert [(c.product_id, c.old_cost, c.new_cost) for c in third.cost_changes] == [("41847", CARD_PRICE, 1100)]
    assert len(alerts) == 2  # a new cost (acg's 10.00 now cheapest): alerted again
    audit = [a[4] for a in await bench.store.audit_entries(20) if a[3] == "supplier.cost"]
    assert "kw:41847 990 -> 1100" in audit
    rows = {(p.supplier, p.product_id): p for p in await bench.store.supplier_products()}
    assert rows[("kw", "41847")].cost == 1100


async def test_auto_reprice_follows_the_cheapest_in_stock_source_and_leaves_stars_alone(bench):
    sku = bench.shop.sku
    await bench.store.save_sku_sourcing(SkuSourcing(sku.id, sources=(SkuSource("kw", "41847"),
                                                                     SkuSource("acg", "STEAM10")),
                                                    max_unit_cost=2000, margin_floor=100, markup_bp=2000,
                                                    price_unit=10))
    sync, alerts = _sync(bench)
    report = await sync.sync()
    assert report.repriced == [(sku.id, "console", 1000, 1190)]  # 990 × 1.2 = 1188 → 1190
    prices = {p.channel: p for p in await bench.store.prices(sku.id)}
    assert (prices["console"].amount, prices["telegram"].amount) == (1190, 50)
    bench.kashangwl.products["41847"].stock = 0  # kw out of stock: acg's 10.00 is the cost now
    report = await sync.sync()
    assert report.repriced == [(sku.id, "console", 1190, 1200)]
    assert alerts == []


async def test_one_sync_at_a_time(bench):
    sync, _ = _sync(bench)
    now = datetime.now(UTC)
    assert await bench.store.try_lease("supply.sync", "other-process", now + timedelta(minutes=1), now)
    assert await sync.sync() is None
    assert bench.kashangwl.calls == []


async def test_stock_shown_for_an_on_demand_sku_adds_what_healthy_sources_report(bench):
    from fulfillment.sourcing import SHOWN_UNCOUNTED, SourcingService

    sku = bench.shop.sku
    sourcing = SourcingService(bench.store, bench.registry, bench.service, "t")
    await bench.store.save_sku_sourcing(SkuSourcing(sku.id, sources=(SkuSource("kw", "41847"),
                                                                     SkuSource("acg", "STEAM10")),
                                                    max_unit_cost=2000))
    await PriceSync(bench.store, bench.registry, "t").sync()
    assert await sourcing.sellable(sku) == 0  # not on demand: own stock only
    await bench.store.save_sku_sourcing(SkuSourcing(sku.id, sources=(SkuSource("kw", "41847"),
                                                                     SkuSource("acg", "STEAM10")),
                                                    max_unit_cost=2000, on_demand=True))
    # kashangwl does not count (supply_state only), acg-faka reports 50
    assert await sourcing.sellable(sku) == SHOWN_UNCOUNTED + 50
    assert await sourcing.sellable(bench.shop.big) == 0  # the 2-pack SKU has no sourcing of its own
    # the catalogue every channel reads (storefront, order API products) shows the same once supply runs
    from fulfillment.catalog import CatalogService

    catalog = CatalogService(bench.store)
    assert await catalog.sellable(sku) == 0
    catalog.supply_sellable = sourcing.sellable  # as bot/supply.py build_supply wires it
    assert await catalog.sellable(sku) == SHOWN_UNCOUNTED + 50
