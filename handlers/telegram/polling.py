"""getUpdates polling that never confirms a payment it has not recorded.

Telegram counts every update below the next `getUpdates` offset as delivered and never sends it again
(https://core.telegram.org/bots/api#getupdates). PTB's Updater queues a batch and asks for the next one at once,
so a crash while the batch waits in the queue loses its payments for good. Here the payment updates of a batch
(pre-checkout queries, successful and refunded payments) are handled before the next request moves the offset
past them; everything else is queued for the Application as PTB's Updater does. A payment that could not be
recorded (database down) holds the offset: the batch is fetched again after a pause, and the updates already
handled from it are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from telegram import Bot, Update
from telegram.error import TelegramError

from handlers.telegram.payments import carries_payment

log = logging.getLogger("kamibot.telegram")
MAX_PAUSE = 30.0


class PaymentSafePoller:
    def __init__(self, bot: Bot, queue: asyncio.Queue[object], handle_payment: Callable[[Update], Awaitable[None]],
                 allowed_updates: Sequence[str], timeout: int = 10) -> None:
        self.bot = bot
        self.queue = queue
        self.handle_payment = handle_payment
        self.allowed_updates = list(allowed_updates)
        self.timeout = timeout
        self.offset = 0
        self._handled: set[int] = set()  # ids at or above the offset already queued or recorded
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        await self.bot.delete_webhook(drop_pending_updates=False)  # getUpdates is refused while a webhook is set
        self._task = asyncio.get_running_loop().create_task(self._run(), name="telegram.polling")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

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
