"""handlers/telegram/broadcast.py over the fake Bot API enforcing Telegram's sending limit (30 messages in any
second; with allow_paid_broadcast up to 1000): a paid broadcast goes with the flag above the free rate and is never
refused, a free one stays under the limit without it, and deliveries overtake a paid broadcast."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from telegram import Bot

from fulfillment.delivery import RetryLater
from fulfillment.orders import STATE_GROUPS
from handlers.telegram.broadcast import TelegramBroadcaster
from handlers.telegram.channel import CHANNEL, TelegramSender
from handlers.telegram.pacing import Lane, Pacer
from handlers.telegram.request import AiohttpRequest
from handlers.types import Reply
from storage.sqlite import SqliteStore
from tests.fakes.telegram_bot_api import FakeTelegram

FIRST_USER = 700_000


@pytest.fixture(autouse=True)
def _timedelta_retry_after(monkeypatch):
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # as bot/telegram.py opts in


@pytest.fixture
async def fake():
    server = FakeTelegram()
    server.broadcast_limit = 30
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def customers(tmp_path):
    store = await SqliteStore(tmp_path / "shop.db", states=STATE_GROUPS).open()
    await store.migrate()

    async def add(n: int) -> SqliteStore:
        now = datetime.now(UTC)
        for k in range(n):
            user = str(FIRST_USER + k)
            await store.touch_user(CHANNEL, user, user, now)
        return store

    yield add
    await store.close()


def _bot(fake: FakeTelegram) -> Bot:
    return Bot(fake.token, base_url=fake.base_url, request=AiohttpRequest(pool_size=64),
               get_updates_request=AiohttpRequest(pool_size=1))


def _peak_per_second(times: list[float]) -> int:
    return max(sum(1 for u in times if t <= u < t + 1.0) for t in times)


class Reports:
    def __init__(self) -> None:
        self.seen: list[tuple[int, int, bool]] = []

    async def __call__(self, sent: int, unreachable: int, finished: bool) -> None:
        self.seen.append((sent, unreachable, finished))


async def test_the_fake_refuses_free_messages_over_thirty_a_second(fake):
    async with _bot(fake) as bot:
        unpaced = TelegramSender(bot, Pacer(0.0, 1000.0))
        results = await asyncio.gather(*(unpaced.send(str(FIRST_USER + k), Reply("hi")) for k in range(40)),
                                       return_exceptions=True)
    assert sum(isinstance(r, RetryLater) for r in results) == 10


async def test_paid_broadcast_goes_with_allow_paid_broadcast_above_the_free_rate_and_is_never_refused(fake, customers):
    store = await customers(300)
    times: list[float] = []
    fake.listener = lambda m, p, at: times.append(at) if m == "sendMessage" else None
    report = Reports()
    async with _bot(fake) as bot:
        sender = TelegramSender(bot, Pacer(1.0, 30.0))
        await TelegramBroadcaster(store, sender, paid=True).broadcast("Sale!", report)
    sent = fake.sent("sendMessage")
    assert len(sent) == 300
    assert all(p.get("allow_paid_broadcast") is True for p in sent)
    assert {int(p["chat_id"]) for p in sent} == {FIRST_USER + k for k in range(300)}
    assert (fake.rate_refusals, fake.paid_broadcasts) == (0, 300)
    assert _peak_per_second(times) > 30
    assert report.seen[-1] == (300, 0, True)


async def test_free_broadcast_stays_within_the_limit_without_the_paid_flag(fake, customers):
    store = await customers(40)
    report = Reports()
    async with _bot(fake) as bot:
        sender = TelegramSender(bot, Pacer(1.0, 30.0))
        await TelegramBroadcaster(store, sender).broadcast("Sale!", report)
    sent = fake.sent("sendMessage")
    assert len(sent) == 40
    assert all("allow_paid_broadcast" not in p for p in sent)
    assert (fake.rate_refusals, fake.paid_broadcasts) == (0, 0)
    assert report.seen[-1] == (40, 0, True)


async def test_deliveries_overtake_a_paid_broadcast_and_keep_the_whole_free_window(fake, customers):
    store = await customers(600)
    async with _bot(fake) as bot:
        pacer = Pacer(1.0, 30.0, paid_broadcast_per_second=300.0)  # a slower paid rate: the broadcast lasts 2 s
        sender = TelegramSender(bot, pacer)
        running = asyncio.get_running_loop().create_task(
            TelegramBroadcaster(store, sender, paid=True).broadcast("Sale!", Reports()))
        await fake.wait_for("sendMessage", lambda p: p["text"] == "Sale!")
        await asyncio.gather(*(sender.send(str(k), Reply("your code", codes=[f"C-{k}"]), Lane.DELIVERY)
                               for k in range(1, 26)))
        assert not running.done(), "the broadcast ended before the deliveries: nothing to overtake"
        await running
    order = [p.get("allow_paid_broadcast") is True for m, p in fake.calls if m == "sendMessage"]
    last_delivery = max(i for i, paid in enumerate(order) if not paid)
    assert order[last_delivery + 1:], "every delivery went out before the broadcast's end"
    assert pacer.global_waits == 0  # no delivery waited for a place in the free window
    assert fake.rate_refusals == 0


async def test_the_setting_sends_the_merchants_broadcast_as_a_paid_one(tmp_path, fake):
    from tests.e2e.test_telegram import MERCHANT, _say, running_bot

    async with running_bot(tmp_path, fake, allow_paid_broadcast=True):
        for user in (2001, 2002):
            await _say(fake, user, "/start", "Welcome")
        await _say(fake, MERCHANT, "/broadcast Fresh codes", "Broadcast started")
        await fake.wait_for("sendMessage", lambda p: "Broadcast finished" in p["text"])
    news = [p for p in fake.sent("sendMessage") if "Fresh codes" in p["text"]]
    assert sorted(int(p["chat_id"]) for p in news) == [2001, 2002]
    assert all(p["allow_paid_broadcast"] is True for p in news)
    assert all("allow_paid_broadcast" not in p for p in fake.sent("sendMessage") if p not in news)
