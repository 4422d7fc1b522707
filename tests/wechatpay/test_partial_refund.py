"""A WeChat Pay refund of part of a payment (made in the merchant platform): its REFUND.SUCCESS notification books
one refund line once, the order stays delivered, and the refund of the rest — a notification that completes it, or
the merchant's /refund, which asks WeChat Pay for what is left of the transaction's total — refunds the order."""

from __future__ import annotations

import secrets

from fulfillment.aftersales import AfterSalesService
from fulfillment.wechatpay import out_refund_no
from storage.records import OrderState
from tests.wechatpay.test_refund import _delivered, _ledger


def _platform_refund(env, order, no: str, amount: int) -> None:
    """A refund the merchant made in the WeChat Pay merchant platform, not through kamibot."""
    tx = env.fake.transactions[order.ref]
    env.fake.refunds[no] = {"refund_id": "50" + secrets.token_hex(13), "out_refund_no": no,
                            "transaction_id": tx["transaction_id"], "out_trade_no": tx["out_trade_no"],
                            "status": "SUCCESS", "amount": {"total": tx["amount"]["total"], "refund": amount,
                                                            "currency": "CNY"}}


async def test_a_partial_refund_is_booked_once_and_the_merchants_refund_takes_back_the_rest(env):
    order = await _delivered(env)
    _platform_refund(env, order, "P1", 300)
    for _ in range(2):  # WeChat Pay retries: booked once
        assert (await env.fake.notify_refund("P1")).status_code == 204
    assert [line.amount for line in await _ledger(env, "refund")] == [-300]
    assert (await env.order(order)).state == OrderState.DELIVERED
    assert await env.shop.store.refunded_parts(order.id) == 300
    await AfterSalesService(env.shop.store).request_refund(order.ref, "merchant-1")
    await env.shop.delivery.drain()
    refund = env.fake.refunds[out_refund_no(order)]
    assert (refund["amount"]["refund"], refund["amount"]["total"]) == (700, 1000)
    assert (await env.order(order)).state == OrderState.REFUNDED
    assert [line.amount for line in await _ledger(env, "refund")] == [-1000]  # 300 + the rest, 700 (summed)
    assert (await env.fake.notify_refund(out_refund_no(order))).status_code == 204
    assert [line.amount for line in await _ledger(env, "refund")] == [-1000]


async def test_the_partial_refund_that_completes_the_payment_refunds_the_order(env):
    order = await _delivered(env)
    _platform_refund(env, order, "P1", 400)
    _platform_refund(env, order, "P2", 600)
    _platform_refund(env, order, "P3", 1)
    assert (await env.fake.notify_refund("P1")).status_code == 204
    assert (await env.fake.notify_refund("P2")).status_code == 204
    assert (await env.order(order)).state == OrderState.REFUNDED
    # a refund beyond the payment (impossible at WeChat Pay, so suspicious) books nothing
    assert (await env.fake.notify_refund("P3")).status_code == 204
    assert [line.amount for line in await _ledger(env, "refund")] == [-1000]
