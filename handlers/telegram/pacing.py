"""Sending pace for Telegram: token buckets per chat (a small burst, then about one message per second) and at
most about 30 messages in any second overall.

https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this: "In a single chat, avoid
sending more than one message per second. We may allow short bursts that go over this limit". So a chat's
first few messages go out at once (the answer to the buyer's own tap never waits) and only a longer run is
spread out. PTB's AIORateLimiter does not enforce the per-private-chat limit, so the sending layer does.
A menu that moves on in place (an edit) adds no message to the chat: edits have a bucket of their own per
chat, so a few taps are answered at once whatever the bot has just sent, and a user tapping without pause
is still held to about one edit per second.

The overall limit ("not more than 30 messages per second", same page) is a sliding window: a message goes at
once while fewer than 30 went out in the last second, so answers are not spaced 33 ms apart when the bot is
quiet. Fairness: a message first waits for its own chat's bucket and only then queues for the overall window.
A chat that has used its burst waits alone; it never holds a place in the overall queue (and so never delays
another chat) while it waits for its own tokens, and no chat can put more than its two bursts into the window
at once.

The overall queue has lanes (issue 17, "paid deliveries first"): when several messages wait for the window, a
place that frees goes to the best lane first (first come first served within a lane), so codes and payment
answers (DELIVERY) overtake menus (BROWSE), and broadcasts (BROADCAST) go last. Broadcasts also leave a fifth
of the window unused, so a delivery arriving while a broadcast runs finds room at once: broadcasts never delay
deliveries. Queued messages are released evenly spaced (1/30 s), not all at once when the window frees: a window
released in one lump frees again in one lump a second later, and a code arriving in between waited for the next
lump (benchmarks/telegram_walk.py --crowd 200: payment → code p50 0.54 s, p99 1.0 s; spaced 0.085 s, 0.22 s).

Paid broadcasts (https://core.telegram.org/bots/api#sendmessage, `allow_paid_broadcast`: "up to 1000 messages
per second, ignoring broadcasting limits for a fee of 0.1 Telegram Stars per message"): a merchant who opts in
sends broadcasts in the lane PAID_BROADCAST, which has a window of its own at that rate and never takes a place
in the free window, so deliveries and answers keep all of it. Each chat's own bucket still applies.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable

MAX_CHATS = 50_000
#: the overall window keeps at most this many send times (a very high rate gets a proportionally shorter window)
MAX_WINDOW = 1000


class Lane(enum.IntEnum):
    """Overall-window priority: the lower value goes first."""

    DELIVERY = 0  # codes, payment answers
    BROWSE = 1  # answers to taps and messages, merchant notices
    BROADCAST = 2  # the merchant's broadcasts: only what the others leave
    PAID_BROADCAST = 3  # broadcasts sent with allow_paid_broadcast: their own window, none of the free one


class ChatBuckets:
    """A token bucket per chat, kept as its theoretical arrival time (GCRA): full when the time has passed."""

    def __init__(self, interval: float, burst: int, clock: Callable[[], float]) -> None:
        self.interval = interval
        self.burst = max(1, burst)
        self.clock = clock
        self._tat: dict[str, float] = {}

    def reserve(self, chat_id: str) -> float:
        """Seconds until chat_id's bucket has a token; the token is taken at once (no await in between)."""
        now = self.clock()
        tat = max(self._tat.get(chat_id, now), now)
        send_at = max(now, tat - (self.burst - 1) * self.interval)
        self._tat[chat_id] = tat + self.interval
        if len(self._tat) > MAX_CHATS:  # a full bucket needs no entry
            self._tat = {c: t for c, t in self._tat.items() if t > now}
        return send_at - now


#: Telegram's rate for messages sent with allow_paid_broadcast
PAID_BROADCAST_PER_SECOND = 1000.0


class SlidingWindow:
    """At most `per_second` places in any window of a second, first come first served (the paid broadcasts' own)."""

    def __init__(self, per_second: float, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.size = max(1, min(math.ceil(per_second), MAX_WINDOW))
        self.span = self.size / per_second
        self.recent: deque[float] = deque(maxlen=self.size)

    def reserve(self) -> float:
        """Seconds until the window has room; the place is taken at once."""
        now = self.clock()
        slot = now
        if self.recent:
            slot = max(slot, self.recent[-1])
            if len(self.recent) == self.size:
                slot = max(slot, self.recent[0] + self.span)
        self.recent.append(slot)
        return slot - now


class Pacer:
    def __init__(self, per_chat_interval: float = 1.0, global_per_second: float = 30.0, burst: int = 4,
                 edit_burst: int = 5, clock: Callable[[], float] = time.monotonic,
                 paid_broadcast_per_second: float = PAID_BROADCAST_PER_SECOND) -> None:
        self.clock = clock
        self.global_per_second = global_per_second
        self.paid_broadcast_per_second = paid_broadcast_per_second
        self.paid_broadcasts = SlidingWindow(paid_broadcast_per_second, clock)
        self.messages = ChatBuckets(per_chat_interval, burst, clock)
        self.edits = ChatBuckets(per_chat_interval, edit_burst, clock)
        self._paced_at = -math.inf
        self._recent: deque[float] = deque(maxlen=1)
        self.shares = 1
        self._set_rate(global_per_second)
        self._queue: list[tuple[int, int, asyncio.Future[None]]] = []  # (lane, arrival, waiter): a heap
        self._arrivals = itertools.count()
        self._dispatcher: asyncio.Task[None] | None = None
        #: how often a message had to wait for its chat's bucket / for the overall window (tests and benchmarks)
        self.chat_waits = 0
        self.global_waits = 0

    def _set_rate(self, per_second: float) -> None:
        self._window_n = max(1, min(math.ceil(per_second), MAX_WINDOW))
        self._window_s = self._window_n / per_second
        #: queued messages go out at least this far apart: a full window released in one lump would free again in
        #: one lump a second later, and a delivery arriving between two lumps would wait for the next (up to 1 s)
        self._spacing = self._window_s / self._window_n
        self._recent = deque(self._recent, maxlen=self._window_n)  # the last places taken, oldest first
        #: broadcasts may fill the window only up to here, the rest stays free for deliveries and answers
        self._broadcast_n = max(1, self._window_n - max(1, self._window_n // 5)) if self._window_n > 1 else 1

    def share(self, instances: int) -> None:
        """Telegram's overall limits are per bot, not per process: with `instances` processes sending for one bot
        (webhook mode, bot/telegram.py counts them), this one keeps to its share of the overall and the paid
        broadcast rate. Per-chat buckets stay whole (a chat's messages mostly come from the instance handling
        that user's turn)."""
        instances = max(1, instances)
        if instances == self.shares:
            return
        self.shares = instances
        self._set_rate(self.global_per_second / instances)
        self.paid_broadcasts = SlidingWindow(self.paid_broadcast_per_second / instances, self.clock)

    def reserve(self, chat_id: str) -> float:
        return self.messages.reserve(chat_id)

    def reserve_global(self) -> float:
        """Seconds until the overall window has room; the place is taken at once (first come, first served)."""
        now = self.clock()
        slot = now
        if self._recent:
            slot = max(slot, self._recent[-1])
            if len(self._recent) == self._window_n:
                slot = max(slot, self._recent[0] + self._window_s)
        self._recent.append(slot)
        return slot - now

    async def wait(self, chat_id: str, lane: Lane = Lane.BROWSE) -> None:
        """Before a new message to chat_id."""
        await self._wait(self.messages.reserve(chat_id), lane)

    async def wait_edit(self, chat_id: str, lane: Lane = Lane.BROWSE) -> None:
        """Before an edit of a message in chat_id (a menu moving on in answer to the user's tap)."""
        await self._wait(self.edits.reserve(chat_id), lane)

    async def _wait(self, delay: float, lane: Lane) -> None:
        if delay > 0:
            self.chat_waits += 1
            await asyncio.sleep(delay)
        if lane == Lane.PAID_BROADCAST:
            if (paid := self.paid_broadcasts.reserve()) > 0:
                await asyncio.sleep(paid)
            return
        await self.acquire(lane)

    def _room_at(self, lane: int) -> float:
        """When the overall window has a place for `lane` (broadcasts see a smaller window)."""
        limit = self._broadcast_n if lane >= Lane.BROADCAST else self._window_n
        if len(self._recent) < limit:
            return -math.inf
        return self._recent[len(self._recent) - limit] + self._window_s

    async def acquire(self, lane: Lane = Lane.BROWSE) -> None:
        """A place in the overall window: at once when there is room and nobody of this lane or a better one is
        waiting; otherwise in the queue, released by lane, then by arrival."""
        now = self.clock()
        best_waiting = self._queue[0][0] if self._queue else None
        if (best_waiting is None or best_waiting > lane) and self._room_at(lane) <= now:
            self._recent.append(now)
            return
        self.global_waits += 1
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (int(lane), next(self._arrivals), waiter))
        if self._dispatcher is not None and not self._dispatcher.done() and (
                best_waiting is not None and best_waiting > lane):
            self._dispatcher.cancel()  # it sleeps for a worse lane's (later) place: start again for this one
            self._dispatcher = None
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        await waiter

    async def _dispatch(self) -> None:
        """Release waiters one place at a time, best lane first; ends when nobody waits."""
        while self._queue:
            lane, _, waiter = self._queue[0]
            if waiter.done():  # its sender was cancelled
                heapq.heappop(self._queue)
                continue
            now = self.clock()
            due = max(self._room_at(lane), self._paced_at + self._spacing)
            if due > now:
                await asyncio.sleep(due - now)
                continue
            heapq.heappop(self._queue)
            # spaced from the previous due time, not from when this wake-up happened: a late wake-up (a busy event
            # loop) does not slow every later message down; after a quiet spell, one at once and then spaced
            self._paced_at = max(due, now - self._spacing)
            self._recent.append(now)
            waiter.set_result(None)
