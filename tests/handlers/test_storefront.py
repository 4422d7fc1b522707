"""The customer conversation through the console adapter: browse, buy, pay, codes, orders, language."""

from __future__ import annotations

import re

from fulfillment.orders import CheckoutRequest
from handlers.types import Incoming

CODE = re.compile(r"^\s{4}(GI60-[A-Z0-9-]+|VIP-[A-Z0-9-]+)$", re.MULTILINE)


async def _buy_one_crystal(demo, chat=None):
    chat = chat or demo.customer
    for step in ("/start", "1", "1", "1", "1", "1", "1"):  # shop, games, product, sku 60, qty 1, confirm
        await chat.say(step)
    await chat.say("1")  # pay (test provider)


async def test_customer_buys_and_receives_a_code_with_instructions(demo):
    await _buy_one_crystal(demo)
    text = demo.out.text()
    assert "Payment received" in text
    assert "How to redeem: Open the official redemption page" in text
    codes = CODE.findall(text)
    assert len(codes) == 1
    stock = {lv.pool_slug: lv.available for lv in await demo.shop.store.stock_levels()}
    assert stock["genshin-60"] == 29


async def test_my_orders_shows_codes_again_only_to_the_buyer(demo):
    await _buy_one_crystal(demo)
    first = CODE.findall(demo.out.text())
    demo.out.clear()
    await demo.customer.say("/orders")
    await demo.customer.say("1")  # "Codes of …"
    assert CODE.findall(demo.out.text()) == first
    ref = re.search(r"K[0-9A-Z]{11}", demo.out.text()).group(0)
    demo.out.clear()
    replies = await demo.stranger.conversation.handle(Incoming("console", "stranger", "stranger",
                                                               button=f"codes:{ref}", language="zh_CN"))
    assert replies[0].codes == []
    assert replies[0].text == "未找到该订单。"


async def test_chinese_customer_sees_chinese_text_and_yuan(demo):
    await demo.stranger.say("/start")
    await demo.stranger.say("1")
    await demo.stranger.say("1")
    await demo.stranger.say("1")
    assert "原神 创世结晶" in demo.out.text()
    assert "¥6.00" in demo.out.text()


async def test_cancelled_invoice_releases_stock_and_cannot_be_paid(demo):
    for step in ("/start", "1", "1", "1", "1", "2", "1"):  # … qty 2, confirm
        await demo.customer.say(step)
    assert {lv.pool_slug: lv.available for lv in await demo.shop.store.stock_levels()}["genshin-60"] == 28
    await demo.customer.say("2")  # cancel
    assert "cancelled" in demo.out.text()
    assert {lv.pool_slug: lv.available for lv in await demo.shop.store.stock_levels()}["genshin-60"] == 30
    ref = re.search(r"Order (K[0-9A-Z]{11})", demo.out.text()).group(1)
    order = await demo.shop.store.order_by_ref(ref)
    import pytest

    from fulfillment.errors import NotAllowed

    with pytest.raises(NotAllowed):
        await demo.shop.orders.check_payable(ref, order.amount, order.currency)


async def test_unknown_buttons_and_bad_ids_get_a_clear_answer(demo):
    for data in ("sku:999999", "qty:1:abc", "cat:-1", "nonsense", "buy:1:0"):
        replies = await demo.customer.conversation.handle(Incoming("console", "customer", "customer",
                                                                   button=data, language="en"))
        assert replies, data
        assert replies[0].text in ("Sorry, I did not understand that.", "That quantity is not possible.",
                                   "This product does not exist or is not on sale."), data
    assert await demo.shop.store.orders_for_user("console", "customer", 10, 0) == []


async def test_multi_use_codes_sell_each_use_once(demo):
    # 32 messages in well under a second is a flood for a human; this test is about stock, not flood control
    demo.shop.risk.book = demo.shop.risk.book.model_copy(update={"chat_burst": 100})
    seen = []
    for _ in range(4):
        demo.out.clear()
        for step in ("/start", "1", "2", "1", "1", "1", "1", "1"):  # memberships → video → 1 month → qty 1
            await demo.customer.say(step)
        seen += CODE.findall(demo.out.text())
    assert len(seen) == 3, "per-user limit is 3"
    assert "purchase limit" in demo.out.text()


async def test_language_can_be_switched(demo):
    await demo.customer.say("/language")
    await demo.customer.say("1")  # 简体中文
    assert "欢迎光临" in demo.out.text()


async def test_confirm_pressed_after_a_price_change_asks_again_and_charges_nothing(demo):
    for step in ("/start", "1", "1", "1", "1", "1"):  # … up to the confirm screen at ¥6.00
        await demo.customer.say(step)
    await demo.merchant.say("/price genshin-60 700")
    demo.out.clear()
    await demo.customer.say("1")  # confirm, pressed on the stale screen
    assert "The price has changed" in demo.out.text()
    assert "CN¥7.00" in demo.out.text()
    assert await demo.shop.store.orders_for_user("console", "customer", 10, 0) == []
    await demo.customer.say("1")  # confirm again, at the new price
    orders = await demo.shop.store.orders_for_user("console", "customer", 10, 0)
    assert [o.amount for o in orders] == [700]


async def test_contact_button_shows_the_merchant_contact(demo):
    await demo.customer.say("/start")
    await demo.customer.say("4")
    assert "Just write your question here" in demo.out.text()


async def test_chosen_language_survives_a_restart(demo):
    from bot.demo import make_context
    from handlers.router import Conversation
    from handlers.types import Incoming

    await demo.customer.say("/start")
    await demo.customer.say("/language")
    await demo.customer.say("1")  # 简体中文
    fresh = make_context(demo.shop, set())  # another process: an empty language cache
    replies = await Conversation(fresh).handle(Incoming("console", "customer", "customer", text="/start",
                                                        language="en"))
    assert replies[0].text.startswith("欢迎光临")


async def test_my_orders_pages_five_at_a_time_newest_first(demo):
    sku = await demo.shop.store.sku_by_slug("genshin-60")
    for _ in range(6):
        await demo.shop.orders.checkout(CheckoutRequest("console", "customer", "customer", sku.id, 1))
    refs = {o.ref for o in await demo.shop.store.orders_for_user("console", "customer", 10, 0)}
    assert len(refs) == 6
    pages = [await demo.customer.conversation.handle(Incoming("console", "customer", "customer",
                                                              button=f"orders:{n}", language="en")) for n in (0, 1)]
    shown = [set(re.findall(r"K[0-9A-Z]{11}", page[0].text)) for page in pages]
    assert (len(shown[0]), len(shown[1])) == (5, 1)
    assert shown[0] | shown[1] == refs
    labels = [{b.label for row in page[0].buttons for b in row} for page in pages]
    assert "Older »" in labels[0]
    assert "« Newer" not in labels[0]
    assert "Older »" not in labels[1]
    assert "« Newer" in labels[1]
