"""What follows a recorded WeChat Pay transaction: a second payment of an order goes straight back, a held payment
is announced, and once an order is paid its other trade numbers are closed.

An order has one out_trade_no per trade type (`{ref}-J`, `{ref}-N`, fulfillment/wechatpay.py), so a buyer who
opened the pay page in a browser (Native QR) and inside WeChat (JSAPI) can pay twice. The second transaction of an
order that already has its payment is refunded at once through the refund API (`out_refund_no` = "D" + its
out_trade_no, so a retry finds the same refund), recorded with two ledger lines, and the buyer and the merchants
are told — once, however often WeChat Pay repeats the notification. The order's own payment is the one
`store.order_payment` names; this module never changes the order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from fulfillment.orders import PAYABLE
from fulfillment.wechatpay import WeChatPayClient, WeChatPayError, extra_refund_no, sibling_trade_nos
from fulfillment.wechatpay_watch import WatchList
from storage.protocol import Store
from storage.protocols.payments_extra import REFUNDED_DETAIL
from storage.records import Order, PaymentApplied, PaymentEventIn, PaymentOutcome

log = logging.getLogger("kamibot.wechatpay")
#: refund states after which the money is on its way back (PROCESSING ends in SUCCESS or is retried by WeChat Pay)
REFUND_ACCEPTED = ("SUCCESS", "PROCESSING")


class PaymentNotices(Protocol):
    """Who hears about held and returned payments (bot/ wires the merchants' notices and the buyer's chat)."""

    async def held(self, order: Order, paid: int, currency: str) -> None:
        """A payment is held for review (its amount differs from the order's, or a risk rule)."""
        ...

    async def extra_refunded(self, order: Order, amount: int, currency: str) -> None:
        """A second payment of an already paid order went straight back."""
        ...


class NoNotices:
    async def held(self, order: Order, paid: int, currency: str) -> None:
        return None

    async def extra_refunded(self, order: Order, amount: int, currency: str) -> None:
        return None


class AfterPayment:
    def __init__(self, store: Store, client: WeChatPayClient, provider: str, notices: PaymentNotices | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.client = client
        self.provider = provider
        self.notices: PaymentNotices = notices or NoNotices()
        self.watch = WatchList(store, clock)
        self.clock = clock

    async def settle(self, order: Order, trade_no: str, event: PaymentEventIn, result: PaymentApplied) -> str:
        """After the inbox recorded `event` (a SUCCESS transaction of `trade_no`): returns the outcome's name."""
        if result.outcome in (PaymentOutcome.REVIEW, PaymentOutcome.ALREADY_APPLIED, PaymentOutcome.DUPLICATE):
            fresh = await self.store.order_by_id(order.id) or order
            own = await self.own_payment(order.id)
            if fresh.state not in PAYABLE and own is not None and own != (event.provider,
                                                                               event.provider_txn_id):
                return await self.refund_extra(fresh, trade_no, event)
            if result.outcome == PaymentOutcome.REVIEW:  # first time only: a repeat is ALREADY_APPLIED
                log.warning("event=wechatpay.held order_id=%s", order.id)
                await self.notices.held(fresh, event.amount, event.currency)
        if result.outcome in (PaymentOutcome.ALLOCATED, PaymentOutcome.FAILED):
            await self.close_siblings(order, trade_no)
        return result.outcome.value

    async def own_payment(self, order_id: int) -> tuple[str, str] | None:
        """(provider, txn id) of the payment the order lives by (store.order_payment: the one that paid it before
        any held one, whatever the ids racing payments took on PostgreSQL)."""
        own = await self.store.order_payment(order_id)
        return (own[0], own[1]) if own is not None else None

    async def refund_extra(self, order: Order, trade_no: str, event: PaymentEventIn) -> str:
        """The money of a second payment back to its payer, once; raises (the notification is retried) when
        WeChat Pay does not accept the refund."""
        txn = event.provider_txn_id
        record = await self.store.payment_record(self.provider, txn)
        if record is not None and record.detail.startswith(REFUNDED_DETAIL):
            return "extra_refunded"
        result = await self.client.refund_transaction(extra_refund_no(txn), txn, event.amount, event.currency,
                                                      reason="duplicate payment " + order.ref)
        status = str(result.get("status", ""))
        if status not in REFUND_ACCEPTED:
            raise WeChatPayError(200, "REFUND_" + (status or "UNKNOWN"), "refund of a second payment not accepted")
        refund_id = str(result.get("refund_id", extra_refund_no(txn)))
        if await self.store.refund_extra_payment(self.provider, txn, refund_id, self.clock()):
            log.warning("event=wechatpay.extra_payment_refunded order_id=%s status=%s", order.id, status)
            await self.notices.extra_refunded(order, event.amount, event.currency)
        return "extra_refunded"

    async def close_siblings(self, order: Order, trade_no: str) -> None:
        """The order is paid through `trade_no`: close its other prepaid trade numbers so they cannot be paid too.
        Best effort: what stays open is left on the watch list, where the reconciliation job settles it."""
        watched = await self.watch.refs()
        closed: set[str] = set()
        for other in sibling_trade_nos(trade_no):
            if other not in watched:
                continue
            try:
                await self.client.close(other)
            except WeChatPayError as exc:
                if exc.code != "ORDER_NOT_EXIST":  # ORDERPAID: paid twice, its own notification refunds it
                    log.warning("event=wechatpay.close_failed order_id=%s code=%s", order.id, exc.code)
                    continue
            except Exception as exc:  # noqa: BLE001 - the payment is recorded; the job retries the close
                log.warning("event=wechatpay.close_failed order_id=%s error=%s", order.id, type(exc).__name__)
                continue
            log.info("event=wechatpay.closed order_id=%s reason=paid_otherwise", order.id)
            closed.add(other)
        await self.watch.remove(closed)
