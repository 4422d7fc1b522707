"""PTB handlers: turn Telegram updates into Incoming, run the shared conversation, send the replies.

Payments (pre-checkout, successful and refunded payments) are handled in handlers/telegram/payments.py.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    PreCheckoutQueryHandler,
    filters,
)

from fulfillment.delivery import PermanentFailure, RetryLater
from handlers.context import ShopContext
from handlers.router import Conversation
from handlers.telegram.channel import CHANNEL, TelegramAlerts, TelegramSender
from handlers.telegram.intake import ArrivalCheck, UpdateIntake
from handlers.telegram.pacing import Lane
from handlers.telegram.payments import TelegramPayments
from handlers.telegram.render import keyboard_rows, menu_message
from handlers.telegram.request import inline_keyboard
from handlers.tickets_admin import ticket_of_notice
from handlers.types import Attachment, Incoming, Reply

log = logging.getLogger("kamibot.telegram")
MAX_DOWNLOAD = 20 * 1024 * 1024  # bots can download files up to 20 MB


class TelegramBot:
    def __init__(self, ctx: ShopContext, conversation: Conversation, application: Application[Any, Any, Any, Any,
                 Any, Any], sender: TelegramSender, alerts: TelegramAlerts, notify_paid: bool = True) -> None:
        self.ctx = ctx
        self.conversation = conversation
        self.app = application
        self.sender = sender
        self.alerts = alerts
        self.notify_paid = notify_paid
        #: pre-checkout, successful and refunded payments (handlers/telegram/payments.py)
        self.payments = TelegramPayments(ctx, sender.api, alerts, self.send_all, notify_paid)
        self.answered_on_arrival = False

    def register(self) -> None:
        processor = self.app.update_processor
        #: flood control and the presses' answers at arrival (handlers/telegram/intake.py)
        self.answered_on_arrival = isinstance(processor, UpdateIntake)
        if isinstance(processor, UpdateIntake):
            processor.gate = ArrivalCheck(self.ctx, self.sender)
        self.app.add_handler(PreCheckoutQueryHandler(self.on_pre_checkout))
        self.app.add_handler(MessageHandler(filters.SUCCESSFUL_PAYMENT, self.on_paid))
        self.app.add_handler(MessageHandler(filters.StatusUpdate.REFUNDED_PAYMENT, self.on_refunded))
        self.app.add_handler(MessageHandler(filters.Document.ALL, self.on_document))
        self.app.add_handler(CallbackQueryHandler(self.on_button))
        self.app.add_handler(MessageHandler(filters.TEXT, self.on_text))
        self.app.add_error_handler(self.on_error)

    def _incoming(self, update: Update, **fields: Any) -> Incoming:
        user, chat = update.effective_user, update.effective_chat
        assert user is not None
        assert chat is not None
        return Incoming(CHANNEL, str(user.id), str(chat.id), language=user.language_code or "",
                        display_name=user.full_name, **fields)

    def _lang(self, update: Update) -> str:
        user = update.effective_user
        return self.ctx.language(CHANNEL, str(user.id) if user else "", user.language_code or "" if user else "")

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.message is None or update.message.text is None:
            return
        msg = self._incoming(update, text=self._reply_to_ticket(update, update.message.text))
        await self.send_all(msg.chat_id, await self.conversation.handle(msg))

    def _reply_to_ticket(self, update: Update, text: str) -> str:
        """A merchant answering a relayed ticket notice with Telegram's reply: the text becomes /reply TICKET TEXT.
        Anyone else's reply, a reply to another message or a command is left as it is."""
        message, user = update.message, update.effective_user
        quoted = message.reply_to_message if message is not None else None
        if (quoted is None or user is None or not quoted.text or text.lstrip().startswith("/")
                or not self.ctx.is_merchant(CHANNEL, str(user.id))
                or quoted.from_user is None or quoted.from_user.id != self.app.bot.id):
            return text
        ticket = ticket_of_notice(quoted.text)
        if ticket is None:
            return text
        log.info("event=telegram.ticket_reply ticket=%s merchant=%s", ticket, user.id)
        return f"/reply {ticket} {text.strip()}"

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A press: its spinner is stopped on arrival (intake.py); a menu moves on in the message it was on."""
        query = update.callback_query
        if query is None:
            return
        if not self.answered_on_arrival:
            await self.sender.answer_button(query.id)
        msg = self._incoming(update, button=query.data or "")
        await self.send_all(msg.chat_id, await self.conversation.handle(msg), menu_message(query.message))

    async def send_all(self, chat_id: str, replies: list[Reply], menu_id: int | None = None,
                       lane: Lane = Lane.BROWSE) -> None:
        """The replies in order. With `menu_id` (the message whose button was pressed), a first reply that is a
        menu (it has buttons) replaces that message's text and buttons instead of adding a message."""
        for n, reply in enumerate(replies):
            try:
                if n == 0 and menu_id is not None and reply.buttons and await self.sender.edit(chat_id, menu_id,
                                                                                                reply, lane):
                    continue
                if reply.invoice is not None:
                    await self._invoice(chat_id, reply)
                else:
                    await self.sender.send(chat_id, reply, lane)
            except (RetryLater, PermanentFailure) as exc:
                log.warning("event=telegram.reply_dropped chat=%s reason=%s", chat_id, type(exc).__name__)

    async def _invoice(self, chat_id: str, reply: Reply) -> None:
        """One message: the invoice carries the order text and, under its Pay button, the Cancel button."""
        inv = reply.invoice
        assert inv is not None
        lang = self.ctx.language(CHANNEL, chat_id, "")
        pay = {"text": self.ctx.tr(lang, "pay.stars_button", total=self.ctx.tr.money(lang, inv.amount, inv.currency)),
               "pay": True}  # the first button of an invoice must be the Pay button
        await self.sender.pacer.wait(chat_id)
        # Stars: currency XTR and no provider token (https://core.telegram.org/bots/api#sendinvoice)
        async with self.sender.in_flight:
            await self.sender.api.call("sendInvoice", chat_id=int(chat_id), title=inv.title[:32],
                                       description=reply.text[:255], payload=inv.order_ref, currency=inv.currency,
                                       prices=[{"label": inv.title[:32], "amount": inv.amount}],
                                       reply_markup=inline_keyboard([[pay], *keyboard_rows(reply)]))

    async def on_pre_checkout(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.payments.handle(update)  # normally reached through the intake (polling.py, the webhook)

    async def on_paid(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.payments.handle(update)

    async def on_refunded(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.payments.handle(update)

    async def on_document(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is None or message.document is None:
            return
        lang = self._lang(update)
        caption = (message.caption or "").strip()
        msg = self._incoming(update, text=caption)
        if not caption.startswith("/import") or not self.ctx.is_merchant(CHANNEL, msg.user_id):
            await self.send_all(msg.chat_id, await self.conversation.handle(msg))
            return
        doc = message.document
        if (doc.file_size or 0) > MAX_DOWNLOAD:
            await self.send_all(msg.chat_id, [Reply(self.ctx.tr(lang, "import.too_large"))])
            return
        with tempfile.TemporaryDirectory() as tmp:
            name = Path(doc.file_name or "codes.txt").name
            target = Path(tmp) / name
            file = await doc.get_file()
            await file.download_to_drive(target)
            msg = self._incoming(update, text=caption, attachment=Attachment(name, target))
            await self.send_all(msg.chat_id, await self.conversation.handle(msg))

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("event=telegram.handler_failed error=%s", type(context.error).__name__,
                  exc_info=context.error)
