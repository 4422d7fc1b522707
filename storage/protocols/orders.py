"""The order seams: orders and their events, payments applied to them, the delivery outbox.

Three protocols because three kinds of caller: checkout and review (orders), payment providers (payments),
the delivery worker (outbox)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from storage.events import EventType, NewOrderEvent, OrderEvent
from storage.records import (
    NewOrder,
    Order,
    OrderItem,
    OrderState,
    OutboxRow,
    PaymentApplied,
    PaymentEventIn,
)


class OrderStore(Protocol):
    """Orders, their lifecycle verbs and their typed events (storage/events.py)."""

    async def reserve(self, order: NewOrder, now: datetime) -> Order:
        """Create an order holding `quantity * units` uses of the SKU's pool.

        Raises storage.errors.InsufficientStock / PurchaseLimitReached / UnknownRecord.
        """
        ...

    async def transition(
        self, order_id: int, allowed_from: Sequence[OrderState], to: OrderState, event: NewOrderEvent, now: datetime
    ) -> bool:
        """Move an order from one of `allowed_from` to `to`, recording `event` (a move, storage/events.py; a note
        raises ValueError)."""
        ...

    async def add_order_note(self, order_id: int, event: NewOrderEvent, now: datetime) -> None:
        """Record a note (storage/events.py NOTE_TYPES) in the order's current state. Raises UnknownRecord."""
        ...
    async def order_by_id(self, order_id: int) -> Order | None: ...
    async def order_by_ref(self, ref: str) -> Order | None: ...
    async def order_by_ref_noted(self, ref: str, note: EventType) -> tuple[Order, OrderEvent | None] | None:
        """The order and its newest event of type `note` in one read (the payment path's risk hold asks it of
        every payment: one query, one round trip, instead of order_by_ref + last_order_event)."""
        ...
    async def orders_for_user(self, channel: str, user_id: str, limit: int, offset: int) -> list[Order]: ...
    async def orders_in_state(self, state: OrderState, limit: int) -> list[Order]:
        """Oldest first (the review queue)."""
        ...

    async def order_events(self, order_id: int) -> list[OrderEvent]: ...
    async def last_order_event(self, order_id: int, event_type: EventType) -> OrderEvent | None:
        """The order's newest event of one type (a point read: the payment path asks it of every order)."""
        ...

    async def order_items(self, order_id: int) -> list[OrderItem]: ...
    async def expire_reservations(self, now: datetime, limit: int) -> list[int]: ...

    async def refund(self, order_id: int, event: NewOrderEvent, now: datetime) -> bool:
        """Mark refunded, write refund ledger lines, return never-shown uses to stock."""
        ...
    async def reopen_review(self, order_id: int, event: NewOrderEvent, now: datetime) -> int | None:
        """Merchant approved a held order: restore the state it was held from and make its held payment
        applicable again (apply_payment then allocates); the payment event id, or None if nothing is held."""
        ...


class PaymentStore(Protocol):
    """Provider payment events, recorded idempotently and applied to their orders."""

    async def record_payment(self, event: PaymentEventIn, now: datetime) -> tuple[int, bool]:
        """Record a provider payment event; (event id, False) when its txn id was seen before."""
        ...

    async def receive_payment(self, event: PaymentEventIn, now: datetime) -> PaymentApplied:
        """Record and apply in one transaction (the hot path); a repeat returns ALREADY_APPLIED."""
        ...

    async def apply_payment(self, event_id: int, now: datetime) -> PaymentApplied:
        """Apply a recorded payment: mark paid + allocate + outbox + ledger in one transaction."""
        ...

    async def unapplied_payments(self, limit: int) -> list[int]: ...
    async def settle_duplicate_payment(self, event_id: int, now: datetime) -> bool:
        """Mark a payment held for an already-paid order as a duplicate to be refunded, with its ledger lines
        (the money in and the money going back); True only for the first call per event."""
        ...

    async def order_payment(self, order_id: int) -> tuple[str, str, int] | None:
        """(provider, provider txn id, amount) of the payment the order lives by: the one that paid it (allocated,
        or failed for want of stock) before any held one, whatever their ids (on PostgreSQL two racing payments
        take their ids before the order lock, so the held second one can have the lower id)."""
        ...


class OutboxStore(Protocol):
    """The delivery outbox: rows written with the allocation, leased, completed or retried."""

    async def claim_outbox(self, now: datetime, lease_until: datetime, limit: int) -> list[OutboxRow]: ...
    async def complete_outbox(self, outbox_id: int, now: datetime) -> None: ...
    async def retry_outbox(self, outbox_id: int, next_at: datetime, error: str) -> None: ...
    async def renew_outbox(self, outbox_ids: Sequence[int], lease_until: datetime) -> int:
        """Extend the claims of rows still being processed (pending and claimed); how many were extended."""
        ...
    async def fail_outbox(self, outbox_id: int, now: datetime, error: str) -> None:
        """Give up on a row (the chat is gone); the order keeps its codes."""
        ...
    async def enqueue_outbox(self, order_id: int, kind: str, payload: str, now: datetime) -> int: ...
    async def pending_outbox(self) -> int: ...
    async def refund_queued(self, order_id: int) -> bool:
        """True once the shop queued the order's refund (its one refund outbox row, sent or not)."""
        ...

    async def order_state_counts(self) -> list[tuple[str, str, int]]:
        """(channel, state, number of orders) for every pair that has orders (metrics)."""
        ...
