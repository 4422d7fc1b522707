"""Merchant after-sale verbs: refund an order through its payment provider, resend its codes.

Both go through the outbox (refund rows are unique per order), so a double press refunds once and the
provider is never called inside a database transaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from fulfillment.errors import NotAllowed, UnknownOrder
from storage.protocol import Store
from storage.records import Order, OrderState

log = logging.getLogger("kamibot.aftersale")
REFUNDABLE = (OrderState.PAID, OrderState.DELIVERING, OrderState.DELIVERED, OrderState.REVIEW)


class AfterSale:
    def __init__(self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock

    async def find(self, ref: str) -> Order:
        ref = ref.strip()
        order = await self.store.order_by_ref(ref.upper())
        if order is None and ref.isdigit():
            order = await self.store.order_by_id(int(ref))
        if order is None:
            raise UnknownOrder(ref)
        return order

    async def request_refund(self, ref: str, merchant: str) -> Order:
        order = await self.find(ref)
        payment = await self.store.order_payment(order.id)
        if order.state not in REFUNDABLE or payment is None:
            raise NotAllowed(f"order {order.id} is {order.state}")
        provider, txn, amount = payment
        # one refund row per order: a second press finds the first and changes nothing
        await self.store.enqueue_outbox(order.id, "refund", json.dumps(
            {"provider": provider, "txn": txn, "amount": amount, "cause": f"refund by merchant {merchant}"}),
            self.clock())
        log.info("event=order.refund_requested order_id=%s merchant=%s", order.id, merchant)
        return order

    async def resend(self, ref: str, merchant: str) -> Order:
        order = await self.find(ref)
        if order.state not in (OrderState.DELIVERING, OrderState.DELIVERED):
            raise NotAllowed(f"order {order.id} is {order.state}")
        await self.store.enqueue_outbox(order.id, "resend", "", self.clock())
        log.info("event=order.resend order_id=%s merchant=%s", order.id, merchant)
        return order
