"""/broadcast for Telegram: every reachable customer once, paced to Telegram's limits, retry_after honoured,
blocked users marked, progress reported to the merchant's chat."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from fulfillment.delivery import PermanentFailure, RetryLater
from handlers.telegram.channel import CHANNEL, TelegramSender
from handlers.telegram.pacing import Lane
from handlers.types import Reply

log = logging.getLogger("kamibot.broadcast")
Report = Callable[[int, int, bool], Awaitable[None]]  # (sent, unreachable, finished)
PAGE = 500
PROGRESS_EVERY = 100


class BroadcastList(Protocol):
    """Who a broadcast reaches, and marking who blocked the bot: the shop's store satisfies it (passed by bot/)."""

    async def reachable_users(self, channel: str, after: str, limit: int) -> list[tuple[str, str]]: ...
    async def set_user_blocked(self, channel: str, user_id: str, blocked: bool) -> None: ...


class TelegramBroadcaster:
    def __init__(self, recipients: BroadcastList, sender: TelegramSender) -> None:
        self.recipients = recipients
        self.sender = sender

    async def broadcast(self, text: str, report: Report) -> None:
        sent = unreachable = 0
        after = ""
        while users := await self.recipients.reachable_users(CHANNEL, after, PAGE):
            for user_id, chat_id in users:
                if await self._send(chat_id, text):
                    sent += 1
                else:
                    unreachable += 1
                    await self.recipients.set_user_blocked(CHANNEL, user_id, True)
                if (sent + unreachable) % PROGRESS_EVERY == 0:
                    await report(sent, unreachable, False)
            after = users[-1][0]
        log.info("event=broadcast.done sent=%s unreachable=%s", sent, unreachable)
        await report(sent, unreachable, True)

    async def _send(self, chat_id: str, text: str) -> bool:
        for _ in range(5):
            try:
                await self.sender.send(chat_id, Reply(text), Lane.BROADCAST)  # never ahead of a delivery
            except RetryLater as exc:  # Telegram 429: wait exactly as long as asked
                await asyncio.sleep(exc.seconds)
                continue
            except PermanentFailure:
                return False
            return True
        return False
