"""Merchant commands in chat: /stock, /price, /sku, /import, /order, /report (merchant ids only)."""

from __future__ import annotations

import asyncio
import logging
import shlex
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from fulfillment.catalog import ShopFile
from fulfillment.errors import BadPrice, BadQuantity, ImportRefused, UnknownOrder
from fulfillment.importer import ImportSource, detect_kind, import_codes
from fulfillment.reports import sales_report
from handlers.context import ShopContext
from handlers.render import order_line, sku_name
from handlers.types import Button, Incoming, Reply
from storage.records import Sku

log = logging.getLogger("kamibot.merchant")
SKU_FIELDS = {"name_en": str, "name_zh": str, "min": int, "max": int, "limit": int, "units": int, "active": bool}
PERIODS = {"today": 1, "7d": 7, "30d": 30}
READ_ONLY = {"stock", "order", "orders", "report"}


def _options(args: list[str]) -> dict[str, str]:
    out = {}
    for arg in args:
        if "=" not in arg:
            raise BadQuantity(f"expected key=value, got {arg!r}")
        key, value = arg.split("=", 1)
        out[key.strip()] = value.strip()
    return out


class MerchantCommands:
    """What every group of merchant commands shares: the context, order lookups, the translator."""

    def __init__(self, ctx: ShopContext) -> None:
        self.ctx = ctx
        self.aftersale = ctx.aftersales

    def _t(self, lang: str, msgid: str, **params: object) -> str:
        return self.ctx.tr(lang, msgid, **params)


class Merchant(MerchantCommands):

    async def handle(self, msg: Incoming, lang: str, command: str, rest: str) -> list[Reply]:
        args = shlex.split(rest) if rest else []
        log.info("event=merchant.command channel=%s user=%s command=%s", msg.channel, msg.user_id, command)
        if command not in READ_ONLY:  # every merchant action is audited (file contents never are)
            await self.ctx.store.audit(msg.channel, msg.user_id, command, rest[:200], datetime.now(UTC))
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
        levels = {lv.pool_id: lv for lv in await self.ctx.catalog.stock()}
        for lv in levels.values():
            mark = "⚠️ " if lv.available <= lv.low_stock else ""
            lines.append(self._t(lang, "merchant.stock_pool", mark=mark, pool=lv.pool_slug, available=lv.available,
                                 reserved=lv.reserved))
        for sku in await self.ctx.store.skus():
            lv = levels.get(sku.pool_id)
            count = lv.available // sku.units if lv else 0
            lines.append(self._t(lang, "merchant.stock_sku", sku=sku.slug, name=sku_name(sku, lang), count=count))
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
            for s in await self.ctx.store.skus():
                prices = ", ".join(f"{p.channel} {self.ctx.tr.money(lang, p.amount, p.currency)}"
                                   for p in await self.ctx.store.prices(s.id))
                lines.append(self._t(lang, "merchant.sku_line", id=s.id, sku=s.slug, name=sku_name(s, lang),
                                     min=s.min_qty, max=s.max_qty, limit=s.per_user_limit or "-",
                                     active="✓" if s.active else "✗", prices=prices or "-"))
            return [Reply("\n".join(lines))]
        if args[0] == "new":
            return await self.sku_create(lang, args[1:])
        sku = await self.ctx.catalog.find_sku(args[0])
        changed = self._edit(sku, _options(args[1:]))
        await self.ctx.store.upsert_sku(changed)
        return [Reply(self._t(lang, "merchant.sku_saved", sku=sku.slug))]

    async def sku_create(self, lang: str, args: list[str]) -> list[Reply]:
        """/sku new SLUG product=P pool=POOL name_en=… name_zh=… [units= min= max= limit=]"""
        if not args:
            raise BadQuantity("usage: /sku new SLUG product=P pool=POOL name_en=… name_zh=…")
        opts = _options(args[1:])
        spec: dict[str, object] = {"slug": args[0]}
        for key in ("product", "pool", "name_en", "name_zh"):
            if key not in opts:
                raise BadQuantity(f"missing {key}=")
            spec[key] = opts.pop(key)
        numbers = {"units": "units", "min": "min_qty", "max": "max_qty", "limit": "per_user_limit"}
        for key, value in opts.items():
            if key not in numbers or not value.isdigit():
                raise BadQuantity(f"unknown field or not a whole number: {key}")
            spec[numbers[key]] = int(value)
        try:
            shop_file = ShopFile.model_validate({"sku": [spec]})
        except ValidationError as exc:
            raise BadQuantity(str(exc.errors()[0]["msg"])) from None
        await self.ctx.catalog.apply(shop_file)
        return [Reply(self._t(lang, "merchant.sku_saved", sku=args[0]))]

    @staticmethod
    def _edit(sku: Sku, opts: dict[str, str]) -> Sku:
        names = {"min": "min_qty", "max": "max_qty", "limit": "per_user_limit"}
        changes: dict[str, object] = {}
        for key, value in opts.items():
            kind = SKU_FIELDS.get(key)
            if kind is None:
                raise BadQuantity(f"unknown field {key!r}")
            if kind is int:
                if not value.isdigit():
                    raise BadQuantity(f"{key} must be a whole number")
                changes[names.get(key, key)] = int(value)
            elif kind is bool:
                changes[key] = value.lower() in ("1", "on", "yes", "true")
            else:
                changes[key] = value
        edited = replace(sku, **changes)  # type: ignore[arg-type]
        if edited.min_qty < 1 or edited.max_qty < edited.min_qty or edited.units < 1:
            raise BadQuantity("need 1 <= min <= max and units >= 1")
        return edited

    async def import_file(self, msg: Incoming, lang: str, args: list[str]) -> list[Reply]:
        if not args or msg.attachment is None:
            raise ImportRefused("send a .txt or .csv file with caption /import SKU_OR_POOL [cost=N] [supplier=X]")
        opts = _options(args[1:])
        cost = opts.get("cost", "0")
        if not cost.isdigit():
            raise ImportRefused("cost must be a whole number of minor units")
        pool = await self.ctx.catalog.find_pool(args[0])
        src = ImportSource(msg.attachment.path, detect_kind(msg.attachment.path))
        stats = await import_codes(self.ctx.store, self.ctx.vault, pool, src, supplier=opts.get("supplier", ""),
                                   unit_cost=int(cost), currency=opts.get("currency", "CNY"))
        lines = [self._t(lang, "import.summary", imported=stats.imported, dup_file=stats.duplicate_in_batch,
                         dup_vault=stats.duplicate_in_vault, invalid=len(stats.invalid), pool=pool.slug)]
        lines += [self._t(lang, "import.invalid_line", line=no, reason=why) for no, why in stats.invalid[:20]]
        return [Reply("\n".join(lines))]

    async def order(self, lang: str, args: list[str]) -> list[Reply]:
        if not args:
            raise UnknownOrder("usage: /order REF")
        order = await self.ctx.store.order_by_ref(args[0].upper())
        if order is None and args[0].isdigit():
            order = await self.ctx.store.order_by_id(int(args[0]))
        if order is None:
            raise UnknownOrder(args[0])
        lines = [self._t(lang, "merchant.order_head", ref=order.ref, id=order.id, user=order.user_id,
                         channel=order.channel, quantity=order.quantity,
                         total=self.ctx.tr.money(lang, order.amount, order.currency),
                         state=self._t(lang, f"state.{order.state.value}"))]
        for ev in await self.ctx.store.order_events(order.id):
            lines.append(f"{self.ctx.tr.when(lang, ev.at, self.ctx.timezone)} {ev.from_state or '-'} → "
                         f"{ev.to_state} ({ev.cause})")
        return [Reply("\n".join(lines))]

    async def refund_prompt(self, lang: str, args: list[str]) -> list[Reply]:
        order = await self.aftersale.find(args[0] if args else "")
        total = self.ctx.tr.money(lang, order.amount, order.currency)
        button = Button(self._t(lang, "merchant.refund_button", ref=order.ref), f"mrefund:{order.ref}")
        return [Reply(self._t(lang, "merchant.refund_confirm", ref=order.ref, total=total), [[button]])]

    async def refund_confirmed(self, msg: Incoming, lang: str, ref: str) -> list[Reply]:
        order = await self.aftersale.request_refund(ref, msg.user_id)
        await self.ctx.store.audit(msg.channel, msg.user_id, "refund.confirmed", order.ref, datetime.now(UTC))
        await self.ctx.delivery.run_once()
        return [Reply(self._t(lang, "merchant.refund_queued", ref=order.ref))]

    async def user_orders(self, msg: Incoming, lang: str, args: list[str]) -> list[Reply]:
        user = (args[0] if args else "").lstrip("@")
        channel = args[1] if len(args) > 1 else msg.channel
        orders = await self.ctx.store.orders_for_user(channel, user, 20, 0)
        lines = [self._t(lang, "merchant.user_orders", channel=channel, user=user)]
        for order in orders:
            sku = await self.ctx.store.sku_by_id(order.sku_id)
            lines.append(order_line(self.ctx.tr, lang, order, sku, self.ctx.timezone))
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

        task = asyncio.create_task(broadcaster.broadcast(text.strip(), report))
        self.ctx.background.add(task)
        task.add_done_callback(self.ctx.background.discard)
        return [Reply(self._t(lang, "merchant.broadcast_started"))]

    async def report(self, lang: str, args: list[str]) -> list[Reply]:
        days = PERIODS.get(args[0] if args else "today")
        if days is None:
            raise BadQuantity("usage: /report [today|7d|30d]")
        until = datetime.now(UTC)
        rows = await sales_report(self.ctx.store, until - timedelta(days=days), until)
        if not rows:
            return [Reply(self._t(lang, "merchant.report_empty"))]
        lines = [self._t(lang, "merchant.report_title", days=days)]
        names = {s.id: s.slug for s in await self.ctx.store.skus()}
        for r in rows:
            m = self.ctx.tr.money
            lines.append(self._t(lang, "merchant.report_line", sku=names.get(r.sku_id, r.sku_id), channel=r.channel,
                                 orders=r.orders, revenue=m(lang, r.revenue, r.currency),
                                 cost=m(lang, r.cost, r.currency), profit=m(lang, r.profit, r.currency)))
        return [Reply("\n".join(lines))]
