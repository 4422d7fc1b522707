"""One order, two payment scenarios (issue 13 §5, §3): the pay page opened in a desktop browser (Native QR) and then
inside WeChat (JSAPI). WeChat Pay accepts one out_trade_no in one scenario only, so each (order, trade type) has
its own; a second payment of an order goes straight back, once, with a ledger line, the buyer and merchants told."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from bot.wechatpay_notices import ShopNotices
from fulfillment.wechatpay import WeChatPayError, extra_refund_no, order_ref_of, out_trade_no
from handlers.types import Reply
from storage.records import OrderState
from tests.wechatpay.conftest import WECHAT_UA


class RecordingAlerts:
    """A channel's merchant notices (TelegramAlerts' shape: msgid, optional buttons, params)."""

    def __init__(self) -> None:
        self.notices: list[tuple[str, dict[str, Any], bool]] = []

    async def notify(self, msgid: str, buttons: Any = None, **params: Any) -> None:
        self.notices.append((msgid, params, buttons is not None))

    async def delivery_failed(self, order: Any, reason: str) -> None:
        return None


def listen(env) -> tuple[RecordingAlerts, list[tuple[str, str]]]:
    alerts, told = RecordingAlerts(), []

    async def send(chat_id: str, reply: Reply) -> None:
        told.append((chat_id, reply.text))

    env.shop.delivery.alerts = alerts
    env.wx.after.notices = ShopNotices(env.shop, {"wechat": send})
    return alerts, told


async def _both_pages(env, openid="o-buyer-1"):
    order = await env.checkout(openid)
    native = await env.get(env.link(order, openid))  # a desktop browser first: Native QR
    assert native.status_code == 200, native.text
    assert "<svg" in native.text
    jsapi = await env.get(env.link(order, openid), ua=WECHAT_UA)  # then inside WeChat: JSAPI
    assert jsapi.status_code == 200, jsapi.text
    assert "getBrandWCPayRequest" in jsapi.text
    return order


async def _ledger(env, kind):
    now = env.wx.clock()
    return [(line.amount, line.currency) for line in await env.shop.store.ledger(now - timedelta(days=1),
                                                                                  now + timedelta(days=1))
            if line.kind == kind]


def test_trade_numbers_follow_wechat_pays_rule_and_map_back():
    ref = "K23456789ABCD"[:12]
    for kind in ("jsapi", "native"):
        no = out_trade_no(ref, kind)
        assert 6 <= len(no) <= 32
        assert all(c.isalnum() or c in "_-|*" for c in no)
        assert order_ref_of(no) == ref
    assert out_trade_no(ref, "jsapi") != out_trade_no(ref, "native")
    assert order_ref_of(ref) == ref  # a bare ref (prepays made before trade numbers had types)
    assert len(extra_refund_no("4200001234202612011234567890")) <= 64


async def test_fake_refuses_a_second_prepay_of_one_out_trade_no_under_another_type(env):
    order = await env.checkout()
    body = {"appid": env.fake.app_id, "mchid": env.fake.mchid, "description": "x", "out_trade_no": order.ref,
            "notify_url": env.fake.notify_url, "amount": {"total": 1000, "currency": "CNY"}}
    assert (await env.wx.client.request("POST", "/v3/pay/transactions/native", body))["code_url"]
    again = await env.wx.client.request("POST", "/v3/pay/transactions/native", body)
    assert again["code_url"] == env.fake.transactions[order.ref]["code_url"]  # same type, same params: same
    with pytest.raises(WeChatPayError) as refused:
        await env.wx.client.request("POST", "/v3/pay/transactions/jsapi", body | {"payer": {"openid": "o-1"}})
    assert (refused.value.status, refused.value.code) == (400, "INVALID_REQUEST")
    assert str(refused.value).endswith("201 商户订单号重复")
    assert env.fake.duplicates == [order.ref]


async def test_link_opened_outside_then_inside_wechat_can_be_paid_inside(env):
    order = await _both_pages(env)
    assert env.fake.duplicates == []
    assert env.fake.transactions[order.ref + "-N"]["trade_type"] == "NATIVE"
    jsapi = env.fake.transactions[order.ref + "-J"]
    assert (jsapi["trade_type"], jsapi["payer"]) == ("JSAPI", {"openid": "o-buyer-1"})
    # reloading either page reuses its prepay
    assert (await env.get(env.link(order), ua=WECHAT_UA)).status_code == 200
    assert env.fake.duplicates == []
    assert (await env.fake.notify_paid(order.ref + "-J", "o-buyer-1")).status_code == 204
    assert (await env.order(order)).state == OrderState.DELIVERING
    # the Native trade is closed at once: it can no longer be paid
    assert env.fake.transactions[order.ref + "-N"]["trade_state"] == "CLOSED"
    assert ("POST", f"/v3/pay/transactions/out-trade-no/{order.ref}-N/close") in env.fake.calls
    await env.shop.delivery.drain()
    assert [d.order.id for d in env.channel.sent] == [order.id]
    # the job settles the rest of the watch list
    await env.wx.reconciler.run_once()
    assert await env.wx.watch.refs() == {}


async def test_both_trades_paid_the_second_is_refunded_once_and_everyone_told(env):
    alerts, told = listen(env)
    order = await _both_pages(env)
    native = env.fake.pay(order.ref + "-N", "o-buyer-1")  # paid by QR from another phone …
    inside = env.fake.pay(order.ref + "-J", "o-buyer-1")  # … and inside WeChat, before either notification
    assert (await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", native))).status_code == 204
    assert (await env.order(order)).state == OrderState.DELIVERING
    second = await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", inside))
    assert second.status_code == 204
    # WeChat Pay retries the second notification, and the job finds the same payment: refunded once
    assert (await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", inside))).status_code == 204
    await env.wx.reconciler.run_once()
    refunds = [r for r in env.fake.refunds.values() if r["transaction_id"] == inside["transaction_id"]]
    assert len(refunds) == 1
    assert refunds[0]["out_refund_no"] == extra_refund_no(inside["transaction_id"])
    assert refunds[0]["amount"]["refund"] == refunds[0]["amount"]["total"] == 1000
    assert sum(1 for _, path in env.fake.calls if path == "/v3/refund/domestic/refunds") == 1
    assert not any(r["transaction_id"] == native["transaction_id"] for r in env.fake.refunds.values())
    # the order keeps its first payment and is delivered once
    await env.shop.delivery.drain()
    assert (await env.order(order)).state == OrderState.DELIVERED
    assert (await env.shop.store.order_payment(order.id))[1] == native["transaction_id"]
    assert [d.order.id for d in env.channel.sent] == [order.id]
    # money in and out, once each; not a second sale in the reports
    assert await _ledger(env, "duplicate_payment") == [(1000, "CNY")]
    assert await _ledger(env, "duplicate_refund") == [(-1000, "CNY")]
    assert await _ledger(env, "sale") == [(1000, "CNY")]
    assert [m for m, _, _ in alerts.notices] == ["wxpay.alert_extra_refunded"]
    assert alerts.notices[0][1]["ref"] == order.ref
    assert [chat for chat, _ in told] == ["o-buyer-1"]
    assert order.ref in told[0][1]
    assert "¥10.00" in told[0][1]
    # WeChat Pay's REFUND.SUCCESS for it is acknowledged and changes nothing
    assert (await env.fake.notify_refund(extra_refund_no(inside["transaction_id"]))).status_code == 204
    assert (await env.order(order)).state == OrderState.DELIVERED
    assert await _ledger(env, "refund") == []


async def test_second_payment_found_by_the_job_is_refunded_too(env):
    _, told = listen(env)
    order = await _both_pages(env)
    env.fake.pay(order.ref + "-J", "o-buyer-1")  # paid inside WeChat; that notification never comes
    assert (await env.fake.notify_paid(order.ref + "-N", "o-buyer-1")).status_code == 204
    assert env.fake.transactions[order.ref + "-J"]["trade_state"] == "SUCCESS"  # the close answered ORDERPAID
    assert set(await env.wx.watch.refs()) == {order.ref + "-N", order.ref + "-J"}
    await env.wx.reconciler.run_once()
    assert len(env.fake.refunds) == 1
    assert await _ledger(env, "duplicate_refund") == [(-1000, "CNY")]
    assert len(told) == 1
    await env.wx.reconciler.run_once()
    assert len(env.fake.refunds) == 1
    assert await env.wx.watch.refs() == {}


async def test_refund_failure_answers_fail_so_wechat_pay_retries_and_refunds_later(env):
    listen(env)
    order = await _both_pages(env)
    native = env.fake.pay(order.ref + "-N", "o-buyer-1")
    inside = env.fake.pay(order.ref + "-J", "o-buyer-1")
    assert (await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", native))).status_code == 204
    env.fake.refund_status = "ABNORMAL"
    failed = await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", inside))
    assert failed.status_code == 500
    # the money is owed back from the moment the payment is known as a second one (one ledger line, written
    # with the decision); the refund itself waits for WeChat Pay's retry
    assert await _ledger(env, "duplicate_refund") == [(-1000, "CNY")]
    second = await env.shop.store.payment_record("wechatpay", inside["transaction_id"])
    assert second is not None
    assert not second.detail.startswith("refunded")
    env.fake.refunds.clear()
    env.fake.refund_status = "SUCCESS"
    assert (await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", inside))).status_code == 204
    assert [r["transaction_id"] for r in env.fake.refunds.values()] == [inside["transaction_id"]]
    assert await _ledger(env, "duplicate_refund") == [(-1000, "CNY")]


async def test_both_notifications_at_once_keep_one_payment_and_refund_the_other(env):
    listen(env)
    order = await _both_pages(env)
    native = env.fake.pay(order.ref + "-N", "o-buyer-1")
    inside = env.fake.pay(order.ref + "-J", "o-buyer-1")
    answers = await asyncio.gather(env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", native)),
                                   env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", inside)))
    assert [a.status_code for a in answers] == [204, 204]
    kept = (await env.shop.store.order_payment(order.id))
    records = await env.shop.store.payment_records(order.id)
    allocated = [r.provider_txn_id for r in records if r.outcome == "allocated"]
    assert len(allocated) == 1
    refunded = [r["transaction_id"] for r in env.fake.refunds.values()]
    assert len(refunded) == 1
    assert refunded[0] != allocated[0]
    assert {refunded[0], allocated[0]} == {native["transaction_id"], inside["transaction_id"]}
    assert kept is not None
    await env.shop.delivery.drain()
    assert [d.order.id for d in env.channel.sent] == [order.id]


async def test_the_provider_refunds_a_second_payment_under_its_own_number_never_the_orders(env):
    """A generic "refund this payment" (e.g. a shop-wide duplicate-payment path) asks the provider: the second
    transaction gets the same refund the notification path made, and the order's own refund number stays free."""
    listen(env)
    order = await _both_pages(env)
    native = env.fake.pay(order.ref + "-N", "o-buyer-1")
    inside = env.fake.pay(order.ref + "-J", "o-buyer-1")
    assert (await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", native))).status_code == 204
    assert (await env.fake.send(*env.fake.notification("TRANSACTION.SUCCESS", inside))).status_code == 204
    fresh = await env.order(order)
    again = await env.wx.provider.refund(fresh, inside["transaction_id"], 1000)
    assert len(env.fake.refunds) == 1
    assert again == next(iter(env.fake.refunds.values()))["refund_id"]
    await env.wx.provider.refund(fresh, native["transaction_id"], 1000)  # the merchant refunds the order itself
    assert sorted(env.fake.refunds) == sorted([extra_refund_no(inside["transaction_id"]), "R" + order.ref])
