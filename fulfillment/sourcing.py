"""Where a SKU's codes come from: its own pool first, then the cheapest healthy supplier product of its source
list, never above the SKU's maximum unit cost; automatic restock of low pools; buying on demand.

- Offers come from each source supplier's catalogue (cached for `catalogue_ttl` seconds per supplier): in stock,
  enough of it when the supplier counts, cost at or under `max_unit_cost`; a supplier whose breaker is open or
  whose catalogue cannot be read is skipped. Cheapest first, the source list's order breaking ties.
- `procure` fails over to the next offer only when a purchase definitively failed; a purchase that is unknown (or
  still sent) stops it: buying elsewhere then is how a shop buys twice. A supplier with K purchases (its breaker's
  threshold, counting its recent failures) in flight is passed over for the next offer at once, so a supplier that
  stops answering holds at most K orders (fulfillment/suppliers/breaker.py); with no other offer the order waits
  for a slot (fulfillment/procurement.py `send`).
- `restock_due` (job): for every pool at or under its low-stock mark with a SKU that has a restock quantity, one
  process at a time per pool (lease `restock:<pool id>`; the store also refuses a second open restock of a pool)
  buys that quantity into the pool.
- Before buying from a supplier its balance is read (cached like the catalogue): an offer the balance cannot pay
  is skipped. After a purchase the balance is read again; under the supplier's `low_balance` mark the merchants
  are alerted once per crossing (a claim-once key per "epoch"; climbing back over the mark starts a new epoch).
- On demand happens after payment (fulfillment/fulfil_sourced.py): an on-demand SKU's order is reserved without
  stock when its pool is short, and once paid `procure` buys for that order (`order_id`), excluding the sources
  that definitively failed it. Nothing is bought at checkout: the customer never waits on a supplier to reserve,
  and automatic restock is what keeps a pool warm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from fulfillment.procurement import ProcurementService
from fulfillment.suppliers.errors import SupplierError
from fulfillment.suppliers.protocol import Money, StockState, SupplierProduct
from fulfillment.suppliers.registry import SupplierRegistry
from storage.protocol import Store
from storage.records import Sku
from storage.records_supply import Procurement, ProcurementState, SkuSourcing

log = logging.getLogger("kamibot.sourcing")
_FAR = timedelta(days=3650)
SHOWN_UNCOUNTED = 99  # a supplier that does not count its stock (recharge, unlimited) shows this many


@dataclass(frozen=True)
class Offer:
    supplier: str
    product_id: str
    unit_cost: int
    currency: str
    position: int


class SourcingService:
    def __init__(self, store: Store, registry: SupplierRegistry, procurement: ProcurementService, holder: str,
                 catalogue_ttl: float = 60.0, lease: timedelta = timedelta(seconds=60),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.registry = registry
        self.procurement = procurement
        self.holder = holder
        self.catalogue_ttl = catalogue_ttl
        self.lease = lease
        self.clock = clock
        self.monotonic = monotonic
        self._catalogues: dict[str, tuple[float, dict[str, SupplierProduct]]] = {}
        #: suppliers whose last catalogue read failed (timeout, reset, 5xx): no answer is not "no offer"
        self.unanswered: set[str] = set()
        self._balances: dict[str, tuple[float, Money]] = {}
        self._reading: dict[tuple[str, str], asyncio.Lock] = {}
        #: tells the merchants (message id, params); set by the composition root
        self.alert: Callable[[str, dict[str, object]], Awaitable[None]] | None = None
        self.price_sync: Any = None  # fulfillment.price_sync.PriceSync, for the merchant's /sync

    async def _catalogue(self, name: str) -> dict[str, SupplierProduct] | None:
        cached = self._catalogues.get(name)
        if cached is not None and self.monotonic() - cached[0] < self.catalogue_ttl:
            return cached[1]
        async with self._reading.setdefault(("catalogue", name), asyncio.Lock()):  # one read for all who wait
            cached = self._catalogues.get(name)
            if cached is not None and self.monotonic() - cached[0] < self.catalogue_ttl:
                return cached[1]
            return await self._read_catalogue(name)

    async def _read_catalogue(self, name: str) -> dict[str, SupplierProduct] | None:
        supplier = await self.registry.get(name)
        if supplier is None or not self.registry.healthy(name):
            return None
        try:
            products = {p.product_id: p for p in await supplier.catalogue()}
        except SupplierError as exc:
            log.info("event=sourcing.catalogue_failed supplier=%s reason=%s", name, exc.kind)
            self.unanswered.add(name)
            return None
        self.unanswered.discard(name)
        self._catalogues[name] = (self.monotonic(), products)
        return products

    def forget(self, name: str) -> None:
        """Drop a supplier's cached catalogue and balance (after a refusal or a purchase: they changed)."""
        self._catalogues.pop(name, None)
        self._balances.pop(name, None)

    def _spent(self, offer: Offer, quantity: int) -> None:
        """A purchase went out: the cached balance and stock count of that offer go down by it (no re-read per
        order: at 50 orders/s a catalogue and a balance read per purchase would triple the supplier's load)."""
        cached = self._balances.get(offer.supplier)
        if cached is not None:
            money = cached[1]
            self._balances[offer.supplier] = (cached[0], Money(money.amount - offer.unit_cost * quantity,
                                                               money.currency))
        products = self._catalogues.get(offer.supplier)
        product = products[1].get(offer.product_id) if products is not None else None
        if products is not None and product is not None and product.stock_count is not None:
            products[1][offer.product_id] = replace(product, stock_count=max(product.stock_count - quantity, 0))

    async def balance(self, name: str) -> Money | None:
        cached = self._balances.get(name)
        if cached is not None and self.monotonic() - cached[0] < self.catalogue_ttl:
            return cached[1]
        async with self._reading.setdefault(("balance", name), asyncio.Lock()):
            cached = self._balances.get(name)
            if cached is not None and self.monotonic() - cached[0] < self.catalogue_ttl:
                return cached[1]
            return await self._read_balance(name)

    async def _read_balance(self, name: str) -> Money | None:
        supplier = await self.registry.get(name)
        if supplier is None:
            return None
        try:
            money = await supplier.balance()
        except SupplierError as exc:
            log.info("event=sourcing.balance_failed supplier=%s reason=%s", name, exc.kind)
            return None
        self._balances[name] = (self.monotonic(), money)
        return money

    async def _check_low_balance(self, name: str) -> None:
        record = await self.store.supplier_by_name(name)
        if record is None or not record.low_balance:
            return
        money = await self.balance(name)
        if money is None:
            return
        now = self.clock()
        epoch_key = f"supplier.low_balance_epoch:{name}"
        epoch = await self.store.kv_get(epoch_key, now) or "0"
        alerted_key = f"supplier.low_balance_alerted:{name}"
        if money.amount >= record.low_balance:
            if await self.store.kv_get(alerted_key, now) == epoch:
                await self.store.kv_put(epoch_key, str(int(epoch) + 1), None)  # back over the mark: re-arm
            return
        if await self.store.claim_once("supplier.low_balance", f"{name}:{epoch}", now + _FAR, now):
            await self.store.kv_put(alerted_key, epoch, None)
            log.warning("event=supplier.low_balance supplier=%s balance=%d threshold=%d", name, money.amount,
                        record.low_balance)
            if self.alert is not None:
                await self.alert("supply.low_balance", {"name": name, "amount": money.amount,
                                                        "currency": money.currency,
                                                        "threshold": record.low_balance})

    async def offers(self, sourcing: SkuSourcing, quantity: int, only: str | None = None) -> list[Offer]:
        names = list(dict.fromkeys(s.supplier for s in sourcing.sources if only is None or s.supplier == only))
        # each supplier's catalogue and balance are read together (a cold start waits one round trip, not two):
        # a purchase reads the balance anyway
        catalogues, _ = await asyncio.gather(asyncio.gather(*(self._catalogue(n) for n in names)),
                                             asyncio.gather(*(self.balance(n) for n in names)))
        by_name = dict(zip(names, catalogues, strict=True))
        found = []
        for position, source in enumerate(sourcing.sources):
            if only is not None and source.supplier != only:
                continue
            product = (by_name.get(source.supplier) or {}).get(source.product_id)
            if product is None or product.stock is not StockState.IN_STOCK:
                continue
            if product.stock_count is not None and product.stock_count < quantity:
                continue
            if product.cost.amount > sourcing.max_unit_cost or not self.registry.healthy(source.supplier):
                continue
            found.append(Offer(source.supplier, source.product_id, product.cost.amount, product.cost.currency,
                               position))
        return sorted(found, key=lambda o: (o.unit_cost, o.position))

    async def procure(self, sourcing: SkuSourcing, quantity: int, pool_id: int, order_id: int | None = None,
                      only: str | None = None, exclude: frozenset[str] = frozenset()) -> Procurement | None:
        """Buy `quantity` into the pool (for `order_id` when given) from the best offer not in `exclude`, failing
        over on definitive failures only. An offer whose supplier has no free purchase slot now (breaker.py) is
        tried after the others: the order is bought elsewhere at once, and waits for such a slot only when no other
        offer could buy."""
        offers = [o for o in await self.offers(sourcing, quantity, only) if o.supplier not in exclude]
        offers.sort(key=lambda o: not self.registry.has_room(o.supplier))  # stable: cheapest first within each
        last: Procurement | None = None
        for offer in offers:
            funds = await self.balance(offer.supplier)
            if funds is not None and funds.amount < offer.unit_cost * quantity:
                log.info("event=sourcing.skipped supplier=%s reason=balance", offer.supplier)
                continue
            p = await self.procurement.buy(offer.supplier, offer.product_id, quantity, sourcing.max_unit_cost,
                                           offer.currency, pool_id, order_id)
            if p is None:
                return last  # another purchase for this pool or order is open: never a second one
            last = p
            if p.state is ProcurementState.FAILED:
                self.forget(offer.supplier)  # refused: its stock or balance is not what we thought
            else:
                self._spent(offer, quantity)
            if p.state is not ProcurementState.FAILED:
                await self._check_low_balance(offer.supplier)
                return p  # succeeded, or unknown/sent: never fail over while the outcome is open
            log.info("event=sourcing.failover pool=%d from=%s reason=%s", pool_id, offer.supplier, p.detail)
        return last

    async def restock(self, pool_id: int, sourcing: SkuSourcing, quantity: int, only: str | None = None
                      ) -> Procurement | None:
        """One restock of a pool, under its lease (None: another process is restocking it)."""
        name, now = f"restock:{pool_id}", self.clock()
        if not await self.store.try_lease(name, self.holder, now + self.lease, now):
            return None
        try:
            return await self.procure(sourcing, quantity, pool_id, only=only)
        finally:
            await self.store.release_lease(name, self.holder)

    async def restock_due(self) -> int:
        """Job tick: restock every low pool that has a restock rule; the number of purchases that succeeded."""
        done = 0
        for pool_id, sourcing in await self.store.restock_candidates():
            p = await self.restock(pool_id, sourcing, sourcing.restock_quantity)
            done += p is not None and p.state is ProcurementState.SUCCEEDED
        return done

    async def sellable(self, sku: Sku) -> int:
        """Stock to show customers: own stock, plus for an on-demand SKU what its healthy sources reported at the
        last catalogue sync (a source that does not count shows as SHOWN_UNCOUNTED)."""
        own = await self.store.pool_available(sku.pool_id) // sku.units
        sourcing = await self.store.sku_sourcing(sku.id)
        if sourcing is None or not sourcing.on_demand:
            return own
        reported = {(p.supplier, p.product_id): p for p in await self.store.supplier_products()}
        extra = 0
        for source in sourcing.sources:
            p = reported.get((source.supplier, source.product_id))
            if p is None or p.stock != StockState.IN_STOCK.value or p.cost > sourcing.max_unit_cost \
                    or not self.registry.healthy(source.supplier):
                continue
            extra += SHOWN_UNCOUNTED if p.stock_count is None else p.stock_count // sku.units
        return own + extra
