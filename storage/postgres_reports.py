"""PostgreSQL report reads (a mixin of PostgresStore): ledger sums grouped in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from storage.postgres_base import PostgresBase, aware
from storage.protocols.reports import CustomerSales, LedgerGroup
from storage.sqlite_reports import LANGUAGES_SQL, ORDERS, customer_sql, grouped_sql


class PgReports(PostgresBase):
    """Report verbs of PostgresStore (mixed in)."""

    async def ledger_grouped(self, since: datetime, until: datetime, by: str) -> list[LedgerGroup]:
        rows = await self.pool.fetch(grouped_sql(by, "$1", "$2"), aware(since), aware(until))
        return [LedgerGroup(str(r[0]), r[1], r[2], int(r[3]), int(r[4])) for r in rows]

    async def ledger_by_period(self, bounds: Sequence[datetime]) -> list[LedgerGroup]:
        if len(bounds) < 2:
            return []
        los = [aware(b) for b in bounds[:-1]]
        his = [aware(b) for b in bounds[1:]]
        rows = await self.pool.fetch(
            f"SELECT b.i - 1, l.kind, l.currency, SUM(l.amount), {ORDERS}"
            " FROM ledger l JOIN unnest($1::timestamptz[], $2::timestamptz[]) WITH ORDINALITY AS b(lo, hi, i)"
            " ON l.at >= b.lo AND l.at < b.hi WHERE l.at >= $3 AND l.at < $4 GROUP BY b.i, l.kind, l.currency",
            los, his, los[0], his[-1])
        return [LedgerGroup(str(r[0]), r[1], r[2], int(r[3]), int(r[4])) for r in rows]

    async def customer_sales(self, since: datetime, until: datetime) -> list[CustomerSales]:
        rows = await self.pool.fetch(customer_sql("$1", "$2"), aware(since), aware(until))
        return [CustomerSales(r[0], r[1], r[2], int(r[3]), int(r[4]), bool(r[5]), r[6]) for r in rows]

    async def order_languages(self, since: datetime, until: datetime) -> dict[str, int]:
        rows = await self.pool.fetch(LANGUAGES_SQL.format(lo="$1", hi="$2"), aware(since), aware(until))
        return {str(r[0]): int(r[1]) for r in rows}
