"""A notification whose recording failed is taken again on WeChat Pay's identical retry (issue 13 §7), and a
payment held for review because its amount differs is announced — merchants once, the buyer in their language —
with the amount actually paid next to the one expected (§6)."""

from __future__ import annotations

import pytest

from bot.composition import build_context
from fulfillment.aftersales import AfterSalesService
from handlers.risk_admin import MerchantRisk
from storage.records import OrderState
from tests.wechatpay.test_two_trades import listen


async def _prepaid(env, openid="o-buyer-1"):
    order = await env.checkout(openid)
    assert (await env.get(env.link(order, openid))).status_code == 200
    return order


@pytest.mark.parametrize("failing", ["receive_payment", "claim_once"])
async def test_identical_retry_after_a_failed_recording_is_accepted_and_recorded_once(env, monkeypatch, failing):
    """The database goes away while the first attempt records the payment (or claims its nonce): the answer is
    FAIL, and WeChat Pay's retry — the very same bytes, the same nonce — is processed, once."""
    order = await _prepaid(env)
    headers, body = env.fake.notification("TRANSACTION.SUCCESS", env.fake.pay(order.ref, "o-buyer-1"))
    store = env.shop.store
    real = {name: getattr(store, name) for name in ("receive_payment", "record_payment", "claim_once")}

    async def down(*args, **kwargs):
        raise ConnectionError("database restarting")

    monkeypatch.setattr(store, failing, down)
    if failing == "receive_payment":
        monkeypatch.setattr(store, "record_payment", down)  # the inbox's fallback record fails too
    first = await env.fake.send(headers, body)
    assert first.status_code == 500
    for name, method in real.items():
        monkeypatch.setattr(store, name, method)
    retry = await env.fake.send(headers, body)
    assert retry.status_code == 204, retry.text
    assert (await env.order(order)).state == OrderState.DELIVERING
    assert len(await store.payment_records(order.id)) == 1
    assert (await env.fake.send(headers, body)).status_code == 204  # and again: nothing more happens
    await env.shop.delivery.drain()
    assert [d.order.id for d in env.channel.sent] == [order.id]


async def test_short_payment_is_held_merchants_and_buyer_told_once_with_paid_and_expected(env):
    alerts, told = listen(env)
    order = await _prepaid(env)
    tx = env.fake.pay(order.ref, "o-buyer-1", amount=900)
    assert (await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", tx))).status_code == 204
    assert (await env.order(order)).state == OrderState.REVIEW
    # WeChat Pay retries, the job asks: nobody is told twice
    assert (await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", tx))).status_code == 204
    await env.wx.reconciler.run_once()
    assert [(m, buttons) for m, _, buttons in alerts.notices] == [("wxpay.alert_held", True)]
    params = alerts.notices[0][1]
    assert (params["ref"], params["paid"], params["expected"]) == (order.ref, "¥9.00", "¥10.00")
    assert params["reasons"]  # the cause of the hold, never empty
    assert [chat for chat, _ in told] == ["o-buyer-1"]
    assert "¥9.00" in told[0][1]
    assert "¥10.00" in told[0][1]
    assert order.ref in told[0][1]
    assert "商家核实" in told[0][1]  # the order's language (zh_CN)
    # the amount actually paid is what the payment event keeps
    [record] = await env.shop.store.payment_records(order.id)
    assert (record.amount, record.currency, record.outcome) == (900, "CNY", "review")
    # the merchant's /review listing shows both
    queue = await MerchantRisk(build_context(env.shop)).review_queue("en")
    assert [r.text for r in queue if order.ref in r.text] == [
        f"{order.ref} — wechat:o-buyer-1, paid CN¥9.00, expected CN¥10.00: payment amount or currency mismatch"]


async def test_rejecting_a_held_short_payment_refunds_what_was_paid(env):
    listen(env)
    order = await _prepaid(env)
    tx = env.fake.pay(order.ref, "o-buyer-1", amount=900)
    assert (await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", tx))).status_code == 204
    await AfterSalesService(env.shop.store).request_refund(order.ref, "merchant-1")
    await env.shop.delivery.drain()
    [refund] = env.fake.refunds.values()
    assert refund["amount"]["refund"] == refund["amount"]["total"] == 900  # the transaction's own total
    assert (await env.order(order)).state == OrderState.REFUNDED
