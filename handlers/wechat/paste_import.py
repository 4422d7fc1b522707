"""Merchant code import by pasting text in WeChat: `/import POOL_OR_SKU [cost=N] [supplier=X]` then one code a
line; nothing is committed until the merchant confirms.

WeChat bots cannot receive text files, so the codes come in the message; fulfillment.pending_import keeps them
sealed by the vault until the confirmation (codes are never stored in clear).
"""

from __future__ import annotations

from fulfillment.errors import ImportRefused
from fulfillment.pending_import import Settled
from handlers.context import ShopContext
from handlers.merchant import import_summary
from handlers.types import Button, Incoming, Reply

PREFIX = "wimp:"


class PasteImport:
    def __init__(self, ctx: ShopContext) -> None:
        self.ctx = ctx

    @staticmethod
    def wants(text: str) -> bool:
        return text.startswith("/import") and "\n" in text

    def owns(self, data: str) -> bool:
        return data.startswith(PREFIX)

    async def handle(self, msg: Incoming, lang: str) -> list[Reply]:
        first, _, body = msg.text.partition("\n")
        args = first.split()[1:]
        codes = [line.strip() for line in body.splitlines() if line.strip()]
        if not args or not codes:
            raise ImportRefused("paste: /import POOL_OR_SKU [cost=N] [supplier=X], then one code per line")
        opts = dict(a.split("=", 1) for a in args[1:] if "=" in a)
        held = await self.ctx.services.pending_imports.hold(args[0], codes, opts.get("cost", "0"),
                                                            opts.get("supplier", ""), msg.user_id)
        rows = [[Button(self.ctx.tr(lang, "wechat.import_confirm_button"), f"{PREFIX}ok:{held.token}"),
                 Button(self.ctx.tr(lang, "wechat.import_cancel_button"), f"{PREFIX}no:{held.token}")]]
        return [Reply(self.ctx.tr(lang, "wechat.import_confirm", count=held.count, pool=held.pool.slug), rows)]

    async def press(self, msg: Incoming, lang: str) -> list[Reply]:
        if not self.ctx.is_merchant(msg.channel, msg.user_id):
            return [Reply(self.ctx.tr(lang, "error.unknown_command"))]
        action, _, token = msg.button[len(PREFIX):].partition(":")
        outcome = await self.ctx.services.pending_imports.settle(token, msg.channel, msg.user_id, action == "ok")
        if outcome.settled == Settled.EXPIRED:
            return [Reply(self.ctx.tr(lang, "wechat.import_expired"))]
        if outcome.settled == Settled.CANCELLED or outcome.pool is None:
            return [Reply(self.ctx.tr(lang, "wechat.import_cancelled"))]
        return [Reply(import_summary(self.ctx.tr, lang, outcome.stats, outcome.pool.slug))]
