"""Wiring of the risk module into the order flow: the engine built from settings, and the RiskHook that turns
its decisions into refusals (deny, challenge) or review holds.  Only the composition root sees both sides."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.settings import Settings
from fulfillment.errors import RiskChallenge, RiskDenied
from fulfillment.orders import CheckoutRequest
from risk.engine import Decision, RiskEngine, Signals
from risk.failover import FailoverLimiter
from risk.limiters import Limiter, MemoryLimiter
from risk.rules import parse_rules
from storage.protocol import Store
from storage.records import Order, Sku

log = logging.getLogger("kamibot.risk")


def build_limiter(settings: Settings) -> Limiter:
    if not settings.redis_url:
        return MemoryLimiter()
    from risk.redis_limiter import RedisLimiter

    timeout = settings.risk.check_timeout_ms / 1000
    fallback = MemoryLimiter() if settings.risk.redis_policy == "fail_open" else None
    return FailoverLimiter(RedisLimiter(settings.redis_url, timeout_s=timeout), fallback, timeout)


async def build_engine(settings: Settings, store: Store) -> RiskEngine:
    """Rules in force: the latest saved in the database; else the configured file; else the shipped defaults."""
    book = None
    if settings.risk.rules_file is not None:
        book = parse_rules(settings.risk.rules_file.read_text(encoding="utf-8"))
    engine = RiskEngine(store, build_limiter(settings), book)
    await engine.load()
    return engine


def _refuse(decision: Decision) -> None:
    if decision.action == "deny":
        raise RiskDenied("risk: " + ",".join(decision.reasons))
    if decision.action == "challenge":
        raise RiskChallenge("risk: " + ",".join(decision.reasons), seconds=decision.retry_after_s)


class EngineHook:
    """fulfillment.orders.RiskHook (and payments.DeliveryRisk) over the rule engine."""

    def __init__(self, engine: RiskEngine, fingerprint: Callable[[str], str]) -> None:
        self.engine = engine
        #: keyed hash of a payer identity (chat channels: the chat account pays, so it is the default payer)
        self.fingerprint = fingerprint

    def _fp(self, channel: str, user_id: str, given: str) -> str:
        return given or self.fingerprint(f"{channel}:{user_id}")

    async def before_reservation(self, request: CheckoutRequest, sku: Sku, amount: int,
                                 currency: str) -> tuple[str, ...]:
        decision = await self.engine.evaluate("reserve", Signals(
            request.channel, request.user_id, sku.id, amount, currency, request.quantity, sku.slug, request.ip,
            self._fp(request.channel, request.user_id, request.fingerprint)))
        _refuse(decision)
        return decision.reasons if decision.action == "review" else ()

    async def on_reserved(self, order: Order, review: tuple[str, ...]) -> None:
        await self.engine.hold_for_review(order.id, review)

    async def before_payment(self, order: Order, ip: str, fingerprint: str) -> None:
        decision = await self.engine.evaluate("payment", self._signals(order, ip, fingerprint))
        _refuse(decision)
        if decision.action == "review":
            await self.engine.hold_for_review(order.id, decision.reasons)

    async def before_delivery(self, order: Order, fingerprint: str,
                              flagged: tuple[str, ...] | None = None) -> tuple[str, ...]:
        decision = await self.engine.evaluate("paid", self._signals(order, "", fingerprint))
        # the money is already taken: anything but allow is the merchant's call (approve, or reject = refund)
        reasons = decision.reasons if decision.action != "allow" else ()
        # a hold asked before payment (risk_flagged note): given when the caller read it with the order
        held = flagged if flagged is not None else await self.engine.review_reasons(order.id)
        if held:
            reasons = (*held, *reasons)
        return reasons

    def _signals(self, order: Order, ip: str, fingerprint: str) -> Signals:
        return Signals(order.channel, order.user_id, order.sku_id, order.amount, order.currency, order.quantity,
                       "", ip, self._fp(order.channel, order.user_id, fingerprint), order.id)
