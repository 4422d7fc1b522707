"""SQLite transaction bodies that move a distributor's commission with an order's refund (issue 15): the reversal
of a partial refund's share, the final reversal of what is left, and the shop ledger's `commission` line of each.
They run inside the refund's own transaction (storage/sqlite_orders.refund, `refund_part` below); they import
nothing of the other storage modules, so both the order and the distributor bodies can use them.

Rounding (integer minor units): after partial refunds totalling R of an order of amount T whose accrual was A,
the reversals written so far add up to exactly floor(A × R / T), however R was split — each partial reversal is
floor(A × R_after / T) minus what was reversed before it. The distributor never loses more than its share, and the
final reversal (full refund) is A minus all earlier reversals, so a refunded order's commission nets to 0 exactly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from typing import Any

from storage.protocols.distributors import PartRefund

#: the `part` of the reversal an accrual writes for partial refunds made before it
BEFORE_ACCRUAL = "before-accrual"
_REVERSED = ("SELECT COALESCE(SUM(amount), 0) FROM distributor_ledger WHERE order_id = ? AND kind = 'reversal'")


def book(db: sqlite3.Connection, rows: list[Any], at: str) -> None:
    """The shop's own ledger carries every commission line too (kind `commission`, negative like cost; a reversal
    positive), in the same transaction, so the money report's profit is net of commission. rows: (order_id,
    currency, amount) of distributor ledger lines."""
    db.executemany(
        "INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
        " SELECT id, sku_id, channel, 'commission', ?, ?, ? FROM orders WHERE id = ?",
        [(currency, -int(amount), at, order_id) for order_id, currency, amount in rows if amount])


def _accrual(db: sqlite3.Connection, oid: int) -> Any:
    return db.execute("SELECT distributor_id, currency, amount, note FROM distributor_ledger"
                      " WHERE order_id = ? AND kind = 'accrual' AND amount <> 0", (oid,)).fetchone()


def reverse_share(db: sqlite3.Connection, oid: int, refunded: int, total: int, part: str, at: str) -> int:
    """After partial refunds of `refunded` out of `total`: the reversal that brings the order's reversed commission
    to floor(accrual × refunded / total). Returns its amount (≤ 0; 0 writes nothing)."""
    acc = _accrual(db, oid)
    if acc is None or total <= 0:
        return 0
    target = int(acc[2]) * refunded // total
    line = target + int(db.execute(_REVERSED, (oid,)).fetchone()[0])  # reversals are negative
    if line <= 0:
        return 0
    db.execute("INSERT INTO distributor_ledger (distributor_id, currency, amount, kind, order_id, note, at, part)"
               " VALUES (?,?,?,'reversal',?,?,?,?)", (acc[0], acc[1], -line, oid, acc[3], at, part))
    book(db, [(oid, acc[1], -line)], at)
    return -line


def catch_up(db: sqlite3.Connection, rows: list[Any], at: str) -> None:
    """Accruals just written (order_id, currency, amount) of orders partially refunded before them (refunded while
    paid, or delivered by another process before its pass ran): their share reversed at once."""
    for oid, _, amount in rows:
        if not amount:
            continue
        r = db.execute("SELECT COALESCE(SUM(p.amount), 0), o.amount FROM orders o LEFT JOIN refund_parts p"
                       " ON p.order_id = o.id WHERE o.id = ? GROUP BY o.id", (oid,)).fetchone()
        if r is not None and int(r[0]):
            reverse_share(db, oid, int(r[0]), int(r[1]), BEFORE_ACCRUAL, at)


def reverse_rest(db: sqlite3.Connection, oid: int, at: str) -> int:
    """The order is refunded in full: the final reversal, of what the partial reversals left of the accrual (at
    most once per order). Returns lines written."""
    acc = _accrual(db, oid)
    if acc is None:
        return 0
    rest = int(acc[2]) + int(db.execute(_REVERSED, (oid,)).fetchone()[0])
    written = db.execute(
        "INSERT OR IGNORE INTO distributor_ledger (distributor_id, currency, amount, kind, order_id, note, at, part)"
        " VALUES (?,?,?,'reversal',?,?,?,'')", (acc[0], acc[1], -rest, oid, acc[3], at)).rowcount
    if written:
        book(db, [(oid, acc[1], -rest)], at)
    return int(written)


def refund_part(db: sqlite3.Connection, oid: int, refund_ref: str, amount: int, at: str,
                refundable: Collection[str]) -> PartRefund:
    """Under BEGIN IMMEDIATE: a partial refund's row, its `refund` ledger line and its commission reversal."""
    row = db.execute("SELECT state, sku_id, channel, amount, currency FROM orders WHERE id = ?", (oid,)).fetchone()
    if row is None:
        return PartRefund.NOT_REFUNDABLE
    if db.execute("SELECT 1 FROM refund_parts WHERE order_id = ? AND refund_ref = ?", (oid, refund_ref)).fetchone():
        return PartRefund.ALREADY
    state, sku_id, channel, total, currency = row
    if state not in refundable or not db.execute(
            "SELECT 1 FROM ledger WHERE order_id = ? AND kind = 'sale'", (oid,)).fetchone():
        return PartRefund.NOT_REFUNDABLE
    before = int(db.execute("SELECT COALESCE(SUM(amount), 0) FROM refund_parts WHERE order_id = ?",
                            (oid,)).fetchone()[0])
    if amount <= 0 or before + amount > total:
        return PartRefund.TOO_BIG
    if before + amount == total:
        return PartRefund.COMPLETES  # the last part is the full refund's remainder: refund() books it
    db.execute("INSERT INTO refund_parts (order_id, refund_ref, amount, currency, at) VALUES (?,?,?,?,?)",
               (oid, refund_ref, amount, currency, at))
    db.execute("INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
               " VALUES (?,?,?,'refund',?,?,?)", (oid, sku_id, channel, currency, -amount, at))
    reverse_share(db, oid, before + amount, int(total), refund_ref, at)
    return PartRefund.RECORDED
