"""The configured policy when the shared limiter (Redis) is unreachable or slow: fail open onto an in-process
limiter, or fail closed.  Each check is time-boxed; an outage is logged once when it starts and once when it ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from redis.exceptions import RedisError

from risk.limiters import Limiter, LimiterUnavailable, Op, Outcome, Plan

log = logging.getLogger("kamibot.risk")


class FailoverLimiter:
    def __init__(self, primary: Limiter, fallback: Limiter | None, timeout_s: float = 0.5) -> None:
        self.primary = primary
        self.fallback = fallback  # None: fail closed
        self.timeout_s = timeout_s
        self.down = False
        self.outages = 0

    async def apply(self, ops: list[Op], now: float, commit: bool = True) -> Outcome:
        return await self._guarded(lambda limiter: limiter.apply(ops, now, commit))

    async def apply_plan(self, plan: Plan, values: Mapping[str, str], amount: int, currency: str,
                         now: float) -> Outcome:
        return await self._guarded(lambda limiter: limiter.apply_plan(plan, values, amount, currency, now))

    async def _guarded(self, call: Callable[[Limiter], Awaitable[Outcome]]) -> Outcome:
        try:
            outcome = await asyncio.wait_for(call(self.primary), self.timeout_s)
        except (RedisError, OSError, TimeoutError) as exc:
            if not self.down:
                self.down = True
                self.outages += 1
                log.warning("event=risk.limiter_down policy=%s error=%s",
                            "fail_open" if self.fallback else "fail_closed", type(exc).__name__)
            if self.fallback is None:
                raise LimiterUnavailable("shared limiter unavailable") from None
            return await call(self.fallback)
        if self.down:
            self.down = False
            log.warning("event=risk.limiter_recovered")
        return outcome

    async def close(self) -> None:
        await self.primary.close()
        if self.fallback is not None:
            await self.fallback.close()
