"""getUpdates polling that never confirms a payment it has not recorded.

Telegram counts every update below the next `getUpdates` offset as delivered and never sends it again
(https://core.telegram.org/bots/api#getupdates). PTB's Updater queues a batch and asks for the next one at once,
so a crash while the batch waits in the queue loses its payments for good. Here the payment updates of a batch
(pre-checkout queries, successful and refunded payments) are handled before the next request moves the offset
past them; everything else is queued for the Application as PTB's Updater does. A payment that could not be
recorded (database down) holds the offset: the batch is fetched again after a pause, and the updates already
handled from it are skipped.

Polling is for ONE instance. Telegram answers a second concurrent `getUpdates` with 409 Conflict ("terminated by
other getUpdates request; make sure that only one bot instance is running"), and the two would take turns
losing updates' order between them. So the polling instance holds a lease in the shared database
(`PollingLease`, renewed while it polls); a second one refuses to start with `PollingTaken`. Several
instances use webhook mode (KAMIBOT_TELEGRAM__MODE=webhook), where any instance takes any update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from telegram import Bot, Update
from telegram.error import Conflict, TelegramError

from handlers.telegram.payments import carries_payment

log = logging.getLogger("kamibot.telegram")
MAX_PAUSE = 30.0
POLLING_LEASE = "telegram.polling"


class Leases(Protocol):
    async def try_lease(self, name: str, holder: str, until: datetime, now: datetime) -> bool: ...
    async def release_lease(self, name: str, holder: str) -> None: ...
    async def kv_get(self, key: str, now: datetime) -> str | None: ...
    async def kv_put(self, key: str, value: str, expires_at: datetime | None) -> None: ...


class PollingTaken(ValueError):
    """Another instance polls this bot (a ValueError: the CLI prints it as a refusal and exits with 2)."""


class PollingLease:
    """The one-poller lease in the shared database: taken before polling starts, renewed every `ttl`/3."""

    def __init__(self, shared: Leases, holder: str, ttl: timedelta = timedelta(seconds=30)) -> None:
        self.shared = shared
        self.holder = holder
        self.ttl = ttl

    async def take(self) -> None:
        now = datetime.now(UTC)
        if await self.shared.try_lease(POLLING_LEASE, self.holder, now + self.ttl, now):
            # who holds it, for the refusal of the next one (the lease row itself has no reader verb)
            await self.shared.kv_put(f"{POLLING_LEASE}.holder", self.holder, now + self.ttl)
            return
        other = await self.shared.kv_get(f"{POLLING_LEASE}.holder", now) or "another instance"
        if other != "another instance" and self._dead(other):
            # the holder was this host's process that crashed (a restart after SIGKILL, a container restarted
            # with the same pid): its lease must not keep the restarted shop from polling for the rest of its ttl
            log.warning("event=telegram.polling_lease_taken_over reason=holder_process_gone")
            await self.shared.release_lease(POLLING_LEASE, other)
            if await self.shared.try_lease(POLLING_LEASE, self.holder, now + self.ttl, now):
                await self.shared.kv_put(f"{POLLING_LEASE}.holder", self.holder, now + self.ttl)
                return
        raise PollingTaken(
            f"Telegram polling is already running in {other} (lease {POLLING_LEASE!r} in the shared database, "
            f"renewed every {int(self.ttl.total_seconds() // 3)} s). Only one instance may poll: run the others "
            "with KAMIBOT_TELEGRAM__MODE=webhook, or stop that instance (a killed one's lease expires within "
            f"{int(self.ttl.total_seconds())} s).")

    def _dead(self, other: str) -> bool:
        """Whether holder `other` ("host:pid:nonce", bot/telegram.py) is a process of this host that is gone."""
        host, _, rest = other.partition(":")
        pid_text, _, _ = rest.partition(":")
        mine = self.holder.partition(":")[0]
        if host != mine or not pid_text.isdigit():
            return False  # another machine's instance: only its lease's expiry tells
        pid = int(pid_text)
        if pid == os.getpid():
            return True  # our own pid under another nonce: a previous run of this process slot
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, someone else's
        return False

    async def renew(self) -> bool:
        now = datetime.now(UTC)
        if not await self.shared.try_lease(POLLING_LEASE, self.holder, now + self.ttl, now):
            return False
        await self.shared.kv_put(f"{POLLING_LEASE}.holder", self.holder, now + self.ttl)
        return True

    async def release(self) -> None:
        await self.shared.release_lease(POLLING_LEASE, self.holder)


class PaymentSafePoller:
    def __init__(self, bot: Bot, queue: asyncio.Queue[object], handle_payment: Callable[[Update], Awaitable[None]],
                 allowed_updates: Sequence[str], timeout: int = 10, lease: PollingLease | None = None) -> None:
        self.bot = bot
        self.lease = lease
        self.queue = queue
        self.handle_payment = handle_payment
        self.allowed_updates = list(allowed_updates)
        self.timeout = timeout
        self.offset = 0
        self._handled: set[int] = set()  # ids at or above the offset already queued or recorded
        self._task: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.lease is not None:
            await self.lease.take()  # PollingTaken: another instance polls (taken again: renewing our own)
        await self.bot.delete_webhook(drop_pending_updates=False)  # getUpdates is refused while a webhook is set
        self._task = asyncio.get_running_loop().create_task(self._run(), name="telegram.polling")
        if self.lease is not None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep(), name="telegram.polling_lease")

    async def stop(self) -> None:
        for task in (self._keeper, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._keeper = None

    async def release(self) -> None:
        """Give the lease back (after the last confirming getUpdates): the next instance may poll at once."""
        if self.lease is not None:
            with contextlib.suppress(Exception):  # unreleased, it expires after its ttl
                await self.lease.release()

    async def _keep(self) -> None:
        """Renew the lease while polling; a lease lost (the database unreachable past its ttl, and another
        instance took it) stops this poller rather than fight the other one over getUpdates."""
        assert self.lease is not None
        every = self.lease.ttl.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                kept = await self.lease.renew()
            except Exception as exc:  # noqa: BLE001 - the lease outlives a renewal or two; try again
                log.warning("event=telegram.polling_lease_renew_failed error=%s", type(exc).__name__)
                continue
            if not kept:
                log.error("event=telegram.polling_lease_lost action=stop_polling")
                if self._task is not None:
                    self._task.cancel()
                return

    async def confirm(self) -> None:
        """After the queued updates were handled (graceful stop): tell Telegram, so they do not come again."""
        if self.offset:
            with contextlib.suppress(TelegramError):
                await self.bot.get_updates(offset=self.offset, limit=1, timeout=0)

    async def _run(self) -> None:
        pause = 0.5
        while True:
            try:
                updates = await self.bot.get_updates(offset=self.offset or None, timeout=self.timeout,
                                                     allowed_updates=self.allowed_updates)
            except Conflict:  # 409: a webhook is set, or another getUpdates consumer polls this bot
                log.error("event=telegram.poll_conflict reason=another_consumer_or_webhook")
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE)
                continue
            except Exception as exc:  # noqa: BLE001 - polling outlives any bad answer; type only: URLs hold the token
                log.warning("event=telegram.poll_failed error=%s", type(exc).__name__)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE)
                continue
            if await self.take(updates):
                pause = 0.5
            else:
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE)

    async def take(self, updates: Sequence[Update]) -> bool:
        """Queue the batch, record its payments, then move the offset: past the batch when every payment was
        recorded, else to the first payment that was not (False: fetch it again after a pause)."""
        fresh = [u for u in updates if u.update_id not in self._handled]
        payments = [u for u in fresh if carries_payment(u)]
        for update in fresh:
            if not carries_payment(update):
                await self.queue.put(update)
                self._handled.add(update.update_id)
        outcomes = await asyncio.gather(*(self._record(u) for u in payments))
        failed = [u.update_id for u, ok in zip(payments, outcomes, strict=True) if not ok]
        self._handled.update(u.update_id for u, ok in zip(payments, outcomes, strict=True) if ok)
        if failed:
            self.offset = min(failed)
        elif updates:
            self.offset = max(u.update_id for u in updates) + 1
        self._handled = {i for i in self._handled if i >= self.offset}
        return not failed

    async def _record(self, update: Update) -> bool:
        try:
            await self.handle_payment(update)
        except Exception:  # noqa: BLE001 - kept for the next fetch; the traceback carries ids only
            log.exception("event=telegram.payment_unrecorded update_id=%s", update.update_id)
            # a pre-checkout query cannot wait for another round (Telegram's 10 s); unanswered, no money moves
            return update.pre_checkout_query is not None
        return True
