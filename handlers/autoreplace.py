"""The merchant's auto-replace command: `/autoreplace SKU on [hours=24]` marks a SKU so that a code the customer
reports bad within that many hours of delivery is replaced at once, once per order; `/autoreplace SKU off`
unmarks it. The policy itself (who is covered, the replacement in one transaction) is
fulfillment.aftersales.AfterSalesService's; this module parses the command and words the answers.
"""

from __future__ import annotations

from fulfillment.errors import UnknownSku
from handlers.context import ShopContext
from handlers.types import Incoming, Reply

DEFAULT_HOURS = 24
MAX_HOURS = 24 * 90


async def command(ctx: ShopContext, msg: Incoming, lang: str, rest: str) -> list[Reply]:
    """/autoreplace — the policy; /autoreplace SKU on [hours=N] | off — mark or unmark a SKU."""
    args = rest.split()
    if not args:
        policy = await ctx.services.aftersales.auto_replace_policy()
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
    try:
        sku = await ctx.services.aftersales.set_auto_replace(slug, hours if switch == "on" else None, msg.channel,
                                                    msg.user_id)
    except UnknownSku:
        return [Reply(ctx.tr(lang, "ticket.autoreplace_unknown_sku", sku=slug))]
    if switch == "on":
        return [Reply(ctx.tr(lang, "ticket.autoreplace_on", sku=sku.slug, hours=hours))]
    return [Reply(ctx.tr(lang, "ticket.autoreplace_off", sku=sku.slug))]
