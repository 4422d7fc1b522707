"""Stars payments that go wrong: paid twice, paid by someone else, a malformed payment, a payment or a refund the bot
never heard of (recovered from getStarTransactions). The real bot (PTB) against the fake Bot API."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from storage.records import OrderState
from tests.e2e.test_telegram import (
    CUSTOMER,
    MERCHANT,
    OTHER,
    _buy_to_invoice,
    _handled_so_far,
    _texts,
    running_bot,
)


def _ok(answer: dict) -> bool:
    return answer["ok"] in (True, "true", "True")


async def _answered(fake, query_id: str) -> dict:
    return await fake.wait_for("answerPreCheckoutQuery", lambda p: p["pre_checkout_query_id"] == query_id)


def _codes(fake, chat: int) -> int:
    return sum("<code>" in t for t in _texts(fake, chat))


async def _ledger(shop) -> dict[str, int]:
    now = datetime.now(UTC)
    return {line.kind: line.amount for line in await shop.store.ledger(now - timedelta(days=1), now + timedelta(1))}


async def test_second_payment_of_a_paid_order_is_refunded_at_once_and_is_no_dispute(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        ref = await _buy_to_invoice(fake)
        # given: two devices; both pre-checkout queries come while the order is unpaid, so both are answered ok
        first, second = fake.pre_checkout(CUSTOMER, ref, 45), fake.pre_checkout(CUSTOMER, ref, 45)
        assert _ok(await _answered(fake, first))
        assert _ok(await _answered(fake, second))
        # when: both payments go through
        fake.successful_payment(CUSTOMER, ref, 45, "charge-1")
        fake.successful_payment(CUSTOMER, ref, 45, "charge-2")
        # then: one code message; the second payment goes straight back, and the buyer is told
        refund = await fake.wait_for("refundStarPayment")
        assert (int(refund["user_id"]), refund["telegram_payment_charge_id"]) == (CUSTOMER, "charge-2")
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == CUSTOMER and "already paid" in p["text"])
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == CUSTOMER and "<code>" in p["text"])
        fake.refunded_payment(CUSTOMER, ref, 45, "charge-2")  # Telegram confirms the shop's refund
        await _handled_so_far(fake, CUSTOMER)
        assert _codes(fake, CUSTOMER) == 1
        assert len(fake.sent("refundStarPayment")) == 1
        order = await bot.shop.store.order_by_ref(ref)
        for _ in range(100):  # the outbox marks it delivered just after the code message went out
            if order.state == OrderState.DELIVERED:
                break
            await asyncio.sleep(0.02)
            order = await bot.shop.store.order_by_ref(ref)
        assert order.state == OrderState.DELIVERED
        assert await bot.shop.store.order_payment(order.id) == ("telegram", "charge-1", 45)
        ledger = await _ledger(bot.shop)
        assert (ledger["sale"], ledger["duplicate_payment"], ledger["duplicate_refund"]) == (45, 45, -45)
        merchant = _texts(fake, MERCHANT)
        assert not [t for t in merchant if "review" in t or "chargeback" in t], merchant
        assert (await bot.shop.store.user_stats("telegram", str(CUSTOMER))).disputes == 0


async def test_payment_by_someone_other_than_the_buyer_is_held_and_the_notice_says_why(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        ref = await _buy_to_invoice(fake)  # the customer's order
        fake.successful_payment(OTHER, ref, 45, "charge-o")  # a forwarded invoice, paid by another account
        notice = await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == MERCHANT and ref in p["text"]
                                     and "held for review" in p["text"])
        assert "(payer_not_buyer)" in notice["text"]
        await _handled_so_far(fake, OTHER)
        assert (await bot.shop.store.order_by_ref(ref)).state == OrderState.REVIEW
        assert _codes(fake, CUSTOMER) == _codes(fake, OTHER) == 0


async def test_payment_in_a_lower_case_currency_is_refused_and_refunded_cleanly(tmp_path, fake, caplog):
    caplog.set_level(logging.INFO, logger="kamibot")
    async with running_bot(tmp_path, fake) as bot:
        ref = await _buy_to_invoice(fake)
        query = fake.pre_checkout(CUSTOMER, ref, 45, currency="xtr")
        assert not _ok(await _answered(fake, query))
        fake.successful_payment(CUSTOMER, ref, 45, "charge-l", currency="xtr")
        refund = await fake.wait_for("refundStarPayment")
        assert refund["telegram_payment_charge_id"] == "charge-l"
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == CUSTOMER
                            and "could not be accepted" in p["text"])
        assert (await bot.shop.store.order_by_ref(ref)).state == OrderState.AWAITING_PAYMENT
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures == []


async def test_stars_recovery_applies_a_lost_payment_once_and_flags_an_unasked_refund(tmp_path, fake):
    async with running_bot(tmp_path, fake, stars_recovery_every_s=0.2, stars_recovery_grace_s=0.0) as bot:
        ref = await _buy_to_invoice(fake)
        assert _ok(await _answered(fake, fake.pre_checkout(CUSTOMER, ref, 45)))
        # given: the buyer paid, but the update never reached the shop (acknowledged by a bot that then crashed)
        fake.successful_payment(CUSTOMER, ref, 45, "charge-lost", lost=True)
        # then: the job finds the payment in getStarTransactions and the codes go out
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == CUSTOMER and "<code>" in p["text"])
        # a second purchase paid the normal way is read by the job too, and applied once
        second = await _buy_to_invoice(fake, OTHER)
        assert _ok(await _answered(fake, fake.pre_checkout(OTHER, second, 45)))
        fake.successful_payment(OTHER, second, 45, "charge-live")
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == OTHER and "<code>" in p["text"])
        # when: Telegram hands the Stars of the first back to the buyer without the shop, and never says so
        fake.chargeback("charge-lost")
        # then: a dispute, and the merchant is told
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == MERCHANT and "chargeback" in p["text"])
        assert (await bot.shop.store.user_stats("telegram", str(CUSTOMER))).disputes == 1
        await asyncio.sleep(0.5)  # more ticks of the job read nothing twice
        assert (_codes(fake, CUSTOMER), _codes(fake, OTHER)) == (1, 1)
        assert fake.sent("refundStarPayment") == []


async def test_stars_recovery_runs_in_one_process_at_a_time(tmp_path, fake):
    from handlers.telegram.stars import LEASE

    async with running_bot(tmp_path, fake) as bot:
        now = datetime.now(UTC)
        assert await bot.shop.store.try_lease(LEASE, "another-process", now + timedelta(minutes=1), now)
        assert await bot.runtime.recovery.tick() == 0
        assert fake.sent("getStarTransactions") == []
        await bot.shop.store.release_lease(LEASE, "another-process")
        await bot.runtime.recovery.tick()
        assert len(fake.sent("getStarTransactions")) == 1


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_payment_that_could_not_be_recorded_is_not_acknowledged_and_comes_again(tmp_path, fake, mode):
    async with running_bot(tmp_path, fake, mode) as bot:
        ref = await _buy_to_invoice(fake)
        assert _ok(await _answered(fake, fake.pre_checkout(CUSTOMER, ref, 45)))
        # given: the database is unreachable for the first attempt to record the payment
        inbox, failures = bot.shop.payments, []
        receive = inbox.receive

        async def down_once(event, **kw):
            if not failures:
                failures.append(event.provider_txn_id)
                raise ConnectionError("database restarting")
            return await receive(event, **kw)

        inbox.receive = down_once
        # when: the payment arrives
        fake.successful_payment(CUSTOMER, ref, 45, "charge-r")
        # then: Telegram was not told it arrived (no next offset, no 200), sends it again, and it is recorded once
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == CUSTOMER and "<code>" in p["text"],
                            timeout=15)
        await _handled_so_far(fake, CUSTOMER)
        assert failures == ["charge-r"]
        assert _codes(fake, CUSTOMER) == 1


async def test_stars_recovery_leaves_young_transactions_to_their_updates(tmp_path, fake):
    from handlers.telegram.stars import CURSOR

    async with running_bot(tmp_path, fake, stars_recovery_every_s=0.1, stars_recovery_grace_s=3600) as bot:
        ref = await _buy_to_invoice(fake)
        fake.successful_payment(CUSTOMER, ref, 45, "charge-young", lost=True)
        await asyncio.sleep(0.5)  # several ticks
        assert len(fake.sent("getStarTransactions")) > 1
        assert (await bot.shop.store.order_by_ref(ref)).state == OrderState.AWAITING_PAYMENT
        assert await bot.shop.store.kv_get(CURSOR, datetime.now(UTC)) is None


async def test_telegrams_notice_of_the_shops_own_refund_before_it_is_booked_is_no_chargeback(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        ref = await _buy_to_invoice(fake)
        assert _ok(await _answered(fake, fake.pre_checkout(CUSTOMER, ref, 45)))
        fake.successful_payment(CUSTOMER, ref, 45, "charge-1")
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == CUSTOMER and "<code>" in p["text"])
        order = await bot.shop.store.order_by_ref(ref)
        # given: the merchant's refund row is queued (due later, so the worker has not booked it yet)
        later = datetime.now(UTC) + timedelta(hours=1)
        await bot.shop.store.enqueue_outbox(order.id, "refund", '{"provider": "telegram"}', later)
        # when: Telegram's refunded_payment for the order's own charge arrives while the order is still delivered
        fake.refunded_payment(CUSTOMER, ref, 45, "charge-1")
        await _handled_so_far(fake, CUSTOMER)
        await asyncio.sleep(0.5)  # a payment update is handled before the next getUpdates; give it that turn
        # then: it is the shop's own refund, not the buyer's chargeback
        assert len(fake.sent("refundStarPayment")) == 0  # the row is not due yet: the window is still open
        assert (await bot.shop.store.order_by_ref(ref)).state == OrderState.DELIVERED
        assert (await bot.shop.store.user_stats("telegram", str(CUSTOMER))).disputes == 0
        assert not [t for t in _texts(fake, MERCHANT) if "chargeback" in t.lower() or "拒付" in t]
