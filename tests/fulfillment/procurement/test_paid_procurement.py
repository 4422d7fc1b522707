"""On demand after payment and direct recharges, on SQLite and PostgreSQL, over both fake suppliers and their faults.

A paid order of an on-demand SKU with an empty pool (or of a recharge SKU) waits in `delivering` with a `procure`
outbox row; the delivery worker (with fulfillment/fulfil_sourced.py) buys for that order, the resolver job queries
what is unknown, the supplier's callbacks arrive on our route. After each run, by SQL: every paid order ends
delivered or refunded, never both, never neither; at most one supplier order per order unless the earlier ones
definitively failed; the payment provider refunded each refunded order exactly once."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fulfillment.delivery import Delivery, DeliveryWorker
from fulfillment.fulfil_sourced import SourcedFulfilment
from fulfillment.orders import AllowAll, CheckoutRequest, OrderService
from fulfillment.payments import TestPaymentProvider as RecordingProvider
from fulfillment.sourcing import SourcingService
from storage.records import Order, PaymentOutcome
from storage.records_supply import ProcurementState, SkuSource, SkuSourcing
from tests.fakes.supplier_kashangwl import TYPE_MANUAL, TYPE_RECHARGE, FakeProduct
from tests.fulfillment.procurement.conftest import Bench
from tests.storage.seed import payment

KW = (SkuSource("kw", "41847"),)
ACG = (SkuSource("acg", "STEAM10"),)
PHONE = "13800138000"


class Inbox:
    """The customer's chat: what each order was told, in order."""

    def __init__(self) -> None:
        self.told: list[Delivery] = []

    async def deliver(self, delivery: Delivery) -> None:
        self.told.append(delivery)

    def of(self, order: Order) -> list[tuple[str, str, int]]:
        return [(d.kind, d.notice, len(d.codes)) for d in self.told if d.order.id == order.id]


class Run:
    def __init__(self, bench: Bench, retries: int = 1) -> None:
        self.bench = bench
        self.sourcing = SourcingService(bench.store, bench.registry, bench.service, "test-holder", catalogue_ttl=0)
        self.orders = OrderService(bench.store, AllowAll(), timedelta(minutes=15))
        self.sourced = SourcedFulfilment(bench.store, self.sourcing, retries=retries)
        self.inbox = Inbox()
        self.provider = RecordingProvider()
        self.worker = DeliveryWorker(bench.store, bench.vault, {"console": self.inbox}, {"test": self.provider},
                                     jitter=lambda: 0.0)
        self.worker.procure = self.sourced.procure
        self.paid: list[Order] = []

    async def buy(self, user: str, qty: int = 1, target: str | None = None) -> Order:
        order = await self.orders.checkout(CheckoutRequest("console", user, f"chat-{user}", self.bench.shop.sku.id,
                                                           qty, target=target))
        result = await self.bench.store.receive_payment(payment(order.ref, order.amount), datetime.now(UTC))
        assert result.outcome is PaymentOutcome.ALLOCATED
        self.paid.append(order)
        return order

    async def settle(self, seconds: float = 10.0) -> None:
        """Worker and resolver until every paid order is delivered or refunded (or the time is up)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await self.worker.run_once()
            await self.bench.service.resolve_due()
            states = {(await self.bench.store.order_by_id(o.id)).state.value for o in self.paid}  # type: ignore[union-attr]
            if states <= {"delivered", "refunded"}:
                return
            await asyncio.sleep(0.03)

    async def until_procured(self, order: Order, *states: ProcurementState, seconds: float = 15.0) -> None:
        """Worker and resolver until the order has a supplier order in one of `states` (a busy machine's catalogue
        read may time out and be retried first, so no fixed wait)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await self.worker.run_once()
            await self.bench.service.resolve_due()
            if any(p.state in states for p in await self.bench.store.order_procurements(order.id)):
                return
            await asyncio.sleep(0.03)

    async def state(self, order: Order) -> str:
        found = await self.bench.store.order_by_id(order.id)
        assert found is not None
        return found.state.value

    async def proofs(self) -> None:
        b = self.bench
        paid = await b.sql("SELECT o.id, o.state FROM orders o WHERE EXISTS (SELECT 1 FROM ledger l"
                           " WHERE l.order_id = o.id AND l.kind = 'sale')")
        assert paid
        assert all(state in ("delivered", "refunded") for _, state in paid), paid
        both = await b.sql("SELECT order_id FROM order_events GROUP BY order_id HAVING"
                           " SUM(CASE WHEN to_state = 'delivered' THEN 1 ELSE 0 END) > 0 AND"
                           " SUM(CASE WHEN to_state = 'refunded' THEN 1 ELSE 0 END) > 0")
        assert both == []
        twice = await b.sql("SELECT order_id FROM procurements WHERE order_id IS NOT NULL AND state <> 'failed'"
                            " GROUP BY order_id HAVING COUNT(*) > 1")
        assert twice == []
        # the supplier's own books: one order per reference, each one ours
        outer = [o.outer_order_id for o in b.kashangwl.orders.values()] + list(b.acgfaka.request_nos)
        assert len(outer) == len(set(outer))
        assert set(outer) <= {r[0] for r in await b.sql("SELECT our_ref FROM procurements")}
        refunded = [oid for oid, state in paid if state == "refunded"]
        assert len(self.provider.refunds) == len(refunded)  # the provider refunded each once
        delivered = [oid for oid, state in paid if state == "delivered"]
        for oid in delivered:
            sku_target = await b.sql(f"SELECT target FROM orders WHERE id = {int(oid)}")
            items = await b.sql(f"SELECT COUNT(*) FROM order_items WHERE order_id = {int(oid)} AND NOT released")
            quantity = await b.sql(f"SELECT quantity * units FROM orders WHERE id = {int(oid)}")
            assert items[0][0] == (0 if sku_target[0][0] else quantity[0][0])


async def _on_demand(bench: Bench, sources: tuple[SkuSource, ...] = KW, max_cost: int = 1000) -> None:
    await bench.store.save_sku_sourcing(SkuSourcing(bench.shop.sku.id, own=True, sources=sources,
                                                    max_unit_cost=max_cost, on_demand=True))


async def _recharge(bench: Bench, sources: tuple[SkuSource, ...] = (SkuSource("kw", "10086"),)) -> None:
    bench.kashangwl.add_product(FakeProduct("10086", "China Mobile 10 CNY", 980, type=TYPE_RECHARGE))
    record = await bench.store.supplier_by_name("kw")
    await bench.store.save_supplier(replace(record, product_ids=(*record.product_ids, "10086")), datetime.now(UTC))
    await bench.store.upsert_sku(replace(bench.shop.sku, target_rule="mobile"))
    await bench.store.save_sku_sourcing(SkuSourcing(bench.shop.sku.id, own=False, sources=sources,
                                                    max_unit_cost=1000, on_demand=True))


async def test_an_empty_on_demand_pool_still_sells_and_the_paid_order_gets_the_codes_bought_for_it(bench):
    await _on_demand(bench)
    run = Run(bench)
    order = await run.buy("u1", qty=2)
    assert bench.kashangwl.buy_requests == 0  # nothing is bought before payment
    assert await run.state(order) == "delivering"
    await run.settle()
    assert await run.state(order) == "delivered"
    told = run.inbox.of(order)
    assert told == [("notice", "supply.procuring", 0), ("deliver", "", 2)]
    assert [p.order_id for p in await bench.store.order_procurements(order.id)] == [order.id]
    assert await bench.available() == 0  # the codes went to that order, not to the shelf
    cost = await bench.sql(f"SELECT SUM(amount) FROM ledger WHERE order_id = {order.id} AND kind = 'cost'")
    assert cost[0][0] == -2 * 990
    await run.proofs()


async def test_a_catalogue_read_that_fails_is_retried_not_refunded(bench):
    """A timeout or 5xx reading the supplier's catalogue is no answer, not "out of stock": the order waits for the
    outbox's retry (its breaker still closed) and is delivered; only a source that answers without an offer, or
    retries used up, refunds."""
    await _on_demand(bench)
    bench.kashangwl.faults.http_500_on_read = 3  # every attempt of one catalogue read (HttpPolicy.read_attempts)
    run = Run(bench)
    order = await run.buy("u1")
    await run.worker.run_once()
    assert await run.state(order) == "delivering"
    assert bench.kashangwl.buy_requests == 0
    assert run.provider.refunds == {}
    await run.settle()
    assert await run.state(order) == "delivered"
    await run.proofs()


async def test_own_stock_is_sold_first_without_a_supplier(bench):
    await _on_demand(bench)
    await bench.store.insert_codes(await bench.store.create_batch(bench.pool.id, "own", 10, "CNY", "seed"),
                                   bench.pool.id, [bench.vault.seal("OWN-CODE-0001")])
    run = Run(bench)
    order = await run.buy("u1")
    await run.settle()
    assert (await run.state(order), bench.kashangwl.buy_requests) == ("delivered", 0)
    await run.proofs()


async def test_a_definitive_refusal_fails_over_and_the_last_refusal_refunds(bench):
    await _on_demand(bench, sources=KW + ACG, max_cost=2000)
    bench.kashangwl.balance = 10  # kw refuses (balance_not_enough) after the balance check passes below
    run = Run(bench)
    run.sourcing.balance = _unknown_balance  # type: ignore[method-assign]  # the check could not read it
    first = await run.buy("u1")
    await run.settle()
    assert await run.state(first) == "delivered"  # from acg-faka, after kw's definitive refusal
    states = sorted((p.supplier, p.state.value) for p in await bench.store.order_procurements(first.id))
    assert states == [("acg", "succeeded"), ("kw", "failed")]
    bench.acgfaka.balance = 0
    second = await run.buy("u2")
    await run.settle()
    assert await run.state(second) == "refunded"
    assert run.inbox.of(second)[-1] == ("refunded", "supply.procure_refunded", 0)
    await run.proofs()


async def _unknown_balance(name: str) -> None:
    return None


async def test_no_failover_and_no_refund_while_the_purchase_is_unknown(bench):
    await _on_demand(bench, sources=KW + ACG, max_cost=2000)
    bench.kashangwl.faults.unknown_then_success = 1
    bench.kashangwl.settle_after = 60
    run = Run(bench)
    order = await run.buy("u1")
    await run.until_procured(order, ProcurementState.UNKNOWN)
    await run.settle(seconds=0.3)
    assert await run.state(order) == "delivering"
    assert [p.state for p in await bench.store.order_procurements(order.id)] == [ProcurementState.UNKNOWN]
    assert bench.acgfaka.trade_requests == 0
    assert not await bench.store.fail_backorder(order.id, "merchant impatience", datetime.now(UTC))
    # the supplier settles it: the next query delivers
    bench.kashangwl.settle(next(iter(bench.kashangwl.orders)), 200)
    await run.settle()
    assert await run.state(order) == "delivered"
    await run.proofs()


async def _breaker_failures(bench: Bench, name: str, k: int) -> None:
    record = await bench.store.supplier_by_name(name)
    await bench.store.save_supplier(replace(record, breaker_failures=k, breaker_cool_down_s=600), datetime.now(UTC))


async def test_a_supplier_that_stops_answering_holds_at_most_k_orders_the_rest_fail_over_at_once(bench):
    """kw (the cheaper source) books every order and never answers. At most K=2 purchases are in flight there at
    once: the other paid orders are bought from acg-faka at once instead of queueing, the two lost answers open
    kw's breaker, and the two orders waiting on kw are neither failed over nor refunded."""
    bench.kashangwl.add_product(FakeProduct("41850", "Steam 10 USD (manual)", 980, type=TYPE_MANUAL))
    record = await bench.store.supplier_by_name("kw")
    await bench.store.save_supplier(replace(record, product_ids=("41850",), breaker_failures=2,
                                            breaker_cool_down_s=600), datetime.now(UTC))
    await _on_demand(bench, sources=(SkuSource("kw", "41850"), *ACG), max_cost=2000)
    bench.kashangwl.faults.hold_after_accept = 100  # booked (no callback: a manual product), answer never sent
    run = Run(bench)
    orders = [await run.buy(f"u{n}") for n in range(8)]
    await run.worker.drain()
    states = [await run.state(o) for o in orders]
    assert len(bench.kashangwl.orders) == 2
    assert (states.count("delivered"), states.count("delivering"), states.count("refunded")) == (6, 2, 0)
    assert len(bench.acgfaka.trades) == 6
    assert not bench.registry.healthy("kw")
    waiting = [o for o, state in zip(orders, states, strict=True) if state == "delivering"]
    for order in waiting:
        assert [(p.supplier, p.state) for p in await bench.store.order_procurements(order.id)] == [
            ("kw", ProcurementState.UNKNOWN)]
    twice = await bench.sql("SELECT order_id FROM procurements WHERE order_id IS NOT NULL AND state <> 'failed'"
                            " GROUP BY order_id HAVING COUNT(*) > 1")
    assert twice == []


async def test_with_one_source_an_order_waits_for_a_purchase_slot_instead_of_failing(bench):
    """One purchase at a time at kw (K=1) and no other source: the paid orders queue for kw's slot and are all
    delivered, none refunded."""
    await _on_demand(bench)
    await _breaker_failures(bench, "kw", 1)
    run = Run(bench, retries=0)
    orders = [await run.buy(f"u{n}") for n in range(4)]
    await run.settle()
    assert [await run.state(o) for o in orders] == ["delivered"] * 4
    assert len(bench.kashangwl.orders) == 4
    assert run.provider.refunds == {}
    await run.proofs()


async def test_a_merchants_refund_waits_while_the_purchase_is_unknown(bench):
    """The merchant's /refund is refused in chat (handlers/merchant.py); a refund row that raced the purchase is
    not paid out by the worker either: the provider is not called, the order stays delivering."""
    from fulfillment.aftersales import AfterSalesService

    await _on_demand(bench)
    bench.kashangwl.faults.unknown_then_success = 1
    bench.kashangwl.settle_after = 60
    run = Run(bench)
    order = await run.buy("u1")
    await run.until_procured(order, ProcurementState.SENT, ProcurementState.UNKNOWN)
    assert [p.state.open for p in await bench.store.order_procurements(order.id)] == [True]  # sent or unknown
    await AfterSalesService(bench.store).request_refund(order.ref, "merchant 1")
    await run.worker.run_once()
    assert await run.state(order) == "delivering"
    assert run.provider.refunds == {}
    assert await bench.store.pending_outbox() >= 1  # kept, retried: refunded only once the supplier settles it


KASHANGWL_FAULTS = ["hold_after_accept", "http_500_after_accept", "reset_after_accept", "duplicate_callbacks",
                    "callback_before_response", "forged_callback", "unknown_then_success", "unknown_then_failed",
                    "wrong_product_callback", "out_of_balance"]


async def _kashangwl_fault(bench: Bench, fault: str) -> None:
    if fault == "out_of_balance":
        bench.kashangwl.balance = 0
    elif fault == "wrong_product_callback":
        bench.kashangwl.faults.wrong_product_callback = 1
        bench.kashangwl.faults.hold_after_accept = 1  # the callback is all we hear (the query then holds it too)
    elif fault != "forged_callback":
        setattr(bench.kashangwl.faults, fault, 1)


async def _after_kashangwl_fault(run: Run, bench: Bench, fault: str) -> None:
    if fault == "forged_callback":  # a forged "succeeded" for a real order: 403, nothing changes
        supplier_order = next(iter(bench.kashangwl.orders))
        answer = await bench.kashangwl.send_forged_callback(supplier_order)
        assert answer.status_code == 403
    if fault == "wrong_product_callback":  # held for the merchant, who checks the supplier and settles it
        await bench.kashangwl.drain()
        held = [p for p in await bench.store.procurements(list(ProcurementState), 10) if p.held]
        assert held, "the mismatching callback holds the procurement"
        await bench.service.settle_by_merchant(held[0].our_ref, ProcurementState.FAILED, "merchant 1")


@pytest.mark.parametrize("fault", KASHANGWL_FAULTS)
async def test_paid_on_demand_orders_end_delivered_or_refunded_under_kashangwl_faults(bench, fault):
    await _on_demand(bench)
    await _kashangwl_fault(bench, fault)
    run = Run(bench)
    orders = [await run.buy(f"u{n}") for n in range(2)]
    await run.settle(seconds=1.5)
    await _after_kashangwl_fault(run, bench, fault)
    await run.settle()
    await bench.kashangwl.drain()
    await run.settle(seconds=0.5)
    await run.proofs()
    outcome = {await run.state(o) for o in orders}
    if fault in ("out_of_balance",):
        assert outcome == {"refunded"}
        assert bench.kashangwl.buy_requests == 0
    elif fault == "unknown_then_failed":
        assert "refunded" in outcome
    elif fault != "wrong_product_callback":
        assert outcome == {"delivered"}


@pytest.mark.parametrize("fault", ["hold_after_accept", "http_500_after_accept", "reset_after_accept",
                                   "fewer_codes", "duplicate_codes", "out_of_balance"])
async def test_paid_on_demand_orders_end_delivered_or_refunded_under_acgfaka_faults(bench, fault):
    await _on_demand(bench, sources=ACG, max_cost=2000)
    if fault == "out_of_balance":
        bench.acgfaka.balance = 0
    else:
        setattr(bench.acgfaka.faults, fault, 1)
    run = Run(bench)
    order = await run.buy("u1", qty=2)
    if fault.endswith("after_accept"):
        await run.until_procured(order, ProcurementState.UNKNOWN)
    await run.settle(seconds=1.5)
    if fault.endswith("after_accept"):  # lost, and acg-faka cannot find it by our reference: a merchant decides
        assert await run.state(order) == "delivering"
        (p,) = await bench.store.order_procurements(order.id)
        assert p.state is ProcurementState.UNKNOWN
        assert bench.acgfaka.trade_requests == 1
        await bench.service.settle_by_merchant(p.our_ref, ProcurementState.FAILED, "merchant 1")
        await run.settle()
    await run.proofs()
    expected = "delivered" if fault == "hold_never" else "refunded"
    assert await run.state(order) == expected  # a short delivery refunds; its codes stay on the shelf
    if fault in ("fewer_codes", "duplicate_codes"):
        assert await bench.available() >= 1


async def test_a_recharge_is_sent_with_its_target_and_delivered_without_codes(bench):
    await _recharge(bench)
    run = Run(bench)
    order = await run.buy("u1", target=PHONE)
    await run.settle()
    assert await run.state(order) == "delivered"
    (supplier_order,) = bench.kashangwl.orders.values()
    assert (supplier_order.recharge_account, supplier_order.product_id) == (PHONE, "10086")
    assert run.inbox.of(order) == [("notice", "supply.recharging", 0), ("deliver", "supply.recharged", 0)]
    cost = await bench.sql(f"SELECT SUM(amount) FROM ledger WHERE order_id = {order.id} AND kind = 'cost'")
    assert cost[0][0] == -980
    await run.proofs()


@pytest.mark.parametrize("fault", ["unknown_then_failed", "invalid_target", "hold_after_accept"])
async def test_a_recharge_is_refunded_only_when_definitively_failed(bench, fault):
    await _recharge(bench)
    if fault == "invalid_target":  # a number the shop accepts but this product does not serve (China Telecom only)
        bench.kashangwl.products["10086"].account_pattern = r"^133\d{8}$"
    else:
        setattr(bench.kashangwl.faults, fault, 1)
    run = Run(bench)
    order = await run.buy("u1", target=PHONE)
    await run.settle()
    await bench.kashangwl.drain()
    await run.settle()
    await run.proofs()
    if fault == "hold_after_accept":  # lost answer, then the query finds it credited
        assert await run.state(order) == "delivered"
        return
    assert await run.state(order) == "refunded"
    assert run.inbox.of(order)[-1] == ("refunded", "supply.recharge_refunded", 0)


async def test_a_long_unknown_recharge_is_never_refunded_and_opens_one_ticket(bench):
    await _recharge(bench)
    bench.kashangwl.faults.unknown_then_success = 1
    bench.kashangwl.settle_after = 60
    run = Run(bench)
    alerts: list[tuple[str, dict[str, Any]]] = []

    async def alert(msgid: str, params: dict[str, Any]) -> None:
        alerts.append((msgid, params))

    run.sourced.alert = alert
    order = await run.buy("u1", target=PHONE)
    await run.until_procured(order, ProcurementState.UNKNOWN)
    assert await run.state(order) == "delivering"
    run.sourced.clock = lambda: datetime.now(UTC) + timedelta(hours=1)
    assert await run.sourced.ticket_unknown_recharges() == 1
    assert await run.sourced.ticket_unknown_recharges() == 0  # one ticket, however often the job runs
    (ticket,) = await bench.store.live_tickets(10, order_id=order.id)
    (p,) = await bench.store.order_procurements(order.id)
    assert p.our_ref in ticket.last_message
    assert ticket.kind == "human"
    assert [a[0] for a in alerts] == ["supply.recharge_ticket"]
    assert not await bench.store.fail_backorder(order.id, "impatience", datetime.now(UTC))
    assert run.provider.refunds == {}
    assert await run.state(order) == "delivering"
