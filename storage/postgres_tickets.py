"""PostgreSQL after-sales tickets and the after-sales verbs that write, each one transaction: a mixin of
PostgresStore, mirroring storage/sqlite_tickets.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from storage.errors import InsufficientStock
from storage.postgres_base import aware
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

_COLS = ("id, channel, user_id, chat_id, kind, order_id, code_id, state, language, last_message, created_at,"
         " updated_at")


#: a connection of the pool (inside a transaction) or the pool itself (one statement)
_Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | asyncpg.Pool


def _ticket(r: asyncpg.Record) -> Ticket:
    return Ticket(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11])


_OPEN = (
    "INSERT INTO tickets (channel, user_id, chat_id, kind, order_id, code_id, state, language, last_message,"
    " created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,'open',$7,$8,$9,$9)"
    " ON CONFLICT (channel, user_id, kind, COALESCE(order_id, 0), COALESCE(code_id, 0))"
    " WHERE state <> 'closed' DO UPDATE SET state = 'open', chat_id = excluded.chat_id,"
    " language = excluded.language, last_message = excluded.last_message, updated_at = excluded.updated_at"
    f" RETURNING {_COLS}")
_ANSWER = ("UPDATE tickets SET state = 'answered', last_message = $1, updated_at = $2"
           f" WHERE id = $3 AND state <> 'closed' RETURNING {_COLS}")
_CLOSE = "UPDATE tickets SET state = 'closed', updated_at = $1 WHERE id = $2 AND state <> 'closed'"
# an expired key is taken over in the same statement; a live one makes the insert a no-op
_CLAIM = ("INSERT INTO once_keys (scope, key, expires_at) VALUES ($1,$2,$3) ON CONFLICT (scope, key) DO UPDATE"
          " SET expires_at = excluded.expires_at WHERE once_keys.expires_at <= $4 RETURNING 1")


async def _open(conn: _Conn, t: NewTicket, at: datetime) -> Ticket:
    row = await conn.fetchrow(_OPEN, t.channel, t.user_id, t.chat_id, t.kind, t.order_id, t.code_id, t.language,
                              t.text[:TICKET_TEXT_MAX], at)
    assert row is not None
    return _ticket(row)


async def _claim(conn: _Conn, claim: OnceKey, at: datetime) -> bool:
    return bool(await conn.fetchval(_CLAIM, claim.scope, claim.key, aware(claim.expires_at), at) == 1)


async def _replace(conn: _Conn, order_id: int, code_id: int, at: datetime,
                   g: StateGroups) -> CodeReplaced | None:
    """sqlite_tickets._replace inside the caller's transaction (the order row locked first)."""
    o = await conn.fetchrow("SELECT state, pool_id, sku_id, channel, chat_id FROM orders WHERE id = $1"
                            " FOR UPDATE", order_id)
    if o is None or o["state"] not in g.with_codes:
        return None
    item = await conn.fetchval("SELECT item_no FROM order_items WHERE order_id = $1 AND code_id = $2"
                               " AND NOT released ORDER BY item_no LIMIT 1", order_id, code_id)
    if item is None:
        return None  # already replaced (or never this order's code): nothing changes
    left = await conn.fetchval("UPDATE codes SET status = 'quarantined' WHERE id = $1"
                               " AND status <> 'quarantined' RETURNING uses_left", code_id)
    if left:  # the bad code's unsold uses leave the stock too
        await conn.execute("UPDATE pools SET available = GREATEST(available - $1, 0) WHERE id = $2",
                           left, o["pool_id"])
    status = await conn.execute("UPDATE pools SET available = available - 1 WHERE id = $1 AND available >= 1",
                                o["pool_id"])
    if status.split()[-1] != "1":
        raise InsufficientStock(f"pool {o['pool_id']}")  # the transaction rolls the quarantine back too
    new = None
    for lock in ("FOR UPDATE SKIP LOCKED", "FOR UPDATE"):  # a code held by a buyer: wait only if no other
        new = await conn.fetchrow(
            "WITH c AS (SELECT id FROM codes WHERE pool_id = $1 AND uses_left > 0 AND status = 'available'"
            f" AND (expires_at IS NULL OR expires_at > $2) ORDER BY id LIMIT 1 {lock})"
            " UPDATE codes SET uses_left = codes.uses_left - 1 FROM c WHERE codes.id = c.id"
            " RETURNING codes.id, codes.uses_total, codes.unit_cost, codes.cost_currency", o["pool_id"], at)
        if new is not None:
            break
    if new is None:
        raise InsufficientStock(f"pool {o['pool_id']}")
    use_no = await conn.fetchval(
        "SELECT g FROM generate_series(1, $2::BIGINT) AS g WHERE NOT EXISTS (SELECT 1 FROM order_items i"
        " WHERE i.code_id = $1 AND i.use_no = g AND NOT i.released) ORDER BY g LIMIT 1",
        new["id"], new["uses_total"])
    await conn.execute("UPDATE order_items SET released = TRUE WHERE order_id = $1 AND item_no = $2",
                       order_id, item)
    new_no = await conn.fetchval(
        "INSERT INTO order_items (order_id, item_no, code_id, use_no, unit_cost, cost_currency)"
        " SELECT $1, MAX(item_no) + 1, $2, $3, $4, $5 FROM order_items WHERE order_id = $1 RETURNING item_no",
        order_id, new["id"], use_no, new["unit_cost"], new["cost_currency"])
    if new["unit_cost"]:
        await conn.execute(
            "INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
            " VALUES ($1, $2, $3, 'cost', $4, $5, $6)",
            order_id, o["sku_id"], o["channel"], new["cost_currency"], -new["unit_cost"], at)
    outbox_id = await conn.fetchval(
        "INSERT INTO outbox (order_id, kind, channel, chat_id, payload, next_attempt_at, created_at)"
        " VALUES ($1, 'resend', $2, $3, '', $4, $4) RETURNING id", order_id, o["channel"], o["chat_id"], at)
    return CodeReplaced(order_id, int(item), int(new_no), code_id, int(new["id"]), int(outbox_id))


class PgTickets:
    """Ticket verbs of PostgresStore (mixed in)."""

    _states: StateGroups

    @property
    def pool(self) -> asyncpg.Pool:
        raise NotImplementedError  # provided by PostgresStore

    async def open_ticket(self, ticket: NewTicket, now: datetime) -> Ticket:
        if ticket.kind not in TICKET_KINDS:
            raise ValueError(f"unknown ticket kind {ticket.kind!r}")
        # a live ticket of the same customer, kind, order and code is updated (and reopened), not duplicated
        return await _open(self.pool, ticket, aware(now))

    async def ticket_by_id(self, ticket_id: int) -> Ticket | None:
        r = await self.pool.fetchrow(f"SELECT {_COLS} FROM tickets WHERE id = $1", ticket_id)
        return _ticket(r) if r else None

    async def live_tickets(self, limit: int, order_id: int | None = None) -> list[Ticket]:
        rows = await self.pool.fetch(f"SELECT {_COLS} FROM tickets WHERE state <> 'closed'"
                                     " AND ($2::BIGINT IS NULL OR order_id = $2) ORDER BY id LIMIT $1", limit, order_id)
        return [_ticket(r) for r in rows]

    async def live_ticket(self, channel: str, user_id: str, kind: str) -> Ticket | None:
        r = await self.pool.fetchrow(f"SELECT {_COLS} FROM tickets WHERE channel = $1 AND user_id = $2 AND kind = $3"
                                     " AND state <> 'closed' ORDER BY id DESC LIMIT 1", channel, user_id, kind)
        return _ticket(r) if r else None

    async def answer_ticket(self, ticket_id: int, text: str, now: datetime) -> Ticket | None:
        r = await self.pool.fetchrow(_ANSWER, text[:TICKET_TEXT_MAX], aware(now), ticket_id)
        return _ticket(r) if r else None

    async def close_ticket(self, ticket_id: int, now: datetime) -> bool:
        status = await self.pool.execute(_CLOSE, aware(now), ticket_id)
        return bool(status.split()[-1] == "1")


    async def replace_code(self, order_id: int, code_id: int, now: datetime) -> CodeReplaced | None:
        async with self.pool.acquire() as conn, conn.transaction():
            return await _replace(conn, order_id, code_id, aware(now), self._states)

    async def report_bad_code(self, ticket: NewTicket, auto: AutoReplaceRequest | None,
                              now: datetime) -> BadCodeReported:
        t, at = ticket, aware(now)
        async with self.pool.acquire() as conn, conn.transaction():
            if auto is None or t.order_id is None or t.code_id is None:
                return BadCodeReported(await _open(conn, t, at), None, "not_asked")
            # claimed first: a concurrent report of the same order waits here for this one's outcome
            if not await _claim(conn, auto.claim, at):
                return BadCodeReported(await _open(conn, t, at), None, "already_used")
            done: CodeReplaced | None = None
            try:
                async with conn.transaction():  # a savepoint: a failed replacement changes nothing
                    done = await _replace(conn, t.order_id, t.code_id, at, self._states)
                    outcome = "nothing"
            except InsufficientStock:
                outcome = "no_stock"
            if done is None:  # no replacement: the claim stays unspent
                await conn.execute("DELETE FROM once_keys WHERE scope = $1 AND key = $2", auto.claim.scope,
                                   auto.claim.key)
                return BadCodeReported(await _open(conn, t, at), None, outcome)
            opened = await _open(conn, t, at)
            await conn.execute(_ANSWER, auto.answer(done)[:TICKET_TEXT_MAX], at, opened.id)
            await conn.execute(_CLOSE, at, opened.id)
            row = await conn.fetchrow(f"SELECT {_COLS} FROM tickets WHERE id = $1", opened.id)
            assert row is not None
            return BadCodeReported(_ticket(row), done, "replaced")

    async def replace_reported_code(self, order_id: int, item_no: int | None, scan: int,
                                    now: datetime) -> ReportReplaced:
        at = aware(now)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", order_id)
            reports = await conn.fetch(
                "SELECT id, code_id FROM (SELECT id, kind, code_id FROM tickets WHERE state <> 'closed'"
                " AND order_id = $1 ORDER BY id LIMIT $2) t WHERE kind = 'bad_code' ORDER BY id", order_id, scan)
            items = await conn.fetch("SELECT item_no, code_id FROM order_items WHERE order_id = $1 AND NOT released"
                                     " ORDER BY item_no", order_id)
            item_nos = tuple(int(i[0]) for i in items)
            if item_no is not None:
                code_ids = [int(i[1]) for i in items if i[0] == item_no]
            elif reports:
                code_ids = [int(r[1]) for r in reports if r[1] is not None][:1]
            else:
                code_ids = [int(items[0][1])] if len(items) == 1 else []
            if not code_ids:
                return ReportReplaced(None, False, item_nos)
            done = await _replace(conn, order_id, code_ids[0], at, self._states)  # InsufficientStock: all rolled back
            if done is None:
                return ReportReplaced(None, True, item_nos)
            closed = []
            for r in reports:
                if r[1] == done.old_code_id and (await conn.execute(_CLOSE, at, r[0])).split()[-1] == "1":
                    closed.append(int(r[0]))
            return ReportReplaced(done, True, item_nos, tuple(closed))

    async def resend_once(self, order_id: int, claim: OnceKey, now: datetime) -> int | None:
        at = aware(now)
        async with self.pool.acquire() as conn, conn.transaction():
            if not await _claim(conn, claim, at):
                return None
            return int(await conn.fetchval("SELECT kb_enqueue_outbox($1, 'resend', '', $2)", order_id, at))

    async def claim_reminders(self, claims: Sequence[OnceKey], now: datetime) -> list[OnceKey]:
        at = aware(now)
        async with self.pool.acquire() as conn, conn.transaction():
            return [c for c in claims if await _claim(conn, c, at)]

    async def save_policy(self, key: str, value: str, audit: tuple[str, str, str, str], now: datetime) -> None:
        channel, actor, action, detail = audit
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO kv (key, value, expires_at) VALUES ($1,$2,NULL) ON CONFLICT (key)"
                               " DO UPDATE SET value = excluded.value, expires_at = NULL", key, value)
            await conn.execute("INSERT INTO audit_log (at, channel, actor, action, detail) VALUES ($1,$2,$3,$4,$5)",
                               aware(now), channel, actor, action, detail[:500])
