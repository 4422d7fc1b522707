"""PostgreSQL distributor verbs (a mixin of PostgresStore, mirroring storage/sqlite_distributors.py): each verb one
statement, except a payout, which locks its distributor's row so two payouts cannot both spend one balance."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import asyncpg

from storage.postgres_base import PostgresBase, aware
from storage.protocols.api import WalletLine
from storage.protocols.distributors import (
    CommissionKind,
    CommissionLine,
    Distributor,
    DistributorPrice,
    DistributorTaken,
    PartRefund,
    PayableExceeded,
)
from storage.sqlite_api import LINE_COLS, line_from
from storage.sqlite_commission import BEFORE_ACCRUAL
from storage.sqlite_distributors import DIST_COLS, LEDGER_COLS, commission_from, distributor_from

#: the shop's own ledger carries every commission line too (kind `commission`, negative like cost; a reversal
#: positive), in the same statement, so the money report's profit is net of commission
_BOOK = (", booked AS (INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
         " SELECT o.id, o.sku_id, o.channel, 'commission', ins.currency, -ins.amount, ins.at"
         " FROM ins JOIN orders o ON o.id = ins.order_id WHERE ins.amount <> 0)"
         " SELECT count(*) FROM ins")
_ACCRUE = (
    "WITH ins AS (INSERT INTO distributor_ledger (distributor_id, currency, amount, kind, order_id, note, at)"
    " SELECT d.id, o.currency, o.amount * COALESCE(r.bp, d.commission_bp) / 10000, 'accrual', o.id, o.ref, $1"
    " FROM distributors d JOIN users u ON u.referrer = d.ref_code"
    " JOIN orders o ON o.channel = u.channel AND o.user_id = u.user_id"
    " LEFT JOIN distributor_commission_rates r ON r.distributor_id = d.id AND r.sku_id = o.sku_id"
    " WHERE o.state = ANY ($2::text[]) AND NOT (o.channel = ANY ($3::text[])) AND ($5::bigint IS NULL OR o.id = $5)"
    " AND o.created_at >= d.created_at"
    " AND NOT EXISTS (SELECT 1 FROM distributor_ledger x WHERE x.order_id = o.id AND x.kind = 'accrual')"
    " ORDER BY o.id LIMIT $4"
    " ON CONFLICT (order_id, kind, part) WHERE order_id IS NOT NULL DO NOTHING"
    " RETURNING distributor_id, order_id, currency, amount, note, at),"
    # an order partially refunded before its accrual (refunded while paid, or delivered by another process before
    # its pass ran): the share of those refunds reversed at once (storage/sqlite_commission.py: the rounding). A
    # partial refund committing while this statement runs is seen by neither: its share is then reversed by the next
    # partial or the final refund (each reverses up to the cumulative share), late but never more than it
    " caught AS (INSERT INTO distributor_ledger (distributor_id, currency, amount, kind, order_id, note, at, part)"
    " SELECT ins.distributor_id, ins.currency, -floor(ins.amount::numeric * p.s / o.amount)::bigint, 'reversal',"
    " ins.order_id, ins.note, ins.at, '" + BEFORE_ACCRUAL + "'"
    " FROM ins JOIN orders o ON o.id = ins.order_id"
    " JOIN (SELECT order_id, SUM(amount) AS s FROM refund_parts GROUP BY order_id) p ON p.order_id = ins.order_id"
    " WHERE floor(ins.amount::numeric * p.s / o.amount) > 0 RETURNING order_id, currency, amount, at),"
    " booked AS (INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
    " SELECT o.id, o.sku_id, o.channel, 'commission', x.currency, -x.amount, x.at"
    " FROM (SELECT order_id, currency, amount, at FROM ins UNION ALL SELECT order_id, currency, amount, at"
    " FROM caught) x JOIN orders o ON o.id = x.order_id WHERE x.amount <> 0)"
    " SELECT count(*) FROM ins")
#: the final reversal of each refunded order that lacks one (kb_refund writes it in the refund's transaction; this
#: catches up on anything else): what the partial reversals left of the accrual
_REVERSE = (
    "WITH ins AS (INSERT INTO distributor_ledger (distributor_id, currency, amount, kind, order_id, note, at, part)"
    " SELECT l.distributor_id, l.currency, -(l.amount + COALESCE((SELECT SUM(y.amount) FROM distributor_ledger y"
    " WHERE y.order_id = l.order_id AND y.kind = 'reversal'), 0)), 'reversal', l.order_id, l.note, $1, ''"
    " FROM distributor_ledger l JOIN orders o ON o.id = l.order_id"
    " WHERE l.kind = 'accrual' AND l.amount <> 0 AND o.state = ANY ($2::text[])"
    " AND NOT EXISTS (SELECT 1 FROM distributor_ledger x WHERE x.order_id = l.order_id AND x.kind = 'reversal'"
    " AND x.part = '')"
    " ORDER BY l.id LIMIT $3"
    " ON CONFLICT (order_id, kind, part) WHERE order_id IS NOT NULL DO NOTHING"
    " RETURNING order_id, currency, amount, at)"
    + _BOOK)

#: a partial refund's `refund` line ($2) and the reversal that brings the order's reversed commission to
#: floor(accrual × refunded ($4) / total ($5)) (storage/sqlite_commission.py: the rounding), with its shop ledger line
_PART_LINES = (
    "WITH refund AS (INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
    " SELECT id, sku_id, channel, 'refund', currency, $2, $3 FROM orders WHERE id = $1),"
    " share AS (SELECT a.distributor_id, a.currency, a.note, floor(a.amount::numeric * $4 / $5)::bigint"
    " + COALESCE((SELECT SUM(x.amount) FROM distributor_ledger x WHERE x.order_id = $1 AND x.kind = 'reversal'), 0)"
    " AS due FROM distributor_ledger a WHERE a.order_id = $1 AND a.kind = 'accrual' AND a.amount <> 0),"
    " ins AS (INSERT INTO distributor_ledger (distributor_id, currency, amount, kind, order_id, note, at, part)"
    " SELECT distributor_id, currency, -due, 'reversal', $1, note, $3, $6 FROM share WHERE due > 0"
    " RETURNING currency, amount)"
    " INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
    " SELECT o.id, o.sku_id, o.channel, 'commission', ins.currency, -ins.amount, $3 FROM ins, orders o"
    " WHERE o.id = $1")


class PgDistributors(PostgresBase):
    """Distributor verbs of PostgresStore (mixed in)."""

    async def create_distributor(self, name: str, ref_code: str, api_client_id: int | None,
                                 now: datetime) -> Distributor:
        try:
            r = await self.pool.fetchrow(
                f"INSERT INTO distributors (name, ref_code, api_client_id, created_at) VALUES ($1,$2,$3,$4)"
                f" RETURNING {DIST_COLS}", name, ref_code, api_client_id, aware(now))
        except asyncpg.UniqueViolationError:
            raise DistributorTaken(f"distributor {name!r} or its code or client is taken") from None
        return distributor_from(r)

    async def distributor(self, name: str) -> Distributor | None:
        r = await self.pool.fetchrow(f"SELECT {DIST_COLS} FROM distributors WHERE name = $1", name)
        return distributor_from(r) if r else None

    async def distributor_of_client(self, api_client_id: int) -> Distributor | None:
        r = await self.pool.fetchrow(f"SELECT {DIST_COLS} FROM distributors WHERE api_client_id = $1", api_client_id)
        return distributor_from(r) if r else None

    async def distributors(self) -> list[Distributor]:
        return [distributor_from(r) for r in await self.pool.fetch(f"SELECT {DIST_COLS} FROM distributors"
                                                                   " ORDER BY name")]

    async def update_distributor(self, distributor_id: int, *, discount_bp: int | None = None,
                                 commission_bp: int | None = None, api_client_id: int | None = None
                                 ) -> Distributor:
        try:
            r = await self.pool.fetchrow(
                f"UPDATE distributors SET discount_bp = COALESCE($2, discount_bp),"
                f" commission_bp = COALESCE($3, commission_bp), api_client_id = COALESCE($4, api_client_id)"
                f" WHERE id = $1 RETURNING {DIST_COLS}", distributor_id, discount_bp, commission_bp, api_client_id)
        except asyncpg.UniqueViolationError:
            raise DistributorTaken(f"api client {api_client_id} belongs to another distributor") from None
        return distributor_from(r)

    async def set_distributor_price(self, distributor_id: int, sku_id: int, price: DistributorPrice | None) -> None:
        if price is None:
            await self.pool.execute("DELETE FROM distributor_prices WHERE distributor_id = $1 AND sku_id = $2",
                                    distributor_id, sku_id)
            return
        await self.pool.execute(
            "INSERT INTO distributor_prices (distributor_id, sku_id, currency, amount, below_cost)"
            " VALUES ($1,$2,$3,$4,$5) ON CONFLICT (distributor_id, sku_id) DO UPDATE SET currency = excluded.currency,"
            " amount = excluded.amount, below_cost = excluded.below_cost",
            distributor_id, sku_id, price.currency, price.amount, price.below_cost)

    async def distributor_prices(self, distributor_id: int) -> dict[int, DistributorPrice]:
        rows = await self.pool.fetch("SELECT sku_id, currency, amount, below_cost FROM distributor_prices"
                                     " WHERE distributor_id = $1", distributor_id)
        return {int(r[0]): DistributorPrice(int(r[0]), r[1], int(r[2]), bool(r[3])) for r in rows}

    async def set_commission_rate(self, distributor_id: int, sku_id: int, bp: int | None) -> None:
        if bp is None:
            await self.pool.execute("DELETE FROM distributor_commission_rates WHERE distributor_id = $1"
                                    " AND sku_id = $2", distributor_id, sku_id)
            return
        await self.pool.execute(
            "INSERT INTO distributor_commission_rates (distributor_id, sku_id, bp) VALUES ($1,$2,$3)"
            " ON CONFLICT (distributor_id, sku_id) DO UPDATE SET bp = excluded.bp", distributor_id, sku_id, bp)

    async def commission_rates(self, distributor_id: int) -> dict[int, int]:
        rows = await self.pool.fetch("SELECT sku_id, bp FROM distributor_commission_rates WHERE distributor_id = $1",
                                     distributor_id)
        return {int(r[0]): int(r[1]) for r in rows}

    async def pool_last_cost(self, pool_id: int) -> tuple[int, str] | None:
        r = await self.pool.fetchrow("SELECT unit_cost, currency FROM code_batches WHERE pool_id = $1"
                                     " ORDER BY id DESC LIMIT 1", pool_id)
        return (int(r[0]), r[1]) if r else None

    async def accrue_commissions(self, delivered: Collection[str], except_channels: Collection[str], now: datetime,
                                 limit: int, order_id: int | None = None) -> int:
        return int(await self.pool.fetchval(_ACCRUE, aware(now), list(delivered), list(except_channels), limit,
                                            order_id))

    async def reverse_commissions(self, refunded: Collection[str], now: datetime, limit: int) -> int:
        return int(await self.pool.fetchval(_REVERSE, aware(now), list(refunded), limit))

    async def refund_part(self, order_id: int, refund_ref: str, amount: int, now: datetime) -> PartRefund:
        """The order's row locked first (as kb_refund locks it): a partial refund and a full one never interleave."""
        at = aware(now)
        async with self.pool.acquire() as conn, conn.transaction():
            o = await conn.fetchrow("SELECT state, sku_id, channel, amount, currency FROM orders WHERE id = $1"
                                    " FOR UPDATE", order_id)
            if o is None:
                return PartRefund.NOT_REFUNDABLE
            if await conn.fetchval("SELECT 1 FROM refund_parts WHERE order_id = $1 AND refund_ref = $2", order_id,
                                   refund_ref):
                return PartRefund.ALREADY
            if o["state"] not in self._refundable or not await conn.fetchval(
                    "SELECT 1 FROM ledger WHERE order_id = $1 AND kind = 'sale' LIMIT 1", order_id):
                return PartRefund.NOT_REFUNDABLE
            before = int(await conn.fetchval("SELECT COALESCE(SUM(amount), 0) FROM refund_parts"
                                             " WHERE order_id = $1", order_id))
            total = int(o["amount"])
            if amount <= 0 or before + amount > total:
                return PartRefund.TOO_BIG
            if before + amount == total:
                return PartRefund.COMPLETES
            await conn.execute("INSERT INTO refund_parts (order_id, refund_ref, amount, currency, at)"
                               " VALUES ($1,$2,$3,$4,$5)", order_id, refund_ref, amount, o["currency"], at)
            await conn.execute(_PART_LINES, order_id, -amount, at, before + amount, total, refund_ref)
        return PartRefund.RECORDED

    async def refunded_parts(self, order_id: int) -> int:
        return int(await self.pool.fetchval("SELECT COALESCE(SUM(amount), 0) FROM refund_parts WHERE order_id = $1",
                                            order_id))

    async def record_payout(self, distributor_id: int, currency: str, amount: int, note: str,
                            now: datetime) -> CommissionLine:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM distributors WHERE id = $1 FOR UPDATE", distributor_id)
            payable = await conn.fetchval("SELECT COALESCE(SUM(amount), 0) FROM distributor_ledger"
                                          " WHERE distributor_id = $1 AND currency = $2", distributor_id, currency)
            if amount > int(payable):
                raise PayableExceeded(f"distributor {distributor_id} payable {currency} {payable} < {amount}",
                                      int(payable))
            line_id = await conn.fetchval(
                "INSERT INTO distributor_ledger (distributor_id, currency, amount, kind, order_id, note, at)"
                " VALUES ($1,$2,$3,'payout',NULL,$4,$5) RETURNING id", distributor_id, currency, -amount, note,
                aware(now))
        return CommissionLine(int(line_id), distributor_id, currency, -amount, CommissionKind.PAYOUT, None, note, now)

    async def commission_balances(self, distributor_id: int, before: datetime | None = None) -> dict[str, int]:
        rows = await self.pool.fetch("SELECT currency, SUM(amount) FROM distributor_ledger WHERE distributor_id = $1"
                                     " AND ($2::timestamptz IS NULL OR at < $2) GROUP BY currency ORDER BY currency",
                                     distributor_id, aware(before) if before is not None else None)
        return {r[0]: int(r[1]) for r in rows}

    async def commission_lines(self, distributor_id: int, start: datetime, end: datetime) -> list[CommissionLine]:
        rows = await self.pool.fetch(
            f"SELECT {LEDGER_COLS} FROM distributor_ledger l LEFT JOIN orders o ON o.id = l.order_id"
            " WHERE l.distributor_id = $1 AND l.at >= $2 AND l.at < $3 ORDER BY l.at, l.id",
            distributor_id, aware(start), aware(end))
        return [commission_from(r) for r in rows]

    async def wallet_lines_between(self, api_client_id: int, start: datetime, end: datetime) -> list[WalletLine]:
        rows = await self.pool.fetch(f"SELECT {LINE_COLS} FROM api_wallet_ledger WHERE client_id = $1"
                                     " AND at >= $2 AND at < $3 ORDER BY id", api_client_id, aware(start), aware(end))
        return [line_from(r) for r in rows]
