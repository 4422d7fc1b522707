"""Checkout of a direct-recharge SKU on both backends: no valid target, no order; the stored target is the
normalised one; a code SKU stores none."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from fulfillment.errors import InvalidTarget
from fulfillment.orders import AllowAll, CheckoutRequest, OrderService
from storage.protocol import Store
from tests.storage.seed import make_shop


def _request(sku_id: int, target: str | None, user: str = "u1") -> CheckoutRequest:
    return CheckoutRequest("console", user, user, sku_id, 1, "en", target=target)


BAD = [(None, "recharge.bad.empty"), ("", "recharge.bad.empty"), ("1380013800", "recharge.bad.wrong_length"),
       ("12012345678", "recharge.bad.unknown_prefix"), ("138OO138000", "recharge.bad.not_digits")]


async def test_a_recharge_sku_without_a_valid_target_creates_no_order(store: Store) -> None:
    seeded = await make_shop(store, codes=3)
    sku = await store.upsert_sku(replace(seeded.sku, target_rule="mobile"))
    orders = OrderService(store, AllowAll(), timedelta(minutes=15))
    for target, message_id in BAD:
        with pytest.raises(InvalidTarget) as refused:
            await orders.checkout(_request(sku.id, target))
        assert refused.value.message_id == message_id, target
    assert await store.orders_for_user("console", "u1", 10, 0) == []
    assert await store.pool_available(seeded.pool.id) == 3


async def test_the_stored_target_is_the_normalised_one(store: Store) -> None:
    seeded = await make_shop(store, codes=3)
    mobile = await store.upsert_sku(replace(seeded.sku, target_rule="mobile"))
    account = await store.upsert_sku(replace(seeded.big, target_rule=r"re:[0-9]{5,12}"))
    orders = OrderService(store, AllowAll(), timedelta(minutes=15))
    by_number = await orders.checkout(_request(mobile.id, "+86 138-0013-8000"))
    by_id = await orders.checkout(_request(account.id, " １２３４５６ ", user="u2"))
    assert (await store.order_by_ref(by_number.ref)).target == "13800138000"  # type: ignore[union-attr]
    assert (await store.order_by_ref(by_id.ref)).target == "123456"  # type: ignore[union-attr]
    with pytest.raises(InvalidTarget) as refused:
        await orders.checkout(_request(account.id, "12345x", user="u3"))
    assert refused.value.message_id == "recharge.bad.no_match"
    assert await store.orders_for_user("console", "u3", 10, 0) == []


async def test_a_code_sku_stores_no_target_even_when_one_is_sent(store: Store) -> None:
    seeded = await make_shop(store, codes=3)
    orders = OrderService(store, AllowAll(), timedelta(minutes=15))
    order = await orders.checkout(_request(seeded.sku.id, "13800138000"))
    assert (await store.order_by_ref(order.ref)).target is None  # type: ignore[union-attr]
