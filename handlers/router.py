"""Routes one Incoming to the storefront or merchant conversation and turns refusals into the user's language."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fulfillment.errors import BadQuantity, ShopError
from fulfillment.wholenumbers import parse_whole
from handlers.aftersales import AfterSalesDialog
from handlers.context import ShopContext
from handlers.distributor_admin import DISTRIBUTOR_COMMANDS, MerchantDistributors
from handlers.faq_admin import MerchantFaq
from handlers.flood import Admission, FloodGate
from handlers.merchant import Merchant
from handlers.reconcile_admin import RECONCILE_COMMANDS, MerchantReconcile
from handlers.risk_admin import MerchantRisk
from handlers.storefront import Storefront
from handlers.supply_admin import SUPPLY_COMMANDS, MerchantSupply
from handlers.tickets_admin import TICKET_COMMANDS, MerchantTickets
from handlers.types import Incoming, Reply

log = logging.getLogger("kamibot.conversation")
MERCHANT_COMMANDS = {"stock", "price", "sku", "import", "order", "report", "refund", "resend", "broadcast",
                     "dashboard"}
RISK_COMMANDS = {"risk", "approve", "reject", "review"}
MAX_TEXT = 4096
MAX_BUTTON_NUMBER = 10**12 - 1  # twelve digits


def _int(text: str) -> int:
    """A number a button carries (an id, a quantity); anything else is answered as bad input."""
    try:
        return parse_whole(text, 0, MAX_BUTTON_NUMBER, BadQuantity, "button number")
    except BadQuantity:
        raise ValueError("not an id") from None


class Conversation:
    def __init__(self, ctx: ShopContext, flood_control: bool = True) -> None:
        self.ctx = ctx
        self.storefront = Storefront(ctx)
        self.merchant = Merchant(ctx)
        self.risk = MerchantRisk(ctx)
        self.faq = MerchantFaq(ctx)
        self.after = AfterSalesDialog(ctx, self.storefront, self.faq.current)
        self.tickets = MerchantTickets(ctx)
        #: off where the channel adapter counts every update as it arrives (Telegram: handlers/telegram/intake.py)
        self.flood = FloodGate(ctx) if flood_control else None
        self.supply = MerchantSupply(ctx)
        self.distributors = MerchantDistributors(ctx)
        self.reconcile = MerchantReconcile(ctx)

    async def handle(self, msg: Incoming) -> list[Reply]:
        await self.ctx.load_language(msg.channel, msg.user_id)
        lang = self.ctx.language(msg.channel, msg.user_id, msg.language)
        admission = await self.flood.admit(msg.channel, msg.user_id) if self.flood else Admission.ANSWER
        if admission is not Admission.ANSWER:
            # one notice per flood, then silence: a flooding user must not spend the bot's platform quota
            return [Reply(self.ctx.tr(lang, "risk.slow_down"))] if admission is Admission.NOTICE else []
        try:
            if msg.button:
                return await self._button(msg, lang)
            return await self._text(msg, lang)
        except ShopError as exc:
            log.info("event=conversation.refused channel=%s user=%s error=%s", msg.channel, msg.user_id,
                     exc.message_id)
            params = {k: v for k, v in exc.params.items() if k in ("min", "max", "available", "limit", "sku", "line",
                                                                 "seconds")}
            text = self.ctx.tr(lang, exc.message_id, **params)
            if self.ctx.is_merchant(msg.channel, msg.user_id) and str(exc) != exc.message_id:
                text += f"\n({exc})"  # merchants see the detail; it never contains codes or keys
            return [Reply(text)]
        except ValueError:
            return [Reply(self.ctx.tr(lang, "error.bad_input"))]

    async def _button(self, msg: Incoming, lang: str) -> list[Reply]:
        kind, _, arg = msg.button.partition(":")
        simple: dict[str, Callable[[], Awaitable[list[Reply]]]] = {
            "menu": lambda: self.storefront.menu(msg, lang),
            "shop": lambda: self.storefront.categories(msg, lang),
            "help": lambda: self.storefront.help(msg, lang),
            "language": lambda: self.storefront.language_menu(msg, lang),
            "contact": lambda: self.storefront.contact(msg, lang),
        }
        if kind in simple:
            return await simple[kind]()
        by_id = {"cat": self.storefront.category, "prod": self.storefront.product, "sku": self.storefront.sku}
        if kind in by_id:
            return await by_id[kind](msg, lang, _int(arg))
        if kind == "qty":
            sku_id, _, qty = arg.partition(":")
            return await self.storefront.confirm(msg, lang, _int(sku_id), _int(qty))
        if kind == "buy":
            parts = arg.split(":")
            seen = _int(parts[2]) if len(parts) == 3 else None
            return await self.storefront.buy(msg, lang, _int(parts[0]), _int(parts[1] if len(parts) > 1 else ""), seen)
        if kind in ("rbuy", "rchange", "rcancel"):
            return await self._recharge_button(msg, lang, kind, arg)
        by_ref = {"cancel": self.storefront.cancel, "codes": self.storefront.codes_again}
        if kind in by_ref:
            return await by_ref[kind](msg, lang, arg)
        if kind == "orders":
            return await self.storefront.orders(msg, lang, _int(arg or "0"))
        if kind in ("human", "badcode"):  # after-sales: talk to a person, report a code as bad
            return await self.after.button(msg, lang, kind, arg)
        merchant_buttons = {"mrefund": self.merchant.refund_confirmed, "rv": self.risk.button}
        if kind in merchant_buttons and self.ctx.is_merchant(msg.channel, msg.user_id):
            return await merchant_buttons[kind](msg, lang, arg)
        if kind == "lang" and arg in ("zh_CN", "en"):
            return await self.storefront.set_language(msg, arg)
        return [Reply(self.ctx.tr(lang, "error.bad_input"))]

    async def _recharge_button(self, msg: Incoming, lang: str, kind: str, arg: str) -> list[Reply]:
        """A direct-recharge checkout's buttons: confirm the target shown back, change it, or back out."""
        parts = arg.split(":")
        if kind == "rbuy" and len(parts) == 3:
            return await self.storefront.recharge_buy(msg, lang, _int(parts[0]), _int(parts[1]), _int(parts[2]))
        if kind == "rchange":
            return await self.storefront.recharge_change(msg, lang, _int(parts[0]))
        if kind == "rcancel":
            return await self.storefront.recharge_cancel(msg, lang, _int(parts[0]))
        return [Reply(self.ctx.tr(lang, "error.bad_input"))]

    async def _free_text(self, msg: Incoming, lang: str, text: str) -> list[Reply]:
        if text and await self.storefront.waiting_for_target(msg):  # the mobile number / id a recharge asked for
            return await self.storefront.target_typed(msg, lang, text)
        if not text or self.ctx.is_merchant(msg.channel, msg.user_id):
            return await self.storefront.menu(msg, lang)
        return await self.after.answer(msg, lang, text)  # a customer's question: the after-sales assistant

    async def _risk_or_tickets(self, msg: Incoming, lang: str, command: str, rest: str) -> list[Reply] | None:
        """Merchant risk, ticket and FAQ commands; None: not one of them (or not a merchant)."""
        if not self.ctx.is_merchant(msg.channel, msg.user_id):
            return None
        if command == "faq":
            return await self.faq.handle(msg, lang, rest)
        if command in TICKET_COMMANDS:
            return await self.tickets.handle(msg, lang, command, rest)
        if command in SUPPLY_COMMANDS:
            return await self.supply.handle(msg, lang, command, rest)
        if command in DISTRIBUTOR_COMMANDS:
            return await self.distributors.handle(msg, lang, command, rest)
        if command in RECONCILE_COMMANDS:
            return await self.reconcile.handle(msg, lang, command, rest)
        if command not in RISK_COMMANDS:
            return None
        await self.ctx.services.audit.record(msg.channel, msg.user_id, command, rest)
        if command == "risk":
            return await self.risk.risk(msg, lang, rest)
        if command == "review":
            return await self.risk.review_queue(lang)
        handler = self.risk.approve if command == "approve" else self.risk.reject
        return await handler(msg, lang, rest)

    async def _text(self, msg: Incoming, lang: str) -> list[Reply]:
        text = msg.text.strip()[:MAX_TEXT]
        if not text.startswith("/"):
            return await self._free_text(msg, lang, text)
        command, _, rest = text[1:].partition(" ")
        command = command.split("@", 1)[0].lower()
        handled = await self._risk_or_tickets(msg, lang, command, rest.strip())
        if handled is not None:
            return handled
        if command in MERCHANT_COMMANDS:
            if not self.ctx.is_merchant(msg.channel, msg.user_id):
                # answered like any unknown command: nothing tells a stranger that admin commands exist
                return [Reply(self.ctx.tr(lang, "error.unknown_command"))]
            return await self.merchant.handle(msg, lang, command, rest.strip())
        if command == "start":
            return await self.storefront.start(msg, lang, rest.strip())
        if command == "shop":
            return await self.storefront.categories(msg, lang)
        if command == "orders":
            if rest.strip() and self.ctx.is_merchant(msg.channel, msg.user_id):
                return await self.merchant.handle(msg, lang, "orders", rest.strip())
            return await self.storefront.orders(msg, lang, 0)
        if command == "help":
            return await self.storefront.help(msg, lang)
        if command == "language":
            return await self.storefront.language_menu(msg, lang)
        if command == "cancel" and rest.strip():
            return await self.storefront.cancel(msg, lang, rest.strip().upper())
        if command == "cancel":  # leaves a recharge checkout waiting for its target
            return await self.storefront.recharge_cancel(msg, lang)
        return [Reply(self.ctx.tr(lang, "error.unknown_command"))]
