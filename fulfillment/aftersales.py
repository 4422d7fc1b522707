"""After-sales verbs: refunds and resends asked by merchants, a customer's resend and bad-code report (with the
merchant's auto-replace policy), a merchant's code replacement, tickets and the ticket SLA.

Each verb that writes is one store transaction and answers with a result or a shop error (fulfillment.errors);
the conversations only say what happened. Chat messages (ticket notices, reminders) are sent by the caller:
this module does not know the chat channels.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fulfillment.errors import (
    AlreadyReplaced,
    BadInput,
    NoCodes,
    NoReplacementStock,
    NotAllowed,
    ReplaceWhichItem,
    UnknownOrder,
    UnknownSku,
)
from fulfillment.orders import REFUNDABLE, WITH_CODES
from storage.errors import InsufficientStock
from storage.protocol import Store
from storage.records import (
    AutoReplaceRequest,
    BadCodeReported,
    NewTicket,
    OnceKey,
    Order,
    OrderItem,
    OrderState,
    Product,
    ReportReplaced,
    Sku,
    Ticket,
)

log = logging.getLogger("kamibot.aftersales")
S = OrderState
RESEND_SCOPE = "after.resend"
RESEND_PAUSE = timedelta(minutes=5)  # one customer-triggered resend per order in this time
POLICY_KEY = "aftersales.autoreplace"
AUTOREPLACE_SCOPE = "aftersales.autoreplace"
ONCE_FOR = timedelta(days=3650)  # "once per order": the claim outlives any order's after-sales life
SLA_SCOPE = "aftersales.sla"
SLA_SCAN = 500  # live tickets looked at per SLA tick, oldest first
REPORT_SCAN = 20  # live tickets of an order looked at for its bad-code reports


@dataclass(frozen=True, slots=True)
class Overdue:
    """A ticket whose reminder this process claimed: the merchants are to be told it has waited this long."""

    ticket: Ticket
    waited: timedelta
    period: int


class AfterSalesService:
    def __init__(self, db: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.clock = clock

    # -- orders as after-sales sees them -------------------------------------------------
    async def find(self, ref: str) -> Order:
        """An order by its ref or its id (merchants); UnknownOrder."""
        ref = ref.strip()
        order = await self.db.order_by_ref(ref.upper())
        if order is None and ref.isdigit():
            order = await self.db.order_by_id(int(ref))
        if order is None:
            raise UnknownOrder(ref)
        return order

    async def order_by_id(self, order_id: int) -> Order | None:
        return await self.db.order_by_id(order_id)

    async def customer_order(self, channel: str, user_id: str, ref: str) -> Order | None:
        """The customer's own order with this ref; another customer's order is None, like an unknown one."""
        order = await self.db.order_by_ref(ref.upper())
        if order is None or order.user_id != user_id or order.channel != channel:
            return None
        return order

    async def recent_orders(self, channel: str, user_id: str, limit: int) -> list[Order]:
        return await self.db.orders_for_user(channel, user_id, limit, 0)

    async def order_items(self, order_id: int) -> list[OrderItem]:
        return await self.db.order_items(order_id)

    async def sku(self, sku_id: int) -> Sku | None:
        return await self.db.sku_by_id(sku_id)

    async def product(self, product_id: int) -> Product | None:
        return await self.db.product_by_id(product_id)

    async def delivered_at(self, order: Order) -> datetime | None:
        """When the order was first delivered (its first transition to delivered)."""
        for event in await self.db.order_events(order.id):
            if event.to_state == S.DELIVERED.value:
                return event.at
        return None

    async def audit(self, channel: str, actor: str, action: str, detail: str) -> None:
        await self.db.audit(channel, actor, action, detail, self.clock())

    # -- merchant verbs ------------------------------------------------------------------
    async def request_refund(self, ref: str, merchant: str) -> Order:
        order = await self.find(ref)
        payment = await self.db.order_payment(order.id)
        if order.state not in REFUNDABLE or payment is None:
            raise NotAllowed(f"order {order.id} is {order.state}")
        provider, txn, paid = payment
        # what partial refunds (made in the payment provider's platform) gave back already is not asked for again
        amount = paid - await self.db.refunded_parts(order.id)
        # one refund row per order: a second press finds the first and changes nothing
        await self.db.enqueue_outbox(order.id, "refund", json.dumps(
            {"provider": provider, "txn": txn, "amount": amount, "cause": f"refund by merchant {merchant}"}),
            self.clock())
        log.info("event=order.refund_requested order_id=%s merchant=%s", order.id, merchant)
        return order

    async def resend(self, ref: str, merchant: str) -> Order:
        order = await self.find(ref)
        if order.state not in WITH_CODES:
            raise NotAllowed(f"order {order.id} is {order.state}")
        await self.db.enqueue_outbox(order.id, "resend", "", self.clock())
        log.info("event=order.resend order_id=%s merchant=%s", order.id, merchant)
        return order

    async def replace_code(self, ref: str, item_no: int | None, merchant: str) -> tuple[Order, ReportReplaced]:
        """A new code from stock for the code of the order's bad-code report (or of item `item_no`, or of its
        only item), the bad one quarantined and the reports about it closed, in one transaction; the customer
        gets it through the outbox (a resend). UnknownOrder, NotAllowed, ReplaceWhichItem, NoReplacementStock,
        AlreadyReplaced."""
        order = await self.find(ref)
        if order.state not in WITH_CODES:
            raise NotAllowed(f"order {order.id} is {order.state}")
        try:
            done = await self.db.replace_reported_code(order.id, item_no, REPORT_SCAN, self.clock())
        except InsufficientStock as exc:
            raise NoReplacementStock(f"order {order.id}", ref=order.ref) from exc
        if not done.code_chosen:
            raise ReplaceWhichItem(f"order {order.id}", ref=order.ref,
                                   items=", ".join(str(n) for n in done.item_nos) or "-")
        if done.replaced is None:
            raise AlreadyReplaced(f"order {order.id}", ref=order.ref)
        log.info("event=ticket.code_replaced order_id=%s old_code_id=%s new_code_id=%s merchant=%s", order.id,
                 done.replaced.old_code_id, done.replaced.new_code_id, merchant)
        return order, done

    # -- customer verbs ------------------------------------------------------------------
    async def customer_resend(self, order: Order) -> bool:
        """Queue the delivered order's codes again; False when that was done within RESEND_PAUSE."""
        now = self.clock()
        queued = await self.db.resend_once(order.id, OnceKey(RESEND_SCOPE, order.ref, now + RESEND_PAUSE), now)
        if queued is None:
            return False
        log.info("event=aftersales.resend order_id=%s channel=%s user=%s", order.id, order.channel, order.user_id)
        return True

    async def report_bad_code(self, report: NewTicket, ref: str, item_no: int, note: str,
                              now: datetime | None = None) -> BadCodeReported:
        """The customer's report that a code of their order `ref` (item `item_no`, 0: the first) is bad: replaced
        at once if the auto-replace policy covers it (`note`, with {old} and {new}, answers the ticket), else a
        ticket for the merchant; one transaction. UnknownOrder, NoCodes, BadInput."""
        now = now or self.clock()
        order = await self.customer_order(report.channel, report.user_id, ref)
        if order is None:
            raise UnknownOrder(ref)
        if order.state not in WITH_CODES:
            raise NoCodes(f"order {order.id} is {order.state}", ref=order.ref)
        items = {item.item_no: item for item in await self.db.order_items(order.id)}
        item = items.get(item_no or 1)
        if item is None:
            raise BadInput(f"order {order.id} has no item {item_no}")
        ticket = NewTicket(report.channel, report.user_id, report.chat_id, "bad_code", "", order.id, item.code.id,
                           report.language)
        auto = await self.auto_replace_request(order, note, now)
        done = await self.db.report_bad_code(ticket, auto, now)
        if done.replaced is not None:
            log.info("event=autoreplace.replaced order_id=%s ticket=%s old_code_id=%s new_code_id=%s", order.id,
                     done.ticket.id, done.replaced.old_code_id, done.replaced.new_code_id)
        elif done.outcome != "not_asked":
            log.info("event=autoreplace.%s order_id=%s", done.outcome, order.id)
        return done

    # -- the auto-replace policy -----------------------------------------------------------
    async def auto_replace_policy(self) -> dict[str, int]:
        """{sku slug: window in hours} of the SKUs marked for auto-replacement."""
        raw = await self.db.kv_get(POLICY_KEY, self.clock())
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
            log.warning("event=autoreplace.policy_unreadable")
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): int(v) for k, v in data.items() if isinstance(v, int) and v > 0}

    async def set_auto_replace(self, slug: str, hours: int | None, channel: str, actor: str) -> Sku:
        """Mark a SKU (`hours`: the window after delivery) or unmark it (None); audited. UnknownSku."""
        sku = await self.db.sku_by_slug(slug)
        if sku is None:
            raise UnknownSku(slug, sku=slug)
        policy = await self.auto_replace_policy()
        if hours is None:
            policy.pop(sku.slug, None)
            detail = f"{sku.slug} off"
        else:
            policy[sku.slug] = hours
            detail = f"{sku.slug} on {hours}"
        await self.db.save_policy(POLICY_KEY, json.dumps(dict(sorted(policy.items()))),
                                  (channel, actor, "autoreplace", detail), self.clock())
        return sku

    async def auto_replace_request(self, order: Order, note: str, now: datetime) -> AutoReplaceRequest | None:
        """The replacement the policy allows for a report of this order now; None: the merchant decides."""
        sku = await self.db.sku_by_id(order.sku_id)
        hours = (await self.auto_replace_policy()).get(sku.slug) if sku is not None else None
        if not hours:
            return None
        delivered = await self.delivered_at(order)
        if delivered is None or now - delivered > timedelta(hours=hours):
            log.info("event=autoreplace.outside_window order_id=%s hours=%s", order.id, hours)
            return None
        return AutoReplaceRequest(OnceKey(AUTOREPLACE_SCOPE, str(order.id), now + ONCE_FOR), note)

    # -- tickets -----------------------------------------------------------------------------
    async def open_ticket(self, ticket: NewTicket) -> Ticket:
        """Open a ticket (or update and reopen the customer's live one about the same thing); the caller masks
        codes in the text before."""
        return await self.db.open_ticket(ticket, self.clock())

    async def ticket(self, ticket_id: int) -> Ticket | None:
        return await self.db.ticket_by_id(ticket_id)

    async def live_tickets(self, limit: int, order_id: int | None = None) -> list[Ticket]:
        return await self.db.live_tickets(limit, order_id)

    async def live_ticket(self, channel: str, user_id: str, kind: str) -> Ticket | None:
        return await self.db.live_ticket(channel, user_id, kind)

    async def answer_ticket(self, ticket_id: int, text: str) -> Ticket | None:
        return await self.db.answer_ticket(ticket_id, text, self.clock())

    async def close_ticket(self, ticket_id: int) -> bool:
        return await self.db.close_ticket(ticket_id, self.clock())

    async def remind_overdue(self, sla: timedelta, now: datetime | None = None) -> list[Overdue]:
        """The open (unanswered) tickets older than `sla` not yet reminded in their current SLA period, claimed
        for this caller in one transaction: "once" holds across processes. The key is (ticket, its last update,
        period number), so a ticket the customer writes to again starts a new count."""
        now = now or self.clock()
        due: dict[str, Overdue] = {}
        for ticket in await self.db.live_tickets(SLA_SCAN):
            if ticket.state != "open":  # answered: the merchant has spoken; the customer's next message reopens it
                continue
            waited = now - ticket.updated_at
            if waited < sla:
                continue
            period = int(waited / sla)
            due[f"{ticket.id}:{int(ticket.updated_at.timestamp())}:{period}"] = Overdue(ticket, waited, period)
        if not due:
            return []
        claimed = await self.db.claim_reminders([OnceKey(SLA_SCOPE, key, now + 2 * sla) for key in due], now)
        return [due[c.key] for c in claimed]
