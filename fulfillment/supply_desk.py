"""The merchant's supply desk: what the chat's supply commands read and write (handlers never hold the store)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from fulfillment.sourcing import SourcingService
from storage.protocol import Store
from storage.records_supply import Procurement, ProcurementState, SkuSourcing, SupplierRecord


class SupplyDesk:
    def __init__(self, store: Store, sourcing: SourcingService,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.sourcing = sourcing
        self.clock = clock

    async def audit(self, channel: str, actor: str, action: str, detail: str) -> None:
        await self.store.audit(channel, actor, action, detail, self.clock())

    async def suppliers(self) -> list[SupplierRecord]:
        return await self.store.suppliers()

    async def supplier_known(self, name: str) -> bool:
        return await self.store.supplier_by_name(name) is not None

    async def save_sourcing(self, sourcing: SkuSourcing) -> None:
        await self.store.save_sku_sourcing(sourcing)

    async def pool_sourcing(self, pool_id: int) -> SkuSourcing | None:
        """The sourcing of the first SKU drawing from the pool that has supplier sources (what a restock buys)."""
        for sku in await self.store.skus():
            found = await self.store.sku_sourcing(sku.id) if sku.pool_id == pool_id else None
            if found is not None and found.sources:
                return found
        return None

    async def procurement(self, ref: str) -> Procurement | None:
        return await self.store.procurement_by_ref(ref)

    async def procurements(self, states: Sequence[ProcurementState], limit: int) -> list[Procurement]:
        return await self.store.procurements(states, limit)
