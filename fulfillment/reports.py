"""Sales reports from the ledger: revenue, cost, fees, refunds and profit per SKU and channel; the chat's /report
reads the report module (fulfillment/money_report.py) through SalesReports.for_chat."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from fulfillment.money_report import GROUPINGS, MoneyReport, MoneyReports, ReportError
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
    """The merchant's /report: `for_chat` (local periods, any grouping); `last_days`, the last `days` days up to now."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock

    async def last_days(self, days: int) -> SalesReport:
        until = self.clock()
        rows = await sales_report(self.store, until - timedelta(days=days), until)
        slugs = {s.id: s.slug for s in await self.store.skus()} if rows else {}
        return SalesReport(rows, slugs)

    async def for_chat(self, args: Sequence[str], timezone: str) -> MoneyReport:
        """The merchant's `/report [today|7d|30d|YYYY-MM] [by sku|channel|supplier|day|week|month]` over local days
        (fulfillment/money_report.py); ReportError on anything else."""
        reports = MoneyReports(self.store, timezone)
        first, last, by = chat_period(list(args), reports.today(self.clock()))
        return await reports.report(first, last, by)


def chat_period(args: list[str], today: date) -> tuple[date, date, str]:
    """`[today|Nd|YYYY-MM] [by GROUPING]` → local days [first, last) and the grouping (default by SKU)."""
    period = args.pop(0) if args and args[0] != "by" else "today"
    by = "sku"
    if args:
        if len(args) != 2 or args[0] != "by" or args[1] not in GROUPINGS:
            raise ReportError(f"expected: by {'|'.join(GROUPINGS)}")
        by = args[1]
    if period == "today":
        return today, today + timedelta(days=1), by
    if period.endswith("d") and period[:-1].isdigit() and 1 <= int(period[:-1]) <= 366:
        return today - timedelta(days=int(period[:-1]) - 1), today + timedelta(days=1), by
    try:
        first = date.fromisoformat(period + "-01")
    except ValueError:
        raise ReportError(f"unknown period {period!r}: today, 7d, 30d or YYYY-MM") from None
    return first, (first.replace(day=28) + timedelta(days=4)).replace(day=1), by
