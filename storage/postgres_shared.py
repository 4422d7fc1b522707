"""PostgreSQL state shared between processes (claim-once keys, values with expiry, leases) and the risk tables:
a mixin of PostgresStore, mirroring storage/sqlite_shared.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from storage import events
from storage.errors import UnknownRecord
from storage.events import EventType, NewOrderEvent
from storage.records import RiskDecisionRecord, StateGroups, UserStats

#: the state a review order was held from: the source of its latest move (not note) into review
HELD_FROM = ("SELECT from_state FROM order_events WHERE order_id = $1 AND to_state = 'review'"
             " AND from_state <> to_state ORDER BY id DESC LIMIT 1")


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: every time in kamibot is UTC-aware")
    return dt.astimezone(UTC)


class PgSharedState:
    """Claim-once keys, kv, leases and risk verbs of PostgresStore (mixed in)."""

    _states: StateGroups

    @property
    def pool(self) -> asyncpg.Pool:
        raise NotImplementedError  # provided by PostgresStore

    async def claim_once(self, scope: str, key: str, expires_at: datetime, now: datetime) -> bool:
        # an expired key is taken over in the same statement; a live one makes the insert a no-op
        row = await self.pool.fetchval(
            "INSERT INTO once_keys (scope, key, expires_at) VALUES ($1,$2,$3) ON CONFLICT (scope, key) DO UPDATE"
            " SET expires_at = excluded.expires_at WHERE once_keys.expires_at <= $4 RETURNING 1",
            scope, key, _aware(expires_at), _aware(now))
        return bool(row == 1)

    async def prune_once_keys(self, now: datetime) -> int:
        status = await self.pool.execute("DELETE FROM once_keys WHERE expires_at <= $1", _aware(now))
        return int(status.split()[-1])

    async def kv_get(self, key: str, now: datetime) -> str | None:
        value = await self.pool.fetchval(
            "SELECT value FROM kv WHERE key = $1 AND (expires_at IS NULL OR expires_at > $2)", key, _aware(now))
        return str(value) if value is not None else None

    async def kv_put(self, key: str, value: str, expires_at: datetime | None) -> None:
        await self.pool.execute(
            "INSERT INTO kv (key, value, expires_at) VALUES ($1,$2,$3) ON CONFLICT (key) DO UPDATE"
            " SET value = excluded.value, expires_at = excluded.expires_at",
            key, value, _aware(expires_at) if expires_at else None)

    async def try_lease(self, name: str, holder: str, until: datetime, now: datetime) -> bool:
        row = await self.pool.fetchval(
            "INSERT INTO leases (name, holder, until) VALUES ($1,$2,$3) ON CONFLICT (name) DO UPDATE"
            " SET holder = excluded.holder, until = excluded.until WHERE leases.holder = excluded.holder"
            " OR leases.until <= $4 RETURNING 1", name, holder, _aware(until), _aware(now))
        return bool(row == 1)

    async def release_lease(self, name: str, holder: str) -> None:
        await self.pool.execute("DELETE FROM leases WHERE name = $1 AND holder = $2", name, holder)

    # -- risk ----------------------------------------------------------------
    async def save_risk_rules(self, body: str, actor: str, now: datetime) -> int:
        return int(await self.pool.fetchval(
            "INSERT INTO risk_rules (at, actor, body) VALUES ($1,$2,$3) RETURNING id", _aware(now), actor, body))

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
            kind, value, list_name, note[:200], _aware(now))

    async def risk_lists(self) -> list[tuple[str, str, str]]:
        rows = await self.pool.fetch('SELECT kind, value, list FROM risk_lists ORDER BY kind COLLATE "C",'
                                     ' value COLLATE "C"')
        return [(r[0], r[1], r[2]) for r in rows]

    async def record_risk_decisions(self, rows: list[RiskDecisionRecord]) -> None:
        await self.pool.executemany(
            "INSERT INTO risk_decisions (at, stage, channel, user_id, ip, fingerprint, order_id, sku_id, decision,"
            " score, reasons) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
            [(_aware(d.at), d.stage, d.channel, d.user_id, d.ip, d.fingerprint, d.order_id, d.sku_id, d.decision,
              d.score, d.reasons[:500]) for d in rows])

    async def risk_decisions(self, field: str, value: str, limit: int) -> list[RiskDecisionRecord]:
        where, params = _decision_filter(field, value)
        rows = await self.pool.fetch(
            "SELECT at, stage, channel, user_id, decision, score, reasons, ip, fingerprint, order_id, sku_id"
            f" FROM risk_decisions WHERE {where} ORDER BY id DESC LIMIT ${len(params) + 1}", *params, limit)
        return [RiskDecisionRecord(*r) for r in rows]

    async def reopen_review(self, order_id: int, event: NewOrderEvent, now: datetime) -> int | None:
        """Approve a held order: back to the state it was held from, its held payment made applicable again."""
        at = _aware(now)
        async with self.pool.acquire() as conn, conn.transaction():
            state = await conn.fetchval("SELECT state FROM orders WHERE id = $1 FOR UPDATE", order_id)
            ev = await conn.fetchval("SELECT id FROM payment_events WHERE order_id = $1 AND outcome = 'review'"
                                     " ORDER BY id LIMIT 1", order_id)
            before = await conn.fetchval(HELD_FROM, order_id)
            if state != "review" or ev is None or before not in self._states.payable:
                return None
            await conn.execute("UPDATE orders SET state = $1, updated_at = $2 WHERE id = $3", before, at, order_id)
            await conn.execute("INSERT INTO order_events (order_id, from_state, to_state, type, params, at)"
                               " VALUES ($1, 'review', $2, $3, $4::jsonb, $5)", order_id, before, event.type.value,
                               event.params_json, at)
            await conn.execute("UPDATE payment_events SET applied_at = NULL, outcome = NULL, detail = $1"
                               " WHERE id = $2", "approved after review", ev)
            return int(ev)

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
        return await self._note(order_id, note, _aware(now), once=True)

    async def add_order_note(self, order_id: int, event: NewOrderEvent, now: datetime) -> None:
        if not event.is_note:
            raise ValueError(f"{event.type} changes the order's state: use transition")
        await self._note(order_id, event, _aware(now), once=False)

    async def _note(self, order_id: int, note: NewOrderEvent, at: datetime, once: bool) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            state = await conn.fetchval("SELECT state FROM orders WHERE id = $1 FOR UPDATE", order_id)
            if state is None:
                raise UnknownRecord(f"order {order_id}")
            if once and await conn.fetchval("SELECT 1 FROM order_events WHERE order_id = $1 AND type = $2 LIMIT 1",
                                            order_id, note.type.value) is not None:
                return False
            await conn.execute("INSERT INTO order_events (order_id, from_state, to_state, type, params, at)"
                               " VALUES ($1, $2, $2, $3, $4::jsonb, $5)", order_id, state, note.type.value,
                               note.params_json, at)
            return True

def _decision_filter(field: str, value: str) -> tuple[str, tuple[Any, ...]]:
    if field == "user":
        channel, _, user_id = value.partition(":")
        return "channel = $1 AND user_id = $2", (channel, user_id)
    if field == "ip":
        return "ip = $1", (value,)
    if field == "order":
        return "order_id = $1", (int(value),)
    raise ValueError(f"unknown decision filter {field!r}")
