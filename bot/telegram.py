"""The Telegram channel, built from settings and run in polling or webhook mode (part of the composition root)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from telegram import Bot, Update
from telegram.ext import Application, ApplicationBuilder

from bot.composition import Shop
from handlers.context import ShopContext
from handlers.router import Conversation
from handlers.telegram.adapter import TelegramBot
from handlers.telegram.broadcast import TelegramBroadcaster
from handlers.telegram.channel import CHANNEL, StarsProvider, TelegramAlerts, TelegramChannel, TelegramSender
from handlers.telegram.intake import UpdateIntake
from handlers.telegram.pacing import Pacer
from handlers.telegram.payments import carries_payment
from handlers.telegram.polling import PaymentSafePoller, PollingLease
from handlers.telegram.request import AiohttpRequest
from handlers.telegram.stars import StarsRecovery

log = logging.getLogger("kamibot.telegram")
ALLOWED_UPDATES = ["message", "callback_query", "pre_checkout_query"]
#: how long a webhook answer waits for its update to hold its user's turn (several instances only); past it the
#: update is answered while it still waits, and its order against the user's next update, should that land on
#: another instance, is no longer kept (a turn held that long is an exception: a slow supplier, a lost holder)
TURN_WAIT_S = 5.0
#: the instances sending for this bot each hold a lease named so (SenderShare)
SENDER_LEASE = "telegram.sender:"


class Leases(Protocol):
    async def try_lease(self, name: str, holder: str, until: datetime, now: datetime) -> bool: ...
    async def release_lease(self, name: str, holder: str) -> None: ...
    async def count_leases(self, prefix: str, now: datetime) -> int: ...


class SenderShare:
    """Telegram's overall limits (about 30 messages a second, 1000 paid broadcasts) are per bot: N instances each
    pacing at the whole rate would send N times too much and meet 429s. Every instance holds a lease
    `telegram.sender:<holder>` renewed each tick (it lapses three ticks after a process dies) and keeps its pacer
    to 1/N of the rate, N being the live leases. The count lags a joining or dying instance by up to a tick."""

    def __init__(self, store: Leases, pacer: Pacer, holder: str, every: float = 5.0) -> None:
        self.store, self.pacer, self.every = store, pacer, every
        self.name = f"{SENDER_LEASE}{holder}"
        self.holder = holder

    async def tick(self) -> int:
        now = datetime.now(UTC)
        await self.store.try_lease(self.name, self.holder, now + timedelta(seconds=3 * self.every), now)
        self.pacer.share(await self.store.count_leases(SENDER_LEASE, now))
        return 0

    async def release(self) -> None:
        await self.store.release_lease(self.name, self.holder)

    def job(self) -> tuple[str, float, Callable[[], Awaitable[int]]]:
        """Every instance runs it (not once_per_period): each renews its own lease."""
        return "telegram_share", self.every, self.tick


@dataclass
class TelegramRuntime:
    app: Application[Any, Any, Any, Any, Any, Any]
    adapter: TelegramBot
    mode: str
    secret: str
    poller: PaymentSafePoller
    recovery: StarsRecovery
    recovery_every: float
    intake: UpdateIntake
    share: SenderShare

    async def start(self) -> None:
        await self.app.initialize()
        await self.app.start()
        if self.mode == "polling":
            await self.poller.start()
        log.info("event=telegram.started mode=%s", self.mode)

    async def stop(self) -> None:
        await self.poller.stop()
        if self.app.running:
            await self.app.stop()  # handles what is queued
            await self.poller.confirm()
        if self.mode == "polling":
            await self.poller.release()
        await self.app.shutdown()
        with contextlib.suppress(Exception):  # a database already gone: the lease lapses by itself
            await self.share.release()

    async def feed(self, data: dict[str, Any]) -> bool:
        """A webhook body, parsed by PTB. A payment (pre-checkout query, successful or refunded payment) is
        handled before the HTTP answer: False = not recorded, answer an error so Telegram sends it again.
        Everything else is queued; the answer does not wait for its handlers."""
        update = Update.de_json(data, self.app.bot)
        if not carries_payment(update):
            # several instances: answer once the update holds its user's turn, so that the user's next update,
            # sent by Telegram after this answer to whichever instance, queues behind it (handlers/telegram/intake)
            shared = self.intake.in_order.shared is not None and update.effective_user is not None
            entered = self.intake.entered(update.update_id) if shared else None
            await self.app.update_queue.put(update)
            if entered is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(entered), TURN_WAIT_S)
            return True
        try:
            await self.adapter.payments.handle(update)
        except Exception:  # noqa: BLE001 - Telegram retries a failed webhook; the traceback carries ids only
            log.exception("event=telegram.payment_unrecorded update_id=%s", update.update_id)
            return update.pre_checkout_query is not None  # too late to answer it on a retry anyway
        return True

    def jobs(self) -> list[tuple[str, float, Callable[[], Awaitable[int]]]]:
        """The Stars recovery job for bot.jobs.run_jobs (none when switched off): finds Stars payments whose
        update was lost (getStarTransactions)."""
        return [("telegram_stars", self.recovery_every, self.recovery.tick)] if self.recovery_every else []


def polling_lease(shop: Shop) -> PollingLease:
    """The one-poller lease of this process in the shared database (handlers/telegram/polling.py)."""
    return PollingLease(shop.store, f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}")


def build_telegram(shop: Shop, ctx: ShopContext, lease: PollingLease | None = None) -> TelegramRuntime:
    """`lease`: the polling lease already taken (bot/server.py takes it before building the rest)."""
    # PTB 22's documented opt-in: RetryAfter.retry_after as a timedelta (its coming default) instead of an int
    # with a deprecation warning on every 429; handlers/telegram/channel.py reads either
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    t = shop.settings.telegram
    intake = UpdateIntake(256, turns=shop.turns)  # turns: one user's updates in order across instances
    builder = (ApplicationBuilder().token(t.token.get_secret_value()).base_url(t.base_url)
               .base_file_url(t.base_file_url).concurrent_updates(intake)
               .request(AiohttpRequest(pool_size=64)).get_updates_request(AiohttpRequest(pool_size=1))
               .updater(None))  # polling: PaymentSafePoller, which records payments before confirming them
    app = builder.build()
    sender = TelegramSender(app.bot, Pacer(t.per_chat_interval_s, t.global_per_second, t.per_chat_burst))
    ctx.merchants[CHANNEL] = {str(i) for i in t.admin_ids}
    alerts = TelegramAlerts(ctx, sender, t.admin_ids)
    adapter = TelegramBot(ctx, Conversation(ctx, flood_control=False), app, sender, alerts, t.notify_paid_orders)
    adapter.register()
    shop.channels[CHANNEL] = TelegramChannel(ctx, sender)
    shop.providers["telegram"] = StarsProvider(app.bot)
    shop.delivery.alerts = alerts
    ctx.broadcasters[CHANNEL] = TelegramBroadcaster(shop.store, sender, paid=t.allow_paid_broadcast)
    ctx.senders[CHANNEL] = sender.send
    # one polling instance per bot: the lease in the shared database refuses a second one (PollingTaken)
    poller = PaymentSafePoller(app.bot, app.update_queue, adapter.payments.handle, ALLOWED_UPDATES,
                               lease=lease or polling_lease(shop))
    recovery = StarsRecovery(shop.store, sender.api, adapter.payments, timedelta(seconds=t.stars_recovery_grace_s))
    share = SenderShare(shop.store, sender.pacer, f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}")
    return TelegramRuntime(app, adapter, t.mode, t.webhook_secret.get_secret_value(), poller, recovery,
                           t.stars_recovery_every_s, intake, share)


async def set_webhook(shop: Shop, url: str) -> None:
    t = shop.settings.telegram
    if not t.webhook_secret.get_secret_value():
        raise ValueError("set KAMIBOT_TELEGRAM__WEBHOOK_SECRET first: every webhook request is checked against it")
    bot = Bot(t.token.get_secret_value(), base_url=t.base_url, base_file_url=t.base_file_url,
              request=AiohttpRequest(pool_size=1))
    async with bot:
        await bot.set_webhook(url, secret_token=t.webhook_secret.get_secret_value(), allowed_updates=ALLOWED_UPDATES)
