"""SQLite Store on aiosqlite: WAL, busy timeout, foreign keys, one thread hop per transaction.

Point reads do not hop: they run on the event loop's thread on a second, read-only connection. In WAL mode a
reader never waits for the writer and each statement sees the last commit, and an indexed lookup (~10 µs)
costs far less than the thread hop (queue, wake-up, GIL hand-over, future) it would otherwise take. Scans
whose cost grows with the data (reports, counts over all codes) keep hopping to the connection's thread.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: SQLite's busy timeout alone serialises writers
    fcntl = None  # type: ignore[assignment]

from storage import sqlite_bulk
from storage import sqlite_orders as tx
from storage.errors import SchemaTooNew
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
    Pool,
    Price,
    Product,
    Sku,
    StockLevel,
)
from storage.sqlite_customers import Customers
from storage.sqlite_shared import SharedState
from storage.sqlite_supply import Supply
from storage.sqlite_tickets import Tickets
from storage.sqlite_vault import insert_codes as _insert_codes
from storage.sqltime import from_ts, ts

T = TypeVar("T")
_MAX_BATCH = 64
_ORDER_COLS = ("id, ref, channel, user_id, chat_id, sku_id, pool_id, quantity, units, amount, currency,"
               " state, created_at, expires_at, language")


def _order(r: Sequence[Any]) -> Order:
    return Order(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], OrderState(r[11]),
                 from_ts(r[12]), from_ts(r[13]), r[14])


def _product(r: Sequence[Any]) -> Product:
    return Product(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]))


def _sku(r: Sequence[Any]) -> Sku:
    return Sku(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], bool(r[10]))


def _run_batch(db: sqlite3.Connection, ops: list[tuple[Callable[..., Any], tuple[Any, ...]]]
               ) -> list[tuple[bool, Any]]:
    """One BEGIN IMMEDIATE … COMMIT around several transaction bodies, each in its own savepoint."""
    outcomes: list[tuple[bool, Any] | None] = [None] * len(ops)
    db.execute("BEGIN IMMEDIATE")
    try:
        _bulk_payments(db, ops, outcomes)
        for i, (fn, args) in enumerate(ops):
            if outcomes[i] is not None:
                continue
            db.execute("SAVEPOINT op")
            try:
                outcomes[i] = (True, fn(db, *args))
            except Exception as exc:  # noqa: BLE001 - handed to that body's caller only
                db.execute("ROLLBACK TO op")
                outcomes[i] = (False, exc)
            db.execute("RELEASE op")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return [o for o in outcomes if o is not None]


def _bulk_payments(db: sqlite3.Connection, ops: list[tuple[Callable[..., Any], tuple[Any, ...]]],
                   outcomes: list[tuple[bool, Any] | None]) -> None:
    """Apply the plain payments of a batch together (sqlite_bulk); the rest stay for one-by-one."""
    idx = [i for i, (fn, _) in enumerate(ops) if fn is tx.receive_payment]
    if len(idx) < 2:
        return
    events = [ops[i][1][0] for i in idx]
    db.execute("SAVEPOINT bulk")
    try:
        fast, _ = sqlite_bulk.plan(db, events)
        done = sqlite_bulk.apply_fast(db, fast, ops[idx[0]][1][1]) if fast else {}
    except Exception:  # noqa: BLE001 - the fast path is an optimisation: on any doubt go one by one
        db.execute("ROLLBACK TO bulk")
        done = {}
    db.execute("RELEASE bulk")
    for n, applied in done.items():
        outcomes[idx[n]] = (True, applied)


class SqliteStore(Customers, SharedState, Tickets, Supply):
    """One connection per process; its thread serialises this process's transactions."""

    def __init__(self, path: Path, busy_timeout_ms: int = 30_000, cache_kib: int = 32_768) -> None:
        self.path = path
        # the HMAC unique index takes random inserts: a 32 MiB page cache keeps its upper levels warm
        self._cache_kib = cache_kib
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: aiosqlite.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._pending: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flushing = False
        self._lock_fd: int | None = None

    async def open(self) -> SqliteStore:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            self._lock_fd = os.open(f"{self.path}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        await self._hop(self._configure)
        self._reader = self._open_reader()
        return self

    def _open_reader(self) -> sqlite3.Connection:
        """The loop thread's read-only connection (opened after _configure put the file in WAL mode)."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # a reader waits only while a checkpoint or recovery holds the WAL index: briefly, so a short timeout
        db.execute("PRAGMA busy_timeout = 1000")
        db.execute("PRAGMA query_only = ON")
        db.execute(f"PRAGMA cache_size = {-int(self._cache_kib) // 4}")
        return db

    def _configure(self, db: sqlite3.Connection) -> None:
        db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA cache_size = {-int(self._cache_kib)}")
        db.execute("PRAGMA foreign_keys = ON")

    async def _hop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(sqlite3_connection, *args) in the connection's thread: one hop for a whole unit.

        aiosqlite has no public API for this; Connection._execute is its queue primitive
        (pinned version range in pyproject.toml).
        """
        if self._conn is None:
            raise RuntimeError("store is not open")
        conn = self._conn
        result: T = await conn._execute(lambda: fn(conn._conn, *args))  # type: ignore[no-untyped-call]
        return result

    async def _tx(self, fn: Callable[..., T], *args: Any) -> T:
        """Queue a transaction body; bodies queued together commit together (group commit).

        Each body runs inside its own SAVEPOINT, so it is atomic on its own and fails alone;
        its caller resumes only after the COMMIT that made it durable.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, args, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        result: T = await future
        return result

    def _locked_batch(self, db: sqlite3.Connection, ops: list[tuple[Callable[..., Any], tuple[Any, ...]]]
                      ) -> list[tuple[bool, Any]]:
        """Serialise writers of all processes on an flock before BEGIN IMMEDIATE.

        SQLite's own busy handler polls with sleeps of up to 100 ms, so with several processes the
        lock sits idle while waiters sleep; a blocking flock hands it over the moment it is released.
        """
        if self._lock_fd is None:
            return _run_batch(db, ops)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            return _run_batch(db, ops)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
                try:
                    outcomes = await self._hop(self._locked_batch, [(fn, args) for fn, args, _ in batch])
                except BaseException as exc:  # BEGIN or COMMIT failed: nothing of the batch happened
                    outcomes = [(False, exc)] * len(batch)
                for (_, _, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flushing = False

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            raise RuntimeError("store is not open")
        return self._reader

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """An indexed read, on the loop thread (see the module docstring)."""
        return self._read().execute(sql, params).fetchall()

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """An indexed read of one row, on the loop thread (see the module docstring)."""
        return self._read().execute(sql, params).fetchone()

    async def _scan(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read whose cost grows with the data: on the connection's thread, so the loop keeps serving."""
        return await self._hop(lambda db: db.execute(sql, params).fetchall())

    # -- lifecycle ---------------------------------------------------------
    async def migrate(self) -> int:
        return await self._hop(self._migrate)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> int:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                       " name TEXT NOT NULL, applied_at TEXT NOT NULL)")
            current = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            known = migrations("sqlite")
            if known and current > known[-1][0]:
                raise SchemaTooNew(f"database schema {current} is newer than this kamibot ({known[-1][0]})")
            for version, name, sql in known:
                if version > current:
                    for statement in sql.split(";\n"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute("INSERT INTO schema_migrations VALUES (?,?,?)",
                               (version, name, ts(datetime.now(UTC))))
                    current = version
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return int(current)

    async def schema_version(self) -> int:
        row = await self._one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return int(row[0])

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- catalogue ---------------------------------------------------------
    async def upsert_category(self, slug: str, name_en: str, name_zh: str, sort: int) -> Category:
        row = await self._tx(lambda db: db.execute(
            "INSERT INTO categories (slug, name_en, name_zh, sort) VALUES (?,?,?,?) ON CONFLICT (slug)"
            " DO UPDATE SET name_en = excluded.name_en, name_zh = excluded.name_zh, sort = excluded.sort"
            " RETURNING id, slug, name_en, name_zh, sort", (slug, name_en, name_zh, sort)).fetchone())
        return Category(*row)

    async def upsert_product(self, p: Product) -> Product:
        row = await self._tx(lambda db: db.execute(
            "INSERT INTO products (category_id, slug, name_en, name_zh, description_en, description_zh,"
            " instructions_en, instructions_zh, active) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (slug) DO UPDATE"
            " SET category_id = excluded.category_id, name_en = excluded.name_en, name_zh = excluded.name_zh,"
            " description_en = excluded.description_en, description_zh = excluded.description_zh,"
            " instructions_en = excluded.instructions_en, instructions_zh = excluded.instructions_zh,"
            " active = excluded.active RETURNING id",
            (p.category_id, p.slug, p.name_en, p.name_zh, p.description_en, p.description_zh,
             p.instructions_en, p.instructions_zh, int(p.active))).fetchone())
        found = await self.product_by_id(int(row[0]))
        assert found is not None
        return found

    async def upsert_pool(self, slug: str, name: str, low_stock: int) -> Pool:
        row = await self._tx(lambda db: db.execute(
            "INSERT INTO pools (slug, name, low_stock) VALUES (?,?,?) ON CONFLICT (slug) DO UPDATE"
            " SET name = excluded.name, low_stock = excluded.low_stock RETURNING id, slug, name, low_stock",
            (slug, name, low_stock)).fetchone())
        return Pool(*row)

    async def upsert_sku(self, s: Sku) -> Sku:
        row = await self._tx(lambda db: db.execute(
            "INSERT INTO skus (product_id, pool_id, slug, name_en, name_zh, units, min_qty, max_qty,"
            " per_user_limit, active) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (slug) DO UPDATE SET"
            " product_id = excluded.product_id, pool_id = excluded.pool_id, name_en = excluded.name_en,"
            " name_zh = excluded.name_zh, units = excluded.units, min_qty = excluded.min_qty,"
            " max_qty = excluded.max_qty, per_user_limit = excluded.per_user_limit, active = excluded.active"
            " RETURNING id", (s.product_id, s.pool_id, s.slug, s.name_en, s.name_zh, s.units, s.min_qty,
                              s.max_qty, s.per_user_limit, int(s.active))).fetchone())
        found = await self.sku_by_id(int(row[0]))
        assert found is not None
        return found

    async def set_price(self, p: Price) -> None:
        await self._tx(lambda db: db.execute(
            "INSERT INTO prices (sku_id, channel, currency, amount) VALUES (?,?,?,?) ON CONFLICT"
            " (sku_id, channel) DO UPDATE SET currency = excluded.currency, amount = excluded.amount",
            (p.sku_id, p.channel, p.currency, p.amount)))

    async def categories(self) -> list[Category]:
        return [Category(*r) for r in await self._all(
            "SELECT id, slug, name_en, name_zh, sort FROM categories ORDER BY sort, id")]

    _PRODUCT = ("SELECT id, category_id, slug, name_en, name_zh, description_en, description_zh,"
                " instructions_en, instructions_zh, active FROM products")
    _SKU = ("SELECT id, product_id, pool_id, slug, name_en, name_zh, units, min_qty, max_qty,"
            " per_user_limit, active FROM skus")

    async def products(self, category_id: int | None = None) -> list[Product]:
        if category_id is None:
            rows = await self._all(self._PRODUCT + " ORDER BY id")
        else:
            rows = await self._all(self._PRODUCT + " WHERE category_id = ? ORDER BY id", (category_id,))
        return [_product(r) for r in rows]

    async def product_by_id(self, product_id: int) -> Product | None:
        r = await self._one(self._PRODUCT + " WHERE id = ?", (product_id,))
        return _product(r) if r else None

    async def skus(self, product_id: int | None = None) -> list[Sku]:
        if product_id is None:
            rows = await self._all(self._SKU + " ORDER BY id")
        else:
            rows = await self._all(self._SKU + " WHERE product_id = ? ORDER BY id", (product_id,))
        return [_sku(r) for r in rows]

    async def sku_by_id(self, sku_id: int) -> Sku | None:
        r = await self._one(self._SKU + " WHERE id = ?", (sku_id,))
        return _sku(r) if r else None

    async def sku_by_slug(self, slug: str) -> Sku | None:
        r = await self._one(self._SKU + " WHERE slug = ?", (slug,))
        return _sku(r) if r else None

    async def pools(self) -> list[Pool]:
        return [Pool(*r) for r in await self._all("SELECT id, slug, name, low_stock FROM pools ORDER BY id")]

    async def pool_by_slug(self, slug: str) -> Pool | None:
        r = await self._one("SELECT id, slug, name, low_stock FROM pools WHERE slug = ?", (slug,))
        return Pool(*r) if r else None

    async def prices(self, sku_id: int) -> list[Price]:
        return [Price(*r) for r in await self._all(
            "SELECT sku_id, channel, currency, amount FROM prices WHERE sku_id = ? ORDER BY channel", (sku_id,))]

    async def stock_levels(self) -> list[StockLevel]:
        rows = await self._scan(
            "SELECT p.id, p.slug, p.available, COALESCE((SELECT SUM(o.quantity * o.units) FROM orders o"
            " WHERE o.pool_id = p.id AND o.state IN ('reserved', 'awaiting_payment')), 0), p.low_stock"
            " FROM pools p ORDER BY p.id")
        return [StockLevel(*r) for r in rows]

    async def pool_available(self, pool_id: int) -> int:
        r = await self._one("SELECT available FROM pools WHERE id = ?", (pool_id,))
        return int(r[0]) if r else 0

    # -- vault -------------------------------------------------------------
    async def vault_key_checks(self) -> dict[str, bytes]:
        return {r[0]: bytes(r[1]) for r in await self._all("SELECT key_id, key_check FROM vault_keys")}

    async def register_vault_key(self, key_id: str, check: bytes) -> None:
        now = ts(datetime.now(UTC))
        await self._tx(lambda db: db.execute(
            "INSERT INTO vault_keys VALUES (?,?,?) ON CONFLICT (key_id) DO NOTHING", (key_id, check, now)))

    async def count_codes(self) -> int:
        return int((await self._scan("SELECT COUNT(*) FROM codes"))[0][0])

    async def create_batch(self, pool_id: int, supplier: str, unit_cost: int, currency: str, source: str) -> int:
        now = ts(datetime.now(UTC))
        return await self._tx(lambda db: int(db.execute(
            "INSERT INTO code_batches (pool_id, supplier, unit_cost, currency, source, created_at)"
            " VALUES (?,?,?,?,?,?)", (pool_id, supplier, unit_cost, currency, source, now)).lastrowid or 0))

    async def insert_codes(self, batch_id: int, pool_id: int, codes: Sequence[NewCode]) -> InsertResult:
        return await self._tx(_insert_codes, batch_id, pool_id, codes)

    async def finish_batch(self, batch_id: int, stats: BatchStats) -> None:
        await self._tx(lambda db: db.execute(
            "UPDATE code_batches SET imported = ?, duplicate_in_vault = ?, duplicate_in_batch = ?,"
            " invalid = ? WHERE id = ?", (stats.imported, stats.duplicate_in_vault,
                                          stats.duplicate_in_batch, len(stats.invalid), batch_id)))

    async def codes_not_under_key(self, key_id: str, after_id: int, limit: int) -> list[EncryptedCode]:
        rows = await self._scan(
            "SELECT id, digest, key_id, nonce, ciphertext FROM codes WHERE key_id != ? AND id > ?"
            " ORDER BY id LIMIT ?", (key_id, after_id, limit))
        return [EncryptedCode(r[0], bytes(r[1]), r[2], bytes(r[3]), bytes(r[4])) for r in rows]

    async def rekey_code(self, code_id: int, old_key_id: str, new: EncryptedCode) -> bool:
        return await self._tx(lambda db: db.execute(
            "UPDATE codes SET key_id = ?, nonce = ?, ciphertext = ? WHERE id = ? AND key_id = ?",
            (new.key_id, new.nonce, new.ciphertext, code_id, old_key_id)).rowcount == 1)

    async def code_by_id(self, code_id: int) -> EncryptedCode | None:
        r = await self._one("SELECT id, digest, key_id, nonce, ciphertext FROM codes WHERE id = ?", (code_id,))
        return EncryptedCode(r[0], bytes(r[1]), r[2], bytes(r[3]), bytes(r[4])) if r else None

    # -- orders ------------------------------------------------------------
    async def reserve(self, order: NewOrder, now: datetime) -> Order:
        order_id = await self._tx(tx.reserve, order, now)
        found = await self.order_by_id(order_id)
        assert found is not None
        return found

    async def transition(self, order_id: int, allowed_from: Sequence[OrderState], to: OrderState, cause: str,
                         now: datetime) -> bool:
        return await self._tx(tx.transition, order_id, [s.value for s in allowed_from], to.value, cause, now)

    async def order_by_id(self, order_id: int) -> Order | None:
        r = await self._one(f"SELECT {_ORDER_COLS} FROM orders WHERE id = ?", (order_id,))
        return _order(r) if r else None

    async def order_by_ref(self, ref: str) -> Order | None:
        r = await self._one(f"SELECT {_ORDER_COLS} FROM orders WHERE ref = ?", (ref,))
        return _order(r) if r else None

    async def orders_for_user(self, channel: str, user_id: str, limit: int, offset: int) -> list[Order]:
        rows = await self._all(f"SELECT {_ORDER_COLS} FROM orders WHERE channel = ? AND user_id = ?"
                               " ORDER BY id DESC LIMIT ? OFFSET ?", (channel, user_id, limit, offset))
        return [_order(r) for r in rows]

    async def orders_in_state(self, state: OrderState, limit: int) -> list[Order]:
        rows = await self._all(f"SELECT {_ORDER_COLS} FROM orders WHERE state = ? ORDER BY id LIMIT ?",
                               (state.value, limit))
        return [_order(r) for r in rows]

    async def order_events(self, order_id: int) -> list[OrderEvent]:
        rows = await self._all("SELECT order_id, from_state, to_state, cause, at FROM order_events"
                               " WHERE order_id = ? ORDER BY id", (order_id,))
        return [OrderEvent(r[0], r[1], r[2], r[3], from_ts(r[4])) for r in rows]

    async def order_items(self, order_id: int) -> list[OrderItem]:
        rows = await self._all(
            "SELECT i.item_no, c.id, c.digest, c.key_id, c.nonce, c.ciphertext, i.use_no FROM order_items i"
            " JOIN codes c ON c.id = i.code_id WHERE i.order_id = ? AND i.released = 0 ORDER BY i.item_no",
            (order_id,))
        return [OrderItem(r[0], EncryptedCode(r[1], bytes(r[2]), r[3], bytes(r[4]), bytes(r[5])), r[6])
                for r in rows]

    async def expire_reservations(self, now: datetime, limit: int) -> list[int]:
        return await self._tx(tx.expire, now, limit)

    # -- payments ----------------------------------------------------------
    async def record_payment(self, event: PaymentEventIn, now: datetime) -> tuple[int, bool]:
        return await self._tx(tx.record_payment, event, now)

    async def receive_payment(self, event: PaymentEventIn, now: datetime) -> PaymentApplied:
        return await self._tx(tx.receive_payment, event, now)

    async def apply_payment(self, event_id: int, now: datetime) -> PaymentApplied:
        return await self._tx(tx.apply_payment, event_id, now)

    async def unapplied_payments(self, limit: int) -> list[int]:
        return [r[0] for r in await self._all(
            "SELECT id FROM payment_events WHERE applied_at IS NULL ORDER BY id LIMIT ?", (limit,))]

    async def order_payment(self, order_id: int) -> tuple[str, str, int] | None:
        r = await self._one("SELECT provider, provider_txn_id, amount FROM payment_events WHERE order_id = ?"
                            " AND outcome IN ('allocated', 'failed', 'review') ORDER BY id LIMIT 1", (order_id,))
        return (r[0], r[1], int(r[2])) if r else None

    # -- delivery outbox ---------------------------------------------------
    async def claim_outbox(self, now: datetime, lease_until: datetime, limit: int) -> list[OutboxRow]:
        return await self._tx(tx.claim_outbox, now, lease_until, limit)

    async def complete_outbox(self, outbox_id: int, now: datetime) -> None:
        await self._tx(tx.complete_outbox, outbox_id, now)

    async def retry_outbox(self, outbox_id: int, next_at: datetime, error: str) -> None:
        await self._tx(lambda db: db.execute(
            "UPDATE outbox SET locked_until = NULL, next_attempt_at = ?, last_error = ? WHERE id = ?",
            (ts(next_at), error[:200], outbox_id)))

    async def fail_outbox(self, outbox_id: int, now: datetime, error: str) -> None:
        await self._tx(lambda db: db.execute(
            "UPDATE outbox SET status = 'failed', locked_until = NULL, done_at = ?, last_error = ? WHERE id = ?",
            (ts(now), error[:200], outbox_id)))

    async def enqueue_outbox(self, order_id: int, kind: str, payload: str, now: datetime) -> int:
        return await self._tx(tx.enqueue, order_id, kind, payload, now)

    async def pending_outbox(self) -> int:
        return int((await self._one("SELECT COUNT(*) FROM outbox WHERE status = 'pending'"))[0])

    # -- refunds and ledger ------------------------------------------------
    async def refund(self, order_id: int, cause: str, now: datetime) -> bool:
        return await self._tx(tx.refund, order_id, cause, now)

    async def ledger(self, since: datetime, until: datetime) -> list[LedgerLine]:
        rows = await self._scan(
            "SELECT sku_id, channel, kind, currency, SUM(amount), COUNT(DISTINCT order_id) FROM ledger"
            " WHERE at >= ? AND at < ? GROUP BY sku_id, channel, kind, currency ORDER BY sku_id, channel, kind",
            (ts(since), ts(until)))
        return [LedgerLine(*r) for r in rows]
