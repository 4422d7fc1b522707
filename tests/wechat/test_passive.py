"""Passive reply inside WeChat's 5 s or `success` plus customer-service messages; retries across processes."""

from __future__ import annotations

import asyncio
import re

import pytest

from bot.wechat import AlertsFanOut
from tests.e2e.conftest import db_url  # noqa: F401 - the SQLite file / PostgreSQL database fixture
from tests.fakes.wechat_api import callback, message_xml
from tests.wechat.conftest import ADMIN, CUSTOMER, reply_text, running

REF = re.compile(r"K[0-9A-Z]{11}")


async def test_slow_answer_is_acknowledged_at_once_and_sent_as_customer_service_message(tmp_path, fake):
    async with running(tmp_path, fake, budget_s=0.1) as wx:
        release = asyncio.Event()
        handle = wx.runtime.bot.conversation.handle

        async def slow_handle(msg):  # the conversation waits on a supplier, say
            await release.wait()
            return await handle(msg)

        wx.runtime.bot.conversation.handle = slow_handle
        assert await wx.say(CUSTOMER, "shop") == ""  # `success`: WeChat stops waiting and does not retry
        assert wx.fake.sent == []
        release.set()
        sent = await wx.fake.wait_sent(1)
        assert sent[0].touser == CUSTOMER
        assert "Game top-ups" in sent[0].content
        assert "Reply 1 → Game top-ups" in sent[0].content
        wx.runtime.bot.conversation.handle = handle
        assert "Choose a product" in await wx.say(CUSTOMER, "1")  # the late answer's numbers work


async def test_long_merchant_answer_is_split_into_messages_of_at_most_2048_bytes(tmp_path, fake):
    async with running(tmp_path, fake) as wx:
        for i in range(60):  # a long /stock: many pools
            await wx.shop.store.upsert_pool(f"extra-{i:02d}-pool-with-a-rather-long-name", f"池 {i}", 5)
        first = await wx.say(ADMIN, "/stock")
        await wx.settle()
    rest = wx.fake.to(ADMIN)
    assert rest, "the rest follows as customer-service messages"
    for text in [first, *rest]:
        assert len(text.encode("utf-8")) <= 2048
    joined = "\n".join([first, *rest])
    assert all(f"extra-{i:02d}" in joined for i in range(60))


@pytest.mark.usefixtures("db_url")
async def test_same_msg_id_in_two_processes_three_times_makes_one_order(tmp_path, fake, db_url):  # noqa: F811
    async with running(tmp_path, fake, database_url=db_url) as a, \
            running(tmp_path, fake, database_url=db_url, seed=False) as b:
        for n in ("menu", "1", "1", "1", "1", "2"):  # up to "Buy 2 × 60 crystals?"; process A answers
            await a.say(CUSTOMER, n)
        confirm = callback(message_xml(CUSTOMER, "1", msg_id=987654321))
        responses = await asyncio.gather(a.post(confirm), b.post(confirm), a.post(confirm))
        texts = [reply_text(r.text) for r in responses]
        assert [r.status_code for r in responses] == [200, 200, 200]
        answered = [t for t in texts if t]
        assert len(answered) == 1
        assert REF.search(answered[0])
        orders = await a.shop.store.orders_for_user("wechat", CUSTOMER, 10, 0)
        assert len(orders) == 1
        assert orders[0].quantity == 2


async def test_a_failing_conversation_gets_an_apology_not_a_500(wx, caplog):
    async def broken(msg):
        raise RuntimeError("a bug")

    wx.runtime.bot.conversation.handle = broken
    assert await wx.say(CUSTOMER, "shop") == "Something went wrong. Please try again."
    assert "event=wechat.answer_failed" in caplog.text


async def test_delivery_problems_reach_telegram_and_wechat_merchants_alike(wx):
    class Recorded:
        def __init__(self):
            self.refs = []

        async def delivery_failed(self, order, reason):
            self.refs.append(order.ref)

    telegram_side = Recorded()
    wx.shop.delivery.alerts = AlertsFanOut(telegram_side, wx.runtime.alerts)
    for n in ("menu", "1", "1", "1", "1", "1"):
        await wx.say(CUSTOMER, n)
    ref = REF.search(await wx.say(CUSTOMER, "1")).group(0)
    wx.fake.fail_send(43004)
    order = await wx.shop.store.order_by_ref(ref)
    await wx.shop.payments.receive(wx.shop.providers["test"].pay(order))
    await wx.shop.delivery.run_once()
    assert telegram_side.refs == [ref]
    assert ref in wx.fake.to(ADMIN)[0]
