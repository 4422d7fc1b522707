"""PostgreSQL: payments beyond an order's first one (storage/protocols/payments_extra.py), a mixin of PostgresStore."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from storage.protocols.payments_extra import REFUNDED_DETAIL, PaymentRecord
from storage.records import DUPLICATE_PAYMENT, DUPLICATE_REFUND

_COLUMNS = "provider, provider_txn_id, amount, currency, COALESCE(outcome, ''), detail"


def _record(r: Any) -> PaymentRecord:
    return PaymentRecord(r[0], r[1], int(r[2]), r[3], r[4], r[5])


class PgExtraPayments:
    """Verbs of ExtraPaymentStore (mixed into PostgresStore)."""

    @property
    def pool(self) -> asyncpg.Pool:
        raise NotImplementedError  # provided by PostgresStore

    async def once_claimed(self, scope: str, key: str, now: datetime) -> bool:
        return await self.pool.fetchval("SELECT 1 FROM once_keys WHERE scope = $1 AND key = $2 AND expires_at > $3",
                                        scope, key, now.astimezone(UTC)) is not None

    async def payment_records(self, order_id: int) -> list[PaymentRecord]:
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM payment_events WHERE order_id = $1 ORDER BY id",
                                     order_id)
        return [_record(r) for r in rows]

    async def payment_record(self, provider: str, provider_txn_id: str) -> PaymentRecord | None:
        r = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM payment_events WHERE provider = $1"
                                     " AND provider_txn_id = $2", provider, provider_txn_id)
        return _record(r) if r else None

    async def refund_extra_payment(self, provider: str, provider_txn_id: str, refund_ref: str,
                                   now: datetime) -> bool:
        now = now.astimezone(UTC)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE payment_events SET detail = $1 WHERE provider = $2 AND provider_txn_id = $3"
                " AND order_id IS NOT NULL AND detail NOT LIKE $4 RETURNING order_id, amount, currency, outcome",
                (REFUNDED_DETAIL + refund_ref)[:200], provider, provider_txn_id, REFUNDED_DETAIL + "%")
            if row is None:
                return False
            order_id, amount, currency, outcome = row
            if outcome == "duplicate":
                return True  # PaymentInbox settled it as a duplicate: its ledger lines are written
            order = await conn.fetchrow("SELECT sku_id, channel FROM orders WHERE id = $1", order_id)
            assert order is not None  # payment_events.order_id names an order
            await conn.executemany(
                "INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7)",
                [(order_id, order[0], order[1], DUPLICATE_PAYMENT, currency, amount, now),
                 (order_id, order[0], order[1], DUPLICATE_REFUND, currency, -amount, now)])
            return True
