"""PostgreSQL: reconciliation verbs (storage/protocols/reconcile.py), a mixin of PostgresStore."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from storage.postgres_supply import _aware, _same
from storage.protocols.reconcile import Discrepancy, FeeActual, NewDiscrepancy, ShopPayment, ShopRefund
from storage.records_supply import Procurement
from storage.sqlite_reconcile import COLS, OWN_OUTCOMES, PAYMENT_COLS, REFUNDS_SQL, discrepancy
from storage.sqlite_supply import PROC_COLS, procurement

_RECORD = ("INSERT INTO discrepancies (source, kind, reference, order_ref, currency, expected, actual, detail, period,"
           f" found_at) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],"
           f" $7::bigint[], $8::text[], $9::text[]), (SELECT $10::timestamptz) t"
           f" ON CONFLICT DO NOTHING RETURNING {COLS}")
#: one statement: the corrections recorded once (ON CONFLICT), then a fee line per order whose booked fees differ
#: (the ledger sums read the statement's snapshot, before its own inserts)
_CORRECT = (
    "WITH i AS (SELECT * FROM unnest($2::text[], $3::bigint[]) AS t(txn, fee)),"
    " c AS (INSERT INTO ledger_corrections (source, reference, kind, order_id, actual, delta, at)"
    " SELECT $1, i.txn, 'fee', p.order_id, i.fee,"
    " i.fee + COALESCE((SELECT SUM(l.amount) FROM ledger l WHERE l.order_id = p.order_id AND l.kind = 'fee'), 0), $4"
    " FROM i JOIN payment_events p ON p.provider = $1 AND p.provider_txn_id = i.txn"
    f" WHERE p.order_id IS NOT NULL AND p.outcome IN {OWN_OUTCOMES} ON CONFLICT DO NOTHING RETURNING order_id, delta),"
    " l AS (INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
    " SELECT o.id, o.sku_id, o.channel, 'fee', o.currency, -c.delta,"
    " COALESCE((SELECT MIN(s.at) FROM ledger s WHERE s.order_id = o.id AND s.kind = 'sale'), $4)"
    " FROM c JOIN orders o ON o.id = c.order_id WHERE c.delta <> 0 RETURNING 1)"
    " SELECT COUNT(*), COALESCE(SUM(delta), 0) FROM c")


def _disc(r: asyncpg.Record) -> Discrepancy:
    return discrepancy(r, _same)


class PgReconciliation:
    """Verbs of ReconcileStore (mixed into PostgresStore)."""

    @property
    def pool(self) -> asyncpg.Pool:
        raise NotImplementedError  # provided by PostgresStore

    async def record_discrepancies(self, items: Sequence[NewDiscrepancy], now: datetime) -> list[Discrepancy]:
        if not items:
            return []
        columns = list(zip(*[(d.source, d.kind, d.reference[:120], d.order_ref, d.currency, d.expected, d.actual,
                               d.detail[:300], d.period) for d in items], strict=True))
        rows = await self.pool.fetch(_RECORD, *[list(c) for c in columns], _aware(now))
        return sorted((_disc(r) for r in rows), key=lambda d: d.id)

    async def discrepancy(self, discrepancy_id: int) -> Discrepancy | None:
        row = await self.pool.fetchrow(f"SELECT {COLS} FROM discrepancies WHERE id = $1", discrepancy_id)
        return None if row is None else _disc(row)

    async def discrepancies(self, include_resolved: bool, limit: int) -> list[Discrepancy]:
        where = "" if include_resolved else " WHERE resolved_at IS NULL"
        rows = await self.pool.fetch(f"SELECT {COLS} FROM discrepancies{where} ORDER BY id DESC LIMIT $1", limit)
        return [_disc(r) for r in rows]

    async def unreported_discrepancies(self, limit: int) -> list[Discrepancy]:
        rows = await self.pool.fetch(
            f"SELECT {COLS} FROM discrepancies WHERE reported_at IS NULL ORDER BY id LIMIT $1", limit)
        return [_disc(r) for r in rows]

    async def mark_discrepancy_reported(self, discrepancy_id: int, now: datetime) -> bool:
        done = await self.pool.execute("UPDATE discrepancies SET reported_at = $1 WHERE id = $2"
                                       " AND reported_at IS NULL", _aware(now), discrepancy_id)
        return bool(done == "UPDATE 1")

    async def resolve_discrepancy(self, discrepancy_id: int, actor: str, note: str, now: datetime) -> bool:
        done = await self.pool.execute("UPDATE discrepancies SET resolved_at = $1, resolved_by = $2, note = $3"
                                       " WHERE id = $4 AND resolved_at IS NULL",
                                       _aware(now), actor[:64], note[:300], discrepancy_id)
        return bool(done == "UPDATE 1")

    async def shop_payments(self, provider: str, since: datetime, until: datetime) -> list[ShopPayment]:
        rows = await self.pool.fetch(
            f"SELECT {PAYMENT_COLS} FROM payment_events p LEFT JOIN orders o ON o.id = p.order_id"
            " WHERE p.provider = $1 AND p.received_at >= $2 AND p.received_at < $3",
            provider, _aware(since), _aware(until))
        return [ShopPayment(r[0], r[1], int(r[2]), r[3], r[4], int(r[5])) for r in rows]

    async def shop_payment(self, provider: str, txn: str) -> ShopPayment | None:
        r = await self.pool.fetchrow(
            f"SELECT {PAYMENT_COLS} FROM payment_events p LEFT JOIN orders o ON o.id = p.order_id"
            " WHERE p.provider = $1 AND p.provider_txn_id = $2", provider, txn)
        return None if r is None else ShopPayment(r[0], r[1], int(r[2]), r[3], r[4], int(r[5]))

    async def shop_refunds(self, provider: str, since: datetime, until: datetime) -> list[ShopRefund]:
        rows = await self.pool.fetch(REFUNDS_SQL.format(p="$1", lo="$2", hi="$3"), provider, _aware(since),
                                     _aware(until))
        return [ShopRefund(r[0], r[1], int(r[2]), r[3]) for r in rows]

    async def correct_fees(self, provider: str, fees: Sequence[FeeActual], now: datetime) -> tuple[int, int]:
        count = total = 0
        for start in range(0, len(fees), 100_000):  # one statement per 100,000: each joins whole tables once
            chunk = fees[start:start + 100_000]
            row = await self.pool.fetchrow(_CORRECT, provider, [f.txn for f in chunk], [f.fee for f in chunk],
                                           _aware(now))
            assert row is not None
            count, total = count + int(row[0]), total + int(row[1])
        return count, total

    async def supplier_procurements(self, supplier: str, since: datetime, until: datetime) -> list[Procurement]:
        rows = await self.pool.fetch(f"SELECT {PROC_COLS} FROM procurements WHERE supplier = $1 AND created_at >= $2"
                                     " AND created_at < $3 ORDER BY id", supplier, _aware(since), _aware(until))
        return [procurement(r, _same) for r in rows]
