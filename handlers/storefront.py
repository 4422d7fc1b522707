"""The customer conversation: menu, catalogue, quantity, checkout, my orders, codes again, language.

Stateless between messages: every button carries what the next step needs, so
any process can answer any press. The one exception is a direct-recharge SKU's
target (mobile number, account id), typed as free text: the checkout it belongs
to waits in the shared store (fulfillment.recharge_drafts) until it arrives.
"""

from __future__ import annotations

from fulfillment.orders import WITH_CODES
from fulfillment.recharge_drafts import RechargeDraft
from fulfillment.recharge_target import MOBILE, BadTarget, carrier_of, check_target
from handlers.context import ShopContext
from handlers.render import delivery_reply, order_line, product_name, sku_name, stock_label
from handlers.types import Button, Incoming, Invoice, Reply
from storage.records import Sku

ORDERS_PAGE = 5
QUICK_QUANTITIES = (1, 2, 3, 5, 10)


class Storefront:
    def __init__(self, ctx: ShopContext) -> None:
        self.ctx = ctx

    def _t(self, lang: str, msgid: str, **params: object) -> str:
        return self.ctx.tr(lang, msgid, **params)

    async def menu(self, msg: Incoming, lang: str) -> list[Reply]:
        rows = [[Button(self._t(lang, "menu.shop"), "shop"), Button(self._t(lang, "menu.orders"), "orders:0")],
                [Button(self._t(lang, "menu.help"), "help"), Button(self._t(lang, "menu.contact"), "contact")],
                [Button(self._t(lang, "menu.language"), "language")]]
        return [Reply(self._t(lang, "menu.welcome"), rows)]

    async def start(self, msg: Incoming, lang: str, payload: str) -> list[Reply]:
        # deep links: /start sku_<id> opens a product, /start ref_<user> records who sent this customer
        referrer = payload[4:64] if payload.startswith("ref_") else ""
        await self.ctx.services.customers.touch(msg.channel, msg.user_id, msg.chat_id, referrer)
        if payload.startswith("sku_") and payload[4:].isdigit():
            return await self.sku(msg, lang, int(payload[4:]))
        return await self.menu(msg, lang)

    async def categories(self, msg: Incoming, lang: str) -> list[Reply]:
        cats = await self.ctx.catalog.categories()
        if not cats:
            return [Reply(self._t(lang, "shop.empty"), [[Button(self._t(lang, "menu.back"), "menu")]])]
        rows = [[Button(c.name_zh if lang == "zh_CN" else c.name_en, f"cat:{c.id}")] for c in cats]
        rows.append([Button(self._t(lang, "menu.back"), "menu")])
        return [Reply(self._t(lang, "shop.categories"), rows)]

    async def category(self, msg: Incoming, lang: str, category_id: int) -> list[Reply]:
        products = [p for p in await self.ctx.catalog.products(category_id) if p.active]
        rows = [[Button(product_name(p, lang), f"prod:{p.id}")] for p in products]
        rows.append([Button(self._t(lang, "menu.back"), "shop")])
        text = self._t(lang, "shop.products") if products else self._t(lang, "shop.empty")
        return [Reply(text, rows)]

    async def product(self, msg: Incoming, lang: str, product_id: int) -> list[Reply]:
        product = await self.ctx.catalog.product(product_id)
        if product is None or not product.active:
            return [Reply(self._t(lang, "error.unknown_sku"))]
        lines = [product_name(product, lang)]
        description = product.description_zh if lang == "zh_CN" else product.description_en
        if description:
            lines.append(description)
        rows = []
        for sku in await self.ctx.catalog.skus(product.id):
            if not sku.active:
                continue
            price = await self._price(sku.id, msg.channel)
            if price is None:
                continue
            available = await self._sellable(sku)
            label = f"{sku_name(sku, lang)} · {self.ctx.tr.money(lang, price[0], price[1])}"
            lines.append(f"• {label} · {stock_label(self.ctx.tr, lang, available)}")
            rows.append([Button(label, f"sku:{sku.id}")])
        rows.append([Button(self._t(lang, "menu.back"), f"cat:{product.category_id}")])
        return [Reply("\n".join(lines), rows)]

    async def _price(self, sku_id: int, channel: str) -> tuple[int, str] | None:
        price = await self.ctx.catalog.price_on(sku_id, channel)
        return (price.amount, price.currency) if price is not None else None

    async def _sellable(self, sku: Sku) -> int:
        """Own stock, plus what a sourced SKU's healthy suppliers report when the supply side is running."""
        return await self.ctx.catalog.sellable(sku)

    async def sku(self, msg: Incoming, lang: str, sku_id: int) -> list[Reply]:
        sku = await self.ctx.catalog.sku(sku_id)
        price = await self._price(sku_id, msg.channel) if sku else None
        if sku is None or not sku.active or price is None:
            return [Reply(self._t(lang, "error.unknown_sku"))]
        available = await self._sellable(sku)
        top = min(sku.max_qty, available)
        text = self._t(lang, "shop.sku", name=sku_name(sku, lang), price=self.ctx.tr.money(lang, *price),
                       stock=stock_label(self.ctx.tr, lang, available))
        if top < sku.min_qty:
            return [Reply(text + "\n" + self._t(lang, "shop.sold_out"),
                          [[Button(self._t(lang, "menu.back"), f"prod:{sku.product_id}")]])]
        choices = [q for q in QUICK_QUANTITIES if sku.min_qty <= q <= top] or [sku.min_qty]
        rows = [[Button(str(q), f"qty:{sku.id}:{q}") for q in choices]]
        rows.append([Button(self._t(lang, "menu.back"), f"prod:{sku.product_id}")])
        return [Reply(text + "\n" + self._t(lang, "shop.pick_quantity", min=sku.min_qty, max=top), rows)]

    async def confirm(self, msg: Incoming, lang: str, sku_id: int, quantity: int) -> list[Reply]:
        sku = await self.ctx.catalog.sku(sku_id)
        price = await self._price(sku_id, msg.channel) if sku else None
        if sku is None or price is None:
            return [Reply(self._t(lang, "error.unknown_sku"))]
        if sku.target_rule is not None:  # a direct recharge: ask what to credit before anything is reserved
            await self.ctx.services.recharge_drafts.start(msg.channel, msg.user_id,
                                                          RechargeDraft(sku_id, quantity, price[0]))
            return await self._ask_target(lang, sku, quantity, price)
        total = self.ctx.tr.money(lang, price[0] * quantity, price[1])
        # the unit price rides in the button: a press after a price change is caught, not charged blindly
        rows = [[Button(self._t(lang, "shop.confirm_button"), f"buy:{sku_id}:{quantity}:{price[0]}"),
                 Button(self._t(lang, "menu.back"), f"sku:{sku_id}")]]
        return [Reply(self._t(lang, "shop.confirm", name=sku_name(sku, lang), quantity=quantity, total=total), rows)]

    async def buy(self, msg: Incoming, lang: str, sku_id: int, quantity: int,
                  seen_price: int | None = None, target: str | None = None) -> list[Reply]:
        from fulfillment.errors import PriceChanged
        from fulfillment.orders import CheckoutRequest

        try:
            order = await self.ctx.orders.checkout(CheckoutRequest(msg.channel, msg.user_id, msg.chat_id, sku_id,
                                                                   quantity, lang, seen_unit_price=seen_price,
                                                                   target=target))
        except PriceChanged:
            again = await self.confirm(msg, lang, sku_id, quantity)
            return [Reply(self._t(lang, "shop.price_changed") + "\n" + again[0].text, again[0].buttons)]
        sku = await self.ctx.catalog.sku(sku_id)
        assert sku is not None
        await self.ctx.orders.await_payment(order)
        minutes = max(1, int((order.expires_at - order.created_at).total_seconds() // 60))
        invoice = Invoice(order.ref, sku_name(sku, lang), self._t(lang, "pay.invoice_description",
                          ref=order.ref, quantity=quantity), order.amount, order.currency)
        text = self._t(lang, "pay.invoice", ref=order.ref, total=self.ctx.tr.money(lang, order.amount,
                       order.currency), minutes=minutes)
        return [Reply(text, [[Button(self._t(lang, "pay.cancel_button"), f"cancel:{order.ref}")]], invoice=invoice)]

    # -- direct recharge: the target typed, shown back, confirmed ---------------------------------------------
    async def _ask_target(self, lang: str, sku: Sku, quantity: int, price: tuple[int, str],
                          problem: str = "") -> list[Reply]:
        ask = "recharge.ask_mobile" if sku.target_rule == MOBILE else "recharge.ask_account"
        text = self._t(lang, ask, name=sku_name(sku, lang), quantity=quantity,
                       total=self.ctx.tr.money(lang, price[0] * quantity, price[1]))
        rows = [[Button(self._t(lang, "recharge.cancel_button"), f"rcancel:{sku.id}")]]
        return [Reply((problem + "\n" if problem else "") + text, rows)]

    async def waiting_for_target(self, msg: Incoming) -> bool:
        """Whether this user's free text answers a recharge checkout's question."""
        return await self.ctx.services.recharge_drafts.current(msg.channel, msg.user_id) is not None

    def target_label(self, lang: str, sku: Sku, target: str) -> str:
        """A target as shown back: a mobile number with its carrier ("13800138000 (China Mobile)")."""
        carrier = carrier_of(target) if sku.target_rule == MOBILE else None
        if carrier is None:
            return target
        carrier_name = self._t(lang, f"recharge.carrier.{carrier}")
        return self._t(lang, "recharge.with_carrier", target=target, carrier=carrier_name)

    async def target_typed(self, msg: Incoming, lang: str, text: str) -> list[Reply]:
        """The customer typed the target: a bad one is explained and asked again, a good one shown back."""
        drafts = self.ctx.services.recharge_drafts
        draft = await drafts.current(msg.channel, msg.user_id)
        sku = await self.ctx.catalog.sku(draft.sku_id) if draft else None
        price = await self._price(sku.id, msg.channel) if sku else None
        if draft is None or sku is None or sku.target_rule is None or not sku.active or price is None:
            await drafts.drop(msg.channel, msg.user_id)
            return [Reply(self._t(lang, "error.unknown_sku"), [[Button(self._t(lang, "menu.shop"), "shop")]])]
        try:
            target = check_target(sku.target_rule, text)
        except BadTarget as exc:
            return await self._ask_target(lang, sku, draft.quantity, price, self._t(lang, f"recharge.bad.{exc.reason}"))
        await drafts.start(msg.channel, msg.user_id, RechargeDraft(sku.id, draft.quantity, draft.unit_price, target))
        total = self.ctx.tr.money(lang, draft.unit_price * draft.quantity, price[1])
        text = self._t(lang, "recharge.confirm", target=self.target_label(lang, sku, target), quantity=draft.quantity,
                       name=sku_name(sku, lang), total=total)
        rows = [[Button(self._t(lang, "recharge.confirm_button"), f"rbuy:{sku.id}:{draft.quantity}:{draft.unit_price}"),
                 Button(self._t(lang, "recharge.change_button"), f"rchange:{sku.id}")],
                [Button(self._t(lang, "recharge.cancel_button"), f"rcancel:{sku.id}")]]
        return [Reply(text, rows)]

    async def recharge_buy(self, msg: Incoming, lang: str, sku_id: int, quantity: int, seen_price: int) -> list[Reply]:
        """Confirmed: check out with the target shown back (a draft expired or of another SKU asks again)."""
        drafts = self.ctx.services.recharge_drafts
        draft = await drafts.current(msg.channel, msg.user_id)
        if draft is None or draft.target is None or (draft.sku_id, draft.quantity) != (sku_id, quantity):
            again = await self.confirm(msg, lang, sku_id, quantity)
            return [Reply(self._t(lang, "recharge.expired") + "\n" + again[0].text, again[0].buttons)]
        replies = await self.buy(msg, lang, sku_id, quantity, seen_price, draft.target)
        if replies[0].invoice is not None:  # ordered; a changed price asked for the target again (a new draft)
            await drafts.drop(msg.channel, msg.user_id)
        return replies

    async def recharge_change(self, msg: Incoming, lang: str, sku_id: int) -> list[Reply]:
        draft = await self.ctx.services.recharge_drafts.current(msg.channel, msg.user_id)
        if draft is None or draft.sku_id != sku_id:
            return await self.sku(msg, lang, sku_id)
        return await self.confirm(msg, lang, sku_id, draft.quantity)

    async def recharge_cancel(self, msg: Incoming, lang: str, sku_id: int | None = None) -> list[Reply]:
        """Back out of a recharge checkout (its button, or /cancel): nothing was reserved."""
        await self.ctx.services.recharge_drafts.drop(msg.channel, msg.user_id)
        if sku_id is not None:
            return await self.sku(msg, lang, sku_id)
        return [Reply(self._t(lang, "recharge.cancelled"), [[Button(self._t(lang, "menu.shop"), "shop")]])]

    async def cancel(self, msg: Incoming, lang: str, ref: str) -> list[Reply]:
        await self.ctx.orders.cancel(ref, msg.user_id)
        return [Reply(self._t(lang, "pay.cancelled", ref=ref), [[Button(self._t(lang, "menu.shop"), "shop")]])]

    async def orders(self, msg: Incoming, lang: str, page: int) -> list[Reply]:
        orders, older = await self.ctx.services.lookup.page(msg.channel, msg.user_id, ORDERS_PAGE, page)
        if not orders and page == 0:
            return [Reply(self._t(lang, "orders.none"), [[Button(self._t(lang, "menu.shop"), "shop")]])]
        lines = [self._t(lang, "orders.title")]
        rows = []
        for found in orders:
            order = found.order
            lines.append(order_line(self.ctx.tr, lang, order, found.sku, self.ctx.timezone))
            if order.state in WITH_CODES and not order.target:  # a top-up has no codes to show
                rows.append([Button(self._t(lang, "orders.show_codes", ref=order.ref), f"codes:{order.ref}")])
        nav = []
        if page > 0:
            nav.append(Button(self._t(lang, "orders.newer"), f"orders:{page - 1}"))
        if older:
            nav.append(Button(self._t(lang, "orders.older"), f"orders:{page + 1}"))
        if nav:
            rows.append(nav)
        rows.append([Button(self._t(lang, "menu.back"), "menu")])
        return [Reply("\n".join(lines), rows)]

    async def codes_again(self, msg: Incoming, lang: str, ref: str) -> list[Reply]:
        """Codes only to the buyer of that order, in the channel it was bought in."""
        order = await self.ctx.services.lookup.buyers_order(ref, msg.channel, msg.user_id)
        if order is None:
            return [Reply(self._t(lang, "error.unknown_order"))]
        if order.state not in WITH_CODES:
            return [Reply(self._t(lang, "orders.no_codes", ref=ref))]
        delivery = await self.ctx.delivery.build(order.id, "resend")
        return [delivery_reply(self.ctx.tr, delivery, lang)]

    async def contact(self, msg: Incoming, lang: str) -> list[Reply]:
        contact = self.ctx.support_contact
        text = self._t(lang, "contact.text", contact=contact) if contact else self._t(lang, "contact.none")
        return [Reply(text, [[Button(self._t(lang, "menu.back"), "menu")]])]

    async def help(self, msg: Incoming, lang: str) -> list[Reply]:
        return [Reply(self._t(lang, "help.text"), [[Button(self._t(lang, "menu.back"), "menu")]])]

    async def language_menu(self, msg: Incoming, lang: str) -> list[Reply]:
        choices = [[Button("简体中文", "lang:zh_CN"), Button("English", "lang:en")]]
        return [Reply(self._t(lang, "language.pick"), choices)]

    async def set_language(self, msg: Incoming, choice: str) -> list[Reply]:
        await self.ctx.choose_language(msg.channel, msg.user_id, msg.chat_id, choice)
        return await self.menu(msg, choice)
