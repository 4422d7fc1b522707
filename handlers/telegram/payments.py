"""Telegram Stars payments: pre-checkout answers, successful and refunded payments, one path for all of them.

Invoices are in Telegram Stars (XTR, no provider token); `pre_checkout_query` is answered within Telegram's 10 s
after checking the reservation; `successful_payment` is recorded idempotently on `telegram_payment_charge_id`, then
the outbox is pushed at once so the codes arrive within a second. https://core.telegram.org/bots/payments-stars

Telegram sends an update once and counts it delivered when the next getUpdates offset passes it (polling) or when
the webhook answered 200: the intake (`handlers/telegram/polling.py`, the webhook route) therefore calls `handle`
itself and acknowledges only after it returned. The Stars recovery job (`handlers/telegram/stars.py`) feeds what
still slipped through into `apply` too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from telegram import Update
from telegram.error import BadRequest

from fulfillment.errors import PaymentRejected, RiskChallenge, RiskDenied, ShopError
from fulfillment.orders import KEPT_THE_MONEY
from handlers.context import ShopContext
from handlers.risk_admin import review_buttons
from handlers.telegram.channel import CHANNEL, TelegramAlerts
from handlers.telegram.pacing import Lane
from handlers.telegram.request import BotApi
from handlers.types import Reply
from risk.engine import Signals
from storage.records import Order, PaymentApplied, PaymentEventIn, PaymentOutcome

log = logging.getLogger("kamibot.telegram")
PRE_CHECKOUT_BUDGET = 8.0  # Telegram waits 10 s for the answer
#: a refund Telegram reports for an order in one of these states was not made by the shop
#: the payment was already recorded as money the shop gives back (a crash may have come before the refund)
_GIVEN_BACK = frozenset({PaymentOutcome.DUPLICATE.value, PaymentOutcome.UNKNOWN_ORDER.value})
#: a payment whose payer is not the order's buyer is held for the merchant, never applied
PAYER_NOT_BUYER = "payer_not_buyer"

#: (chat_id, replies, menu message id, pacing lane): payment answers go in the DELIVERY lane
SendAll = Callable[[str, list[Reply], int | None, Lane], Awaitable[None]]


def carries_payment(update: Update) -> bool:
    """Updates that must be handled before Telegram is told they arrived."""
    message = update.message
    return update.pre_checkout_query is not None or (
        message is not None and (message.successful_payment is not None or message.refunded_payment is not None))


class TelegramPayments:
    def __init__(self, ctx: ShopContext, api: BotApi, alerts: TelegramAlerts, send_all: SendAll,
                 notify_paid: bool = True) -> None:
        self.ctx = ctx
        self.api = api
        self.alerts = alerts
        self.send_all = send_all
        self.notify_paid = notify_paid

    async def handle(self, update: Update) -> None:
        """The update's payment part; raises when a payment could not be recorded (do not acknowledge it)."""
        if update.pre_checkout_query is not None:
            await self.pre_checkout(update)
        elif update.message is not None and update.message.successful_payment is not None:
            await self.paid(update)
        elif update.message is not None and update.message.refunded_payment is not None:
            await self.refunded(update)

    def payer(self, user_id: int) -> str:
        """The keyed payment fingerprint of a Stars payer (the Telegram account pays)."""
        return self.ctx.vault.fingerprint(f"{CHANNEL}:{user_id}")

    def _lang(self, user_id: int, language_code: str = "") -> str:
        return self.ctx.language(CHANNEL, str(user_id), language_code)

    async def pre_checkout(self, update: Update) -> None:
        query = update.pre_checkout_query
        assert query is not None
        lang = self._lang(query.from_user.id, query.from_user.language_code or "")
        try:
            order = await asyncio.wait_for(
                self.ctx.orders.check_payable(query.invoice_payload, query.total_amount, query.currency,
                                              fingerprint=self.payer(query.from_user.id)),
                PRE_CHECKOUT_BUDGET)
            if order.user_id != str(query.from_user.id) or order.channel != CHANNEL:
                raise ShopError("invoice of another user")
        except (ShopError, TimeoutError) as exc:
            log.info("event=telegram.pre_checkout_refused reason=%s", type(exc).__name__)
            if isinstance(exc, RiskDenied | RiskChallenge):  # polite, and reveals no threshold
                text = self.ctx.tr(lang, exc.message_id, seconds=exc.params.get("seconds", 60))
            else:
                text = self.ctx.tr(lang, "pay.precheckout_refused")
                if self.ctx.risk is not None:  # a failed payment attempt: a risk signal
                    await self.ctx.risk.record_failed_payment(Signals(
                        CHANNEL, str(query.from_user.id), 0, query.total_amount, query.currency,
                        fingerprint=self.payer(query.from_user.id)))
            await self.api.call("answerPreCheckoutQuery", pre_checkout_query_id=query.id, ok=False,
                                error_message=text)
            return
        await self.api.call("answerPreCheckoutQuery", pre_checkout_query_id=query.id, ok=True)

    async def paid(self, update: Update) -> None:
        message = update.message
        assert message is not None
        paid = message.successful_payment
        if paid is None or message.from_user is None:
            return
        await self.apply(message.from_user.id, str(message.chat_id), paid.telegram_payment_charge_id,
                         paid.invoice_payload, paid.total_amount, paid.currency)

    async def apply(self, user_id: int, chat_id: str, charge_id: str, ref: str, amount: int,
                    currency: str) -> PaymentApplied | None:
        """One Stars payment, from its update or from getStarTransactions: recorded once, then acted on.
        None when it was refused before recording (malformed: it is refunded)."""
        lang = self._lang(user_id)
        order = await self.ctx.services.lookup.by_ref(ref)
        foreign = order is not None and (order.channel != CHANNEL or order.user_id != str(user_id))
        hold = (PAYER_NOT_BUYER,) if foreign else ()
        try:
            result = await self.ctx.payments.receive(
                PaymentEventIn(CHANNEL, charge_id, ref, amount, currency, payer=self.payer(user_id)), hold=hold)
        except PaymentRejected as exc:  # e.g. currency "xtr": Stars payments are "XTR" exactly
            log.warning("event=telegram.payment_refused reason=%s", exc)
            await self._refund(user_id, charge_id)
            await self.send_all(chat_id, [Reply(self.ctx.tr(lang, "pay.result.refused", ref=ref))], None, Lane.DELIVERY)
            return None
        await self._after(result, user_id, chat_id, charge_id, ref, lang)
        return result

    async def _after(self, result: PaymentApplied, user_id: int, chat_id: str, charge_id: str, ref: str,
                     lang: str) -> None:
        """What follows a recorded payment. Only the refund of money that must go back runs before the update is
        acknowledged (a failure leaves it unacknowledged, and its retry refunds); sends, notices and the outbox
        push run in the background: in polling mode the next getUpdates waits for this, and a merchant notice
        waits for the merchant chat's pace (seconds), which would hold every chat's updates and make later
        pre-checkout queries miss Telegram's 10 s."""
        if result.outcome == PaymentOutcome.ALREADY_APPLIED:
            if result.detail in _GIVEN_BACK:  # recorded, and the refund may not have happened before a crash
                await self._refund(user_id, charge_id)
            return
        if result.outcome in (PaymentOutcome.UNKNOWN_ORDER, PaymentOutcome.DUPLICATE):
            # money that matches no order, or pays an order twice, goes straight back
            await self._refund(user_id, charge_id)
            log.warning("event=telegram.payment_returned outcome=%s order_id=%s", result.outcome.value,
                        result.order_id)
        self.ctx.spawn(self._tell(result, chat_id, ref, lang))

    async def _tell(self, result: PaymentApplied, chat_id: str, ref: str, lang: str) -> None:
        if result.outcome in (PaymentOutcome.ALLOCATED, PaymentOutcome.FAILED):
            # the codes (or the refund row: Stars back and the customer told) leave now, not at the next tick
            await self.ctx.delivery.run_once()
            order = await self.ctx.services.lookup.by_id(result.order_id) if result.order_id else None
            if result.outcome == PaymentOutcome.ALLOCATED and order is not None:
                if self.notify_paid:
                    await self.alerts.order_paid(order)
                await self._low_stock(order)
            return
        if result.outcome == PaymentOutcome.REVIEW and result.order_id is not None:
            await self._review_notice(result.order_id, ref, result.detail)
        await self.send_all(chat_id, [Reply(self.ctx.tr(lang, f"pay.result.{result.outcome.value}", ref=ref))], None,
                            Lane.DELIVERY)

    async def _refund(self, user_id: int, charge_id: str) -> None:
        """refundStarPayment, safe to repeat (https://core.telegram.org/bots/api#refundstarpayment)."""
        try:
            await self.api.call("refundStarPayment", user_id=user_id, telegram_payment_charge_id=charge_id)
        except BadRequest as exc:
            if "ALREADY_REFUNDED" not in str(exc).upper():
                raise

    async def refunded(self, update: Update) -> None:
        message = update.message
        refunded = message.refunded_payment if message is not None else None
        if refunded is None or message is None or message.from_user is None:
            return
        await self.refund_seen(message.from_user.id, refunded.invoice_payload, refunded.telegram_payment_charge_id)

    async def refund_seen(self, user_id: int, ref: str, charge_id: str) -> None:
        """Telegram reports a refunded Stars payment. Refunds the shop makes leave the order `refunded` first, or
        give back a payment that is not the order's own (a second payment); any other refund of a paid order was
        taken back from the merchant (a chargeback): it becomes the buyer's dispute signal for the risk rules,
        and the merchant is told. Nothing is re-sent or re-opened."""
        order = await self.ctx.services.lookup.by_ref(ref)
        own = await self.ctx.services.lookup.payment(order.id) if order is not None else None
        if (order is None or order.channel != CHANNEL or order.user_id != str(user_id)
                or order.state not in KEPT_THE_MONEY  # refunded, failed, rejected: the shop's own refunds
                or (own is not None and own[1] != charge_id)  # a duplicate payment the shop gave back
                # the shop's refund row calls refundStarPayment before it marks the order refunded: Telegram's
                # notice can come in between (or after a crash there) and is still the shop's own refund
                or await self.ctx.services.lookup.refund_queued(order.id)):
            log.info("event=telegram.refund_seen known=%s", order is not None)
            return
        if await self.ctx.services.chargebacks.record_chargeback(order, CHANNEL, "telegram"):
            log.warning("event=telegram.chargeback order_id=%s", order.id)
            await self.alerts.notify("risk.alert_chargeback", ref=order.ref)

    async def _review_notice(self, order_id: int, ref: str, detail: str) -> None:
        """Held for review (a risk rule, a mismatching payment, a payer who is not the buyer): the merchant decides
        with two buttons and reads why (the latest move to review, else what the payment met)."""
        reasons = await self.ctx.services.lookup.review_reasons(order_id) or detail or "-"
        await self.alerts.notify("risk.alert_review", buttons=lambda lang: review_buttons(self.ctx.tr, lang, ref),
                                 ref=ref, reasons=reasons)

    async def _low_stock(self, order: Order) -> None:
        """Tell the merchant when this sale took the pool across its low-stock mark (once per crossing)."""
        low = await self.ctx.catalog.low_stock_crossed(order.pool_id, order.quantity * order.units)
        if low is not None:
            await self.alerts.notify("merchant.alert_low_stock", pool=low.pool_slug, available=low.available)

