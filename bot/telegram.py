"""The Telegram channel, built from settings and run in polling or webhook mode (part of the composition root)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

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
from handlers.telegram.request import AiohttpRequest

log = logging.getLogger("kamibot.telegram")
ALLOWED_UPDATES = ["message", "callback_query", "pre_checkout_query"]


@dataclass
class TelegramRuntime:
    app: Application[Any, Any, Any, Any, Any, Any]
    adapter: TelegramBot
    mode: str
    secret: str

    async def start(self) -> None:
        await self.app.initialize()
        await self.app.start()
        if self.mode == "polling" and self.app.updater is not None:
            await self.app.updater.start_polling(allowed_updates=ALLOWED_UPDATES)
        log.info("event=telegram.started mode=%s", self.mode)

    async def stop(self) -> None:
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()

    async def feed(self, data: dict[str, Any]) -> None:
        """A webhook body: parsed by PTB and queued; the HTTP answer does not wait for the handlers."""
        await self.app.update_queue.put(Update.de_json(data, self.app.bot))


def build_telegram(shop: Shop, ctx: ShopContext) -> TelegramRuntime:
    # PTB 22's documented opt-in: RetryAfter.retry_after as a timedelta (its coming default) instead of an int
    # with a deprecation warning on every 429; handlers/telegram/channel.py reads either
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    t = shop.settings.telegram
    builder = (ApplicationBuilder().token(t.token.get_secret_value()).base_url(t.base_url)
               .base_file_url(t.base_file_url).concurrent_updates(UpdateIntake(256))
               .request(AiohttpRequest(pool_size=64)).get_updates_request(AiohttpRequest(pool_size=1)))
    if t.mode == "webhook":
        builder = builder.updater(None)
    app = builder.build()
    sender = TelegramSender(app.bot, Pacer(t.per_chat_interval_s, t.global_per_second, t.per_chat_burst))
    ctx.merchants[CHANNEL] = {str(i) for i in t.admin_ids}
    alerts = TelegramAlerts(ctx, sender, t.admin_ids)
    adapter = TelegramBot(ctx, Conversation(ctx, flood_control=False), app, sender, alerts, t.notify_paid_orders)
    adapter.register()
    shop.channels[CHANNEL] = TelegramChannel(ctx, sender)
    shop.providers["telegram"] = StarsProvider(app.bot)
    shop.delivery.alerts = alerts
    ctx.broadcasters[CHANNEL] = TelegramBroadcaster(shop.store, sender)
    ctx.senders[CHANNEL] = sender.send
    return TelegramRuntime(app, adapter, t.mode, t.webhook_secret.get_secret_value())


async def set_webhook(shop: Shop, url: str) -> None:
    t = shop.settings.telegram
    if not t.webhook_secret.get_secret_value():
        raise ValueError("set KAMIBOT_TELEGRAM__WEBHOOK_SECRET first: every webhook request is checked against it")
    bot = Bot(t.token.get_secret_value(), base_url=t.base_url, base_file_url=t.base_file_url,
              request=AiohttpRequest(pool_size=1))
    async with bot:
        await bot.set_webhook(url, secret_token=t.webhook_secret.get_secret_value(), allowed_updates=ALLOWED_UPDATES)
