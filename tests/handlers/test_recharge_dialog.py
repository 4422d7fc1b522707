"""The direct-recharge dialog through the console adapter (the channel-neutral conversation Telegram and WeChat
use): the target asked before checkout, a bad one explained and asked again with no order, a good one shown back
with its carrier, change / cancel, checkout with the normalised target; order lists mask it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.composition import Shop, build_shop
from bot.demo import CUSTOMER_ID, MERCHANT_ID, make_context, seed_demo, start_supply
from bot.supply import Supply
from fulfillment.orders import HOLDING
from handlers.console.adapter import CHANNEL, ConsoleChannel, ConsoleChat
from handlers.render import order_line
from handlers.router import Conversation
from handlers.types import Incoming
from storage.records import Order, OrderState
from tests.fulfillment.conftest import settings_for
from tests.handlers.conftest import Transcript

TO_TOP_UP = ("/start", "1", "3", "1", "1", "1")  # shop, simulated supplier, phone credit, ¥10, quantity 1


@dataclass
class SuppliedDemo:
    shop: Shop
    supply: Supply
    out: Transcript
    customer: ConsoleChat
    chinese: ConsoleChat
    merchant: ConsoleChat


@pytest.fixture
async def sdemo(tmp_path: Path) -> AsyncIterator[SuppliedDemo]:
    shop = await build_shop(settings_for(tmp_path))
    await seed_demo(shop)
    ctx = make_context(shop, {MERCHANT_ID})
    out = Transcript()
    shop.channels[CHANNEL] = ConsoleChannel(ctx, out.write, tmp_path / "deliveries")
    supply = await start_supply(shop, ctx)
    conv = Conversation(ctx)

    def chat(user: str, lang: str) -> ConsoleChat:
        return ConsoleChat(ctx, conv, shop.providers["test"], user, out.write,  # type: ignore[arg-type]
                           tmp_path / "deliveries", lang)

    yield SuppliedDemo(shop, supply, out, chat(CUSTOMER_ID, "en"), chat("zhang", "zh_CN"), chat(MERCHANT_ID, "en"))
    await supply.aclose()
    await shop.close()


async def _orders(demo: SuppliedDemo, user: str = CUSTOMER_ID):
    return await demo.shop.store.orders_for_user(CHANNEL, user, 10, 0)


async def test_the_target_is_asked_checked_and_shown_back_with_its_carrier(sdemo):
    for step in TO_TOP_UP:
        await sdemo.customer.say(step)
    assert "Send the mainland China mobile number to top up" in sdemo.out.text()
    for bad, why in (("12345", "has 11 digits"), ("1380013800a", "digits only"), ("12012345678", "unknown prefix")):
        sdemo.out.clear()
        await sdemo.customer.say(bad)
        assert why in sdemo.out.text()
        assert "Send the mainland China mobile number" in sdemo.out.text()  # asked again
    assert await _orders(sdemo) == []
    sdemo.out.clear()
    await sdemo.customer.say("+86 138-0013-8000")
    shown = sdemo.out.text()
    assert "Top up 13800138000 (China Mobile) with 1 × ¥10 credit for CN¥10.00?" in shown
    assert "[1] Confirm and pay  [2] Change  [3] Cancel" in shown
    assert await _orders(sdemo) == []  # nothing reserved before the confirmation
    sdemo.out.clear()
    await sdemo.customer.say("2")  # change
    assert "Send the mainland China mobile number" in sdemo.out.text()
    await sdemo.customer.say("186 1234 5678")
    assert "18612345678 (China Unicom)" in sdemo.out.text()


async def test_chinese_customers_read_the_carrier_in_chinese(sdemo):
    for step in TO_TOP_UP:
        await sdemo.chinese.say(step)
    assert "请发送要充值的中国大陆手机号" in sdemo.out.text()
    await sdemo.chinese.say("１９２ １２３４ ５６７８")
    assert "19212345678（中国广电）" in sdemo.out.text()


async def test_cancel_leaves_the_top_up_and_free_text_goes_back_to_the_assistant(sdemo):
    for step in TO_TOP_UP:
        await sdemo.customer.say(step)
    sdemo.out.clear()
    await sdemo.customer.say("/cancel")
    assert "Top-up cancelled. Nothing was charged." in sdemo.out.text()
    sdemo.out.clear()
    await sdemo.customer.say("13800138000")
    assert "Top up 13800138000" not in sdemo.out.text()  # no longer read as a target
    for step in TO_TOP_UP:
        await sdemo.customer.say(step)
    sdemo.out.clear()
    await sdemo.customer.say("1")  # the Cancel button: back to the SKU
    assert "How many?" in sdemo.out.text()
    assert await _orders(sdemo) == []


async def test_a_confirmed_target_is_checked_out_normalised_and_listed_masked(sdemo):
    """A recharge SKU over a stocked pool (reservation works on any branch); the demo's own top-up SKUs reserve
    without stock once the after-payment path is merged (tests/bot/test_demo_recharge_delivery.py)."""
    store = sdemo.shop.store
    code_sku = await sdemo.shop.catalog.find_sku("genshin-60")
    await store.upsert_sku(replace(code_sku, slug="test-topup", target_rule="mobile"))
    topup = await sdemo.shop.catalog.find_sku("test-topup")
    await sdemo.shop.catalog.set_price("test-topup", "console", 600)
    conv = sdemo.customer.conversation
    await sdemo.customer.say(f"/start sku_{topup.id}")
    await sdemo.customer.say("1")  # quantity 1
    await sdemo.customer.say("0086 138 0013 8000")
    confirm = next(b for b in sdemo.customer.buttons if b.startswith("rbuy:"))
    replies = await conv.handle(Incoming(CHANNEL, CUSTOMER_ID, CUSTOMER_ID, button=confirm, language="en"))
    assert replies[0].invoice is not None
    [order] = await _orders(sdemo)
    assert order.target == "13800138000"
    assert order.state in HOLDING
    again = await conv.handle(Incoming(CHANNEL, CUSTOMER_ID, CUSTOMER_ID, button=confirm, language="en"))
    assert "not confirmed in time" in again[0].text  # the draft is gone: a second press orders nothing
    assert len(await _orders(sdemo)) == 1
    await sdemo.customer.pay(order.ref)
    paid = await store.order_by_ref(order.ref)
    assert paid.state not in HOLDING
    assert paid.state is not OrderState.EXPIRED
    assert await store.order_payment(order.id) is not None
    sdemo.out.clear()
    await sdemo.customer.say("/orders")
    assert "138****8000" in sdemo.out.text()
    assert "13800138000" not in sdemo.out.text()
    assert "Codes of" not in sdemo.out.text()  # a top-up has no codes to show again
    sdemo.out.clear()
    await sdemo.merchant.say(f"/order {order.ref}")
    assert "Top-up target: 13800138000" in sdemo.out.text()  # merchants see it in full


async def test_a_stale_buy_button_of_a_recharge_sku_orders_nothing(sdemo):
    sku = await sdemo.shop.catalog.find_sku("sim-mobile-10")
    replies = await sdemo.customer.conversation.handle(Incoming(CHANNEL, CUSTOMER_ID, CUSTOMER_ID,
                                                                button=f"buy:{sku.id}:1:1000", language="en"))
    assert replies[0].text == "Please send the number or account id to top up."
    assert await _orders(sdemo) == []


async def test_delivering_recharge_orders_read_recharging(sdemo):
    sku = await sdemo.shop.catalog.find_sku("sim-mobile-10")
    base = Order(1, "K000000000001", CHANNEL, "c", "c", sku.id, sku.pool_id, 1, 1, 1000, "CNY",
                 OrderState.DELIVERING, datetime.now(UTC), datetime.now(UTC), "en", "13800138000")
    tr = sdemo.customer.ctx.tr
    assert re.search(r"¥10 credit → 138\*\*\*\*8000 · CN¥10.00 · recharging$", order_line(tr, "en", base, sku, "UTC"))
    assert order_line(tr, "zh_CN", base, sku, "UTC").endswith("充值中")
    delivered = replace(base, state=OrderState.DELIVERED)
    assert order_line(tr, "en", delivered, sku, "UTC").endswith("delivered")
    plain = replace(base, target=None)
    assert order_line(tr, "en", plain, sku, "UTC").endswith("delivering")


async def test_merchants_make_a_sku_a_top_up_in_chat_and_bad_rules_change_nothing(sdemo):
    await sdemo.merchant.say("/sku genshin-300 target=mobile")
    assert "genshin-300" in sdemo.out.text()
    assert (await sdemo.shop.catalog.find_sku("genshin-300")).target_rule == "mobile"
    sdemo.out.clear()
    await sdemo.merchant.say("/sku genshin-300 target=re:([a-z]+)*")
    assert "nests repeats" in sdemo.out.text()  # merchants see the detail
    assert (await sdemo.shop.catalog.find_sku("genshin-300")).target_rule == "mobile"
    sdemo.out.clear()
    await sdemo.merchant.say("/sku")
    assert "genshin-300" in sdemo.out.text()
    assert "· top-up target mobile" in sdemo.out.text()
    await sdemo.merchant.say("/sku genshin-300 target=none")
    assert (await sdemo.shop.catalog.find_sku("genshin-300")).target_rule is None
    await sdemo.merchant.say("/sku new game-id product=genshin-crystals pool=genshin-60 name_en=ID name_zh=ID "
                             "'target=re:[0-9]{5,12}'")
    assert (await sdemo.shop.catalog.find_sku("game-id")).target_rule == "re:[0-9]{5,12}"


async def test_a_price_change_before_the_confirmation_asks_again_and_orders_nothing(sdemo):
    for step in TO_TOP_UP:
        await sdemo.customer.say(step)
    await sdemo.customer.say("13800138000")
    await sdemo.shop.catalog.set_price("sim-mobile-10", "console", 1100)
    sdemo.out.clear()
    await sdemo.customer.say("1")  # confirm at the old price
    assert "price" in sdemo.out.text().lower()
    assert "1 × ¥10 credit for CN¥11.00" in sdemo.out.text()
    assert await _orders(sdemo) == []
    sdemo.out.clear()
    await sdemo.customer.say("13800138000")  # still read as the target
    assert "Top up 13800138000 (China Mobile) with 1 × ¥10 credit for CN¥11.00?" in sdemo.out.text()
