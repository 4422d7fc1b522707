"""Merchant distributor commands in chat: /distributors, /distributor NAME add|show|link|price|discount|commission|
payout|statement, /wallet DIST ±AMOUNT note, /apikey list|create|revoke. Merchant ids only (the router decides);
every change is audited after it succeeded, every refusal is answered in the merchant's language and changes
nothing. An API secret is shown once, in the reply to /apikey create, and never logged or audited."""

from __future__ import annotations

import logging

from fulfillment.distributor_statement import Statement, carried, statement
from fulfillment.distributors import CommissionKind, DistributorDesk, DistributorRefused
from fulfillment.errors import NotAllowed, ShopError
from handlers.merchant import MerchantCommands
from handlers.types import Document, Incoming, Reply

log = logging.getLogger("kamibot.merchant")
DISTRIBUTOR_COMMANDS = {"distributors", "distributor", "wallet", "apikey"}
WALLET_LINES_SHOWN = 10


def _currency(words: list[str]) -> tuple[str, list[str]]:
    """An optional `currency=XXX` word taken out of a command's words (CNY without it)."""
    chosen = [w for w in words if w.startswith("currency=")]
    rest = [w for w in words if not w.startswith("currency=")]
    return (chosen[-1].removeprefix("currency=") if chosen else "CNY"), rest


class MerchantDistributors(MerchantCommands):
    def _desk(self) -> DistributorDesk:
        desk = self.ctx.services.distributors
        if desk is None:
            raise NotAllowed("distributors are not set up in this process")
        return desk

    def _m(self, lang: str, amounts: dict[str, int]) -> str:
        return ", ".join(self.ctx.tr.money(lang, v, c) for c, v in sorted(amounts.items())) or "0"

    async def _audit(self, msg: Incoming, action: str, detail: str) -> None:
        await self.ctx.services.audit.record(msg.channel, msg.user_id, action, detail)

    async def handle(self, msg: Incoming, lang: str, command: str, rest: str) -> list[Reply]:
        log.info("event=merchant.command channel=%s user=%s command=%s", msg.channel, msg.user_id, command)
        words = rest.split()
        try:
            if command == "distributors":
                return [Reply(await self._list(lang))]
            if command == "wallet" and words:
                return [Reply(await self._wallet(msg, lang, words))]
            if command == "apikey":
                return [Reply(await self._apikey(msg, lang, words))]
            if command == "distributor" and len(words) >= 2:
                return await self._distributor(msg, lang, words[0], words[1], words[2:])
            if command == "distributor" and len(words) == 1:
                return [Reply(await self._show(lang, words[0]))]
        except DistributorRefused as exc:
            return [Reply(self._t(lang, exc.message_id, **exc.params))]
        return [Reply(self._t(lang, "distributor.help"))]

    async def _list(self, lang: str) -> str:
        desk = self._desk()
        lines = []
        for d in await desk.all():
            payable = await desk.store.commission_balances(d.id)
            lines.append(self._t(lang, "distributor.line", name=d.name, api="API" if d.api_client_id else "-",
                                 discount=d.discount_bp, commission=d.commission_bp, payable=self._m(lang, payable)))
        return "\n".join(lines) or self._t(lang, "distributor.none")

    async def _show(self, lang: str, name: str) -> str:
        v = await self._desk().view(name)
        d = v.distributor
        lines = [self._t(lang, "distributor.show", name=d.name, code=d.ref_code,
                         client=v.client.name if v.client else "-", discount=d.discount_bp,
                         commission=d.commission_bp, payable=self._m(lang, v.payable), wallet=self._m(lang, v.wallet))]
        for sku_id, p in sorted(v.prices.items()):
            sku = await self.ctx.catalog.sku(sku_id)
            lines.append(self._t(lang, "distributor.show_price", sku=sku.slug if sku else sku_id,
                                 price=self.ctx.tr.money(lang, p.amount, p.currency),
                                 override=self._t(lang, "distributor.override") if p.below_cost else ""))
        for sku_id, bp in sorted(v.rates.items()):
            sku = await self.ctx.catalog.sku(sku_id)
            lines.append(self._t(lang, "distributor.show_rate", sku=sku.slug if sku else sku_id, bp=bp))
        return "\n".join(lines)

    async def _distributor(self, msg: Incoming, lang: str, name: str, verb: str, args: list[str]) -> list[Reply]:
        desk = self._desk()
        if verb == "add" and len(args) <= 1:
            d = await desk.add(name, args[0] if args else "")
            await self._audit(msg, "distributor.add", f"{d.name} client={d.api_client_id or '-'}")
            return [Reply(self._t(lang, "distributor.added", name=d.name, code=d.ref_code))]
        if verb == "show" and not args:
            return [Reply(await self._show(lang, name))]
        if verb == "link" and len(args) == 1:
            d = await desk.link(name, args[0])
            await self._audit(msg, "distributor.link", f"{d.name} client={d.api_client_id}")
            return [Reply(self._t(lang, "distributor.linked", name=d.name, client=args[0]))]
        if verb == "price" and 2 <= len(args) <= 4:
            return [Reply(await self._price(msg, lang, name, args))]
        if verb == "discount" and len(args) == 1:
            d = await desk.set_discount(name, args[0])
            await self._audit(msg, "distributor.discount", f"{d.name} {d.discount_bp}bp")
            return [Reply(self._t(lang, "distributor.discount_set", name=d.name, bp=d.discount_bp))]
        if verb == "commission" and len(args) in (1, 2):
            return [Reply(await self._commission(msg, lang, name, args))]
        if verb == "payout" and len(args) >= 2:
            currency, words = _currency(args)
            line = await desk.payout(name, words[0], " ".join(words[1:]), currency)
            await self._audit(msg, "distributor.payout", f"{name} {line.currency} {-line.amount} {line.note[:80]}")
            return [Reply(self._t(lang, "distributor.payout_done", name=name,
                                  amount=self.ctx.tr.money(lang, -line.amount, line.currency),
                                  payable=self._m(lang, await desk.store.commission_balances(line.distributor_id))))]
        if verb == "statement" and len(args) == 1:
            st = await statement(desk.store, await desk.find(name), args[0], self.ctx.timezone)
            return [self._statement(lang, st)]
        return [Reply(self._t(lang, "distributor.help"))]

    async def _price(self, msg: Incoming, lang: str, name: str, args: list[str]) -> str:
        override = args[-1] == "override"
        words = args[:-1] if override else args
        if len(words) not in (2, 3):
            return self._t(lang, "distributor.help")
        sku = await self.ctx.catalog.find_sku(words[0])
        price = await self._desk().set_price(name, sku, words[1], words[2] if len(words) == 3 else "CNY", override)
        if price is None:
            await self._audit(msg, "distributor.price", f"{name} {sku.slug} clear")
            return self._t(lang, "distributor.price_cleared", name=name, sku=sku.slug)
        await self._audit(msg, "distributor.price",
                          f"{name} {sku.slug} {price.currency} {price.amount}{' override' if override else ''}")
        return self._t(lang, "distributor.price_set", name=name, sku=sku.slug,
                       price=self.ctx.tr.money(lang, price.amount, price.currency))

    async def _commission(self, msg: Incoming, lang: str, name: str, args: list[str]) -> str:
        sku = await self.ctx.catalog.find_sku(args[1]) if len(args) == 2 else None
        d = await self._desk().set_commission(name, args[0], sku)
        if sku is not None:
            await self._audit(msg, "distributor.commission", f"{d.name} {sku.slug} {args[0]}")
            return self._t(lang, "distributor.commission_sku_set", name=d.name, sku=sku.slug, bp=args[0])
        await self._audit(msg, "distributor.commission", f"{d.name} {d.commission_bp}bp")
        return self._t(lang, "distributor.commission_set", name=d.name, bp=d.commission_bp)

    def _statement(self, lang: str, st: Statement) -> Reply:
        lines = [self._t(lang, "distributor.statement", name=st.distributor.name, period=st.period,
                         orders=st.orders)]
        accrued, reversed_, paid = (st.total(k) for k in (CommissionKind.ACCRUAL, CommissionKind.REVERSAL,
                                                          CommissionKind.PAYOUT))
        for c in st.currencies:
            lines.append(self._t(lang, "distributor.statement_currency", currency=c,
                                 opening=self.ctx.tr.money(lang, st.opening.get(c, 0), c),
                                 accrued=self.ctx.tr.money(lang, accrued.get(c, 0), c),
                                 reversed=self.ctx.tr.money(lang, -reversed_.get(c, 0), c),
                                 paid=self.ctx.tr.money(lang, -paid.get(c, 0), c),
                                 closing=self.ctx.tr.money(lang, st.closing.get(c, 0), c)))
        clawed = st.clawbacks()
        for c in st.currencies:
            opening, closing = carried(st.opening.get(c, 0)), carried(st.closing.get(c, 0))
            if opening or closing or clawed.get(c):
                lines.append(self._t(lang, "distributor.statement_clawback", currency=c,
                                     opening=self.ctx.tr.money(lang, opening, c),
                                     clawed=self.ctx.tr.money(lang, clawed.get(c, 0), c),
                                     closing=self.ctx.tr.money(lang, closing, c)))
        for r in st.sales:
            lines.append(self._t(lang, "distributor.statement_sales", currency=r.currency, orders=r.orders,
                                 revenue=self.ctx.tr.money(lang, r.revenue, r.currency),
                                 refunds=self.ctx.tr.money(lang, r.refunds, r.currency),
                                 commission=self.ctx.tr.money(lang, r.commission, r.currency)))
        if st.wallet:
            lines.append(self._t(lang, "distributor.statement_wallet", count=len(st.wallet)))
        return Reply("\n".join(lines), document=Document(st.filename, st.csv()))

    async def _wallet(self, msg: Incoming, lang: str, words: list[str]) -> str:
        desk = self._desk()
        currency, words = _currency(words)
        if len(words) >= 2:
            line = await desk.move_wallet(words[0], words[1], " ".join(words[2:]), currency)
            await self._audit(msg, "distributor.wallet",
                              f"{words[0]} {line.currency} {line.amount:+d} {line.note[:80]}")
            sign = "+" if line.amount > 0 else ""
            return self._t(lang, "distributor.wallet_moved", name=words[0],
                           amount=sign + self.ctx.tr.money(lang, line.amount, line.currency),
                           balance=self.ctx.tr.money(lang, line.balance_after, line.currency))
        v = await desk.view(words[0])
        lines = [self._t(lang, "distributor.wallet", name=v.distributor.name, balance=self._m(lang, v.wallet))]
        if v.client is not None:
            for ln in await desk.store.wallet_lines(v.client.id, WALLET_LINES_SHOWN):
                lines.append(f"{self.ctx.tr.when(lang, ln.at, self.ctx.timezone)} {ln.kind} "
                             f"{self.ctx.tr.money(lang, ln.amount, ln.currency)} {ln.note}".rstrip())
        return "\n".join(lines)

    async def _apikey(self, msg: Incoming, lang: str, words: list[str]) -> str:
        desk = self._desk()
        if words == ["list"] or not words:
            clients = await desk.keys.clients()
            lines = [self._t(lang, "apikey.line", name=c.name, key_id=c.key_id, scopes=",".join(c.scopes),
                             state="revoked" if c.revoked_at else "live") for c in clients]
            return "\n".join(lines) or self._t(lang, "apikey.none")
        if words[0] == "create" and len(words) == 3:
            try:
                new = await desk.create_key(words[1], words[2].split(","))
            except ShopError:
                return self._t(lang, "apikey.bad")
            await self._audit(msg, "apikey.create", f"{new.client.name} {new.client.key_id} {words[2]}")
            return self._t(lang, "apikey.created", name=new.client.name, key_id=new.client.key_id, secret=new.secret,
                           scopes=",".join(new.client.scopes))
        if words[0] == "revoke" and len(words) == 2:
            done = await desk.revoke_key(words[1])
            if done:
                await self._audit(msg, "apikey.revoke", words[1][:64])
            return self._t(lang, "apikey.revoked" if done else "apikey.already_revoked", key=words[1][:64])
        return self._t(lang, "distributor.help")
