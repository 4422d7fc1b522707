"""PostgreSQL Store on asyncpg: a pool, numbered migrations under an advisory lock, compound verbs as
PL/pgSQL functions (one round trip each: kb_reserve, kb_receive, kb_apply)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from storage.errors import InsufficientStock, PurchaseLimitReached, SchemaTooNew, UnknownRecord
from storage.migrations import migrations
from storage.records import (
    BatchStats,
    Category,
    EncryptedCode,
    InsertResult,
    LedgerLine,
    NewCode,
    NewOrder,
    Order,
    OrderEvent,
    OrderItem,
    OrderState,
    OutboxRow,
    PaymentApplied,
    PaymentEventIn,
    PaymentOutcome,
    Pool,
    Price,
    Product,
    Sku,
    StockLevel,
)
from storage.sqlite_orders import new_ref

T = TypeVar("T")
_MIGRATION_LOCK = 0x6B616D69  # "kami"
_ORDER_COLS = ("id, ref, channel, user_id, chat_id, sku_id, pool_id, quantity, units, amount, currency, state,"
               " created_at, expires_at, language")
_PRODUCT = ("SELECT id, category_id, slug, name_en, name_zh, description_en, description_zh, instructions_en,"
            " instructions_zh, active FROM products")
_SKU = ("SELECT id, product_id, pool_id, slug, name_en, name_zh, units, min_qty, max_qty, per_user_limit, active"
        " FROM skus")
_CODE_COLUMNS = ["pool_id", "batch_id", "digest", "key_id", "nonce", "ciphertext", "uses_total", "uses_left",
                 "expires_at", "note", "unit_cost", "cost_currency"]
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
_STORE_ERRORS = {"KB001": UnknownRecord, "KB002": PurchaseLimitReached, "KB003": InsufficientStock}


def _order(r: asyncpg.Record) -> Order:
    return Order(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], OrderState(r[11]), r[12], r[13],
                 r[14])


def _code(r: asyncpg.Record, offset: int = 0) -> EncryptedCode:
    return EncryptedCode(r[offset], bytes(r[offset + 1]), r[offset + 2], bytes(r[offset + 3]), bytes(r[offset + 4]))


def _applied(r: asyncpg.Record) -> PaymentApplied:
    return PaymentApplied(r["event_id"], PaymentOutcome(r["outcome"]), r["order_id"], r["detail"] or "")


async def _retrying(op: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """Deadlocks between claims of multi-use codes are resolved by PostgreSQL aborting one side: retry it."""
    for attempt in range(attempts):
        try:
            return await op()
        except _RETRYABLE:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


class PostgresStore:
    def __init__(self, dsn: str, schema: str | None = None, min_size: int = 2, max_size: int = 20) -> None:
        self.dsn = dsn
        self.schema = schema
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> PostgresStore:
        settings = {"search_path": self.schema} if self.schema else {}
        self._pool = await asyncpg.create_pool(self.dsn, min_size=self.min_size, max_size=self.max_size,
                                               server_settings=settings)
        return self

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def _call(self, sql: str, *args: Any) -> Any:
        try:
            return await self.pool.fetchrow(sql, *args)
        except asyncpg.PostgresError as exc:
            error = _STORE_ERRORS.get(getattr(exc, "sqlstate", ""))
            if error is not None:
                raise error(str(getattr(exc, "message", exc))) from None
            raise

    # -- lifecycle ---------------------------------------------------------
    async def migrate(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                               " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            known = migrations("postgres")
            if known and current > known[-1][0]:
                raise SchemaTooNew(f"database schema {current} is newer than this kamibot ({known[-1][0]})")
            for version, name, sql in known:
                if version > current:
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
                    current = version
        return int(current)

    async def schema_version(self) -> int:
        return int(await self.pool.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- catalogue ---------------------------------------------------------
    async def upsert_category(self, slug: str, name_en: str, name_zh: str, sort: int) -> Category:
        r = await self.pool.fetchrow(
            "INSERT INTO categories (slug, name_en, name_zh, sort) VALUES ($1,$2,$3,$4) ON CONFLICT (slug) DO UPDATE"
            " SET name_en = excluded.name_en, name_zh = excluded.name_zh, sort = excluded.sort"
            " RETURNING id, slug, name_en, name_zh, sort", slug, name_en, name_zh, sort)
        assert r is not None
        return Category(r[0], r[1], r[2], r[3], r[4])

    async def upsert_product(self, p: Product) -> Product:
        pid = await self.pool.fetchval(
            "INSERT INTO products (category_id, slug, name_en, name_zh, description_en, description_zh,"
            " instructions_en, instructions_zh, active) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (slug) DO"
            " UPDATE SET category_id = excluded.category_id, name_en = excluded.name_en, name_zh = excluded.name_zh,"
            " description_en = excluded.description_en, description_zh = excluded.description_zh,"
            " instructions_en = excluded.instructions_en, instructions_zh = excluded.instructions_zh,"
            " active = excluded.active RETURNING id", p.category_id, p.slug, p.name_en, p.name_zh,
            p.description_en, p.description_zh, p.instructions_en, p.instructions_zh, p.active)
        found = await self.product_by_id(pid)
        assert found is not None
        return found

    async def upsert_pool(self, slug: str, name: str, low_stock: int) -> Pool:
        r = await self.pool.fetchrow(
            "INSERT INTO pools (slug, name, low_stock) VALUES ($1,$2,$3) ON CONFLICT (slug) DO UPDATE"
            " SET name = excluded.name, low_stock = excluded.low_stock RETURNING id, slug, name, low_stock",
            slug, name, low_stock)
        assert r is not None
        return Pool(r[0], r[1], r[2], r[3])

    async def upsert_sku(self, s: Sku) -> Sku:
        sid = await self.pool.fetchval(
            "INSERT INTO skus (product_id, pool_id, slug, name_en, name_zh, units, min_qty, max_qty, per_user_limit,"
            " active) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT (slug) DO UPDATE SET"
            " product_id = excluded.product_id, pool_id = excluded.pool_id, name_en = excluded.name_en,"
            " name_zh = excluded.name_zh, units = excluded.units, min_qty = excluded.min_qty,"
            " max_qty = excluded.max_qty, per_user_limit = excluded.per_user_limit, active = excluded.active"
            " RETURNING id", s.product_id, s.pool_id, s.slug, s.name_en, s.name_zh, s.units, s.min_qty, s.max_qty,
            s.per_user_limit, s.active)
        found = await self.sku_by_id(sid)
        assert found is not None
        return found

    async def set_price(self, p: Price) -> None:
        await self.pool.execute(
            "INSERT INTO prices (sku_id, channel, currency, amount) VALUES ($1,$2,$3,$4) ON CONFLICT (sku_id, channel)"
            " DO UPDATE SET currency = excluded.currency, amount = excluded.amount",
            p.sku_id, p.channel, p.currency, p.amount)

    async def categories(self) -> list[Category]:
        rows = await self.pool.fetch("SELECT id, slug, name_en, name_zh, sort FROM categories ORDER BY sort, id")
        return [Category(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    @staticmethod
    def _product(r: asyncpg.Record) -> Product:
        return Product(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9])

    @staticmethod
    def _sku(r: asyncpg.Record) -> Sku:
        return Sku(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10])

    async def products(self, category_id: int | None = None) -> list[Product]:
        if category_id is None:
            rows = await self.pool.fetch(_PRODUCT + " ORDER BY id")
        else:
            rows = await self.pool.fetch(_PRODUCT + " WHERE category_id = $1 ORDER BY id", category_id)
        return [self._product(r) for r in rows]

    async def product_by_id(self, product_id: int) -> Product | None:
        r = await self.pool.fetchrow(_PRODUCT + " WHERE id = $1", product_id)
        return self._product(r) if r else None

    async def skus(self, product_id: int | None = None) -> list[Sku]:
        if product_id is None:
            rows = await self.pool.fetch(_SKU + " ORDER BY id")
        else:
            rows = await self.pool.fetch(_SKU + " WHERE product_id = $1 ORDER BY id", product_id)
        return [self._sku(r) for r in rows]

    async def sku_by_id(self, sku_id: int) -> Sku | None:
        r = await self.pool.fetchrow(_SKU + " WHERE id = $1", sku_id)
        return self._sku(r) if r else None

    async def sku_by_slug(self, slug: str) -> Sku | None:
        r = await self.pool.fetchrow(_SKU + " WHERE slug = $1", slug)
        return self._sku(r) if r else None

    async def pools(self) -> list[Pool]:
        rows = await self.pool.fetch("SELECT id, slug, name, low_stock FROM pools ORDER BY id")
        return [Pool(r[0], r[1], r[2], r[3]) for r in rows]

    async def pool_by_slug(self, slug: str) -> Pool | None:
        r = await self.pool.fetchrow("SELECT id, slug, name, low_stock FROM pools WHERE slug = $1", slug)
        return Pool(r[0], r[1], r[2], r[3]) if r else None

    async def prices(self, sku_id: int) -> list[Price]:
        rows = await self.pool.fetch(
            "SELECT sku_id, channel, currency, amount FROM prices WHERE sku_id = $1 ORDER BY channel", sku_id)
        return [Price(r[0], r[1], r[2], r[3]) for r in rows]

    async def stock_levels(self) -> list[StockLevel]:
        rows = await self.pool.fetch(
            "SELECT p.id, p.slug, p.available, COALESCE((SELECT SUM(o.quantity * o.units) FROM orders o"
            " WHERE o.pool_id = p.id AND o.state IN ('reserved', 'awaiting_payment')), 0), p.low_stock"
            " FROM pools p ORDER BY p.id")
        return [StockLevel(r[0], r[1], r[2], int(r[3]), r[4]) for r in rows]

    async def pool_available(self, pool_id: int) -> int:
        value = await self.pool.fetchval("SELECT available FROM pools WHERE id = $1", pool_id)
        return int(value or 0)

    # -- vault -------------------------------------------------------------
    async def vault_key_checks(self) -> dict[str, bytes]:
        return {r[0]: bytes(r[1]) for r in await self.pool.fetch("SELECT key_id, key_check FROM vault_keys")}

    async def register_vault_key(self, key_id: str, check: bytes) -> None:
        await self.pool.execute("INSERT INTO vault_keys VALUES ($1, $2, now()) ON CONFLICT (key_id) DO NOTHING",
                                key_id, check)

    async def count_codes(self) -> int:
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM codes"))

    async def create_batch(self, pool_id: int, supplier: str, unit_cost: int, currency: str, source: str) -> int:
        return int(await self.pool.fetchval(
            "INSERT INTO code_batches (pool_id, supplier, unit_cost, currency, source, created_at)"
            " VALUES ($1,$2,$3,$4,$5, now()) RETURNING id", pool_id, supplier, unit_cost, currency, source))

    async def insert_codes(self, batch_id: int, pool_id: int, codes: Sequence[NewCode]) -> InsertResult:
        """COPY straight into the vault; only when that meets a duplicate, go through a staging table and
        INSERT … ON CONFLICT DO NOTHING to tell duplicates within the batch from those already stored."""
        async with self.pool.acquire() as conn, conn.transaction():
            batch = await conn.fetchrow("SELECT unit_cost, currency FROM code_batches WHERE id = $1", batch_id)
            if batch is None:
                raise UnknownRecord(f"batch {batch_id}")
            unit_cost, currency = batch
            try:
                async with conn.transaction():  # a savepoint: a duplicate undoes only this attempt
                    await conn.copy_records_to_table(
                        "codes", columns=_CODE_COLUMNS,
                        records=((pool_id, batch_id, c.digest, c.key_id, c.nonce, c.ciphertext, c.uses, c.uses,
                                  c.expires_at, c.note, unit_cost, currency) for c in codes))
                result, added = InsertResult(len(codes), 0, 0), sum(c.uses for c in codes)
            except asyncpg.exceptions.UniqueViolationError:
                result, added = await self._insert_with_duplicates(conn, batch_id, pool_id, codes)
            await conn.execute("UPDATE pools SET available = available + $1 WHERE id = $2", added, pool_id)
        return result

    @staticmethod
    async def _insert_with_duplicates(conn: PoolConnectionProxy[asyncpg.Record], batch_id: int, pool_id: int,
                                      codes: Sequence[NewCode]) -> tuple[InsertResult, int]:
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS kb_import (n INT, digest BYTEA, key_id TEXT,"
                           " nonce BYTEA, ciphertext BYTEA, uses BIGINT, expires_at TIMESTAMPTZ, note TEXT)"
                           " ON COMMIT DELETE ROWS")
        await conn.copy_records_to_table(
            "kb_import", records=((n, c.digest, c.key_id, c.nonce, c.ciphertext, c.uses, c.expires_at, c.note)
                                  for n, c in enumerate(codes)))
        inserted = await conn.fetch(
            "INSERT INTO codes (pool_id, batch_id, digest, key_id, nonce, ciphertext, uses_total, uses_left,"
            " expires_at, note, unit_cost, cost_currency)"
            " SELECT DISTINCT ON (k.digest) $1::bigint, b.id, k.digest, k.key_id, k.nonce, k.ciphertext, k.uses,"
            " k.uses, k.expires_at, k.note, b.unit_cost, b.currency"
            " FROM kb_import k JOIN code_batches b ON b.id = $2 ORDER BY k.digest, k.n"
            " ON CONFLICT (digest) DO NOTHING RETURNING uses_total", pool_id, batch_id)
        # staging rows whose code now belongs to this batch: the inserted first occurrences plus repeats
        in_batch = await conn.fetchval("SELECT COUNT(*) FROM kb_import k JOIN codes c ON c.digest = k.digest"
                                       " WHERE c.batch_id = $1", batch_id)
        dup_batch = int(in_batch) - len(inserted)
        result = InsertResult(len(inserted), len(codes) - len(inserted) - dup_batch, dup_batch)
        return result, sum(r[0] for r in inserted)

    async def finish_batch(self, batch_id: int, stats: BatchStats) -> None:
        await self.pool.execute(
            "UPDATE code_batches SET imported = $1, duplicate_in_vault = $2, duplicate_in_batch = $3, invalid = $4"
            " WHERE id = $5", stats.imported, stats.duplicate_in_vault, stats.duplicate_in_batch, len(stats.invalid),
            batch_id)

    async def codes_not_under_key(self, key_id: str, after_id: int, limit: int) -> list[EncryptedCode]:
        rows = await self.pool.fetch(
            "SELECT id, digest, key_id, nonce, ciphertext FROM codes WHERE key_id <> $1 AND id > $2"
            " ORDER BY id LIMIT $3", key_id, after_id, limit)
        return [_code(r) for r in rows]

    async def rekey_code(self, code_id: int, old_key_id: str, new: EncryptedCode) -> bool:
        status = await self.pool.execute(
            "UPDATE codes SET key_id = $1, nonce = $2, ciphertext = $3 WHERE id = $4 AND key_id = $5",
            new.key_id, new.nonce, new.ciphertext, code_id, old_key_id)
        return bool(status.endswith(" 1"))

    async def code_by_id(self, code_id: int) -> EncryptedCode | None:
        r = await self.pool.fetchrow("SELECT id, digest, key_id, nonce, ciphertext FROM codes WHERE id = $1", code_id)
        return _code(r) if r else None

    # -- orders ------------------------------------------------------------
    async def reserve(self, order: NewOrder, now: datetime) -> Order:
        r = await self._call("SELECT kb_reserve($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)", new_ref(), order.channel,
                             order.user_id, order.chat_id, order.sku_id, order.quantity, order.amount, order.currency,
                             order.expires_at, order.language, now)
        found = await self.order_by_id(r[0])
        assert found is not None
        return found

    async def transition(self, order_id: int, allowed_from: Sequence[OrderState], to: OrderState, cause: str,
                         now: datetime) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT state, pool_id, quantity * units FROM orders WHERE id = $1 FOR UPDATE",
                                      order_id)
            if row is None or row[0] not in [s.value for s in allowed_from]:
                return False
            state, pool_id, uses = row
            if state in ("reserved", "awaiting_payment") and to not in (
                    OrderState.RESERVED, OrderState.AWAITING_PAYMENT, OrderState.REVIEW):
                await conn.execute("UPDATE pools SET available = available + $1 WHERE id = $2", uses, pool_id)
            await conn.execute("UPDATE orders SET state = $1, updated_at = $2 WHERE id = $3", to.value, now, order_id)
            await conn.execute("SELECT kb_event($1, $2, $3, $4, $5)", order_id, state, to.value, cause, now)
        return True

    async def order_by_id(self, order_id: int) -> Order | None:
        r = await self.pool.fetchrow(f"SELECT {_ORDER_COLS} FROM orders WHERE id = $1", order_id)
        return _order(r) if r else None

    async def order_by_ref(self, ref: str) -> Order | None:
        r = await self.pool.fetchrow(f"SELECT {_ORDER_COLS} FROM orders WHERE ref = $1", ref)
        return _order(r) if r else None

    async def orders_for_user(self, channel: str, user_id: str, limit: int, offset: int) -> list[Order]:
        rows = await self.pool.fetch(f"SELECT {_ORDER_COLS} FROM orders WHERE channel = $1 AND user_id = $2"
                                     " ORDER BY id DESC LIMIT $3 OFFSET $4", channel, user_id, limit, offset)
        return [_order(r) for r in rows]

    async def order_events(self, order_id: int) -> list[OrderEvent]:
        rows = await self.pool.fetch("SELECT order_id, from_state, to_state, cause, at FROM order_events"
                                     " WHERE order_id = $1 ORDER BY id", order_id)
        return [OrderEvent(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def order_items(self, order_id: int) -> list[OrderItem]:
        rows = await self.pool.fetch(
            "SELECT i.item_no, c.id, c.digest, c.key_id, c.nonce, c.ciphertext, i.use_no FROM order_items i"
            " JOIN codes c ON c.id = i.code_id WHERE i.order_id = $1 AND NOT i.released ORDER BY i.item_no", order_id)
        return [OrderItem(r[0], _code(r, 1), r[6]) for r in rows]

    async def expire_reservations(self, now: datetime, limit: int) -> list[int]:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, state, pool_id, quantity * units FROM orders"
                " WHERE state IN ('reserved', 'awaiting_payment') AND expires_at <= $1"
                " ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED", now, limit)
            for oid, state, pool_id, uses in rows:
                await conn.execute("UPDATE pools SET available = available + $1 WHERE id = $2", uses, pool_id)
                await conn.execute("UPDATE orders SET state = 'expired', updated_at = $1 WHERE id = $2", now, oid)
                await conn.execute("SELECT kb_event($1, $2, 'expired', 'reservation ttl', $3)", oid, state, now)
        return [r[0] for r in rows]

    # -- payments ----------------------------------------------------------
    async def record_payment(self, event: PaymentEventIn, now: datetime) -> tuple[int, bool]:
        new_id = await self.pool.fetchval(
            "INSERT INTO payment_events (provider, provider_txn_id, order_ref, amount, currency, fee, payer,"
            " received_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (provider, provider_txn_id) DO NOTHING"
            " RETURNING id", event.provider, event.provider_txn_id, event.order_ref, event.amount, event.currency,
            event.fee, event.payer, event.received_at or now)
        if new_id is not None:
            return int(new_id), True
        old = await self.pool.fetchval("SELECT id FROM payment_events WHERE provider = $1 AND provider_txn_id = $2",
                                       event.provider, event.provider_txn_id)
        return int(old), False

    async def receive_payment(self, event: PaymentEventIn, now: datetime) -> PaymentApplied:
        r = await _retrying(lambda: self._call(
            "SELECT * FROM kb_receive($1,$2,$3,$4,$5,$6,$7,$8,$9)", event.provider, event.provider_txn_id,
            event.order_ref, event.amount, event.currency, event.fee, event.payer, event.received_at or now, now))
        return _applied(r)

    async def apply_payment(self, event_id: int, now: datetime) -> PaymentApplied:
        return _applied(await _retrying(lambda: self._call("SELECT * FROM kb_apply($1, $2)", event_id, now)))

    async def unapplied_payments(self, limit: int) -> list[int]:
        rows = await self.pool.fetch("SELECT id FROM payment_events WHERE applied_at IS NULL ORDER BY id LIMIT $1",
                                     limit)
        return [r[0] for r in rows]

    async def order_payment(self, order_id: int) -> tuple[str, str, int] | None:
        r = await self.pool.fetchrow("SELECT provider, provider_txn_id, amount FROM payment_events WHERE order_id = $1"
                                     " AND outcome IN ('allocated', 'failed', 'review') ORDER BY id LIMIT 1", order_id)
        return (r[0], r[1], int(r[2])) if r else None

    # -- delivery outbox ---------------------------------------------------
    async def claim_outbox(self, now: datetime, lease_until: datetime, limit: int) -> list[OutboxRow]:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "UPDATE outbox SET locked_until = $2, attempts = attempts + 1 WHERE id IN (SELECT id FROM outbox"
                " WHERE status = 'pending' AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until <= $1)"
                " ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)"
                " RETURNING id, order_id, kind, channel, chat_id, attempts, payload", now, lease_until, limit)
            sending = [r[1] for r in rows if r[2] in ("deliver", "resend")]
            if sending:
                # conservative: once a send may have happened the codes count as shown
                await conn.execute("UPDATE order_items SET revealed_at = $1 WHERE order_id = ANY($2::bigint[])"
                                   " AND revealed_at IS NULL", now, sending)
        return sorted((OutboxRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows), key=lambda o: o.id)

    async def complete_outbox(self, outbox_id: int, now: datetime) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("UPDATE outbox SET status = 'done', done_at = $1, locked_until = NULL"
                                      " WHERE id = $2 AND status <> 'done' RETURNING order_id, kind", now, outbox_id)
            if row is None or row[1] != "deliver":
                return
            moved = await conn.fetchval("UPDATE orders SET state = 'delivered', updated_at = $1 WHERE id = $2"
                                        " AND state = 'delivering' RETURNING id", now, row[0])
            if moved:
                await conn.execute("SELECT kb_event($1, 'delivering', 'delivered', $2, $3)", row[0],
                                   f"outbox {outbox_id} sent", now)

    async def retry_outbox(self, outbox_id: int, next_at: datetime, error: str) -> None:
        await self.pool.execute("UPDATE outbox SET locked_until = NULL, next_attempt_at = $1, last_error = $2"
                                " WHERE id = $3", next_at, error[:200], outbox_id)

    async def fail_outbox(self, outbox_id: int, now: datetime, error: str) -> None:
        await self.pool.execute("UPDATE outbox SET status = 'failed', locked_until = NULL, done_at = $1,"
                                " last_error = $2 WHERE id = $3", now, error[:200], outbox_id)

    async def enqueue_outbox(self, order_id: int, kind: str, payload: str, now: datetime) -> int:
        if await self.pool.fetchval("SELECT id FROM orders WHERE id = $1", order_id) is None:
            raise UnknownRecord(f"order {order_id}")
        oid = await self.pool.fetchval(
            "INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)"
            " SELECT id, $2, channel, chat_id, $3, $4, $4 FROM orders WHERE id = $1"
            " ON CONFLICT (order_id, kind) WHERE kind IN ('deliver', 'refund') DO NOTHING RETURNING id",
            order_id, kind, payload, now)
        if oid is None:  # the one deliver/refund row of this order exists already
            oid = await self.pool.fetchval("SELECT id FROM outbox WHERE order_id = $1 AND kind = $2", order_id, kind)
        return int(oid)

    async def pending_outbox(self) -> int:
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM outbox WHERE status = 'pending'"))

    # -- refunds and ledger ------------------------------------------------
    async def refund(self, order_id: int, cause: str, now: datetime) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            o = await conn.fetchrow("SELECT state, sku_id, channel, amount, currency, pool_id, quantity * units"
                                    " FROM orders WHERE id = $1 FOR UPDATE", order_id)
            if o is None or o[0] not in ("paid", "delivering", "delivered", "failed", "review"):
                return False
            state, sku_id, channel, amount, currency, pool_id, uses = o
            ledger: list[tuple[str, str, int]] = []
            if await conn.fetchval("SELECT COUNT(*) FROM ledger WHERE order_id = $1 AND kind = 'sale'", order_id):
                ledger.append(("refund", currency, -amount))
            unshown = await conn.fetch(
                "UPDATE order_items SET released = TRUE WHERE order_id = $1 AND revealed_at IS NULL AND NOT released"
                " RETURNING code_id, unit_cost, cost_currency", order_id)
            for code_id, cost, ccy in unshown:
                await conn.execute("UPDATE codes SET uses_left = uses_left + 1 WHERE id = $1", code_id)
                if cost:
                    ledger.append(("cost_reversal", ccy, cost))
            returned = len(unshown)
            if unshown:
                await conn.execute("UPDATE outbox SET status = 'cancelled' WHERE order_id = $1 AND status = 'pending'"
                                   " AND kind IN ('deliver', 'resend')", order_id)
            if state == "review":
                before = await conn.fetchval("SELECT from_state FROM order_events WHERE order_id = $1"
                                             " AND to_state = 'review' ORDER BY id DESC LIMIT 1", order_id)
                held = await conn.fetchval("SELECT COUNT(*) FROM order_items WHERE order_id = $1", order_id)
                if before in ("reserved", "awaiting_payment") and not held:
                    returned += uses
            if returned:
                await conn.execute("UPDATE pools SET available = available + $1 WHERE id = $2", returned, pool_id)
            await conn.executemany(
                "INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7)",
                [(order_id, sku_id, channel, kind, ccy, value, now) for kind, ccy, value in ledger])
            await conn.execute("UPDATE orders SET state = 'refunded', updated_at = $1 WHERE id = $2", now, order_id)
            await conn.execute("SELECT kb_event($1, $2, 'refunded', $3, $4)", order_id, state, cause, now)
        return True

    async def ledger(self, since: datetime, until: datetime) -> list[LedgerLine]:
        rows = await self.pool.fetch(
            "SELECT sku_id, channel, kind, currency, SUM(amount), COUNT(DISTINCT order_id) FROM ledger"
            " WHERE at >= $1 AND at < $2 GROUP BY sku_id, channel, kind, currency ORDER BY sku_id, channel, kind",
            since, until)
        return [LedgerLine(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in rows]
