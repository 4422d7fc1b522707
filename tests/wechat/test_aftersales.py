"""The after-sales hand-over over WeChat: passive replies to the customer, ticket notices and the merchant's answer
as customer-service messages through the fake WeChat API."""

from __future__ import annotations

import re

from tests.wechat.conftest import ADMIN, CUSTOMER


async def test_human_hand_over_round_trip_over_wechat(wx):
    assert "No open tickets." in await wx.say(ADMIN, "/tickets")
    answer = await wx.say(CUSTOMER, "我要找人工客服")
    number = int(re.search(r"ticket #(\d+)", answer).group(1))
    assert f"I have passed your message to the merchant (ticket #{number})" in answer
    await wx.settle()
    notices = [t for t in wx.fake.to(ADMIN) if f"Ticket #{number}" in t]
    assert len(notices) == 1
    assert f"(talk to a person) from wechat:{CUSTOMER}: 我要找人工客服" in notices[0]
    sent = await wx.say(ADMIN, f"/reply {number} 您好，请问什么问题？")
    assert f"Sent to wechat:{CUSTOMER} (ticket #{number})." in sent
    await wx.settle()
    assert any(f"The merchant answers (ticket #{number}):\n您好，请问什么问题？" in t for t in wx.fake.to(CUSTOMER))
    assert f"#{number} answered" in await wx.say(ADMIN, "/tickets")


async def test_unclear_customer_text_asks_with_numbered_choices_over_wechat(wx):
    answer = await wx.say(CUSTOMER, "asdf qwerty")
    assert "Sorry, I am not sure what you need." in answer
    assert "Talk to a person" in answer
