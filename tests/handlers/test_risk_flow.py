"""The risk module in the conversations (console channel, real SQLite shop): refusals the customer can read,
review holds decided by the merchant (approve delivers, reject refunds), merchant /risk commands."""

from __future__ import annotations

import asyncio
import re

from storage.records import OrderState
from tests.handlers.test_storefront import CODE, _buy_one_crystal

REVIEW_SECOND_ORDER = """
[rules.second_order_review]
kind = "velocity"
dimension = "user"
window = "1h"
threshold = 1
action = "review"
stage = "payment"
"""
REF = re.compile(r"K[0-9A-Z]{11}")


async def _settle(demo) -> None:
    """Let background work started by a command (delivery, refund) finish."""
    ctx = demo.customer.ctx
    while ctx.background:
        await asyncio.gather(*list(ctx.background))


async def _held_order(demo):
    await demo.shop.risk.replace_rules(REVIEW_SECOND_ORDER, "test")
    await _buy_one_crystal(demo)
    first_codes = CODE.findall(demo.out.text())
    demo.out.clear()
    await _buy_one_crystal(demo)
    assert "being checked" in demo.out.text()
    assert CODE.findall(demo.out.text()) == []
    orders = await demo.shop.store.orders_for_user("console", "customer", 5, 0)
    held = orders[0]
    assert held.state == OrderState.REVIEW
    return held, first_codes


async def test_review_then_approve_delivers_the_codes(demo):
    held, first_codes = await _held_order(demo)
    demo.out.clear()
    await demo.merchant.say("/review")
    assert f"{held.ref} — console:customer" in demo.out.text()
    assert "second_order_review" in demo.out.text()
    demo.out.clear()
    await demo.stranger.say(f"/approve {held.ref}")  # not a merchant: nothing happens
    assert (await demo.shop.store.order_by_id(held.id)).state == OrderState.REVIEW
    await demo.merchant.say(f"/approve {held.ref}")
    await _settle(demo)
    assert "approved" in demo.out.text()
    assert (await demo.shop.store.order_by_id(held.id)).state == OrderState.DELIVERED
    new_codes = CODE.findall(demo.out.text())
    assert len(new_codes) == 1
    assert new_codes != first_codes
    await demo.merchant.say(f"/approve {held.ref}")  # twice: refused, nothing delivered again
    assert "can no longer" in demo.out.text()
    demo.out.clear()
    await demo.merchant.say("/review")
    assert "No orders are waiting" in demo.out.text()


async def test_review_then_reject_refunds_through_the_provider(demo):
    held, _ = await _held_order(demo)
    before = {lv.pool_slug: lv.available for lv in await demo.shop.store.stock_levels()}
    await demo.merchant.say(f"/reject {held.ref}")
    await _settle(demo)
    await demo.shop.delivery.drain()
    assert (await demo.shop.store.order_by_id(held.id)).state == OrderState.REFUNDED
    txn = (await demo.shop.store.order_payment(held.id))[1]
    assert demo.shop.providers["test"].refunds == {txn: held.amount}
    after = {lv.pool_slug: lv.available for lv in await demo.shop.store.stock_levels()}
    assert after["genshin-60"] == before["genshin-60"] + 1  # the held stock is back on sale
    actions = [e[3] for e in await demo.shop.store.audit_entries(10)]
    assert "reject" in actions


async def test_a_denied_customer_reads_a_polite_message_without_thresholds(demo):
    await demo.merchant.say("/risk set user_orders_hour 1")
    assert "threshold is now 1" in demo.out.text()
    await _buy_one_crystal(demo)
    demo.out.clear()
    for step in ("/start", "1", "1", "1", "1", "1", "1"):
        await demo.customer.say(step)
    text = demo.out.text()
    assert demo.customer.ctx.tr("en", "error.risk_denied") in text
    assert "user_orders_hour" not in text  # the rule id and its threshold are for merchants only
    assert (await demo.shop.store.orders_for_user("console", "customer", 5, 0))[0].state == OrderState.DELIVERED


async def test_merchant_risk_commands_and_strangers(demo):
    await demo.merchant.say("/risk rules")
    text = demo.out.text()
    assert "users_per_ip_day" in text
    assert "distinct per user/ip / 1d > 10 → deny" in text
    demo.out.clear()
    await demo.merchant.say("/risk set users_per_ip_day 0")
    assert "positive" in demo.out.text()
    await demo.merchant.say("/risk set nosuchrule 5")
    assert "no rule" in demo.out.text()
    await demo.merchant.say("/risk block ip 203.0.113.0/24")
    assert "blocked" in demo.out.text()
    await demo.merchant.say("/risk block ip 999.1.1.1")
    assert demo.out.lines[-1] == "Sorry, I did not understand that."
    assert await demo.shop.store.risk_lists() == [("ip", "203.0.113.0/24", "block")]
    await _buy_one_crystal(demo)
    await demo.shop.risk.decisions.flush()
    demo.out.clear()
    await demo.merchant.say("/risk log user console:customer")
    assert "reserve: allow" in demo.out.text()
    demo.out.clear()
    await demo.stranger.say("/risk rules")
    assert "users_per_ip_day" not in demo.out.text()
    assert await demo.shop.store.risk_lists() == [("ip", "203.0.113.0/24", "block")]


async def test_merchant_records_a_dispute_and_the_customer_is_reviewed_next_time(demo):
    await _buy_one_crystal(demo)
    bought = (await demo.shop.store.orders_for_user("console", "customer", 5, 0))[0]
    demo.out.clear()
    await demo.stranger.say(f"/risk dispute {bought.ref}")  # not a merchant: an unknown command, nothing recorded
    assert demo.out.text() == demo.stranger.ctx.tr("zh_CN", "error.unknown_command")
    assert (await demo.shop.store.user_stats("console", "customer")).disputes == 0
    demo.out.clear()
    await demo.merchant.say(f"/risk dispute {bought.ref.lower()}")
    assert f"Dispute recorded for order {bought.ref} (console:customer)" in demo.out.text()
    assert (await demo.shop.store.user_stats("console", "customer")).disputes == 1
    events = await demo.shop.store.order_events(bought.id)
    assert (events[-1].from_state, events[-1].to_state, events[-1].cause) == (
        "delivered", "delivered", "dispute:merchant")
    assert (await demo.shop.store.audit_entries(1))[0][3:] == ("risk.dispute", f"order {bought.ref} merchant")
    demo.out.clear()
    await demo.merchant.say(f"/risk dispute {bought.ref}")
    assert demo.out.text() == f"Order {bought.ref} already has a dispute recorded; nothing changed."
    demo.out.clear()
    await demo.merchant.say("/risk dispute KNOSUCHORDER9")
    assert demo.out.text().startswith("Order not found.")
    demo.out.clear()
    await demo.merchant.say("/risk rules")
    assert "chargebacks: disputes per user / all time > 0 → review" in demo.out.text()
    demo.out.clear()
    await _buy_one_crystal(demo)  # the next order waits for the merchant
    assert "being checked" in demo.out.text()
    held = (await demo.shop.store.orders_for_user("console", "customer", 5, 0))[0]
    assert held.state == OrderState.REVIEW
    demo.out.clear()
    await demo.merchant.say("/review")
    assert "chargebacks" in demo.out.text()
