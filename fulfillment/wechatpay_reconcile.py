"""Reconciliation for WeChat Pay: ask about orders whose notification never came, close the expired ones.

Every order that got a prepay is put on a watch list (one shared value, changed only under a short lease so
processes do not lose each other's updates). The job, run by one lease holder at a time, queries each watched
order that is older than `min_age`: SUCCESS is applied through the notification path (idempotent on
`transaction_id`), an unpaid order past its reservation is closed, a settled order leaves the list.
WeChat Pay calls never happen while the list's lease is held.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fulfillment.orders import PAYABLE
from fulfillment.wechatpay import WeChatPayClient, WeChatPayError
from fulfillment.wechatpay_notify import NotifyRejected, WeChatPayNotifications
from storage.protocol import Store
from storage.records import Order, OrderState

log = logging.getLogger("kamibot.wechatpay")
WATCH_KEY = "wechatpay.watch"
WATCH_LOCK = "wechatpay.watch.lock"
JOB_LEASE = "wechatpay.reconcile"
UNPAID_TRADE_STATES = ("NOTPAY", "USERPAYING")


class WatchList:
    """Order refs with a live prepay, in one kv value; updates are read-modify-write under a lease."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock

    async def refs(self) -> dict[str, float]:
        raw = await self.store.kv_get(WATCH_KEY, self.clock())
        data = json.loads(raw) if raw else {}
        return data if isinstance(data, dict) else {}

    async def _update(self, change: Callable[[dict[str, float]], None]) -> None:
        holder = secrets.token_hex(8)
        for _ in range(200):
            now = self.clock()
            if await self.store.try_lease(WATCH_LOCK, holder, now + timedelta(seconds=5), now):
                try:
                    refs = await self.refs()
                    change(refs)
                    await self.store.kv_put(WATCH_KEY, json.dumps(refs, separators=(",", ":")), None)
                finally:
                    await self.store.release_lease(WATCH_LOCK, holder)
                return
            await asyncio.sleep(0.01)
        raise TimeoutError("wechatpay watch list is locked")

    async def add(self, ref: str) -> None:
        at = self.clock().timestamp()

        def change(refs: dict[str, float]) -> None:
            refs.setdefault(ref, at)

        await self._update(change)

    async def remove(self, done: set[str]) -> None:
        def change(refs: dict[str, float]) -> None:
            for ref in done:
                refs.pop(ref, None)

        if done:
            await self._update(change)


class WeChatPayReconciler:
    def __init__(self, store: Store, client: WeChatPayClient, notifications: WeChatPayNotifications,
                 min_age: timedelta = timedelta(minutes=1), batch: int = 50,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.client = client
        self.notifications = notifications
        self.watch = WatchList(store, clock)
        self.min_age = min_age
        self.batch = batch
        self.clock = clock
        self.holder = secrets.token_hex(8)
        self._offset = 0

    async def run_once(self) -> int:
        """One pass over the watch list by the lease holder; returns how many orders were settled."""
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
            return len(done)
        finally:
            await self.store.release_lease(JOB_LEASE, self.holder)

    async def _settle(self, ref: str) -> bool:
        """True when the order needs no more attention from this job."""
        order = await self.store.order_by_ref(ref)
        if order is None or order.state not in PAYABLE:
            return True
        try:
            tx = await self.client.query(ref)
        except WeChatPayError as exc:
            if exc.code == "ORDER_NOT_EXIST":
                return self._expired(order)
            log.warning("event=wechatpay.query_failed order_id=%s code=%s", order.id, exc.code)
            return False
        state = str(tx.get("trade_state", ""))
        if state == "SUCCESS":
            return await self._apply(order, tx)
        if state in UNPAID_TRADE_STATES:
            return await self._close_if_expired(order) if self._expired(order) else False
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
        log.info("event=wechatpay.reconciled order_id=%s outcome=%s", order.id, outcome)
        return True

    async def _close_if_expired(self, order: Order) -> bool:
        try:
            await self.client.close(order.ref)
        except WeChatPayError as exc:
            if exc.code == "ORDERPAID":  # paid in the last moment: the next pass applies it
                return False
            log.warning("event=wechatpay.close_failed order_id=%s code=%s", order.id, exc.code)
            return False
        log.info("event=wechatpay.closed order_id=%s", order.id)
        return True
