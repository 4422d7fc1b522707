"""SQLite: reconciliation verbs (storage/protocols/reconcile.py), a mixin of SqliteStore."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from storage.protocols.payments_extra import REFUNDED_DETAIL
from storage.protocols.reconcile import Discrepancy, FeeActual, NewDiscrepancy, ShopPayment, ShopRefund
from storage.records import DUPLICATE_REFUND
from storage.records_supply import Procurement
from storage.sqlite_base import SqliteBase
from storage.sqlite_supply import PROC_COLS, procurement
from storage.sqltime import from_ts, ts

COLS = ("id, source, kind, reference, order_ref, currency, expected, actual, detail, period, found_at, reported_at,"
        " resolved_at, resolved_by, note")
#: the payments an order lives by (a duplicate or a held second payment is not one of them)
OWN_OUTCOMES = "('allocated', 'failed')"
#: a payment's refunded amount: a duplicate given back, or the order's own payment of a refunded order
REFUNDED = (f"CASE WHEN p.detail LIKE '{REFUNDED_DETAIL}%' THEN p.amount WHEN p.outcome IN {OWN_OUTCOMES}"
            " AND o.state = 'refunded' THEN p.amount ELSE 0 END")
PAYMENT_COLS = f"p.provider_txn_id, p.order_ref, p.amount, p.currency, COALESCE(p.outcome, ''), {REFUNDED}"
REFUNDS_SQL = (
    "SELECT p.provider_txn_id, p.order_ref, -l.amount, l.currency FROM ledger l"
    f" JOIN payment_events p ON p.order_id = l.order_id AND p.provider = {{p}} AND p.outcome IN {OWN_OUTCOMES}"
    " WHERE l.kind = 'refund' AND l.at >= {lo} AND l.at < {hi}"
    " UNION ALL SELECT p.provider_txn_id, p.order_ref, p.amount, p.currency FROM payment_events p"
    f" WHERE p.provider = {{p}} AND p.detail LIKE '{REFUNDED_DETAIL}%' AND p.order_id IN"
    f" (SELECT order_id FROM ledger WHERE kind = '{DUPLICATE_REFUND}' AND at >= {{lo}} AND at < {{hi}})")


def discrepancy(r: Any, when: Any = from_ts) -> Discrepancy:
    return Discrepancy(int(r[0]), r[1], r[2], r[3], r[4], r[5], None if r[6] is None else int(r[6]),
                       None if r[7] is None else int(r[7]), r[8], r[9], when(r[10]),
                       None if r[11] is None else when(r[11]), None if r[12] is None else when(r[12]), r[13], r[14])


def _record(db: sqlite3.Connection, items: Sequence[NewDiscrepancy], at: str) -> list[Any]:
    found = []
    for d in items:
        row = db.execute(
            "INSERT INTO discrepancies (source, kind, reference, order_ref, currency, expected, actual, detail,"
            f" period, found_at) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING RETURNING {COLS}",
            (d.source, d.kind, d.reference[:120], d.order_ref, d.currency, d.expected, d.actual, d.detail[:300],
             d.period, at)).fetchone()
        if row is not None:
            found.append(row)
    return found


def _correct_fees(db: sqlite3.Connection, provider: str, fees: Sequence[FeeActual], at: str) -> tuple[int, int]:
    db.execute("CREATE TEMP TABLE IF NOT EXISTS recon_fee_in (txn TEXT PRIMARY KEY, fee INTEGER NOT NULL)")
    db.execute("CREATE TEMP TABLE IF NOT EXISTS recon_fee_new (txn TEXT PRIMARY KEY)")
    db.execute("DELETE FROM recon_fee_in")
    db.execute("DELETE FROM recon_fee_new")
    db.executemany("INSERT OR IGNORE INTO recon_fee_in VALUES (?, ?)", fees)
    inserted = db.execute(
        "INSERT INTO ledger_corrections (source, reference, kind, order_id, actual, delta, at)"
        " SELECT ?, i.txn, 'fee', p.order_id, i.fee,"
        " i.fee + COALESCE((SELECT SUM(l.amount) FROM ledger l WHERE l.order_id = p.order_id AND l.kind = 'fee'), 0),"
        " ? FROM recon_fee_in i JOIN payment_events p ON p.provider = ? AND p.provider_txn_id = i.txn"
        f" WHERE p.order_id IS NOT NULL AND p.outcome IN {OWN_OUTCOMES} ON CONFLICT DO NOTHING"
        " RETURNING reference, delta", (provider, at, provider)).fetchall()
    db.executemany("INSERT INTO recon_fee_new VALUES (?)", [(ref,) for ref, delta in inserted if delta])
    # one fee line per corrected order, dated like its sale (the day's report then shows the actual fee)
    db.execute(
        "INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
        " SELECT o.id, o.sku_id, o.channel, 'fee', o.currency, -c.delta,"
        " COALESCE((SELECT MIN(s.at) FROM ledger s WHERE s.order_id = o.id AND s.kind = 'sale'), ?)"
        " FROM recon_fee_new n JOIN ledger_corrections c ON c.source = ? AND c.reference = n.txn AND c.kind = 'fee'"
        " JOIN orders o ON o.id = c.order_id", (at, provider))
    db.execute("DELETE FROM recon_fee_in")
    db.execute("DELETE FROM recon_fee_new")
    return len(inserted), sum(delta for _, delta in inserted)


class Reconciliation(SqliteBase):
    """Reconciliation verbs of SqliteStore (mixed in)."""

    async def record_discrepancies(self, items: Sequence[NewDiscrepancy], now: datetime) -> list[Discrepancy]:
        if not items:
            return []
        return [discrepancy(r) for r in await self._tx(_record, list(items), ts(now))]

    async def discrepancy(self, discrepancy_id: int) -> Discrepancy | None:
        row = await self._one(f"SELECT {COLS} FROM discrepancies WHERE id = ?", (discrepancy_id,))
        return None if row is None else discrepancy(row)

    async def discrepancies(self, include_resolved: bool, limit: int) -> list[Discrepancy]:
        where = "" if include_resolved else " WHERE resolved_at IS NULL"
        rows = await self._all(f"SELECT {COLS} FROM discrepancies{where} ORDER BY id DESC LIMIT ?", (limit,))
        return [discrepancy(r) for r in rows]

    async def unreported_discrepancies(self, limit: int) -> list[Discrepancy]:
        rows = await self._all(f"SELECT {COLS} FROM discrepancies WHERE reported_at IS NULL ORDER BY id LIMIT ?",
                               (limit,))
        return [discrepancy(r) for r in rows]

    async def mark_discrepancy_reported(self, discrepancy_id: int, now: datetime) -> bool:
        def mark(db: sqlite3.Connection) -> bool:
            return db.execute("UPDATE discrepancies SET reported_at = ? WHERE id = ? AND reported_at IS NULL",
                              (ts(now), discrepancy_id)).rowcount == 1

        return await self._tx(mark)

    async def resolve_discrepancy(self, discrepancy_id: int, actor: str, note: str, now: datetime) -> bool:
        def resolve(db: sqlite3.Connection) -> bool:
            return db.execute("UPDATE discrepancies SET resolved_at = ?, resolved_by = ?, note = ?"
                              " WHERE id = ? AND resolved_at IS NULL",
                              (ts(now), actor[:64], note[:300], discrepancy_id)).rowcount == 1

        return await self._tx(resolve)

    async def shop_payments(self, provider: str, since: datetime, until: datetime) -> list[ShopPayment]:
        rows = await self._scan(
            f"SELECT {PAYMENT_COLS} FROM payment_events p LEFT JOIN orders o ON o.id = p.order_id"
            " WHERE p.provider = ? AND p.received_at >= ? AND p.received_at < ?", (provider, ts(since), ts(until)))
        return [ShopPayment(*r) for r in rows]

    async def shop_payment(self, provider: str, txn: str) -> ShopPayment | None:
        row = await self._one(
            f"SELECT {PAYMENT_COLS} FROM payment_events p LEFT JOIN orders o ON o.id = p.order_id"
            " WHERE p.provider = ? AND p.provider_txn_id = ?", (provider, txn))
        return None if row is None else ShopPayment(*row)

    async def shop_refunds(self, provider: str, since: datetime, until: datetime) -> list[ShopRefund]:
        lo, hi = ts(since), ts(until)
        rows = await self._scan(REFUNDS_SQL.format(p="?", lo="?", hi="?"), (provider, lo, hi, provider, lo, hi))
        return [ShopRefund(r[0], r[1], int(r[2]), r[3]) for r in rows]

    async def correct_fees(self, provider: str, fees: Sequence[FeeActual], now: datetime) -> tuple[int, int]:
        count = total = 0
        for start in range(0, len(fees), 20_000):
            n, t = await self._tx(_correct_fees, provider, list(fees[start:start + 20_000]), ts(now))
            count, total = count + n, total + t
        return count, total

    async def supplier_procurements(self, supplier: str, since: datetime, until: datetime) -> list[Procurement]:
        rows = await self._scan(f"SELECT {PROC_COLS} FROM procurements WHERE supplier = ? AND created_at >= ?"
                                " AND created_at < ? ORDER BY id", (supplier, ts(since), ts(until)))
        return [procurement(r) for r in rows]
