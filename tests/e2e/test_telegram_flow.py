"""How the Telegram shop feels to its buyers (issue 13 §2 and §4): menus move on in place, the answer to a
buyer's own tap is never held back by the per-chat pace, and one flooding user slows nobody else down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from bot.composition import build_context, build_shop
from bot.demo import seed_demo
from bot.jobs import JobStatus, run_jobs
from bot.settings import Settings, TelegramSettings
from bot.telegram import TelegramRuntime, build_telegram
from tests.e2e.telegram_process import telegram_bot_process
from tests.e2e.walker import Walker
from tests.fakes.telegram_bot_api import FakeTelegram

BUYER = 3001


@contextlib.asynccontextmanager
async def paced_bot(tmp_path, fake: FakeTelegram) -> AsyncIterator[TelegramRuntime]:
    """The bot in this process with Telegram's real pace: one message per second per chat after a burst of 4."""
    tg = TelegramSettings(token=fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url,
                          per_chat_interval_s=1.0, per_chat_burst=4)
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'shop.db'}",
                                     telegram=tg, default_language="en"))
    await seed_demo(shop)
    runtime = build_telegram(shop, build_context(shop))
    stop, status = asyncio.Event(), JobStatus()
    await runtime.start()
    jobs = asyncio.create_task(run_jobs(shop, stop, status, delivery_every=0.05, expire_every=0.2))
    try:
        yield runtime
    finally:
        stop.set()
        await jobs
        await runtime.stop()
        await shop.close()


async def test_walking_the_menus_to_the_invoice_edits_one_message_and_never_waits_for_the_pace(tmp_path, fake):
    async with paced_bot(tmp_path, fake) as runtime:
        walk = await Walker(fake, BUYER).buy("charge-walk")
        pacer = runtime.adapter.sender.pacer
        assert walk.steps == ["shop", "cat:1", "prod:1", "sku:1", "qty:1:1", "buy:1:1:45"]
        # /start answered with one menu message, which then moved on in place five times
        assert (walk.edits, walk.new_messages) == (5, 3)  # + the invoice and the code message
        menus = [p for m, p in fake.calls if m == "editMessageText" and int(p["chat_id"]) == BUYER]
        assert len({int(p["message_id"]) for p in menus}) == 1
        assert pacer.chat_waits == 0  # no answer to the buyer's own tap waited for the per-chat pace
        assert (await runtime.adapter.ctx.services.lookup.by_ref(walk.ref)).state.value in ("delivering", "delivered")


FLOOD_UPDATES, FLOOD_S = 300, 2.0
CHAT_BURST, CHAT_PER_S = 20, 1.0  # the default rules: chat_burst 20, chat_per_minute 60
SLOW_DOWN = "sending messages too fast"
#: buyers measured alone and during the flood (medians compared): one every quarter second, all within the flood
BUYERS, BUYERS_EVERY_S = 8, 0.25


def _to(fake: FakeTelegram, chat: int, since: int, methods: tuple[str, ...]) -> list[dict]:
    return [p for m, p in fake.calls[since:] if m in methods and int(p.get("chat_id", 0)) == chat]


async def _quiet(fake: FakeTelegram, chat: int, for_s: float, limit_s: float) -> None:
    """Until nothing has been sent to `chat` for `for_s` seconds."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while asyncio.get_running_loop().time() < deadline:
        before = len(_to(fake, chat, 0, ("sendMessage", "editMessageText", "sendInvoice", "sendDocument")))
        await asyncio.sleep(for_s)
        if len(_to(fake, chat, 0, ("sendMessage", "editMessageText", "sendInvoice", "sendDocument"))) == before:
            return
    raise AssertionError(f"chat {chat} still receiving after {limit_s}s")


async def _flood(fake: FakeTelegram, flooder: int, menu_id: int) -> tuple[float, set[str]]:
    """300 updates in 2 s from one user, messages and button presses alternating: how long it took, the presses."""
    loop = asyncio.get_running_loop()
    start, presses = loop.time(), set()
    for i in range(FLOOD_UPDATES):
        await asyncio.sleep(max(0.0, start + i * FLOOD_S / FLOOD_UPDATES - loop.time()))
        if i % 2:
            presses.add(fake.press_button(flooder, menu_id, "shop"))
        else:
            fake.send_text(flooder, "/start")
    return loop.time() - start, presses


async def _purchases(fake: FakeTelegram, users: range, every_s: float) -> list[float]:
    """One buyer after another, each starting `every_s` after the one before: how long each purchase took."""
    async def one(n: int, user: int) -> float:
        await asyncio.sleep(n * every_s)
        return (await Walker(fake, user).buy(f"charge-{user}")).code_s

    return list(await asyncio.gather(*(one(n, user) for n, user in enumerate(users))))


async def _first_reply(fake: FakeTelegram, user: int, after_s: float) -> float:
    await asyncio.sleep(after_s)
    walker = Walker(fake, user)
    started = asyncio.get_running_loop().time()
    fake.send_text(user, "/start")
    await walker._next()
    return asyncio.get_running_loop().time() - started


async def _flood_round(fake: FakeTelegram, flooder: int, newcomer: int, buyers: int) -> tuple[list[float], list[float]]:
    """Buyers alone, then the same number of buyers while `flooder` floods and a newcomer says /start: the
    purchase times of both. Checks what the flooder got and the newcomer's first reply."""
    alone = await _purchases(fake, range(buyers, buyers + BUYERS), BUYERS_EVERY_S)
    since = len(fake.calls)
    fake.send_text(flooder, "/start")  # the menu whose button the flooder presses
    _, menu = await Walker(fake, flooder)._next()
    (flood_s, presses), during, first_reply = await asyncio.gather(
        _flood(fake, flooder, int(menu["message_id"])),
        _purchases(fake, range(buyers + BUYERS, buyers + 2 * BUYERS), BUYERS_EVERY_S),
        _first_reply(fake, newcomer, 1.0))
    await _quiet(fake, flooder, 3.0, 60.0)

    answers = _to(fake, flooder, since, ("sendMessage", "editMessageText", "sendInvoice", "sendDocument"))
    # the flooder (README, Risk): answered within the flood bucket (its burst, plus one per second of
    # flooding), one "slow down" notice, then silence: 23 for 300 updates in 2 s; every spinner stopped
    bound = CHAT_BURST + round(flood_s * CHAT_PER_S) + 1
    assert bound == 23
    assert len([p for p in answers if SLOW_DOWN in p.get("text", "")]) == 1
    assert len(answers) <= bound, (len(answers), bound)
    assert presses <= {p["callback_query_id"] for m, p in fake.calls[since:] if m == "answerCallbackQuery"}
    assert first_reply <= 1.0  # a newcomer is answered within a second
    return alone, during


@pytest.mark.solo  # compares purchase times with and without the flood: run alone, not beside other tests
async def test_one_flooding_user_gets_a_bounded_answer_and_slows_nobody_down(tmp_path, fake):
    # a purchase is 8 messages and edits: the overall pace is raised so that eight buyers in two seconds do not
    # share Telegram's 30 per second among themselves (the window is tested in tests/handlers/test_telegram_pacing.py)
    async with telegram_bot_process(tmp_path, fake, extra_codes=40, global_per_second="300"):
        await _purchases(fake, range(5000, 5001), 0)  # warm-up: first use of every code path
        # two rounds (alone, flood, alone, flood) by two flooders: a busy machine's drift is spread over both
        alone, during = await _flood_round(fake, 4001, 4002, 5100)
        more_alone, more_during = await _flood_round(fake, 4003, 4004, 5200)
        alone, during = sorted(alone + more_alone), sorted(during + more_during)
        # everyone else: a purchase takes at most 1.5x its time without the flood (medians)
        assert during[BUYERS] <= 1.5 * alone[BUYERS], (during, alone)
