"""After-sales tickets on the merchant side: the notice relayed to the merchants when a customer opens one, and
the merchant commands /tickets (the open ones), /reply TICKET TEXT (to the customer's chat), /close TICKET,
/replace ORDER [ITEM] (a new code from stock for a code reported bad; the bad one quarantined). The verbs are
fulfillment.aftersales.AfterSalesService's; this module says what happened and tells the people concerned.

Codes never appear here: a bad-code ticket names the code by its id, and customer text is masked
(`mask_codes`) before it is stored or relayed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from fulfillment.errors import AlreadyReplaced, NoReplacementStock, ReplaceWhichItem
from handlers.context import ShopContext
from handlers.faq import order_refs
from handlers.merchant import MerchantCommands
from handlers.types import Incoming, Reply
from storage.records import Ticket

log = logging.getLogger("kamibot.tickets")
TICKET_COMMANDS = {"tickets", "reply", "close", "replace", "autoreplace"}
LIST_LIMIT = 20
PREVIEW = 80
#: where a ticket notice goes besides the merchants of the customer's own channel
ALWAYS_NOTIFIED = ("console",)
# what a pasted code looks like: dash-joined groups (ABCD-EFGH-JKLM) or a long run mixing letters and digits
_CODE_LIKE = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9A-Za-z]{3,}(?:-[0-9A-Za-z]{3,}){2,}|(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[0-9A-Za-z]{8,})"
    r"(?![0-9A-Za-z])")
MASK = "***"


def mask_codes(text: str) -> str:
    """Customer text with anything that looks like a code replaced by ***; order numbers are kept."""
    def keep_refs(m: re.Match[str]) -> str:
        return m.group(0) if order_refs(m.group(0)) == (m.group(0).upper(),) else MASK

    return _CODE_LIKE.sub(keep_refs, text)


def _kind(ctx: ShopContext, lang: str, kind: str) -> str:
    names = {"human": ctx.tr(lang, "ticket.kind_human"), "refund": ctx.tr(lang, "ticket.kind_refund"),
             "bad_code": ctx.tr(lang, "ticket.kind_bad_code")}
    return names.get(kind, kind)


def _state(ctx: ShopContext, lang: str, state: str) -> str:
    names = {"open": ctx.tr(lang, "ticket.state_open"), "answered": ctx.tr(lang, "ticket.state_answered"),
             "closed": ctx.tr(lang, "ticket.state_closed")}
    return names.get(state, state)


async def _about(ctx: ShopContext, lang: str, ticket: Ticket) -> str:
    """ · order K… · code id N — what the ticket is about (the code by its id only)."""
    out = ""
    if ticket.order_id is not None:
        order = await ctx.services.aftersales.order_by_id(ticket.order_id)
        out += ctx.tr(lang, "ticket.order_part", ref=order.ref if order else ticket.order_id)
    if ticket.code_id is not None:
        out += ctx.tr(lang, "ticket.code_part", code=ticket.code_id)
    return out


async def tell_merchants(ctx: ShopContext, ticket: Ticket, text_for: Callable[[str], Awaitable[str]]) -> int:
    """Send `text_for(merchant language)` about a ticket to the merchants of the customer's channel (and the
    console); how many were told."""
    told = 0
    channels = dict.fromkeys((ticket.channel, *ALWAYS_NOTIFIED))
    for channel in channels:
        send = ctx.senders.get(channel)
        if send is None:
            continue
        for merchant in sorted(ctx.merchants.get(channel, set())):
            await ctx.load_language(channel, merchant)
            text = await text_for(ctx.language(channel, merchant, ""))
            try:
                await send(merchant, Reply(text))
                told += 1
            except Exception:  # noqa: BLE001 - one unreachable merchant must not lose the customer's ticket
                log.warning("event=ticket.notify_failed ticket=%s channel=%s merchant=%s", ticket.id, channel,
                            merchant, exc_info=True)
    return told


async def notify_merchants(ctx: ShopContext, ticket: Ticket) -> int:
    """Relay a ticket to the merchants of the customer's channel (and the console); how many were told."""
    async def notice(lang: str) -> str:
        return ctx.tr(lang, "ticket.notice", ticket=ticket.id, kind=_kind(ctx, lang, ticket.kind),
                      user=f"{ticket.channel}:{ticket.user_id}", order=await _about(ctx, lang, ticket),
                      text=ticket.last_message or ctx.tr(lang, "ticket.no_text"))

    told = await tell_merchants(ctx, ticket, notice)
    log.info("event=ticket.opened ticket=%s kind=%s channel=%s user=%s order_id=%s code_id=%s merchants_told=%s",
             ticket.id, ticket.kind, ticket.channel, ticket.user_id, ticket.order_id, ticket.code_id, told)
    return told


#: the first line of a ticket notice or SLA reminder as a chat shows it: "🎫 Ticket #12 (…" / "⏰ 工单 #12（…"
_NOTICE_HEAD = re.compile(r"^\W{0,4}(?:Ticket|工单)\s*#(\d{1,12})\b")


def ticket_of_notice(text: str) -> int | None:
    """The ticket a relayed notice is about (a merchant answering it with the chat's reply feature); None when
    the text is not a ticket notice."""
    m = _NOTICE_HEAD.match(text.strip())
    return int(m.group(1)) if m else None


def _ticket_id(text: str) -> int:
    text = text.strip().lstrip("#")
    if not text.isdigit() or len(text) > 12:
        raise ValueError("not a ticket id")
    return int(text)


class MerchantTickets(MerchantCommands):
    async def handle(self, msg: Incoming, lang: str, command: str, rest: str) -> list[Reply]:
        if command == "tickets":
            return await self.list_open(lang)
        if command == "autoreplace":
            from handlers.autoreplace import command as autoreplace  # it builds on this module

            return await autoreplace(self.ctx, msg, lang, rest)
        if command == "replace":
            await self.ctx.services.aftersales.audit(msg.channel, msg.user_id, command, rest[:40])
            return await self.replace(msg, lang, rest.split())
        number, _, text = rest.strip().partition(" ")
        if not number or not number.lstrip("#").isdigit() or (command == "reply" and not text.strip()):
            return [Reply(self._t(lang, "ticket.usage_full"))]
        # the audit names the ticket only: a merchant's answer may carry a replacement code
        await self.ctx.services.aftersales.audit(msg.channel, msg.user_id, command, f"ticket {_ticket_id(number)}")
        if command == "reply":
            return await self.reply(msg, lang, _ticket_id(number), text.strip())
        return await self.close(msg, lang, _ticket_id(number))

    async def list_open(self, lang: str) -> list[Reply]:
        tickets = await self.ctx.services.aftersales.live_tickets(LIST_LIMIT)
        if not tickets:
            return [Reply(self._t(lang, "ticket.list_empty"))]
        lines = [self._t(lang, "ticket.list_title")]
        for t in tickets:
            text = t.last_message if len(t.last_message) <= PREVIEW else t.last_message[:PREVIEW] + "…"
            lines.append(self._t(lang, "ticket.list_line", ticket=t.id, state=_state(self.ctx, lang, t.state),
                                 kind=_kind(self.ctx, lang, t.kind), user=f"{t.channel}:{t.user_id}",
                                 order=await _about(self.ctx, lang, t),
                                 when=self.ctx.tr.when(lang, t.updated_at, self.ctx.timezone),
                                 text=text or self._t(lang, "ticket.no_text")))
        lines.append(self._t(lang, "ticket.usage_full"))
        return [Reply("\n".join(lines))]

    async def reply(self, msg: Incoming, lang: str, ticket_id: int, text: str) -> list[Reply]:
        ticket = await self.ctx.services.aftersales.ticket(ticket_id)
        if ticket is None or ticket.state == "closed":
            return [Reply(self._t(lang, "ticket.unknown", ticket=ticket_id))]
        send = self.ctx.senders.get(ticket.channel)
        if send is None:
            return [Reply(self._t(lang, "ticket.reply_undeliverable", ticket=ticket.id, channel=ticket.channel))]
        customer_lang = await self._customer_language(ticket)
        await send(ticket.chat_id, Reply(self.ctx.tr(customer_lang, "ticket.reply_to_customer", ticket=ticket.id,
                                                     text=text)))
        await self.ctx.services.aftersales.answer_ticket(ticket.id, mask_codes(text))
        log.info("event=ticket.answered ticket=%s merchant=%s", ticket.id, msg.user_id)
        return [Reply(self._t(lang, "ticket.replied", ticket=ticket.id, user=f"{ticket.channel}:{ticket.user_id}"))]

    async def close(self, msg: Incoming, lang: str, ticket_id: int) -> list[Reply]:
        ticket = await self.ctx.services.aftersales.ticket(ticket_id)
        if ticket is None or not await self.ctx.services.aftersales.close_ticket(ticket_id):
            return [Reply(self._t(lang, "ticket.unknown", ticket=ticket_id))]
        send = self.ctx.senders.get(ticket.channel)
        if send is not None:
            customer_lang = await self._customer_language(ticket)
            try:
                await send(ticket.chat_id, Reply(self.ctx.tr(customer_lang, "ticket.closed_customer",
                                                             ticket=ticket.id)))
            except Exception:  # noqa: BLE001 - the ticket is closed either way; the merchant is told below
                log.warning("event=ticket.close_notice_failed ticket=%s", ticket.id, exc_info=True)
        log.info("event=ticket.closed ticket=%s merchant=%s", ticket.id, msg.user_id)
        return [Reply(self._t(lang, "ticket.closed", ticket=ticket.id))]

    async def replace(self, msg: Incoming, lang: str, args: list[str]) -> list[Reply]:
        """A new code from stock for the code of a bad-code report (or the given item), in one store transaction;
        the customer gets it through the outbox (a resend of the order) and the report is closed."""
        if not args or len(args) > 2 or (len(args) == 2 and not args[1].isdigit()):
            return [Reply(self._t(lang, "ticket.usage_full"))]
        try:
            item_no = int(args[1]) if len(args) == 2 else None
            order, done = await self.ctx.services.aftersales.replace_code(args[0], item_no, msg.user_id)
        except (ReplaceWhichItem, NoReplacementStock, AlreadyReplaced) as exc:
            return [Reply(self._t(lang, exc.message_id, **exc.params))]
        assert done.replaced is not None
        replaced, closed = done.replaced, [f"#{t}" for t in done.closed_tickets]
        send = self.ctx.senders.get(order.channel)
        if send is not None:
            await self.ctx.load_language(order.channel, order.user_id)
            customer_lang = self.ctx.language(order.channel, order.user_id, order.language)
            try:
                await send(order.chat_id, Reply(self.ctx.tr(customer_lang, "ticket.replaced_customer",
                                                            ref=order.ref)))
            except Exception:  # noqa: BLE001 - the new code still goes out through the outbox
                log.warning("event=ticket.replace_notice_failed order_id=%s", order.id, exc_info=True)
        self.ctx.spawn(self.ctx.delivery.run_once())  # the resend row: the customer gets the new code now
        return [Reply(self._t(lang, "ticket.replaced", ref=order.ref, old=replaced.old_code_id,
                              new=replaced.new_code_id, tickets=", ".join(closed) or "-"))]

    async def _customer_language(self, ticket: Ticket) -> str:
        await self.ctx.load_language(ticket.channel, ticket.user_id)
        return self.ctx.language(ticket.channel, ticket.user_id, ticket.language)
