"""SQLite customers (language, referrer, reachability) and the merchant audit log: a mixin of SqliteStore."""

from __future__ import annotations

import sqlite3
from datetime import datetime

from storage.sqlite_base import SqliteBase
from storage.sqltime import from_ts, ts


def _touch_user(db: sqlite3.Connection, channel: str, user_id: str, chat_id: str, now: datetime,
                referrer: str) -> None:
    at = ts(now)
    db.execute(
        "INSERT INTO users (channel, user_id, chat_id, referrer, first_seen, last_seen) VALUES (?,?,?,?,?,?)"
        " ON CONFLICT (channel, user_id) DO UPDATE SET chat_id = excluded.chat_id, last_seen = excluded.last_seen,"
        " referrer = COALESCE(users.referrer, excluded.referrer)",
        (channel, user_id, chat_id, referrer if referrer and referrer != user_id else None, at, at))


class Customers(SqliteBase):
    """Customer and audit verbs of SqliteStore (mixed in)."""

    async def touch_user(self, channel: str, user_id: str, chat_id: str, now: datetime, referrer: str = "") -> None:
        await self._tx(_touch_user, channel, user_id, chat_id, now, referrer)

    async def set_user_language(self, channel: str, user_id: str, language: str) -> None:
        await self._tx(lambda db: db.execute("UPDATE users SET language = ? WHERE channel = ? AND user_id = ?",
                                             (language, channel, user_id)))

    async def user_language(self, channel: str, user_id: str) -> str | None:
        r = await self._one("SELECT language FROM users WHERE channel = ? AND user_id = ?", (channel, user_id))
        return str(r[0]) if r and r[0] else None

    async def set_user_blocked(self, channel: str, user_id: str, blocked: bool) -> None:
        await self._tx(lambda db: db.execute("UPDATE users SET blocked = ? WHERE channel = ? AND user_id = ?",
                                             (int(blocked), channel, user_id)))

    async def reachable_users(self, channel: str, after: str, limit: int) -> list[tuple[str, str]]:
        rows = await self._all("SELECT user_id, chat_id FROM users WHERE channel = ? AND blocked = 0 AND user_id > ?"
                               " ORDER BY user_id LIMIT ?", (channel, after, limit))
        return [(r[0], r[1]) for r in rows]

    async def audit(self, channel: str, actor: str, action: str, detail: str, now: datetime) -> None:
        await self._tx(lambda db: db.execute(
            "INSERT INTO audit_log (at, channel, actor, action, detail) VALUES (?,?,?,?,?)",
            (ts(now), channel, actor, action, detail[:500])))

    async def audit_entries(self, limit: int) -> list[tuple[datetime, str, str, str, str]]:
        rows = await self._all("SELECT at, channel, actor, action, detail FROM audit_log ORDER BY id DESC LIMIT ?",
                               (limit,))
        return [(from_ts(r[0]), r[1], r[2], r[3], r[4]) for r in rows]
