"""PostgreSQL state shared between processes: claim-once keys, values with expiry, leases (a mixin of
PostgresStore, mirroring storage/sqlite_shared.py)."""

from __future__ import annotations

from datetime import datetime

from storage.postgres_base import PostgresBase, aware


class PgSharedState(PostgresBase):
    """Claim-once keys, kv and leases of PostgresStore (mixed in)."""

    async def claim_once(self, scope: str, key: str, expires_at: datetime, now: datetime) -> bool:
        # an expired key is taken over in the same statement; a live one makes the insert a no-op
        row = await self.pool.fetchval(
            "INSERT INTO once_keys (scope, key, expires_at) VALUES ($1,$2,$3) ON CONFLICT (scope, key) DO UPDATE"
            " SET expires_at = excluded.expires_at WHERE once_keys.expires_at <= $4 RETURNING 1",
            scope, key, aware(expires_at), aware(now))
        return bool(row == 1)

    async def prune_once_keys(self, now: datetime) -> int:
        status = await self.pool.execute("DELETE FROM once_keys WHERE expires_at <= $1", aware(now))
        return int(status.split()[-1])

    async def kv_get(self, key: str, now: datetime) -> str | None:
        value = await self.pool.fetchval(
            "SELECT value FROM kv WHERE key = $1 AND (expires_at IS NULL OR expires_at > $2)", key, aware(now))
        return str(value) if value is not None else None

    async def kv_put(self, key: str, value: str, expires_at: datetime | None) -> None:
        await self.pool.execute(
            "INSERT INTO kv (key, value, expires_at) VALUES ($1,$2,$3) ON CONFLICT (key) DO UPDATE"
            " SET value = excluded.value, expires_at = excluded.expires_at",
            key, value, aware(expires_at) if expires_at else None)

    async def try_lease(self, name: str, holder: str, until: datetime, now: datetime) -> bool:
        row = await self.pool.fetchval(
            "INSERT INTO leases (name, holder, until) VALUES ($1,$2,$3) ON CONFLICT (name) DO UPDATE"
            " SET holder = excluded.holder, until = excluded.until WHERE leases.holder = excluded.holder"
            " OR leases.until <= $4 RETURNING 1", name, holder, aware(until), aware(now))
        return bool(row == 1)

    async def release_lease(self, name: str, holder: str) -> None:
        await self.pool.execute("DELETE FROM leases WHERE name = $1 AND holder = $2", name, holder)

    async def count_leases(self, prefix: str, now: datetime) -> int:
        return int(await self.pool.fetchval("SELECT COUNT(*) FROM leases WHERE starts_with(name, $1) AND until > $2",
                                            prefix, aware(now)))
