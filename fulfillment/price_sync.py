"""Price and stock sync: each supplier's catalogue pulled (one process at a time, lease `supply.sync`), cost changes
recorded (supplier_products + an audit line each), and every sourced SKU's prices checked against its cost.

A SKU's cost is the cheapest in-stock source product's cost per unit × the SKU's units. For each of its prices in
the cost's currency (Telegram Stars are not comparable to a CNY cost and are left alone):
- under cost + margin floor: the merchants are alerted (once per SKU, channel and cost);
- with an auto-reprice rule (markup_bp > 0) the price becomes cost × (1 + markup), rounded up to the SKU's
  price unit and never under cost + margin floor; the change is audited.
A source product out of stock is no longer offered (SourcingService reads the live catalogue); its cost no longer
counts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from fulfillment.suppliers.errors import SupplierError
from fulfillment.suppliers.protocol import StockState
from fulfillment.suppliers.registry import SupplierRegistry
from storage.protocol import Store
from storage.records import Price
from storage.records_supply import CostChange, SkuSourcing, SupplierProductRow

log = logging.getLogger("kamibot.price_sync")
SYNC_LEASE = "supply.sync"
_FAR = timedelta(days=3650)


@dataclass
class SyncReport:
    suppliers: int = 0
    failed: list[str] = field(default_factory=list)
    cost_changes: list[CostChange] = field(default_factory=list)
    below_cost: list[tuple[int, str]] = field(default_factory=list)  # (sku id, channel)
    repriced: list[tuple[int, str, int, int]] = field(default_factory=list)  # (sku id, channel, old, new)


def reprice(cost: int, markup_bp: int, floor: int, unit: int) -> int:
    """cost × (1 + markup_bp/10000) rounded up to a multiple of `unit`, never under `floor` (integers only)."""
    raw = -(-cost * (10_000 + markup_bp) // 10_000)
    price = max(raw, floor)
    return -(-price // unit) * unit


class PriceSync:
    def __init__(self, store: Store, registry: SupplierRegistry, holder: str,
                 lease: timedelta = timedelta(minutes=5),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.registry = registry
        self.holder = holder
        self.lease = lease
        self.clock = clock
        self.alert: Callable[[str, dict[str, object]], Awaitable[None]] | None = None

    async def run_once(self) -> int:
        """Job tick; the number of prices changed."""
        report = await self.sync()
        return len(report.repriced) if report is not None else 0

    async def sync(self) -> SyncReport | None:
        now = self.clock()
        if not await self.store.try_lease(SYNC_LEASE, self.holder, now + self.lease, now):
            return None
        try:
            report = SyncReport()
            for supplier in await self.registry.all():
                try:
                    products = await supplier.catalogue()
                except SupplierError as exc:
                    report.failed.append(supplier.name)
                    log.info("event=sync.catalogue_failed supplier=%s reason=%s", supplier.name, exc.kind)
                    continue
                report.suppliers += 1
                rows = [SupplierProductRow(supplier.name, p.product_id, p.name, p.cost.amount, p.cost.currency,
                                           p.stock.value, p.stock_count) for p in products]
                changes = await self.store.record_supplier_products(supplier.name, rows, self.clock())
                for c in changes:
                    await self.store.audit("supply", "sync", "supplier.cost", f"{c.supplier}:{c.product_id} "
                                           f"{'-' if c.old_cost is None else c.old_cost} -> {c.new_cost}", now)
                report.cost_changes += changes
            await self._prices(report)
            return report
        finally:
            await self.store.release_lease(SYNC_LEASE, self.holder)

    async def _prices(self, report: SyncReport) -> None:
        catalogue = {(p.supplier, p.product_id): p for p in await self.store.supplier_products()}
        for sourcing in await self.store.sku_sourcings():
            sku = await self.store.sku_by_id(sourcing.sku_id)
            cost = _unit_cost(sourcing, catalogue)
            if sku is None or cost is None:
                continue
            total, currency = cost[0] * sku.units, cost[1]
            floor = total + sourcing.margin_floor * sku.units
            for price in await self.store.prices(sku.id):
                if price.currency != currency:
                    continue
                if sourcing.markup_bp:
                    new = reprice(total, sourcing.markup_bp, floor, sourcing.price_unit)
                    if new != price.amount:
                        await self.store.set_price(Price(sku.id, price.channel, currency, new))
                        await self.store.audit("supply", "sync", "price.repriced",
                                               f"{sku.slug} {price.channel} {price.amount} -> {new}", self.clock())
                        report.repriced.append((sku.id, price.channel, price.amount, new))
                    continue
                if price.amount < floor:
                    report.below_cost.append((sku.id, price.channel))
                    await self._below_cost(sku.slug, price, total)

    async def _below_cost(self, slug: str, price: Price, cost: int) -> None:
        now = self.clock()
        if not await self.store.claim_once("supply.below_cost", f"{price.sku_id}:{price.channel}:{cost}",
                                           now + _FAR, now):
            return
        log.warning("event=sync.below_cost sku=%s channel=%s price=%d cost=%d", slug, price.channel, price.amount,
                    cost)
        if self.alert is not None:
            await self.alert("supply.below_cost", {"sku": slug, "channel": price.channel, "amount": price.amount,
                                                   "currency": price.currency, "cost": cost})


def _unit_cost(sourcing: SkuSourcing, catalogue: dict[tuple[str, str], SupplierProductRow]
               ) -> tuple[int, str] | None:
    offers = [catalogue[(s.supplier, s.product_id)] for s in sourcing.sources
              if (s.supplier, s.product_id) in catalogue]
    live = [p for p in offers if p.stock == StockState.IN_STOCK.value]
    if not live:
        return None
    best = min(live, key=lambda p: p.cost)
    return best.cost, best.currency
