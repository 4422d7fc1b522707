"""Merchant /refund of a WeChat-paid order: the v3 refund API is called, and the ledger records the refund when
WeChat Pay confirms it (a synchronous SUCCESS or the REFUND.SUCCESS notification, whichever comes first)."""

from __future__ import annotations

from datetime import timedelta

from fulfillment.aftersales import AfterSalesService
from fulfillment.wechatpay import out_refund_no
from storage.records import OrderState


async def _delivered(env, openid="o-buyer-1"):
    order = await env.checkout(openid)
    assert (await env.get(env.link(order, openid))).status_code == 200
    assert (await env.fake.notify_paid(order.ref, openid)).status_code == 204
    await env.shop.delivery.drain()
    assert (await env.order(order)).state == OrderState.DELIVERED
    return order


async def _ledger(env, kind):
    now = env.wx.clock()
    return [line for line in await env.shop.store.ledger(now - timedelta(days=1), now + timedelta(days=1))
            if line.kind == kind]


async def test_merchant_refund_calls_v3_refund_api_and_records_the_refund(env):
    order = await _delivered(env)
    await AfterSalesService(env.shop.store).request_refund(order.ref, "merchant-1")
    await env.shop.delivery.drain()
    refund = env.fake.refunds[out_refund_no(order)]
    txn = env.fake.transactions[order.ref]["transaction_id"]
    assert refund["transaction_id"] == txn
    assert refund["amount"]["refund"] == refund["amount"]["total"] == 1000
    assert (await env.order(order)).state == OrderState.REFUNDED
    assert [(line.amount, line.currency) for line in await _ledger(env, "refund")] == [(-1000, "CNY")]
    assert env.channel.sent[-1].kind == "refunded"
    # the REFUND.SUCCESS notification that follows records nothing twice
    assert (await env.fake.notify_refund(out_refund_no(order))).status_code == 204
    assert [line.amount for line in await _ledger(env, "refund")] == [-1000]


async def test_processing_refund_is_recorded_by_the_refund_notification(env):
    order = await _delivered(env)
    env.fake.refund_status = "PROCESSING"
    await AfterSalesService(env.shop.store).request_refund(order.ref, "merchant-1")
    await env.shop.delivery.drain()
    assert out_refund_no(order) in env.fake.refunds
    assert (await env.order(order)).state == OrderState.DELIVERED  # not yet: WeChat Pay has not confirmed
    assert await _ledger(env, "refund") == []
    response = await env.fake.notify_refund(out_refund_no(order))
    assert response.status_code == 204
    assert (await env.order(order)).state == OrderState.REFUNDED
    assert [line.amount for line in await _ledger(env, "refund")] == [-1000]
    # the worker's retry finds the same refund (same out_refund_no), now SUCCESS: one refund, one ledger line
    later = env.shop.delivery.clock() + timedelta(seconds=120)
    env.shop.delivery.clock = lambda: later
    await env.shop.delivery.drain()
    assert len(env.fake.refunds) == 1
    assert [line.amount for line in await _ledger(env, "refund")] == [-1000]
    assert env.channel.sent[-1].kind == "refunded"


async def test_refund_notification_for_another_transaction_is_rejected(env):
    order = await _delivered(env)
    env.fake.refund_status = "PROCESSING"
    await AfterSalesService(env.shop.store).request_refund(order.ref, "merchant-1")
    await env.shop.delivery.drain()
    env.fake.refunds[out_refund_no(order)]["transaction_id"] = "4200000000000000000000000099"
    response = await env.fake.notify_refund(out_refund_no(order))
    assert response.status_code == 400
    assert (await env.order(order)).state == OrderState.DELIVERED
    assert await _ledger(env, "refund") == []


async def test_late_payment_without_stock_is_refunded_through_wechat_pay(env):
    late = await env.checkout("o-late")
    assert (await env.get(env.link(late, "o-late"))).status_code == 200
    env.shop.orders.clock = lambda: late.expires_at + timedelta(seconds=1)
    await env.shop.orders.expire_due()  # its stock goes back to the pool …
    whale = await env.checkout("o-whale", qty=10)  # … and is sold to someone else
    assert (await env.fake.send(*env.fake.notification(
        "TRANSACTION.SUCCESS", env.fake.pay(whale.ref, "o-whale", amount=10_000)))).status_code == 204
    response = await env.fake.notify_paid(late.ref, "o-late")  # the late payer's money arrives
    assert response.status_code == 204
    assert (await env.order(late)).state == OrderState.FAILED
    await env.shop.delivery.drain()
    assert env.fake.refunds[out_refund_no(late)]["amount"]["refund"] == 1000
    assert (await env.order(late)).state == OrderState.REFUNDED
    assert [line.amount for line in await _ledger(env, "refund")] == [-1000]
    assert await env.shop.store.order_items(late.id) == []
