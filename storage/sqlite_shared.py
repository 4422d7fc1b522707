"""SQLite state shared between processes: claim-once keys, values with expiry, leases (a mixin of SqliteStore)."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from storage.sqlite_base import SqliteBase
from storage.sqltime import ts


def _claim_once(db: sqlite3.Connection, scope: str, key: str, expires_at: datetime, now: datetime) -> bool:
    db.execute("DELETE FROM once_keys WHERE scope = ? AND key = ? AND expires_at <= ?", (scope, key, ts(now)))
    cur = db.execute("INSERT INTO once_keys (scope, key, expires_at) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                     (scope, key, ts(expires_at)))
    return cur.rowcount == 1


def _try_lease(db: sqlite3.Connection, name: str, holder: str, until: datetime, now: datetime) -> bool:
    cur = db.execute(
        "INSERT INTO leases (name, holder, until) VALUES (?,?,?) ON CONFLICT (name) DO UPDATE"
        " SET holder = excluded.holder, until = excluded.until WHERE leases.holder = excluded.holder"
        " OR leases.until <= ?", (name, holder, ts(until), ts(now)))
    return cur.rowcount == 1


class SharedState(SqliteBase):
    """Claim-once keys, kv, leases and risk verbs of SqliteStore (mixed in)."""

    async def claim_once(self, scope: str, key: str, expires_at: datetime, now: datetime) -> bool:
        return bool(await self._tx(_claim_once, scope, key, expires_at, now))

    async def prune_once_keys(self, now: datetime) -> int:
        return int(await self._tx_alone(lambda db: db.execute("DELETE FROM once_keys WHERE expires_at <= ?",
                                                              (ts(now),)).rowcount))

    async def kv_get(self, key: str, now: datetime) -> str | None:
        r = await self._one("SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                            (key, ts(now)))
        return str(r[0]) if r else None

    async def kv_put(self, key: str, value: str, expires_at: datetime | None) -> None:
        await self._tx(lambda db: db.execute(
            "INSERT INTO kv (key, value, expires_at) VALUES (?,?,?) ON CONFLICT (key) DO UPDATE"
            " SET value = excluded.value, expires_at = excluded.expires_at",
            (key, value, ts(expires_at) if expires_at else None)))

    async def try_lease(self, name: str, holder: str, until: datetime, now: datetime) -> bool:
        return bool(await self._tx(_try_lease, name, holder, until, now))

    async def release_lease(self, name: str, holder: str) -> None:
        await self._tx(lambda db: db.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder)))

    async def count_leases(self, prefix: str, now: datetime) -> int:
        r = await self._one("SELECT COUNT(*) FROM leases WHERE substr(name, 1, ?) = ? AND until > ?",
                            (len(prefix), prefix, ts(now)))
        return int(r[0])
