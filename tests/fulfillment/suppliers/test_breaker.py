"""The circuit breaker, with the clock moved by hand, and a guarded supplier whose upstream is dead."""

from __future__ import annotations

import asyncio

import pytest

from fulfillment.suppliers.breaker import BreakerState, CircuitBreaker, CircuitOpen, GuardedSupplier, NoPurchaseSlot
from fulfillment.suppliers.errors import DefinitiveFailure, InsufficientBalance, NotSent, OutcomeUnknown
from fulfillment.suppliers.protocol import Money
from tests.fakes.loopback import free_port

from .conftest import Bench


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def fail() -> None:
    raise OutcomeUnknown("lost")


async def ok() -> str:
    return "ok"


async def refuse() -> None:
    raise InsufficientBalance("poor")


def breaker(clock: Clock, k: int = 3) -> CircuitBreaker:
    return CircuitBreaker("s", failure_threshold=k, cool_down=30, clock=clock)


async def test_opens_after_k_consecutive_failures_and_refuses_without_calling():
    clock, calls = Clock(), []
    b = breaker(clock)

    async def counted() -> None:
        calls.append(1)
        await fail()

    for _ in range(3):
        with pytest.raises(OutcomeUnknown):
            await b.call(counted)
    assert b.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as caught:
        await b.call(counted)
    assert isinstance(caught.value, DefinitiveFailure)  # nothing was sent: failing over is safe
    assert len(calls) == 3


async def test_a_success_resets_the_consecutive_count():
    b = breaker(Clock())
    for _ in range(2):
        with pytest.raises(OutcomeUnknown):
            await b.call(fail)
    assert await b.call(ok) == "ok"
    for _ in range(2):
        with pytest.raises(OutcomeUnknown):
            await b.call(fail)
    assert b.state is BreakerState.CLOSED


async def test_refusals_show_the_supplier_alive_and_do_not_count():
    b = breaker(Clock(), k=1)
    for _ in range(3):
        with pytest.raises(InsufficientBalance):
            await b.call(refuse)
    assert b.state is BreakerState.CLOSED


async def test_half_open_lets_exactly_one_probe_through_and_its_success_closes():
    clock = Clock()
    b = breaker(clock, k=1)
    with pytest.raises(OutcomeUnknown):
        await b.call(fail)
    clock.now += 29
    assert b.state is BreakerState.OPEN
    clock.now += 1
    assert b.state is BreakerState.HALF_OPEN
    release = asyncio.Event()

    async def slow_ok() -> str:
        await release.wait()
        return "ok"

    probe = asyncio.create_task(b.call(slow_ok))
    await asyncio.sleep(0)
    with pytest.raises(CircuitOpen):
        await b.call(ok)  # a second caller while the probe is out
    release.set()
    assert await probe == "ok"
    assert b.state is BreakerState.CLOSED
    assert await b.call(ok) == "ok"


async def test_a_failed_probe_opens_for_another_cool_down():
    clock = Clock()
    b = breaker(clock, k=2)
    for _ in range(2):
        with pytest.raises(OutcomeUnknown):
            await b.call(fail)
    clock.now += 30
    with pytest.raises(OutcomeUnknown):
        await b.call(fail)
    assert b.state is BreakerState.OPEN
    clock.now += 29
    with pytest.raises(CircuitOpen):
        await b.call(ok)
    clock.now += 1
    assert await b.call(ok) == "ok"


async def test_a_cancelled_probe_does_not_leave_the_breaker_stuck():
    clock = Clock()
    b = breaker(clock, k=1)
    with pytest.raises(OutcomeUnknown):
        await b.call(fail)
    clock.now += 30
    probe = asyncio.create_task(b.call(asyncio.Event().wait))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert b.state is BreakerState.OPEN
    clock.now += 30
    assert await b.call(ok) == "ok"


async def test_guarded_supplier_stops_calling_a_dead_upstream_after_k_failures(bench: Bench):
    dead = bench.at(f"http://127.0.0.1:{free_port()}")
    guarded = GuardedSupplier(dead, CircuitBreaker(dead.name, failure_threshold=2, cool_down=60))
    try:
        for i in range(2):
            with pytest.raises(NotSent):
                await guarded.buy_codes(f"ref-dead-{i}", bench.card, 1, Money(990))
        with pytest.raises(CircuitOpen):
            await guarded.buy_codes("ref-dead-3", bench.card, 1, Money(990))
        assert guarded.breaker.state is BreakerState.OPEN
    finally:
        await guarded.aclose()


async def test_guarded_supplier_passes_a_healthy_upstream_through(bench: Bench):
    guarded = GuardedSupplier(bench.supplier, CircuitBreaker(bench.supplier.name))
    order = await guarded.buy_codes("ref-guard-1", bench.card, 1, Money(990))
    assert len(order.codes) == 1
    assert (await guarded.balance()).currency == "CNY"


# -- purchase slots: at most K purchases at risk, waiters served in order, told "no" when the breaker opens --


async def test_purchase_slots_stop_at_k_minus_the_recent_failures():
    b = breaker(Clock(), k=3)
    assert [b.try_reserve() for _ in range(4)] == [True, True, True, False]
    b.release()
    with pytest.raises(OutcomeUnknown):
        await b.call(fail)  # one consecutive failure: one slot fewer
    assert b.in_flight == 2
    assert not b.try_reserve()
    assert await b.call(ok) == "ok"  # an answer resets the count: the slot is back
    assert b.try_reserve()


async def test_k_purchases_lost_at_once_open_the_breaker_with_no_one_else_sent():
    clock, sent = Clock(), []
    b = breaker(clock, k=3)
    answer_lost = asyncio.Event()

    async def times_out() -> None:
        await answer_lost.wait()
        raise OutcomeUnknown("read timeout")

    async def purchase(n: int) -> None:  # as GuardedSupplier and SupplierHttp.gate do it
        async def held() -> None:
            async with b.purchase_slot():
                sent.append(n)
                await times_out()

        await b.call(held)

    buyers = [asyncio.create_task(purchase(n)) for n in range(10)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert sent == [0, 1, 2]  # the others wait for a slot
    answer_lost.set()  # the three in flight time out
    outcomes = await asyncio.gather(*buyers, return_exceptions=True)
    assert b.state is BreakerState.OPEN
    assert sent == [0, 1, 2]  # nobody queued behind the dead supplier was sent to it
    assert sum(isinstance(o, OutcomeUnknown) for o in outcomes) == 3
    assert all(isinstance(o, NoPurchaseSlot) for o in outcomes[3:])  # told "no": nothing sent, fail over
    assert b.in_flight == 0


async def test_a_waiter_gets_the_freed_slot_before_a_newcomer():
    b = breaker(Clock(), k=1)
    assert b.try_reserve()
    waiting = asyncio.create_task(b.reserve(wait=60))
    await asyncio.sleep(0)
    assert not b.try_reserve()
    b.release()
    assert await waiting
    assert b.in_flight == 1
    assert not b.try_reserve()


async def test_a_wait_that_times_out_leaves_no_slot_taken():
    b = breaker(Clock(), k=1)
    assert b.try_reserve()
    assert not await b.reserve(wait=0.01)
    b.release()
    assert b.in_flight == 0
    assert b.try_reserve()


async def test_an_open_breaker_gives_no_slot_and_half_open_gives_one_for_the_probe():
    clock = Clock()
    b = breaker(clock, k=1)
    with pytest.raises(OutcomeUnknown):
        await b.call(fail)
    assert not await b.reserve(wait=60)  # open: no at once, no waiting
    clock.now += 30
    assert b.try_reserve()
    assert not b.try_reserve()
    assert await b.call(ok) == "ok"
    b.release()
    assert b.try_reserve()
