"""SQLite after-sales tickets (a customer asks for a person, a refund, or reports a bad code): a mixin of
SqliteStore, mirrored by storage/postgres_tickets.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from storage.records import TICKET_KINDS, TICKET_TEXT_MAX, NewTicket, Ticket
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


def _close(db: sqlite3.Connection, ticket_id: int, now: datetime) -> bool:
    cur = db.execute("UPDATE tickets SET state = 'closed', updated_at = ? WHERE id = ? AND state <> 'closed'",
                     (ts(now), ticket_id))
    return cur.rowcount == 1


class Tickets:
    """Ticket verbs of SqliteStore (mixed in)."""

    _tx: Callable[..., Any]
    _one: Callable[..., Any]
    _all: Callable[..., Any]

    async def open_ticket(self, ticket: NewTicket, now: datetime) -> Ticket:
        if ticket.kind not in TICKET_KINDS:
            raise ValueError(f"unknown ticket kind {ticket.kind!r}")
        result: Ticket = await self._tx(_open, ticket, now)
        return result

    async def ticket_by_id(self, ticket_id: int) -> Ticket | None:
        r = await self._one(f"SELECT {_COLS} FROM tickets WHERE id = ?", (ticket_id,))
        return _ticket(r) if r else None

    async def live_tickets(self, limit: int) -> list[Ticket]:
        rows = await self._all(f"SELECT {_COLS} FROM tickets WHERE state <> 'closed' ORDER BY id LIMIT ?", (limit,))
        return [_ticket(r) for r in rows]

    async def answer_ticket(self, ticket_id: int, text: str, now: datetime) -> Ticket | None:
        result: Ticket | None = await self._tx(_answer, ticket_id, text, now)
        return result

    async def close_ticket(self, ticket_id: int, now: datetime) -> bool:
        result: bool = await self._tx(_close, ticket_id, now)
        return result
