"""Payment inbox and delivery worker: idempotent events, one delivery, retries, automatic refunds."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from bot.composition import build_shop
from fulfillment.delivery import Delivery
from fulfillment.errors import PaymentRejected
from fulfillment.orders import CheckoutRequest
from storage.records import OrderState, PaymentEventIn, PaymentOutcome
from tests.fulfillment.conftest import settings_for
from tests.storage.seed import make_shop


class RecordingChannel:
    def __init__(self, fail_times: int = 0) -> None:
        self.sent: list[Delivery] = []
        self.fail_times = fail_times

    async def deliver(self, delivery: Delivery) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("platform down")
        self.sent.append(delivery)


async def _paid_order(shop, seeded, qty=1, user="u1"):
    order = await shop.orders.checkout(CheckoutRequest("console", user, user, seeded.sku.id, qty))
    event = shop.providers["test"].pay(order)
    return order, event


async def test_second_payment_event_delivers_nothing(shop):
    seeded = await make_shop(shop.store, codes=5, vault=shop.vault)
    channel = shop.channels["console"] = RecordingChannel()
    order, event = await _paid_order(shop, seeded, qty=2)
    first = await shop.payments.receive(event)
    await shop.delivery.drain()
    second = await shop.payments.receive(event)
    await shop.delivery.drain()
    assert first.outcome == PaymentOutcome.ALLOCATED
    assert second.outcome == PaymentOutcome.ALREADY_APPLIED
    assert len(channel.sent) == 1
    assert len(channel.sent[0].codes) == 2
    assert (await shop.store.order_by_id(order.id)).state == OrderState.DELIVERED


@pytest.mark.parametrize("field", ["amount", "currency"])
async def test_wrong_amount_or_currency_holds_order_and_sends_nothing(shop, field):
    seeded = await make_shop(shop.store, codes=5, vault=shop.vault)
    channel = shop.channels["console"] = RecordingChannel()
    order, event = await _paid_order(shop, seeded)
    bad = PaymentEventIn(event.provider, event.provider_txn_id, event.order_ref,
                         1 if field == "amount" else event.amount, "USD" if field == "currency" else event.currency)
    result = await shop.payments.receive(bad)
    await shop.delivery.drain()
    assert result.outcome == PaymentOutcome.REVIEW
    assert channel.sent == []
    assert (await shop.store.order_by_id(order.id)).state == OrderState.REVIEW


async def test_payment_for_unknown_order_changes_nothing(shop):
    await make_shop(shop.store, codes=5, vault=shop.vault)
    result = await shop.payments.receive(PaymentEventIn("test", "t-1", "KDOESNOTEXIST", 1000, "CNY"))
    assert result.outcome == PaymentOutcome.UNKNOWN_ORDER
    assert await shop.store.pending_outbox() == 0


@pytest.mark.parametrize("event", [
    PaymentEventIn("test", "", "K1", 100, "CNY"),
    PaymentEventIn("test", "t", "K1", -5, "CNY"),
    PaymentEventIn("test", "t", "K1", 1.5, "CNY"),  # type: ignore[arg-type]
    PaymentEventIn("test", "t", "K1", 100, "cny"),
    PaymentEventIn("test", "t", "K1", 100, "CNY", fee=-1),
])
async def test_malformed_payment_events_are_rejected_before_recording(shop, event):
    with pytest.raises(PaymentRejected):
        await shop.payments.receive(event)
    assert await shop.store.unapplied_payments(10) == []


async def test_channel_failure_retries_with_backoff_then_delivers_same_codes(shop, caplog):
    caplog.set_level(logging.DEBUG)
    seeded = await make_shop(shop.store, codes=5, vault=shop.vault)
    channel = shop.channels["console"] = RecordingChannel(fail_times=2)
    order, event = await _paid_order(shop, seeded)
    await shop.payments.receive(event)
    now = shop.delivery.clock()
    assert await shop.delivery.run_once() == 1
    assert await shop.delivery.run_once() == 0  # backing off
    for step in (5, 30):
        shop.delivery.clock = lambda step=step: now + timedelta(seconds=step)
        await shop.delivery.run_once()
    assert len(channel.sent) == 1
    assert (await shop.store.order_by_id(order.id)).state == OrderState.DELIVERED
    code = channel.sent[0].codes[0]
    assert not any(code in rec.getMessage() for rec in caplog.records)
    assert any("ConnectionError" in rec.getMessage() for rec in caplog.records)


async def test_paid_order_without_stock_is_refunded_through_provider_and_customer_told(shop):
    seeded = await make_shop(shop.store, codes=1, vault=shop.vault)
    channel = shop.channels["console"] = RecordingChannel()
    late, late_event = await _paid_order(shop, seeded, user="late")
    shop.orders.clock = lambda: late.expires_at + timedelta(seconds=1)
    await shop.orders.expire_due()
    await _paid_order(shop, seeded, user="other")  # takes the only code
    result = await shop.payments.receive(late_event)
    await shop.delivery.drain()
    assert result.outcome == PaymentOutcome.FAILED
    assert shop.providers["test"].refunds == {late_event.provider_txn_id: 1000}
    assert (await shop.store.order_by_id(late.id)).state == OrderState.REFUNDED
    assert [(d.kind, d.codes) for d in channel.sent] == [("refunded", [])]


async def test_recorded_but_unapplied_payment_is_applied_by_recovery(shop):
    seeded = await make_shop(shop.store, codes=2, vault=shop.vault)
    order, event = await _paid_order(shop, seeded)
    await shop.store.record_payment(event, shop.payments.clock())  # as if the process died here
    assert await shop.payments.apply_pending() == 1
    assert (await shop.store.order_by_id(order.id)).state == OrderState.DELIVERING
    assert await shop.payments.apply_pending() == 0


class ScriptedChannel:
    """Raises the given exceptions in turn, then delivers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.sent: list[Delivery] = []

    async def deliver(self, delivery: Delivery) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(delivery)


class Alerts:
    def __init__(self) -> None:
        self.got: list[tuple[str, str]] = []

    async def delivery_failed(self, order, reason: str) -> None:
        self.got.append((order.ref, reason))


async def test_blocked_chat_stops_retrying_alerts_merchant_and_keeps_codes(shop):
    from fulfillment.delivery import PermanentFailure

    seeded = await make_shop(shop.store, codes=2, vault=shop.vault)
    shop.channels["console"] = ScriptedChannel(PermanentFailure("blocked"))
    shop.delivery.alerts = alerts = Alerts()
    order, event = await _paid_order(shop, seeded)
    await shop.payments.receive(event)
    await shop.delivery.drain()
    assert alerts.got == [(order.ref, "undeliverable")]
    assert await shop.store.pending_outbox() == 0
    assert (await shop.store.order_by_id(order.id)).state == OrderState.DELIVERING
    assert len(await shop.store.order_items(order.id)) == 1


async def test_retry_after_is_honoured_exactly(shop):
    from fulfillment.delivery import RetryLater

    seeded = await make_shop(shop.store, codes=2, vault=shop.vault)
    channel = shop.channels["console"] = ScriptedChannel(RetryLater(7))
    _, event = await _paid_order(shop, seeded)
    await shop.payments.receive(event)
    now = shop.delivery.clock()
    await shop.delivery.run_once()
    shop.delivery.clock = lambda: now + timedelta(seconds=6)
    assert await shop.delivery.run_once() == 0
    shop.delivery.clock = lambda: now + timedelta(seconds=8)
    assert await shop.delivery.run_once() == 1
    assert len(channel.sent) == 1


@pytest.fixture
async def shop_on_both(store, tmp_path):
    """A shop on SQLite and on PostgreSQL (the `store` fixture of tests/conftest.py)."""
    return await build_shop(settings_for(tmp_path), store=store)


async def test_second_payment_of_a_paid_order_is_a_duplicate_with_its_ledger_lines_once(shop_on_both):
    shop = shop_on_both
    seeded = await make_shop(shop.store, codes=5, vault=shop.vault)
    channel = shop.channels["console"] = RecordingChannel()
    order, first = await _paid_order(shop, seeded)
    second = shop.providers["test"].pay(order)  # the buyer paid the same invoice again (two devices)

    applied = await shop.payments.receive(first)
    twice = await shop.payments.receive(second)
    again = await shop.payments.receive(second)  # the same notification repeated
    await shop.delivery.drain()

    assert applied.outcome == PaymentOutcome.ALLOCATED
    assert (twice.outcome, twice.order_id) == (PaymentOutcome.DUPLICATE, order.id)
    assert (again.outcome, again.detail) == (PaymentOutcome.ALREADY_APPLIED, "duplicate")
    assert len(channel.sent) == 1
    assert (await shop.store.order_by_id(order.id)).state == OrderState.DELIVERED
    assert await shop.store.order_payment(order.id) == ("test", first.provider_txn_id, order.amount)
    now = datetime.now(UTC)
    lines = {line.kind: line.amount for line in await shop.store.ledger(now - timedelta(days=1), now + timedelta(1))}
    assert lines["duplicate_payment"] == order.amount
    assert lines["duplicate_refund"] == -order.amount
    assert lines["sale"] == order.amount


async def test_order_held_by_the_channel_is_not_applied(shop_on_both):
    shop = shop_on_both
    seeded = await make_shop(shop.store, codes=5, vault=shop.vault)
    channel = shop.channels["console"] = RecordingChannel()
    order, event = await _paid_order(shop, seeded)

    result = await shop.payments.receive(event, hold=("payer_not_buyer",))
    await shop.delivery.drain()

    assert result.outcome == PaymentOutcome.REVIEW
    assert channel.sent == []
    assert (await shop.store.order_by_id(order.id)).state == OrderState.REVIEW
    events = await shop.store.order_events(order.id)
    assert events[-1].cause.endswith("payer_not_buyer")
    assert await shop.store.order_payment(order.id) == ("test", event.provider_txn_id, order.amount)



class SlowChannel(RecordingChannel):
    """A send that takes three leases (a big upload, a slow platform) while another process keeps polling."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def deliver(self, delivery: Delivery) -> None:
        await asyncio.sleep(self.seconds)
        await super().deliver(delivery)


async def test_a_claim_is_renewed_while_its_row_is_sent_and_never_taken_over(shop):
    """The delivery lease is short (a killed process's rows are taken over within it) and renewed every third of it
    while the row is processed: another worker polling meanwhile finds nothing to claim; the buyer gets one
    message, not marked as a repeat."""
    seeded = await make_shop(shop.store, codes=5, vault=shop.vault)
    channel = shop.channels["console"] = SlowChannel(0.9)
    shop.delivery.lease = timedelta(seconds=0.3)
    order, event = await _paid_order(shop, seeded)
    await shop.payments.receive(event)
    sending = asyncio.ensure_future(shop.delivery.run_once())
    taken_over = []
    for _ in range(9):
        await asyncio.sleep(0.1)
        now = datetime.now(UTC)
        taken_over += await shop.store.claim_outbox(now, now + timedelta(seconds=0.3), 10)
    assert await sending == 1
    assert taken_over == []
    assert [(d.order.id, d.interrupted) for d in channel.sent] == [(order.id, False)]
    assert (await shop.store.order_by_id(order.id)).state == OrderState.DELIVERED
    await asyncio.sleep(0.15)
    renewer = shop.delivery._renewer
    assert renewer is not None
    assert renewer.done()  # no task outlives the work
