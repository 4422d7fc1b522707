"""The reports seam: ledger sums grouped in the database (by SKU, channel, supplier or time bucket)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

#: the groupings a store aggregates itself; day/week/month are time buckets (`ledger_by_period`)
STORE_GROUPINGS = ("sku", "channel", "supplier", "distributor")
#: an order whose codes came from more than one supplier's batches
MIXED_SUPPLIERS = "*mixed*"


@dataclass(frozen=True, slots=True)
class LedgerGroup:
    """The sum of one ledger kind in one currency for one group: `key` is the SKU id, channel, supplier ('' for
    rows without codes, MIXED_SUPPLIERS for orders served from several suppliers) or the bucket's index; `orders`
    is the number of lines (for `sale`: the paid orders, one sale line each)."""

    key: str
    kind: str
    currency: str
    amount: int
    orders: int


@dataclass(frozen=True, slots=True)
class CustomerSales:
    """One customer's paid orders in one currency over a period (ids only, no personal data); `new` when their
    first ever sale falls inside the period."""

    channel: str
    user_id: str
    currency: str
    orders: int
    amount: int
    new: bool
    first_sale: datetime | None = None  # the customer's first sale ever (UTC): their cohort


class ReportStore(Protocol):
    """Ledger sums over [since, until) aggregated by the database."""

    async def ledger_grouped(self, since: datetime, until: datetime, by: str) -> list[LedgerGroup]:
        """Sums per (group, kind, currency); `by` is one of STORE_GROUPINGS (ValueError otherwise). Supplier:
        through order_items → codes → code_batches.supplier."""
        ...

    async def ledger_by_period(self, bounds: Sequence[datetime]) -> list[LedgerGroup]:
        """Sums per (bucket, kind, currency) for the buckets [bounds[i], bounds[i+1]); key = str(i)."""
        ...

    async def customer_sales(self, since: datetime, until: datetime) -> list[CustomerSales]:
        """Paid orders (sale lines) per customer and currency in [since, until)."""
        ...

    async def order_languages(self, since: datetime, until: datetime) -> dict[str, int]:
        """Paid orders in [since, until) per order language."""
        ...
