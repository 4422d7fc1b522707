"""PostgreSQL code vault (a mixin of PostgresStore): COPY imports that tell duplicates within a batch from those
already stored, key checks and re-keying."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from storage.errors import UnknownRecord
from storage.postgres_base import PostgresBase, aware, code_from
from storage.records import (
    BatchStats,
    EncryptedCode,
    InsertResult,
    NewCode,
)

_CODE_COLUMNS = ["pool_id", "batch_id", "digest", "key_id", "nonce", "ciphertext", "uses_total", "uses_left",
                 "expires_at", "note", "unit_cost", "cost_currency"]


class PgVault(PostgresBase):
    """Vault verbs of PostgresStore (mixed in)."""

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
                aware(c.expires_at)
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
        return [code_from(r) for r in rows]

    async def rekey_code(self, code_id: int, old_key_id: str, new: EncryptedCode) -> bool:
        status = await self.pool.execute(
            "UPDATE codes SET key_id = $1, nonce = $2, ciphertext = $3 WHERE id = $4 AND key_id = $5",
            new.key_id, new.nonce, new.ciphertext, code_id, old_key_id)
        return bool(status.endswith(" 1"))

    async def code_by_id(self, code_id: int) -> EncryptedCode | None:
        r = await self.pool.fetchrow("SELECT id, digest, key_id, nonce, ciphertext FROM codes WHERE id = $1", code_id)
        return code_from(r) if r else None
