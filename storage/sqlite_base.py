"""The SQLite backend's connection and transaction machinery (aiosqlite: WAL, busy timeout, foreign keys, one thread
hop per transaction, group commit), which every per-concern mixin of SqliteStore runs its verbs through.

Point reads do not hop: they run on the event loop's thread on a second, read-only connection. In WAL mode a
reader never waits for the writer and each statement sees the last commit, and an indexed lookup (~10 µs)
costs far less than the thread hop (queue, wake-up, GIL hand-over, future) it would otherwise take. Scans
whose cost grows with the data (reports, counts over all codes) keep hopping to the connection's thread.

Group-commit batches do not hop either while the write lock is free: they run on the loop's thread on a third
connection (busy timeout 0), one BEGIN IMMEDIATE … COMMIT per batch. A hop per batch costs two thread wake-ups
and GIL hand-overs, and on a busy host each wake-up waits for the scheduler: measured on a 2-core host at load
average 8-11, payments went from ~1,800/s to ~2,500/s (median of 5). When another process holds the write lock
(the flock below) or SQLite answers busy, the batch hops to the connection's thread and waits there as before,
so the loop never waits for a lock. The thread's connection also checkpoints the WAL for the loop's one (no
automatic checkpoint, whose fsync would stall the loop): PASSIVE, every _CHECKPOINT_EVERY batches.

Point reads use the loop's write connection too, falling back to the read-only one when it answers busy: its own
commits keep its page cache valid, while a connection that did not write drops its whole cache at its next read
after another connection's commit (same host, medians of 4-5 runs: 3,127 → 3,859 and 3,173 → 4,213 payments/s).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Self, TypeVar

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
    StateGroups,
)
from storage.sqltime import ts

T = TypeVar("T")
_MAX_BATCH = 64
#: a transaction body -> the function that applies several calls of it at once (args of each call, without the
#: connection) and answers {index: result} for those it applied; the others run one by one after it
BULK_BODIES: dict[Callable[..., Any], Callable[[sqlite3.Connection, list[Any]], dict[int, Any]]] = {}
#: group-commit batches committed on the loop's connection between two WAL checkpoints in the thread
_CHECKPOINT_EVERY = 16
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
log = logging.getLogger("kamibot.storage")


def _run_batch(db: sqlite3.Connection, ops: list[tuple[Callable[..., Any], tuple[Any, ...]]]
               ) -> list[tuple[bool, Any]]:
    """One BEGIN IMMEDIATE … COMMIT around several transaction bodies, each in its own savepoint (a lone body: its
    own transaction)."""
    if len(ops) == 1:
        return [_run_alone(db, *ops[0])]
    outcomes: list[tuple[bool, Any] | None] = [None] * len(ops)
    db.execute("BEGIN IMMEDIATE")
    try:
        _bulk_payments(db, ops, outcomes)
        _bulk_bodies(db, ops, outcomes)
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


def _run_alone(db: sqlite3.Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> tuple[bool, Any]:
    """A batch of one body: its own transaction, no savepoint (whose rollback images SQLite would keep for it)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        try:
            outcome: tuple[bool, Any] = (True, fn(db, *args))
        except Exception as exc:  # noqa: BLE001 - handed to that body's caller only
            db.execute("ROLLBACK")
            return (False, exc)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return outcome


def _bulk_payments(db: sqlite3.Connection, ops: list[tuple[Callable[..., Any], tuple[Any, ...]]],
                   outcomes: list[tuple[bool, Any] | None]) -> None:
    """Apply the plain payments of a batch together (sqlite_bulk); the rest stay for one-by-one."""
    idx = [i for i, (fn, _) in enumerate(ops) if fn is tx.receive_payment]
    if len(idx) < 2:
        return
    events = [ops[i][1][0] for i in idx]

    def fast_path() -> dict[int, Any]:
        fast, _ = sqlite_bulk.plan(db, events, ops[idx[0]][1][2])
        return sqlite_bulk.apply_fast(db, fast, ops[idx[0]][1][1]) if fast else {}

    for n, applied in _bulk_or_nothing(db, fast_path).items():
        outcomes[idx[n]] = (True, applied)


def _bulk_or_nothing(db: sqlite3.Connection, bulk: Callable[[], dict[int, Any]]) -> dict[int, Any]:
    """A fast path in a savepoint: its {index: result}, or nothing (undone) when it raised, the calls then going
    one by one."""
    db.execute("SAVEPOINT bulk")
    try:
        done = bulk()
    except Exception:  # noqa: BLE001 - the fast path is an optimisation: on any doubt go one by one
        db.execute("ROLLBACK TO bulk")
        done = {}
    db.execute("RELEASE bulk")
    return done


def _bulk_bodies(db: sqlite3.Connection, ops: list[tuple[Callable[..., Any], tuple[Any, ...]]],
                 outcomes: list[tuple[bool, Any] | None]) -> None:
    """Apply together the calls of a body that has a bulk function (BULK_BODIES); the rest stay for one-by-one."""
    by_body: dict[Callable[..., Any], list[int]] = {}
    for i, (fn, _) in enumerate(ops):
        if outcomes[i] is None and fn in BULK_BODIES:
            by_body.setdefault(fn, []).append(i)
    for fn, idx in by_body.items():
        if len(idx) < 2:
            continue
        calls = [ops[i][1] for i in idx]
        for n, result in _bulk_or_nothing(db, partial(BULK_BODIES[fn], db, calls)).items():
            outcomes[idx[n]] = (True, result)


class SqliteBase:
    """One connection per process; its thread serialises this process's transactions."""

    def __init__(self, path: Path, *, states: StateGroups, busy_timeout_ms: int = 30_000,
                 cache_kib: int = 32_768) -> None:
        self.path = path
        self._states = states
        # the HMAC unique index takes random inserts: a 32 MiB page cache keeps its upper levels warm
        self._cache_kib = cache_kib
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: aiosqlite.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._inline_commits = 0
        self._checkpoint: asyncio.Task[None] | None = None
        self._pending: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flushing = False
        self._lock_fd: int | None = None  # the thread's
        #: the loop's own open of the same lock file: a flock belongs to an open file, so on one descriptor the loop's
        #: non-blocking try would succeed while the thread holds the lock (say, for _tx_alone), and its release
        #: would drop the thread's lock under another process's feet
        self._inline_lock_fd: int | None = None

    async def open(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            self._lock_fd = os.open(f"{self.path}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
            self._inline_lock_fd = os.open(f"{self.path}.writelock", os.O_RDWR | os.O_CREAT, 0o600)
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        await self._hop(self._configure)
        self._reader = self._open_reader()
        self._inline = self._open_inline()
        return self

    def _open_reader(self) -> sqlite3.Connection:
        """The loop thread's read-only connection (opened after _configure put the file in WAL mode)."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # a reader waits only while a checkpoint or recovery holds the WAL index: briefly, so a short timeout
        db.execute("PRAGMA busy_timeout = 1000")
        db.execute("PRAGMA query_only = ON")
        db.execute(f"PRAGMA cache_size = {-int(self._cache_kib) // 4}")
        return db

    def _open_inline(self) -> sqlite3.Connection:
        """The loop thread's write connection for group-commit batches (see the module docstring)."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._configure(db)
        db.execute("PRAGMA busy_timeout = 0")  # busy: the batch hops to the thread, which waits
        db.execute("PRAGMA wal_autocheckpoint = 0")  # checkpoints run in the thread (_maybe_checkpoint)
        # each body of a batch of several runs in a savepoint: the page images they keep for a rollback stay in
        # memory (a batch of 50 API orders touches ~160 pages, which spilled to a temp file past 64 KiB): bench_api
        # ~8 µs less per order. Only here: big transactions (_tx_alone) run on the thread's connection, whose images
        # (and sorts) still spill to disk
        db.execute("PRAGMA temp_store = MEMORY")
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

        Each body runs inside its own SAVEPOINT (alone in its batch: its own transaction), so it is atomic on its own
        and fails alone; its caller resumes only after the COMMIT that made it durable.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, args, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        result: T = await future
        return result

    async def _tx_alone(self, fn: Callable[..., T], *args: Any) -> T:
        """A big transaction (an import chunk, a prune of every expired key) in the connection's thread, on its own:
        the loop's thread does not stall for its duration, and neither waits for nor joins a group commit."""
        ((ok, value),) = await self._hop(self._locked_batch, [(fn, args)])
        if not ok:
            raise value
        result: T = value
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

    def _inline_batch(self, ops: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[tuple[bool, Any]] | None:
        """The batch on the loop's connection, or None (nothing done) when the write lock is not free now."""
        if self._inline is None:
            return None
        if self._inline_lock_fd is not None:
            try:
                fcntl.flock(self._inline_lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # another process (or this one's thread) writes: wait for it in the thread, not here
        try:
            outcomes = _run_batch(self._inline, ops)
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) in _BUSY:
                return None  # rolled back (or never begun): the thread runs the whole batch
            raise
        finally:
            if self._inline_lock_fd is not None:
                fcntl.flock(self._inline_lock_fd, fcntl.LOCK_UN)
        self._inline_commits += 1
        if self._inline_commits % _CHECKPOINT_EVERY == 0 and self._checkpoint is None:
            self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint())
        return outcomes

    async def _run_checkpoint(self) -> None:
        try:
            await self._hop(lambda db: db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall())
        except Exception:
            log.exception("event=storage.checkpoint_failed")
        finally:
            self._checkpoint = None

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
                ops = [(fn, args) for fn, args, _ in batch]
                try:
                    outcomes = self._inline_batch(ops)
                    if outcomes is None:
                        outcomes = await self._hop(self._locked_batch, ops)
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

    def _point(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        """A point read on the loop's write connection (see the module docstring); on the read-only connection
        when the write connection answers busy (its busy timeout is 0)."""
        if self._inline is not None:
            try:
                return self._inline.execute(sql, params)
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", None) not in _BUSY:
                    raise
        return self._read().execute(sql, params)

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """An indexed read, on the loop thread (see the module docstring)."""
        return self._point(sql, params).fetchall()

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """An indexed read of one row, on the loop thread (see the module docstring)."""
        return self._point(sql, params).fetchone()

    async def _scan(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A read whose cost grows with the data: on the connection's thread, so the loop keeps serving."""
        return await self._hop(lambda db: db.execute(sql, params).fetchall())

    # -- lifecycle ---------------------------------------------------------
    async def migrate(self, target: int | None = None) -> int:
        return await self._hop(self._migrate, target)

    @staticmethod
    def _migrate(db: sqlite3.Connection, target: int | None) -> int:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                       " name TEXT NOT NULL, applied_at TEXT NOT NULL)")
            current = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            known = migrations("sqlite")
            if known and current > known[-1][0]:
                raise SchemaTooNew(f"database schema {current} is newer than this kamibot ({known[-1][0]})")
            for version, name, sql in known:
                if current < version <= (target or version):
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
        if self._checkpoint is not None:
            await self._checkpoint
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        for fd in (self._lock_fd, self._inline_lock_fd):
            if fd is not None:
                os.close(fd)
        self._lock_fd = self._inline_lock_fd = None
