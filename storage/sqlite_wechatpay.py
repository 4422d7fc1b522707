"""SQLite: payments beyond an order's first one (storage/protocols/payments_extra.py), a mixin of SqliteStore."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

from storage.protocols.payments_extra import REFUNDED_DETAIL, PaymentRecord
from storage.records import DUPLICATE_PAYMENT, DUPLICATE_REFUND
from storage.sqltime import ts

_COLUMNS = "provider, provider_txn_id, amount, currency, COALESCE(outcome, ''), detail"


def _record(r: Any) -> PaymentRecord:
    return PaymentRecord(r[0], r[1], int(r[2]), r[3], r[4], r[5])


def _refund_extra(db: sqlite3.Connection, provider: str, txn: str, refund_ref: str, at: str) -> bool:
    row = db.execute(
        "UPDATE payment_events SET detail = ? WHERE provider = ? AND provider_txn_id = ? AND order_id IS NOT NULL"
        " AND detail NOT LIKE ? RETURNING order_id, amount, currency, outcome",
        ((REFUNDED_DETAIL + refund_ref)[:200], provider, txn, REFUNDED_DETAIL + "%"),
    ).fetchone()
    if row is None:
        return False
    order_id, amount, currency, outcome = row
    if outcome == "duplicate":
        return True  # PaymentInbox settled it as a duplicate: its ledger lines are written
    sku_id, channel = db.execute("SELECT sku_id, channel FROM orders WHERE id = ?", (order_id,)).fetchone()
    db.executemany(
        "INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at) VALUES (?,?,?,?,?,?,?)",
        [(order_id, sku_id, channel, DUPLICATE_PAYMENT, currency, amount, at),
         (order_id, sku_id, channel, DUPLICATE_REFUND, currency, -amount, at)],
    )
    return True


class ExtraPayments:
    """Verbs of ExtraPaymentStore (mixed into SqliteStore)."""

    _tx: Callable[..., Any]
    _one: Callable[..., Any]
    _all: Callable[..., Any]

    async def once_claimed(self, scope: str, key: str, now: datetime) -> bool:
        return await self._one("SELECT 1 FROM once_keys WHERE scope = ? AND key = ? AND expires_at > ?",
                               (scope, key, ts(now))) is not None

    async def payment_records(self, order_id: int) -> list[PaymentRecord]:
        rows = await self._all(f"SELECT {_COLUMNS} FROM payment_events WHERE order_id = ? ORDER BY id", (order_id,))
        return [_record(r) for r in rows]

    async def payment_record(self, provider: str, provider_txn_id: str) -> PaymentRecord | None:
        r = await self._one(f"SELECT {_COLUMNS} FROM payment_events WHERE provider = ? AND provider_txn_id = ?",
                            (provider, provider_txn_id))
        return _record(r) if r else None

    async def refund_extra_payment(self, provider: str, provider_txn_id: str, refund_ref: str,
                                   now: datetime) -> bool:
        return bool(await self._tx(_refund_extra, provider, provider_txn_id, refund_ref, ts(now)))
