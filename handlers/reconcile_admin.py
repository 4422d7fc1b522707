"""Merchant reconciliation commands in chat: /reconcile [wechatpay|telegram|supplier NAME] [YYYY-MM-DD],
/discrepancies [all], /discrepancy ID resolve NOTE…; and the notice that tells every merchant of new discrepancies,
once each. Every command is audited."""

from __future__ import annotations

import logging
import shlex

from fulfillment.errors import NotAllowed
from fulfillment.reconcile import Discrepancy, Kind, Outcome, ReconcileError, Reconciliation, parse_day
from handlers.context import ShopContext
from handlers.merchant import MerchantCommands
from handlers.types import Incoming, Reply

log = logging.getLogger("kamibot.merchant")
RECONCILE_COMMANDS = {"reconcile", "discrepancies", "discrepancy"}
MAX_TEXT = 3800  # a chat message holds 4096 characters; leave room for the header
KINDS = {k.value for k in Kind}


def _recon(ctx: ShopContext) -> Reconciliation:
    if ctx.reconcile is None:
        raise NotAllowed("reconciliation is not running in this process")
    return ctx.reconcile


def render(ctx: ShopContext, lang: str, d: Discrepancy) -> str:
    """One discrepancy in the merchant's language (amounts as money, kinds named)."""
    def money(amount: int | None) -> str:
        return "—" if amount is None else ctx.tr.money(lang, amount, d.currency or "CNY")

    kind = ctx.tr(lang, f"reconcile.kind.{d.kind}") if d.kind in KINDS else d.kind
    text = ctx.tr(lang, "reconcile.line", id=d.id, day=d.period, source=d.source, kind=kind, reference=d.reference,
                  order=d.order_ref or "—", expected=money(d.expected), actual=money(d.actual))
    if d.resolved_at is not None:
        text += " " + ctx.tr(lang, "reconcile.resolved_note", note=d.note)
    return text


def _chunks(lines: list[str]) -> list[str]:
    out, current = [], ""
    for line in lines:
        if current and len(current) + len(line) + 1 > MAX_TEXT:
            out.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    return [*out, current] if current else out


async def report_new(ctx: ShopContext) -> int:
    """Tell every merchant of every channel that can send about discrepancies not reported yet (each claimed once
    in the store, so several processes never tell twice). Nothing is claimed while no merchant can be reached."""
    reachable = [(channel, m) for channel, send in ctx.senders.items() for m in sorted(ctx.merchants.get(channel, ()))]
    if ctx.reconcile is None or not reachable:
        return 0
    found = await ctx.reconcile.to_report()
    if not found:
        return 0
    for channel, merchant in reachable:
        await ctx.load_language(channel, merchant)
        lang = ctx.language(channel, merchant, "")
        lines = [ctx.tr(lang, "reconcile.alert", count=len(found))] + [render(ctx, lang, d) for d in found]
        try:
            for text in _chunks(lines):
                await ctx.senders[channel](merchant, Reply(text))
        except Exception:  # noqa: BLE001 - one unreachable merchant must not stop the others
            log.warning("event=reconcile.alert_failed channel=%s merchant=%s", channel, merchant)
    log.info("event=reconcile.reported count=%s", len(found))
    return len(found)


class MerchantReconcile(MerchantCommands):
    async def handle(self, msg: Incoming, lang: str, command: str, rest: str) -> list[Reply]:
        await self.ctx.services.audit.record(msg.channel, msg.user_id, command, rest[:200])
        try:
            args = shlex.split(rest) if rest else []
        except ValueError:
            args = rest.split()
        try:
            if command == "reconcile" and args:
                return await self._run(msg, lang, args)
            if command == "discrepancies" and args in ([], ["all"]):
                return self._list(lang, await _recon(self.ctx).discrepancies(include_resolved=bool(args)))
            if command == "discrepancy" and len(args) >= 3 and args[1] == "resolve" and args[0].isdigit():
                note = rest.split("resolve", 1)[1]
                d = await _recon(self.ctx).resolve(int(args[0]), msg.channel, msg.user_id, note)
                return [Reply(self._t(lang, "reconcile.resolved", id=d.id))]
        except ReconcileError as exc:
            return [Reply(self._t(lang, exc.message_id, **exc.params))]
        return [Reply(self._t(lang, "reconcile.help", sources=", ".join(await self._sources())))]

    async def _sources(self) -> list[str]:
        recon = self.ctx.reconcile
        if recon is None:
            return []
        names = list(recon.sources)
        if recon.supplier_names is not None:
            names += [f"supplier {n}" for n in await recon.supplier_names()]
        return names

    async def _run(self, msg: Incoming, lang: str, args: list[str]) -> list[Reply]:
        source, rest = args[0].lower(), args[1:]
        if source == "supplier":
            if not rest:
                raise ReconcileError("reconcile.unknown_source", "supplier needs a name", source="supplier")
            source, rest = f"supplier:{rest[0]}", rest[1:]
        if len(rest) > 1:
            raise ReconcileError("reconcile.bad_date", "one date at most", date=" ".join(rest)[:20])
        day = parse_day(rest[0]) if rest else None
        outcome = await _recon(self.ctx).run(source, day, msg.channel, msg.user_id)
        self.ctx.spawn(report_new(self.ctx))  # the new ones go to every merchant, once
        return [Reply(self._summary(lang, outcome))]

    def _summary(self, lang: str, o: Outcome) -> str:
        if not o.checked and not o.found:
            return self._t(lang, "reconcile.empty", source=o.source, day=o.day.isoformat())
        return self._t(lang, "reconcile.summary", source=o.source, day=o.day.isoformat(), checked=o.checked,
                       found=o.found, new=len(o.new), fees=o.fees_corrected)

    def _list(self, lang: str, found: list[Discrepancy]) -> list[Reply]:
        if not found:
            return [Reply(self._t(lang, "reconcile.none"))]
        return [Reply(text) for text in _chunks([render(self.ctx, lang, d) for d in found])]
