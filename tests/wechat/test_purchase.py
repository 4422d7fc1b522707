"""A whole purchase by numbers over the callback, payment, delivery by customer-service message, failures."""

from __future__ import annotations

import re

import pytest

from fulfillment.delivery import PermanentFailure, RetryLater
from storage.records import OrderState
from tests.wechat.conftest import ADMIN, CUSTOMER, OTHER, running

REF = re.compile(r"K[0-9A-Z]{11}")
CODE = re.compile(r"^GI60-[A-Z0-9-]+$", re.MULTILINE)


async def _checkout(wx, openid=CUSTOMER, quantity_choice="1"):
    """menu → shop → category → product → SKU → quantity → confirm, every step by number."""
    await wx.say(openid, "menu")
    return [await wx.say(openid, n) for n in ("1", "1", "1", "1", quantity_choice, "1")]


async def _pay(wx, ref):
    order = await wx.shop.store.order_by_ref(ref)
    await wx.shop.payments.receive(wx.shop.providers["test"].pay(order))
    await wx.shop.delivery.run_once()
    return await wx.shop.store.order_by_ref(ref)


async def test_whole_dialog_by_numbers_reaches_the_checkout_reply(wx):
    shop, cats, products, sku, quantity, checkout = await _checkout(wx)
    assert "Game top-ups" in shop
    assert "Reply 1 → Genshin Impact Genesis Crystals" in cats
    assert "60 crystals · CN¥6.00" in products
    assert "Reply the quantity as a number" in sku
    assert "Reply 0 → « Back" in sku
    assert "Buy 1 × 60 crystals" in quantity
    ref = REF.search(checkout).group(0)
    assert "CN¥6.00" in checkout
    assert "online payment is not set up yet" in checkout
    assert "Reply 1 → " in checkout  # cancel
    order = await wx.shop.store.order_by_ref(ref)
    assert (order.channel, order.user_id, order.state) == ("wechat", CUSTOMER, OrderState.AWAITING_PAYMENT)


async def test_checkout_reply_carries_the_pay_link_when_a_provider_gives_one(tmp_path, fake):
    async with running(tmp_path, fake, pay_link=lambda inv: f"https://shop.example/pay/wechat/{inv.order_ref}?s=x") \
            as wx:
        *_, checkout = await _checkout(wx)
    ref = REF.search(checkout).group(0)
    assert f"Pay CN¥6.00 here: https://shop.example/pay/wechat/{ref}?s=x" in checkout


async def test_a_typed_quantity_without_its_own_button_is_bought(wx):
    await wx.say(CUSTOMER, "menu")
    for n in ("1", "1", "1", "1"):
        await wx.say(CUSTOMER, n)
    assert "Buy 4 × 60 crystals for CN¥24.00?" in await wx.say(CUSTOMER, "4")  # quick buttons are 1, 2, 3, 5
    ref = REF.search(await wx.say(CUSTOMER, "1")).group(0)
    assert (await wx.shop.store.order_by_ref(ref)).quantity == 4


async def test_a_quantity_out_of_range_is_refused_at_checkout(wx):
    await wx.say(CUSTOMER, "menu")
    for n in ("1", "1", "1", "1", "99"):
        await wx.say(CUSTOMER, n)
    assert "not possible" in await wx.say(CUSTOMER, "1")
    assert await wx.shop.store.orders_for_user("wechat", CUSTOMER, 10, 0) == []


async def test_paid_order_is_delivered_as_one_customer_service_message_with_codes_one_per_line(wx):
    *_, checkout = await _checkout(wx, quantity_choice="2")
    ref = REF.search(checkout).group(0)
    order = await _pay(wx, ref)
    assert order.state == OrderState.DELIVERED
    sent = wx.fake.to(CUSTOMER)
    assert len(sent) == 1
    assert ref in sent[0]
    assert len(CODE.findall(sent[0])) == 2
    assert "How to redeem" in sent[0]


async def test_outside_the_48h_window_the_order_keeps_its_codes_and_the_merchant_is_told(wx):
    *_, checkout = await _checkout(wx)
    ref = REF.search(checkout).group(0)
    wx.fake.fail_send(45015)
    order = await _pay(wx, ref)
    assert wx.fake.rejected == [(CUSTOMER, 45015)]
    assert order.state == OrderState.DELIVERING  # paid, codes allocated, not shown yet
    assert wx.fake.to(CUSTOMER) == []
    alert = wx.fake.to(ADMIN)
    assert len(alert) == 1
    assert ref in alert[0]
    assert "48-hour" in alert[0]
    assert CODE.findall(alert[0]) == []  # the merchant is told, the codes are not in the notice
    # the customer's next message reopens the window: its answer carries the codes, once
    answer = await wx.say(CUSTOMER, "hello")
    assert ref in answer
    assert len(CODE.findall(answer)) == 1
    assert answer.index(ref) < answer.rindex("Reply 1 → ")  # and the answer to "hello" itself follows
    assert CODE.findall(await wx.say(CUSTOMER, "hello")) == []
    # and My orders keeps showing them
    assert ref in await wx.say(CUSTOMER, "orders")
    assert len(CODE.findall(await wx.say(CUSTOMER, "1"))) == 1
    assert await wx.shop.store.pending_outbox() == 0


@pytest.mark.parametrize("errcode", [43004, 45047])
async def test_unfollowed_user_or_used_up_quota_is_a_permanent_failure(wx, errcode):
    wx.fake.fail_send(errcode)
    with pytest.raises(PermanentFailure):
        await wx.runtime.sender.send_text(CUSTOMER, "hello")


async def test_network_trouble_and_busy_wechat_mean_retry_later(wx):
    wx.fake.fail_send(-1)  # "system busy"
    with pytest.raises(RetryLater):
        await wx.runtime.sender.send_text(CUSTOMER, "hello")
    wx.runtime.api.base_url = "http://127.0.0.1:9"  # nothing listens there
    with pytest.raises(RetryLater):
        await wx.runtime.sender.send_text(CUSTOMER, "hello")


async def test_merchant_commands_only_from_admin_openids(wx):
    stock = await wx.say(ADMIN, "/stock")
    assert "genshin-60" in stock
    assert "genshin-60" not in await wx.say(OTHER, "/stock")
    assert await wx.say(OTHER, "/stock") == "Unknown command. Send /start for the menu."


async def test_codes_of_an_order_are_shown_only_to_its_buyer(wx):
    *_, checkout = await _checkout(wx)
    ref = REF.search(checkout).group(0)
    await _pay(wx, ref)
    others = await wx.say(OTHER, "orders")
    assert "no orders" in others.lower()
    assert ref not in others
    assert CODE.findall(await wx.say(OTHER, "1")) == []  # their button 1 is "Shop", not someone's codes
