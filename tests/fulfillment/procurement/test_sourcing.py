"""Sourcing on SQLite and PostgreSQL: restock of low pools (cheapest healthy source, never above the SKU's maximum
cost, failover only on definitive failures) and the balance check before buying. On-demand buying happens after
payment: tests/fulfillment/procurement/test_paid_procurement.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from fulfillment.orders import AllowAll, CheckoutRequest, OrderService
from fulfillment.sourcing import SourcingService
from storage.records_supply import SkuSource, SkuSourcing
from tests.fulfillment.procurement.conftest import CARD_PRICE, Bench
from tests.storage.seed import payment

BOTH = (SkuSource("kw", "41847"), SkuSource("acg", "STEAM10"))


def _sourcing(bench: Bench, **kw: object) -> SkuSourcing:
    base = SkuSourcing(bench.shop.sku.id, own=True, sources=BOTH, max_unit_cost=1000, restock_quantity=4)
    return replace(base, **kw)  # type: ignore[arg-type]


def _services(bench: Bench) -> tuple[SourcingService, OrderService]:
    sourcing = SourcingService(bench.store, bench.registry, bench.service, "test-holder", catalogue_ttl=0)
    orders = OrderService(bench.store, AllowAll(), timedelta(minutes=15))
    return sourcing, orders


async def test_a_low_pool_is_restocked_from_the_cheapest_source_once(bench):
    await bench.store.save_sku_sourcing(_sourcing(bench))
    sourcing, _ = _services(bench)
    assert await sourcing.restock_due() == 1
    assert await bench.available() == 4
    assert (len(bench.kashangwl.orders), bench.acgfaka.trade_requests) == (1, 0)  # 9.90 beats 10.00
    await bench.store.upsert_pool(bench.pool.slug, bench.pool.name, 3)
    assert await sourcing.restock_due() == 0  # 4 > 3: not low any more
    assert len(bench.kashangwl.orders) == 1


async def test_a_definitive_refusal_fails_over_to_the_next_source(bench):
    await bench.store.save_sku_sourcing(_sourcing(bench))
    bench.kashangwl.balance = 0
    sourcing, _ = _services(bench)
    assert await sourcing.restock_due() == 1
    assert bench.kashangwl.orders == {}
    assert len(bench.acgfaka.trades) == 1
    assert await bench.available() == 4


async def test_no_failover_while_the_first_purchase_is_unknown(bench):
    await bench.store.save_sku_sourcing(_sourcing(bench))
    bench.kashangwl.faults.unknown_then_success = 1
    bench.kashangwl.settle_after = 60
    sourcing, _ = _services(bench)
    assert await sourcing.restock_due() == 0
    assert await sourcing.restock_due() == 0  # the open restock blocks a second purchase anywhere
    assert bench.acgfaka.trade_requests == 0
    assert len(bench.kashangwl.orders) == 1


async def test_nothing_is_bought_above_the_maximum_cost_or_from_an_unknown_product(bench):
    await bench.store.save_sku_sourcing(_sourcing(bench, max_unit_cost=CARD_PRICE - 1))
    sourcing, _ = _services(bench)
    assert await sourcing.restock_due() == 0
    await bench.store.save_sku_sourcing(_sourcing(bench, sources=(SkuSource("kw", "404"),)))
    assert await sourcing.restock_due() == 0
    assert (bench.kashangwl.buy_requests, bench.acgfaka.trade_requests) == (0, 0)


async def _checkout(orders: OrderService, bench: Bench, user: str, qty: int = 1):
    return await orders.checkout(CheckoutRequest("console", user, f"chat-{user}", bench.shop.sku.id, qty))


async def _pay_and_deliver(bench: Bench, order) -> None:
    await bench.store.receive_payment(payment(order.ref, order.amount), datetime.now(UTC))
    now = datetime.now(UTC)
    for row in await bench.store.claim_outbox(now, now + timedelta(seconds=30), 1000):
        if row.kind == "deliver":
            await bench.store.complete_outbox(row.id, now)
        elif row.kind == "refund":
            await bench.store.refund(row.order_id, "refunded by provider", now)
            await bench.store.complete_outbox(row.id, now)


async def _proofs(bench: Bench) -> None:
    """Every paid order delivered or refunded (never both, never neither); one supplier order per reference."""
    paid = await bench.sql("SELECT o.id, o.state FROM orders o WHERE EXISTS (SELECT 1 FROM ledger l"
                           " WHERE l.order_id = o.id AND l.kind = 'sale')")
    assert all(state in ("delivered", "refunded") for _, state in paid), paid
    both = await bench.sql("SELECT order_id FROM order_events GROUP BY order_id HAVING"
                           " SUM(CASE WHEN to_state = 'delivered' THEN 1 ELSE 0 END) > 0 AND"
                           " SUM(CASE WHEN to_state = 'refunded' THEN 1 ELSE 0 END) > 0")
    assert both == []
    outer = [o.outer_order_id for o in bench.kashangwl.orders.values()]
    assert len(outer) == len(set(outer))
    refs = {r[0] for r in await bench.sql("SELECT our_ref FROM procurements")}
    assert set(outer) <= refs
    live = await bench.sql("SELECT pool_id FROM procurements WHERE order_id IS NULL"
                           " AND state IN ('planned', 'sent', 'unknown') GROUP BY pool_id HAVING COUNT(*) > 1")
    assert live == []


async def test_balance_checked_before_buying_and_low_balance_alerted_once_per_crossing(bench):
    await bench.store.save_sku_sourcing(_sourcing(bench, restock_quantity=2))
    record = await bench.store.supplier_by_name("kw")
    await bench.store.save_supplier(replace(record, low_balance=5_000), datetime.now(UTC))
    sourcing, _ = _services(bench)
    alerts: list[tuple[str, dict[str, object]]] = []

    async def alert(msgid: str, params: dict[str, object]) -> None:
        alerts.append((msgid, params))

    sourcing.alert = alert
    bench.kashangwl.balance = 6_000
    await sourcing.procure(_sourcing(bench), 2, bench.pool.id)  # 6000 - 1980 = 4020 < 5000: alert
    await sourcing.procure(_sourcing(bench), 2, bench.pool.id)  # still under: no second alert
    assert [a[0] for a in alerts] == ["supply.low_balance"]
    assert alerts[0][1]["amount"] == 6_000 - 2 * CARD_PRICE
    bench.kashangwl.balance = 50_000  # topped up: over the mark, re-armed
    await sourcing.procure(_sourcing(bench), 1, bench.pool.id)
    bench.kashangwl.balance = 4_000
    await sourcing.procure(_sourcing(bench), 1, bench.pool.id)
    assert len(alerts) == 2
    # a balance that cannot pay skips the supplier (acg-faka buys instead); nothing is sent to kw
    bench.kashangwl.balance = 100
    before = bench.kashangwl.buy_requests
    p = await sourcing.procure(_sourcing(bench), 1, bench.pool.id)
    assert p.supplier == "acg"
    assert bench.kashangwl.buy_requests == before
