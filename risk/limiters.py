"""Rate limiters behind one interface: sliding-window counts and sums, distinct members per window, token buckets.

A check is a batch of operations applied atomically: every operation computes the value it *would* have;
if none exceeds its limit (and `commit` is asked) all of them are counted, otherwise none is — a refused
attempt does not use up anybody's quota.  `MemoryLimiter` (one process) and `RedisLimiter` (one Lua script,
one round trip, shared by all processes) implement the same arithmetic; one conformance suite runs on both.

Sliding windows use the two-bucket estimate (the previous fixed window weighted by how much of it still
overlaps the sliding one): O(1) memory per key, exact while a key has no previous window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

_PLAN_FIELD = re.compile(r"^[A-Za-z0-9_:.-]*$")
_BAD = re.compile(r"[\x00-\x1f\x7f]")  # control characters (tabs, newlines) never belong in a key or member


@dataclass(frozen=True, slots=True)
class Count:
    """Events (cost 1) or amounts (cost = amount) of `key` within the last `window_s` seconds."""

    key: str
    window_s: int
    cost: int = 1
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Distinct:
    """Distinct members of `key` within the current fixed window of `window_s` seconds (users per IP per day)."""

    key: str
    member: str
    window_s: int
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Bucket:
    """Token bucket: `burst` tokens, refilled at `rate` per second; an operation takes `cost` tokens."""

    key: str
    rate: float
    burst: int
    cost: int = 1


Op = Count | Distinct | Bucket


@dataclass(frozen=True, slots=True)
class Outcome:
    #: per operation: the count/sum/distinct number including this attempt; for buckets the tokens left after it
    values: tuple[int, ...]
    exceeded: tuple[bool, ...]
    committed: bool

    @property
    def allowed(self) -> bool:
        return not any(self.exceeded)


@dataclass(frozen=True, slots=True)
class PlanRule:
    """One counting rule of a plan: its ops are built from the signal values at check time."""

    kind: str  # "v" velocity (count 1), "a" amount (count the amount, one currency), "d" distinct
    key_base: str
    dimension: str  # user | ip | fp | sku | global
    of: str  # distinct: the member's dimension
    window_s: int
    limit: int | None
    currency: str = ""


@dataclass(frozen=True)
class Plan:
    """The counting rules of one stage, compiled once; the Redis backend resolves them inside its script."""

    rules: tuple[PlanRule, ...]

    def __post_init__(self) -> None:
        # the Redis backend writes these fields into its script's source: only plain characters
        for r in self.rules:
            for part in (r.kind, r.key_base, r.dimension, r.of, r.currency):
                if not _PLAN_FIELD.match(part):
                    raise ValueError("plan fields must be letters, digits and _:.-")

    def ops(self, values: Mapping[str, str], amount: int, currency: str) -> list[Op | None]:
        """The operations of this check (None where a rule does not apply: value missing, other currency)."""
        out: list[Op | None] = []
        for r in self.rules:
            dim = values.get(r.dimension, "")
            if not dim:
                out.append(None)
            elif r.kind in ("v", "f"):  # f: failed payments, only read here (cost 0)
                out.append(Count(f"{r.key_base}:{dim}", r.window_s, 1 if r.kind == "v" else 0, r.limit))
            elif r.kind == "a":
                out.append(Count(f"{r.key_base}:{dim}", r.window_s, amount, r.limit) if currency == r.currency
                           else None)
            else:
                member = values.get(r.of, "")
                out.append(Distinct(f"{r.key_base}:{dim}", member, r.window_s, r.limit) if member else None)
        return out


async def apply_plan_with(limiter: Limiter, plan: Plan, values: Mapping[str, str], amount: int, currency: str,
                          now: float) -> Outcome:
    """A plan through plain ops: rules that do not apply get value -1 (never over a positive threshold)."""
    return await apply_some(limiter, plan.ops(values, amount, currency), now)


async def apply_some(limiter: Limiter, planned: list[Op | None], now: float) -> Outcome:
    """Apply the operations that are there as one check; a None slot answers value -1, not exceeded."""
    ops = [op for op in planned if op is not None]
    outcome = await limiter.apply(ops, now) if ops else Outcome((), (), True)
    return spread(planned, ops, outcome)


def spread(planned: list[Op | None], ops: list[Op], outcome: Outcome) -> Outcome:
    """The outcome of `ops` (the planned operations that are there) laid out over the planned slots."""
    if len(ops) == len(planned):
        return outcome
    it = iter(zip(outcome.values, outcome.exceeded, strict=True))
    values_out: list[int] = []
    exceeded_out: list[bool] = []
    for op in planned:
        value, over = next(it) if op is not None else (-1, False)
        values_out.append(value)
        exceeded_out.append(over)
    return Outcome(tuple(values_out), tuple(exceeded_out), outcome.committed)


class LimiterUnavailable(Exception):
    """The shared backend could not answer (in time)."""


class Limiter(Protocol):
    async def apply(self, ops: list[Op], now: float, commit: bool = True) -> Outcome: ...
    async def apply_plan(self, plan: Plan, values: Mapping[str, str], amount: int, currency: str,
                         now: float) -> Outcome:
        """A rule plan for one check (always committing); one value and flag per plan rule, -1 where it
        does not apply."""
        ...

    async def close(self) -> None: ...


def validate(ops: list[Op]) -> None:
    for op in ops:
        if not op.key or len(op.key) > 512 or _BAD.search(op.key):
            raise ValueError("limiter key must be 1-512 printable characters")
        if isinstance(op, Bucket):
            if op.rate <= 0 or op.burst <= 0 or op.cost <= 0:
                raise ValueError("bucket rate, burst and cost must be positive")
            continue
        if op.window_s <= 0:
            raise ValueError("window must be positive")
        if op.limit is not None and op.limit < 0:
            raise ValueError("limit must not be negative")
        if isinstance(op, Count):
            if op.cost < 0:
                raise ValueError("cost must not be negative")
        elif not op.member or len(op.member) > 512 or _BAD.search(op.member):
            raise ValueError("a distinct member must be 1-512 printable characters")


class MemoryLimiter:
    """In-process backend (the embedded default): dicts with lazy expiry, pruned every few thousand checks."""

    PRUNE_EVERY = 4096

    def __init__(self) -> None:
        self._counts: dict[str, tuple[float, float]] = {}  # key:bucket -> (value, expires_at)
        self._sets: dict[str, tuple[set[str], float]] = {}
        self._buckets: dict[str, tuple[float, float, float]] = {}  # key -> (tokens, at, expires_at)
        self._ops = 0

    async def apply(self, ops: list[Op], now: float, commit: bool = True) -> Outcome:
        return self._apply(ops, now, commit)

    def _apply(self, ops: list[Op], now: float, commit: bool) -> Outcome:
        validate(ops)
        values: list[int] = []
        exceeded: list[bool] = []
        for op in ops:
            value, over = self._peek(op, now)
            values.append(value)
            exceeded.append(over)
        ok = commit and not any(exceeded)
        if ok:
            for op in ops:
                self._commit(op, now)
        self._ops += 1
        if self._ops % self.PRUNE_EVERY == 0:
            self.prune(now)
        return Outcome(tuple(values), tuple(exceeded), ok)

    async def apply_plan(self, plan: Plan, values: Mapping[str, str], amount: int, currency: str,
                         now: float) -> Outcome:
        # apply_plan_with's arithmetic, without its two coroutine layers (every risk check passes here)
        planned = plan.ops(values, amount, currency)
        ops = [op for op in planned if op is not None]
        return spread(planned, ops, self._apply(ops, now, True) if ops else Outcome((), (), True))

    def _count(self, key: str, now: float) -> float:
        entry = self._counts.get(key)
        return entry[0] if entry and entry[1] > now else 0.0

    def _peek(self, op: Op, now: float) -> tuple[int, bool]:
        if isinstance(op, Count):
            b = math.floor(now / op.window_s)
            elapsed = now - b * op.window_s
            estimate = (self._count(f"{op.key}:{b}", now)
                        + self._count(f"{op.key}:{b - 1}", now) * (1 - elapsed / op.window_s) + op.cost)
            return math.floor(estimate), op.limit is not None and estimate > op.limit
        if isinstance(op, Distinct):
            entry = self._sets.get(f"{op.key}:{math.floor(now / op.window_s)}")
            members = entry[0] if entry and entry[1] > now else set()
            n = len(members) + (op.member not in members)
            return n, op.limit is not None and n > op.limit
        tokens = self._tokens(op, now)
        return math.floor(tokens - op.cost), tokens < op.cost

    def _tokens(self, op: Bucket, now: float) -> float:
        entry = self._buckets.get(op.key)
        if entry is None or entry[2] <= now:
            return float(op.burst)
        tokens, at, _ = entry
        return min(float(op.burst), tokens + max(0.0, now - at) * op.rate)

    def _commit(self, op: Op, now: float) -> None:
        if isinstance(op, Count):
            if op.cost == 0:
                return  # a read: nothing to count, no key to keep
            key = f"{op.key}:{math.floor(now / op.window_s)}"
            b_end = (math.floor(now / op.window_s) + 2) * op.window_s
            self._counts[key] = (self._count(key, now) + op.cost, b_end)
        elif isinstance(op, Distinct):
            b = math.floor(now / op.window_s)
            key = f"{op.key}:{b}"
            entry = self._sets.get(key)
            if entry is None or entry[1] <= now:
                entry = (set(), (b + 1) * op.window_s)
                self._sets[key] = entry
            entry[0].add(op.member)
        else:
            tokens = self._tokens(op, now) - op.cost
            self._buckets[op.key] = (tokens, now, now + op.burst / op.rate + 1)

    def prune(self, now: float) -> None:
        self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        self._sets = {k: v for k, v in self._sets.items() if v[1] > now}
        self._buckets = {k: v for k, v in self._buckets.items() if v[2] > now}

    def size(self) -> int:
        return len(self._counts) + len(self._sets) + len(self._buckets)

    async def close(self) -> None:
        return None
