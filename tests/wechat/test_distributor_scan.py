"""A distributor's parametric QR code in WeChat: a follow through it (subscribe, EventKey qrscene_ref_<code>) or a
scan by a follower (SCAN, EventKey ref_<code>) makes the customer the distributor's referral, whose delivered
orders earn it commission; a second code never replaces the first referrer."""

from __future__ import annotations

import re

from fulfillment.distributors import CommissionPass
from storage.records import OrderState
from tests.wechat.conftest import CUSTOMER, OTHER

REF = re.compile(r"K[0-9A-Z]{11}")


async def _bought(wx, openid):
    await wx.say(openid, "menu")
    checkout = [await wx.say(openid, n) for n in ("1", "1", "1", "1", "1", "1")][-1]
    order = await wx.shop.store.order_by_ref(REF.search(checkout).group(0))
    await wx.shop.payments.receive(wx.shop.providers["test"].pay(order))
    await wx.shop.delivery.drain()
    order = await wx.shop.store.order_by_ref(order.ref)
    assert order.state == OrderState.DELIVERED
    return order


async def test_follow_and_scan_through_referral_codes_earn_the_distributor_commission(wx):
    desk = wx.ctx.services.distributors
    for name in ("acme", "beta"):
        await desk.add(name)
        await desk.set_commission(name, "1000")
    await wx.event(CUSTOMER, "subscribe", "qrscene_ref_acme")
    await wx.say(OTHER, "menu")  # follows already: a later scan of beta's code makes OTHER beta's referral
    assert await wx.event(OTHER, "SCAN", "ref_beta") == ""
    await wx.event(CUSTOMER, "SCAN", "ref_beta")  # the first referrer stays
    first, second = await _bought(wx, CUSTOMER), await _bought(wx, OTHER)
    await CommissionPass(wx.shop.store).run_once()
    acme, beta = await desk.find("acme"), await desk.find("beta")
    assert await wx.shop.store.commission_balances(acme.id) == {first.currency: first.amount // 10}
    assert await wx.shop.store.commission_balances(beta.id) == {second.currency: second.amount // 10}
