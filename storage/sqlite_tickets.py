"""SQLite after-sales tickets (a customer asks for a person, a refund, or reports a bad code) and the after-sales
verbs that write (a bad-code report with its auto-replacement, a merchant's replacement, a customer's resend, SLA
reminder claims, the auto-replace policy), each one transaction body: a mixin of SqliteStore, mirrored by
storage/postgres_tickets.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from storage.errors import InsufficientStock
from storage.records import (
    TICKET_KINDS,
    TICKET_TEXT_MAX,
    AutoReplaceRequest,
    BadCodeReported,
    CodeReplaced,
    NewTicket,
    OnceKey,
    ReportReplaced,
    StateGroups,
    Ticket,
)
from storage.sqlite_orders import _claim_uses, _outbox, enqueue
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


def _claim(db: sqlite3.Connection, claim: OnceKey, now: datetime) -> bool:
    """claim_once inside the caller's transaction."""
    db.execute("DELETE FROM once_keys WHERE scope = ? AND key = ? AND expires_at <= ?",
               (claim.scope, claim.key, ts(now)))
    cur = db.execute("INSERT INTO once_keys (scope, key, expires_at) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                     (claim.scope, claim.key, ts(claim.expires_at)))
    return cur.rowcount == 1


def _claimed(db: sqlite3.Connection, claim: OnceKey, now: datetime) -> bool:
    return db.execute("SELECT 1 FROM once_keys WHERE scope = ? AND key = ? AND expires_at > ?",
                      (claim.scope, claim.key, ts(now))).fetchone() is not None


def _report_bad_code(db: sqlite3.Connection, t: NewTicket, auto: AutoReplaceRequest | None,
                     now: datetime, g: StateGroups) -> BadCodeReported:
    """The report's ticket; with `auto`, first the replacement (claim checked, code replaced, claim spent,
    ticket answered and closed). A replacement that fails changes nothing and spends no claim."""
    if auto is None or t.order_id is None or t.code_id is None:
        return BadCodeReported(_open(db, t, now), None, "not_asked")
    if _claimed(db, auto.claim, now):
        return BadCodeReported(_open(db, t, now), None, "already_used")
    db.execute("SAVEPOINT replace_code")
    try:
        done = _replace(db, t.order_id, t.code_id, now, g)
    except InsufficientStock:
        db.execute("ROLLBACK TO replace_code")
        done, outcome = None, "no_stock"
    else:
        outcome = "nothing"
    db.execute("RELEASE replace_code")
    if done is None:
        return BadCodeReported(_open(db, t, now), None, outcome)
    _claim(db, auto.claim, now)
    ticket = _open(db, t, now)
    _answer(db, ticket.id, auto.answer(done), now)
    _close(db, ticket.id, now)
    row = db.execute(f"SELECT {_COLS} FROM tickets WHERE id = ?", (ticket.id,)).fetchone()
    return BadCodeReported(_ticket(row), done, "replaced")


def _replace_reported(db: sqlite3.Connection, order_id: int, item_no: int | None, scan: int,
                      now: datetime, g: StateGroups) -> ReportReplaced:
    """A merchant's /replace: the code of `item_no`, else of the oldest live bad-code report (among the order's
    first `scan` live tickets), else the only item's; replaced, and the reports about it closed."""
    reports = db.execute(
        "SELECT id, code_id FROM (SELECT id, kind, code_id FROM tickets WHERE state <> 'closed' AND order_id = ?"
        " ORDER BY id LIMIT ?) WHERE kind = 'bad_code' ORDER BY id", (order_id, scan)).fetchall()
    items = db.execute("SELECT item_no, code_id FROM order_items WHERE order_id = ? AND released = 0"
                       " ORDER BY item_no", (order_id,)).fetchall()
    item_nos = tuple(int(i[0]) for i in items)
    if item_no is not None:
        code_ids = [int(i[1]) for i in items if i[0] == item_no]
    elif reports:
        code_ids = [int(r[1]) for r in reports if r[1] is not None][:1]
    else:
        code_ids = [int(items[0][1])] if len(items) == 1 else []
    if not code_ids:
        return ReportReplaced(None, False, item_nos)
    done = _replace(db, order_id, code_ids[0], now, g)  # InsufficientStock: the caller's savepoint undoes all
    if done is None:
        return ReportReplaced(None, True, item_nos)
    closed = tuple(int(r[0]) for r in reports if r[1] == done.old_code_id and _close(db, int(r[0]), now))
    return ReportReplaced(done, True, item_nos, closed)


def _resend_once(db: sqlite3.Connection, order_id: int, claim: OnceKey, now: datetime) -> int | None:
    if not _claim(db, claim, now):
        return None
    return enqueue(db, order_id, "resend", "", now)


def _claim_all(db: sqlite3.Connection, claims: Sequence[OnceKey], now: datetime) -> list[OnceKey]:
    return [c for c in claims if _claim(db, c, now)]


def _save_policy(db: sqlite3.Connection, key: str, value: str, audit: tuple[str, str, str, str],
                 now: datetime) -> None:
    db.execute("INSERT INTO kv (key, value, expires_at) VALUES (?,?,NULL) ON CONFLICT (key) DO UPDATE"
               " SET value = excluded.value, expires_at = NULL", (key, value))
    channel, actor, action, detail = audit
    db.execute("INSERT INTO audit_log (at, channel, actor, action, detail) VALUES (?,?,?,?,?)",
               (ts(now), channel, actor, action, detail[:500]))


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

    async def report_bad_code(self, ticket: NewTicket, auto: AutoReplaceRequest | None,
                              now: datetime) -> BadCodeReported:
        result: BadCodeReported = await self._tx(_report_bad_code, ticket, auto, now, self._states)
        return result

    async def replace_reported_code(self, order_id: int, item_no: int | None, scan: int,
                                    now: datetime) -> ReportReplaced:
        result: ReportReplaced = await self._tx(_replace_reported, order_id, item_no, scan, now, self._states)
        return result

    async def resend_once(self, order_id: int, claim: OnceKey, now: datetime) -> int | None:
        result: int | None = await self._tx(_resend_once, order_id, claim, now)
        return result

    async def claim_reminders(self, claims: Sequence[OnceKey], now: datetime) -> list[OnceKey]:
        result: list[OnceKey] = await self._tx(_claim_all, list(claims), now)
        return result

    async def save_policy(self, key: str, value: str, audit: tuple[str, str, str, str], now: datetime) -> None:
        await self._tx(_save_policy, key, value, audit, now)
