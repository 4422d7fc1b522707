"""Background jobs: delivery worker, reservation expiry, recovery of recorded-but-unapplied payments.

Each job is idempotent (conditional updates, outbox leases), so several processes may run them at once.
A job that raises is logged and retried on its next tick, never silently dropped; each tick is recorded in
`JobStatus`, which /readyz reports, so a job that stopped running is visible.

Once across instances, job by job (each tick returns the work *this* process did, counted in
`JobStatus.work` and exported as `kamibot_job_work_total{job}`):
- delivery: outbox rows claimed with a lease (`claim_outbox`, SKIP LOCKED on PostgreSQL);
- expire: one conditional update of the expired reservations (`kb_expire` skips rows another holds);
- payments: `apply_payment` locks the event; an event another process applied counts as no work;
- ticket_sla: reminders claimed by once-keys (`claim_reminders`);
- procurement_resolve, restock, price_sync, wechatpay_reconcile (query/close), telegram_stars: under a named
  lease in the shared database (`try_lease`); the WeChat access token refresh likewise (handlers/wechat).
  Those leases are given back when a tick ends, so N instances would tick them N times a period (N supplier
  catalogue fetches, N payment queries of one trade): `once_per_period` also keeps them to one tick per
  period across instances, by a lease `job:<name>` left to expire after 0.9 of the period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.composition import Shop
from bot.settings import Settings
from handlers.context import ShopContext
from handlers.ticket_sla import remind_overdue

log = logging.getLogger("kamibot.jobs")
Job = tuple[str, float, Callable[[], Awaitable[int]]]


class Leases(Protocol):
    async def try_lease(self, name: str, holder: str, until: datetime, now: datetime) -> bool: ...


@dataclass
class JobStatus:
    last_ok: dict[str, float] = field(default_factory=dict)  # monotonic time of the last good tick
    runs: dict[str, int] = field(default_factory=dict)  # ticks run, good or failed (metrics)
    failures: dict[str, int] = field(default_factory=dict)
    work: dict[str, int] = field(default_factory=dict)  # units of work done by this process (metrics)
    intervals: dict[str, float] = field(default_factory=dict)

    def stale(self, now: float | None = None) -> list[str]:
        """Jobs that have not completed a tick for three of their intervals."""
        now = time.monotonic() if now is None else now
        return [name for name, every in self.intervals.items()
                if now - self.last_ok.get(name, 0.0) > 3 * every + 5]


async def _idle(stop: asyncio.Event, wake: asyncio.Event | None, seconds: float) -> None:
    """Wait `seconds`, or less when stopping or when work was announced (`wake`)."""
    if wake is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        return
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    _, pending = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    wake.clear()


async def _every(name: str, seconds: float, tick: Callable[[], Awaitable[int]], stop: asyncio.Event,
                 status: JobStatus, wake: asyncio.Event | None = None) -> None:
    status.intervals[name] = seconds
    while not stop.is_set():
        busy = 0
        status.runs[name] = status.runs.get(name, 0) + 1
        try:
            busy = await tick()
            status.last_ok[name] = time.monotonic()
            if busy:
                status.work[name] = status.work.get(name, 0) + busy
        except Exception:  # noqa: BLE001 - keep the job alive; the traceback carries ids only
            status.failures[name] = status.failures.get(name, 0) + 1
            log.exception("event=job.failed job=%s", name)
        if not busy:
            await _idle(stop, wake, seconds)


async def run_jobs(shop: Shop, stop: asyncio.Event, status: JobStatus, *, delivery_every: float = 0.2,
                   expire_every: float = 10, recover_every: float = 30,
                   extra: Sequence[tuple[str, float, Callable[[], Awaitable[int]]]] = ()) -> None:
    """Recover first (a crash may have left payments unapplied), then tick until `stop`.

    `extra` are (name, seconds, tick) jobs of optional features, e.g. WeChat Pay reconciliation."""
    recovered = await shop.payments.apply_pending()
    if recovered:
        status.work["payments"] = status.work.get("payments", 0) + recovered
    log.info("event=jobs.started")
    await asyncio.gather(
        # a payment applied in this process wakes the worker at once; the poll covers the other processes
        _every("delivery", delivery_every, shop.delivery.run_once, stop, status, shop.delivery.due),
        _every("expire", expire_every, shop.orders.expire_due, stop, status),
        _every("payments", recover_every, shop.payments.apply_pending, stop, status),
        *(_every(name, seconds, tick, stop, status) for name, seconds, tick in extra),
        # the daily reconciliation (leased: one process), when the chat context built it (bot/reconcile_cli.py)
        *([_every(*shop.reconcile.job(), stop, status)] if shop.reconcile is not None else []),
    )


def once_per_period(shared: Leases, holder: str, job: Job) -> Job:
    """`job` ticked by one instance per period: a tick first takes the lease `job:<name>` until 0.9 of the period
    from now and never gives it back (another instance's tick within the period skips, returning 0). The holder
    extends its own lease, so a busy job (a tick that found work ticks again at once) keeps going where it is."""
    name, seconds, tick = job

    async def guarded() -> int:
        now = datetime.now(UTC)
        if not await shared.try_lease(f"job:{name}", holder, now + timedelta(seconds=seconds * 0.9), now):
            return 0
        return await tick()

    return name, seconds, guarded


def ticket_sla_job(ctx: ShopContext, settings: Settings) -> tuple[str, float, Callable[[], Awaitable[int]]]:
    """The ticket SLA reminder as an `extra` job of run_jobs (handlers.ticket_sla)."""
    sla = timedelta(minutes=settings.aftersales.sla_minutes)

    async def tick() -> int:
        # the reminders sent (work once across processes); the next tick finds them claimed and idles
        return await remind_overdue(ctx, sla)

    return "ticket_sla", settings.aftersales.sla_check_seconds, tick
