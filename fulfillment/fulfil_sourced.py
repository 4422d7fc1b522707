"""Paid orders that wait on a supplier: on-demand codes bought after payment, and direct recharges.

The payment's transaction moved such an order to `delivering` and wrote its `procure` outbox row (storage
`_apply` / kb_apply_event), so a crash anywhere resumes here. Processing the row (`procure`):

- the first attempt tells the customer (`supply.procuring`, or `supply.recharging` for a recharge);
- an order with a supplier order that is planned, sent, unknown or succeeded has nothing to buy: the resolver job
  or the supplier's callback settles that one, and the settlement allocates the codes to the order (or, for a
  recharge, queues its delivery notice) in the same transaction (storage `settle_procurement`);
- otherwise the best offer not yet definitively failed *for this order* is bought with the order's id
  (fulfillment/sourcing.py `procure`: one live supplier order per order, a unique index; failover only after a
  definitive failure). A definitive failure settled later (query, callback) queues the row again: the next source;
- no source left: `fail_backorder` fails the order and queues its refund through its payment provider, in one
  transaction that refuses while any supplier order of it is open or unknown: never a refund while the customer
  may have been credited. No offer while a source's breaker is open, its catalogue read failed (a timeout is no
  answer, not "out of stock") or that gave no purchase slot (suppliers/breaker.py NoPurchaseSlot) is retried
  `retries` times first.

`ticket_unknown_recharges` (job): a recharge whose outcome is still unknown after `unknown_ticket_after` gets one
ticket for the merchants with the supplier's reference (a claim-once key per procurement); it is still queried.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from fulfillment.sourcing import SourcingService
from fulfillment.suppliers.breaker import NoPurchaseSlot
from storage.protocol import Store
from storage.records import NewTicket, Order, OrderState, OutboxRow
from storage.records_supply import ProcurementState

log = logging.getLogger("kamibot.fulfil_sourced")
_FAR = timedelta(days=3650)
TICKET_SCOPE = "supply.recharge_ticket"


class NoSourceYet(Exception):
    """No offer can be bought now and a source's breaker is open: the outbox row is retried."""


class SourcedFulfilment:
    def __init__(self, store: Store, sourcing: SourcingService, retries: int = 3,
                 unknown_ticket_after: timedelta = timedelta(minutes=30),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.sourcing = sourcing
        self.retries = retries
        self.unknown_ticket_after = unknown_ticket_after
        self.clock = clock
        #: tells the merchants (message id, params); set by bot/supply.py
        self.alert: Callable[[str, dict[str, object]], Awaitable[None]] | None = None

    async def procure(self, row: OutboxRow) -> None:
        """Process one `procure` outbox row (see the module docstring); raises NoSourceYet to be retried."""
        order = await self.store.order_by_id(row.order_id)
        if order is None or order.state is not OrderState.DELIVERING:
            return  # served, failed or refunded meanwhile
        done = await self.store.order_procurements(order.id)
        if any(p.state is not ProcurementState.FAILED for p in done):
            return  # one is live (or succeeded): its settlement serves the order
        sku = await self.store.sku_by_id(order.sku_id)
        sourcing = await self.store.sku_sourcing(order.sku_id)
        if sku is None or sourcing is None or not sourcing.sources:
            await self._fail(order, "no source configured")
            return
        # a purchase refused by our own breaker (no slot: nothing was sent) does not rule its supplier out
        failed = frozenset(p.supplier for p in done if p.detail != NoPurchaseSlot.kind)
        p = await self.sourcing.procure(sourcing, order.quantity * sku.units, order.pool_id, order_id=order.id,
                                        exclude=failed)
        if p is not None and p.state is not ProcurementState.FAILED:
            log.info("event=sourced.procured order_id=%s ref=%s state=%s", order.id, p.our_ref, p.state.value)
            return
        # nothing bought now. A source whose breaker is open, whose catalogue read just failed or that gave no
        # purchase slot may come back: retried; one that answered without an offer or refused cannot serve it
        refused = failed | frozenset(x.supplier for x in await self.store.order_procurements(order.id)
                                     if x.detail != NoPurchaseSlot.kind)
        unhealthy = {s.supplier for s in sourcing.sources
                     if not self.sourcing.registry.healthy(s.supplier) or s.supplier in self.sourcing.unanswered}
        if unhealthy - refused and row.attempts <= self.retries:
            raise NoSourceYet(f"order {order.id}: no offer now")
        await self._fail(order, p.detail if p is not None else "no source could serve it")

    async def _fail(self, order: Order, cause: str) -> None:
        if await self.store.fail_backorder(order.id, cause, self.clock()):
            log.warning("event=sourced.failed order_id=%s cause=%s", order.id, cause[:80])

    async def ticket_unknown_recharges(self) -> int:
        """Job tick: one merchant ticket per recharge unknown for longer than `unknown_ticket_after`."""
        now = self.clock()
        opened = 0
        for p in await self.store.procurements([ProcurementState.UNKNOWN, ProcurementState.SENT], 500):
            if p.order_id is None or now - p.created_at < self.unknown_ticket_after:
                continue
            order = await self.store.order_by_id(p.order_id)
            if order is None or order.target is None:
                continue
            if not await self.store.claim_once(TICKET_SCOPE, p.our_ref, now + _FAR, now):
                continue
            text = (f"recharge {order.ref}: outcome unknown at supplier {p.supplier} since"
                    f" {p.created_at:%Y-%m-%d %H:%M} UTC; our ref {p.our_ref}, supplier order"
                    f" {p.supplier_order_id or '-'}. Not refunded: check the supplier's records.")
            ticket = await self.store.open_ticket(NewTicket(order.channel, order.user_id, order.chat_id, "human",
                                                            text, order.id, language=order.language), now)
            opened += 1
            log.warning("event=sourced.recharge_ticket order_id=%s ticket_id=%s ref=%s", order.id, ticket.id,
                        p.our_ref)
            if self.alert is not None:
                await self.alert("supply.recharge_ticket", {"ticket": ticket.id, "ref": order.ref,
                                                            "supplier": p.supplier, "our_ref": p.our_ref,
                                                            "supplier_order": p.supplier_order_id or "-"})
        return opened
