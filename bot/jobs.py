"""Background jobs: delivery worker, reservation expiry, recovery of recorded-but-unapplied payments.

Each job is idempotent (conditional updates, outbox leases), so several processes may run them at once.
A job that raises is logged and retried on its next tick, never silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bot.composition import Shop

log = logging.getLogger("kamibot.jobs")


async def _every(name: str, seconds: float, tick: Callable[[], Awaitable[int]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        busy = 0
        try:
            busy = await tick()
        except Exception:  # noqa: BLE001 - keep the job alive; the traceback carries ids only
            log.exception("event=job.failed job=%s", name)
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=seconds)


async def run_jobs(shop: Shop, stop: asyncio.Event) -> None:
    """Recover first (a crash may have left payments unapplied), then tick forever until `stop`."""
    await shop.payments.apply_pending()
    log.info("event=jobs.started")
    await asyncio.gather(
        _every("delivery", 0.2, shop.delivery.run_once, stop),
        _every("expire", 10, shop.orders.expire_due, stop),
        _every("payments", 30, shop.payments.apply_pending, stop),
    )
