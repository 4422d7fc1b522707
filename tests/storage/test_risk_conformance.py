"""Risk conformance: rules, lists, decisions, user stats, disputes (storage/protocols/risk.py),
run against every backend (SQLite and PostgreSQL) via the `store` fixture."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage import events
from storage.errors import UnknownRecord
from storage.records import OrderState
from tests.storage.seed import NOW, make_shop, new_order, payment

S = OrderState
REFUND = events.refunded(reason="merchant")


async def test_risk_rules_lists_decisions_and_user_stats(store):
    from storage.records import RiskDecisionRecord

    assert await store.latest_risk_rules() is None
    await store.save_risk_rules("a = 1", "file", NOW)
    await store.save_risk_rules("a = 2", "telegram:900", NOW)
    assert await store.latest_risk_rules() == "a = 2"
    await store.set_risk_list("ip", "10.0.0.0/8", "block", "farm", NOW)
    await store.set_risk_list("user", "telegram:5", "allow", "", NOW)
    await store.set_risk_list("ip", "10.0.0.0/8", "allow", "moved", NOW)
    await store.set_risk_list("user", "telegram:5", None, "", NOW)
    assert await store.risk_lists() == [("ip", "10.0.0.0/8", "allow")]
    for i, decision in enumerate(["allow", "deny", "review"]):
        await store.record_risk_decisions([RiskDecisionRecord(NOW, "checkout", "telegram", "7", decision, 10 * i,
                                                              "r1,r2", ip="1.2.3.4", order_id=40 + i)])
    await store.record_risk_decisions([RiskDecisionRecord(NOW, "paid", "telegram", "8", "allow", 0)] * 3)
    assert len(await store.risk_decisions("user", "telegram:8", 10)) == 3
    by_user = await store.risk_decisions("user", "telegram:7", 2)
    assert [d.decision for d in by_user] == ["review", "deny"]
    assert (by_user[0].at, by_user[0].reasons) == (NOW, "r1,r2")
    assert [d.order_id for d in await store.risk_decisions("ip", "1.2.3.4", 10)] == [42, 41, 40]
    assert [d.score for d in await store.risk_decisions("order", "41", 10)] == [10]
    assert await store.risk_decisions("user", "wechat:7", 10) == []
    with pytest.raises(ValueError, match="filter"):
        await store.risk_decisions("sku", "1", 1)
    shop = await make_shop(store, codes=3)
    await store.touch_user("console", "u1", "u1", NOW)
    paid = await store.reserve(new_order(shop.sku, user="u1"), NOW)
    await store.receive_payment(payment(paid.ref, 1000), NOW)
    await store.reserve(new_order(shop.sku, user="u1"), NOW)  # unpaid: not counted
    assert [o.id for o in await store.orders_in_state(S.DELIVERING, 10)] == [paid.id]
    await store.refund(paid.id, REFUND, NOW)
    assert await store.orders_in_state(S.DELIVERING, 10) == []
    stats = await store.user_stats("console", "u1")
    assert (stats.first_seen, stats.paid_orders, stats.refunded_orders) == (NOW, 1, 1)
    assert (await store.user_stats("console", "nobody")).first_seen is None


async def test_a_dispute_is_recorded_once_per_order_and_counted_per_user(store):
    shop = await make_shop(store, codes=5)
    paid = await store.reserve(new_order(shop.sku, user="u1"), NOW)
    await store.receive_payment(payment(paid.ref, 1000), NOW)
    other = await store.reserve(new_order(shop.sku, user="u1"), NOW)
    theirs = await store.reserve(new_order(shop.sku, user="u2"), NOW)
    assert (await store.user_stats("console", "u1")).disputes == 0
    later = NOW + timedelta(days=3)
    assert await store.record_dispute(paid.id, "merchant", later) is True
    events = await store.order_events(paid.id)
    assert (events[-1].from_state, events[-1].to_state, events[-1].cause, events[-1].at) == (
        "delivering", "delivering", "dispute:merchant", later)
    assert (await store.order_by_id(paid.id)).state == S.DELIVERING  # the order itself does not move
    assert await store.record_dispute(paid.id, "telegram", later) is False  # a second report changes nothing
    assert await store.order_events(paid.id) == events
    assert (await store.user_stats("console", "u1")).disputes == 1
    assert await store.record_dispute(other.id, "wechatpay", later) is True
    assert (await store.user_stats("console", "u1")).disputes == 2
    assert (await store.user_stats("console", "u2")).disputes == 0
    before = await store.order_events(theirs.id)
    with pytest.raises(UnknownRecord):
        await store.record_dispute(theirs.id + 1000, "merchant", later)
    assert await store.order_events(theirs.id) == before
    assert (await store.user_stats("console", "u2")).disputes == 0
    with pytest.raises(ValueError, match="source"):
        await store.record_dispute(theirs.id, " ", later)
    assert await store.order_events(theirs.id) == before
