"""The demo's simulated supplier keeps the Supplier protocol's promises (idempotent by our reference, definitive
refusals, consistent queries), labels what it sells as DEMO, and is offered by the registry without a row."""

from __future__ import annotations

import pytest

from bot.demo import SIMULATED_SUPPLIER
from fulfillment.suppliers.errors import (
    DefinitiveFailure,
    ForgedCallback,
    InvalidTarget,
    OrderNotFound,
    PriceAboveLimit,
    ProductUnavailable,
)
from fulfillment.suppliers.protocol import Money, OrderStatus, ProductType, Supplier
from fulfillment.suppliers.registry import SupplierRegistry
from fulfillment.suppliers.simulated import SimulatedSupplier


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> SimulatedSupplier:
    return SimulatedSupplier("demo-sim", delay_s=1.0, balance=10_000, monotonic=clock)


async def test_it_is_a_supplier_whose_products_say_simulated(sim):
    assert isinstance(sim, Supplier)
    products = await sim.catalogue()
    assert {p.product_type for p in products} == {ProductType.RECHARGE, ProductType.CARD}
    assert all("(simulated)" in p.name for p in products)


async def test_codes_are_labelled_demo_and_a_repeated_reference_buys_once(sim):
    first = await sim.buy_codes("ref-1", "video-week", 2, Money(300))
    again = await sim.buy_codes("ref-1", "video-week", 2, Money(300))
    assert first.status is OrderStatus.SUCCEEDED
    assert len(first.codes) == 2
    assert all(code.startswith("DEMO-") for code in first.codes)
    assert again == first
    assert (await sim.query("ref-1")).codes == first.codes
    assert await sim.balance() == Money(10_000 - 600)
    assert "DEMO-" not in repr(first)


async def test_a_top_up_is_processing_then_succeeds_and_stays_succeeded(sim, clock):
    accepted = await sim.recharge("ref-2", "mobile-10", "13800138000", 1, Money(1000))
    assert accepted.status is OrderStatus.PROCESSING
    assert accepted.codes == ()
    assert (await sim.query("ref-2")).status is OrderStatus.PROCESSING
    clock.now += 1.0
    done = await sim.query("ref-2")
    assert done.status is OrderStatus.SUCCEEDED
    clock.now += 60
    assert await sim.query("ref-2") == done
    assert (await sim.recharge("ref-2", "mobile-10", "13800138000", 1, Money(1000))) == done  # same reference
    assert await sim.balance() == Money(10_000 - 980)


async def test_a_number_ending_in_0000_fails_and_the_supplier_refunds_us(sim, clock):
    await sim.recharge("ref-3", "mobile-10", "13800130000", 1, Money(1000))
    clock.now += 2
    assert (await sim.query("ref-3")).status is OrderStatus.FAILED
    assert (await sim.query("ref-3")).status is OrderStatus.FAILED
    assert await sim.balance() == Money(10_000)


async def test_refusals_are_definitive_and_change_nothing(sim):
    for call in (sim.buy_codes("r-a", "mobile-10", 1, Money(1000)),  # a top-up product has no codes
                 sim.recharge("r-b", "video-week", "13800138000", 1, Money(300)),  # and a card is not credited
                 sim.buy_codes("r-c", "nope", 1, Money(1000))):
        with pytest.raises(ProductUnavailable):
            await call
    with pytest.raises(PriceAboveLimit):
        await sim.buy_codes("r-d", "video-week", 1, Money(299))
    with pytest.raises(InvalidTarget):
        await sim.recharge("r-e", "mobile-10", "12345", 1, Money(1000))
    with pytest.raises(DefinitiveFailure):
        await sim.buy_codes("r-f", "video-week", 100, Money(300))  # 30,000 > the balance
    assert await sim.balance() == Money(10_000)
    for ref in ("r-a", "r-b", "r-c", "r-d", "r-e", "r-f", "never-sent"):
        with pytest.raises(OrderNotFound):
            await sim.query(ref)
    with pytest.raises(ForgedCallback):
        sim.parse_callback({}, b"status=200")


async def test_the_registry_offers_a_local_supplier_without_a_database_row(shop):
    registry = SupplierRegistry(shop.store, shop.vault)
    assert await registry.get("demo-sim") is None
    registry.register_local(SIMULATED_SUPPLIER)
    guarded = await registry.get("demo-sim")
    assert guarded is not None
    assert [s.name for s in await registry.all()] == ["demo-sim"]
    order = await guarded.buy_codes("ref-r", "video-week", 1, Money(300))
    assert order.codes[0].startswith("DEMO-")
    assert await shop.store.suppliers() == []  # nothing written: it is never a live shop's supplier
    await registry.aclose()
