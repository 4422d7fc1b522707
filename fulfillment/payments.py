"""Payment providers and the idempotent payment inbox: record by provider txn id, then apply."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from fulfillment.checkpoints import PAYMENT_RECORDED, PAYMENT_TAKEN, Checkpoints, NoCheckpoints
from fulfillment.errors import PaymentRejected
from fulfillment.orders import PAYABLE
from storage import events
from storage.events import EventType
from storage.protocol import Store
from storage.records import Order, OrderState, PaymentApplied, PaymentEventIn, PaymentOutcome

log = logging.getLogger("kamibot.payments")
MAX_AMOUNT = 10**12
#: the cause recorded when the risk module holds an order for review (followed by its reasons)


class PaymentProvider(Protocol):
    """A way to take money. Provider calls never happen inside a database transaction."""

    name: str

    async def refund(self, order: Order, provider_txn_id: str, amount: int) -> str:
        """Refund; returns the provider's refund reference. Must be safe to call twice."""
        ...


class TestPaymentProvider:
    """The offline demo's provider: pays instantly, refunds instantly, keeps a record."""

    name = "test"

    def __init__(self) -> None:
        self.refunds: dict[str, int] = {}

    def pay(self, order: Order) -> PaymentEventIn:
        return PaymentEventIn("test", "test_" + secrets.token_hex(8), order.ref, order.amount, order.currency)

    async def refund(self, order: Order, provider_txn_id: str, amount: int) -> str:
        self.refunds.setdefault(provider_txn_id, amount)
        return "refund_" + provider_txn_id


class DeliveryRisk(Protocol):
    async def before_delivery(self, order: Order, fingerprint: str,
                              flagged: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """Reasons to hold the paid order for review (() to deliver). `flagged`: the reasons of the order's
        latest `risk_flagged` note when the caller read it with the order (None: the hook reads it)."""
        ...


def validate_event(event: PaymentEventIn) -> None:
    if not event.provider or not event.provider_txn_id or not event.order_ref:
        raise PaymentRejected("payment event lacks provider, transaction id or order")
    if isinstance(event.amount, bool) or not isinstance(event.amount, int) or not 0 <= event.amount < MAX_AMOUNT:
        raise PaymentRejected("payment amount must be a non-negative integer in minor units")
    if not isinstance(event.fee, int) or event.fee < 0:
        raise PaymentRejected("payment fee must be a non-negative integer")
    if not event.currency or not event.currency.isalpha() or not event.currency.isupper():
        raise PaymentRejected("payment currency must be an upper-case ISO code")


class PaymentInbox:
    """Every provider notification passes here: record idempotently, then apply once."""

    def __init__(self, store: Store, checkpoints: Checkpoints | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), risk: DeliveryRisk | None = None) -> None:
        self.store = store
        self.risk = risk
        #: told when a payment wrote outbox rows (delivery, or the refund of an unfulfillable order)
        self.on_applied: Callable[[], None] | None = None
        #: told (provider, outcome) of every notification received (metrics); "error" when it could not be applied
        self.on_outcome: Callable[[str, str], None] | None = None
        self.checkpoints = checkpoints or NoCheckpoints()
        self.clock = clock

    async def receive(self, event: PaymentEventIn, hold: tuple[str, ...] = ()) -> PaymentApplied:
        """Record and apply `event` once. `hold`: reasons the channel found to hold the order for review
        instead of delivering (e.g. the payer is not the buyer). A second payment of an order that is already
        paid comes back as DUPLICATE (its ledger lines written once): the channel refunds it through its
        provider, keyed by the provider transaction id, and tells the payer."""
        self.checkpoints.reach(PAYMENT_TAKEN)
        validate_event(event)
        if hold:
            await self._hold(event, hold)
        elif self.risk is not None:
            await self._risk_hold(event)
        try:
            result = await self.store.receive_payment(event, self.clock())
        except Exception:
            # never lose a notification: keep it recorded for the recovery job, then let the caller
            # answer "failed" so the provider retries
            await self.store.record_payment(event, self.clock())
            log.exception("event=payment.apply_failed provider=%s", event.provider)
            if self.on_outcome is not None:
                self.on_outcome(event.provider, "error")
            raise
        self.checkpoints.reach(PAYMENT_RECORDED)
        if result.outcome == PaymentOutcome.REVIEW and await self._duplicate(event, result):
            result = PaymentApplied(result.event_id, PaymentOutcome.DUPLICATE, result.order_id, "second payment")
        if self.on_applied is not None and result.outcome in (PaymentOutcome.ALLOCATED, PaymentOutcome.FAILED):
            self.on_applied()
        if self.on_outcome is not None:
            self.on_outcome(event.provider, result.outcome.value)
        log.info("event=payment.%s payment_event=%s provider=%s order_id=%s",
                 result.outcome.value, result.event_id, event.provider, result.order_id)
        return result

    async def _duplicate(self, event: PaymentEventIn, result: PaymentApplied) -> bool:
        """Held because its order was already paid by another transaction: settle it as a duplicate (once)."""
        if result.order_id is None:
            return False
        first = await self.store.order_payment(result.order_id)
        if first is None or (first[0], first[1]) == (event.provider, event.provider_txn_id):
            return False  # the order's own payment held for review (amount mismatch, a risk rule)
        return await self.store.settle_duplicate_payment(result.event_id, self.clock())

    async def _hold(self, event: PaymentEventIn, reasons: tuple[str, ...]) -> None:
        order = await self.store.order_by_ref(event.order_ref)
        if order is not None and order.state in PAYABLE:
            await self.store.transition(order.id, list(PAYABLE), OrderState.REVIEW,
                                        events.risk_review(reasons=reasons), self.clock())

    async def _risk_hold(self, event: PaymentEventIn) -> None:
        """After payment, before delivery: a held order goes to review first, so its payment is recorded but
        nothing is allocated or sent until the merchant decides (a retry of the event finds it held)."""
        assert self.risk is not None
        # the order and its pre-payment risk hold (a risk_flagged note) in one read
        found = await self.store.order_by_ref_noted(event.order_ref, EventType.RISK_FLAGGED)
        if found is None or found[0].state not in PAYABLE:
            return
        order, note = found
        flagged = tuple(note.params["reasons"]) if note is not None else ()
        reasons = await self.risk.before_delivery(order, event.payer, flagged)
        if reasons:
            await self.store.transition(order.id, list(PAYABLE), OrderState.REVIEW,
                                        events.risk_review(reasons=reasons), self.clock())

    async def apply_pending(self, limit: int = 500) -> int:
        """Recovery: events recorded before a crash but never applied; how many this call applied (an event
        another process applied meanwhile is ALREADY_APPLIED and not counted: the work is done once)."""
        done = 0
        for event_id in await self.store.unapplied_payments(limit):
            result = await self.store.apply_payment(event_id, self.clock())
            if result.outcome is PaymentOutcome.ALREADY_APPLIED:
                continue
            log.info("event=payment.recovered payment_event=%s outcome=%s", event_id, result.outcome.value)
            done += 1
        return done
