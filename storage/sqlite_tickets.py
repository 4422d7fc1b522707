"""SQLite after-sales tickets (a customer asks for a person, a refund, or reports a bad code): a mixin of
SqliteStore, mirrored by storage/postgres_tickets.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from storage.errors import InsufficientStock
from storage.records import TICKET_KINDS, TICKET_TEXT_MAX, CodeReplaced, NewTicket, StateGroups, Ticket
from storage.sqlite_orders import _claim_uses, _outbox
from storage.sqltime import from_ts, ts

_COLS = ("id, channel, user_id, chat_id, kind, order_id, code_id, state, language, last_message, created_at,"
         " updated_at")


def _ticket(r: Sequence[Any]) -> Ticket:
    return Ticket(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], from_ts(r[10]), from_ts(r[11]))


def _open(db: sqlite3.Connection, t: NewTicket, now: datetime) -> Ticket:
    at = ts(now)
    # a live ticket of the same customer, kind, order and code is updated (and reopened), not duplicated
    row = db.execute(
        "INSERT INTO tickets (channel, user_id, chat_id, kind, order_id, code_id, state, language, last_message,"
        " created_at, updated_at) VALUES (?,?,?,?,?,?,'open',?,?,?,?)"
        " ON CONFLICT (channel, user_id, kind, COALESCE(order_id, 0), COALESCE(code_id, 0)) WHERE state <> 'closed'"
        " DO UPDATE SET state = 'open', chat_id = excluded.chat_id, language = excluded.language,"
        " last_message = excluded.last_message, updated_at = excluded.updated_at"
        f" RETURNING {_COLS}",
        (t.channel, t.user_id, t.chat_id, t.kind, t.order_id, t.code_id, t.language, t.text[:TICKET_TEXT_MAX],
         at, at)).fetchone()
    return _ticket(row)


def _answer(db: sqlite3.Connection, ticket_id: int, text: str, now: datetime) -> Ticket | None:
    row = db.execute(
        "UPDATE tickets SET state = 'answered', last_message = ?, updated_at = ? WHERE id = ? AND state <> 'closed'"
        f" RETURNING {_COLS}", (text[:TICKET_TEXT_MAX], ts(now), ticket_id)).fetchone()
    return _ticket(row) if row else None


def _replace(db: sqlite3.Connection, order_id: int, code_id: int, now: datetime,
             g: StateGroups) -> CodeReplaced | None:
    """One transaction (the caller's savepoint): quarantine the code, release its item without returning the
    use to stock, claim a new use from the same pool, book its cost and queue a resend."""
    at = ts(now)
    o = db.execute("SELECT state, pool_id, sku_id, channel, chat_id FROM orders WHERE id = ?", (order_id,)).fetchone()
    if o is None or o[0] not in g.with_codes:
        return None
    state, pool_id, sku_id, channel, chat_id = o
    item = db.execute("SELECT item_no FROM order_items WHERE order_id = ? AND code_id = ? AND released = 0"
                      " ORDER BY item_no LIMIT 1", (order_id, code_id)).fetchone()
    if item is None:
        return None  # already replaced (or never this order's code): nothing changes
    left = db.execute("UPDATE codes SET status = 'quarantined' WHERE id = ? AND status <> 'quarantined'"
                      " RETURNING uses_left", (code_id,)).fetchone()
    if left is not None and left[0]:  # the bad code's unsold uses leave the stock too
        db.execute("UPDATE pools SET available = MAX(available - ?, 0) WHERE id = ?", (left[0], pool_id))
    if db.execute("UPDATE pools SET available = available - 1 WHERE id = ? AND available >= 1",
                  (pool_id,)).rowcount != 1:
        raise InsufficientStock(f"pool {pool_id}")  # the savepoint rolls the quarantine back too
    taken = _claim_uses(db, pool_id, 1, at)
    if not taken:
        raise InsufficientStock(f"pool {pool_id}")
    new_code, use_no, cost, currency = taken[0]
    db.execute("UPDATE order_items SET released = 1 WHERE order_id = ? AND item_no = ?", (order_id, item[0]))
    new_no = int(db.execute("SELECT MAX(item_no) + 1 FROM order_items WHERE order_id = ?", (order_id,)).fetchone()[0])
    db.execute("INSERT INTO order_items (order_id, item_no, code_id, use_no, unit_cost, cost_currency)"
               " VALUES (?,?,?,?,?,?)", (order_id, new_no, new_code, use_no, cost, currency))
    if cost:
        db.execute("INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at) VALUES (?,?,?,?,?,?,?)",
                   (order_id, sku_id, channel, "cost", currency, -cost, at))
    outbox_id = _outbox(db, order_id, "resend", channel, chat_id, "", at)
    return CodeReplaced(order_id, int(item[0]), new_no, code_id, int(new_code), outbox_id)


def _close(db: sqlite3.Connection, ticket_id: int, now: datetime) -> bool:
    cur = db.execute("UPDATE tickets SET state = 'closed', updated_at = ? WHERE id = ? AND state <> 'closed'",
                     (ts(now), ticket_id))
    return cur.rowcount == 1


class Tickets:
    """Ticket verbs of SqliteStore (mixed in)."""

    _tx: Callable[..., Any]
    _one: Callable[..., Any]
    _all: Callable[..., Any]
    _states: StateGroups

    async def open_ticket(self, ticket: NewTicket, now: datetime) -> Ticket:
        if ticket.kind not in TICKET_KINDS:
            raise ValueError(f"unknown ticket kind {ticket.kind!r}")
        result: Ticket = await self._tx(_open, ticket, now)
        return result

    async def ticket_by_id(self, ticket_id: int) -> Ticket | None:
        r = await self._one(f"SELECT {_COLS} FROM tickets WHERE id = ?", (ticket_id,))
        return _ticket(r) if r else None

    async def live_tickets(self, limit: int, order_id: int | None = None) -> list[Ticket]:
        if order_id is None:
            rows = await self._all(f"SELECT {_COLS} FROM tickets WHERE state <> 'closed' ORDER BY id LIMIT ?",
                                   (limit,))
        else:
            rows = await self._all(f"SELECT {_COLS} FROM tickets WHERE state <> 'closed' AND order_id = ?"
                                   " ORDER BY id LIMIT ?", (order_id, limit))
        return [_ticket(r) for r in rows]

    async def live_ticket(self, channel: str, user_id: str, kind: str) -> Ticket | None:
        r = await self._one(f"SELECT {_COLS} FROM tickets WHERE channel = ? AND user_id = ? AND kind = ?"
                            " AND state <> 'closed' ORDER BY id DESC LIMIT 1", (channel, user_id, kind))
        return _ticket(r) if r else None

    async def answer_ticket(self, ticket_id: int, text: str, now: datetime) -> Ticket | None:
        result: Ticket | None = await self._tx(_answer, ticket_id, text, now)
        return result

    async def close_ticket(self, ticket_id: int, now: datetime) -> bool:
        result: bool = await self._tx(_close, ticket_id, now)
        return result

    async def replace_code(self, order_id: int, code_id: int, now: datetime) -> CodeReplaced | None:
        result: CodeReplaced | None = await self._tx(_replace, order_id, code_id, now, self._states)
        return result
