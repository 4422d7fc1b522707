"""Shop A for the kamibot adapter's tests: a real kamibot shop (bot.composition.build_shop over a real Store)
serving its real order API (bot/api.py) with uvicorn on 127.0.0.1, behind the fault proxy of
tests/fakes/supplier_faults.py. Faults act *after* the real API placed and paid the order (the wallet is debited,
the codes allocated), then lose or spoil the answer: what a timeout, a reset or a 5xx after sending looks like.

Shop B's side (the buyer) is a second, separate store with its own vault, suppliers, procurement and sourcing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from bot.api import build_api
from bot.api_settings import ApiSettings
from bot.composition import Shop, build_shop
from bot.settings import Settings
from bot.supplier_routes import supplier_routes
from fulfillment.api_clients import ApiKeys, NewKey
from fulfillment.orders import STATE_GROUPS
from fulfillment.procurement import ProcurementPolicy, ProcurementService
from fulfillment.sourcing import SourcingService
from fulfillment.suppliers.credentials import seal_secret
from fulfillment.suppliers.kamibot import KamibotConfig, KamibotSupplier
from fulfillment.suppliers.registry import SupplierRegistry
from fulfillment.suppliers.transport import HttpPolicy
from fulfillment.vault import KeyRing, Vault
from storage.records import Order, Price
from storage.records_supply import SupplierRecord
from storage.sqlite import SqliteStore
from tests.fakes.loopback import free_port, serve, shut
from tests.fakes.supplier_faults import Faults, Running, after_accept_fault
from tests.storage.seed import Shop as Seeded
from tests.storage.seed import make_shop

POLICY = HttpPolicy(connect_timeout=1.0, read_timeout=0.5, read_attempts=2, retry_backoff=0.01)
API_PRICE = 700  # what shop B pays shop A per code, CNY fen
SCOPES = ["catalog:read", "orders:write", "orders:read"]


class FaultyApi:
    """ASGI wrapper: POST /api/v1/orders runs in the real app first; a switched-on fault then replaces its answer."""

    def __init__(self, app: Any, faults: Faults) -> None:
        self.app = app
        self.faults = faults
        self.order_posts = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/api/v1/orders":
            await self.app(scope, receive, send)
            return
        self.order_posts += 1
        messages: list[Any] = []

        async def keep(message: Any) -> None:
            messages.append(message)

        await self.app(scope, receive, keep)
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        replacement = after_accept_fault(self.faults, body)
        if replacement is None:
            for message in messages:
                await send(message)
            return
        await replacement(scope, receive, send)


@dataclass
class Upstream:
    shop: Shop
    seeded: Seeded
    key: NewKey
    url: str
    faults: Faults
    api: FaultyApi
    notify: list[str] = field(default_factory=list)

    @property
    def client_id(self) -> int:
        return self.key.client.id

    def supplier(self, notify_url: str = "", secret: str | None = None, name: str = "shopA") -> KamibotSupplier:
        return KamibotSupplier(KamibotConfig(self.url, self.key.client.key_id, secret or self.key.secret,
                                             notify_url=notify_url, name=name, policy=POLICY))

    def record(self, notify_url: str = "", name: str = "shopA", vault: Vault | None = None) -> SupplierRecord:
        """The row shop B keeps for shop A (its credential sealed under B's vault)."""
        assert vault is not None
        return SupplierRecord(name, "kamibot", self.url, self.key.client.key_id,
                              seal_secret(vault, name, self.key.secret), notify_url=notify_url,
                              connect_timeout_ms=1000, read_timeout_ms=500, breaker_failures=50,
                              breaker_cool_down_s=1)

    async def orders(self) -> list[Order]:
        """Shop A's orders placed by shop B's key."""
        return await self.shop.store.orders_for_user("api", f"client:{self.client_id}", 1000, 0)

    async def wallet(self) -> int:
        return (await self.shop.store.wallet_balances(self.client_id)).get("CNY", 0)

    async def codes_of(self, order_id: int) -> list[str]:
        """The codes shop A allocated to one of its orders, opened with A's vault."""
        return [self.shop.vault.open(i.code) for i in await self.shop.store.order_items(order_id)]

    async def deliver(self) -> None:
        """Shop A's delivery worker: completes API orders and sends their signed callbacks."""
        await self.shop.delivery.drain()


@contextlib.asynccontextmanager
async def upstream(store: Any, data_dir: Path, codes: int = 10, wallet: int = 10_000,
                   price: int = API_PRICE) -> AsyncIterator[Upstream]:
    """Shop A on `store`: SKU game-1 with `codes` codes, an `api` price, and a key for shop B with `wallet` fen."""
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir, api=ApiSettings(allow_private_callbacks=True, rate_per_s=1000,
                                                           burst=1000))
    shop = await build_shop(settings, store=store)
    seeded = await make_shop(store, codes=codes, vault=shop.vault)
    await store.set_price(Price(seeded.sku.id, "api", "CNY", price))
    keys = ApiKeys(store, shop.vault)
    key = await keys.create("shop-b", SCOPES)
    if wallet:
        await keys.top_up(key.client.key_id, wallet, "CNY", "prepaid by shop B")
    runtime = build_api(shop)
    faults = Faults()
    api = FaultyApi(Starlette(routes=runtime.routes()), faults)
    async with Running(api) as running:
        yield Upstream(shop, seeded, key, running.url, faults, api)
    for channel in shop.channels.values():
        closer = getattr(channel, "aclose", None)
        if closer is not None:
            await closer()


@dataclass
class Downstream:
    """Shop B's supply side on its own SQLite store: a pool and SKU to fill, shop A configured as supplier."""

    store: SqliteStore
    vault: Vault
    seeded: Seeded
    registry: SupplierRegistry
    procurement: ProcurementService
    sourcing: SourcingService
    notify_url: str


@contextlib.asynccontextmanager
async def downstream(a: Upstream, path: Path, callbacks: bool = True) -> AsyncIterator[Downstream]:
    store = await SqliteStore(path, states=STATE_GROUPS).open()
    await store.migrate()
    vault = Vault(KeyRing.new())
    seeded = await make_shop(store, codes=0, vault=vault, slug="resale")
    registry = SupplierRegistry(store, vault)
    procurement = ProcurementService(store, vault, registry, "shop-b", ProcurementPolicy(sent_grace=timedelta(0)))
    sourcing = SourcingService(store, registry, procurement, "shop-b")
    port = free_port()
    notify_url = f"http://127.0.0.1:{port}/suppliers/shopA/notify" if callbacks else ""
    server, task = await serve(Starlette(routes=supplier_routes(procurement)), port)
    await store.save_supplier(a.record(notify_url, vault=vault), datetime.now(UTC))
    try:
        yield Downstream(store, vault, seeded, registry, procurement, sourcing, notify_url)
    finally:
        await registry.aclose()
        await shut(server, task)
        await store.close()
