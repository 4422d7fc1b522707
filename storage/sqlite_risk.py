"""SQLite risk tables: rules, block/allow lists, the decision log, customer statistics and disputes (a mixin of
SqliteStore)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from storage import events
from storage.events import EventType
from storage.records import RiskDecisionRecord, UserStats
from storage.sqlite_base import SqliteBase
from storage.sqlite_orders import marks, record_dispute
from storage.sqltime import from_ts, ts


class Risk(SqliteBase):
    """Risk verbs of SqliteStore (mixed in)."""

    async def save_risk_rules(self, body: str, actor: str, now: datetime) -> int:
        return int(await self._tx(lambda db: db.execute(
            "INSERT INTO risk_rules (at, actor, body) VALUES (?,?,?)", (ts(now), actor, body)).lastrowid))

    async def latest_risk_rules(self) -> str | None:
        r = await self._one("SELECT body FROM risk_rules ORDER BY id DESC LIMIT 1")
        return str(r[0]) if r else None

    async def set_risk_list(self, kind: str, value: str, list_name: str | None, note: str, now: datetime) -> None:
        """Put a value on the block or allow list of its kind; list_name None removes it."""
        if list_name is None:
            await self._tx(lambda db: db.execute("DELETE FROM risk_lists WHERE kind = ? AND value = ?",
                                                 (kind, value)))
            return
        await self._tx(lambda db: db.execute(
            "INSERT INTO risk_lists (kind, value, list, note, at) VALUES (?,?,?,?,?) ON CONFLICT (kind, value)"
            " DO UPDATE SET list = excluded.list, note = excluded.note, at = excluded.at",
            (kind, value, list_name, note[:200], ts(now))))

    async def risk_lists(self) -> list[tuple[str, str, str]]:
        rows = await self._all("SELECT kind, value, list FROM risk_lists ORDER BY kind, value")
        return [(r[0], r[1], r[2]) for r in rows]

    async def record_risk_decisions(self, rows: list[RiskDecisionRecord]) -> None:
        await self._tx(_insert_decisions, rows)

    async def risk_decisions(self, field: str, value: str, limit: int) -> list[RiskDecisionRecord]:
        """Latest decisions by user (`channel:user_id`), ip or order id."""
        where, params = _decision_filter(field, value)
        rows = await self._all(
            "SELECT at, stage, channel, user_id, decision, score, reasons, ip, fingerprint, order_id, sku_id"
            f" FROM risk_decisions WHERE {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [RiskDecisionRecord(from_ts(r[0]), *r[1:]) for r in rows]

    async def user_stats(self, channel: str, user_id: str) -> UserStats:
        seen = await self._one("SELECT first_seen FROM users WHERE channel = ? AND user_id = ?", (channel, user_id))
        # orders_user (channel, user_id, id) finds the orders; order_events_order (order_id, id) their disputes
        sold = self._states.values(self._states.sold)
        counts = await self._one(
            f"SELECT COUNT(*) FILTER (WHERE state IN ({marks(sold)})), COUNT(*) FILTER (WHERE state = 'refunded'),"
            " COUNT(*) FILTER (WHERE EXISTS (SELECT 1 FROM order_events e WHERE e.order_id = o.id"
            " AND e.type = ?))"
            " FROM orders o WHERE channel = ? AND user_id = ?", (*sold, EventType.DISPUTE.value, channel, user_id))
        return UserStats(from_ts(seen[0]) if seen else None, int(counts[0]), int(counts[1]), int(counts[2]))

    async def record_dispute(self, order_id: int, source: str, now: datetime) -> bool:
        return bool(await self._tx(record_dispute, order_id, events.dispute(source=source), now))


def _insert_decisions(db: sqlite3.Connection, rows: list[RiskDecisionRecord]) -> None:
    db.executemany("INSERT INTO risk_decisions (at, stage, channel, user_id, ip, fingerprint, order_id, sku_id,"
                   " decision, score, reasons) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   [(ts(d.at), d.stage, d.channel, d.user_id, d.ip, d.fingerprint, d.order_id, d.sku_id, d.decision,
                     d.score, d.reasons[:500]) for d in rows])


def _decision_filter(field: str, value: str) -> tuple[str, tuple[Any, ...]]:
    if field == "user":
        channel, _, user_id = value.partition(":")
        return "channel = ? AND user_id = ?", (channel, user_id)
    if field == "ip":
        return "ip = ?", (value,)
    if field == "order":
        return "order_id = ?", (int(value),)
    raise ValueError(f"unknown decision filter {field!r}")
