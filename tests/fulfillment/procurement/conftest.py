"""Benches for procurement: a real Store of each backend (via `store`), a real vault, both fake suppliers on
127.0.0.1 behind the fault proxy, and our own callback route (bot/supplier_routes.py) served on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from starlette.applications import Starlette

from bot.supplier_routes import supplier_routes
from fulfillment.procurement import ProcurementPolicy, ProcurementService
from fulfillment.suppliers.credentials import seal_secret
from fulfillment.suppliers.registry import SupplierRegistry
from fulfillment.vault import KeyRing, Vault
from storage.records import Pool
from storage.records_supply import SupplierRecord
from tests.fakes.loopback import free_port, serve, shut
from tests.fakes.supplier_acgfaka import FakeAcgFaka
from tests.fakes.supplier_faults import Running
from tests.fakes.supplier_kashangwl import FakeKashangwl, FakeProduct
from tests.storage.seed import NOW, make_shop

CARD_PRICE = 990


@dataclass
class Bench:
    store: Any
    vault: Vault
    registry: SupplierRegistry
    service: ProcurementService
    kashangwl: FakeKashangwl
    acgfaka: FakeAcgFaka
    pool: Pool
    shop: Any  # tests.storage.seed.Shop
    notify_base: str

    async def sql(self, query: str) -> list[tuple[Any, ...]]:
        """A raw read for the proofs (SQLite ? / PostgreSQL $n are not needed: no parameters)."""
        if hasattr(self.store, "_scan"):
            return [tuple(r) for r in await self.store._scan(query)]
        return [tuple(r) for r in await self.store.pool.fetch(query)]

    async def available(self) -> int:
        return int(await self.store.pool_available(self.pool.id))


async def _record(vault: Vault, name: str, protocol: str, url: str, account: str, secret: str,
                  notify_url: str = "", products: tuple[str, ...] = ()) -> SupplierRecord:
    return SupplierRecord(name, protocol, url, account, seal_secret(vault, name, secret), notify_url=notify_url,
                          product_ids=products, connect_timeout_ms=1000, read_timeout_ms=1000, breaker_failures=50,
                          breaker_cool_down_s=1)


@pytest.fixture
async def bench(store: Any) -> AsyncIterator[Bench]:
    vault = Vault(KeyRing.new())
    shop = await make_shop(store, codes=0, vault=vault)
    registry = SupplierRegistry(store, vault)
    service = ProcurementService(store, vault, registry, "test-holder",
                                 ProcurementPolicy(sent_grace=timedelta(0)))
    port = free_port()
    server, task = await serve(Starlette(routes=supplier_routes(service)), port)
    notify_base = f"http://127.0.0.1:{port}/suppliers"
    kfake = FakeKashangwl()
    kfake.callback_interval = 0.05
    kfake.settle_after = 0.05
    kfake.add_product(FakeProduct("41847", "Steam 10 USD", CARD_PRICE, stock=50))
    kfake.add_product(FakeProduct("41849", "Steam 20 USD", 1980, stock=50))
    afake = FakeAcgFaka()
    afake.add_commodity("STEAM10", "Steam 10 USD", CARD_PRICE + 10, stock=50)
    async with Running(kfake.app) as krun, Running(afake.app) as arun:
        await store.save_supplier(await _record(vault, "kw", "kashangwl", krun.url, kfake.customer_id, kfake.key,
                                                f"{notify_base}/kw/notify", ("41847",)), NOW)
        await store.save_supplier(await _record(vault, "acg", "acgfaka", arun.url, afake.app_id, afake.app_key), NOW)
        yield Bench(store, vault, registry, service, kfake, afake, shop.pool, shop, notify_base)
        await kfake.close()  # cancels pending settlements and callbacks
        await registry.aclose()
    await shut(server, task)
