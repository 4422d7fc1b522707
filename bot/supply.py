"""The supply side assembled for `kamibot run`: supplier registry, procurement, sourcing, their jobs and the
supplier callback route. Built from a Shop by `build_supply` (which also gives the delivery worker its `procure`
rows: paid orders waiting on a supplier, fulfillment/fulfil_sourced.py)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from starlette.routing import Route

from bot.composition import Shop
from bot.supplier_routes import supplier_routes
from fulfillment.fulfil_sourced import SourcedFulfilment
from fulfillment.price_sync import PriceSync
from fulfillment.procurement import ProcurementService
from fulfillment.sourcing import SourcingService
from fulfillment.suppliers.registry import SupplierRegistry
from fulfillment.supply_desk import SupplyDesk
from handlers.context import ShopContext
from handlers.types import Reply

log = logging.getLogger("kamibot.supply")
Job = tuple[str, float, Callable[[], Awaitable[int]]]


@dataclass
class Supply:
    registry: SupplierRegistry
    procurement: ProcurementService
    sourcing: SourcingService
    sync: PriceSync
    sourced: SourcedFulfilment
    resolve_every: float = 5.0
    restock_every: float = 10.0
    sync_every: float = 600.0

    def jobs(self) -> list[Job]:
        """`extra` jobs of bot.jobs.run_jobs: unknown procurements queried, low pools restocked (both leased)."""
        return [("procurement_resolve", self.resolve_every, self.procurement.resolve_due),
                ("restock", self.restock_every, self.sourcing.restock_due),
                ("price_sync", self.sync_every, self.sync.run_once),
                ("recharge_tickets", self.resolve_every * 12, self.sourced.ticket_unknown_recharges)]

    def attach(self, ctx: ShopContext) -> None:
        """Give the chat its supply commands and the sourcing its way to alert merchants."""
        ctx.supply = SupplyDesk(self.sourcing.store, self.sourcing)
        self.sourcing.alert = self.sync.alert = self.procurement.alert = self.sourced.alert = merchant_alert(ctx)
        self.sourcing.price_sync = self.sync  # merchant /sync

    def routes(self) -> list[Route]:
        return supplier_routes(self.procurement)

    async def aclose(self) -> None:
        await self.registry.aclose()


def merchant_alert(ctx: ShopContext) -> Callable[[str, dict[str, object]], Awaitable[None]]:
    """Send a supply alert (message id + params) to every merchant of every channel that can send."""
    async def alert(msgid: str, params: dict[str, object]) -> None:
        for channel, send in ctx.senders.items():
            for merchant in sorted(ctx.merchants.get(channel, set())):
                await ctx.load_language(channel, merchant)
                lang = ctx.language(channel, merchant, "")
                amount = params.get("amount", 0)
                text = ctx.tr(lang, msgid, **{**params, "amount": ctx.tr.money(
                    lang, int(amount) if isinstance(amount, int) else 0, str(params.get("currency", "CNY")))})
                try:
                    await send(merchant, Reply(text))
                except Exception:  # noqa: BLE001 - one unreachable merchant must not stop the others
                    log.warning("event=supply.alert_failed channel=%s merchant=%s", channel, merchant)

    return alert


def build_supply(shop: Shop, holder: str | None = None) -> Supply:
    holder = holder or f"{socket.gethostname()}:{os.getpid()}"
    registry = SupplierRegistry(shop.store, shop.vault)
    procurement = ProcurementService(shop.store, shop.vault, registry, holder)
    sourcing = SourcingService(shop.store, registry, procurement, holder)
    settings = shop.settings.supply
    sourced = SourcedFulfilment(shop.store, sourcing, settings.procure_retries,
                                timedelta(minutes=settings.recharge_unknown_ticket_after_minutes))
    shop.delivery.procure = sourced.procure
    shop.catalog.supply_sellable = sourcing.sellable  # the order API's products show what healthy sources have
    return Supply(registry, procurement, sourcing, PriceSync(shop.store, registry, holder), sourced)
