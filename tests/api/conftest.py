"""An order-API shop on each backend: a real store, vault and services, the /api/v1 routes in an ASGI app, a
client key with a funded wallet, and a signing HTTP client (fulfillment/api_signing.py Signer)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from bot.api import build_api
from bot.composition import Shop, build_shop
from bot.metrics import ShopMetrics
from fulfillment.api_clients import ApiKeys, NewKey
from fulfillment.api_signing import IDEMPOTENCY_HEADER, Signer
from fulfillment.orders import STATE_GROUPS, AllowAll
from storage.records import Price
from tests.conftest import PG_DSN, give_back_pg_schema, take_pg_schema
from tests.fulfillment.conftest import settings_for
from tests.storage.seed import make_shop

PRICE = 700
ALL_SCOPES = ["catalog:read", "orders:write", "orders:read"]
#: rate limits out of the way except where a test measures them
FAST = {"rate_per_s": 100_000, "burst": 100_000}


@dataclass
class ApiShop:
    shop: Shop
    http: httpx.AsyncClient
    key: NewKey
    signer: Signer
    keys: ApiKeys
    sku_slug: str
    pool_id: int
    served_keys: ApiKeys | None = None  # the server's own (build_api's), not the one the test signs with
    metrics: ShopMetrics | None = None  # the HTTP histogram ApiFront observes into

    async def call(self, method: str, path: str, data: object = None, *, body: bytes | None = None,
                   query: str = "", signer: Signer | None = None, idem: str = "",
                   headers: dict[str, str] | None = None) -> httpx.Response:
        raw = body if body is not None else (b"" if data is None else json.dumps(data).encode())
        signed = (signer or self.signer).headers(method, path, query, raw)
        signed.update(headers or {})
        if idem:
            signed[IDEMPOTENCY_HEADER] = idem
        url = path + (f"?{query}" if query else "")
        return await self.http.request(method, url, content=raw, headers=signed)

    async def order(self, no: str, quantity: object = 1, idem: str = "", **extra: object) -> httpx.Response:
        body = {"client_order_no": no, "sku": self.sku_slug, "quantity": quantity, **extra}
        return await self.call("POST", "/api/v1/orders", body, idem=idem)

    async def state(self) -> tuple[object, ...]:
        """What a refused request must leave unchanged: orders, wallet, its ledger, stock, stored replies."""
        store, cid = self.shop.store, self.key.client.id
        orders = await store.orders_for_user("api", f"client:{cid}", 1000, 0)
        return (len(orders), await store.wallet_balances(cid), len(await store.wallet_lines(cid, 1000)),
                await store.pool_available(self.pool_id), await store.api_order(cid, "A-1"))


async def open_api_shop(tmp_path: Path, backend: str, codes: int = 20, funds: int = 10_000,
                        scopes: list[str] | None = None,
                        limits: dict[str, object] | None = None) -> tuple[ApiShop, str | None]:
    schema = None
    if backend == "sqlite":
        shop = await build_shop(settings_for(tmp_path, risk={"enabled": False}, api=limits or FAST), risk=AllowAll())
    else:
        from storage.postgres import PostgresStore

        schema = await take_pg_schema()
        store = await PostgresStore(PG_DSN, schema=schema, states=STATE_GROUPS).open()
        await store.migrate()
        shop = await build_shop(settings_for(tmp_path, risk={"enabled": False}, api=limits or FAST), store=store,
                                risk=AllowAll())
    runtime = build_api(shop)
    seeded = await make_shop(shop.store, codes=codes, vault=shop.vault)
    await shop.store.set_price(Price(seeded.sku.id, "api", "CNY", PRICE))
    keys = ApiKeys(shop.store, shop.vault)
    key = await keys.create("client-" + secrets.token_hex(3), scopes or ALL_SCOPES)
    if funds:
        await keys.top_up(key.client.key_id, funds, "CNY", "seed")
    metrics = ShopMetrics(shop)
    app = runtime.front(Starlette(routes=runtime.routes()), metrics.http)  # as `kamibot run` serves it
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop.test")
    return ApiShop(shop, http, key, Signer(key.client.key_id, key.secret), keys, seeded.sku.slug,
                   seeded.pool.id, runtime.channel.auth.keys, metrics), schema


async def close_api_shop(api: ApiShop, schema: str | None) -> None:
    await api.http.aclose()
    await api.shop.close()
    if schema is not None:
        await give_back_pg_schema(schema)


@pytest.fixture(params=["sqlite", "postgres"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ApiShop]:
    shop, schema = await open_api_shop(tmp_path, request.param)
    yield shop
    await close_api_shop(shop, schema)
