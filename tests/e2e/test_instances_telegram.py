"""Telegram with several instances (issue 17): in webhook mode the fake Bot API is the load balancer and pushes
one user's rapid taps to two instances alternately, and they are handled in the order they were sent; polling
stays with one instance, and a second polling instance refuses to start with a clear message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.composition import build_shop
from bot.settings import RiskSettings, Settings
from tests.conftest import REDIS_URL
from tests.e2e import instances
from tests.fakes.telegram_bot_api import FakeTelegram
from tests.risk.conftest import redis_or_skip
from tests.storage.seed import make_shop

BUYER = 4242
TAPS = 10
PRICE = 50  # XTR per code (tests/storage/seed.py)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()


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
    # the first one stopped gracefully and gave the lease back: a new polling instance starts at once
    async with instances.running(tmp_path, db_url, 1, **env):
        pass
