"""Merchant supply commands in chat: /suppliers, /supplier NAME balance|test|products,
/source SKU [own] SUPPLIER:PRODUCT … [max_cost=N] [restock=N] [on_demand], /restock POOL N [from=SUPPLIER],
/procurements [unknown|failed], /procurement REF retry|failed|succeeded, /sync.
Every command that changes something is audited; nothing shows a credential."""

from __future__ import annotations

import logging
import shlex

from fulfillment.errors import BadPrice, BadQuantity, NotAllowed
from fulfillment.sourcing import SourcingService
from fulfillment.suppliers.errors import SupplierError
from fulfillment.supply_desk import SupplyDesk
from fulfillment.wholenumbers import parse_whole
from handlers.merchant import MerchantCommands
from handlers.types import Incoming, Reply
from storage.records_supply import ProcurementState, SkuSource, SkuSourcing

log = logging.getLogger("kamibot.merchant")
SUPPLY_COMMANDS = {"suppliers", "supplier", "source", "restock", "procurements", "procurement", "sync"}
LIST_LIMIT = 20
MAX_RESTOCK = 1000


class MerchantSupply(MerchantCommands):
    def _desk(self) -> SupplyDesk:
        if self.ctx.supply is None:
            raise NotAllowed("supply is not running in this process")
        return self.ctx.supply

    def _sourcing(self) -> SourcingService:
        return self._desk().sourcing

    async def handle(self, msg: Incoming, lang: str, command: str, rest: str) -> list[Reply]:
        args = shlex.split(rest) if rest else []
        if command in ("source", "restock", "sync", "procurement"):
            await self._desk().audit(msg.channel, msg.user_id, command, rest[:200])
        if command == "suppliers":
            return [Reply(await self._suppliers(lang))]
        if command == "supplier" and len(args) == 2 and args[1] in ("balance", "test", "products"):
            return [Reply(await self._supplier(lang, args[0], args[1]))]
        if command == "source" and len(args) >= 1:
            return [Reply(await self._source(lang, args))]
        if command == "restock" and len(args) in (2, 3):
            return [Reply(await self._restock(lang, args))]
        if command == "sync":
            return [Reply(await self._sync(lang))]
        if command == "procurement" and len(args) == 2 and args[1] in ("retry", "failed", "succeeded"):
            return [Reply(await self._procurement(msg, lang, args[0].upper(), args[1]))]
        if command == "procurements":
            return [Reply(await self._procurements(lang, args[0] if args else ""))]
        return [Reply(self._t(lang, "supply.help"))]

    async def _suppliers(self, lang: str) -> str:
        sourcing = self._sourcing()
        records = await self._desk().suppliers()
        if not records:
            return self._t(lang, "supply.none")
        lines = [self._t(lang, "supply.supplier_line", name=r.name, protocol=r.protocol,
                         state=("ok" if sourcing.registry.healthy(r.name) else "breaker open")
                         if r.active else "inactive") for r in records]
        return "\n".join(lines)

    async def _supplier(self, lang: str, name: str, what: str) -> str:
        supplier = await self._sourcing().registry.get(name)
        if supplier is None:
            return self._t(lang, "supply.unknown_supplier", name=name)
        try:
            if what == "balance":
                money = await supplier.balance()
                return self._t(lang, "supply.balance", name=name,
                               amount=self.ctx.tr.money(lang, money.amount, money.currency))
            products = await supplier.catalogue()
            if what == "test":
                money = await supplier.balance()
                return self._t(lang, "supply.test_ok", name=name, count=len(products),
                               amount=self.ctx.tr.money(lang, money.amount, money.currency))
        except SupplierError as exc:
            return self._t(lang, "supply.failed", name=name, error=exc.kind)
        lines = [self._t(lang, "supply.product_line", id=p.product_id, product=p.name[:60], stock=p.stock.value,
                         cost=self.ctx.tr.money(lang, p.cost.amount, p.cost.currency)) for p in products[:LIST_LIMIT]]
        return "\n".join(lines) or self._t(lang, "supply.none")

    async def _source(self, lang: str, args: list[str]) -> str:
        sku = await self.ctx.catalog.find_sku(args[0])
        sources, own, on_demand, max_cost, restock = [], False, False, 0, 0
        for arg in args[1:]:
            key, eq, value = arg.partition("=")
            if arg == "own":
                own = True
            elif arg == "on_demand":
                on_demand = True
            elif eq and key == "max_cost":
                max_cost = parse_whole(value, 0, 100_000_000, BadPrice, "max_cost")
            elif eq and key == "restock":
                restock = parse_whole(value, 0, MAX_RESTOCK, BadQuantity, "restock")
            elif ":" in arg and not eq:
                supplier, _, product = arg.partition(":")
                if not await self._desk().supplier_known(supplier):
                    return self._t(lang, "supply.unknown_supplier", name=supplier)
                sources.append(SkuSource(supplier, product))
            else:
                return self._t(lang, "supply.help")
        await self._desk().save_sourcing(SkuSourcing(sku.id, own, tuple(sources), max_cost, restock, on_demand))
        return self._t(lang, "supply.source_saved", sku=sku.slug, max_cost=max_cost, restock=restock,
                       sources=" ".join(f"{s.supplier}:{s.product_id}" for s in sources) or "-")

    async def _restock(self, lang: str, args: list[str]) -> str:
        pool = await self.ctx.catalog.find_pool(args[0])
        quantity = parse_whole(args[1], 1, MAX_RESTOCK, BadQuantity, "quantity")
        only = args[2].removeprefix("from=") if len(args) == 3 and args[2].startswith("from=") else None
        if len(args) == 3 and only is None:
            return self._t(lang, "supply.help")
        sourcing = await self._desk().pool_sourcing(pool.id)
        if sourcing is None:
            return self._t(lang, "supply.no_source", pool=pool.slug)
        p = await self._sourcing().restock(pool.id, sourcing, quantity, only)
        if p is None:
            return self._t(lang, "supply.restock_blocked", pool=pool.slug)
        return self._t(lang, "supply.restock_result", pool=pool.slug, ref=p.our_ref, state=p.state.value,
                       received=p.received, shortfall=p.shortfall)

    async def _sync(self, lang: str) -> str:
        sync = self._sourcing().price_sync
        report = await sync.sync() if sync is not None else None
        if report is None:
            return self._t(lang, "supply.sync_busy")
        return self._t(lang, "supply.sync_done", suppliers=report.suppliers, failed=len(report.failed),
                       changes=len(report.cost_changes), repriced=len(report.repriced),
                       below=len(report.below_cost))

    async def _procurement(self, msg: Incoming, lang: str, ref: str, what: str) -> str:
        service = self._sourcing().procurement
        p = await self._desk().procurement(ref)
        if p is None:
            return self._t(lang, "supply.procurement_unknown", ref=ref)
        if what == "retry":
            done = await service.resolve(p)
        else:
            done = await service.settle_by_merchant(ref, ProcurementState(what), f"{msg.channel}:{msg.user_id}")
        p = done or await self._desk().procurement(ref) or p
        return self._t(lang, "supply.procurement_line", ref=p.our_ref, supplier=p.supplier, product=p.product_id,
                       quantity=p.quantity, state=p.state.value, held=" (held)" if p.held else "",
                       detail=p.detail[:80])

    async def _procurements(self, lang: str, which: str) -> str:
        states = {"unknown": [ProcurementState.UNKNOWN], "failed": [ProcurementState.FAILED]}.get(
            which, [ProcurementState.PLANNED, ProcurementState.SENT, ProcurementState.UNKNOWN])
        rows = await self._desk().procurements(states, LIST_LIMIT)
        if not rows:
            return self._t(lang, "supply.procurements_none")
        return "\n".join(self._t(lang, "supply.procurement_line", ref=p.our_ref, supplier=p.supplier,
                                 product=p.product_id, quantity=p.quantity, state=p.state.value,
                                 held=" (held)" if p.held else "", detail=p.detail[:80]) for p in rows)
