"""Sales reports from the ledger: revenue, cost, fees, refunds and profit per SKU and channel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from storage.protocol import Store


@dataclass
class ReportRow:
    sku_id: int
    channel: str
    currency: str
    orders: int = 0
    revenue: int = 0
    cost: int = 0
    fees: int = 0
    refunds: int = 0

    @property
    def profit(self) -> int:
        return self.revenue + self.refunds - self.cost - self.fees


async def sales_report(store: Store, since: datetime, until: datetime) -> list[ReportRow]:
    """Rows per (SKU, channel, currency). Costs may be in another currency than sales (Stars vs fen):
    they get their own row then, never a converted sum."""
    rows: dict[tuple[int, str, str], ReportRow] = {}
    for line in await store.ledger(since, until):
        row = rows.setdefault((line.sku_id, line.channel, line.currency),
                              ReportRow(line.sku_id, line.channel, line.currency))
        if line.kind == "sale":
            row.revenue += line.amount
            row.orders += line.orders
        elif line.kind in ("cost", "cost_reversal"):
            row.cost -= line.amount
        elif line.kind == "fee":
            row.fees -= line.amount
        elif line.kind == "refund":
            row.refunds += line.amount
    return sorted(rows.values(), key=lambda r: (r.sku_id, r.channel, r.currency))


@dataclass(frozen=True, slots=True)
class SalesReport:
    rows: list[ReportRow]
    sku_slugs: dict[int, str]  # SKU id → slug, for the rows' labels


class SalesReports:
    """The merchant's /report: the last `days` days up to now."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock

    async def last_days(self, days: int) -> SalesReport:
        until = self.clock()
        rows = await sales_report(self.store, until - timedelta(days=days), until)
        slugs = {s.id: s.slug for s in await self.store.skus()} if rows else {}
        return SalesReport(rows, slugs)
