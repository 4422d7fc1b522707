"""PostgreSQL customers (language, referrer, reachability) and the merchant audit log (a mixin of PostgresStore)."""

from __future__ import annotations

from datetime import datetime

from storage.postgres_base import PostgresBase, aware


class PgCustomers(PostgresBase):
    """Customer and audit verbs of PostgresStore (mixed in)."""

    async def touch_user(self, channel: str, user_id: str, chat_id: str, now: datetime, referrer: str = "") -> None:
        await self.pool.execute(
            "INSERT INTO users (channel, user_id, chat_id, referrer, first_seen, last_seen) VALUES ($1,$2,$3,$4,$5,$5)"
            " ON CONFLICT (channel, user_id) DO UPDATE SET chat_id = excluded.chat_id, last_seen = excluded.last_seen,"
            " referrer = COALESCE(users.referrer, excluded.referrer)",
            channel, user_id, chat_id, referrer if referrer and referrer != user_id else None, aware(now))

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
                                aware(now), channel, actor, action, detail[:500])

    async def audit_entries(self, limit: int) -> list[tuple[datetime, str, str, str, str]]:
        rows = await self.pool.fetch("SELECT at, channel, actor, action, detail FROM audit_log ORDER BY id DESC"
                                     " LIMIT $1", limit)
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]
