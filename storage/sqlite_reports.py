"""SQLite report reads (a mixin of SqliteStore): ledger sums grouped in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from storage.protocols.reports import MIXED_SUPPLIERS, STORE_GROUPINGS, CustomerSales, LedgerGroup
from storage.sqlite_base import SqliteBase
from storage.sqltime import from_ts, ts

SUPPLIER_OF_ORDER = (
    "SELECT i.order_id, CASE WHEN COUNT(DISTINCT b.supplier) > 1 THEN '" + MIXED_SUPPLIERS + "'"
    " ELSE MAX(b.supplier) END AS supplier"
    " FROM order_items i JOIN codes c ON c.id = i.code_id JOIN code_batches b ON b.id = c.batch_id"
    " WHERE i.order_id IN (SELECT order_id FROM ledger WHERE at >= {lo} AND at < {hi}) GROUP BY i.order_id")
#: orders per group: a paid order has exactly one `sale` line (a second payment is booked under its own kinds), so
#: the sale lines of a group are its paid orders; a plain count lets the database hash-aggregate instead of
#: sorting every row for COUNT(DISTINCT) (3.4× a bare GROUP BY on PostgreSQL at 1M orders, benchmarks/bench_reports.py)
ORDERS = "COUNT(*)"
KEYS = {"sku": "CAST(l.sku_id AS TEXT)", "channel": "l.channel", "supplier": "COALESCE(s.supplier, '')",
        "distributor": "COALESCE(dd.name, '')"}
#: the distributor an order came through: its API client's, else the referrer of its chat customer (orders placed
#: after the distributor was added, as for commission); one name per order
DISTRIBUTOR_OF_ORDER = (
    "SELECT order_id, MIN(name) AS name FROM ("
    " SELECT a.order_id, d.name FROM api_orders a JOIN distributors d ON d.api_client_id = a.client_id"
    " UNION ALL SELECT o.id, d.name FROM orders o JOIN users u ON u.channel = o.channel AND u.user_id = o.user_id"
    " JOIN distributors d ON d.ref_code = u.referrer WHERE o.created_at >= d.created_at) x GROUP BY order_id")


def grouped_sql(by: str, lo: str, hi: str) -> str:
    """The GROUP BY statement for one grouping; placeholders `lo`/`hi` are the backend's (both used twice for
    supplier)."""
    if by not in STORE_GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}: one of {', '.join(STORE_GROUPINGS)}")
    join = f" LEFT JOIN ({SUPPLIER_OF_ORDER.format(lo=lo, hi=hi)}) s ON s.order_id = l.order_id" \
        if by == "supplier" else ""
    if by == "distributor":
        join = f" LEFT JOIN ({DISTRIBUTOR_OF_ORDER}) dd ON dd.order_id = l.order_id"
    return (f"SELECT {KEYS[by]} AS k, l.kind, l.currency, SUM(l.amount), {ORDERS}"
            f" FROM ledger l{join} WHERE l.at >= {lo} AND l.at < {hi} GROUP BY 1, 2, 3")


class Reports(SqliteBase):
    """Report verbs of SqliteStore (mixed in)."""

    async def ledger_grouped(self, since: datetime, until: datetime, by: str) -> list[LedgerGroup]:
        sql = grouped_sql(by, "?", "?")
        params = (ts(since), ts(until)) * (2 if by == "supplier" else 1)
        return [LedgerGroup(str(r[0]), r[1], r[2], int(r[3]), int(r[4])) for r in await self._scan(sql, params)]

    async def ledger_by_period(self, bounds: Sequence[datetime]) -> list[LedgerGroup]:
        if len(bounds) < 2:
            return []
        values = ", ".join("(?, ?, ?)" for _ in bounds[1:])
        params: list[object] = []
        for i, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
            params += [i, ts(lo), ts(hi)]
        sql = (f"WITH b(i, lo, hi) AS (VALUES {values})"
               f" SELECT b.i, l.kind, l.currency, SUM(l.amount), {ORDERS}"
               " FROM ledger l JOIN b ON l.at >= b.lo AND l.at < b.hi"
               " WHERE l.at >= ? AND l.at < ? GROUP BY b.i, l.kind, l.currency")
        rows = await self._scan(sql, [*params, ts(bounds[0]), ts(bounds[-1])])
        return [LedgerGroup(str(r[0]), r[1], r[2], int(r[3]), int(r[4])) for r in rows]

    async def customer_sales(self, since: datetime, until: datetime) -> list[CustomerSales]:
        rows = await self._scan(customer_sql("?", "?"), (ts(since), ts(since), ts(until)))
        return [CustomerSales(r[0], r[1], r[2], int(r[3]), int(r[4]), bool(r[5]), from_ts(r[6])) for r in rows]

    async def order_languages(self, since: datetime, until: datetime) -> dict[str, int]:
        rows = await self._scan(LANGUAGES_SQL.format(lo="?", hi="?"), (ts(since), ts(until)))
        return {str(r[0]): int(r[1]) for r in rows}


def customer_sql(lo: str, hi: str) -> str:
    """Paid orders per customer and currency, and whether the customer's first sale ever is inside the period
    (SQLite: bind the start twice, it comes first; PostgreSQL: $1 is the start)."""
    start = lo
    first = ("(SELECT MIN(l2.at) FROM ledger l2 JOIN orders o2 ON o2.id = l2.order_id WHERE l2.kind = 'sale'"
             " AND o2.channel = o.channel AND o2.user_id = o.user_id)")
    return ("SELECT c.channel, c.user_id, c.currency, c.orders, c.amount, c.first_sale >= " + start + ", c.first_sale"
            " FROM (SELECT o.channel, o.user_id, l.currency, COUNT(DISTINCT l.order_id) AS orders,"
            f" SUM(l.amount) AS amount, {first} AS first_sale"
            " FROM ledger l JOIN orders o ON o.id = l.order_id"
            f" WHERE l.kind = 'sale' AND l.at >= {lo} AND l.at < {hi} GROUP BY o.channel, o.user_id, l.currency) c")


LANGUAGES_SQL = ("SELECT o.language, COUNT(DISTINCT o.id) FROM ledger l JOIN orders o ON o.id = l.order_id"
                 " WHERE l.kind = 'sale' AND l.at >= {lo} AND l.at < {hi} GROUP BY o.language")
