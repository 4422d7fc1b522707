"""Telegram with several instances (issue 17): in webhook mode the fake Bot API is the load balancer and pushes
one user's rapid taps to two instances alternately, and they are handled in the order they were sent; polling
stays with one instance, and a second polling instance refuses to start with a clear message."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import UTC, datetime

import pytest
from telegram import Bot
from telegram.error import Conflict

from bot.composition import build_shop
from bot.settings import RiskSettings, Settings
from bot.telegram import SENDER_LEASE
from handlers.telegram.polling import PaymentSafePoller, PollingLease, PollingTaken
from handlers.telegram.request import AiohttpRequest
from tests.conftest import REDIS_URL
from tests.e2e import instances
from tests.risk.conftest import redis_or_skip
from tests.storage.seed import make_shop

BUYER = 4242
TAPS = 10
PRICE = 50  # XTR per code (tests/storage/seed.py)


async def _seed(tmp_path, db_url) -> int:
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url, risk=RiskSettings(enabled=False)))
    try:
        seeded = await make_shop(shop.store, codes=TAPS * (TAPS + 1) // 2, vault=shop.vault)
    finally:
        await shop.close()
    return seeded.sku.id


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_one_users_rapid_taps_on_two_instances_are_handled_in_order(tmp_path, db_url, fake):
    await redis_or_skip()
    sku = await _seed(tmp_path, db_url)
    env = {**instances.telegram_env(fake), "KAMIBOT_REDIS_URL": REDIS_URL, "KAMIBOT_RISK__ENABLED": "false",
           "KAMIBOT_TELEGRAM__PER_CHAT_INTERVAL_S": "0"}
    async with instances.running(tmp_path, db_url, 2, **env) as running:
        fake.webhook = (f"{running[0].webhook}", instances.SECRET)  # as `kamibot telegram set-webhook` would
        fake.balance([i.webhook for i in running])
        # when the buyer taps "buy N" for N = 1..TAPS as fast as Telegram takes the taps
        for quantity in range(1, TAPS + 1):
            fake.press_button(BUYER, 1, f"buy:{sku}:{quantity}")
        invoices = []
        for _ in range(100):
            invoices = [p for m, p in fake.calls if m == "sendInvoice" and int(p["chat_id"]) == BUYER]
            if len(invoices) == TAPS:
                break
            await asyncio.sleep(0.1)
        shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url, risk=RiskSettings(enabled=False)))
        try:
            orders = [await shop.store.order_by_ref(str(p["payload"])) for p in invoices]
            # both instances send for the bot: each holds its sender lease and paces at half the overall rate
            assert await shop.store.count_leases(SENDER_LEASE, datetime.now(UTC)) == 2
        finally:
            await shop.close()
    # then the taps went to both instances, alternately ...
    landed = [url for _, url in sorted(fake.pushed)]
    assert landed == [running[n % 2].webhook for n in range(TAPS)]
    # ... and were handled one after the other in the order sent: each tap's order and its invoice before the
    # next tap's order (the reservations' ids and the invoices both run 1..TAPS)
    assert [sum(p["amount"] for p in inv["prices"]) for inv in invoices] == [PRICE * q for q in range(1, TAPS + 1)]
    assert [o.quantity for o in orders] == list(range(1, TAPS + 1))
    assert [o.id for o in orders] == sorted(o.id for o in orders)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # the lease on SQLite too: the test below
async def test_a_second_polling_instance_refuses_to_start(tmp_path, db_url, fake):
    await _seed(tmp_path, db_url)
    env = instances.telegram_env(fake, mode="polling")
    async with instances.running(tmp_path, db_url, 1, **env):
        await fake.wait_for("deleteWebhook")  # the first one polls
        second = instances.start(tmp_path, db_url, **env)
        _, err = await asyncio.to_thread(second.proc.communicate, timeout=30)
        assert second.proc.returncode == 2
        assert "Telegram polling is already running in" in err
        assert "KAMIBOT_TELEGRAM__MODE=webhook" in err
        assert fake.conflicts == 0  # it never fought the first one over getUpdates
    # the first one stopped gracefully and gave the lease back: a new polling instance may start at once
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url, risk=RiskSettings(enabled=False)))
    try:
        await PollingLease(shop.store, "the next instance").take()
    finally:
        await shop.close()


async def test_two_pollers_get_409_conflict_as_from_telegram(fake, caplog):
    """Without the lease (two shops on two databases, one bot token): Telegram's own 409 ends the older long
    poll, and each poller logs the conflict clearly instead of passing updates between them silently."""
    bots = [Bot(fake.token, base_url=fake.base_url, request=AiohttpRequest(pool_size=2),
                get_updates_request=AiohttpRequest(pool_size=1)) for _ in range(2)]
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def no_payment(update) -> None:
        raise AssertionError("no payment in this test")

    pollers = [PaymentSafePoller(bot, queue, no_payment, ["message"], timeout=1) for bot in bots]
    for bot in bots:
        await bot.initialize()
    with caplog.at_level(logging.ERROR, logger="kamibot.telegram"):
        for poller in pollers:
            await poller.start()
        await asyncio.sleep(1.5)
        for poller in pollers:
            await poller.stop()
    for bot in bots:
        await bot.shutdown()
    assert fake.conflicts > 0
    assert "event=telegram.poll_conflict" in caplog.text
    # and while a webhook is set, getUpdates is refused the same way
    fake.webhook = ("http://127.0.0.1:1/telegram/webhook", instances.SECRET)
    async with Bot(fake.token, base_url=fake.base_url) as bot:
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates(timeout=0)


async def test_a_restarted_poller_takes_over_the_lease_of_its_killed_predecessor_only(store):
    host, me = socket.gethostname(), os.getpid()
    dead = await asyncio.create_subprocess_exec("true")
    await dead.wait()  # a pid of this host that is gone: the poller SIGKILLed before this restart
    await PollingLease(store, f"{host}:{dead.pid}:aaaaaa").take()
    restarted = PollingLease(store, f"{host}:{me}:bbbbbb")
    await restarted.take()  # taken over at once, not after the dead one's ttl
    # an instance on another machine cannot tell whether the holder lives: it waits for the expiry
    with pytest.raises(PollingTaken, match=f"already running in {host}:{me}:bbbbbb"):
        await PollingLease(store, "elsewhere:4242:cccccc").take()
    await restarted.release()
    alive = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        await PollingLease(store, f"{host}:{alive.pid}:dddddd").take()
        with pytest.raises(PollingTaken, match=f"already running in {host}:{alive.pid}:dddddd"):
            await PollingLease(store, f"{host}:{me}:eeeeee").take()  # a live process of this host keeps it
    finally:
        alive.kill()
        await alive.wait()
