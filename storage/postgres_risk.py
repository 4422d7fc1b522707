"""PostgreSQL risk tables: rules, block/allow lists, the decision log, customer statistics and disputes (a mixin
of PostgresStore, mirroring storage/sqlite_risk.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from storage import events
from storage.events import EventType
from storage.postgres_base import PostgresBase, aware
from storage.postgres_sales import write_note
from storage.records import RiskDecisionRecord, UserStats


class PgRisk(PostgresBase):
    """Risk verbs of PostgresStore (mixed in)."""

    async def save_risk_rules(self, body: str, actor: str, now: datetime) -> int:
        return int(await self.pool.fetchval(
            "INSERT INTO risk_rules (at, actor, body) VALUES ($1,$2,$3) RETURNING id", aware(now), actor, body))

    async def latest_risk_rules(self) -> str | None:
        value = await self.pool.fetchval("SELECT body FROM risk_rules ORDER BY id DESC LIMIT 1")
        return str(value) if value is not None else None

    async def set_risk_list(self, kind: str, value: str, list_name: str | None, note: str, now: datetime) -> None:
        if list_name is None:
            await self.pool.execute("DELETE FROM risk_lists WHERE kind = $1 AND value = $2", kind, value)
            return
        await self.pool.execute(
            "INSERT INTO risk_lists (kind, value, list, note, at) VALUES ($1,$2,$3,$4,$5) ON CONFLICT (kind, value)"
            " DO UPDATE SET list = excluded.list, note = excluded.note, at = excluded.at",
            kind, value, list_name, note[:200], aware(now))

    async def risk_lists(self) -> list[tuple[str, str, str]]:
        rows = await self.pool.fetch('SELECT kind, value, list FROM risk_lists ORDER BY kind COLLATE "C",'
                                     ' value COLLATE "C"')
        return [(r[0], r[1], r[2]) for r in rows]

    async def record_risk_decisions(self, rows: list[RiskDecisionRecord]) -> None:
        await self.pool.executemany(
            "INSERT INTO risk_decisions (at, stage, channel, user_id, ip, fingerprint, order_id, sku_id, decision,"
            " score, reasons) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
            [(aware(d.at), d.stage, d.channel, d.user_id, d.ip, d.fingerprint, d.order_id, d.sku_id, d.decision,
              d.score, d.reasons[:500]) for d in rows])

    async def risk_decisions(self, field: str, value: str, limit: int) -> list[RiskDecisionRecord]:
        where, params = _decision_filter(field, value)
        rows = await self.pool.fetch(
            "SELECT at, stage, channel, user_id, decision, score, reasons, ip, fingerprint, order_id, sku_id"
            f" FROM risk_decisions WHERE {where} ORDER BY id DESC LIMIT ${len(params) + 1}", *params, limit)
        return [RiskDecisionRecord(*r) for r in rows]

    async def user_stats(self, channel: str, user_id: str) -> UserStats:
        seen = await self.pool.fetchval("SELECT first_seen FROM users WHERE channel = $1 AND user_id = $2",
                                        channel, user_id)
        # orders_user (channel, user_id, id) finds the orders; order_events_order (order_id, id) their disputes
        row = await self.pool.fetchrow(
            "SELECT COUNT(*) FILTER (WHERE state = ANY($3::text[])), COUNT(*) FILTER (WHERE state = 'refunded'),"
            " COUNT(*) FILTER (WHERE EXISTS (SELECT 1 FROM order_events e WHERE e.order_id = o.id"
            " AND e.type = $4))"
            " FROM orders o WHERE channel = $1 AND user_id = $2", channel, user_id,
            self._states.values(self._states.sold), EventType.DISPUTE.value)
        assert row is not None
        return UserStats(seen, int(row[0]), int(row[1]), int(row[2]))

    async def record_dispute(self, order_id: int, source: str, now: datetime) -> bool:
        """A dispute (chargeback) as a note in the order's current state; once per order (the order row's lock
        serialises two reports of the same dispute)."""
        note = events.dispute(source=source)
        return await write_note(self.pool, order_id, note, aware(now), once=True)


def _decision_filter(field: str, value: str) -> tuple[str, tuple[Any, ...]]:
    if field == "user":
        channel, _, user_id = value.partition(":")
        return "channel = $1 AND user_id = $2", (channel, user_id)
    if field == "ip":
        return "ip = $1", (value,)
    if field == "order":
        return "order_id = $1", (int(value),)
    raise ValueError(f"unknown decision filter {field!r}")
