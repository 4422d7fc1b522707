"""SQLite group commit on the loop's connection (storage/sqlite_base.py): while another writer holds the lock
the loop keeps serving and the batch completes in the connection's thread once the lock is free; the WAL is
checkpointed into the database file by the thread."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import sqlite_base
from storage.records import PaymentOutcome
from storage.sqlite import SqliteStore
from tests.conftest import STATE_GROUPS
from tests.storage.seed import NOW, make_shop, new_order, payment


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore(tmp_path / "shop.db", states=STATE_GROUPS).open()
    await s.migrate()
    yield s
    await s.close()


async def _loop_turns_while(task: asyncio.Task[object]) -> int:
    """Event-loop turns that ran while `task` was still waiting (the loop was not blocked)."""
    turns = 0
    for _ in range(20):
        await asyncio.sleep(0.01)
        if task.done():
            break
        turns += 1
    return turns


async def test_a_payment_waits_for_another_processs_write_lock_without_blocking_the_loop(sqlite_store, tmp_path):
    shop = await make_shop(sqlite_store, codes=3)
    order = await sqlite_store.reserve(new_order(shop.sku), NOW)
    # given: another process's writer holds the cross-process write lock (another open file description)
    other = os.open(f"{tmp_path / 'shop.db'}.writelock", os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        paying = asyncio.ensure_future(sqlite_store.receive_payment(payment(order.ref, 1000, txn="tx-1"), NOW))
        # then: the loop keeps turning and the payment waits
        assert await _loop_turns_while(paying) == 20
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    # when the lock is free: the payment is applied once
    result = await asyncio.wait_for(paying, 10)
    assert result.outcome == PaymentOutcome.ALLOCATED
    assert len(await sqlite_store.order_items(order.id)) == 1


async def test_a_batch_answered_busy_by_sqlite_runs_in_the_thread_once_the_writer_commits(sqlite_store, tmp_path):
    shop = await make_shop(sqlite_store, codes=3)
    orders = [await sqlite_store.reserve(new_order(shop.sku, user=f"u{i}"), NOW) for i in range(2)]
    # given: a writer that does not take the flock holds SQLite's own write lock
    writer = sqlite3.connect(tmp_path / "shop.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        paying = asyncio.ensure_future(asyncio.gather(*(
            sqlite_store.receive_payment(payment(o.ref, 1000, txn=f"tx-{i}"), NOW) for i, o in enumerate(orders))))
        assert await _loop_turns_while(paying) == 20
    finally:
        writer.execute("COMMIT")
        writer.close()
    results = await asyncio.wait_for(paying, 10)
    assert [r.outcome for r in results] == [PaymentOutcome.ALLOCATED] * 2
    assert await sqlite_store.pending_outbox() == 2


async def test_the_wal_is_checkpointed_into_the_database_file(sqlite_store, tmp_path):
    db_file = tmp_path / "shop.db"
    before = db_file.stat().st_size
    # when: more batches than one checkpoint period, each writing a few pages
    for i in range(2 * sqlite_base._CHECKPOINT_EVERY):
        await sqlite_store.save_risk_rules("#" * 20_000, f"actor-{i}", NOW)
    while sqlite_store._checkpoint is not None:
        await sqlite_store._checkpoint
    # then: the database file itself holds the rows (a WAL-mode file grows only when a checkpoint copies pages)
    assert db_file.stat().st_size > before + 20_000


def _full_scans(db: sqlite3.Connection, statements: list[str], tables: tuple[str, ...]) -> list[str]:
    """The traced SELECTs whose query plan scans one of `tables` whole (no index search)."""
    scans = []
    for sql in statements:
        if not sql.lstrip().upper().startswith("SELECT") or not any(t in sql for t in tables):
            continue
        plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}")]
        scans += [f"{step}: {sql}" for step in plan if step.startswith("SCAN") and any(t in step for t in tables)]
    return scans


async def test_a_batchs_duplicate_checks_search_their_unique_indexes(sqlite_store, tmp_path):
    # a burst of payments and a burst of API orders each take their bulk path; the reads that look for an existing
    # payment (provider, txn) or nonce (scope, key) must search the unique index, not scan every row ever written
    from tests.storage.test_api_conformance import _client
    from tests.storage.test_api_order_batches import _nonce, _order

    shop = await make_shop(sqlite_store, codes=20)
    orders = [await sqlite_store.reserve(new_order(shop.sku, user=f"u{i}"), NOW) for i in range(4)]
    cid = await _client(sqlite_store, funds=10_000)
    statements: list[str] = []
    assert sqlite_store._inline is not None
    sqlite_store._inline.set_trace_callback(statements.append)  # expanded SQL: literals in place of parameters
    try:
        await asyncio.gather(*(sqlite_store.receive_payment(payment(o.ref, 1000, txn=f"tx-{i}"), NOW)
                               for i, o in enumerate(orders)))
        await asyncio.gather(*(sqlite_store.place_api_order(_order(cid, shop.sku.id, f"A-{i}"), NOW, _nonce(f"n{i}"))
                               for i in range(4)))
    finally:
        sqlite_store._inline.set_trace_callback(None)
    assert any("once_keys" in s for s in statements)
    assert any("payment_events" in s for s in statements)
    reader = sqlite3.connect(tmp_path / "shop.db")
    try:
        assert _full_scans(reader, statements, ("once_keys", "payment_events")) == []
    finally:
        reader.close()


def _temp_files() -> set[str]:
    """SQLite's temp files open in this process (it unlinks them at once: only /proc shows them)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "etilqs_" in target:
            found.add(target)
    return found


async def test_a_big_batchs_savepoint_journal_stays_in_memory(sqlite_store, tmp_path):
    # every body of a batch runs in a savepoint, whose rollback images SQLite spills to a temp file past 64 KiB
    # unless temp_store is MEMORY: 60 API orders with random refs and nonces touch far more pages than that
    from tests.storage.test_api_conformance import _client
    from tests.storage.test_api_order_batches import _nonce, _order

    shop = await make_shop(sqlite_store, codes=400)
    cid = await _client(sqlite_store, funds=1_000_000)
    for n in range(4):  # enough orders and nonces already for the new ones to land on many pages
        await asyncio.gather(*(sqlite_store.place_api_order(_order(cid, shop.sku.id, f"W{n}-{i}"), NOW,
                                                            _nonce(f"w{n}-{i}")) for i in range(60)))
    seen: set[str] = set()
    looks = 0

    def look() -> None:
        nonlocal looks
        looks += 1
        seen.update(_temp_files())

    assert sqlite_store._inline is not None
    commits = sqlite_store._inline_commits
    sqlite_store._inline.set_progress_handler(look, 200)
    try:
        placed = await asyncio.gather(*(sqlite_store.place_api_order(_order(cid, shop.sku.id, f"A-{i}"), NOW,
                                                                     _nonce(f"a{i}")) for i in range(60)))
    finally:
        sqlite_store._inline.set_progress_handler(None, 0)
    assert len({p.order_id for p in placed}) == 60
    assert sqlite_store._inline_commits > commits  # it ran on the connection watched
    assert looks > 10
    assert seen == set()


async def test_a_lone_body_that_raises_leaves_nothing_behind(sqlite_store):
    # a batch of one body runs without a savepoint: its own transaction, rolled back whole
    def body(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO kv (key, value, expires_at) VALUES ('lone', 'x', NULL)")
        raise ValueError("refused after a write")

    with pytest.raises(ValueError, match="refused after a write"):
        await sqlite_store._tx(body)
    assert await sqlite_store.kv_get("lone", NOW) is None
    await sqlite_store.kv_put("lone", "y", None)  # the connection is usable, outside any transaction
    assert await sqlite_store.kv_get("lone", NOW) == "y"
    assert sqlite_store._inline is not None
    assert not sqlite_store._inline.in_transaction


async def test_an_import_chunk_runs_in_the_thread_not_on_the_loops_connection(sqlite_store):
    # 25,000 rows at once: on the loop's thread it would stall every chat for its duration, and the loop's
    # connection keeps savepoint images in memory
    from fulfillment.vault import KeyRing, Vault

    shop = await make_shop(sqlite_store, codes=0)
    vault = Vault(KeyRing.new())
    batch = await sqlite_store.create_batch(shop.pool.id, "s", 10, "CNY", "file.txt")
    statements: list[str] = []
    assert sqlite_store._inline is not None
    sqlite_store._inline.set_trace_callback(statements.append)
    try:
        result = await sqlite_store.insert_codes(batch, shop.pool.id, vault.seal_many([f"C-{i}" for i in range(300)]))
        with pytest.raises(sqlite3.IntegrityError):  # a body's error reaches the caller, nothing of it is kept
            await sqlite_store._tx_alone(lambda db: db.execute("INSERT INTO codes (id) VALUES (NULL)"))
    finally:
        sqlite_store._inline.set_trace_callback(None)
    assert result.inserted == 300
    assert not any("INSERT INTO codes" in s for s in statements)
    assert await sqlite_store.pool_available(shop.pool.id) == 300


class _AnswersWith:
    """The loop's write connection answering every statement with one SQLite error (the rest of it untouched)."""

    def __init__(self, real: sqlite3.Connection, code: int) -> None:
        self.real = real
        self.code = code
        self.tried = 0

    def execute(self, sql: str, params: object = ()) -> sqlite3.Cursor:
        self.tried += 1
        exc = sqlite3.OperationalError("database is locked" if self.code == sqlite3.SQLITE_BUSY else "disk I/O error")
        exc.sqlite_errorcode = self.code  # type: ignore[attr-defined]
        raise exc

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


async def test_a_point_read_answered_busy_on_the_write_connection_reads_the_read_only_one(sqlite_store):
    await sqlite_store.kv_put("k", "v", None)
    real = sqlite_store._inline
    assert real is not None
    busy = _AnswersWith(real, sqlite3.SQLITE_BUSY)
    sqlite_store._inline = busy  # type: ignore[assignment]
    try:
        assert await sqlite_store.kv_get("k", NOW) == "v"  # from the read-only connection
        assert busy.tried == 1
        broken = _AnswersWith(real, sqlite3.SQLITE_IOERR)
        sqlite_store._inline = broken  # type: ignore[assignment]
        with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):  # only busy falls back
            await sqlite_store.kv_get("k", NOW)
    finally:
        sqlite_store._inline = real


async def test_the_write_lock_stays_held_for_other_processes_while_the_thread_writes_alone(sqlite_store, tmp_path):
    # the loop's try for the lock while the thread holds it (a big transaction on its own) must fail and leave the
    # thread's lock in place: another process (here another open of the lock file) cannot take it meanwhile
    import threading
    import time as _time

    started = threading.Event()

    def slow(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO kv (key, value, expires_at) VALUES ('slow', '1', NULL)")
        started.set()
        _time.sleep(0.4)

    alone = asyncio.ensure_future(sqlite_store._tx_alone(slow))
    assert await asyncio.to_thread(started.wait, 5)
    put = asyncio.ensure_future(sqlite_store.kv_put("meanwhile", "2", None))  # tries the lock on the loop
    await asyncio.sleep(0.05)
    other = os.open(tmp_path / "shop.db.writelock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        await asyncio.gather(alone, put)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once both are done
        fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        os.close(other)
    assert await sqlite_store.kv_get("slow", NOW) == "1"
    assert await sqlite_store.kv_get("meanwhile", NOW) == "2"
