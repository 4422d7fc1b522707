"""The ticket SLA reminder: a ticket left open (unanswered) longer than the merchant's SLA is brought to the
merchants again, once per ticket per SLA period, by a background job (bot/server.py adds it to bot.jobs).

Which tickets are due, and "once" across processes, is AfterSalesService.remind_overdue's; this module words
the reminder and sends it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from handlers.context import ShopContext
from handlers.tickets_admin import _about, _kind, tell_merchants
from storage.records import Ticket

log = logging.getLogger("kamibot.tickets")


async def remind_overdue(ctx: ShopContext, sla: timedelta, now: datetime | None = None) -> int:
    """Remind the merchants of every open ticket older than `sla` not yet reminded in its current period;
    how many tickets were reminded."""
    due = await ctx.services.aftersales.remind_overdue(sla, now)
    for overdue in due:
        await tell_merchants(ctx, overdue.ticket, _reminder(ctx, overdue.ticket, overdue.waited))
        log.info("event=ticket.sla_reminder ticket=%s period=%s waited_min=%s", overdue.ticket.id, overdue.period,
                 int(overdue.waited.total_seconds() // 60))
    return len(due)


def _reminder(ctx: ShopContext, ticket: Ticket, waited: timedelta) -> Callable[[str], Awaitable[str]]:
    async def text(lang: str) -> str:
        return ctx.tr(lang, "ticket.sla_reminder", ticket=ticket.id, kind=_kind(ctx, lang, ticket.kind),
                      user=f"{ticket.channel}:{ticket.user_id}", order=await _about(ctx, lang, ticket),
                      minutes=int(waited.total_seconds() // 60),
                      text=ticket.last_message or ctx.tr(lang, "ticket.no_text"))

    return text
