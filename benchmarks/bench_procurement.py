"""Procurement after payment, against the fake suppliers of tests/fakes on 127.0.0.1 (50 ms latency), one process,
SQLite, the shop's own services (OrderService, PaymentInbox's store verb, DeliveryWorker with its `procure` rows,
SourcedFulfilment, SourcingService, ProcurementService, the supplier adapters and breakers):

1. on demand: an empty pool, orders checked out and paid at `--rate` per second; payment -> codes handed to the
   chat, p50/p99 (target: p99 <= supplier latency + 100 ms);
2. failover: the same load with two sources, the cheaper one holding every answer until our read timeout (its
   breaker opens after `breaker_failures` consecutive failures); orders delivered per second vs. a healthy run of
   the same script (target >= 90%), the orders left waiting on the dead supplier (never failed over while
   unknown: at most the in-flight ones when its breaker opened) and how many were sent to it after that (target 0);
3. restock: a 100-code pool (low-stock mark 60, restock 100 from the supplier, the job every 0.1 s) selling at
   100 orders/s for `--seconds`; out-of-stock refusals (target 0).

The resolver job runs every second; the delivery worker runs `--workers` loops (1: as `kamibot run`; claims are
leased, no row is processed twice).

    python benchmarks/bench_procurement.py [--rate 50] [--seconds 60] [--on-demand-seconds 10] [--workers 1]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fulfillment.delivery import Delivery, DeliveryWorker  # noqa: E402
from fulfillment.errors import OutOfStock  # noqa: E402
from fulfillment.fulfil_sourced import SourcedFulfilment  # noqa: E402
from fulfillment.orders import STATE_GROUPS, AllowAll, CheckoutRequest, OrderService  # noqa: E402
from fulfillment.payments import TestPaymentProvider  # noqa: E402
from fulfillment.procurement import ProcurementService  # noqa: E402
from fulfillment.sourcing import SourcingService  # noqa: E402
from fulfillment.suppliers.credentials import seal_secret  # noqa: E402
from fulfillment.suppliers.registry import SupplierRegistry  # noqa: E402
from fulfillment.vault import KeyRing, Vault  # noqa: E402
from storage.records import OrderState  # noqa: E402
from storage.records_supply import ProcurementState, SkuSource, SkuSourcing, SupplierRecord  # noqa: E402
from storage.sqlite import SqliteStore  # noqa: E402
from tests.fakes.supplier_acgfaka import FakeAcgFaka  # noqa: E402
from tests.fakes.supplier_faults import Running  # noqa: E402
from tests.fakes.supplier_kashangwl import FakeKashangwl, FakeProduct  # noqa: E402
from tests.storage.seed import make_shop  # noqa: E402

LATENCY = 0.05
BREAKER_FAILURES = 5


class Chat:
    """The buyers' chat: when each order's codes arrived."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}

    async def deliver(self, d: Delivery) -> None:
        if d.kind == "deliver" and d.codes:
            self.at.setdefault(d.order.id, time.monotonic())


class Bench:
    def __init__(self, store: Any, vault: Vault, shop: Any, workers: int) -> None:
        self.store, self.vault, self.shop = store, vault, shop
        self.registry = SupplierRegistry(store, vault)
        self.procurement = ProcurementService(store, vault, self.registry, "bench")
        self.sourcing = SourcingService(store, self.registry, self.procurement, "bench")  # catalogue 60 s
        self.orders = OrderService(store, AllowAll(), timedelta(minutes=15))
        self.chat = Chat()
        self.worker = DeliveryWorker(store, vault, {"console": self.chat}, {"test": TestPaymentProvider()})
        self.worker.procure = SourcedFulfilment(store, self.sourcing, retries=0).procure
        self.workers = workers
        self.paid_at: dict[int, float] = {}
        self.refused = 0

    async def supplier(self, name: str, protocol: str, url: str, account: str, key: str, products: tuple[str, ...],
                       read_timeout_ms: int = 2000) -> None:
        await self.store.save_supplier(SupplierRecord(
            name, protocol, url, account, seal_secret(self.vault, name, key), product_ids=products,
            read_timeout_ms=read_timeout_ms, breaker_failures=BREAKER_FAILURES, breaker_cool_down_s=600),
            datetime.now(UTC))

    async def buy(self, n: int) -> None:
        try:
            order = await self.orders.checkout(CheckoutRequest("console", f"b{n}", f"c{n}", self.shop.sku.id, 1))
        except OutOfStock:
            self.refused += 1
            return
        await self.store.receive_payment(TestPaymentProvider().pay(order), datetime.now(UTC))
        self.paid_at[order.id] = time.monotonic()
        self.worker.wake()

    async def work(self, stop: asyncio.Event) -> None:
        """As bot/jobs.py runs the delivery job: again at once while busy, else on a wake-up or after 0.2 s."""
        while not stop.is_set():
            if not await self.worker.run_once():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.worker.due.wait(), 0.2)
                self.worker.due.clear()

    async def resolve(self, stop: asyncio.Event) -> None:
        """The resolver job (every 5 s in kamibot run, every second here): unknown answers are queried."""
        while not stop.is_set():
            await self.procurement.resolve_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def load(self, rate: float, seconds: float, extra: Any = None) -> float:
        """Buy at `rate` per second for `seconds` while the workers run; the seconds it took until quiet."""
        stop = asyncio.Event()
        loops = [asyncio.create_task(self.work(stop)) for _ in range(self.workers)]
        loops.append(asyncio.create_task(self.resolve(stop)))
        side = asyncio.create_task(extra(stop)) if extra is not None else None
        start = time.monotonic()
        buys = []
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            buys.append(asyncio.create_task(self.buy(n)))
        await asyncio.gather(*buys)
        for _ in range(int(5 / 0.05)):  # up to 5 s for the last orders
            if len(self.chat.at) >= len(self.paid_at) - await self._waiting_unknown():
                break
            await asyncio.sleep(0.05)
        took = time.monotonic() - start
        stop.set()
        await asyncio.gather(*loops, *([side] if side else []))
        return took

    async def _waiting_unknown(self) -> int:
        return sum(1 for p in await self.store.procurements([ProcurementState.UNKNOWN], 10_000)
                   if p.order_id is not None)


async def _open(tmp: Path, workers: int, codes: int = 0) -> Bench:
    vault = Vault(KeyRing.new())
    store = await SqliteStore(tmp / "bench.db", states=STATE_GROUPS).open()
    await store.migrate()
    shop = await make_shop(store, codes=codes, vault=vault)
    return Bench(store, vault, shop, workers)


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


async def on_demand(rate: float, seconds: float, workers: int) -> dict[str, Any]:
    fake = FakeKashangwl(balance=9_000_000)
    fake.faults.latency = LATENCY
    fake.add_product(FakeProduct("41847", "Steam 10 USD", 990, stock=100_000))
    with tempfile.TemporaryDirectory() as d:
        b = await _open(Path(d), workers)
        async with Running(fake.app) as kw:
            await b.supplier("kw", "kashangwl", kw.url, fake.customer_id, fake.key, ("41847",))
            await b.store.save_sku_sourcing(SkuSourcing(b.shop.sku.id, sources=(SkuSource("kw", "41847"),),
                                                        max_unit_cost=1000, on_demand=True))
            took = await b.load(rate, seconds)
            await fake.close()
        lat = [(b.chat.at[o] - b.paid_at[o]) * 1000 for o in b.paid_at if o in b.chat.at]
        missing = [(await b.store.order_by_id(o)) for o in b.paid_at if o not in b.chat.at]
        left = sorted(o.state.value for o in missing if o is not None)
        await b.registry.aclose()
        await b.store.close()
    return {"on_demand_orders": len(b.paid_at), "on_demand_delivered": len(lat), "on_demand_not_delivered": left,
            "on_demand_orders_per_s": round(len(b.paid_at) / took, 1),
            "pay_to_code_p50_ms": round(statistics.median(lat), 1) if lat else None,
            "pay_to_code_p99_ms": round(_p(lat, 0.99), 1), "pay_to_code_target_ms": LATENCY * 1000 + 100}


async def failover(rate: float, seconds: float, workers: int, dead: bool) -> dict[str, Any]:
    kfake = FakeKashangwl(balance=9_000_000)
    kfake.faults.latency = LATENCY
    kfake.add_product(FakeProduct("41847", "Steam 10 USD", 980, stock=100_000))
    if dead:
        kfake.faults.hold_after_accept = 10**9
    afake = FakeAcgFaka()
    afake.faults.latency = LATENCY
    afake.balance = 9_000_000
    afake.add_commodity("STEAM10", "Steam 10 USD", 990, stock=100_000)
    opened: list[datetime] = []
    with tempfile.TemporaryDirectory() as d:
        b = await _open(Path(d), workers)

        async def watch(stop: asyncio.Event) -> None:
            while not stop.is_set() and not opened:
                if (await b.registry.get("kw")) is not None and not b.registry.healthy("kw"):
                    opened.append(datetime.now(UTC))
                await asyncio.sleep(0.005)

        async with Running(kfake.app) as kw, Running(afake.app) as acg:
            await b.supplier("kw", "kashangwl", kw.url, kfake.customer_id, kfake.key, ("41847",),
                             read_timeout_ms=300)
            await b.supplier("acg", "acgfaka", acg.url, afake.app_id, afake.app_key, ())
            await b.store.save_sku_sourcing(SkuSourcing(
                b.shop.sku.id, sources=(SkuSource("kw", "41847"), SkuSource("acg", "STEAM10")), max_unit_cost=1000,
                on_demand=True))
            took = await b.load(rate, seconds, watch)
            await kfake.close()
        on_dead = [p for p in await b.store.procurements(list(ProcurementState), 100_000) if p.supplier == "kw"]
        waiting = [p for p in on_dead if p.state in (ProcurementState.UNKNOWN, ProcurementState.SENT)]
        after = [p for p in on_dead if opened and p.created_at > opened[0]]
        delivered = len(await b.store.orders_in_state(OrderState.DELIVERED, 100_000)) + len(
            await b.store.orders_in_state(OrderState.DELIVERING, 100_000)) - len(waiting)
        await b.registry.aclose()
        await b.store.close()
    span = (max(b.chat.at.values()) - min(b.paid_at.values())) if b.chat.at else took
    return {"delivered_per_s": round(len(b.chat.at) / span, 1), "delivered": delivered, "orders": len(b.paid_at),
            "waiting_on_dead": len(waiting), "sent_to_dead_after_breaker_opened": len(after),
            "breaker_opened": bool(opened)}


async def restock(seconds: float, workers: int) -> dict[str, Any]:
    fake = FakeKashangwl(balance=9_000_000)
    fake.faults.latency = LATENCY
    fake.add_product(FakeProduct("41847", "Steam 10 USD", 990, stock=100_000))
    with tempfile.TemporaryDirectory() as d:
        b = await _open(Path(d), workers, codes=100)
        await b.store.upsert_pool(b.shop.pool.slug, b.shop.pool.name, 60)
        async with Running(fake.app) as kw:
            await b.supplier("kw", "kashangwl", kw.url, fake.customer_id, fake.key, ("41847",))
            await b.store.save_sku_sourcing(SkuSourcing(b.shop.sku.id, sources=(SkuSource("kw", "41847"),),
                                                        max_unit_cost=1000, restock_quantity=100))

            async def job(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    await b.sourcing.restock_due()
                    await asyncio.sleep(0.1)

            took = await b.load(100, seconds, job)
            await fake.close()
        lowest = len(b.paid_at)
        await b.registry.aclose()
        await b.store.close()
    return {"restock_seconds": round(took, 1), "restock_sold": lowest, "restock_refused": b.refused,
            "restock_purchases": len(fake.orders)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"supplier_latency_ms": LATENCY * 1000, "workers": args.workers, "backend": "sqlite"}
    figures.update(await on_demand(args.rate, args.on_demand_seconds, args.workers))
    healthy = await failover(args.rate, args.on_demand_seconds, args.workers, dead=False)
    faulty = await failover(args.rate, args.on_demand_seconds, args.workers, dead=True)
    figures.update({"failover_healthy_per_s": healthy["delivered_per_s"], "failover_dead_per_s":
                    faulty["delivered_per_s"], "failover_ratio": round(faulty["delivered_per_s"] /
                                                                      max(healthy["delivered_per_s"], 1e-9), 3),
                    "waiting_on_dead": faulty["waiting_on_dead"], "breaker_failures_k": BREAKER_FAILURES,
                    "sent_to_dead_after_breaker_opened": faulty["sent_to_dead_after_breaker_opened"],
                    "breaker_opened": faulty["breaker_opened"]})
    figures.update(await restock(args.seconds, args.workers))
    return figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--on-demand-seconds", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=60.0, help="restock run length (60 in the issue)")
    ap.add_argument("--workers", type=int, default=1)
    print(json.dumps(asyncio.run(run(ap.parse_args()))))


if __name__ == "__main__":
    main()
