"""Chat flood control: who may be answered now, and the one "slow down" notice of a flood.

The count is the rule engine's token bucket per user (`chat_burst`, then `chat_per_minute`; shared by all
processes when Redis is on). A message over it is dropped, not queued. The first drop of a flood earns
one notice; later drops are silent until the user has stayed within the limit for `quiet_s` (by default
the time the bucket takes to fill up again), so a steady flood at the refill rate gets one notice, not one
per second.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from handlers.context import ShopContext

MAX_TRACKED = 50_000


class Admission(enum.Enum):
    ANSWER = "answer"
    NOTICE = "notice"  # dropped; tell the user once to slow down
    DROP = "drop"  # dropped silently


class FloodGate:
    def __init__(self, ctx: ShopContext, quiet_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.quiet_s = quiet_s
        self.clock = clock
        self._last_drop: dict[tuple[str, str], float] = {}

    def _quiet(self) -> float:
        if self.quiet_s is not None:
            return self.quiet_s
        book = self.ctx.risk.book if self.ctx.risk is not None else None
        return book.chat_burst * 60 / book.chat_per_minute if book is not None else 20.0

    async def admit(self, channel: str, user_id: str) -> Admission:
        """Counts this message against the user's bucket (merchants are never limited)."""
        if self.ctx.risk is None or self.ctx.is_merchant(channel, user_id):
            return Admission.ANSWER
        if await self.ctx.risk.allow_message(channel, user_id):
            return Admission.ANSWER
        now, who = self.clock(), (channel, user_id)
        last = self._last_drop.get(who)
        self._last_drop[who] = now
        if len(self._last_drop) > MAX_TRACKED:
            quiet = self._quiet()
            self._last_drop = {k: t for k, t in self._last_drop.items() if now - t < quiet}
        if last is not None and now - last < self._quiet():
            return Admission.DROP
        return Admission.NOTICE
