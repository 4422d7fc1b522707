"""PostgreSQL after-sales tickets: a mixin of PostgresStore, mirroring storage/sqlite_tickets.py."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from storage.errors import InsufficientStock
from storage.records import TICKET_KINDS, TICKET_TEXT_MAX, CodeReplaced, NewTicket, StateGroups, Ticket

_COLS = ("id, channel, user_id, chat_id, kind, order_id, code_id, state, language, last_message, created_at,"
         " updated_at")


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: every time in kamibot is UTC-aware")
    return dt.astimezone(UTC)


def _ticket(r: asyncpg.Record) -> Ticket:
    return Ticket(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11])


class PgTickets:
    """Ticket verbs of PostgresStore (mixed in)."""

    _states: StateGroups

    @property
    def pool(self) -> asyncpg.Pool:
        raise NotImplementedError  # provided by PostgresStore

    async def open_ticket(self, ticket: NewTicket, now: datetime) -> Ticket:
        if ticket.kind not in TICKET_KINDS:
            raise ValueError(f"unknown ticket kind {ticket.kind!r}")
        t, at = ticket, _aware(now)
        # a live ticket of the same customer, kind, order and code is updated (and reopened), not duplicated
        row = await self.pool.fetchrow(
            "INSERT INTO tickets (channel, user_id, chat_id, kind, order_id, code_id, state, language, last_message,"
            " created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,'open',$7,$8,$9,$9)"
            " ON CONFLICT (channel, user_id, kind, COALESCE(order_id, 0), COALESCE(code_id, 0))"
            " WHERE state <> 'closed' DO UPDATE SET state = 'open', chat_id = excluded.chat_id,"
            " language = excluded.language, last_message = excluded.last_message, updated_at = excluded.updated_at"
            f" RETURNING {_COLS}",
            t.channel, t.user_id, t.chat_id, t.kind, t.order_id, t.code_id, t.language, t.text[:TICKET_TEXT_MAX], at)
        assert row is not None
        return _ticket(row)

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
        r = await self.pool.fetchrow(
            "UPDATE tickets SET state = 'answered', last_message = $1, updated_at = $2"
            f" WHERE id = $3 AND state <> 'closed' RETURNING {_COLS}", text[:TICKET_TEXT_MAX], _aware(now), ticket_id)
        return _ticket(r) if r else None

    async def close_ticket(self, ticket_id: int, now: datetime) -> bool:
        status = await self.pool.execute(
            "UPDATE tickets SET state = 'closed', updated_at = $1 WHERE id = $2 AND state <> 'closed'",
            _aware(now), ticket_id)
        return bool(status.split()[-1] == "1")

    async def replace_code(self, order_id: int, code_id: int, now: datetime) -> CodeReplaced | None:
        """sqlite_tickets._replace in one PostgreSQL transaction (the order row locked first)."""
        at = _aware(now)
        async with self.pool.acquire() as conn, conn.transaction():
            o = await conn.fetchrow("SELECT state, pool_id, sku_id, channel, chat_id FROM orders WHERE id = $1"
                                    " FOR UPDATE", order_id)
            if o is None or o["state"] not in self._states.with_codes:
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
