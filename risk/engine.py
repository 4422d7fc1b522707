"""The rule engine: for one order at one stage, allow / challenge / review / deny with reasons.

Stages: `reserve` (before stock is held: cheap limits and lists), `payment` (pre-checkout / pay page: full
rules), `paid` (after the payment, before delivery: payer-fingerprint signals).  Counting rules become one
batch of limiter operations (one Redis round trip); a deny rule over its threshold makes the limiter count
nothing, so a refused attempt uses no quota.  Every decision is written to the decision log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from risk.limiters import Bucket, Count, Limiter, LimiterUnavailable, Op, Plan, PlanRule, apply_some
from risk.netaddr import Network, in_networks, ip_key, parse_networks
from risk.rules import SEVERITY, Rule, RuleBook, RulesError, default_rules_text, parse_rules, with_threshold
from storage import events
from storage.events import EventType
from storage.protocol import Store
from storage.records import Order, RiskDecisionRecord, UserStats

log = logging.getLogger("kamibot.risk")
STATS_TTL_S = 30.0


@dataclass(frozen=True, slots=True)
class Signals:
    """What is known about one order attempt.  `fingerprint` is already a keyed hash; `ip` may be empty."""

    channel: str
    user_id: str
    sku_id: int
    amount: int
    currency: str
    quantity: int = 1
    sku_slug: str = ""
    ip: str = ""
    fingerprint: str = ""
    order_id: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # allow | challenge | review | deny
    score: int = 0
    reasons: tuple[str, ...] = ()
    #: challenge: seconds the customer still has to wait
    retry_after_s: int = 0

    @property
    def allowed(self) -> bool:
        return self.action == "allow"


ALLOW = Decision("allow")


@dataclass
class _Lists:
    block_users: set[str] = field(default_factory=set)
    allow_users: set[str] = field(default_factory=set)
    block_ips: list[Network] = field(default_factory=list)
    allow_ips: list[Network] = field(default_factory=list)
    block_fps: set[str] = field(default_factory=set)
    allow_fps: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule_id: str
    rule: Rule
    kind: str
    dimension: str
    of: str | None
    window_s: int
    limit: int | None  # only deny rules stop the counting
    skus: frozenset[str]


_LETTER = {"velocity": "v", "amount": "a", "distinct": "d", "failed_payments": "f"}


def _dimension_values(s: Signals) -> dict[str, str]:
    values = {"user": f"{s.channel}:{s.user_id}", "fp": s.fingerprint, "sku": str(s.sku_id), "global": "*"}
    try:
        values["ip"] = ip_key(s.ip) if s.ip else ""
    except ValueError:
        values["ip"] = ""  # a malformed address counts as none, never as a shared "" key
    return values


class DecisionLog:
    """Decisions are written in the background (a check never waits for the database); flush() drains.

    A batch waits up to LINGER_S for more rows, so a busy shop writes a few large transactions a second
    instead of one per handful of checks (each commit costs a thread hop and WAL pages of its own)."""

    BATCH = 500
    LINGER_S = 0.02

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[RiskDecisionRecord] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, record: RiskDecisionRecord) -> None:
        self._pending.append(record)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._pending:
                if len(self._pending) < self.BATCH:
                    await asyncio.sleep(self.LINGER_S)
                batch = self._pending
                if len(batch) > self.BATCH:
                    batch, self._pending = batch[:self.BATCH], batch[self.BATCH:]
                else:
                    self._pending = []
                try:
                    await self.store.record_risk_decisions(batch)
                except Exception:
                    log.exception("event=risk.decision_log_failed rows=%s", len(batch))
        finally:
            self._task = None

    async def flush(self) -> None:
        while self._task is not None:
            await asyncio.shield(self._task)
        if self._pending:
            await self._drain()


class RiskEngine:
    def __init__(self, store: Store, limiter: Limiter, book: RuleBook | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.limiter = limiter
        self.clock = clock
        self._judged: dict[str, list[_Compiled]] = {}
        self._plans: dict[str, tuple[Plan, list[_Compiled], bool]] = {}
        self.book = book or parse_rules(default_rules_text())
        self.decisions = DecisionLog(store)
        self._lists = _Lists()
        self._stats: dict[tuple[str, str], tuple[float, UserStats]] = {}
        self._compile_lists([])

    @property
    def book(self) -> RuleBook:
        return self._book

    @book.setter
    def book(self, book: RuleBook) -> None:
        """Rules are compiled per stage once, so an evaluation does no parsing or validation."""
        by_stage: dict[str, list[_Compiled]] = {}
        for rule_id, r in book.rules.items():
            if r.enabled:
                by_stage.setdefault(r.run_at, []).append(_Compiled(
                    rule_id, r, r.kind, r.dimension, r.of, r.window_s, r.threshold if r.action == "deny" else None,
                    frozenset(r.skus)))
        self._book = book
        # rules judged here from the customer's cached stats (new_user, refund_ratio, disputes), per stage
        self._judged = {stage: [c for c in compiled if c.kind not in _LETTER] for stage, compiled in by_stage.items()}
        # counting rules of a stage as one plan (resolved inside the Redis script: one small round trip);
        # a stage with SKU-filtered counting rules builds the plan's operations per check instead
        plans: dict[str, tuple[Plan, list[_Compiled], bool]] = {}
        for stage, compiled in by_stage.items():
            counting = [c for c in compiled if c.kind in _LETTER]
            if counting:
                plan = Plan(tuple(PlanRule(_LETTER[c.kind], f"{_LETTER[c.kind]}:{c.rule_id}", c.dimension,
                                           c.of or "", c.window_s, c.limit, c.rule.currency) for c in counting))
                plans[stage] = (plan, counting, any(c.skus for c in counting))
        self._plans = plans

    # -- rules and lists -------------------------------------------------------
    async def load(self) -> None:
        """The rules in force: the latest saved in the database, else the shipped defaults; plus list entries."""
        saved = await self.store.latest_risk_rules()
        if saved is not None:
            try:
                self.book = parse_rules(saved)
            except RulesError:
                log.exception("event=risk.saved_rules_invalid keeping=defaults")
        await self.reload_lists()

    async def reload_lists(self) -> None:
        self._compile_lists(await self.store.risk_lists())

    def _compile_lists(self, entries: list[tuple[str, str, str]]) -> None:
        base = self.book.lists
        lists = _Lists(set(base.block_users), set(base.allow_users), [], [], set(base.block_fps),
                       set(base.allow_fps))
        block_ips, allow_ips = list(base.block_ips), list(base.allow_ips)
        for kind, value, which in entries:
            if kind == "ip":
                (block_ips if which == "block" else allow_ips).append(value)
            elif kind in ("user", "fp"):
                getattr(lists, f"{which}_{kind}s").add(value)
        lists.block_ips = parse_networks(block_ips)
        lists.allow_ips = parse_networks(allow_ips)
        self._lists = lists

    async def replace_rules(self, text: str, actor: str) -> RuleBook:
        """Validate, save (audited) and apply a whole rules file; on error nothing changes."""
        book = parse_rules(text)
        now = datetime.now(UTC)
        await self.store.save_risk_rules(text, actor, now)
        await self.store.audit("risk", actor, "risk.rules", f"{len(book.rules)} rules", now)
        self.book = book
        await self.reload_lists()
        return book

    async def set_threshold(self, rule_id: str, threshold: int, actor: str) -> RuleBook:
        current = await self.store.latest_risk_rules() or default_rules_text()
        return await self.replace_rules(with_threshold(current, rule_id, threshold), actor)

    async def set_list(self, kind: str, value: str, which: str | None, actor: str) -> None:
        if kind not in ("user", "ip", "fp") or which not in ("block", "allow", None):
            raise ValueError("list kind must be user, ip or fp")
        if kind == "ip":
            parse_networks([value])
        now = datetime.now(UTC)
        await self.store.set_risk_list(kind, value, which, "", now)
        await self.store.audit("risk", actor, f"risk.{which or 'unlist'}", f"{kind} {value}", now)
        await self.reload_lists()

    async def record_dispute(self, order: Order, source: str, actor: str) -> bool:
        """A dispute (chargeback) against an order, audited; the customer's `disputes` rules see it at their next
        order (cached stats dropped). False: this order already had one (nothing changes)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        if not await self.store.record_dispute(order.id, source, now):
            return False
        await self.store.audit("risk", actor, "risk.dispute", f"order {order.ref} {source}", now)
        self._stats.pop((order.channel, order.user_id), None)
        return True

    async def decision_history(self, field: str, value: str, limit: int) -> list[RiskDecisionRecord]:
        """Latest decisions by `user` (channel:user_id), `ip` or `order` (the merchant's /risk log)."""
        return await self.store.risk_decisions(field, value, limit)

    # -- evaluation --------------------------------------------------------------
    async def evaluate(self, stage: str, s: Signals) -> Decision:
        try:
            decision = await self._evaluate(stage, s)
        except LimiterUnavailable:
            decision = Decision("deny", 0, ("limiter_unavailable",))
        self.decisions.add(RiskDecisionRecord(
            datetime.fromtimestamp(self.clock(), UTC), stage, s.channel, s.user_id, decision.action,
            decision.score, ",".join(decision.reasons), s.ip, s.fingerprint, s.order_id, s.sku_id))
        if decision.action != "allow":
            log.info("event=risk.%s stage=%s channel=%s user=%s order_id=%s reasons=%s", decision.action, stage,
                     s.channel, s.user_id, s.order_id, ",".join(decision.reasons))
        return decision

    def _listed(self, s: Signals) -> Decision | None:
        user = f"{s.channel}:{s.user_id}"
        lists = self._lists
        if user in lists.block_users:
            return Decision("deny", 100, ("blocklist:user",))
        if in_networks(s.ip, lists.block_ips):
            return Decision("deny", 100, ("blocklist:ip",))
        if s.fingerprint and s.fingerprint in lists.block_fps:
            return Decision("deny", 100, ("blocklist:fp",))
        if user in lists.allow_users or (s.fingerprint and s.fingerprint in lists.allow_fps):
            return Decision("allow", 0, ("allowlist",))
        if in_networks(s.ip, lists.allow_ips):
            return Decision("allow", 0, ("allowlist",))
        return None

    async def _evaluate(self, stage: str, s: Signals) -> Decision:
        listed = self._listed(s)
        if listed is not None:
            return listed
        now = self.clock()
        values = _dimension_values(s)
        hits: list[tuple[str, Rule]] = []
        stats: UserStats | None = None
        for c in self._judged.get(stage, ()):
            if (c.skus and s.sku_slug not in c.skus) or not values[c.dimension]:
                continue
            stats = stats or await self._user_stats(s.channel, s.user_id, now)
            if self._stats_hit(c.rule, s, stats, now):
                hits.append((c.rule_id, c.rule))
        hits += await self._counted(stage, s, values, now)
        if not hits:
            return ALLOW
        action = max((r.action for _, r in hits), key=SEVERITY.__getitem__)
        decision = Decision(action, min(100, sum(r.score for _, r in hits)), tuple(rid for rid, _ in hits))
        if action == "challenge":
            return await self._challenge(s, decision, now)
        return decision

    async def _counted(self, stage: str, s: Signals, values: dict[str, str], now: float) -> list[tuple[str, Rule]]:
        """The counting rules of the stage: one limiter call (a plan, or per-check operations)."""
        planned = self._plans.get(stage)
        if planned is None:
            return []
        plan, owners, filtered = planned
        if filtered:
            ops = [None if c.skus and s.sku_slug not in c.skus else op
                   for c, op in zip(owners, plan.ops(values, s.amount, s.currency), strict=True)]
            outcome = await apply_some(self.limiter, ops, now)
        else:
            outcome = await self.limiter.apply_plan(plan, values, s.amount, s.currency, now)
        return [(c.rule_id, c.rule) for c, value, exceeded in zip(owners, outcome.values, outcome.exceeded,
                                                                   strict=True) if exceeded or value > c.rule.threshold]

    @staticmethod
    def _stats_hit(rule: Rule, s: Signals, stats: UserStats, now: float) -> bool:
        if rule.kind == "new_user":
            if rule.min_amount and s.amount < rule.min_amount.get(s.currency, s.amount + 1):
                return False
            if stats.first_seen is None:
                return True
            return now - stats.first_seen.timestamp() < rule.threshold * 60
        if rule.kind == "disputes":
            return stats.disputes > rule.threshold
        # refund_ratio
        if stats.paid_orders < rule.min_orders:
            return False
        return stats.refunded_orders * 100 >= rule.threshold * stats.paid_orders

    async def _user_stats(self, channel: str, user_id: str, now: float) -> UserStats:
        key = (channel, user_id)
        cached = self._stats.get(key)
        if cached is not None and now - cached[0] < STATS_TTL_S:
            return cached[1]
        stats = await self.store.user_stats(channel, user_id)
        if len(self._stats) > 50_000:
            self._stats.clear()
        self._stats[key] = (now, stats)
        return stats

    async def _challenge(self, s: Signals, decision: Decision, now: float) -> Decision:
        """A cool-down: the first challenged attempt starts it; once it has passed the order may continue."""
        key = f"risk.challenge:{s.channel}:{s.user_id}"
        at = datetime.fromtimestamp(now, UTC)
        ready = await self.store.kv_get(key, at)
        if ready is None:
            cooldown = self.book.challenge_cooldown_s
            await self.store.kv_put(key, str(now + cooldown), at + timedelta(seconds=cooldown + 3600))
            return Decision("challenge", decision.score, decision.reasons, cooldown)
        wait = float(ready) - now
        if wait > 0:
            return Decision("challenge", decision.score, decision.reasons, int(wait) + 1)
        return Decision("allow", decision.score, (*decision.reasons, "challenge_passed"))

    async def record_failed_payment(self, s: Signals) -> None:
        """A payment attempt that failed (refused at pre-checkout, a payment error from the provider): counted for
        the `failed_payments` rules, read at their stage."""
        values = _dimension_values(s)
        # the same keys the stage's plan reads (its `f` rules), counted up by one
        ops: list[Op] = [Count(f"{r.key_base}:{values[r.dimension]}", r.window_s, 1)
                         for plan, _, _ in self._plans.values() for r in plan.rules
                         if r.kind == "f" and values[r.dimension]]
        if not ops:
            return
        try:
            await self.limiter.apply(ops, self.clock())
        except LimiterUnavailable:
            log.info("event=risk.failed_payment_not_counted reason=limiter_unavailable")

    async def allow_message(self, channel: str, user_id: str) -> bool:
        """Chat flood control: a token bucket per user, so one user cannot spend the bot's platform quota."""
        book = self.book
        op = Bucket(f"chat:{channel}:{user_id}", book.chat_per_minute / 60, book.chat_burst)
        try:
            return (await self.limiter.apply([op], self.clock())).allowed
        except LimiterUnavailable:
            return True  # flood control never silences customers because the shared limiter is down

    # -- review hold ---------------------------------------------------------------
    async def hold_for_review(self, order_id: int, reasons: tuple[str, ...]) -> None:
        """Risk rules asked to hold this order before payment: a `risk_flagged` note on it, read back when its
        payment arrives (the payment then goes to review instead of delivery)."""
        at = datetime.fromtimestamp(self.clock(), UTC)
        await self.store.add_order_note(order_id, events.risk_flagged(reasons=reasons), at)

    async def review_reasons(self, order_id: int) -> tuple[str, ...]:
        """The rule ids of the order's latest risk hold; () when it was never held."""
        flagged = await self.store.last_order_event(order_id, EventType.RISK_FLAGGED)
        return tuple(flagged.params["reasons"]) if flagged is not None else ()

    async def close(self) -> None:
        await self.decisions.flush()
        await self.limiter.close()
