"""Merchant risk commands in chat: /risk rules|set|log|block|allow|unlist|dispute, and review decisions /approve,
/reject (also the approve/reject buttons of a review notice)."""

from __future__ import annotations

import logging
import shlex
from zoneinfo import ZoneInfo

from fulfillment.errors import BadQuantity, NotAllowed
from fulfillment.wholenumbers import parse_whole
from handlers.merchant import MerchantCommands
from handlers.types import Button, Incoming, Reply
from locales import Translator
from risk.engine import RiskEngine
from risk.rules import RulesError, summaries
from storage.records import Order, OrderState

log = logging.getLogger("kamibot.merchant")
LOG_LIMIT = 10
REVIEW_PAGE = 10


class MerchantRisk(MerchantCommands):
    def _engine(self) -> RiskEngine:
        if self.ctx.risk is None:
            raise NotAllowed("the risk engine is disabled (KAMIBOT_RISK__ENABLED=false)")
        return self.ctx.risk

    async def risk(self, msg: Incoming, lang: str, rest: str) -> list[Reply]:
        args = shlex.split(rest) if rest else []
        sub = args[0].lower() if args else "rules"
        engine = self._engine()
        actor = f"{msg.channel}:{msg.user_id}"
        if sub == "rules":
            return [Reply(self._rules_text(lang, engine))]
        if sub == "set" and len(args) == 3:
            threshold = _whole(args[2])  # 0 reaches the rules: allowed for a disputes rule only
            try:
                await engine.set_threshold(args[1], threshold, actor)
            except RulesError as exc:
                return [Reply(self._t(lang, "risk.rules_refused", error=str(exc)))]
            return [Reply(self._t(lang, "risk.threshold_set", rule=args[1], threshold=threshold))]
        if sub == "log" and len(args) == 3 and args[1] in ("user", "ip", "order"):
            return [Reply(await self._log_text(lang, args[1], args[2]))]
        if sub == "dispute" and len(args) == 2:
            return [Reply(await self._dispute(lang, engine, args[1], actor))]
        if sub in ("block", "allow", "unlist") and len(args) == 3 and args[1] in ("user", "ip", "fp"):
            await engine.set_list(args[1], args[2], None if sub == "unlist" else sub, actor)
            return [Reply(self._t(lang, f"risk.listed_{sub}", kind=args[1], value=args[2]))]
        return [Reply(self._t(lang, "risk.help"))]

    async def _dispute(self, lang: str, engine: RiskEngine, ref: str, actor: str) -> str:
        """A dispute (chargeback) the merchant saw in their payment provider's portal."""
        order = await self.aftersale.find(ref)
        if not await engine.record_dispute(order, "merchant", actor):
            return self._t(lang, "risk.dispute_exists", ref=order.ref)
        return self._t(lang, "risk.dispute_recorded", ref=order.ref, user=f"{order.channel}:{order.user_id}")

    def _rules_text(self, lang: str, engine: RiskEngine) -> str:
        lines = [self._t(lang, "risk.rules_title")]
        for r in summaries(engine.book):
            per = f"{r.of}/{r.dimension}" if r.of else r.dimension
            window = self._t(lang, "risk.window_all_time") if r.kind == "disputes" else r.window  # counted ever
            lines.append(self._t(lang, "risk.rule_line", rule=r.rule_id, kind=r.kind, per=per, window=window,
                                 threshold=r.threshold, action=r.action,
                                 off="" if r.enabled else self._t(lang, "risk.rule_off")))
        return "\n".join(lines)

    async def _log_text(self, lang: str, field: str, value: str) -> str:
        if field == "order":
            order = await self.aftersale.find(value)
            value = str(order.id)
        try:
            rows = await self._engine().decision_history(field, value, LOG_LIMIT)
        except ValueError:
            raise BadQuantity(f"bad {field} {value!r}") from None
        if not rows:
            return self._t(lang, "risk.log_empty")
        zone = ZoneInfo(self.ctx.timezone)
        lines = [self._t(lang, "risk.log_title", field=field, value=value)]
        for d in rows:
            lines.append(self._t(lang, "risk.log_line", at=d.at.astimezone(zone).strftime("%m-%d %H:%M:%S"),
                                 stage=d.stage, decision=d.decision, score=d.score, reasons=d.reasons or "-",
                                 user=f"{d.channel}:{d.user_id}", order=d.order_id or "-"))
        return "\n".join(lines)

    # -- review decisions --------------------------------------------------------
    async def review_queue(self, lang: str) -> list[Reply]:
        """Orders held for review, oldest first, each with approve / reject buttons."""
        held = await self.ctx.services.lookup.held_for_review(REVIEW_PAGE)
        if not held:
            return [Reply(self._t(lang, "risk.review_empty"))]
        replies = [Reply(self._t(lang, "risk.review_title", count=len(held)))]
        for order in held:
            who = f"{order.channel}:{order.user_id}"
            replies.append(Reply(self._t(lang, "risk.review_line", ref=order.ref, user=who,
                                         total=await self._paid_and_expected(lang, order),
                                         reasons=await self.ctx.services.lookup.review_reasons(order.id)),
                                 review_buttons(self.ctx.tr, lang, order.ref)))
        return replies

    async def _paid_and_expected(self, lang: str, order: Order) -> str:
        """The order's total, or what was actually paid next to it when the held payment differs."""
        expected = self.ctx.tr.money(lang, order.amount, order.currency)
        paid = next((p for p in await self.ctx.services.lookup.payment_records(order.id) if p.outcome == "review"),
                    None)
        if paid is None or (paid.amount, paid.currency) == (order.amount, order.currency):
            return expected
        return self._t(lang, "risk.paid_vs_expected", paid=self.ctx.tr.money(lang, paid.amount, paid.currency),
                       expected=expected)

    async def button(self, msg: Incoming, lang: str, arg: str) -> list[Reply]:
        verdict, _, ref = arg.partition(":")
        if verdict == "ok":
            return await self.approve(msg, lang, ref)
        if verdict == "no":
            return await self.reject(msg, lang, ref)
        return [Reply(self._t(lang, "error.bad_input"))]

    async def approve(self, msg: Incoming, lang: str, ref: str) -> list[Reply]:
        order = await self.aftersale.find(ref)
        if order.state != OrderState.REVIEW or not await self.ctx.orders.approve_review(
                order.id, f"{msg.channel}:{msg.user_id}"):
            raise NotAllowed(f"order {order.id} is {order.state}")
        await self.ctx.services.audit.record(msg.channel, msg.user_id, "approve", order.ref)
        self.ctx.spawn(self.ctx.delivery.run_once())  # the customer gets the codes now, not at the next poll
        return [Reply(self._t(lang, "risk.approved", ref=order.ref))]

    async def reject(self, msg: Incoming, lang: str, ref: str) -> list[Reply]:
        order = await self.aftersale.find(ref)
        if order.state != OrderState.REVIEW:
            raise NotAllowed(f"order {order.id} is {order.state}")
        await self.aftersale.request_refund(order.ref, msg.user_id)
        await self.ctx.services.audit.record(msg.channel, msg.user_id, "reject", order.ref)
        self.ctx.spawn(self.ctx.delivery.run_once())  # the refund row: money back, customer told
        return [Reply(self._t(lang, "risk.rejected", ref=order.ref))]


def review_buttons(tr: Translator, lang: str, ref: str) -> list[list[Button]]:
    """Approve / reject buttons of a review notice (the order ref is public; the merchant check is server-side)."""
    return [[Button(tr(lang, "risk.button_approve"), f"rv:ok:{ref}"),
             Button(tr(lang, "risk.button_reject"), f"rv:no:{ref}")]]


def _whole(text: str) -> int:
    return parse_whole(text, 0, 10**12 - 1, BadQuantity, "threshold")
