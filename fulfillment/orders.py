"""The order state machine (as data), its named state groups, and the checkout verbs: reserve, invoice, cancel,
expire.

The lifecycle is written once, here: `TRANSITIONS` lists every allowed state change, and the state groups below
(`HOLDING`, `PAYABLE`, `KEPT_THE_MONEY`, `REFUNDABLE`, `WITH_CODES`, `CLOSED`, `SOLD`, `PAID_OR_IN_REVIEW`) name
the sets of states the rest of the code asks about; where a group follows from the table it is derived from it.
Storage decides no rule of its own: stores are built with `STATE_GROUPS` and their SQL bodies and PL/pgSQL
functions take the states as arguments, as `Store.transition(allowed_from=…)` does.

Every order event (storage/events.py) is either a *move*, a state change that must be in `TRANSITIONS`, or a
*note* (`storage.events.NOTE_TYPES`: a dispute, a risk flag, a free-text note) that records something about the
order in the state it is in and is written with `from_state == to_state`. The table has no self-transitions: a
note is not a transition, and `can_record` is the check every recorded event passes (the lifecycle test drives
every verb on both backends and checks each row with it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from fulfillment.errors import (
    BadQuantity,
    LimitReached,
    NoPrice,
    NotAllowed,
    OutOfStock,
    PriceChanged,
    UnknownOrder,
    UnknownSku,
)
from fulfillment.recharge_target import order_target
from fulfillment.wholenumbers import parse_whole
from storage import errors as store_errors
from storage import events
from storage.events import NOTE_TYPES, EventType, NewOrderEvent
from storage.protocol import Store
from storage.records import NewOrder, Order, OrderState, Sku, StateGroups

S = OrderState
log = logging.getLogger("kamibot.orders")

#: every allowed transition; stores record nothing outside this table (tests check it)
TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    S.CREATED: frozenset({S.RESERVED, S.REJECTED}),
    S.RESERVED: frozenset({S.AWAITING_PAYMENT, S.PAID, S.EXPIRED, S.REJECTED, S.REVIEW}),
    S.AWAITING_PAYMENT: frozenset({S.PAID, S.EXPIRED, S.REJECTED, S.REVIEW}),
    S.PAID: frozenset({S.DELIVERING, S.FAILED, S.REFUNDED, S.REVIEW}),
    # a paid backorder whose every source definitively failed fails (its refund queued in the same transaction)
    S.DELIVERING: frozenset({S.DELIVERED, S.REFUNDED, S.FAILED}),
    S.DELIVERED: frozenset({S.REFUNDED}),
    S.EXPIRED: frozenset({S.PAID, S.REVIEW}),  # a late payment is still honoured when stock allows
    # approved by the merchant: back to where it was held from, then its payment is applied
    S.REVIEW: frozenset({S.REFUNDED, S.REJECTED, S.RESERVED, S.AWAITING_PAYMENT, S.EXPIRED}),
    S.FAILED: frozenset({S.REFUNDED}),
    S.REJECTED: frozenset(),
    S.REFUNDED: frozenset(),
}

MAX_QUANTITY = 1000


def can_move(frm: OrderState | None, to: OrderState) -> bool:
    if frm is None:
        return to == S.CREATED
    return to in TRANSITIONS[frm]


def can_record(frm: OrderState | None, to: OrderState, kind: EventType) -> bool:
    """Whether an order event may be written: a note stays in its state, any other event is a move of the table."""
    if kind in NOTE_TYPES:
        return frm == to
    return can_move(frm, to)


def sources_of(to: OrderState) -> list[OrderState]:
    return [s for s, targets in TRANSITIONS.items() if to in targets]


# -- the state groups: every "which states" question of the shop, answered once -----------------------------------

#: orders that hold reserved stock (counted out of their pool's available uses until paid, expired or refused)
HOLDING = frozenset({S.RESERVED, S.AWAITING_PAYMENT})
#: a payment is accepted and applied (a late payment of an expired order too, when stock allows)
PAYABLE = frozenset(sources_of(S.PAID))
#: paid, and the shop keeps the money (not refunded, failed, rejected or held)
KEPT_THE_MONEY = frozenset({S.PAID, S.DELIVERING, S.DELIVERED})
#: a refund is accepted: every order that may hold the customer's money. A failed order was paid (it fails only
#: after its payment found no stock) and is refundable like the others; its automatic refund row is the same
#: unique-per-order outbox row a merchant's refund would queue.
REFUNDABLE = frozenset(sources_of(S.REFUNDED))
#: the order has codes: they can be shown again, and a bad one replaced
WITH_CODES = frozenset({S.DELIVERING, S.DELIVERED})
#: finished without a sale (not counted against per-user purchase limits)
CLOSED = frozenset({S.EXPIRED, S.REJECTED, S.REFUNDED, S.FAILED})
#: counted as a customer's paid orders in risk statistics (refunded ones too: they were paid)
SOLD = KEPT_THE_MONEY | {S.REFUNDED}
#: a customer's "I did not receive it" is about one of these (paid, or paid and held by review)
PAID_OR_IN_REVIEW = KEPT_THE_MONEY | {S.REVIEW}
#: paid and its codes not yet shown: the outbox is on it
ON_THE_WAY = frozenset({S.PAID, S.DELIVERING})
#: not paid yet (still open for payment, or not even reserved)
UNPAID = HOLDING | {S.CREATED}

#: the groups a store is built with (storage/records.py StateGroups)
STATE_GROUPS = StateGroups(holding=HOLDING, payable=PAYABLE, refundable=REFUNDABLE, with_codes=WITH_CODES,
                           closed=CLOSED, sold=SOLD)


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    channel: str
    user_id: str
    chat_id: str
    sku_id: int
    quantity: int
    language: str = "en"
    ip: str = ""
    #: the unit price the customer confirmed; a different current price refuses the checkout
    seen_unit_price: int | None = None
    #: a keyed payment fingerprint when the channel knows one before payment (order API card fingerprint)
    fingerprint: str = ""
    #: a recharge SKU's target (mobile number, account id), as the customer confirmed it
    target: str | None = None


class RiskHook(Protocol):
    """How the order flow asks the risk module (wired by the composition root; fulfillment never imports risk).

    Each check raises a ShopError to refuse; a returned non-empty tuple holds the order for merchant review.
    """

    async def before_reservation(self, request: CheckoutRequest, sku: Sku, amount: int,
                                 currency: str) -> tuple[str, ...]: ...
    async def on_reserved(self, order: Order, review: tuple[str, ...]) -> None: ...
    async def before_payment(self, order: Order, ip: str, fingerprint: str) -> None: ...
    async def before_delivery(self, order: Order, fingerprint: str,
                              flagged: tuple[str, ...] | None = None) -> tuple[str, ...]: ...


class AllowAll:
    """No risk checks (tests of other concerns, and shops that run without the rule engine)."""

    async def before_reservation(self, request: CheckoutRequest, sku: Sku, amount: int,
                                 currency: str) -> tuple[str, ...]:
        return ()

    async def on_reserved(self, order: Order, review: tuple[str, ...]) -> None:
        return None

    async def before_payment(self, order: Order, ip: str, fingerprint: str) -> None:
        return None

    async def before_delivery(self, order: Order, fingerprint: str,
                              flagged: tuple[str, ...] | None = None) -> tuple[str, ...]:
        return ()


def parse_quantity(raw: object) -> int:
    """Quantities arrive as chat text: plain positive integers only."""
    return parse_whole(raw, 1, MAX_QUANTITY, BadQuantity, "quantity")


class OrderService:
    def __init__(self, store: Store, risk: RiskHook, reservation_ttl: timedelta,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.risk = risk
        self.ttl = reservation_ttl
        self.clock = clock

    async def checkout(self, req: CheckoutRequest) -> Order:
        """Validate and hold stock; the order comes back `reserved` with its amount fixed."""
        quantity = parse_quantity(req.quantity)
        sku = await self.store.sku_by_id(req.sku_id)
        if sku is None or not sku.active:
            raise UnknownSku(f"sku {req.sku_id}")
        if not sku.min_qty <= quantity <= sku.max_qty:
            raise BadQuantity("quantity outside the SKU's range", min=sku.min_qty, max=sku.max_qty)
        target = order_target(sku.target_rule, req.target)  # a recharge SKU's checked, normalised target
        price = next((p for p in await self.store.prices(sku.id) if p.channel == req.channel), None)
        if price is None:
            raise NoPrice(f"sku {sku.id} has no {req.channel} price")
        if req.seen_unit_price is not None and req.seen_unit_price != price.amount:
            raise PriceChanged(f"sku {sku.id} price changed")
        review = await self.risk.before_reservation(req, sku, price.amount * quantity, price.currency)
        now = self.clock()
        new = NewOrder(req.channel, req.user_id, req.chat_id, sku.id, quantity, price.amount * quantity,
                       price.currency, now + self.ttl, req.language, target)
        try:
            order = await self.store.reserve(new, now)  # on-demand/recharge: a backorder
        except store_errors.InsufficientStock:
            available = await self.store.pool_available(sku.pool_id)
            raise OutOfStock("not enough stock", available=available // sku.units) from None
        except store_errors.PurchaseLimitReached:
            raise LimitReached("per-user limit", limit=sku.per_user_limit) from None
        except store_errors.UnknownRecord:
            raise UnknownSku(f"sku {sku.id}") from None
        if review:
            await self.risk.on_reserved(order, review)
        log.info("event=order.reserved order_id=%s sku_id=%s quantity=%s channel=%s",
                 order.id, sku.id, quantity, req.channel)
        return order

    async def move(self, order_id: int, to: OrderState, event: NewOrderEvent) -> bool:
        moved = await self.store.transition(order_id, sources_of(to), to, event, self.clock())
        if moved:
            log.info("event=order.%s order_id=%s cause=%s", to.value, order_id, event.type.value)
        return moved

    async def await_payment(self, order: Order) -> None:
        """The invoice went out: the order now waits for its payment (still holding stock)."""
        await self.move(order.id, S.AWAITING_PAYMENT, events.invoice_issued())

    async def cancel(self, ref: str, user_id: str) -> Order:
        order = await self.store.order_by_ref(ref)
        if order is None or order.user_id != user_id:
            raise UnknownOrder(ref)
        if order.state not in HOLDING:
            raise NotAllowed(f"order {order.id} is {order.state}")
        await self.move(order.id, S.EXPIRED, events.cancelled())
        refreshed = await self.store.order_by_id(order.id)
        assert refreshed is not None
        return refreshed

    async def check_payable(self, ref: str, amount: int, currency: str, ip: str = "", fingerprint: str = "") -> Order:
        """Pre-checkout / pay page: the reservation must be alive, the amount must match, risk must allow."""
        order = await self.store.order_by_ref(ref)
        if order is None:
            raise UnknownOrder(ref)
        if order.state not in HOLDING or order.expires_at <= self.clock():
            raise NotAllowed(f"order {order.id} is {order.state}")
        if (order.amount, order.currency) != (amount, currency):
            raise NotAllowed(f"order {order.id} amount mismatch")
        await self.risk.before_payment(order, ip, fingerprint)
        return order

    async def approve_review(self, order_id: int, actor: str) -> bool:
        """The merchant approved a held order: its held payment is applied (allocation + delivery outbox)."""
        event_id = await self.store.reopen_review(order_id, events.review_approved(actor=actor), self.clock())
        if event_id is None:
            return False
        result = await self.store.apply_payment(event_id, self.clock())
        log.info("event=order.review_approved order_id=%s outcome=%s", order_id, result.outcome.value)
        return True

    async def expire_due(self, limit: int = 500) -> int:
        expired = await self.store.expire_reservations(self.clock(), limit)
        for order_id in expired:
            log.info("event=order.expired order_id=%s", order_id)
        return len(expired)
