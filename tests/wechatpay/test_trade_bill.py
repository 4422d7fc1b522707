"""The daily trade bill (GET /v3/bill/tradebill, then its download URL): payments that neither a notification nor
the watch list brought in are found there and applied, trade numbers mapped back to their orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fulfillment.wechatpay_bill import BillFormatError, TradeBillCheck, parse_trade_bill
from storage.records import OrderState
from tests.wechatpay.conftest import WECHAT_UA
from tests.wechatpay.test_two_trades import listen

# the shape of the documented sample (header, backtick-prefixed rows, summary header and row; CRLF)
SAMPLE = ("\ufeff交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
          "付款银行,货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注\r\n"
          "`2026-12-01 10:01:02,`wxd678efh567hg6787,`1900000109,`0,`,`4200001234202612011234567890,"
          "`K23456789ABC-J,`o-buyer,`JSAPI,`SUCCESS,`OTHERS,`CNY,`10.00,`0.00,`goods,`,`0.06,`0.60%,`10.00,`\r\n"
          "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n"
          "`1,`10.00,`0.00,`0.00,`0.06,`10.00,`0.00\r\n")


def test_bill_rows_are_read_by_column_name_in_fen():
    [row] = parse_trade_bill(SAMPLE)
    assert (row.trade_no, row.transaction_id, row.state, row.amount, row.currency) == (
        "K23456789ABC-J", "4200001234202612011234567890", "SUCCESS", 1000, "CNY")
    with pytest.raises(BillFormatError):
        parse_trade_bill(SAMPLE.replace("`0.60%,`10.00", "`0.60%,`10.005"))
    with pytest.raises(BillFormatError):
        parse_trade_bill("a,b\r\n`1,`2\r\n")


def _yesterday_bill(env) -> str:
    return TradeBillCheck(env.shop.store, env.wx.client, env.wx.notifications, env.wx.clock).due_day() \
        or (datetime.now(UTC) + timedelta(hours=8)).date() - timedelta(days=1)


async def test_payment_missed_by_notification_and_watch_list_is_found_in_the_bill(env):
    order = await env.checkout()
    assert (await env.get(env.link(order), ua=WECHAT_UA)).status_code == 200
    day = _yesterday_bill(env)
    env.fake.pay(order.ref + "-J", "o-buyer-1")
    env.fake.transactions[order.ref + "-J"]["bill_date"] = day.isoformat()
    await env.wx.watch.remove({order.ref + "-J"})  # the watch list lost it too
    applied = await env.wx.reconciler.bills.check(day)
    assert applied == 1
    assert (await env.order(order)).state == OrderState.DELIVERING
    assert await env.wx.reconciler.bills.check(day) == 0  # recorded now: nothing more to do
    assert ("GET", "/v3/billdownload/file") in env.fake.calls


async def test_second_payment_found_in_the_bill_is_refunded(env):
    _, told = listen(env)
    order = await env.checkout()
    assert (await env.get(env.link(order))).status_code == 200
    assert (await env.get(env.link(order), ua=WECHAT_UA)).status_code == 200
    day = _yesterday_bill(env)
    inside = env.fake.pay(order.ref + "-J", "o-buyer-1")
    assert (await env.fake.notify_paid(order.ref + "-N", "o-buyer-1")).status_code == 204
    await env.wx.watch.remove({order.ref + "-J"})
    for tx in env.fake.transactions.values():
        tx["bill_date"] = day.isoformat()
    assert await env.wx.reconciler.bills.check(day) == 1
    assert [r["out_refund_no"] for r in env.fake.refunds.values()] == ["D" + inside["transaction_id"]]
    assert len(told) == 1


async def test_a_day_without_payments_and_a_tampered_bill(env):
    checker = env.wx.reconciler.bills
    day = _yesterday_bill(env)
    assert await checker.check(day) == 0  # NO_STATEMENT_EXIST: no payment that day
    order = await env.checkout()
    assert (await env.get(env.link(order))).status_code == 200
    env.fake.pay(order.ref, "o-buyer-1")
    env.fake.transactions[order.ref]["bill_date"] = day.isoformat()
    env.fake.bill_rewrite = lambda data: data.replace(b"`10.00", b"`1.00")  # not the file the hash names
    assert await checker.check(day) is None  # not believed; tried again on the next pass
    assert (await env.order(order)).state == OrderState.AWAITING_PAYMENT
    env.fake.bill_rewrite = None
    assert await checker.check(day) == 1
    assert (await env.order(order)).state == OrderState.DELIVERING


async def test_the_job_reads_the_due_bill_once(env):
    order = await env.checkout()
    assert (await env.get(env.link(order))).status_code == 200
    env.fake.pay(order.ref, "o-buyer-1")
    day = _yesterday_bill(env)
    env.fake.transactions[order.ref]["bill_date"] = day.isoformat()
    await env.wx.watch.remove({order.ref + "-N"})
    env.wx.reconciler.bills.clock = lambda: datetime.combine(day + timedelta(days=1), datetime.min.time(),
                                                             UTC) + timedelta(hours=3)  # 11:00 Beijing
    assert await env.wx.reconciler.run_once() == 1
    assert await env.wx.reconciler.run_once() == 0
    assert sum(1 for _, path in env.fake.calls if path == "/v3/bill/tradebill") == 1
    env.wx.reconciler.bills.clock = lambda: datetime.combine(day + timedelta(days=1), datetime.min.time(),
                                                             UTC)  # 08:00 Beijing: not yet
    assert env.wx.reconciler.bills.due_day() is None
