"""PostgreSQL Store on asyncpg: a pool, numbered migrations under an advisory lock, and every compound verb
as one PL/pgSQL function call, i.e. one round trip (kb_reserve, kb_transition, kb_expire, kb_record_payment,
kb_receive, kb_apply_payment, kb_claim_outbox, kb_complete_outbox, kb_enqueue_outbox, kb_refund in
migrations/postgres). Behaviour matches storage/sqlite_orders.py; the functions mirror its bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from storage.errors import InsufficientStock, PurchaseLimitReached, SchemaTooNew, UnknownRecord
from storage.migrations import migrations
from storage.postgres_shared import PgSharedState
from storage.postgres_supply import PgSupply
from storage.postgres_tickets import PgTickets
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
_MIGRATION_LOCK = 0x6B616D69  # "kami"; the second key is the schema, so test schemas do not queue
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
    return PaymentApplied(r[0], PaymentOutcome(r[1]), r[2], r[3] or "")


def _aware(dt: datetime) -> datetime:
    """asyncpg would read a naive datetime as local time; refuse it as SQLite's sqltime.ts does."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime: every time in kamibot is UTC-aware")
    return dt


def _store_error(exc: asyncpg.PostgresError) -> Exception | None:
    """RAISE … USING ERRCODE = 'KB00n' in the functions maps to storage.errors."""
    error = _STORE_ERRORS.get(getattr(exc, "sqlstate", "") or "")
    return error(str(getattr(exc, "message", "") or exc)) if error is not None else None


async def _retrying(op: Callable[[], Awaitable[T]], attempts: int = 5) -> T:
    """A deadlock (two buyers waiting for each other's multi-use code) aborts one side's whole function call,
    which is one transaction: run it again."""
    for attempt in range(attempts):
        try:
            return await op()
        except _RETRYABLE:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


class PostgresStore(PgSharedState, PgTickets, PgSupply):
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

    async def _call(self, sql: str, *args: Any) -> asyncpg.Record:
        """One function call = one statement = one transaction = one round trip; its one result row."""
        rows = await self._fetch(sql, *args)
        return rows[0]

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def once() -> list[asyncpg.Record]:
            try:
                rows: list[asyncpg.Record] = await self.pool.fetch(sql, *args)
            except asyncpg.PostgresError as exc:
                error = _store_error(exc)
                if error is not None:
                    raise error from None
                raise
            return rows

        return await _retrying(once)

    # -- lifecycle ---------------------------------------------------------
    async def migrate(self) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            # several processes starting at once: one migrates, the others wait and find it done
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))", _MIGRATION_LOCK)
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
            "SELECT sku_id, channel, currency, amount FROM prices WHERE sku_id = $1 ORDER BY channel COLLATE \"C\"",
            sku_id)
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
        for c in codes:
            if c.expires_at is not None:
                _aware(c.expires_at)
        async with self.pool.acquire() as conn, conn.transaction():
            batch = await conn.fetchrow("SELECT b.unit_cost, b.currency, p.id FROM code_batches b"
                                        " LEFT JOIN pools p ON p.id = $2 WHERE b.id = $1", batch_id, pool_id)
            if batch is None or batch[2] is None:
                raise UnknownRecord(f"batch {batch_id} or pool {pool_id}")
            unit_cost, currency = batch[0], batch[1]
            try:
                async with conn.transaction():  # a savepoint: a duplicate undoes only this attempt
                    await conn.copy_records_to_table(
                        "codes", columns=_CODE_COLUMNS,
                        records=((pool_id, batch_id, c.digest, c.key_id, c.nonce, c.ciphertext, c.uses, c.uses,
                                  c.expires_at, c.note, unit_cost, currency) for c in codes))
                result, added = InsertResult(len(codes), 0, 0), sum(c.uses for c in codes)
            except asyncpg.exceptions.UniqueViolationError:
                result, added = await self._insert_with_duplicates(conn, batch_id, pool_id, unit_cost, currency,
                                                                   codes)
            await conn.execute("UPDATE pools SET available = available + $1 WHERE id = $2", added, pool_id)
        return result

    @staticmethod
    async def _insert_with_duplicates(conn: PoolConnectionProxy[asyncpg.Record], batch_id: int, pool_id: int,
                                      unit_cost: int, currency: str, codes: Sequence[NewCode]
                                      ) -> tuple[InsertResult, int]:
        """The first occurrence of each code is inserted, in input order (allocation takes the oldest id first);
        the rest are classified as sqlite._classify_duplicates does: a repeat within this call or of a code this
        batch stored earlier is a duplicate in the batch, a first occurrence stored by another batch one in the
        vault."""
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS kb_import (n INT, digest BYTEA, key_id TEXT,"
                           " nonce BYTEA, ciphertext BYTEA, uses BIGINT, expires_at TIMESTAMPTZ, note TEXT)"
                           " ON COMMIT DELETE ROWS")
        await conn.copy_records_to_table(
            "kb_import", records=((n, c.digest, c.key_id, c.nonce, c.ciphertext, c.uses, c.expires_at, c.note)
                                  for n, c in enumerate(codes)))
        ins = await conn.fetchrow(
            "WITH ins AS (INSERT INTO codes (pool_id, batch_id, digest, key_id, nonce, ciphertext, uses_total,"
            " uses_left, expires_at, note, unit_cost, cost_currency)"
            " SELECT $1::bigint, $2::bigint, k.digest, k.key_id, k.nonce, k.ciphertext, k.uses, k.uses, k.expires_at,"
            " k.note, $3::bigint, $4::text"
            " FROM (SELECT DISTINCT ON (digest) * FROM kb_import ORDER BY digest, n) k ORDER BY k.n"
            " ON CONFLICT (digest) DO NOTHING RETURNING uses_total)"
            " SELECT COUNT(*), COALESCE(SUM(uses_total), 0) FROM ins", pool_id, batch_id, unit_cost, currency)
        assert ins is not None
        inserted, added = int(ins[0]), int(ins[1])
        # a new statement: sees the rows just inserted, so every staged code has its owner
        dup = await conn.fetchrow(
            "SELECT COUNT(*) FILTER (WHERE f.first AND c.batch_id <> $1),"
            " COUNT(*) FILTER (WHERE NOT f.first OR c.batch_id = $1)"
            " FROM (SELECT digest, n = MIN(n) OVER (PARTITION BY digest) AS first FROM kb_import) f"
            " JOIN codes c ON c.digest = f.digest", batch_id)
        assert dup is not None
        return InsertResult(inserted, int(dup[0]), int(dup[1]) - inserted), added

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
        ref = new_ref()
        r = await self._call(f"SELECT {_ORDER_COLS} FROM kb_reserve($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)", ref,
                             order.channel, order.user_id, order.chat_id, order.sku_id, order.quantity, order.amount,
                             order.currency, _aware(order.expires_at), order.language, _aware(now))
        return _order(r)

    async def transition(self, order_id: int, allowed_from: Sequence[OrderState], to: OrderState, cause: str,
                         now: datetime) -> bool:
        r = await self._call("SELECT kb_transition($1, $2, $3, $4, $5)", order_id,
                             [OrderState(s).value for s in allowed_from], OrderState(to).value, cause, _aware(now))
        return bool(r[0])

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

    async def orders_in_state(self, state: OrderState, limit: int) -> list[Order]:
        rows = await self.pool.fetch(f"SELECT {_ORDER_COLS} FROM orders WHERE state = $1 ORDER BY id LIMIT $2",
                                     state.value, limit)
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
        rows = await self._fetch("SELECT kb_expire($1, $2)", _aware(now), limit)
        return [int(r[0]) for r in rows]

    # -- payments ----------------------------------------------------------
    async def record_payment(self, event: PaymentEventIn, now: datetime) -> tuple[int, bool]:
        r = await self._call("SELECT event_id, fresh FROM kb_record_payment($1,$2,$3,$4,$5,$6,$7,$8)",
                             event.provider, event.provider_txn_id, event.order_ref, event.amount, event.currency,
                             event.fee, event.payer, _aware(event.received_at or now))
        return int(r[0]), bool(r[1])

    async def receive_payment(self, event: PaymentEventIn, now: datetime) -> PaymentApplied:
        r = await self._call(
            "SELECT event_id, outcome, order_id, detail FROM kb_receive($1,$2,$3,$4,$5,$6,$7,$8,$9)", event.provider,
            event.provider_txn_id, event.order_ref, event.amount, event.currency, event.fee, event.payer,
            _aware(event.received_at or now), _aware(now))
        return _applied(r)

    async def apply_payment(self, event_id: int, now: datetime) -> PaymentApplied:
        r = await self._call("SELECT event_id, outcome, order_id, detail FROM kb_apply_payment($1, $2)", event_id,
                             _aware(now))
        return _applied(r)

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
        rows = await self._fetch("SELECT * FROM kb_claim_outbox($1, $2, $3)", _aware(now), _aware(lease_until), limit)
        return [OutboxRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    async def complete_outbox(self, outbox_id: int, now: datetime) -> None:
        await self._call("SELECT kb_complete_outbox($1, $2)", outbox_id, _aware(now))

    async def retry_outbox(self, outbox_id: int, next_at: datetime, error: str) -> None:
        await self.pool.execute("UPDATE outbox SET locked_until = NULL, next_attempt_at = $1, last_error = $2"
                                " WHERE id = $3", _aware(next_at), error[:200], outbox_id)

    async def fail_outbox(self, outbox_id: int, now: datetime, error: str) -> None:
        await self.pool.execute("UPDATE outbox SET status = 'failed', locked_until = NULL, done_at = $1,"
                                " last_error = $2 WHERE id = $3", _aware(now), error[:200], outbox_id)

    async def enqueue_outbox(self, order_id: int, kind: str, payload: str, now: datetime) -> int:
        r = await self._call("SELECT kb_enqueue_outbox($1, $2, $3, $4)", order_id, kind, payload, _aware(now))
        return int(r[0])

    async def pending_outbox(self) -> int:
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM outbox WHERE status = 'pending'"))

    # -- refunds and ledger ------------------------------------------------
    async def refund(self, order_id: int, cause: str, now: datetime) -> bool:
        r = await self._call("SELECT kb_refund($1, $2, $3)", order_id, cause, _aware(now))
        return bool(r[0])

    async def ledger(self, since: datetime, until: datetime) -> list[LedgerLine]:
        # byte order like SQLite's, whatever the database collation
        rows = await self.pool.fetch(
            "SELECT sku_id, channel, kind, currency, SUM(amount), COUNT(DISTINCT order_id) FROM ledger"
            " WHERE at >= $1 AND at < $2 GROUP BY sku_id, channel, kind, currency"
            ' ORDER BY sku_id, channel COLLATE "C", kind COLLATE "C", currency COLLATE "C"',
            _aware(since), _aware(until))
        return [LedgerLine(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in rows]

    # -- customers and audit -------------------------------------------------
    async def touch_user(self, channel: str, user_id: str, chat_id: str, now: datetime, referrer: str = "") -> None:
        await self.pool.execute(
            "INSERT INTO users (channel, user_id, chat_id, referrer, first_seen, last_seen) VALUES ($1,$2,$3,$4,$5,$5)"
            " ON CONFLICT (channel, user_id) DO UPDATE SET chat_id = excluded.chat_id, last_seen = excluded.last_seen,"
            " referrer = COALESCE(users.referrer, excluded.referrer)",
            channel, user_id, chat_id, referrer if referrer and referrer != user_id else None, _aware(now))

    async def set_user_language(self, channel: str, user_id: str, language: str) -> None:
        await self.pool.execute("UPDATE users SET language = $1 WHERE channel = $2 AND user_id = $3",
                                language, channel, user_id)

    async def user_language(self, channel: str, user_id: str) -> str | None:
        value = await self.pool.fetchval("SELECT language FROM users WHERE channel = $1 AND user_id = $2",
                                         channel, user_id)
        return str(value) if value else None

    async def set_user_blocked(self, channel: str, user_id: str, blocked: bool) -> None:
        await self.pool.execute("UPDATE users SET blocked = $1 WHERE channel = $2 AND user_id = $3",
                                blocked, channel, user_id)

    async def reachable_users(self, channel: str, after: str, limit: int) -> list[tuple[str, str]]:
        # byte order like SQLite's, whatever the database collation
        rows = await self.pool.fetch('SELECT user_id, chat_id FROM users WHERE channel = $1 AND NOT blocked'
                                     ' AND user_id COLLATE "C" > $2 ORDER BY user_id COLLATE "C" LIMIT $3',
                                     channel, after, limit)
        return [(r[0], r[1]) for r in rows]

    async def audit(self, channel: str, actor: str, action: str, detail: str, now: datetime) -> None:
        await self.pool.execute("INSERT INTO audit_log (at, channel, actor, action, detail) VALUES ($1,$2,$3,$4,$5)",
                                _aware(now), channel, actor, action, detail[:500])

    async def audit_entries(self, limit: int) -> list[tuple[datetime, str, str, str, str]]:
        rows = await self.pool.fetch("SELECT at, channel, actor, action, detail FROM audit_log ORDER BY id DESC"
                                     " LIMIT $1", limit)
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]
