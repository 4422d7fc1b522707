"""Invariant checks written as plain SQL on the database, independent of the code under test."""

from __future__ import annotations

import sqlite3

CHECKS = {
    # one use of one code in at most one live order item
    "use_sold_twice": "SELECT code_id, use_no FROM order_items WHERE NOT released"
                      " GROUP BY code_id, use_no HAVING COUNT(*) > 1",
    # a code's consumed uses equal the items pointing at it
    "uses_mismatch": "SELECT c.id FROM codes c LEFT JOIN (SELECT code_id, COUNT(*) AS n FROM order_items"
                     " WHERE NOT released GROUP BY code_id) i ON i.code_id = c.id"
                     " WHERE c.uses_total - c.uses_left <> COALESCE(i.n, 0)",
    "use_no_out_of_range": "SELECT i.code_id FROM order_items i JOIN codes c ON c.id = i.code_id"
                           " WHERE i.use_no < 1 OR i.use_no > c.uses_total",
    # every paid order line has all its codes, unpaid ones none
    "paid_without_codes": "SELECT o.id FROM orders o LEFT JOIN (SELECT order_id, COUNT(*) AS n FROM order_items"
                          " WHERE NOT released GROUP BY order_id) i ON i.order_id = o.id"
                          " WHERE o.state IN ('paid', 'delivering', 'delivered')"
                          " AND COALESCE(i.n, 0) <> o.quantity * o.units",
    "unpaid_with_codes": "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id"
                         " WHERE NOT i.released AND o.state NOT IN ('paid', 'delivering', 'delivered', 'refunded')",
    # the stock counter equals what the codes say (no live reservations at the end)
    "counter_drift": "SELECT p.id FROM pools p WHERE p.available <> (SELECT COALESCE(SUM(c.uses_left), 0)"
                     " FROM codes c WHERE c.pool_id = p.id AND c.status = 'available')"
                     " - (SELECT COALESCE(SUM(o.quantity * o.units), 0) FROM orders o WHERE o.pool_id = p.id"
                     " AND o.state IN ('reserved', 'awaiting_payment'))",
    "delivered_twice_outbox": "SELECT order_id FROM outbox WHERE kind = 'deliver' GROUP BY order_id"
                              " HAVING COUNT(*) > 1",
}
TOTALS = {
    "uses_total": "SELECT COALESCE(SUM(uses_total), 0) FROM codes",
    "uses_left": "SELECT COALESCE(SUM(uses_left), 0) FROM codes",
    "items": "SELECT COUNT(*) FROM order_items WHERE NOT released",
    "paid_orders": "SELECT COUNT(*) FROM orders WHERE state IN ('paid', 'delivering', 'delivered')",
}


def run_sqlite(path: str) -> tuple[dict[str, list[tuple[object, ...]]], dict[str, int]]:
    db = sqlite3.connect(path)
    try:
        bad = {name: db.execute(sql).fetchall() for name, sql in CHECKS.items()}
        totals = {name: int(db.execute(sql).fetchone()[0]) for name, sql in TOTALS.items()}
    finally:
        db.close()
    return bad, totals


async def run_pg(dsn: str) -> tuple[dict[str, list[tuple[object, ...]]], dict[str, int]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        bad = {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in CHECKS.items()}
        totals = {name: int(await conn.fetchval(sql)) for name, sql in TOTALS.items()}
    finally:
        await conn.close()
    return bad, totals


async def run(db_url: str) -> tuple[dict[str, list[tuple[object, ...]]], dict[str, int]]:
    if db_url.startswith("sqlite:///"):
        return run_sqlite(db_url[len("sqlite:///"):])
    return await run_pg(db_url)
