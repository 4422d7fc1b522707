"""The merchant's auto-replace policy: for SKUs marked by `/autoreplace SKU on [hours=24]`, a code the customer
reports bad within that many hours of delivery is replaced at once (a new code from stock, the bad one
quarantined, the ledger updated), once per order; the report is recorded as a ticket, closed with a note, and
the merchants are told. Anything else (a second report, too late, an unmarked SKU, no stock) is a ticket for the
merchant as before.

The policy is one JSON object in the store's shared key-value table ({sku slug: hours}), so every process sees
an edit at once and no migration is needed.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

from handlers.context import ShopContext
from handlers.tickets_admin import _about, tell_merchants
from handlers.types import Incoming, Reply
from storage.errors import InsufficientStock
from storage.records import NewTicket, Order, OrderItem, OrderState

log = logging.getLogger("kamibot.autoreplace")
POLICY_KEY = "aftersales.autoreplace"
CLAIM_SCOPE = "aftersales.autoreplace"
DEFAULT_HOURS = 24
MAX_HOURS = 24 * 90
ONCE_FOR = timedelta(days=3650)  # "once per order": the claim outlives any order's after-sales life


async def load_policy(ctx: ShopContext) -> dict[str, int]:
    """{sku slug: window in hours} of the SKUs marked for auto-replacement."""
    raw = await ctx.store.kv_get(POLICY_KEY, datetime.now(UTC))
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        log.warning("event=autoreplace.policy_unreadable")
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int) and v > 0}


async def save_policy(ctx: ShopContext, policy: dict[str, int]) -> None:
    await ctx.store.kv_put(POLICY_KEY, json.dumps(dict(sorted(policy.items()))), None)


async def delivered_at(ctx: ShopContext, order: Order) -> datetime | None:
    """When the order was first delivered (its first transition to delivered)."""
    for event in await ctx.store.order_events(order.id):
        if event.to_state == OrderState.DELIVERED.value:
            return event.at
    return None


async def command(ctx: ShopContext, msg: Incoming, lang: str, rest: str) -> list[Reply]:
    """/autoreplace — the policy; /autoreplace SKU on [hours=N] | off — mark or unmark a SKU."""
    args = rest.split()
    policy = await load_policy(ctx)
    if not args:
        if not policy:
            return [Reply(ctx.tr(lang, "ticket.autoreplace_none") + "\n" + ctx.tr(lang, "ticket.autoreplace_usage"))]
        lines = [ctx.tr(lang, "ticket.autoreplace_title")]
        lines += [ctx.tr(lang, "ticket.autoreplace_line", sku=slug, hours=hours) for slug, hours in policy.items()]
        lines.append(ctx.tr(lang, "ticket.autoreplace_usage"))
        return [Reply("\n".join(lines))]
    slug, switch = args[0], args[1].lower() if len(args) > 1 else ""
    hours = DEFAULT_HOURS
    extra = args[2:]
    if switch not in ("on", "off") or len(extra) > 1 or (switch == "off" and extra):
        return [Reply(ctx.tr(lang, "ticket.autoreplace_usage"))]
    if extra:
        value = extra[0].lower().removeprefix("hours=")
        if not value.isdigit() or not 1 <= int(value) <= MAX_HOURS:
            return [Reply(ctx.tr(lang, "ticket.autoreplace_usage"))]
        hours = int(value)
    sku = await ctx.store.sku_by_slug(slug)
    if sku is None:
        return [Reply(ctx.tr(lang, "ticket.autoreplace_unknown_sku", sku=slug))]
    detail = f"{sku.slug} on {hours}" if switch == "on" else f"{sku.slug} off"
    await ctx.store.audit(msg.channel, msg.user_id, "autoreplace", detail, datetime.now(UTC))
    if switch == "on":
        policy[sku.slug] = hours
        await save_policy(ctx, policy)
        return [Reply(ctx.tr(lang, "ticket.autoreplace_on", sku=sku.slug, hours=hours))]
    policy.pop(sku.slug, None)
    await save_policy(ctx, policy)
    return [Reply(ctx.tr(lang, "ticket.autoreplace_off", sku=sku.slug))]


async def try_auto_replace(ctx: ShopContext, msg: Incoming, lang: str, order: Order,
                           item: OrderItem, now: datetime | None = None) -> list[Reply] | None:
    """Replace the reported code now if the policy allows it; None: the report goes to the merchant instead."""
    now = now or datetime.now(UTC)
    sku = await ctx.store.sku_by_id(order.sku_id)
    hours = (await load_policy(ctx)).get(sku.slug) if sku is not None else None
    if not hours:
        return None
    delivered = await delivered_at(ctx, order)
    if delivered is None or now - delivered > timedelta(hours=hours):
        log.info("event=autoreplace.outside_window order_id=%s hours=%s", order.id, hours)
        return None
    if await ctx.store.pool_available(order.pool_id) < 1:  # keep the once-per-order claim for after a restock
        log.info("event=autoreplace.no_stock order_id=%s", order.id)
        return None
    if not await ctx.store.claim_once(CLAIM_SCOPE, str(order.id), now + ONCE_FOR, now):
        log.info("event=autoreplace.already_used order_id=%s", order.id)
        return None
    try:
        done = await ctx.store.replace_code(order.id, item.code.id, now)
    except InsufficientStock:  # sold out between the check and the replacement: nothing changed
        log.info("event=autoreplace.no_stock order_id=%s", order.id)
        return None
    if done is None:
        return None
    ticket = await ctx.store.open_ticket(NewTicket(msg.channel, msg.user_id, msg.chat_id, "bad_code", "",
                                                   order.id, item.code.id, lang), now)
    note = ctx.tr(lang, "ticket.autoreplace_note", old=done.old_code_id, new=done.new_code_id)
    await ctx.store.answer_ticket(ticket.id, note, now)
    await ctx.store.close_ticket(ticket.id, now)
    log.info("event=autoreplace.replaced order_id=%s ticket=%s old_code_id=%s new_code_id=%s", order.id, ticket.id,
             done.old_code_id, done.new_code_id)

    async def notice(merchant_lang: str) -> str:
        return ctx.tr(merchant_lang, "ticket.autoreplace_notice", ticket=ticket.id,
                      user=f"{ticket.channel}:{ticket.user_id}", order=await _about(ctx, merchant_lang, ticket),
                      old=done.old_code_id, new=done.new_code_id)

    await tell_merchants(ctx, ticket, notice)
    ctx.spawn(ctx.delivery.run_once())  # the resend row: the customer gets the new code now
    return [Reply(ctx.tr(lang, "after.autoreplaced", ref=order.ref, ticket=ticket.id))]
