"""Merchant commands in chat: /stock, /price, /sku, /import, /order, /report, /dashboard (merchant ids only)."""

from __future__ import annotations

import logging
import shlex

from fulfillment.catalog import SKU_OPTIONS, sku_options, sku_spec
from fulfillment.errors import BadPrice, BadQuantity, ImportRefused, NotAllowed, UnknownOrder
from fulfillment.importer import ImportSource, detect_kind, parse_unit_cost
from handlers.context import ShopContext
from handlers.render import order_line, sku_name
from handlers.report_admin import MerchantReports
from handlers.types import Button, Incoming, Reply
from locales import Translator
from storage.records import BatchStats, Order

log = logging.getLogger("kamibot.merchant")
READ_ONLY = {"stock", "order", "orders", "report", "dashboard"}
NEW_SKU_KEYS = frozenset({"product", "pool", "name_en", "name_zh", "units", "min", "max", "limit", "target"})
EDIT_SKU_KEYS = frozenset({"name_en", "name_zh", "units", "min", "max", "limit", "active", "target"})
INVALID_LINES_SHOWN = 20


class SupplierOrderOpen(NotAllowed):
    """A refund of an order whose supplier order is planned, sent or unknown: the customer may yet be served (or
    credited), so the money stays until the supplier answers (as fail_backorder refuses the automatic refund)."""

    message_id = "merchant.refund_supplier_open"


def _options(args: list[str]) -> dict[str, str]:
    out = {}
    for arg in args:
        if "=" not in arg:
            raise BadQuantity(f"expected key=value, got {arg!r}")
        key, value = arg.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def import_summary(tr: Translator, lang: str, stats: BatchStats, pool_slug: str) -> str:
    """What an import did, for the merchant who sent the codes (a file in chat, or pasted in WeChat)."""
    lines = [tr(lang, "import.summary", imported=stats.imported, dup_file=stats.duplicate_in_batch,
                dup_vault=stats.duplicate_in_vault, invalid=len(stats.invalid), pool=pool_slug)]
    lines += [tr(lang, "import.invalid_line", line=no, reason=why) for no, why in stats.invalid[:INVALID_LINES_SHOWN]]
    return "\n".join(lines)


class MerchantCommands:
    """What every group of merchant commands shares: the context, order lookups, the translator."""

    def __init__(self, ctx: ShopContext) -> None:
        self.ctx = ctx
        self.aftersale = ctx.services.aftersales

    def _t(self, lang: str, msgid: str, **params: object) -> str:
        return self.ctx.tr(lang, msgid, **params)


class Merchant(MerchantCommands):

    async def handle(self, msg: Incoming, lang: str, command: str, rest: str) -> list[Reply]:
        args = shlex.split(rest) if rest else []
        log.info("event=merchant.command channel=%s user=%s command=%s", msg.channel, msg.user_id, command)
        if command not in READ_ONLY:  # every merchant action is audited (file contents never are)
            await self.ctx.services.audit.record(msg.channel, msg.user_id, command, rest)
        if command == "stock":
            return await self.stock(lang)
        if command == "price":
            return await self.price(msg, lang, args)
        if command == "sku":
            return await self.sku(lang, args)
        if command == "import":
            return await self.import_file(msg, lang, args)
        if command == "order":
            return await self.order(lang, args)
        if command == "report":
            return await self.report(lang, args)
        if command == "dashboard":
            return await MerchantReports(self.ctx).dashboard(lang, args)
        if command == "refund":
            return await self.refund_prompt(lang, args)
        if command == "resend":
            order = await self.aftersale.resend(args[0] if args else "", msg.user_id)
            return [Reply(self._t(lang, "merchant.resend_queued", ref=order.ref))]
        if command == "orders":
            return await self.user_orders(msg, lang, args)
        if command == "broadcast":
            return await self.broadcast(msg, lang, rest)
        return [Reply(self._t(lang, "merchant.help"))]

    async def stock(self, lang: str) -> list[Reply]:
        lines = [self._t(lang, "merchant.stock_title")]
        listing = await self.ctx.catalog.stock_listing()
        for lv in listing.pools:
            mark = "⚠️ " if listing.low(lv) else ""
            lines.append(self._t(lang, "merchant.stock_pool", mark=mark, pool=lv.pool_slug, available=lv.available,
                                 reserved=lv.reserved))
        for item in listing.skus:
            lines.append(self._t(lang, "merchant.stock_sku", sku=item.sku.slug, name=sku_name(item.sku, lang),
                                 count=item.sellable))
        return [Reply("\n".join(lines))]

    async def price(self, msg: Incoming, lang: str, args: list[str]) -> list[Reply]:
        if len(args) not in (2, 3):
            raise BadPrice("usage: /price SKU AMOUNT [channel]")
        channel = args[2] if len(args) == 3 else msg.channel
        price = await self.ctx.catalog.set_price(args[0], channel, args[1])
        return [Reply(self._t(lang, "merchant.price_set", sku=args[0], channel=channel,
                              price=self.ctx.tr.money(lang, price.amount, price.currency)))]

    async def sku(self, lang: str, args: list[str]) -> list[Reply]:
        if not args:
            lines = [self._t(lang, "merchant.sku_title")]
            for s in await self.ctx.catalog.skus():
                prices = ", ".join(f"{p.channel} {self.ctx.tr.money(lang, p.amount, p.currency)}"
                                   for p in await self.ctx.catalog.prices(s.id))
                lines.append(self._t(lang, "merchant.sku_line", id=s.id, sku=s.slug, name=sku_name(s, lang),
                                     min=s.min_qty, max=s.max_qty, limit=s.per_user_limit or "-",
                                     active="✓" if s.active else "✗", prices=prices or "-")
                             + (self._t(lang, "recharge.sku_rule", rule=s.target_rule) if s.target_rule else ""))
            return [Reply("\n".join(lines))]
        if args[0] == "new":
            return await self.sku_create(lang, args[1:])
        sku = await self.ctx.catalog.edit_sku(args[0], sku_options(_options(args[1:]), EDIT_SKU_KEYS))
        return [Reply(self._t(lang, "merchant.sku_saved", sku=sku.slug))]

    async def sku_create(self, lang: str, args: list[str]) -> list[Reply]:
        """/sku new SLUG product=P pool=POOL name_en=… name_zh=… [units= min= max= limit= target=mobile|re:PATTERN]"""
        if not args:
            raise BadQuantity("usage: /sku new SLUG product=P pool=POOL name_en=… name_zh=…")
        fields = sku_options(_options(args[1:]), NEW_SKU_KEYS)
        for key in ("product", "pool", "name_en", "name_zh"):
            if SKU_OPTIONS[key] not in fields:
                raise BadQuantity(f"missing {key}=")
        await self.ctx.catalog.save_sku(sku_spec({"slug": args[0], **fields}))
        return [Reply(self._t(lang, "merchant.sku_saved", sku=args[0]))]

    async def import_file(self, msg: Incoming, lang: str, args: list[str]) -> list[Reply]:
        if not args or msg.attachment is None:
            raise ImportRefused("send a .txt or .csv file with caption /import SKU_OR_POOL [cost=N] [supplier=X]")
        opts = _options(args[1:])
        cost = parse_unit_cost(opts.get("cost", "0"))
        pool = await self.ctx.catalog.find_pool(args[0])
        src = ImportSource(msg.attachment.path, detect_kind(msg.attachment.path))
        stats = await self.ctx.services.importer.run(pool, src, supplier=opts.get("supplier", ""), unit_cost=cost,
                                                     currency=opts.get("currency", "CNY"))
        return [Reply(import_summary(self.ctx.tr, lang, stats, pool.slug))]

    async def order(self, lang: str, args: list[str]) -> list[Reply]:
        if not args:
            raise UnknownOrder("usage: /order REF")
        order = await self.aftersale.find(args[0])
        lines = [self._t(lang, "merchant.order_head", ref=order.ref, id=order.id, user=order.user_id,
                         channel=order.channel, quantity=order.quantity,
                         total=self.ctx.tr.money(lang, order.amount, order.currency),
                         state=self._t(lang, f"state.{order.state.value}"))]
        if order.target:  # merchants see a recharge order's target in full (lists mask it)
            lines.append(self._t(lang, "recharge.merchant_target", target=order.target))
        for ev in await self.ctx.services.lookup.events(order.id):
            lines.append(f"{self.ctx.tr.when(lang, ev.at, self.ctx.timezone)} {ev.from_state or '-'} → "
                         f"{ev.to_state} ({ev.cause})")
        return [Reply("\n".join(lines))]

    async def refund_prompt(self, lang: str, args: list[str]) -> list[Reply]:
        order = await self.aftersale.find(args[0] if args else "")
        await self._no_open_supplier_order(order)
        total = self.ctx.tr.money(lang, order.amount, order.currency)
        button = Button(self._t(lang, "merchant.refund_button", ref=order.ref), f"mrefund:{order.ref}")
        return [Reply(self._t(lang, "merchant.refund_confirm", ref=order.ref, total=total), [[button]])]

    async def _no_open_supplier_order(self, order: Order) -> None:
        for p in await self.aftersale.db.order_procurements(order.id):
            if p.state.open:
                raise SupplierOrderOpen(f"order {order.ref}: supplier order {p.our_ref} at {p.supplier} is"
                                        f" {p.state.value}")

    async def refund_confirmed(self, msg: Incoming, lang: str, ref: str) -> list[Reply]:
        await self._no_open_supplier_order(await self.aftersale.find(ref))
        order = await self.aftersale.request_refund(ref, msg.user_id)
        await self.ctx.services.audit.record(msg.channel, msg.user_id, "refund.confirmed", order.ref)
        await self.ctx.delivery.run_once()
        return [Reply(self._t(lang, "merchant.refund_queued", ref=order.ref))]

    async def user_orders(self, msg: Incoming, lang: str, args: list[str]) -> list[Reply]:
        user = (args[0] if args else "").lstrip("@")
        channel = args[1] if len(args) > 1 else msg.channel
        lines = [self._t(lang, "merchant.user_orders", channel=channel, user=user)]
        for found in await self.ctx.services.lookup.for_user(channel, user, 20):
            lines.append(order_line(self.ctx.tr, lang, found.order, found.sku, self.ctx.timezone))
        return [Reply("\n".join(lines))]

    async def broadcast(self, msg: Incoming, lang: str, text: str) -> list[Reply]:
        broadcaster = self.ctx.broadcasters.get(msg.channel)
        if broadcaster is None or not text.strip():
            return [Reply(self._t(lang, "merchant.broadcast_unavailable"))]
        reply_to = self.ctx.senders.get(msg.channel)

        async def report(sent: int, unreachable: int, finished: bool) -> None:
            msgid = "merchant.broadcast_done" if finished else "merchant.broadcast_progress"
            if reply_to is not None:
                await reply_to(msg.chat_id, Reply(self._t(lang, msgid, sent=sent, unreachable=unreachable)))

        self.ctx.spawn(broadcaster.broadcast(text.strip(), report))
        return [Reply(self._t(lang, "merchant.broadcast_started"))]

    async def report(self, lang: str, args: list[str]) -> list[Reply]:
        return await MerchantReports(self.ctx).report(lang, args)  # handlers/report_admin.py
