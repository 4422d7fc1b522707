"""The after-sales assistant: a customer's free text is classified (handlers.faq) and answered from the
customer's own orders; where the answer is an action it is done — a resend, a push of the delivery outbox,
a ticket to the merchant — and where the matcher is unsure, the customer is asked instead of guessed for.

Refunds are never made here: a refund question shows the policy and opens a ticket for a person.
Only the asker's own orders are looked at; another customer's order number is answered as unknown.
The verbs (resend, bad-code report with the auto-replace policy, tickets) are
fulfillment.aftersales.AfterSalesService's (`ctx.services.aftersales`); this dialog chooses and words them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence

from fulfillment.errors import BadInput, NoCodes, UnknownOrder
from fulfillment.orders import ON_THE_WAY, PAID_OR_IN_REVIEW, REFUNDABLE, UNPAID, WITH_CODES
from handlers.context import ShopContext
from handlers.faq import FaqMatcher, Match
from handlers.render import order_line, product_name
from handlers.storefront import Storefront
from handlers.tickets_admin import _about, mask_codes, notify_merchants, tell_merchants
from handlers.types import Button, Incoming, Reply
from storage.records import BadCodeReported, NewTicket, Order, OrderState, Ticket

log = logging.getLogger("kamibot.aftersales")
RECENT = 10  # how many of the customer's latest orders an answer looks at
MAX_REFS = 5  # order numbers answered from one message
MAX_REPORT_BUTTONS = 5
S = OrderState


async def faq_matcher(ctx: ShopContext) -> FaqMatcher:
    """The context's matcher; without one, the shop's built-in one (built off the event loop)."""
    if ctx.faq is None:
        ctx.faq = await ctx.faq_builtin.get()
    return ctx.faq


class AfterSalesDialog:
    def __init__(self, ctx: ShopContext, storefront: Storefront,
                 matcher: Callable[[], Awaitable[FaqMatcher]] | None = None) -> None:
        self.ctx = ctx
        self.service = ctx.services.aftersales
        self.storefront = storefront
        self.matcher = matcher or (lambda: faq_matcher(ctx))  # with merchant entries: MerchantFaq.current

    def _t(self, lang: str, msgid: str, **params: object) -> str:
        return self.ctx.tr(lang, msgid, **params)

    # -- buttons offered in answers --------------------------------------------------
    def _shop(self, lang: str) -> Button:
        return Button(self._t(lang, "menu.shop"), "shop")

    def _orders(self, lang: str) -> Button:
        return Button(self._t(lang, "menu.orders"), "orders:0")

    def _human(self, lang: str) -> Button:
        return Button(self._t(lang, "after.button_human"), "human")

    # -- entry points ----------------------------------------------------------------
    async def answer(self, msg: Incoming, lang: str, text: str) -> list[Reply]:
        """Free text from a customer."""
        matcher = await self.matcher()
        match = matcher.classify(text)
        log.info("event=aftersales.intent channel=%s user=%s intent=%s best=%s confidence=%s refs=%s",
                 msg.channel, msg.user_id, match.intent, match.best, match.confidence, len(match.order_refs))
        handlers: dict[str, Callable[[Incoming, str, Match, str], Awaitable[list[Reply]]]] = {
            "order_status": self.order_status,
            "not_received": self.not_received,
            "code_invalid": self.code_invalid,
            "refund": self.refund,
            "human": self.human,
            "how_to_redeem": self.how_to_redeem,
        }
        handler = handlers.get(match.intent)
        if handler is not None:
            return await handler(msg, lang, match, text)
        simple = {
            "payment_help": (self._t(lang, "after.payment_help"), [[self._shop(lang), self._orders(lang)]]),
            "price_stock": (self._t(lang, "after.price_stock"), [[self._shop(lang)]]),
            "invoice": (self._t(lang, "after.invoice"), [[self._human(lang), self._orders(lang)]]),
            "greeting": (self._t(lang, "after.greeting"), [[self._shop(lang), self._orders(lang)]]),
            "thanks": (self._t(lang, "after.thanks"), []),
        }
        if match.intent in simple:
            body, rows = simple[match.intent]
            return [Reply(body, rows)]
        entry = matcher.entry(match.intent)
        if entry is not None and not entry.builtin and entry.answer(lang):
            return [Reply(entry.answer(lang), [[self._shop(lang), self._human(lang)]])]
        talking = await self.service.live_ticket(msg.channel, msg.user_id, "human")
        if talking is not None:  # in a hand-over, what the bot does not understand goes on to the merchant
            order = await self.service.order_by_id(talking.order_id) if talking.order_id else None
            ticket = await self._open(msg, lang, "human", text, order)
            return [Reply(self._t(lang, "after.relayed", ticket=ticket.id))]
        return self.unclear(lang)

    async def button(self, msg: Incoming, lang: str, kind: str, arg: str) -> list[Reply]:
        if kind == "human":
            return await self.human(msg, lang, Match("human", 1.0), "")
        ref, _, item = arg.partition(":")
        return await self.report_bad_code(msg, lang, ref.upper(), int(item) if item.isdigit() else 0)

    def unclear(self, lang: str) -> list[Reply]:
        rows = [[self._shop(lang), self._orders(lang)], [self._human(lang)]]
        return [Reply(self._t(lang, "after.unclear"), rows)]

    # -- the customer's orders -------------------------------------------------------
    async def _own(self, msg: Incoming, ref: str) -> Order | None:
        return await self.service.customer_order(msg.channel, msg.user_id, ref)

    async def _asked(self, msg: Incoming, refs: Sequence[str]) -> tuple[list[Order], list[str]]:
        """The customer's own orders among the numbers in the text, and the numbers that are not theirs."""
        mine, unknown = [], []
        for ref in refs[:MAX_REFS]:
            order = await self._own(msg, ref)
            if order is None:
                unknown.append(ref)
            else:
                mine.append(order)
        return mine, unknown

    async def _latest(self, msg: Incoming, states: Collection[OrderState]) -> Order | None:
        for order in await self.service.recent_orders(msg.channel, msg.user_id, RECENT):
            if order.state in states:
                return order
        return None

    async def _target(self, msg: Incoming, match: Match, states: Collection[OrderState]
                      ) -> tuple[Order | None, list[str]]:
        """The order a question is about: a number in the text (the customer's own), else the latest one in
        `states`, else the latest one at all; with the asked numbers that are not the customer's."""
        mine, unknown = await self._asked(msg, match.order_refs)
        if mine:
            return mine[0], unknown
        if unknown:
            return None, unknown
        order = await self._latest(msg, states)
        if order is None:
            recent = await self.service.recent_orders(msg.channel, msg.user_id, 1)
            order = recent[0] if recent else None
        return order, []

    def _unknown(self, lang: str, refs: Sequence[str]) -> list[Reply]:
        text = "\n".join(self._t(lang, "after.order_unknown", ref=ref) for ref in refs)
        return [Reply(text, [[self._orders(lang), self._human(lang)]])]

    def _no_orders(self, lang: str) -> list[Reply]:
        return [Reply(self._t(lang, "after.no_orders"), [[self._shop(lang), self._human(lang)]])]

    # -- intents ---------------------------------------------------------------------
    async def order_status(self, msg: Incoming, lang: str, match: Match, text: str) -> list[Reply]:
        if not match.order_refs:
            return await self.storefront.orders(msg, lang, 0)
        mine, unknown = await self._asked(msg, match.order_refs)
        lines = [self._t(lang, "after.status_title")]
        rows = []
        for order in mine:
            sku = await self.service.sku(order.sku_id)
            lines.append(order_line(self.ctx.tr, lang, order, sku, self.ctx.timezone))
            if order.state in WITH_CODES:
                rows.append([Button(self._t(lang, "orders.show_codes", ref=order.ref), f"codes:{order.ref}")])
        lines += [self._t(lang, "after.order_unknown", ref=ref) for ref in unknown]
        rows.append([self._orders(lang), self._human(lang)])
        return [Reply("\n".join(lines), rows)]

    async def not_received(self, msg: Incoming, lang: str, match: Match, text: str) -> list[Reply]:
        order, unknown = await self._target(msg, match, PAID_OR_IN_REVIEW)
        if order is None:
            return self._unknown(lang, unknown) if unknown else self._no_orders(lang)
        if order.state == S.DELIVERED:
            if not await self.service.customer_resend(order):
                return [Reply(self._t(lang, "after.resent_recently", ref=order.ref), [[self._human(lang)]])]
            self.ctx.spawn(self.ctx.delivery.run_once())
            return [Reply(self._t(lang, "after.resent", ref=order.ref))]
        if order.state in ON_THE_WAY:
            self.ctx.spawn(self.ctx.delivery.run_once())  # push the outbox now rather than at the next poll
            return [Reply(self._t(lang, "after.on_the_way", ref=order.ref))]
        if order.state == S.REVIEW:
            return [Reply(self._t(lang, "after.in_review", ref=order.ref), [[self._human(lang)]])]
        if order.state in UNPAID:
            return [Reply(self._t(lang, "after.not_paid", ref=order.ref), [[self._shop(lang), self._orders(lang)]])]
        if order.state == S.EXPIRED:
            return [Reply(self._t(lang, "after.expired", ref=order.ref), [[self._shop(lang)]])]
        if order.state == S.REFUNDED:
            return [Reply(self._t(lang, "after.refunded", ref=order.ref), [[self._shop(lang)]])]
        return [Reply(self._t(lang, "after.failed", ref=order.ref, state=self._t(lang, f"state.{order.state.value}")),
                      [[self._human(lang)]])]

    async def code_invalid(self, msg: Incoming, lang: str, match: Match, text: str) -> list[Reply]:
        order, unknown = await self._target(msg, match, WITH_CODES)
        if order is None and unknown:
            return self._unknown(lang, unknown)
        if order is None or order.state not in WITH_CODES:
            return [Reply(self._t(lang, "after.no_delivered"), [[self._orders(lang), self._human(lang)]])]
        codes = await self.storefront.codes_again(msg, lang, order.ref)
        items = await self.service.order_items(order.id)
        if len(items) <= 1:
            first = items[0].item_no if items else 1  # a replaced code's order item is no longer number 1
            rows = [[Button(self._t(lang, "after.button_report"), f"badcode:{order.ref}:{first}")]]
        else:  # several codes: which one?
            rows = [[Button(self._t(lang, "after.button_report_item", item=item.item_no),
                            f"badcode:{order.ref}:{item.item_no}")] for item in items[:MAX_REPORT_BUTTONS]]
        rows.append([self._human(lang)])
        return [Reply(self._t(lang, "after.code_intro", ref=order.ref)), *codes,
                Reply(self._t(lang, "after.code_report_prompt"), rows)]

    async def report_bad_code(self, msg: Incoming, lang: str, ref: str, item_no: int) -> list[Reply]:
        report = NewTicket(msg.channel, msg.user_id, msg.chat_id, "bad_code", language=lang)
        try:
            done = await self.service.report_bad_code(report, ref, item_no, self._t(lang, "ticket.autoreplace_note"))
        except (UnknownOrder, NoCodes, BadInput) as exc:
            return [Reply(self._t(lang, exc.message_id, **exc.params))]
        if done.replaced is None:  # a ticket for the merchant
            await notify_merchants(self.ctx, done.ticket)
            return [Reply(self._t(lang, "after.bad_code_ticket", ticket=done.ticket.id, ref=ref.upper()),
                          [[self._orders(lang)]])]
        await self._tell_replaced(done)
        self.ctx.spawn(self.ctx.delivery.run_once())  # the resend row: the customer gets the new code now
        return [Reply(self._t(lang, "after.autoreplaced", ref=ref.upper(), ticket=done.ticket.id))]

    async def _tell_replaced(self, done: BadCodeReported) -> None:
        """The merchants learn of an automatic replacement (the code ids only)."""
        ticket, replaced = done.ticket, done.replaced
        assert replaced is not None

        async def notice(merchant_lang: str) -> str:
            return self.ctx.tr(merchant_lang, "ticket.autoreplace_notice", ticket=ticket.id,
                               user=f"{ticket.channel}:{ticket.user_id}",
                               order=await _about(self.ctx, merchant_lang, ticket), old=replaced.old_code_id,
                               new=replaced.new_code_id)

        await tell_merchants(self.ctx, ticket, notice)

    async def refund(self, msg: Incoming, lang: str, match: Match, text: str) -> list[Reply]:
        order, unknown = await self._target(msg, match, REFUNDABLE)
        if order is None and unknown:
            return self._unknown(lang, unknown)
        policy = self._t(lang, "after.refund_policy")
        if order is None or order.state not in REFUNDABLE:
            ticket = await self._open(msg, lang, "refund", text, None)
            return [Reply(policy + "\n\n" + self._t(lang, "after.refund_ticket", ticket=ticket.id))]
        ticket = await self._open(msg, lang, "refund", text, order)
        return [Reply(policy + "\n\n" + self._t(lang, "after.refund_ticket_order", ticket=ticket.id, ref=order.ref))]

    async def human(self, msg: Incoming, lang: str, match: Match, text: str) -> list[Reply]:
        mine, _ = await self._asked(msg, match.order_refs)
        ticket = await self._open(msg, lang, "human", text, mine[0] if mine else None)
        return [Reply(self._t(lang, "after.human_ticket", ticket=ticket.id))]

    async def how_to_redeem(self, msg: Incoming, lang: str, match: Match, text: str) -> list[Reply]:
        lines = [self._t(lang, "after.how_to_redeem")]
        order, _ = await self._target(msg, match, WITH_CODES)
        if order is not None and order.state in WITH_CODES:
            sku = await self.service.sku(order.sku_id)
            product = await self.service.product(sku.product_id) if sku else None
            instructions = (product.instructions_zh if lang == "zh_CN" else product.instructions_en) if product else ""
            if product is not None and instructions:
                lines.append(self._t(lang, "after.redeem_product", name=product_name(product, lang),
                                     instructions=instructions))
        return [Reply("\n".join(lines), [[self._orders(lang), self._human(lang)]])]

    # -- tickets ---------------------------------------------------------------------
    async def _open(self, msg: Incoming, lang: str, kind: str, text: str, order: Order | None,
                    code_id: int | None = None) -> Ticket:
        ticket = await self.service.open_ticket(NewTicket(
            msg.channel, msg.user_id, msg.chat_id, kind, mask_codes(text), order.id if order else None, code_id,
            lang))
        await notify_merchants(self.ctx, ticket)
        return ticket
