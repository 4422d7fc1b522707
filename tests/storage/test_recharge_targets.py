"""A recharge SKU's target rule and an order's target survive the round trip on both backends (migration 0010)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from storage.protocol import Store
from storage.records import NewOrder
from tests.storage.seed import make_shop


async def test_target_rule_and_order_target_round_trip(store: Store) -> None:
    shop = await make_shop(store, codes=3)
    sku = await store.upsert_sku(replace(shop.sku, target_rule="mobile"))
    assert sku.target_rule == "mobile"
    assert (await store.sku_by_id(sku.id)).target_rule == "mobile"  # type: ignore[union-attr]
    now = datetime.now(UTC)
    order = await store.reserve(NewOrder("telegram", "u1", "c1", sku.id, 1, 100, "CNY", now + timedelta(minutes=5),
                                         "en", "13800138000"), now)
    assert order.target == "13800138000"
    assert (await store.order_by_ref(order.ref)).target == "13800138000"  # type: ignore[union-attr]
    plain = await store.reserve(NewOrder("telegram", "u2", "c2", sku.id, 1, 100, "CNY", now + timedelta(minutes=5)),
                                now)
    assert plain.target is None
