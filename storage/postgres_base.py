"""The PostgreSQL backend's pool, migrations and call helpers (asyncpg), which every per-concern mixin of
PostgresStore runs its verbs through: a pool, numbered migrations under an advisory lock, and every compound verb
as one PL/pgSQL function call, i.e. one round trip (kb_reserve, kb_transition, kb_expire, kb_record_payment,
kb_receive, kb_apply_payment, kb_claim_outbox, kb_complete_outbox, kb_enqueue_outbox, kb_refund in
migrations/postgres). Behaviour matches storage/sqlite_orders.py; the functions mirror its bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Self, TypeVar

import asyncpg

from storage.errors import InsufficientStock, PurchaseLimitReached, SchemaTooNew, UnknownRecord
from storage.migrations import migrations
from storage.records import (
    EncryptedCode,
    Order,
    OrderState,
    PaymentApplied,
    PaymentOutcome,
    StateGroups,
)

T = TypeVar("T")
_MIGRATION_LOCK = 0x6B616D69  # "kami"; the second key is the schema, so test schemas do not queue
ORDER_COLS = ("id, ref, channel, user_id, chat_id, sku_id, pool_id, quantity, units, amount, currency, state,"
              " created_at, expires_at, language, target")
#: the order columns qualified (o.), for reads that join another table
ORDER_COLS_O = ", ".join("o." + c.strip() for c in ORDER_COLS.split(","))
N_ORDER_COLS = ORDER_COLS.count(",") + 1
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
_STORE_ERRORS = {"KB001": UnknownRecord, "KB002": PurchaseLimitReached, "KB003": InsufficientStock}


#: the batchers' flush tasks, referenced until done (the event loop keeps only weak references)
_FLUSHES: set[asyncio.Future[None]] = set()


def start_flush(work: Awaitable[None]) -> None:
    """Run a batcher's flush in the background, kept referenced until it ends."""
    task = asyncio.ensure_future(work)
    _FLUSHES.add(task)
    task.add_done_callback(_FLUSHES.discard)


def even_batch(queued: int, most: int) -> int:
    """How many of `queued` callers the next batch takes: the queue in equal parts of at most `most` (50 waiting,
    at most 32: 25 + 25, not 32 + 18), so no caller waits behind a bigger batch than the queue needs."""
    return -(-queued // max(1, -(-queued // most)))


class KeptConnections:
    """The connections a batcher keeps between its calls instead of handing them back to the pool.

    Why: a PL/pgSQL function is compiled, and each of its statements planned, once per backend, on its first call
    there (some 50 ms for kb_api_order_bulk on a 2-core host). From the shared pool a batch lands on whichever
    connection is free: whenever a read had just taken a warm one, on a cold one, and every order of that batch
    waited for the compilation (bench_api.py's slowest orders). Kept, at most one per batch in flight, each is
    compiled once. A call that raised hands its connection back to the pool (which resets or discards it), and so
    does a call beyond `keep` at once: a small pool is never emptied by the batchers.
    """

    def __init__(self, pool: Callable[[], asyncpg.Pool], keep: int) -> None:
        self.pool = pool
        self.keep = keep
        self._free: list[Any] = []  # asyncpg pool proxies, acquired and not released
        self.closing = False  # the store is closing: every connection goes back (the pool waits for them all)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = self._free.pop() if self._free else await self.pool().acquire()
        try:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
        except BaseException:
            await self.pool().release(conn)
            raise
        if len(self._free) < self.keep and not self.closing:
            self._free.append(conn)
        else:
            await self.pool().release(conn)
        return rows

    async def release_all(self) -> None:
        """Before the pool closes (it waits for every acquired connection): also a call still running now hands
        its connection back when it ends."""
        self.closing = True
        free, self._free = self._free, []
        for conn in free:
            await self.pool().release(conn)


async def answer_alone(future: asyncio.Future[T], call: Callable[[], Awaitable[T]]) -> None:
    """A batched caller's work done on its own (its batch failed, or it was alone): the result or the error goes to
    the future the caller awaits, raised there; only a cancellation or exit goes on up the flush."""
    try:
        result = await call()
    except BaseException as exc:
        if not future.done():
            future.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
    else:
        if not future.done():
            future.set_result(result)


def order_from(r: asyncpg.Record) -> Order:
    return Order(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], OrderState(r[11]), r[12], r[13],
                 r[14], r[15])


def code_from(r: asyncpg.Record, offset: int = 0) -> EncryptedCode:
    return EncryptedCode(r[offset], bytes(r[offset + 1]), r[offset + 2], bytes(r[offset + 3]), bytes(r[offset + 4]))


def applied_from(r: asyncpg.Record) -> PaymentApplied:
    return PaymentApplied(r[0], PaymentOutcome(r[1]), r[2], r[3] or "")


def aware(dt: datetime) -> datetime:
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


class PostgresBase:
    def __init__(self, dsn: str, schema: str | None = None, min_size: int = 2, max_size: int = 20, *,
                 states: StateGroups) -> None:
        self.dsn = dsn
        self._states = states
        # the groups as PL/pgSQL text[] arguments
        self._holding = states.values(states.holding)
        self._payable = states.values(states.payable)
        self._refundable = states.values(states.refundable)
        self._closed = states.values(states.closed)
        self.schema = schema
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool | None = None
        self._kept: list[KeptConnections] = []

    async def open(self) -> Self:
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
    async def migrate(self, target: int | None = None) -> int:
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
                if current < version <= (target or version):
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
                    current = version
        return int(current)

    async def schema_version(self) -> int:
        return int(await self.pool.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))

    def kept_connections(self) -> KeptConnections:
        """A new set of connections for one batcher, handed back when the store closes. Each batcher keeps at most
        4 (a batch in flight each), and the two of them together never more than half the pool beyond 4."""
        kept = KeptConnections(lambda: self.pool, keep=min(4, max(0, (self.max_size - 4) // 4)))
        self._kept.append(kept)
        return kept

    async def close(self) -> None:
        if self._pool is not None:
            for kept in self._kept:
                await kept.release_all()
            await self._pool.close()
            self._pool = None
