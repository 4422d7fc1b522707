"""SQLite transaction bodies for orders, payments, outbox and refunds.

Each function runs whole inside the connection's thread (one hop, see
DESIGN.md) within `BEGIN IMMEDIATE`, so no other writer, in this process or
another, interleaves between its reads and its conditional writes.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from storage import events
from storage.errors import InsufficientStock, PurchaseLimitReached, UnknownRecord
from storage.events import EventType, NewOrderEvent
from storage.records import (
    DUPLICATE_PAYMENT,
    DUPLICATE_REFUND,
    NewOrder,
    OrderState,
    OutboxRow,
    PaymentApplied,
    PaymentEventIn,
    PaymentOutcome,
    StateGroups,
)

# _claim_uses re-exported: storage/sqlite_tickets.py takes it from here
from storage.sqlite_allocation import _claim_uses as _claim_uses
from storage.sqlite_commission import reverse_rest
from storage.sqltime import ts

_REF_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
#: byte b -> the symbol its low 5 bits pick
_REF_TABLE = bytes(ord(_REF_ALPHABET[b & 31]) for b in range(256))
ALLOCATED = events.codes_allocated()
#: 0: codes from own stock only; 1: on demand (own stock first, then a supplier); 2: a direct recharge (a supplier)
SOURCED = ("CASE WHEN s.target_rule IS NOT NULL THEN 2 WHEN EXISTS (SELECT 1 FROM sku_sourcing g WHERE g.sku_id = s.id"
           " AND g.on_demand = 1 AND g.sources <> '') THEN 1 ELSE 0 END")
RECHARGE = 2
#: the outbox row of a paid order waiting on a supplier, and the detail of its payment event (outcome allocated)
PROCURE = "procure"
PROCURING = "procuring"
#: the uses an order holds from its pool while reserved (a backorder holds none)
HELD = "CASE WHEN backorder = 1 THEN 0 ELSE quantity * units END"
EVENT_INSERT = "INSERT INTO order_events (order_id, from_state, to_state, type, params, at) VALUES (?,?,?,?,?,?)"


def new_ref() -> str:
    """A short unguessable order number customers can type (no 0/O/1/I)."""
    # 32 symbols: the low 5 bits of a random byte pick one uniformly (one urandom call, not eleven choices), mapped
    # by one bytes.translate (~0.3 µs; a join over a generator took ~1.5, once per order)
    return "K" + secrets.token_bytes(11).translate(_REF_TABLE).decode("ascii")


def marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def event_row(order_id: int, frm: str | None, to: str, ev: NewOrderEvent, at: str) -> tuple[object, ...]:
    return (order_id, frm, to, ev.type.value, ev.params_json, at)


def event(db: sqlite3.Connection, order_id: int, frm: str | None, to: str, ev: NewOrderEvent, at: str) -> None:
    db.execute(EVENT_INSERT, event_row(order_id, frm, to, ev, at))


def set_state(db: sqlite3.Connection, order_id: int, frm: str, to: str, ev: NewOrderEvent, at: str) -> None:
    db.execute("UPDATE orders SET state = ?, updated_at = ? WHERE id = ?", (to, at, order_id))
    event(db, order_id, frm, to, ev, at)


def reserve(db: sqlite3.Connection, o: NewOrder, now: datetime, g: StateGroups) -> int:
    at = ts(now)
    sku = db.execute(
        "SELECT s.pool_id, s.units, s.per_user_limit, s.target_rule IS NOT NULL, EXISTS (SELECT 1 FROM sku_sourcing"
        " g WHERE g.sku_id = s.id AND g.on_demand = 1 AND g.sources <> '')"
        " FROM skus s JOIN products p ON p.id = s.product_id WHERE s.id = ? AND s.active = 1 AND p.active = 1",
        (o.sku_id,),
    ).fetchone()
    if sku is None:
        raise UnknownRecord(f"sku {o.sku_id} unknown or inactive")
    pool_id, units, limit, recharge, on_demand = sku
    if limit:
        closed = g.values(g.closed)
        bought = db.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM orders WHERE user_id = ? AND channel = ?"
            f" AND sku_id = ? AND state NOT IN ({marks(closed)})",
            (o.user_id, o.channel, o.sku_id, *closed),
        ).fetchone()[0]
        if bought + o.quantity > limit:
            raise PurchaseLimitReached(f"sku {o.sku_id} per-user limit {limit}")
    need = o.quantity * units
    # a recharge holds nothing (no codes); an on-demand SKU holds own stock when there is, else it is a backorder
    backorder = bool(recharge) or db.execute(
        "UPDATE pools SET available = available - ? WHERE id = ? AND available >= ?",
        (need, pool_id, need),
    ).rowcount != 1
    if backorder and not (recharge or on_demand):
        raise InsufficientStock(f"pool {pool_id} cannot hold {need} uses")
    cur = db.execute(
        "INSERT INTO orders (ref, channel, user_id, chat_id, sku_id, pool_id, quantity, units, amount,"
        " currency, state, language, created_at, expires_at, updated_at, target, backorder)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (new_ref(), o.channel, o.user_id, o.chat_id, o.sku_id, pool_id, o.quantity, units, o.amount,
         o.currency, OrderState.RESERVED.value, o.language, at, ts(o.expires_at), at, o.target, int(backorder)),
    )
    order_id = int(cur.lastrowid or 0)
    event(db, order_id, None, OrderState.CREATED.value, events.checkout(), at)
    event(db, order_id, OrderState.CREATED.value, OrderState.RESERVED.value, events.stock_held(), at)
    return order_id


def transition(db: sqlite3.Connection, order_id: int, allowed: Sequence[str], to: str, ev: NewOrderEvent,
               now: datetime, g: StateGroups) -> bool:
    row = db.execute(f"SELECT state, pool_id, {HELD} FROM orders WHERE id = ?", (order_id,)).fetchone()
    if row is None or row[0] not in allowed:
        return False
    state, pool_id, uses = row
    if state in g.holding and to not in g.holding and to != OrderState.REVIEW:
        # leaving a reservation without paying hands the held uses back
        db.execute("UPDATE pools SET available = available + ? WHERE id = ?", (uses, pool_id))
    set_state(db, order_id, state, to, ev, ts(now))
    return True


def expire(db: sqlite3.Connection, now: datetime, limit: int, g: StateGroups) -> list[int]:
    at = ts(now)
    holding = g.values(g.holding)
    rows = db.execute(
        f"SELECT id, state, pool_id, {HELD} FROM orders"
        f" WHERE state IN ({marks(holding)}) AND expires_at <= ? ORDER BY expires_at LIMIT ?",
        (*holding, at, limit),
    ).fetchall()
    expired = events.reservation_expired()
    for order_id, state, pool_id, uses in rows:
        db.execute("UPDATE pools SET available = available + ? WHERE id = ?", (uses, pool_id))
        set_state(db, order_id, state, OrderState.EXPIRED.value, expired, at)
    return [r[0] for r in rows]


def record_payment(db: sqlite3.Connection, e: PaymentEventIn, now: datetime) -> tuple[int, bool]:
    row = db.execute(
        "INSERT INTO payment_events (provider, provider_txn_id, order_ref, amount, currency, fee, payer,"
        " received_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (provider, provider_txn_id) DO NOTHING RETURNING id",
        (e.provider, e.provider_txn_id, e.order_ref, e.amount, e.currency, e.fee, e.payer,
         ts(e.received_at or now)),
    ).fetchone()
    if row is not None:
        return int(row[0]), True
    row = db.execute(
        "SELECT id FROM payment_events WHERE provider = ? AND provider_txn_id = ?",
        (e.provider, e.provider_txn_id),
    ).fetchone()
    return int(row[0]), False


def receive_payment(db: sqlite3.Connection, e: PaymentEventIn, now: datetime, g: StateGroups) -> PaymentApplied:
    """Record and apply in one transaction; a repeated notification finds the first outcome."""
    event_id, fresh = record_payment(db, e, now)
    if fresh:
        return _apply(db, event_id, e.order_ref, e.amount, e.currency, e.fee, e.provider, e.provider_txn_id, ts(now),
                      g)
    return apply_payment(db, event_id, now, g)


def settle_duplicate_payment(db: sqlite3.Connection, event_id: int, now: datetime) -> bool:
    """A second payment of a paid order: outcome review → duplicate once, with its money in and back out."""
    row = db.execute(
        "UPDATE payment_events SET outcome = 'duplicate' WHERE id = ? AND outcome = 'review' AND order_id IS NOT NULL"
        " RETURNING order_id, amount, currency", (event_id,),
    ).fetchone()
    if row is None:
        return False
    oid, amount, currency = row
    sku_id, channel = db.execute("SELECT sku_id, channel FROM orders WHERE id = ?", (oid,)).fetchone()
    at = ts(now)
    _ledger_many(db, [(oid, sku_id, channel, DUPLICATE_PAYMENT, currency, amount, at),
                      (oid, sku_id, channel, DUPLICATE_REFUND, currency, -amount, at)])
    return True


def _finish_event(db: sqlite3.Connection, event_id: int, outcome: PaymentOutcome, order_id: int | None,
                  detail: str, at: str) -> PaymentApplied:
    db.execute(
        "UPDATE payment_events SET applied_at = ?, outcome = ?, order_id = ?, detail = ? WHERE id = ?",
        (at, outcome.value, order_id, detail, event_id),
    )
    return PaymentApplied(event_id, outcome, order_id, detail)


def apply_payment(db: sqlite3.Connection, event_id: int, now: datetime, g: StateGroups) -> PaymentApplied:
    ev = db.execute(
        "SELECT order_ref, amount, currency, fee, applied_at, outcome, order_id, detail, provider,"
        " provider_txn_id FROM payment_events WHERE id = ?", (event_id,),
    ).fetchone()
    if ev is None:
        raise UnknownRecord(f"payment event {event_id}")
    ref, amount, currency, fee, applied_at, outcome, done_order, detail, provider, txn = ev
    if applied_at is not None:
        return PaymentApplied(event_id, PaymentOutcome.ALREADY_APPLIED, done_order, outcome or detail)
    return _apply(db, event_id, ref, amount, currency, fee, provider, txn, ts(now), g)


def _apply(db: sqlite3.Connection, event_id: int, ref: str, amount: int, currency: str, fee: int, provider: str,
           txn: str, at: str, g: StateGroups) -> PaymentApplied:
    """Mark paid, allocate, write items, ledger, events and the outbox row: the one transaction of invariant 2."""
    order = db.execute(
        "SELECT o.id, o.state, o.pool_id, o.quantity * o.units, o.amount, o.currency, o.sku_id, o.channel,"
        f" o.chat_id, o.backorder, {SOURCED} FROM orders o JOIN skus s ON s.id = o.sku_id WHERE o.ref = ?", (ref,),
    ).fetchone()
    if order is None:
        return _finish_event(db, event_id, PaymentOutcome.UNKNOWN_ORDER, None, "no such order", at)
    oid, state, pool_id, need, o_amount, o_currency, sku_id, channel, chat_id, backorder, sourced = order
    if state not in g.payable:
        return _finish_event(db, event_id, PaymentOutcome.REVIEW, oid, f"payment for order in {state}", at)
    if (amount, currency) != (o_amount, o_currency):
        # a held reservation keeps its stock while the merchant reviews; refund() hands it back
        set_state(db, oid, state, OrderState.REVIEW.value, events.payment_mismatch(), at)
        return _finish_event(db, event_id, PaymentOutcome.REVIEW, oid, "amount or currency mismatch", at)
    taken: list[tuple[int, int, int, str]] = []
    # a late payment's reservation was handed back and a backorder held nothing: take the uses now, if any
    held = state != OrderState.EXPIRED and not backorder
    if sourced != RECHARGE and (held or db.execute(
        "UPDATE pools SET available = available - ? WHERE id = ? AND available >= ?", (need, pool_id, need)
    ).rowcount == 1):
        held = True
        taken = _claim_uses(db, pool_id, need, at)
    ledger = [(oid, sku_id, channel, "sale", currency, amount, at)]
    if fee:
        ledger.append((oid, sku_id, channel, "fee", currency, -fee, at))
    paid = events.payment_received(provider=provider, txn=txn)
    if len(taken) < need and sourced:
        return _await_supplier(db, event_id, oid, state, pool_id, need if held else 0, taken, ledger, paid, channel,
                               chat_id, at)
    if len(taken) < need:
        set_state(db, oid, state, OrderState.PAID.value, paid, at)
        _ledger_many(db, ledger)
        payload = json.dumps({"provider": provider, "txn": txn, "amount": amount})
        return _fail_unstocked(db, event_id, oid, taken, channel, chat_id, payload, at)
    db.executemany(
        "INSERT INTO order_items (order_id, item_no, code_id, use_no, unit_cost, cost_currency)"
        " VALUES (?,?,?,?,?,?)",
        [(oid, i + 1, code_id, use_no, cost, ccy) for i, (code_id, use_no, cost, ccy) in enumerate(taken)],
    )
    costs: dict[str, int] = {}
    for _, _, cost, ccy in taken:
        costs[ccy] = costs.get(ccy, 0) + cost
    ledger += [(oid, sku_id, channel, "cost", ccy, -total, at) for ccy, total in costs.items() if total]
    _ledger_many(db, ledger)
    db.execute("UPDATE orders SET state = ?, updated_at = ? WHERE id = ?", (OrderState.DELIVERING.value, at, oid))
    db.executemany(EVENT_INSERT, [event_row(oid, state, OrderState.PAID.value, paid, at),
                                  event_row(oid, OrderState.PAID.value, OrderState.DELIVERING.value, ALLOCATED, at)])
    _outbox(db, oid, "deliver", channel, chat_id, "", at)
    return _finish_event(db, event_id, PaymentOutcome.ALLOCATED, oid, "", at)


def _await_supplier(db: sqlite3.Connection, event_id: int, oid: int, state: str, pool_id: int, held: int,
                    taken: list[tuple[int, int, int, str]], ledger: list[tuple[int, int, str, str, str, int, str]],
                    paid: NewOrderEvent, channel: str, chat_id: str, at: str) -> PaymentApplied:
    """Paid, and own stock cannot serve an on-demand or recharge order: hand back what was taken or held, move it
    to delivering as a backorder and queue its procurement (the `procure` outbox row), in this transaction."""
    for code_id, _, _, _ in taken:
        db.execute("UPDATE codes SET uses_left = uses_left + 1 WHERE id = ?", (code_id,))
    if held:
        db.execute("UPDATE pools SET available = available + ? WHERE id = ?", (held, pool_id))
    _ledger_many(db, ledger)
    db.execute("UPDATE orders SET state = ?, backorder = 1, updated_at = ? WHERE id = ?",
               (OrderState.DELIVERING.value, at, oid))
    db.executemany(EVENT_INSERT, [event_row(oid, state, OrderState.PAID.value, paid, at),
                                  event_row(oid, OrderState.PAID.value, OrderState.DELIVERING.value,
                                            events.supplier_ordered(), at)])
    _outbox(db, oid, PROCURE, channel, chat_id, "", at)
    return _finish_event(db, event_id, PaymentOutcome.ALLOCATED, oid, PROCURING, at)


def _fail_unstocked(db: sqlite3.Connection, event_id: int, oid: int, taken: list[tuple[int, int, int, str]],
                    channel: str, chat_id: str, payload: str, at: str) -> PaymentApplied:
    """Paid but the pool cannot serve it: put back what was taken, fail, queue the refund."""
    for code_id, _, _, _ in taken:
        db.execute("UPDATE codes SET uses_left = uses_left + 1 WHERE id = ?", (code_id,))
    set_state(db, oid, OrderState.PAID.value, OrderState.FAILED.value, events.out_of_stock(), at)
    _outbox(db, oid, "refund", channel, chat_id, payload, at)
    return _finish_event(db, event_id, PaymentOutcome.FAILED, oid, "out of stock", at)


def _ledger_many(db: sqlite3.Connection, rows: list[tuple[int, int, str, str, str, int, str]]) -> None:
    db.executemany(
        "INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at) VALUES (?,?,?,?,?,?,?)", rows
    )


def _ledger(db: sqlite3.Connection, oid: int | None, sku_id: int, channel: str, kind: str, currency: str,
            amount: int, at: str) -> None:
    db.execute(
        "INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at) VALUES (?,?,?,?,?,?,?)",
        (oid, sku_id, channel, kind, currency, amount, at),
    )


def _outbox(db: sqlite3.Connection, oid: int, kind: str, channel: str, chat_id: str, payload: str,
            at: str) -> int:
    cur = db.execute(
        "INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)"
        " VALUES (?,?,?,?,?,?,?)",
        (oid, kind, channel, chat_id, payload, at, at),
    )
    return int(cur.lastrowid or 0)


def enqueue(db: sqlite3.Connection, oid: int, kind: str, payload: str, now: datetime) -> int:
    """Queue a row; a second deliver/refund row for the same order is not created (its id comes back)."""
    row = db.execute("SELECT channel, chat_id FROM orders WHERE id = ?", (oid,)).fetchone()
    if row is None:
        raise UnknownRecord(f"order {oid}")
    at = ts(now)
    new = db.execute(
        "INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)"
        " VALUES (?,?,?,?,?,?,?) ON CONFLICT (order_id, kind) WHERE kind IN ('deliver', 'refund') DO NOTHING"
        " RETURNING id", (oid, kind, row[0], row[1], payload, at, at)).fetchone()
    if new is not None:
        return int(new[0])
    return int(db.execute("SELECT id FROM outbox WHERE order_id = ? AND kind = ?", (oid, kind)).fetchone()[0])


def claim_outbox(db: sqlite3.Connection, now: datetime, lease_until: datetime, limit: int) -> list[OutboxRow]:
    at = ts(now)
    rows = db.execute(
        "SELECT id, order_id, kind, channel, chat_id, attempts, payload, locked_until FROM outbox"
        " WHERE status = 'pending' AND next_attempt_at <= ? AND (locked_until IS NULL OR locked_until <= ?)"
        " ORDER BY id LIMIT ?",
        (at, at, limit),
    ).fetchall()
    out = []
    for oid, order_id, kind, channel, chat_id, attempts, payload, was_locked in rows:
        db.execute("UPDATE outbox SET locked_until = ?, attempts = attempts + 1 WHERE id = ?",
                   (ts(lease_until), oid))
        if kind in ("deliver", "resend"):
            # conservative: once a send may have happened the codes count as shown
            db.execute("UPDATE order_items SET revealed_at = ? WHERE order_id = ? AND revealed_at IS NULL",
                       (at, order_id))
        out.append(OutboxRow(oid, order_id, kind, channel, chat_id, attempts + 1, payload, was_locked is not None))
    return out


def complete_outbox(db: sqlite3.Connection, outbox_id: int, now: datetime) -> None:
    at = ts(now)
    row = db.execute("SELECT order_id, kind, status FROM outbox WHERE id = ?", (outbox_id,)).fetchone()
    if row is None or row[2] == "done":
        return
    db.execute("UPDATE outbox SET status = 'done', done_at = ?, locked_until = NULL WHERE id = ?",
               (at, outbox_id))
    if row[1] == "deliver":
        state = db.execute("SELECT state FROM orders WHERE id = ?", (row[0],)).fetchone()[0]
        if state == OrderState.DELIVERING:
            set_state(db, row[0], state, OrderState.DELIVERED.value, events.delivered(outbox_id=outbox_id), at)


def held_from(db: sqlite3.Connection, oid: int) -> str | None:
    """The state a review order was held from: the source of its latest move (not note) into review."""
    row = db.execute("SELECT from_state FROM order_events WHERE order_id = ? AND to_state = 'review'"
                     " AND from_state <> to_state ORDER BY id DESC LIMIT 1", (oid,)).fetchone()
    return str(row[0]) if row else None


def refund(db: sqlite3.Connection, oid: int, ev: NewOrderEvent, now: datetime, g: StateGroups) -> bool:
    at = ts(now)
    row = db.execute("SELECT state, sku_id, channel, amount, currency, pool_id FROM orders WHERE id = ?",
                     (oid,)).fetchone()
    if row is None or row[0] not in g.refundable:
        return False
    state, sku_id, channel, amount, currency, pool_id = row
    paid = db.execute("SELECT COUNT(*) FROM ledger WHERE order_id = ? AND kind = 'sale'", (oid,)).fetchone()[0]
    # what partial refunds gave back already is not refunded twice
    parts = db.execute("SELECT COALESCE(SUM(amount), 0) FROM refund_parts WHERE order_id = ?", (oid,)).fetchone()[0]
    if paid and amount - parts:
        _ledger(db, oid, sku_id, channel, "refund", currency, -(amount - parts), at)
    # what the partial reversals left of the distributor's commission, in this transaction (the pass would find it
    # too: one final reversal per order, whoever writes it first)
    reverse_rest(db, oid, at)
    unshown = db.execute(
        "SELECT code_id, unit_cost, cost_currency FROM order_items"
        " WHERE order_id = ? AND revealed_at IS NULL AND released = 0", (oid,),
    ).fetchall()
    for code_id, cost, cur in unshown:
        db.execute("UPDATE codes SET uses_left = uses_left + 1 WHERE id = ?", (code_id,))
        if cost:
            _ledger(db, oid, sku_id, channel, "cost_reversal", cur, cost, at)
    if unshown:
        db.execute("UPDATE order_items SET released = 1 WHERE order_id = ? AND revealed_at IS NULL", (oid,))
        db.execute("UPDATE pools SET available = available + ? WHERE id = ?", (len(unshown), pool_id))
        db.execute("UPDATE outbox SET status = 'cancelled' WHERE order_id = ? AND status = 'pending'"
                   " AND kind IN ('deliver', 'resend')", (oid,))
    if state == OrderState.REVIEW:
        held = db.execute("SELECT COUNT(*) FROM order_items WHERE order_id = ?", (oid,)).fetchone()[0]
        if held_from(db, oid) in g.holding and not held:
            db.execute(f"UPDATE pools SET available = available + (SELECT {HELD} FROM orders"
                       " WHERE id = ?) WHERE id = ?", (oid, pool_id))
    set_state(db, oid, state, OrderState.REFUNDED.value, ev, at)
    return True


def add_note(db: sqlite3.Connection, oid: int, ev: NewOrderEvent, now: datetime) -> None:
    """A note (storage/events.py NOTE_TYPES) in the order's current state."""
    if not ev.is_note:
        raise ValueError(f"{ev.type} changes the order's state: use transition")
    row = db.execute("SELECT state FROM orders WHERE id = ?", (oid,)).fetchone()
    if row is None:
        raise UnknownRecord(f"order {oid}")
    event(db, oid, row[0], row[0], ev, ts(now))


def record_dispute(db: sqlite3.Connection, oid: int, ev: NewOrderEvent, now: datetime) -> bool:
    """A dispute (chargeback) as a note in the order's current state; once per order."""
    if db.execute("SELECT 1 FROM order_events WHERE order_id = ? AND type = ? LIMIT 1",
                  (oid, EventType.DISPUTE.value)).fetchone() is not None:
        return False  # an order with events exists: nothing unknown here
    add_note(db, oid, ev, now)
    return True


# -- orders waiting on a supplier (backorders in delivering) ------------------------------------------------------
def _waiting(db: sqlite3.Connection, oid: int) -> tuple[Any, ...] | None:
    """The order if it is a paid backorder still waiting on its supplier (delivering, no items, no delivery row)."""
    row = db.execute(
        "SELECT o.pool_id, o.quantity * o.units, o.sku_id, o.channel, o.chat_id, s.target_rule IS NOT NULL"
        " FROM orders o JOIN skus s ON s.id = o.sku_id WHERE o.id = ? AND o.state = ? AND o.backorder = 1"
        " AND NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id)"
        " AND NOT EXISTS (SELECT 1 FROM outbox x WHERE x.order_id = o.id AND x.kind = 'deliver')",
        (oid, OrderState.DELIVERING.value)).fetchone()
    return tuple(row) if row is not None else None


def fill_backorder(db: sqlite3.Connection, oid: int, batch_id: int | None, cost: int | None, cost_currency: str,
                   our_ref: str, at: str) -> bool:
    """A supplier delivered for this order (inside the transaction that put its codes, batch `batch_id`, into the
    pool): allocate them to it with items, the cost ledger line and the `deliver` outbox row; a recharge has no
    codes, its cost is the procurement's. Too few new codes (duplicates the vault refused, fewer than ordered) fail
    it with a refund; what came stays in the pool. False when the order is not waiting (served, refunded)."""
    waiting = _waiting(db, oid)
    if waiting is None:
        return False
    pool_id, need, sku_id, channel, chat_id, recharge = waiting
    ledger: list[tuple[int, int, str, str, str, int, str]] = []
    if recharge:
        if cost:
            ledger.append((oid, sku_id, channel, "cost", cost_currency, -cost, at))
    else:
        if batch_id is None or db.execute("SELECT COUNT(*) FROM codes WHERE batch_id = ? AND uses_left > 0",
                                          (batch_id,)).fetchone()[0] < need:
            return fail_backorder(db, oid, "supplier delivered too few codes", at, allow_succeeded=True)
        db.execute("UPDATE pools SET available = available - ? WHERE id = ?", (need, pool_id))
        got = db.execute("UPDATE codes SET uses_left = uses_left - 1 WHERE id IN (SELECT id FROM codes"
                         " WHERE batch_id = ? AND uses_left > 0 ORDER BY id LIMIT ?)"
                         " RETURNING id, uses_total - uses_left, unit_cost, cost_currency", (batch_id, need)).fetchall()
        taken = sorted((int(r[0]), int(r[1]), int(r[2]), str(r[3])) for r in got)
        db.executemany(
            "INSERT INTO order_items (order_id, item_no, code_id, use_no, unit_cost, cost_currency)"
            " VALUES (?,?,?,?,?,?)",
            [(oid, i + 1, code_id, use_no, c, ccy) for i, (code_id, use_no, c, ccy) in enumerate(taken)])
        costs: dict[str, int] = {}
        for _, _, c, ccy in taken:
            costs[ccy] = costs.get(ccy, 0) + c
        ledger += [(oid, sku_id, channel, "cost", ccy, -total, at) for ccy, total in costs.items() if total]
    _ledger_many(db, ledger)
    event(db, oid, OrderState.DELIVERING.value, OrderState.DELIVERING.value, events.supplier_delivered(ref=our_ref),
          at)
    _outbox(db, oid, "deliver", channel, chat_id, "", at)
    return True


def fail_backorder(db: sqlite3.Connection, oid: int, cause: str, at: str, allow_succeeded: bool = False) -> bool:
    """No source can serve this waiting order: failed, its refund queued through its payment provider. Refused
    (False) while any supplier order of it is open or unknown: it may still be bought or credited."""
    waiting = _waiting(db, oid)
    live = ("'planned', 'sent', 'unknown'" if allow_succeeded else "'planned', 'sent', 'unknown', 'succeeded'")
    if waiting is None or db.execute(f"SELECT 1 FROM procurements WHERE order_id = ? AND state IN ({live})",
                                     (oid,)).fetchone() is not None:
        return False
    pay = db.execute("SELECT provider, provider_txn_id, amount FROM payment_events WHERE order_id = ?"
                     " AND outcome = 'allocated' ORDER BY id LIMIT 1", (oid,)).fetchone()
    if pay is None:
        return False
    _, _, _, channel, chat_id, recharge = waiting
    set_state(db, oid, OrderState.DELIVERING.value, OrderState.FAILED.value, events.supplier_failed(cause=cause), at)
    notice = "supply.recharge_refunded" if recharge else "supply.procure_refunded"
    payload = json.dumps({"provider": pay[0], "txn": pay[1], "amount": int(pay[2]), "cause": cause[:100],
                          "notice": notice})
    db.execute("INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)"
               " VALUES (?,?,?,?,?,?,?) ON CONFLICT (order_id, kind) WHERE kind IN ('deliver', 'refund') DO NOTHING",
               (oid, "refund", channel, chat_id, payload, at, at))
    return True


def requeue_procure(db: sqlite3.Connection, oid: int, at: str) -> None:
    """A supplier order of this waiting order definitively failed: queue it again (fail over, or fail it)."""
    waiting = _waiting(db, oid)
    if waiting is not None:
        _outbox(db, oid, PROCURE, waiting[3], waiting[4], "", at)
