"""A circuit breaker per supplier: after K consecutive failures it opens and calls are refused at once (nothing is
sent, so the caller may fail over); after a cool-down one probe is let through (half-open); its success closes the
breaker, its failure opens it for another cool-down. The clock is injected so tests move time by hand.

It also bounds the purchases at risk: a purchase holds a slot while its buying request is out (`purchase_slot`,
wired into the adapter's SupplierHttp.gate by the registry; around the whole buy for other adapters), and a slot
is free only while consecutive failures plus
purchases in flight stay under K (half-open: one purchase, the probe). A supplier that stops answering therefore
holds at most K orders in "unknown" when its breaker opens, since the K in flight are the K failures that open it.
An order passes over a supplier without a free slot (`has_room`) for the next offer at once (fulfillment/
sourcing.py), and waits its turn (first come, first served) only when there is none. Waiters are told "no"
(NoPurchaseSlot: nothing sent, fail over) the moment the breaker opens, instead of queueing behind a dead supplier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from enum import StrEnum
from typing import TypeVar

from fulfillment.suppliers.errors import BadAnswer, NotSent, OutcomeUnknown, SupplierUnavailable
from fulfillment.suppliers.protocol import Money, Supplier, SupplierOrder, SupplierProduct

log = logging.getLogger("kamibot.suppliers.breaker")
T = TypeVar("T")

#: what says "the supplier is not answering properly"; refusals (balance, price, stock, target) show it alive
FAILURES: tuple[type[Exception], ...] = (NotSent, OutcomeUnknown, SupplierUnavailable, BadAnswer)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(NotSent):
    """Refused by our breaker without calling the supplier."""

    kind = "supplier.circuit_open"


class NoPurchaseSlot(CircuitOpen):
    """No purchase slot: the breaker opened, or none freed in time, while the purchase waited. Nothing was sent."""

    kind = "supplier.no_slot"


class CircuitBreaker:
    def __init__(self, name: str, failure_threshold: int = 5, cool_down: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, slot_wait: float = 30.0) -> None:
        if failure_threshold < 1 or cool_down < 0:
            raise ValueError("failure_threshold >= 1 and cool_down >= 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cool_down = cool_down
        self.clock = clock
        self.failures = 0  # consecutive
        self.in_flight = 0  # purchases holding a slot
        self.slot_wait = slot_wait  # seconds a purchase waits for a slot
        self._opened_at: float | None = None
        self._probing = False
        self._waiters: deque[asyncio.Future[bool]] = deque()

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self.clock() - self._opened_at >= self.cool_down:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a call go out now? In half-open state exactly one caller (the probe) gets True."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            log.info("event=supplier.breaker_probe supplier=%s", self.name)
            return True
        return False

    def record_success(self) -> None:
        if self._opened_at is not None:
            log.info("event=supplier.breaker_closed supplier=%s", self.name)
        self.failures = 0
        self._opened_at = None
        self._probing = False
        self._hand_over()

    def record_failure(self) -> None:
        self.failures += 1
        if self._probing or (self._opened_at is None and self.failures >= self.failure_threshold):
            log.warning("event=supplier.breaker_opened supplier=%s failures=%d", self.name, self.failures)
            self._opened_at = self.clock()
        self._probing = False
        self._hand_over()

    def _release_probe(self) -> None:
        """A probe that ended without a verdict (cancelled): open again, another probe after the cool-down."""
        if self._probing:
            self._probing = False
            self._opened_at = self.clock()
            self._hand_over()

    # -- purchase slots --------------------------------------------------------------------------------------
    def _has_room(self) -> bool:
        state = self.state
        if state is BreakerState.CLOSED:
            return self.failures + self.in_flight < self.failure_threshold
        return state is BreakerState.HALF_OPEN and self.in_flight == 0  # the probe's own purchase

    def has_room(self) -> bool:
        """Would a purchase get a slot now (a hint for choosing an offer; `reserve` decides)?"""
        return not self._waiters and self._has_room()

    def try_reserve(self) -> bool:
        """Take a purchase slot now if one is free and nobody waits for one (no overtaking); never blocks."""
        if self._waiters or not self._has_room():
            return False
        self.in_flight += 1
        return True

    async def reserve(self, wait: float) -> bool:
        """Take a purchase slot, waiting up to `wait` seconds for one; False at once while the breaker is open
        and as soon as it opens."""
        if self.try_reserve():
            return True
        if self.state is BreakerState.OPEN:
            return False
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        got = False
        try:
            async with asyncio.timeout(wait):
                got = await waiter
        except TimeoutError:
            pass
        finally:
            if not got:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                if waiter.done() and not waiter.cancelled() and waiter.result():
                    self.release()  # handed a slot as the wait was given up: pass it on
                waiter.cancel()
        return got

    @contextlib.asynccontextmanager
    async def purchase_slot(self) -> AsyncIterator[None]:
        """Hold a purchase slot around sending a purchase; NoPurchaseSlot (nothing sent) when none is had."""
        if not await self.reserve(self.slot_wait):
            raise NoPurchaseSlot("no purchase slot", supplier=self.name)
        try:
            yield
        finally:
            # freed for others only once `call` has counted this purchase's verdict: a lost answer must count as a
            # failure before its slot goes, or a waiter would be sent to a supplier that may be dead
            self.release(hand_over=False)

    def release(self, hand_over: bool = True) -> None:
        """A purchase that held a slot has its answer (or none: it is unknown, and counted as a failure)."""
        self.in_flight = max(self.in_flight - 1, 0)
        if hand_over:
            self._hand_over()

    def _hand_over(self) -> None:
        """Give free slots to the waiters in arrival order; tell them all "no" once the breaker is open."""
        while self._waiters:
            if self.state is BreakerState.OPEN:
                for waiter in self._waiters:
                    if not waiter.done():
                        waiter.set_result(False)
                self._waiters.clear()
                return
            if not self._has_room():
                return
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(True)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if not self.allow():
            raise CircuitOpen("circuit open", supplier=self.name)
        verdict = False
        try:
            result = await fn()
        except NoPurchaseSlot:
            raise  # our own refusal, not the supplier's answer: no verdict
        except FAILURES:
            verdict = True
            self.record_failure()
            raise
        except Exception:
            verdict = True
            self.record_success()  # a refusal is an answer: the supplier is alive
            raise
        finally:
            if not verdict:
                if self._probing:
                    self._release_probe()
                self._hand_over()
        self.record_success()
        return result


class GuardedSupplier:
    """A Supplier whose calls pass through a breaker; callbacks are not calls and are not guarded."""

    def __init__(self, inner: Supplier, breaker: CircuitBreaker, gated: bool = False) -> None:
        self.inner = inner
        self.breaker = breaker
        #: the adapter holds a purchase slot around its own write (SupplierHttp.gate); else the whole buy does
        self.gated = gated
        self.name = inner.name
        self.queries_by_reference = inner.queries_by_reference
        self.callback_answer = inner.callback_answer

    async def catalogue(self) -> list[SupplierProduct]:
        return await self.breaker.call(self.inner.catalogue)

    async def buy_codes(self, our_ref: str, product_id: str, quantity: int, max_unit_cost: Money) -> SupplierOrder:
        return await self._purchase(lambda: self.inner.buy_codes(our_ref, product_id, quantity, max_unit_cost))

    async def recharge(self, our_ref: str, product_id: str, target_account: str, quantity: int,
                       max_unit_cost: Money) -> SupplierOrder:
        return await self._purchase(
            lambda: self.inner.recharge(our_ref, product_id, target_account, quantity, max_unit_cost))

    async def _purchase(self, fn: Callable[[], Awaitable[SupplierOrder]]) -> SupplierOrder:
        if self.gated:
            return await self.breaker.call(fn)

        async def held() -> SupplierOrder:
            async with self.breaker.purchase_slot():
                return await fn()

        return await self.breaker.call(held)

    async def query(self, our_ref: str, supplier_order_id: str | None = None) -> SupplierOrder:
        return await self.breaker.call(lambda: self.inner.query(our_ref, supplier_order_id))

    async def balance(self) -> Money:
        return await self.breaker.call(self.inner.balance)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> SupplierOrder:
        return self.inner.parse_callback(headers, body)

    async def aclose(self) -> None:
        await self.inner.aclose()
