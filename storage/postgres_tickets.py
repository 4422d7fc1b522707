"""PostgreSQL after-sales tickets: a mixin of PostgresStore, mirroring storage/sqlite_tickets.py."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from storage.records import TICKET_KINDS, TICKET_TEXT_MAX, NewTicket, Ticket

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

    async def live_tickets(self, limit: int) -> list[Ticket]:
        rows = await self.pool.fetch(f"SELECT {_COLS} FROM tickets WHERE state <> 'closed' ORDER BY id LIMIT $1",
                                     limit)
        return [_ticket(r) for r in rows]

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
