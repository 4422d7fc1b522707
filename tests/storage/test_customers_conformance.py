"""Customers and audit conformance (storage/protocols/customers.py),
run against every backend (SQLite and PostgreSQL) via the `store` fixture."""

from __future__ import annotations

from storage import events
from storage.records import OrderState
from tests.storage.seed import NOW

S = OrderState
REFUND = events.refunded(reason="merchant")


async def test_customers_language_referrer_blocking_and_audit(store):
    await store.touch_user("telegram", "20", "20", NOW, referrer="20")  # oneself is no referrer
    await store.touch_user("telegram", "10", "10", NOW, referrer="99")
    await store.touch_user("telegram", "10", "10b", NOW, referrer="77")  # the first referrer stays
    await store.touch_user("wechat", "o1", "o1", NOW)
    await store.set_user_language("telegram", "10", "zh_CN")
    assert await store.user_language("telegram", "10") == "zh_CN"
    assert await store.user_language("telegram", "20") is None
    assert await store.user_language("telegram", "nobody") is None
    await store.set_user_blocked("telegram", "20", True)
    assert await store.reachable_users("telegram", "", 10) == [("10", "10b")]
    assert await store.reachable_users("telegram", "10", 10) == []
    await store.audit("telegram", "900", "price", "genshin-60 650", NOW)
    entries = await store.audit_entries(5)
    assert [(e[1], e[2], e[3], e[4]) for e in entries] == [("telegram", "900", "price", "genshin-60 650")]
