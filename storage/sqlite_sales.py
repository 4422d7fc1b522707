"""SQLite orders, payments, delivery outbox, refunds and the ledger (a mixin of SqliteStore); the transaction
bodies are in storage/sqlite_orders.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from storage import sqlite_orders as tx
from storage.events import EventType, NewOrderEvent, OrderEvent
from storage.events import read as read_event
from storage.records import (
    EncryptedCode,
    LedgerLine,
    NewOrder,
    Order,
    OrderItem,
    OrderState,
    OutboxRow,
    PaymentApplied,
    PaymentEventIn,
    StateGroups,
)
from storage.sqlite_base import SqliteBase
from storage.sqlite_orders import EVENT_INSERT, add_note, event_row, held_from
from storage.sqltime import from_ts, ts

_ORDER_COLS = ("id, ref, channel, user_id, chat_id, sku_id, pool_id, quantity, units, amount, currency,"
               " state, created_at, expires_at, language, target")
#: the order columns qualified (o.), for reads that join another table
_ORDER_COLS_O = ", ".join("o." + c.strip() for c in _ORDER_COLS.split(","))
_N_COLS = _ORDER_COLS.count(",") + 1


def _order(r: Sequence[Any]) -> Order:
    return Order(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], OrderState(r[11]),
                 from_ts(r[12]), from_ts(r[13]), r[14], r[15])


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


class Sales(SqliteBase):
    """Order, payment, outbox, refund and ledger verbs of SqliteStore (mixed in)."""

    # -- orders ------------------------------------------------------------
    async def reserve(self, order: NewOrder, now: datetime) -> Order:
        order_id = await self._tx(tx.reserve, order, now, self._states)
        found = await self.order_by_id(order_id)
        assert found is not None
        return found

    async def transition(self, order_id: int, allowed_from: Sequence[OrderState], to: OrderState,
                         event: NewOrderEvent, now: datetime) -> bool:
        if event.is_note:
            raise ValueError(f"{event.type} is a note: use add_order_note")
        return await self._tx(tx.transition, order_id, [s.value for s in allowed_from], to.value, event, now,
                              self._states)

    async def order_by_id(self, order_id: int) -> Order | None:
        r = await self._one(f"SELECT {_ORDER_COLS} FROM orders WHERE id = ?", (order_id,))
        return _order(r) if r else None

    async def order_by_ref(self, ref: str) -> Order | None:
        r = await self._one(f"SELECT {_ORDER_COLS} FROM orders WHERE ref = ?", (ref,))
        return _order(r) if r else None

    async def order_by_ref_noted(self, ref: str, note: EventType) -> tuple[Order, OrderEvent | None] | None:
        r = await self._one(
            f"SELECT {_ORDER_COLS_O}, e.order_id, e.from_state, e.to_state, e.type, e.params, e.at FROM orders o"
            " LEFT JOIN order_events e ON e.id = (SELECT id FROM order_events WHERE order_id = o.id AND type = ?"
            " ORDER BY id DESC LIMIT 1) WHERE o.ref = ?", (note.value, ref))
        if r is None:
            return None
        n = _N_COLS
        event = read_event(r[n], r[n + 1], r[n + 2], r[n + 3], r[n + 4], from_ts(r[n + 5])) if r[n] else None
        return _order(r), event

    async def orders_for_user(self, channel: str, user_id: str, limit: int, offset: int) -> list[Order]:
        rows = await self._all(f"SELECT {_ORDER_COLS} FROM orders WHERE channel = ? AND user_id = ?"
                               " ORDER BY id DESC LIMIT ? OFFSET ?", (channel, user_id, limit, offset))
        return [_order(r) for r in rows]

    async def orders_in_state(self, state: OrderState, limit: int) -> list[Order]:
        rows = await self._all(f"SELECT {_ORDER_COLS} FROM orders WHERE state = ? ORDER BY id LIMIT ?",
                               (state.value, limit))
        return [_order(r) for r in rows]

    async def order_events(self, order_id: int) -> list[OrderEvent]:
        rows = await self._all("SELECT order_id, from_state, to_state, type, params, at FROM order_events"
                               " WHERE order_id = ? ORDER BY id", (order_id,))
        return [read_event(r[0], r[1], r[2], r[3], r[4], from_ts(r[5])) for r in rows]

    async def last_order_event(self, order_id: int, event_type: EventType) -> OrderEvent | None:
        r = await self._one("SELECT order_id, from_state, to_state, type, params, at FROM order_events"
                            " WHERE order_id = ? AND type = ? ORDER BY id DESC LIMIT 1", (order_id, event_type.value))
        return read_event(r[0], r[1], r[2], r[3], r[4], from_ts(r[5])) if r else None

    async def order_items(self, order_id: int) -> list[OrderItem]:
        rows = await self._all(
            "SELECT i.item_no, c.id, c.digest, c.key_id, c.nonce, c.ciphertext, i.use_no FROM order_items i"
            " JOIN codes c ON c.id = i.code_id WHERE i.order_id = ? AND i.released = 0 ORDER BY i.item_no",
            (order_id,))
        return [OrderItem(r[0], EncryptedCode(r[1], bytes(r[2]), r[3], bytes(r[4]), bytes(r[5])), r[6])
                for r in rows]

    async def expire_reservations(self, now: datetime, limit: int) -> list[int]:
        return await self._tx(tx.expire, now, limit, self._states)

    # -- payments ----------------------------------------------------------
    async def record_payment(self, event: PaymentEventIn, now: datetime) -> tuple[int, bool]:
        return await self._tx(tx.record_payment, event, now)

    async def receive_payment(self, event: PaymentEventIn, now: datetime) -> PaymentApplied:
        return await self._tx(tx.receive_payment, event, now, self._states)

    async def apply_payment(self, event_id: int, now: datetime) -> PaymentApplied:
        return await self._tx(tx.apply_payment, event_id, now, self._states)

    async def settle_duplicate_payment(self, event_id: int, now: datetime) -> bool:
        result: bool = await self._tx(tx.settle_duplicate_payment, event_id, now)
        return result

    async def unapplied_payments(self, limit: int) -> list[int]:
        return [r[0] for r in await self._all(
            "SELECT id FROM payment_events WHERE applied_at IS NULL ORDER BY id LIMIT ?", (limit,))]

    async def order_payment(self, order_id: int) -> tuple[str, str, int] | None:
        r = await self._one("SELECT provider, provider_txn_id, amount FROM payment_events WHERE order_id = ?"
                            " AND outcome IN ('allocated', 'failed', 'review') ORDER BY outcome = 'review', id LIMIT 1",
                            (order_id,))
        return (r[0], r[1], int(r[2])) if r else None

    # -- delivery outbox ---------------------------------------------------
    async def claim_outbox(self, now: datetime, lease_until: datetime, limit: int) -> list[OutboxRow]:
        return await self._tx(tx.claim_outbox, now, lease_until, limit)

    async def complete_outbox(self, outbox_id: int, now: datetime) -> None:
        await self._tx(tx.complete_outbox, outbox_id, now)

    async def retry_outbox(self, outbox_id: int, next_at: datetime, error: str) -> None:
        await self._tx(lambda db: db.execute(
            "UPDATE outbox SET locked_until = NULL, next_attempt_at = ?, last_error = ? WHERE id = ?",
            (ts(next_at), error[:200], outbox_id)))

    async def renew_outbox(self, outbox_ids: Sequence[int], lease_until: datetime) -> int:
        if not outbox_ids:
            return 0
        marks = ",".join("?" * len(outbox_ids))
        return int(await self._tx(lambda db: db.execute(
            f"UPDATE outbox SET locked_until = ? WHERE id IN ({marks}) AND status = 'pending'"
            " AND locked_until IS NOT NULL", (ts(lease_until), *outbox_ids)).rowcount))

    async def fail_outbox(self, outbox_id: int, now: datetime, error: str) -> None:
        await self._tx(lambda db: db.execute(
            "UPDATE outbox SET status = 'failed', locked_until = NULL, done_at = ?, last_error = ? WHERE id = ?",
            (ts(now), error[:200], outbox_id)))

    async def enqueue_outbox(self, order_id: int, kind: str, payload: str, now: datetime) -> int:
        return await self._tx(tx.enqueue, order_id, kind, payload, now)

    async def pending_outbox(self) -> int:
        return int((await self._one("SELECT COUNT(*) FROM outbox WHERE status = 'pending'"))[0])

    async def refund_queued(self, order_id: int) -> bool:
        return await self._one("SELECT 1 FROM outbox WHERE order_id = ? AND kind = 'refund'", (order_id,)) is not None

    async def order_state_counts(self) -> list[tuple[str, str, int]]:
        rows = await self._scan("SELECT channel, state, COUNT(*) FROM orders GROUP BY channel, state", ())
        return [(str(c), str(s), int(n)) for c, s, n in rows]

    # -- refunds and ledger ------------------------------------------------
    async def refund(self, order_id: int, event: NewOrderEvent, now: datetime) -> bool:
        return await self._tx(tx.refund, order_id, event, now, self._states)

    async def ledger(self, since: datetime, until: datetime) -> list[LedgerLine]:
        rows = await self._scan(
            "SELECT sku_id, channel, kind, currency, SUM(amount), COUNT(DISTINCT order_id) FROM ledger"
            " WHERE at >= ? AND at < ? GROUP BY sku_id, channel, kind, currency ORDER BY sku_id, channel, kind",
            (ts(since), ts(until)))
        return [LedgerLine(*r) for r in rows]

    async def reopen_review(self, order_id: int, event: NewOrderEvent, now: datetime) -> int | None:
        result: int | None = await self._tx(_reopen_review, order_id, event, now, self._states)
        return result


    async def add_order_note(self, order_id: int, event: NewOrderEvent, now: datetime) -> None:
        await self._tx(add_note, order_id, event, now)

