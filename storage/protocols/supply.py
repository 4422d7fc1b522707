"""The supply verbs of the Store (suppliers, procurements, SKU sources): a Protocol the `Store` protocol
inherits, implemented by storage/sqlite_supply.py and storage/postgres_supply.py (mixins of each backend).

Exactly-once rules the verbs enforce in the database:
- a procurement is written (`planned`) before its supplier is called; `our_ref` is unique;
- `mark_procurement_sent` moves planned -> sent once; `settle_procurement` moves sent/unknown to a final state
  once (a second settlement, e.g. the callback after the query, is a no-op returning None);
- at most one procurement per order that is not `failed`, and at most one open restock per pool (unique
  partial indexes): a second plan while one is open or unknown returns None.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from storage.records import NewCode
from storage.records_supply import (
    CostChange,
    NewProcurement,
    Procurement,
    ProcurementState,
    Settlement,
    SkuSourcing,
    SupplierProductRow,
    SupplierRecord,
)


class SupplyStore(Protocol):
    async def save_supplier(self, supplier: SupplierRecord, now: datetime) -> SupplierRecord:
        """Create or replace the supplier of that name."""
        ...

    async def suppliers(self) -> list[SupplierRecord]: ...
    async def supplier_by_name(self, name: str) -> SupplierRecord | None: ...

    async def plan_procurement(self, p: NewProcurement, now: datetime) -> Procurement | None:
        """Write a `planned` procurement; None when the order already has a live one, or the pool an open
        restock (nothing written)."""
        ...

    async def mark_procurement_sent(self, our_ref: str, now: datetime) -> bool:
        """planned -> sent; False when it was not planned."""
        ...

    async def mark_procurement_unknown(self, our_ref: str, detail: str, now: datetime) -> bool:
        """sent -> unknown (the answer was lost); False otherwise."""
        ...

    async def settle_procurement(self, our_ref: str, outcome: Settlement, codes: Sequence[NewCode],
                                 now: datetime) -> Procurement | None:
        """One transaction: a sent/unknown procurement takes its final state; on success `codes` go into the
        vault as a batch of its pool (unit cost = cost / quantity, duplicates of the vault skipped and counted,
        the shortfall recorded). UNKNOWN only records the supplier's order id and detail. None when the
        procurement was already settled (or is unknown to us): nothing changes. A planned procurement (nothing
        sent) can only be settled FAILED.

        A procurement for an order (on demand after payment, a direct recharge) settles that order in the same
        transaction when it is still waiting: SUCCEEDED allocates the new codes to it (items, cost ledger line, the
        `deliver` outbox row; a recharge has no codes and its cost is the procurement's), or fails it with its
        refund queued when the pool still cannot serve it; FAILED queues a `procure` outbox row for the order
        again (the next source, or the refund when none is left)."""
        ...

    async def hold_procurement(self, our_ref: str, detail: str, now: datetime) -> bool:
        """Mark a procurement held for a merchant (an answer that does not match it); False if unknown."""
        ...

    async def procurement_by_ref(self, our_ref: str) -> Procurement | None: ...
    async def procurements(self, states: Sequence[ProcurementState], limit: int,
                           updated_before: datetime | None = None) -> list[Procurement]:
        """Oldest first; only those last changed before `updated_before` when given."""
        ...

    async def order_procurements(self, order_id: int) -> list[Procurement]: ...
    async def fail_backorder(self, order_id: int, cause: str, now: datetime) -> bool:
        """A paid order waiting on suppliers (delivering, no codes) that no source can serve: failed, its refund
        queued (outbox `refund`, payload naming its payment), one transaction. False, nothing changed, when it
        is not waiting or any supplier order of it is planned, sent, unknown or succeeded."""
        ...

    async def save_sku_sourcing(self, sourcing: SkuSourcing) -> None: ...
    async def sku_sourcing(self, sku_id: int) -> SkuSourcing | None: ...
    async def sku_sourcings(self) -> list[SkuSourcing]: ...
    async def record_supplier_products(self, supplier: str, rows: Sequence[SupplierProductRow],
                                       now: datetime) -> list[CostChange]:
        """Save a supplier's catalogue as a sync saw it; the products whose cost changed or that are new."""
        ...

    async def supplier_products(self) -> list[SupplierProductRow]: ...
    async def restock_candidates(self) -> list[tuple[int, SkuSourcing]]:
        """(pool id, sourcing) of pools whose available uses are at or under their low-stock mark and that have
        a SKU with restock_quantity > 0 (the first such SKU of each pool)."""
        ...
