"""SQLite state shared between processes (claim-once keys, values with expiry, leases) and the risk tables:
a mixin of SqliteStore."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any

from storage import events
from storage.events import EventType, NewOrderEvent
from storage.records import RiskDecisionRecord, StateGroups, UserStats
from storage.sqlite_orders import EVENT_INSERT, add_note, event_row, held_from, marks, record_dispute
from storage.sqltime import from_ts, ts


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


def _reopen_review(db: sqlite3.Connection, order_id: int, approved: NewOrderEvent, now: datetime,
                  g: StateGroups) -> int | None:
    """Approve a held order: back to the (payable) state it was held from, its held payment made applicable
    again."""
    at = ts(now)
    row = db.execute("SELECT state FROM orders WHERE id = ?", (order_id,)).fetchone()
    ev = db.execute("SELECT id FROM payment_events WHERE order_id = ? AND outcome = 'review' ORDER BY id LIMIT 1",
                    (order_id,)).fetchone()
    before = held_from(db, order_id)
    if row is None or row[0] != "review" or ev is None or before not in g.payable:
        return None
    db.execute("UPDATE orders SET state = ?, updated_at = ? WHERE id = ?", (before, at, order_id))
    db.execute(EVENT_INSERT, event_row(order_id, "review", str(before), approved, at))
    db.execute("UPDATE payment_events SET applied_at = NULL, outcome = NULL, detail = ? WHERE id = ?",
               ("approved after review", ev[0]))
    return int(ev[0])


class SharedState:
    """Claim-once keys, kv, leases and risk verbs of SqliteStore (mixed in)."""

    _tx: Callable[..., Any]
    _one: Callable[..., Any]
    _all: Callable[..., Any]
    _states: StateGroups

    async def claim_once(self, scope: str, key: str, expires_at: datetime, now: datetime) -> bool:
        return bool(await self._tx(_claim_once, scope, key, expires_at, now))

    async def prune_once_keys(self, now: datetime) -> int:
        return int(await self._tx(lambda db: db.execute("DELETE FROM once_keys WHERE expires_at <= ?",
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

    # -- risk ----------------------------------------------------------------
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

    async def reopen_review(self, order_id: int, event: NewOrderEvent, now: datetime) -> int | None:
        result: int | None = await self._tx(_reopen_review, order_id, event, now, self._states)
        return result

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

    async def add_order_note(self, order_id: int, event: NewOrderEvent, now: datetime) -> None:
        await self._tx(add_note, order_id, event, now)


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
