"""A direct-recharge purchase over the WeChat callback: numbered menus, the mobile number typed as text, shown back
with its carrier, confirmed by number; the order carries the normalised number."""

from __future__ import annotations

import re
from dataclasses import replace

from tests.wechat.conftest import CUSTOMER

REF = re.compile(r"K[0-9A-Z]{11}")


async def test_a_top_up_is_bought_by_numbers_and_a_typed_mobile_number(wx):
    code_sku = await wx.shop.catalog.find_sku("genshin-60")  # a stocked pool: reservation needs no supplier
    await wx.shop.store.upsert_sku(replace(code_sku, id=0, slug="wx-topup", target_rule="mobile"))
    topup = await wx.shop.catalog.find_sku("wx-topup")
    await wx.shop.catalog.set_price("wx-topup", "wechat", 1000)
    await wx.say(CUSTOMER, f"/start sku_{topup.id}")
    ask = await wx.say(CUSTOMER, "1")  # quantity 1
    assert "Send the mainland China mobile number to top up" in ask
    bad = await wx.say(CUSTOMER, "1380013800")
    assert "A mainland China mobile number has 11 digits." in bad
    shown = await wx.say(CUSTOMER, "138 0013 8000")
    assert "Top up 13800138000 (China Mobile)" in shown
    assert "Reply 1 → Confirm and pay" in shown
    assert await wx.shop.store.orders_for_user("wechat", CUSTOMER, 10, 0) == []
    checkout = await wx.say(CUSTOMER, "1")
    order = await wx.shop.store.order_by_ref(REF.search(checkout).group(0))
    assert order.target == "13800138000"
    assert "138****8000" in await wx.say(CUSTOMER, "orders")
