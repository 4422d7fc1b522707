"""Finding orders for the people who ask about them: a merchant's /order and /orders, a buyer's My orders, the
review queue. (An order by the reference a merchant types: fulfillment.aftersales.AfterSalesService.find.)"""

from __future__ import annotations

from dataclasses import dataclass

from storage.events import EventType, OrderEvent
from storage.protocol import Store
from storage.protocols.payments_extra import PaymentRecord
from storage.records import Order, OrderState, Sku


@dataclass(frozen=True, slots=True)
class OrderWithSku:
    order: Order
    sku: Sku | None  # None: the SKU was removed since


class OrderLookup:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def by_ref(self, ref: str) -> Order | None:
        return await self.store.order_by_ref(ref)

    async def by_id(self, order_id: int) -> Order | None:
        return await self.store.order_by_id(order_id)

    async def buyers_order(self, ref: str, channel: str, user_id: str) -> Order | None:
        """The order only for its buyer, in the channel it was bought in (codes are shown to no one else)."""
        order = await self.store.order_by_ref(ref)
        if order is None or order.user_id != user_id or order.channel != channel:
            return None
        return order

    async def payment(self, order_id: int) -> tuple[str, str, int] | None:
        """(provider, provider txn id, amount) of the payment applied to the order, if any."""
        return await self.store.order_payment(order_id)

    async def refund_queued(self, order_id: int) -> bool:
        """The shop is refunding (or refunded) the order: a refund Telegram reports for it is the shop's own."""
        return await self.store.refund_queued(order_id)

    async def payment_records(self, order_id: int) -> list[PaymentRecord]:
        """Every payment recorded for the order (the held one too, with the amount actually paid)."""
        return await self.store.payment_records(order_id)

    async def events(self, order_id: int) -> list[OrderEvent]:
        return await self.store.order_events(order_id)

    async def for_user(self, channel: str, user_id: str, limit: int, offset: int = 0) -> list[OrderWithSku]:
        """A customer's orders, newest first, each with its SKU."""
        orders = await self.store.orders_for_user(channel, user_id, limit, offset)
        return [OrderWithSku(o, await self.store.sku_by_id(o.sku_id)) for o in orders]

    async def page(self, channel: str, user_id: str, size: int, number: int) -> tuple[list[OrderWithSku], bool]:
        """Page `number` (0: newest) of a customer's orders with their SKUs, and whether an older page exists."""
        orders = await self.store.orders_for_user(channel, user_id, size + 1, number * size)
        return [OrderWithSku(o, await self.store.sku_by_id(o.sku_id)) for o in orders[:size]], len(orders) > size

    async def held_for_review(self, limit: int) -> list[Order]:
        """Orders held for the merchant's decision, oldest first."""
        return await self.store.orders_in_state(OrderState.REVIEW, limit)

    async def review_reasons(self, order_id: int) -> str:
        """Why an order is held: its latest move to review (risk rule ids, or a payment mismatch), by event type."""
        events = await self.store.order_events(order_id)
        held = next((e for e in reversed(events) if e.to_state == OrderState.REVIEW and not e.is_note), None)
        if held is None:
            return ""
        if held.type is EventType.RISK_REVIEW:
            return ",".join(held.params["reasons"])
        return held.cause
