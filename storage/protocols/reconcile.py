"""The reconciliation seam: discrepancies found against a provider's or supplier's records (each once per source,
kind and reference, reported to merchants once, resolved with a note), the shop's side of a period read in bulk,
and fee corrections from a bill booked in the ledger exactly once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

from storage.records_supply import Procurement

#: ledger kind of a fee line; a bill's actual fee replaces the booked one by one more line of this kind
FEE_KIND = "fee"


@dataclass(frozen=True, slots=True)
class NewDiscrepancy:
    source: str  # wechatpay | telegram | supplier:NAME
    kind: str  # fulfillment/reconcile.py Kind
    reference: str  # the provider's or supplier's id of the thing (transaction, charge, our procurement ref)
    order_ref: str = ""
    currency: str = ""
    expected: int | None = None  # what the shop recorded, minor units
    actual: int | None = None  # what the provider or supplier says, minor units
    detail: str = ""
    period: str = ""  # the day reconciled, YYYY-MM-DD


@dataclass(frozen=True, slots=True)
class Discrepancy:
    id: int
    source: str
    kind: str
    reference: str
    order_ref: str
    currency: str
    expected: int | None
    actual: int | None
    detail: str
    period: str
    found_at: datetime
    reported_at: datetime | None
    resolved_at: datetime | None
    resolved_by: str
    note: str


class ShopPayment(NamedTuple):
    """A payment event the shop recorded for one provider (a tuple: a day's bill can hold 100,000 of them)."""

    txn: str
    order_ref: str
    amount: int
    currency: str
    outcome: str
    refunded: int  # what the shop gave back of this payment (whole refunds: its amount, or 0)


class ShopRefund(NamedTuple):
    """Money the shop gave back in a period: the payment's transaction id and the amount."""

    txn: str
    order_ref: str
    amount: int
    currency: str


class FeeActual(NamedTuple):
    """A payment's actual fee from a bill (minor units, >= 0) by its provider transaction id."""

    txn: str
    fee: int


class ReconcileStore(Protocol):
    async def record_discrepancies(self, items: Sequence[NewDiscrepancy], now: datetime) -> list[Discrepancy]:
        """Record each (source, kind, reference) once; the ones recorded now (those known before are left alone)."""
        ...

    async def discrepancy(self, discrepancy_id: int) -> Discrepancy | None: ...

    async def discrepancies(self, include_resolved: bool, limit: int) -> list[Discrepancy]:
        """Newest first."""
        ...

    async def unreported_discrepancies(self, limit: int) -> list[Discrepancy]:
        """Oldest first."""
        ...

    async def mark_discrepancy_reported(self, discrepancy_id: int, now: datetime) -> bool:
        """True once per discrepancy (the caller that gets True tells the merchants)."""
        ...

    async def resolve_discrepancy(self, discrepancy_id: int, actor: str, note: str, now: datetime) -> bool:
        """Mark an open discrepancy resolved with a note; False when unknown or already resolved."""
        ...

    async def shop_payments(self, provider: str, since: datetime, until: datetime) -> list[ShopPayment]:
        """Payment events of `provider` received in [since, until) with their refund state."""
        ...

    async def shop_payment(self, provider: str, txn: str) -> ShopPayment | None: ...

    async def shop_refunds(self, provider: str, since: datetime, until: datetime) -> list[ShopRefund]:
        """Refunds the shop booked in [since, until) of payments of `provider` (ledger refund lines of the order's
        own payment; duplicate payments given back)."""
        ...

    async def correct_fees(self, provider: str, fees: Sequence[FeeActual], now: datetime) -> tuple[int, int]:
        """For each payment of `provider` the order lives by, once ever: book one ledger fee line making the
        order's fee lines add up to the actual fee (dated like its sale). (payments corrected, sum of the
        corrections in minor units, positive = more fee than booked). Payments unknown to the shop are skipped."""
        ...

    async def supplier_procurements(self, supplier: str, since: datetime, until: datetime) -> list[Procurement]:
        """The supplier's procurements created in [since, until), oldest first."""
        ...
