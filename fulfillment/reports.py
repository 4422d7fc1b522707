"""The chat's /report: its periods, read from the report module (fulfillment/money_report.py) through
SalesReports.for_chat."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

from fulfillment.money_report import GROUPINGS, MoneyReport, MoneyReports, ReportError
from fulfillment.report_charts import Overview, overview
from storage.protocol import Store


class SalesReports:
    """The merchant's /report: `for_chat` (local periods, any grouping)."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock

    async def for_chat(self, args: Sequence[str], timezone: str) -> MoneyReport:
        """The merchant's `/report [today|7d|30d|YYYY-MM] [by sku|channel|supplier|day|week|month]` over local days
        (fulfillment/money_report.py); ReportError on anything else."""
        reports = MoneyReports(self.store, timezone)
        first, last, by = chat_period(list(args), reports.today(self.clock()))
        return await reports.report(first, last, by)

    def period(self, args: Sequence[str], timezone: str) -> tuple[date, date, str]:
        """The local days [first, last) and grouping the chat arguments name (ReportError otherwise)."""
        return chat_period(list(args), MoneyReports(self.store, timezone).today(self.clock()))

    async def overview(self, first: date, last: date, timezone: str) -> Overview:
        """What the charts and the dashboard draw for local days [first, last)."""
        return await overview(MoneyReports(self.store, timezone), first, last)


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
