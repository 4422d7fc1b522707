"""The ticket SLA reminder: a ticket left open (unanswered) longer than the merchant's SLA is brought to the
merchants again, once per ticket per SLA period, by a background job (bot/server.py adds it to bot.jobs).

"Once" holds across processes: each reminder is a `claim_once` of (ticket, its last update, period number), so
several servers running the job remind once, and a ticket the customer writes to again starts a new count.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from handlers.context import ShopContext
from handlers.tickets_admin import _about, _kind, tell_merchants
from storage.records import Ticket

log = logging.getLogger("kamibot.tickets")
CLAIM_SCOPE = "aftersales.sla"
SCAN_LIMIT = 500  # live tickets looked at per tick, oldest first


async def remind_overdue(ctx: ShopContext, sla: timedelta, now: datetime | None = None) -> int:
    """Remind the merchants of every open ticket older than `sla` not yet reminded in its current period;
    how many tickets were reminded."""
    now = now or datetime.now(UTC)
    reminded = 0
    for ticket in await ctx.store.live_tickets(SCAN_LIMIT):
        if ticket.state != "open":  # answered: the merchant has spoken; the customer's next message reopens it
            continue
        waited = now - ticket.updated_at
        if waited < sla:
            continue
        period = int(waited / sla)
        key = f"{ticket.id}:{int(ticket.updated_at.timestamp())}:{period}"
        if not await ctx.store.claim_once(CLAIM_SCOPE, key, now + 2 * sla, now):
            continue
        await tell_merchants(ctx, ticket, _reminder(ctx, ticket, waited))
        log.info("event=ticket.sla_reminder ticket=%s period=%s waited_min=%s", ticket.id, period,
                 int(waited.total_seconds() // 60))
        reminded += 1
    return reminded


def _reminder(ctx: ShopContext, ticket: Ticket, waited: timedelta) -> Callable[[str], Awaitable[str]]:
    async def text(lang: str) -> str:
        return ctx.tr(lang, "ticket.sla_reminder", ticket=ticket.id, kind=_kind(ctx, lang, ticket.kind),
                      user=f"{ticket.channel}:{ticket.user_id}", order=await _about(ctx, lang, ticket),
                      minutes=int(waited.total_seconds() // 60),
                      text=ticket.last_message or ctx.tr(lang, "ticket.no_text"))

    return text
