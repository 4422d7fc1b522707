"""Signed callbacks of API orders (both backends): `order.delivered` after the delivery row, retried with backoff
until the client acknowledges (same event id each time) while the order is already `delivered`; `order.refunded`
after a refund to the wallet; a callback URL that now resolves to a private address is never called."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from handlers.api.delivery import ApiDeliveries
from storage.records import OrderState
from tests.api.conftest import FAST, ApiShop, close_api_shop, open_api_shop
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


async def test_delivered_callback_is_retried_until_acknowledged(hooked: tuple[ApiShop, CallbackReceiver]) -> None:
    api, receiver = hooked
    receiver.fail_next = 1
    placed = await api.order("A-1", 1, callback_url=HOOK)
    assert placed.status_code == 201
    # the delivery row completes (the codes went out in the answer); the client refuses the first callback
    await api.shop.delivery.drain()
    order = await api.shop.store.order_by_ref(placed.json()["order_no"])
    assert order is not None
    assert order.state == OrderState.DELIVERED
    assert receiver.events == []
    # the callback row is retried later, with the same event id, until acknowledged
    api.shop.delivery.clock = lambda: datetime.now(UTC) + timedelta(hours=1)
    await api.shop.delivery.drain()
    assert receiver.refused == 0
    assert len(receiver.seen_ids) == 2
    assert len(set(receiver.seen_ids)) == 1
    assert [(e["type"], e["order"]["client_order_no"]) for e in receiver.events] == [("order.delivered", "A-1")]
    assert "codes" not in json.dumps(receiver.events)
    assert await api.shop.store.pending_outbox() == 0


async def test_refund_to_the_wallet_is_called_back(hooked: tuple[ApiShop, CallbackReceiver]) -> None:
    api, receiver = hooked
    placed = await api.order("A-1", 1, callback_url=HOOK)
    order = await api.shop.store.order_by_ref(placed.json()["order_no"])
    assert order is not None
    await api.shop.delivery.drain()
    payload = json.dumps({"provider": "wallet", "txn": f"{api.key.client.id}:A-1", "amount": order.amount})
    await api.shop.store.enqueue_outbox(order.id, "refund", payload, datetime.now(UTC))
    await api.shop.delivery.drain()
    assert [e["type"] for e in receiver.events] == ["order.delivered", "order.refunded"]
    assert await api.shop.store.wallet_balances(api.key.client.id) == {"CNY": 10_000}


async def test_callback_to_a_private_address_is_never_sent(tmp_path: Path) -> None:
    # given an order accepted while private callbacks were allowed, then the setting is off
    api, _ = await open_api_shop(tmp_path, "sqlite", limits={**FAST, "allow_private_callbacks": True})
    receiver = CallbackReceiver(api.key.client.key_id, api.key.secret)
    channel = api.shop.channels["api"]
    assert isinstance(channel, ApiDeliveries)
    channel._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver.app()))
    try:
        placed = await api.order("A-1", 1, callback_url=HOOK)
        channel.callbacks.allow_private = False
        await api.shop.delivery.drain()
        assert receiver.attempts == 0
        # the order is delivered all the same; only its callback row gave up
        order = await api.shop.store.order_by_ref(placed.json()["order_no"])
        assert order is not None
        assert order.state == OrderState.DELIVERED
        assert await api.shop.store.pending_outbox() == 0
    finally:
        await channel.aclose()
        await close_api_shop(api, None)
