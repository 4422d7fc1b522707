"""API orders of sourced and recharge SKUs (both backends): answered `delivering` without codes, the wallet debited
once and no own stock taken; the recharge target checked against the SKU's rule (BAD_TARGET, nothing changes);
when no supplier can serve it, `order.failed` then `order.refunded` are called back and the wallet is credited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from handlers.api.delivery import ApiDeliveries
from storage.records_supply import SkuSource, SkuSourcing
from tests.api.conftest import FAST, PRICE, ApiShop, close_api_shop, open_api_shop
from tests.fakes.api_callback_receiver import CallbackReceiver

HOOK = "http://127.0.0.1:9/hook?shop=b"


@pytest.fixture(params=["sqlite", "postgres"])
async def hooked(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[ApiShop, CallbackReceiver]]:
    api, schema = await open_api_shop(tmp_path, request.param, limits={**FAST, "allow_private_callbacks": True})
    receiver = CallbackReceiver(api.key.client.key_id, api.key.secret)
    channel = api.shop.channels["api"]
    assert isinstance(channel, ApiDeliveries)
    channel._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app()))
    yield api, receiver
    await channel.aclose()
    await close_api_shop(api, schema)


async def _recharge_sku(api: ApiShop) -> int:
    sku = await api.shop.store.sku_by_slug(api.sku_slug)
    assert sku is not None
    await api.shop.store.upsert_sku(replace(sku, target_rule="mobile"))
    await api.shop.store.save_sku_sourcing(SkuSourcing(sku.id, own=False, sources=(SkuSource("kw", "10086"),),
                                                       max_unit_cost=PRICE, on_demand=True))
    return sku.id


async def test_a_recharge_order_is_answered_delivering_and_refunded_with_callbacks_when_it_fails(hooked) -> None:
    api, receiver = hooked
    await _recharge_sku(api)
    stock = await api.shop.store.pool_available(api.pool_id)
    r = await api.order("R-1", 1, callback_url=HOOK, target="138 0013 8000")
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["state"], body["codes"]) == ("delivering", [])
    order = await api.shop.store.order_by_ref(body["order_no"])
    assert order is not None
    assert order.target == "13800138000"
    assert await api.shop.store.wallet_balances(api.key.client.id) == {"CNY": 10_000 - PRICE}
    assert await api.shop.store.pool_available(api.pool_id) == stock  # a recharge takes no codes
    # no supplier could serve it: failed, refunded to the wallet, told to the client
    assert await api.shop.store.fail_backorder(order.id, "every source refused", datetime.now(UTC))
    await api.shop.delivery.drain()
    assert (await api.call("GET", "/api/v1/orders/R-1")).json()["state"] == "refunded"
    assert await api.shop.store.wallet_balances(api.key.client.id) == {"CNY": 10_000}
    assert sorted(e["type"] for e in receiver.events) == ["order.failed", "order.refunded"]  # each row on its own


async def test_a_recharge_target_is_checked_against_the_rule_and_a_refusal_changes_nothing(hooked) -> None:
    api, _ = hooked
    before = await api.state()
    await _recharge_sku(api)
    for bad in (None, "", "12345", "23800138000", "1380013800a", "x" * 65):
        extra = {} if bad is None else {"target": bad}
        r = await api.order("A-1", 1, **extra)
        assert (r.status_code, r.json()["code"]) in ((422, "BAD_TARGET"), (400, "MALFORMED")), (bad, r.text)
    assert await api.state() == before


async def test_a_target_for_a_sku_of_codes_is_refused(api: ApiShop) -> None:
    before = await api.state()
    r = await api.order("A-1", 1, target="13800138000")
    assert (r.status_code, r.json()["code"]) == (422, "BAD_TARGET")
    assert await api.state() == before
