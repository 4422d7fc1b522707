"""Procurement across OS processes on SQLite and PostgreSQL: a process SIGKILLed between "sent" and the supplier's
answer - restocking a pool, or buying for a paid on-demand order - is resolved by the next process's query without
buying twice (the paid order is then delivered the codes bought for it); 4 processes × 50 buyers of one on-demand
SKU with an empty pool and a slow supplier: every paid order delivered or refunded, never more than the supplier
had, no supplier order twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime

from bot.composition import build_shop
from bot.settings import Settings
from fulfillment.suppliers.credentials import seal_secret
from storage.records import OrderState
from storage.records_supply import ProcurementState, SkuSource, SkuSourcing, SupplierRecord
from tests.e2e.procs import ROOT, settings_env
from tests.fakes.supplier_faults import Running
from tests.fakes.supplier_kashangwl import FakeKashangwl, FakeProduct
from tests.storage.seed import make_shop

PROCESSES, BUYERS, STOCK = 4, 50, 60  # more buyers than the supplier has codes: the rest are refunded


async def _seed(tmp_path, db_url, fake: FakeKashangwl, url: str, **sourcing: object):
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    seeded = await make_shop(shop.store, codes=0, vault=shop.vault)
    await shop.store.save_supplier(SupplierRecord("kw", "kashangwl", url, fake.customer_id,
                                                  seal_secret(shop.vault, "kw", fake.key), product_ids=("41847",),
                                                  read_timeout_ms=30_000), datetime.now(UTC))
    await shop.store.save_sku_sourcing(SkuSourcing(seeded.sku.id, sources=(SkuSource("kw", "41847"),),
                                                   max_unit_cost=1000, **sourcing))  # type: ignore[arg-type]
    await shop.close()
    return seeded


async def _worker(tmp_path, db_url, *args: str) -> asyncio.subprocess.Process:
    env = {**settings_env(tmp_path, db_url), "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.e2e.procure_worker", *args, cwd=ROOT,
                                                env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)


async def test_sigkill_between_sent_and_the_answer_then_restart_resolves_without_buying_twice(tmp_path, db_url):
    fake = FakeKashangwl()
    fake.add_product(FakeProduct("41847", "Steam 10 USD", 990, stock=20))
    fake.faults.hold_after_accept = 1
    async with Running(fake.app) as running:
        seeded = await _seed(tmp_path, db_url, fake, running.url, restock_quantity=3)
        proc = await _worker(tmp_path, db_url, "restock")
        for _ in range(600):
            if fake.orders:
                break
            await asyncio.sleep(0.05)
        assert fake.orders, (await proc.communicate())[1].decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        await proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        restart = await _worker(tmp_path, db_url, "resolve")
        _, err = await restart.communicate()
        assert restart.returncode == 0, err.decode()[-2000:]
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    [p] = await shop.store.procurements(list(ProcurementState), 10)
    assert (p.state, p.received, p.shortfall) == (ProcurementState.SUCCEEDED, 3, 0)
    assert (fake.buy_requests, len(fake.orders)) == (1, 1)
    assert await shop.store.pool_available(seeded.pool.id) == 3
    await shop.close()


async def test_sigkill_while_buying_for_a_paid_order_then_restart_delivers_it_without_buying_twice(tmp_path, db_url):
    fake = FakeKashangwl()
    fake.add_product(FakeProduct("41847", "Steam 10 USD", 990, stock=20))
    fake.faults.hold_after_accept = 1
    async with Running(fake.app) as running:
        seeded = await _seed(tmp_path, db_url, fake, running.url, on_demand=True)
        proc = await _worker(tmp_path, db_url, "pay", str(seeded.sku.id), "1", "k")
        for _ in range(600):
            if fake.orders:
                break
            await asyncio.sleep(0.05)
        assert fake.orders, (await proc.communicate())[1].decode()[-2000:]
        proc.send_signal(signal.SIGKILL)  # paid, the supplier booked it, its answer never came back
        await proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        restart = await _worker(tmp_path, db_url, "settle")
        _, err = await restart.communicate()
        assert restart.returncode == 0, err.decode()[-2000:]
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    [order] = await shop.store.orders_for_user("console", "k-0", 5, 0)
    assert order.state is OrderState.DELIVERED
    [p] = await shop.store.order_procurements(order.id)
    assert (p.state, p.received) == (ProcurementState.SUCCEEDED, 1)
    assert (fake.buy_requests, len(fake.orders)) == (1, 1)
    [item] = await shop.store.order_items(order.id)
    assert shop.vault.open(item.code) in set(fake.issued_codes)
    assert await shop.store.pool_available(seeded.pool.id) == 0
    await shop.close()


async def test_processes_buying_one_on_demand_sku_from_a_slow_supplier(tmp_path, db_url):
    fake = FakeKashangwl(balance=10_000_000)
    fake.add_product(FakeProduct("41847", "Steam 10 USD", 990, stock=STOCK))
    fake.faults.latency = 0.05
    async with Running(fake.app) as running:
        seeded = await _seed(tmp_path, db_url, fake, running.url, on_demand=True)
        procs = [await _worker(tmp_path, db_url, "buy", str(seeded.sku.id), str(BUYERS), f"p{n}")
                 for n in range(PROCESSES)]
        outs = [await p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [e.decode()[-1500:] for _, e in outs]
    results = [json.loads(o.decode().strip().splitlines()[-1]) for o, _ in outs]
    paid = sum(r["paid"] for r in results)
    assert paid == PROCESSES * BUYERS  # an empty on-demand pool refuses nobody at checkout
    assert sum(r.get("delivered", 0) + r.get("refunded", 0) for r in results) == paid
    bought = sum(o.quantity for o in fake.orders.values())
    assert bought <= STOCK  # never more than the supplier had
    outer = [o.outer_order_id for o in fake.orders.values()]
    assert len(outer) == len(set(outer))  # no reference bought twice
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    rows = await shop.store.procurements(list(ProcurementState), 1000)
    assert {p.our_ref for p in rows} >= set(outer)
    live = [p.order_id for p in rows if p.state is not ProcurementState.FAILED]
    assert len(live) == len(set(live))  # at most one supplier order per order unless the earlier ones failed
    delivered_orders = await shop.store.orders_in_state(OrderState.DELIVERED, 1000)
    delivered = [shop.vault.open(item.code) for order in delivered_orders
                 for item in await shop.store.order_items(order.id)]
    assert len(delivered) == len(set(delivered)) == len(delivered_orders) == bought  # each bought code sold once
    assert set(delivered) <= set(fake.issued_codes)
    refunded = await shop.store.orders_in_state(OrderState.REFUNDED, 1000)
    assert len(refunded) + len(delivered_orders) == paid  # every paid order delivered or refunded
    await shop.close()
