"""PostgreSQL supply verbs (suppliers, procurements, SKU sources): a mixin of PostgresStore, mirroring
storage/sqlite_supply.py. Every verb is one statement (one round trip) except `settle_procurement`, which is one
transaction of at most four round trips: lock and read the procurement, then (on success with codes) one
statement that creates the batch, inserts the codes (ON CONFLICT on the HMAC: duplicates skipped), counts them and
raises the pool; and one that settles the row."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from storage.records import NewCode
from storage.records_supply import (
    CostChange,
    NewProcurement,
    Procurement,
    ProcurementState,
    Settlement,
    SkuSourcing,
    SupplierProductRow,
    SupplierRecord,
)
from storage.sqlite_supply import (
    PROC_COLS,
    PRODUCT_COLS,
    SAVE_SOURCING,
    SOURCING_COLS,
    SUPPLIER_COLS,
    procurement,
    product_row,
    settles,
    sourcing,
    sourcing_params,
    supplier_params,
    supplier_record,
)


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: every time in kamibot is UTC-aware")
    return dt.astimezone(UTC)


def _same(value: Any) -> datetime:
    return value  # type: ignore[no-any-return]


def _numbered(sql: str) -> str:
    """SQLite's ? placeholders as PostgreSQL's $1, $2, ..."""
    parts = sql.split("?")
    return "".join(part + (f"${i + 1}" if i < len(parts) - 1 else "") for i, part in enumerate(parts))


def _proc(r: asyncpg.Record) -> Procurement:
    return procurement(r, _same)


_SAVE_SUPPLIER = (
    "INSERT INTO suppliers (name, protocol, base_url, account, secret_key_id, secret_nonce, secret, notify_url,"
    " product_ids, connect_timeout_ms, read_timeout_ms, breaker_failures, breaker_cool_down_s, low_balance,"
    " currency, active, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$17)"
    " ON CONFLICT (name) DO UPDATE SET protocol = excluded.protocol, base_url = excluded.base_url,"
    " account = excluded.account, secret_key_id = excluded.secret_key_id, secret_nonce = excluded.secret_nonce,"
    " secret = excluded.secret, notify_url = excluded.notify_url, product_ids = excluded.product_ids,"
    " connect_timeout_ms = excluded.connect_timeout_ms, read_timeout_ms = excluded.read_timeout_ms,"
    " breaker_failures = excluded.breaker_failures, breaker_cool_down_s = excluded.breaker_cool_down_s,"
    " low_balance = excluded.low_balance, currency = excluded.currency, active = excluded.active,"
    f" updated_at = excluded.updated_at RETURNING {SUPPLIER_COLS}")
_PLAN = ("INSERT INTO procurements (our_ref, supplier, product_id, quantity, max_unit_cost, currency, pool_id,"
         " order_id, state, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,'planned',$9,$9)"
         f" ON CONFLICT DO NOTHING RETURNING {PROC_COLS}")
# batch + codes + pool in one statement: the codes whose HMAC the vault already holds are skipped
_RECEIVE = (
    "WITH b AS (INSERT INTO code_batches (pool_id, supplier, unit_cost, currency, source, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6) RETURNING id),"
    " input AS (SELECT * FROM unnest($7::bytea[], $8::text[], $9::bytea[], $10::bytea[])"
    "  WITH ORDINALITY AS t(digest, key_id, nonce, ciphertext, n)),"
    " ins AS (INSERT INTO codes (pool_id, batch_id, digest, key_id, nonce, ciphertext, uses_total, uses_left,"
    "  unit_cost, cost_currency) SELECT $1, (SELECT id FROM b), d.digest, d.key_id, d.nonce, d.ciphertext, 1, 1,"
    "  $3, $4 FROM (SELECT DISTINCT ON (digest) * FROM input ORDER BY digest, n) d ORDER BY d.n"
    "  ON CONFLICT (digest) DO NOTHING RETURNING 1),"
    " counted AS (SELECT COUNT(*) AS n FROM ins),"
    " pool AS (UPDATE pools SET available = available + (SELECT n FROM counted) WHERE id = $1 RETURNING 1)"
    " SELECT (SELECT id FROM b), (SELECT n FROM counted), (SELECT COUNT(*) FROM pool)")


class PgSupply:
    """The SupplyStore verbs of PostgresStore (mixed in)."""

    @property
    def pool(self) -> asyncpg.Pool:
        raise NotImplementedError  # provided by PostgresStore

    async def save_supplier(self, supplier: SupplierRecord, now: datetime) -> SupplierRecord:
        row = await self.pool.fetchrow(_SAVE_SUPPLIER, *supplier_params(supplier), _aware(now))
        assert row is not None
        return supplier_record(row)

    async def suppliers(self) -> list[SupplierRecord]:
        return [supplier_record(r) for r in await self.pool.fetch(f"SELECT {SUPPLIER_COLS} FROM suppliers"
                                                                  " ORDER BY name")]

    async def supplier_by_name(self, name: str) -> SupplierRecord | None:
        r = await self.pool.fetchrow(f"SELECT {SUPPLIER_COLS} FROM suppliers WHERE name = $1", name)
        return supplier_record(r) if r else None

    async def plan_procurement(self, p: NewProcurement, now: datetime) -> Procurement | None:
        r = await self.pool.fetchrow(_PLAN, p.our_ref, p.supplier, p.product_id, p.quantity, p.max_unit_cost,
                                     p.currency, p.pool_id, p.order_id, _aware(now))
        return _proc(r) if r else None

    async def _move(self, our_ref: str, frm: Sequence[str], to: str, detail: str | None, now: datetime) -> bool:
        status = await self.pool.execute(
            "UPDATE procurements SET state = $1, detail = CASE WHEN held THEN detail ELSE COALESCE($2, detail) END,"
            " updated_at = $3"
            " WHERE our_ref = $4 AND state = ANY($5::text[])", to, detail, _aware(now), our_ref, list(frm))
        return status.endswith(" 1")

    async def mark_procurement_sent(self, our_ref: str, now: datetime) -> bool:
        return await self._move(our_ref, ("planned",), "sent", None, now)

    async def mark_procurement_unknown(self, our_ref: str, detail: str, now: datetime) -> bool:
        return await self._move(our_ref, ("sent",), "unknown", detail[:200], now)

    async def settle_procurement(self, our_ref: str, outcome: Settlement, codes: Sequence[NewCode],
                                 now: datetime) -> Procurement | None:
        at = _aware(now)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(f"SELECT {PROC_COLS} FROM procurements WHERE our_ref = $1 FOR UPDATE",
                                      our_ref)
            if row is None:
                return None
            p = _proc(row)
            if not settles(p.state, outcome.state):
                return None
            batch_id: int | None = None
            received = duplicates = 0
            if outcome.state is ProcurementState.SUCCEEDED and codes:
                got = await conn.fetchrow(
                    _RECEIVE, p.pool_id, p.supplier, (outcome.cost or 0) // p.quantity, p.currency,
                    f"procurement {p.our_ref}", at, [c.digest for c in codes], [c.key_id for c in codes],
                    [c.nonce for c in codes], [c.ciphertext for c in codes])
                assert got is not None
                batch_id, received = int(got[0]), int(got[1])
                duplicates = len(codes) - received
            if outcome.state is ProcurementState.SUCCEEDED:
                settled = await conn.fetchrow(
                    "UPDATE procurements SET state = 'succeeded', supplier_order_id = COALESCE($1, supplier_order_id),"
                    " cost = $2, batch_id = $3, received = $4, duplicates = $5, shortfall = $6, detail = $7,"
                    f" updated_at = $8 WHERE id = $9 RETURNING {PROC_COLS}", outcome.supplier_order_id, outcome.cost,
                    batch_id, received, duplicates, max(p.quantity - received, 0), outcome.detail[:200], at, p.id)
                if batch_id is not None:
                    await conn.execute("UPDATE code_batches SET imported = $1, duplicate_in_vault = $2"
                                       " WHERE id = $3", received, duplicates, batch_id)
                if p.order_id is not None:  # on demand after payment: the codes are that order's, in this transaction
                    await conn.execute("SELECT kb_fill_backorder($1, $2, $3, $4, $5, $6)", p.order_id, batch_id,
                                       outcome.cost, p.currency, p.our_ref, at)
            else:
                settled = await conn.fetchrow(
                    "UPDATE procurements SET state = $1, supplier_order_id = COALESCE($2, supplier_order_id),"
                    f" detail = $3, updated_at = $4 WHERE id = $5 RETURNING {PROC_COLS}", outcome.state.value,
                    outcome.supplier_order_id, outcome.detail[:200], at, p.id)
                if outcome.state is ProcurementState.FAILED and p.order_id is not None:
                    await conn.execute("SELECT kb_requeue_procure($1, $2)", p.order_id, at)  # fail over, or fail
            assert settled is not None
            return _proc(settled)

    async def hold_procurement(self, our_ref: str, detail: str, now: datetime) -> bool:
        status = await self.pool.execute("UPDATE procurements SET held = TRUE, detail = $1, updated_at = $2"
                                         " WHERE our_ref = $3", detail[:200], _aware(now), our_ref)
        return status.endswith(" 1")

    async def procurement_by_ref(self, our_ref: str) -> Procurement | None:
        r = await self.pool.fetchrow(f"SELECT {PROC_COLS} FROM procurements WHERE our_ref = $1", our_ref)
        return _proc(r) if r else None

    async def procurements(self, states: Sequence[ProcurementState], limit: int,
                           updated_before: datetime | None = None) -> list[Procurement]:
        rows = await self.pool.fetch(
            f"SELECT {PROC_COLS} FROM procurements WHERE state = ANY($1::text[])"
            " AND ($2::timestamptz IS NULL OR updated_at < $2) ORDER BY id LIMIT $3",
            [s.value for s in states], _aware(updated_before) if updated_before else None, limit)
        return [_proc(r) for r in rows]

    async def fail_backorder(self, order_id: int, cause: str, now: datetime) -> bool:
        return bool(await self.pool.fetchval("SELECT kb_fail_backorder($1, $2, $3, FALSE)", order_id, cause,
                                             _aware(now)))

    async def order_procurements(self, order_id: int) -> list[Procurement]:
        rows = await self.pool.fetch(f"SELECT {PROC_COLS} FROM procurements WHERE order_id = $1 ORDER BY id",
                                     order_id)
        return [_proc(r) for r in rows]

    async def save_sku_sourcing(self, sourcing: SkuSourcing) -> None:
        await self.pool.execute(_numbered(SAVE_SOURCING), *sourcing_params(sourcing))

    async def sku_sourcing(self, sku_id: int) -> SkuSourcing | None:
        r = await self.pool.fetchrow(f"SELECT {SOURCING_COLS} FROM sku_sourcing WHERE sku_id = $1", sku_id)
        return sourcing(r) if r else None

    async def sku_sourcings(self) -> list[SkuSourcing]:
        return [sourcing(r) for r in await self.pool.fetch(f"SELECT {SOURCING_COLS} FROM sku_sourcing"
                                                           " ORDER BY sku_id")]

    async def record_supplier_products(self, supplier: str, rows: Sequence[SupplierProductRow],
                                       now: datetime) -> list[CostChange]:
        """One statement: the old costs read and the catalogue upserted together."""
        if not rows:
            return []
        changed = await self.pool.fetch(
            "WITH input AS (SELECT * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],"
            "  $7::bigint[]) AS t(product_id, name, cost, currency, stock, stock_count)),"
            " old AS (SELECT product_id, cost FROM supplier_products WHERE supplier = $1),"
            f" up AS (INSERT INTO supplier_products ({PRODUCT_COLS}, updated_at)"
            "  SELECT $1, product_id, name, cost, currency, stock, stock_count, $8 FROM input"
            "  ON CONFLICT (supplier, product_id) DO UPDATE SET name = excluded.name, cost = excluded.cost,"
            "  currency = excluded.currency, stock = excluded.stock, stock_count = excluded.stock_count,"
            "  updated_at = excluded.updated_at RETURNING product_id, cost)"
            " SELECT up.product_id, old.cost, up.cost FROM up LEFT JOIN old USING (product_id)"
            " WHERE old.cost IS DISTINCT FROM up.cost ORDER BY up.product_id",
            supplier, [r.product_id for r in rows], [r.name[:200] for r in rows], [r.cost for r in rows],
            [r.currency for r in rows], [r.stock for r in rows], [r.stock_count for r in rows], _aware(now))
        return [CostChange(supplier, r[0], None if r[1] is None else int(r[1]), int(r[2])) for r in changed]

    async def supplier_products(self) -> list[SupplierProductRow]:
        rows = await self.pool.fetch(f"SELECT {PRODUCT_COLS} FROM supplier_products ORDER BY supplier, product_id")
        return [product_row(r) for r in rows]

    async def restock_candidates(self) -> list[tuple[int, SkuSourcing]]:
        rows = await self.pool.fetch(
            "SELECT p.id, s.sku_id, s.own, s.sources, s.max_unit_cost, s.restock_quantity, s.on_demand,"
            " s.margin_floor, s.markup_bp, s.price_unit FROM pools p JOIN skus k ON k.pool_id = p.id"
            " JOIN sku_sourcing s ON s.sku_id = k.id"
            " WHERE p.available <= p.low_stock AND s.restock_quantity > 0 ORDER BY p.id, k.id")
        seen: dict[int, SkuSourcing] = {}
        for r in rows:
            seen.setdefault(int(r[0]), sourcing(list(r)[1:]))
        return list(seen.items())
