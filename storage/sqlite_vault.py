"""SQLite code vault (a mixin of SqliteStore): batch inserts that tell duplicates within a file from those already
stored, using the unique HMAC index instead of an in-memory set; key checks and re-keying."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from storage.records import BatchStats, EncryptedCode, InsertResult, NewCode
from storage.sqlite_base import SqliteBase
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


class VaultCodes(SqliteBase):
    """Vault verbs of SqliteStore (mixed in)."""

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
        return await self._tx_alone(insert_codes, batch_id, pool_id, codes)  # importer.BATCH rows

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

