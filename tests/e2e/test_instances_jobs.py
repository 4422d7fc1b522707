"""Three `kamibot run` instances on one PostgreSQL run every background job, and each piece of work is done once:
N reservations expire N times in total, every outbox row is sent once, every recorded payment is applied once
(issue 17, several instances). The work counters are the instances' own `kamibot_job_work_total{job}`."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from bot.composition import build_shop
from bot.settings import RiskSettings, Settings
from fulfillment.orders import CheckoutRequest
from storage.records import OrderState
from tests.e2e import instances
from tests.fakes.telegram_bot_api import FakeTelegram
from tests.storage.seed import make_shop

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
EXPIRING, PAID, RECORDED = 24, 10, 6
INSTANCES = 3


async def _until(check, within_s: float = 15.0) -> None:
    for _ in range(int(within_s / 0.1)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("not reached in time")


async def test_three_instances_do_each_jobs_work_once(tmp_path, db_url):
    fake = FakeTelegram()
    await fake.start()
    settings = Settings(data_dir=tmp_path, database_url=db_url, risk=RiskSettings(enabled=False))
    shop = await build_shop(settings)
    seeded = await make_shop(shop.store, codes=EXPIRING + PAID + RECORDED, vault=shop.vault)
    env = {**instances.telegram_env(fake), "KAMIBOT_RISK__ENABLED": "false", "KAMIBOT_JOBS__EXPIRE_EVERY_S": "0.2",
           "KAMIBOT_JOBS__RECOVER_EVERY_S": "0.2", "KAMIBOT_JOBS__DELIVERY_EVERY_S": "0.05"}
    try:
        async with instances.running(tmp_path, db_url, INSTANCES, **env) as running:
            # given, while all three run: reservations expiring in a second, paid orders (outbox rows), and
            # payments recorded but never applied (a crash between the two: the recovery job's work)
            ttl = settings.reservation_ttl_seconds
            shop.orders.clock = lambda: datetime.now(UTC) - timedelta(seconds=ttl - 1)
            expiring = [await shop.orders.checkout(CheckoutRequest("telegram", str(7000 + n), str(7000 + n),
                                                                   seeded.sku.id, 1)) for n in range(EXPIRING)]
            shop.orders.clock = lambda: datetime.now(UTC)
            buyers = [await shop.orders.checkout(CheckoutRequest("telegram", str(8000 + n), str(8000 + n),
                                                                 seeded.sku.id, 1)) for n in range(PAID + RECORDED)]
            for order in buyers[:PAID]:
                await shop.payments.receive(shop.providers["test"].pay(order))
            for order in buyers[PAID:]:
                await shop.store.record_payment(shop.providers["test"].pay(order), datetime.now(UTC))

            async def settled() -> bool:
                states = [(await shop.store.order_by_id(o.id)).state for o in expiring + buyers]
                return states == [OrderState.EXPIRED] * EXPIRING + [OrderState.DELIVERED] * (PAID + RECORDED)

            # when the instances' jobs have done it all
            await _until(settled)
            await asyncio.sleep(0.5)  # a second doing of anything would show by now
            work = [await instances.job_work(i) for i in running]
    finally:
        await shop.close()
        await fake.stop()

    # then each piece of work was done once in total, wherever it was done
    total = Counter[str]()
    for w in work:
        total.update(w)
    assert total["expire"] == EXPIRING
    assert total["payments"] == RECORDED
    assert total["delivery"] == PAID + RECORDED
    sends = Counter(int(p["chat_id"]) for m, p in fake.calls if m in ("sendMessage", "sendDocument"))
    assert {int(o.user_id): sends[int(o.user_id)] for o in buyers} == {int(o.user_id): 1 for o in buyers}
    assert all(int(o.user_id) not in sends for o in expiring)
