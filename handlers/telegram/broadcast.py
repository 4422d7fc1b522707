"""/broadcast for Telegram: every reachable customer once, paced to Telegram's limits, retry_after honoured,
blocked users marked, progress reported to the merchant's chat.

A merchant who opts in to paid broadcasts (KAMIBOT_TELEGRAM__ALLOW_PAID_BROADCAST) sends them with
`allow_paid_broadcast` (https://core.telegram.org/bots/api#sendmessage: up to 1000 messages/s, 0.1 Star each from
the bot's balance) in their own pacing lane, several at once so that the round trip does not bound the rate;
deliveries keep the whole free window and their own connections either way (pacing.py, channel.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from fulfillment.delivery import PermanentFailure, RetryLater
from handlers.telegram.channel import CHANNEL, TelegramSender
from handlers.telegram.pacing import Lane
from handlers.types import Reply

log = logging.getLogger("kamibot.broadcast")
Report = Callable[[int, int, bool], Awaitable[None]]  # (sent, unreachable, finished)
PAGE = 500
PROGRESS_EVERY = 100
#: sends in flight at once: a free broadcast is held to a share of 30/s by the pacer anyway, a paid one needs more
#: than one round trip at a time to reach its rate
FREE_WORKERS, PAID_WORKERS = 2, 16


class BroadcastList(Protocol):
    """Who a broadcast reaches, and marking who blocked the bot: the shop's store satisfies it (passed by bot/)."""

    async def reachable_users(self, channel: str, after: str, limit: int) -> list[tuple[str, str]]: ...
    async def set_user_blocked(self, channel: str, user_id: str, blocked: bool) -> None: ...


class TelegramBroadcaster:
    def __init__(self, recipients: BroadcastList, sender: TelegramSender, paid: bool = False) -> None:
        self.recipients = recipients
        self.sender = sender
        self.lane = Lane.PAID_BROADCAST if paid else Lane.BROADCAST  # never ahead of a delivery
        self.workers = PAID_WORKERS if paid else FREE_WORKERS

    async def broadcast(self, text: str, report: Report) -> None:
        counts = [0, 0]  # sent, unreachable
        after = ""
        while users := await self.recipients.reachable_users(CHANNEL, after, PAGE):
            todo = iter(users)  # one iterator shared by the workers: each user is taken by one of them
            await asyncio.gather(*(self._work(todo, text, counts, report)
                                   for _ in range(min(self.workers, len(users)))))
            after = users[-1][0]
        log.info("event=broadcast.done sent=%s unreachable=%s paid=%s", counts[0], counts[1],
                 self.lane == Lane.PAID_BROADCAST)
        await report(counts[0], counts[1], True)

    async def _work(self, todo: Iterator[tuple[str, str]], text: str, counts: list[int], report: Report) -> None:
        for user_id, chat_id in todo:
            reached = await self._send(chat_id, text)
            counts[0 if reached else 1] += 1
            if not reached:
                await self.recipients.set_user_blocked(CHANNEL, user_id, True)
            if sum(counts) % PROGRESS_EVERY == 0:
                await report(counts[0], counts[1], False)

    async def _send(self, chat_id: str, text: str) -> bool:
        for _ in range(5):
            try:
                await self.sender.send(chat_id, Reply(text), self.lane)
            except RetryLater as exc:  # Telegram 429: wait exactly as long as asked
                await asyncio.sleep(exc.seconds)
                continue
            except PermanentFailure:
                return False
            return True
        return False
