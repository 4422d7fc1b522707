"""Background jobs really run: reservations expire, outbox rows go out, /healthz shows stale jobs."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from bot.jobs import JobStatus, run_jobs
from bot.server import create_app
from fulfillment.delivery import Delivery
from fulfillment.orders import CheckoutRequest
from storage.migrations import migrations
from storage.records import OrderState
from tests.storage.seed import make_shop


class Inbox:
    def __init__(self) -> None:
        self.got: list[Delivery] = []

    async def deliver(self, delivery: Delivery) -> None:
        self.got.append(delivery)


async def _until(predicate, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def test_jobs_expire_reservations_and_deliver_paid_orders(shop):
    seeded = await make_shop(shop.store, codes=3, vault=shop.vault)
    inbox = shop.channels["console"] = Inbox()
    stale = await shop.orders.checkout(CheckoutRequest("console", "a", "a", seeded.sku.id, 2))
    paid = await shop.orders.checkout(CheckoutRequest("console", "b", "b", seeded.sku.id, 1))
    await shop.store.record_payment(shop.providers["test"].pay(paid), shop.payments.clock())  # never applied
    shop.orders.clock = lambda: stale.expires_at + timedelta(seconds=1)
    stop, status = asyncio.Event(), JobStatus()
    task = asyncio.create_task(run_jobs(shop, stop, status, delivery_every=0.05, expire_every=0.05,
                                        recover_every=0.05))

    async def done() -> bool:
        order = await shop.store.order_by_id(stale.id)
        return order.state == OrderState.EXPIRED and len(inbox.got) == 1

    await _until(done)
    stop.set()
    await task
    assert inbox.got[0].order.id == paid.id
    assert (await shop.store.order_by_id(paid.id)).state == OrderState.DELIVERED
    assert await shop.store.pool_available(seeded.pool.id) == 2
    assert status.stale() == []
    assert set(status.last_ok) == {"delivery", "expire", "payments"}


async def test_readyz_reports_stale_jobs_with_503_while_healthz_stays_alive(shop):
    status = JobStatus(intervals={"delivery": 0.2}, last_ok={})
    transport = httpx.ASGITransport(app=create_app(shop, status))
    async with httpx.AsyncClient(transport=transport, base_url="http://kamibot") as client:
        bad, alive = await client.get("/readyz"), await client.get("/healthz")
        status.last_ok["delivery"] = __import__("time").monotonic()
        good = await client.get("/readyz")
    assert bad.status_code == 503
    assert bad.json()["checks"]["jobs"] == "stale: delivery"
    assert alive.status_code == 200
    assert alive.json()["stale_jobs"] == ["delivery"]
    assert alive.json()["schema"] == migrations("sqlite")[-1][0]
    assert good.status_code == 200
    assert good.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok", "jobs": "ok"}}


async def test_a_payment_wakes_the_delivery_worker_instead_of_waiting_for_its_poll(shop):
    seeded = await make_shop(shop.store, codes=3, vault=shop.vault)
    inbox = shop.channels["console"] = Inbox()
    stop, status = asyncio.Event(), JobStatus()
    task = asyncio.create_task(run_jobs(shop, stop, status, delivery_every=3600))  # the poll alone: an hour
    await _until(lambda: _true(status.last_ok.get("delivery")))  # the first, empty tick is done
    order = await shop.orders.checkout(CheckoutRequest("console", "c", "c", seeded.sku.id, 1))
    await shop.payments.receive(shop.providers["test"].pay(order))

    async def delivered() -> bool:
        return len(inbox.got) == 1

    await _until(delivered)  # 10 s at most: only the wake-up can have sent it
    stop.set()
    await task


async def _true(value: object) -> bool:
    return bool(value)
