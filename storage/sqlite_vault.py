"""SQLite transaction bodies for the code vault: batch inserts that tell duplicates within a file from those
already stored, using the unique HMAC index instead of an in-memory set."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from storage.records import InsertResult, NewCode
from storage.sqltime import ts


def insert_codes(db: sqlite3.Connection, batch_id: int, pool_id: int, codes: Sequence[NewCode]) -> InsertResult:
    now = ts(datetime.now(UTC))
    max_before = db.execute("SELECT COALESCE(MAX(id), 0) FROM codes").fetchone()[0]
    unit_cost, currency = db.execute("SELECT unit_cost, currency FROM code_batches WHERE id = ?",
                                     (batch_id,)).fetchone()
    before = db.total_changes
    db.executemany(
        "INSERT INTO codes (pool_id, batch_id, digest, key_id, nonce, ciphertext, uses_total, uses_left,"
        " expires_at, note, unit_cost, cost_currency, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
        " ON CONFLICT (digest) DO NOTHING",
        ((pool_id, batch_id, c.digest, c.key_id, c.nonce, c.ciphertext, c.uses, c.uses,
          ts(c.expires_at) if c.expires_at else None, c.note, unit_cost, currency, now) for c in codes),
    )
    inserted = db.total_changes - before
    if inserted == len(codes):
        added = sum(c.uses for c in codes)
        dup_vault = dup_batch = 0
    else:
        added, dup_vault, dup_batch = _classify_duplicates(db, batch_id, max_before, codes)
    db.execute("UPDATE pools SET available = available + ? WHERE id = ?", (added, pool_id))
    return InsertResult(inserted, dup_vault, dup_batch)


def _classify_duplicates(db: sqlite3.Connection, batch_id: int, max_before: int,
                         codes: Sequence[NewCode]) -> tuple[int, int, int]:
    """(uses added, duplicates of the vault, duplicates within this batch) for a chunk with collisions."""
    owner: dict[bytes, tuple[int, int]] = {}
    for i in range(0, len(codes), 500):
        chunk = [c.digest for c in codes[i : i + 500]]
        marks = ",".join("?" * len(chunk))
        for digest, row_batch, row_id in db.execute(
            f"SELECT digest, batch_id, id FROM codes WHERE digest IN ({marks})", chunk
        ):
            owner[bytes(digest)] = (row_batch, row_id)
    seen: set[bytes] = set()
    added = dup_vault = dup_batch = 0
    for c in codes:
        row_batch, row_id = owner[c.digest]
        if c.digest in seen or (row_batch == batch_id and row_id <= max_before):
            dup_batch += 1
        elif row_batch != batch_id:
            dup_vault += 1
        else:
            added += c.uses
        seen.add(c.digest)
    return added, dup_vault, dup_batch
