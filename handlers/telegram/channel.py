"""Telegram as a delivery channel, a payment provider (Stars refunds) and the merchant's alert inbox."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from fulfillment.delivery import Delivery, PermanentFailure, RetryLater
from handlers.context import ShopContext
from handlers.render import delivery_reply
from handlers.telegram.pacing import Lane, Pacer
from handlers.telegram.render import fits, keyboard, keyboard_rows, to_html
from handlers.telegram.request import BotApi, inline_keyboard
from handlers.types import Button, Reply
from storage.records import Order

log = logging.getLogger("kamibot.telegram")
CHANNEL = "telegram"


class TelegramSender:
    """Every message the bot sends goes through here: pacing, HTML, documents, error mapping."""

    def __init__(self, bot: Bot, pacer: Pacer, in_flight: int = 32, answers_in_flight: int = 8,
                 broadcasts_in_flight: int = 16) -> None:
        self.bot = bot
        self.api = BotApi(bot)
        self.pacer = pacer
        # at most this many Bot API calls at once: a burst waits here, not inside the HTTP clients' pools
        self.in_flight = asyncio.Semaphore(in_flight)
        # button answers have their own few: a flood of taps cannot take the messages' places
        self._answers = asyncio.Semaphore(answers_in_flight)
        # and broadcasts theirs: a paid broadcast at 1000/s never holds a place a delivery needs
        self._broadcasts = asyncio.Semaphore(broadcasts_in_flight)

    async def send(self, chat_id: str, reply: Reply, lane: Lane = Lane.BROWSE) -> None:
        """`lane`: DELIVERY for codes and payment answers, BROADCAST or PAID_BROADCAST (sent with
        allow_paid_broadcast) for broadcasts (pacing.py)."""
        await self.pacer.wait(chat_id, lane)
        try:
            async with self._broadcasts if lane >= Lane.BROADCAST else self.in_flight:
                await self._send(chat_id, reply, lane == Lane.PAID_BROADCAST)
        except RetryAfter as exc:
            raise RetryLater(_seconds(exc.retry_after)) from None
        except Forbidden:
            raise PermanentFailure("chat unreachable (bot blocked)") from None

    async def edit(self, chat_id: str, message_id: int, reply: Reply, lane: Lane = Lane.BROWSE) -> bool:
        """Replace the text and buttons of a message the bot sent (a menu moving on in place). False: this reply is
        not a menu (codes, a document, too long) or Telegram refuses the edit (message gone, too old, not text):
        send it as a new message instead. https://core.telegram.org/bots/api#editmessagetext"""
        text = to_html(reply)
        if reply.codes or reply.document is not None or reply.photo is not None or reply.invoice is not None \
                or not fits(text):
            return False
        await self.pacer.wait_edit(chat_id, lane)
        try:
            async with self.in_flight:
                await self.api.call("editMessageText", chat_id=int(chat_id), message_id=message_id, text=text,
                                    parse_mode=ParseMode.HTML.value, reply_markup=inline_keyboard(keyboard_rows(reply)))
        except BadRequest as exc:
            # the same button pressed twice: the menu already shows this
            return "not modified" in str(exc).lower()
        except RetryAfter as exc:
            raise RetryLater(_seconds(exc.retry_after)) from None
        except Forbidden:
            raise PermanentFailure("chat unreachable (bot blocked)") from None
        return True

    async def answer_button(self, query_id: str) -> None:
        """Stop the spinner of a pressed button (not a message: no pacing); an expired query id is ignored."""
        try:
            async with self._answers:
                await self.api.call("answerCallbackQuery", callback_query_id=query_id)
        except TelegramError as exc:
            log.info("event=telegram.answer_failed error=%s", type(exc).__name__)

    async def _send(self, chat_id: str, reply: Reply, paid_broadcast: bool = False) -> None:
        if reply.photo is not None:  # multipart upload; a caption is at most 1024 characters
            await self.bot.send_photo(int(chat_id), photo=io.BytesIO(reply.photo), caption=reply.text[:1000],
                                      reply_markup=keyboard(reply))
            return
        text = to_html(reply)
        # https://core.telegram.org/bots/api#sendmessage: up to 1000 messages/s, paid in Stars from the bot's balance
        paid: dict[str, bool] = {"allow_paid_broadcast": True} if paid_broadcast else {}
        if reply.document is not None or not fits(text):
            document = reply.document
            if document is None:  # too long for one message: the codes travel as a file
                body = "\n".join([reply.text, *reply.codes]).encode("utf-8")
                caption = reply.text[:900]
            else:
                body, caption = document.content, reply.text[:900]
            name = document.filename if document is not None else "codes.txt"
            await self.bot.send_document(int(chat_id), document=io.BytesIO(body), filename=name, caption=caption,
                                         reply_markup=keyboard(reply), allow_paid_broadcast=paid_broadcast or None)
            return
        await self.api.call("sendMessage", chat_id=int(chat_id), text=text, parse_mode=ParseMode.HTML.value,
                            reply_markup=inline_keyboard(keyboard_rows(reply)), **paid)


def _seconds(delay: object) -> float:
    """RetryAfter.retry_after: a timedelta with PTB_TIMEDELTA, an int otherwise."""
    total = getattr(delay, "total_seconds", None)
    return float(total()) if callable(total) else float(delay)  # type: ignore[arg-type]


class TelegramChannel:
    """fulfillment.delivery.Channel for Telegram: one message per delivery, in the buyer's language."""

    def __init__(self, ctx: ShopContext, sender: TelegramSender) -> None:
        self.ctx = ctx
        self.sender = sender

    async def deliver(self, delivery: Delivery) -> None:
        lang = self.ctx.language(CHANNEL, delivery.order.user_id, delivery.order.language)
        await self.sender.send(delivery.order.chat_id, delivery_reply(self.ctx.tr, delivery, lang), Lane.DELIVERY)


class StarsProvider:
    """PaymentProvider for Telegram Stars: refunds with refundStarPayment (safe to call twice)."""

    name = "telegram"

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def refund(self, order: Order, provider_txn_id: str, amount: int) -> str:
        try:
            await self.bot.refund_star_payment(int(order.user_id), provider_txn_id)
        except BadRequest as exc:
            if "ALREADY_REFUNDED" not in str(exc).upper():
                raise
        log.info("event=payment.refunded provider=telegram order_id=%s", order.id)
        return provider_txn_id


class TelegramAlerts:
    """Merchant notices in their Telegram chats: paid orders, delivery failures."""

    def __init__(self, ctx: ShopContext, sender: TelegramSender, admin_ids: list[int]) -> None:
        self.ctx = ctx
        self.sender = sender
        self.admin_ids = admin_ids

    async def notify(self, msgid: str, buttons: Callable[[str], list[list[Button]]] | None = None,
                     **params: object) -> None:
        for admin in self.admin_ids:
            lang = self.ctx.language(CHANNEL, str(admin), "")
            try:
                await self.sender.send(str(admin), Reply(self.ctx.tr(lang, msgid, **params),
                                                         buttons(lang) if buttons else []))
            except Exception:  # noqa: BLE001 - a notice must never break the sale
                log.warning("event=alert.undelivered admin=%s", admin)

    async def delivery_failed(self, order: Order, reason: str) -> None:
        await self.notify("merchant.alert_undeliverable", ref=order.ref, user=order.user_id)

    async def order_paid(self, order: Order) -> None:
        lang = self.ctx.tr.default
        await self.notify("merchant.alert_paid", ref=order.ref, quantity=order.quantity,
                          total=self.ctx.tr.money(lang, order.amount, order.currency))
