"""Reconciliation for WeChat Pay: ask about orders whose notification never came, close the expired ones.

Every trade number (out_trade_no: one per order and trade type) that got a prepay is put on a watch list (one
shared value, changed only under a short lease so processes do not lose each other's updates). The job, run by
one lease holder at a time, queries each watched trade that is older than `min_age`: SUCCESS is applied through
the notification path (idempotent on `transaction_id`; a second payment of an order goes back), an unpaid trade
is closed once its order is past its reservation or paid through its other trade number, a settled trade leaves
the list. WeChat Pay calls never happen while the list's lease is held.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from fulfillment.orders import PAYABLE
from fulfillment.wechatpay import WeChatPayClient, WeChatPayError, order_ref_of
from fulfillment.wechatpay_bill import TradeBillCheck
from fulfillment.wechatpay_notify import NotifyRejected, WeChatPayNotifications
from fulfillment.wechatpay_watch import WATCH_KEY, WATCH_LOCK, WatchList
from storage.protocol import Store
from storage.records import Order, OrderState

log = logging.getLogger("kamibot.wechatpay")
__all__ = ["WATCH_KEY", "WATCH_LOCK", "WatchList", "WeChatPayReconciler"]
JOB_LEASE = "wechatpay.reconcile"
UNPAID_TRADE_STATES = ("NOTPAY", "USERPAYING")


class WeChatPayReconciler:
    def __init__(self, store: Store, client: WeChatPayClient, notifications: WeChatPayNotifications,
                 min_age: timedelta = timedelta(minutes=1), batch: int = 50,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.client = client
        self.notifications = notifications
        self.watch = WatchList(store, clock)
        #: yesterday's trade bill, once a day: payments the notifications and the watch list both missed
        self.bills = TradeBillCheck(store, client, notifications, clock)
        self.min_age = min_age
        self.batch = batch
        self.clock = clock
        self.holder = secrets.token_hex(8)
        self._offset = 0

    async def run_once(self) -> int:
        """One pass over the watch list (and the day's trade bill, once) by the lease holder; returns how many
        trades were settled or found in the bill."""
        now = self.clock()
        if not await self.store.try_lease(JOB_LEASE, self.holder, now + timedelta(minutes=5), now):
            return 0
        try:
            done: set[str] = set()
            due = [ref for ref, at in (await self.watch.refs()).items()
                   if now.timestamp() - float(at) >= self.min_age.total_seconds()]
            # rotate through a long list so unpaid live orders at its head do not starve the rest
            start = self._offset % len(due) if due else 0
            chunk = (due[start:] + due[:start])[: self.batch]
            self._offset = start + len(chunk)
            for ref in chunk:
                if await self._settle(ref):
                    done.add(ref)
            await self.watch.remove(done)
            return len(done) + await self.bills.run_once()
        finally:
            await self.store.release_lease(JOB_LEASE, self.holder)

    async def _settle(self, trade_no: str) -> bool:
        """True when the trade needs no more attention from this job."""
        order = await self.store.order_by_ref(order_ref_of(trade_no))
        if order is None:
            return True
        settled = order.state not in PAYABLE  # paid (perhaps through its other trade number) or closed
        try:
            tx = await self.client.query(trade_no)
        except WeChatPayError as exc:
            if exc.code == "ORDER_NOT_EXIST":
                return settled or self._expired(order)
            log.warning("event=wechatpay.query_failed order_id=%s code=%s", order.id, exc.code)
            return False
        state = str(tx.get("trade_state", ""))
        if state == "SUCCESS":
            return await self._apply(order, tx)
        if state in UNPAID_TRADE_STATES:
            return await self._close(order, trade_no) if settled or self._expired(order) else False
        log.info("event=wechatpay.reconciled order_id=%s trade_state=%r", order.id, state[:20])
        return True  # CLOSED, REVOKED, PAYERROR, REFUND: nothing more to ask

    def _expired(self, order: Order) -> bool:
        return order.state == OrderState.EXPIRED or order.expires_at <= self.clock()

    async def _apply(self, order: Order, tx: dict[str, object]) -> bool:
        try:
            outcome = await self.notifications.apply_transaction(tx)
        except NotifyRejected as exc:
            log.warning("event=wechatpay.reconcile_rejected order_id=%s reason=%r", order.id, exc.message)
            return True
        except (WeChatPayError, httpx.HTTPError) as exc:  # e.g. the refund of a second payment: next pass
            log.warning("event=wechatpay.reconcile_failed order_id=%s error=%s", order.id, type(exc).__name__)
            return False
        log.info("event=wechatpay.reconciled order_id=%s outcome=%s", order.id, outcome)
        return True

    async def _close(self, order: Order, trade_no: str) -> bool:
        try:
            await self.client.close(trade_no)
        except WeChatPayError as exc:
            if exc.code == "ORDERPAID":  # paid in the last moment: the next pass applies it
                return False
            log.warning("event=wechatpay.close_failed order_id=%s code=%s", order.id, exc.code)
            return False
        log.info("event=wechatpay.closed order_id=%s", order.id)
        return True
