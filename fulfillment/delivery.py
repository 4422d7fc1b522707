"""The delivery worker: sends outbox rows through their channel, marks them done, retries with backoff.

An outbox row is written in the transaction that allocates the codes, so a
crash anywhere resumes here. The row id is the idempotency key: a crash after
the send and before `complete_outbox` resends the *same* codes (at-least-once
message, exactly-once allocation); never another code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from fulfillment.checkpoints import DELIVERY_CLAIMED, DELIVERY_SENT, Checkpoints, NoCheckpoints
from fulfillment.payments import PaymentProvider
from fulfillment.vault import Vault
from storage import events
from storage.protocol import Store
from storage.records import Order, OutboxRow, Product, Sku

log = logging.getLogger("kamibot.delivery")
MAX_BACKOFF = timedelta(minutes=10)
PROCURE = "procure"  # the row of a paid order waiting on a supplier (written by the payment's transaction)
NOTICE = "notice"  # a Delivery that only tells the customer something (its `notice`), no codes


def retry_delay(attempts: int, jitter: float) -> timedelta:
    """Exponential backoff with "equal jitter": half the step fixed, half random (`jitter` in [0, 1)).

    Without jitter every row that failed in one outage (a channel down for a minute) retries in the
    same second and hits the recovering channel together again.
    """
    step = min(timedelta(seconds=2 ** min(attempts, 10)), MAX_BACKOFF)
    return step / 2 + step / 2 * jitter


@dataclass(frozen=True)
class Delivery:
    """What a channel must tell a customer; `codes` are clear text, for this buyer's chat only."""

    kind: str  # deliver | resend | refunded
    order: Order
    sku: Sku
    product: Product
    codes: list[str] = field(default_factory=list)
    outbox_id: int = 0
    payload: str = ""  # the outbox row's own payload (an API callback's event)
    #: a message id said instead of the kind's usual text (supply.*: waiting on a supplier, recharged, refunded
    #: because no supplier could serve it)
    notice: str = ""
    #: the previous attempt was cut off after it may have sent (a crash, an overrun lease): the channel says this is
    #: the same delivery again, so a buyer who got both messages knows nothing new was sold or charged
    interrupted: bool = False


class Channel(Protocol):
    """A chat channel able to send a delivery to the buyer's chat (Telegram, WeChat, console)."""

    async def deliver(self, delivery: Delivery) -> None: ...


class PermanentFailure(Exception):
    """A channel says this will never succeed (the user blocked the bot): stop retrying, alert the merchant.
    The codes stay allocated to the buyer (shown again under My orders)."""


class RetryLater(Exception):
    """A channel asks to wait (Telegram 429 `retry_after`): retry after exactly that long."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds}s")
        self.seconds = seconds


class SupplierOrderOpen(Exception):
    """A refund row of an order whose supplier order is planned, sent or unknown: not refunded now (the customer
    may yet be served or credited); the row is retried, and refunds once the supplier's answer settled it."""


class MerchantAlerts(Protocol):
    """Where delivery problems are reported (the merchant's chat)."""

    async def delivery_failed(self, order: Order, reason: str) -> None: ...


class DeliveryWorker:
    def __init__(self, store: Store, vault: Vault, channels: Mapping[str, Channel],
                 providers: Mapping[str, PaymentProvider], checkpoints: Checkpoints | None = None,
                 lease: timedelta = timedelta(seconds=15),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 jitter: Callable[[], float] = random.random) -> None:
        self.store = store
        self.vault = vault
        self.channels = channels
        self.providers = providers
        self.checkpoints = checkpoints or NoCheckpoints()
        self.lease = lease
        self.clock = clock
        self.jitter = jitter
        self.alerts: MerchantAlerts | None = None
        #: awaited after a deliver row was sent and completed (metrics: paid → delivered); never breaks delivery
        self.on_delivered: Callable[[Delivery, datetime], Awaitable[None]] | None = None
        #: set when rows were just written (a payment applied here): the job loop runs at once
        self.due = asyncio.Event()
        #: processes a `procure` row (fulfillment/fulfil_sourced.py SourcedFulfilment.procure); set by bot/supply.py
        self.procure: Callable[[OutboxRow], Awaitable[None]] | None = None
        self._procuring: set[asyncio.Future[None]] = set()  # procure rows running in the background
        #: rows this worker is processing: their claims are renewed every third of the lease while they run, so a
        #: short lease (a killed process's rows are taken over within it) never lapses under a slow send or purchase
        self._held: set[int] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._none_held = asyncio.Event()  # set when the last held row is released: the renewer ends

    def wake(self) -> None:
        self.due.set()

    async def run_once(self, limit: int = 50) -> int:
        """Claim due rows and process them; returns how many were claimed. A `procure` row waits on a supplier
        (up to its read timeout): it runs on in the background, under its claim's lease, instead of holding up
        the deliveries claimed with it; when it ends the loop is woken (its codes' delivery row is due)."""
        now = self.clock()
        rows = await self.store.claim_outbox(now, now + self.lease, limit)
        if rows:
            self._held.update(row.id for row in rows)
            self._none_held.clear()
            if self._renewer is None or self._renewer.done():
                self._renewer = asyncio.ensure_future(self._renew())
        for row in rows:
            if row.kind == PROCURE:
                task = asyncio.ensure_future(self._process(row))  # _process logs every failure itself
                self._procuring.add(task)
                task.add_done_callback(self._procured)
        await asyncio.gather(*(self._process(row) for row in rows if row.kind != PROCURE))
        return len(rows)

    async def _renew(self) -> None:
        """While rows are held: every third of the lease, extend their claims (ends when none is held)."""
        every = self.lease.total_seconds() / 3
        while self._held:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._none_held.wait(), every)
            if not self._held:
                return
            try:
                await self.store.renew_outbox(sorted(self._held), self.clock() + self.lease)
            except Exception:  # noqa: BLE001 - the next round tries again; the lease is three rounds long
                log.warning("event=delivery.renew_failed rows=%d", len(self._held))

    def _release(self, row: OutboxRow) -> None:
        self._held.discard(row.id)
        if not self._held:
            self._none_held.set()  # the renewer wakes and ends: no task outlives the work

    def _procured(self, task: asyncio.Future[None]) -> None:
        self._procuring.discard(task)
        self.wake()

    async def drain(self, max_rounds: int = 100) -> None:
        for _ in range(max_rounds):
            if not await self.run_once():
                if not self._procuring:
                    return
                await asyncio.gather(*list(self._procuring))

    async def _process(self, row: OutboxRow) -> None:
        try:
            await self._process_held(row)
        finally:
            self._release(row)

    async def _process_held(self, row: OutboxRow) -> None:
        try:
            sent = None
            if row.kind == "refund":
                await self._refund(row)
            elif row.kind == PROCURE:
                await self._procure(row)
                # a settlement may have queued the codes' delivery row: claimed now, its claim committed together
                # with this row's completion (the store's group commit) instead of one transaction after it
                self.wake()
            else:
                sent = await self._send(row)
        except PermanentFailure as exc:
            await self.store.fail_outbox(row.id, self.clock(), type(exc).__name__)
            order = await self.store.order_by_id(row.order_id)
            if order is not None:  # no more broadcasts to a chat that blocked the bot
                await self.store.set_user_blocked(order.channel, order.user_id, True)
            log.warning("event=delivery.undeliverable outbox_id=%s order_id=%s", row.id, row.order_id)
            await self._alert(row, "undeliverable")
            return
        except RetryLater as exc:
            await self.store.retry_outbox(row.id, self.clock() + timedelta(seconds=exc.seconds), "RetryLater")
            log.info("event=delivery.throttled outbox_id=%s retry_after=%s", row.id, exc.seconds)
            return
        except Exception as exc:  # noqa: BLE001 - any channel failure is retried; class name only, no text
            delay = retry_delay(row.attempts, self.jitter())
            await self.store.retry_outbox(row.id, self.clock() + delay, type(exc).__name__)
            log.warning("event=delivery.retry outbox_id=%s order_id=%s attempt=%s error=%s",
                        row.id, row.order_id, row.attempts, type(exc).__name__)
            return
        done_at = self.clock()
        await self.store.complete_outbox(row.id, done_at)
        log.info("event=delivery.done outbox_id=%s order_id=%s kind=%s", row.id, row.order_id, row.kind)
        if sent is not None and row.kind == "deliver" and self.on_delivered is not None:
            try:
                await self.on_delivered(sent, done_at)
            except Exception:  # noqa: BLE001 - an observer must never break delivery
                log.exception("event=delivery.observer_failed order_id=%s", row.order_id)

    async def _alert(self, row: OutboxRow, reason: str) -> None:
        order = await self.store.order_by_id(row.order_id)
        if self.alerts is not None and order is not None:
            try:
                await self.alerts.delivery_failed(order, reason)
            except Exception:  # noqa: BLE001 - an alert must never break delivery
                log.exception("event=alert.failed order_id=%s", row.order_id)

    async def build(self, order_id: int, kind: str, outbox_id: int = 0) -> Delivery:
        order = await self.store.order_by_id(order_id)
        assert order is not None, "outbox row without order"
        sku = await self.store.sku_by_id(order.sku_id)
        assert sku is not None
        product = await self.store.product_by_id(sku.product_id)
        assert product is not None
        codes = [] if kind == "refunded" else [
            self.vault.open(item.code) for item in await self.store.order_items(order_id)
        ]
        # a direct recharge is delivered without codes: its notice says the target was credited
        notice = "supply.recharged" if kind == "deliver" and order.target and not codes else ""
        return Delivery(kind, order, sku, product, codes, outbox_id, notice=notice)

    async def _procure(self, row: OutboxRow) -> None:
        """A paid order waiting on a supplier: the customer is told once, then the purchase is made."""
        if self.procure is None:
            raise LookupError("no procurement in this process")  # retried: a process with suppliers takes it
        if row.attempts == 1 and not await self.store.order_procurements(row.order_id):  # once, not on failover
            d = await self.build(row.order_id, NOTICE, row.id)
            channel = self.channels.get(row.channel)
            try:
                if channel is not None:
                    await channel.deliver(replace(d, notice="supply.recharging" if d.order.target
                                                  else "supply.procuring"))
            except Exception:  # noqa: BLE001 - the notice is a courtesy: the purchase must go on
                log.info("event=delivery.notice_failed order_id=%s", row.order_id)
        await self.procure(row)

    async def _send(self, row: OutboxRow) -> Delivery:
        delivery = replace(await self.build(row.order_id, row.kind, row.id), payload=row.payload,
                           interrupted=row.interrupted)
        if row.interrupted:
            log.info("event=delivery.after_interruption outbox_id=%s order_id=%s", row.id, row.order_id)
        self.checkpoints.reach(DELIVERY_CLAIMED)
        await self.channels[row.channel].deliver(delivery)
        self.checkpoints.reach(DELIVERY_SENT)
        return delivery

    async def _refund(self, row: OutboxRow) -> None:
        """Paid but undeliverable: refund through the provider (outside any transaction), then record it."""
        data = json.loads(row.payload)
        order = await self.store.order_by_id(row.order_id)
        assert order is not None
        if any(p.state.open for p in await self.store.order_procurements(order.id)):
            raise SupplierOrderOpen(f"order {order.id}")  # a merchant's /refund that raced a purchase
        await self.providers[data["provider"]].refund(order, data["txn"], int(data["amount"]))
        await self.store.refund(row.order_id, events.refunded(
            reason=str(data.get("cause", "automatic refund: could not fulfil"))), self.clock())
        channel = self.channels.get(row.channel)
        if channel is not None:
            await channel.deliver(replace(await self.build(row.order_id, "refunded", row.id),
                                          notice=str(data.get("notice", ""))))
