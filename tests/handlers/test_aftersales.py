"""The after-sales assistant and tickets end to end on the console demo shop (real SQLite, real matcher)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

from bot.demo import CUSTOMER_ID, MERCHANT_ID
from handlers.faq import FaqEntry, FaqMatcher
from handlers.tickets_admin import mask_codes
from handlers.types import Incoming, Reply
from storage.records import OrderState
from tests.handlers.test_storefront import CODE

REF = re.compile(r"K[0-9A-Z]{11}")
TICKET = re.compile(r"#(\d+)")


def _relay(demo) -> None:
    """The console stands in for every channel: messages that answer nobody's message are printed with their chat."""
    async def send(chat_id: str, reply: Reply) -> None:
        demo.out.write(f"[to {chat_id}] {reply.text}")
        for code in reply.codes:
            demo.out.write(f"    {code}")

    ctx = demo.customer.ctx
    ctx.senders["console"] = send
    ctx.languages[("console", MERCHANT_ID)] = "en"  # the merchant reads English (the shop default is zh_CN)


async def _settle(demo) -> None:
    ctx = demo.customer.ctx
    while ctx.background:
        await asyncio.gather(*list(ctx.background))
    await ctx.delivery.drain()


async def _invoice(demo, chat=None) -> str:
    """A 60-crystal order up to its invoice; its ref."""
    chat = chat or demo.customer
    demo.out.clear()
    for step in ("/start", "1", "1", "1", "1", "1", "1"):  # shop, games, product, sku 60, qty 1, confirm
        await chat.say(step)
    return REF.search(demo.out.text()).group(0)


async def _bought(demo, chat=None) -> tuple[str, str]:
    """A delivered order: (ref, its code)."""
    chat = chat or demo.customer
    ref = await _invoice(demo, chat)
    await chat.say("1")  # pay (test provider)
    codes = CODE.findall(demo.out.text())
    assert len(codes) == 1
    return ref, codes[0]


async def test_not_received_for_a_delivered_order_sends_the_codes_again_once_per_pause(demo):
    ref, code = await _bought(demo)
    demo.out.clear()
    await demo.customer.say("I paid but got nothing")
    await _settle(demo)
    text = demo.out.text()
    assert f"Order {ref} is delivered. I am sending its codes to this chat again now." in text
    assert CODE.findall(text) == [code]  # the same code again, never a new one
    demo.out.clear()
    await demo.customer.say("I paid but did not get my code")
    await _settle(demo)
    assert "were sent again a moment ago" in demo.out.text()
    assert CODE.findall(demo.out.text()) == []
    assert {lv.pool_slug: lv.available for lv in await demo.shop.store.stock_levels()}["genshin-60"] == 29


async def test_not_received_with_a_pending_outbox_pushes_the_delivery(demo):
    ref = await _invoice(demo)
    order = await demo.shop.store.order_by_ref(ref)
    # paid, but the delivery worker has not run yet: the outbox row is pending
    await demo.shop.payments.receive(demo.shop.providers["test"].pay(order))
    assert await demo.shop.store.pending_outbox() == 1
    assert CODE.findall(demo.out.text()) == []
    demo.out.clear()
    await demo.customer.say(f"付了钱没收到卡密 {ref}")
    await _settle(demo)
    text = demo.out.text()
    assert f"Order {ref} is paid and its codes are on the way" in text
    assert len(CODE.findall(text)) == 1
    assert (await demo.shop.store.order_by_ref(ref)).state == OrderState.DELIVERED
    assert await demo.shop.store.pending_outbox() == 0


async def test_not_received_for_unpaid_and_expired_orders_explains_and_offers_the_shop(demo):
    ref = await _invoice(demo)
    demo.out.clear()
    await demo.customer.say(f"I paid but got nothing {ref}")
    assert f"Order {ref} has not been paid yet" in demo.out.text()
    assert "🛒 Shop" in demo.out.text()
    order = await demo.shop.store.order_by_ref(ref)
    await demo.shop.store.expire_reservations(order.expires_at + timedelta(seconds=1), 10)
    demo.out.clear()
    await demo.customer.say(f"I paid but got nothing {ref}")
    assert f"Order {ref} expired before a payment arrived" in demo.out.text()
    await demo.customer.say("1")  # the shop button
    assert "Game top-ups" in demo.out.text()
    assert await demo.shop.store.pending_outbox() == 0


async def test_order_status_answers_only_about_the_customers_own_orders(demo):
    ref, _ = await _bought(demo)
    other_ref, _ = await _bought(demo, demo.stranger)
    demo.out.clear()
    await demo.customer.say(f"what is the status of order {ref}")
    text = demo.out.text()
    assert "The orders you asked about:" in text
    assert ref in text
    assert "delivered" in text
    demo.out.clear()
    await demo.customer.say(f"where is my order {other_ref}")
    text = demo.out.text()
    assert f"Order {other_ref}: not found among your orders." in text
    assert "delivered" not in text
    assert CODE.findall(text) == []
    demo.out.clear()
    await demo.customer.say("status of my order")  # no number: the latest orders
    assert "Your orders" in demo.out.text() or ref in demo.out.text()
    assert other_ref not in demo.out.text()


async def test_code_invalid_report_becomes_a_ticket_with_the_code_id_only(demo):
    _relay(demo)
    ref, code = await _bought(demo)
    demo.out.clear()
    await demo.customer.say("my code does not work")
    text = demo.out.text()
    assert f"Here are the codes of order {ref} again" in text
    assert "How to redeem: Open the official redemption page" in text
    assert CODE.findall(text) == [code]
    demo.out.clear()
    await demo.customer.say("1")  # ⚠️ Report this code as bad
    text = demo.out.text()
    number = int(re.search(r"ticket #(\d+)", text).group(1))
    assert f"will check the code of order {ref}" in text
    ticket = await demo.shop.store.ticket_by_id(number)
    order = await demo.shop.store.order_by_ref(ref)
    items = await demo.shop.store.order_items(order.id)
    assert (ticket.kind, ticket.order_id, ticket.code_id, ticket.state) == ("bad_code", order.id, items[0].code.id,
                                                                            "open")
    notice = [line for line in demo.out.lines if line.startswith(f"[to {MERCHANT_ID}]")]
    assert len(notice) == 1
    assert f"Ticket #{number} (bad code report) from console:{CUSTOMER_ID} · order {ref}" in notice[0]
    assert f"code id {items[0].code.id}" in notice[0]
    assert code not in "\n".join(demo.out.lines)  # neither the notice nor the answer shows the code
    assert code not in ticket.last_message
    assert (await demo.shop.store.order_by_ref(ref)).state == OrderState.DELIVERED  # nothing replaced by itself


async def test_code_invalid_without_a_delivered_order_says_so_in_chinese(demo):
    await demo.stranger.say("卡密无效")
    assert "没有找到您已发货的订单" in demo.out.text()
    assert await demo.shop.store.live_tickets(10) == []


async def test_refund_shows_the_policy_opens_a_ticket_and_never_refunds(demo):
    _relay(demo)
    ref, _ = await _bought(demo)
    since, until = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=1)
    ledger_before = await demo.shop.store.ledger(since, until)
    assert ledger_before
    demo.out.clear()
    await demo.customer.say("I want a refund")
    await _settle(demo)
    text = demo.out.text()
    assert "Refunds are never automatic" in text
    number = int(re.search(r"ticket #(\d+)", text).group(1))
    assert f"Your refund request for order {ref} is recorded (ticket #{number})" in text
    ticket = await demo.shop.store.ticket_by_id(number)
    order = await demo.shop.store.order_by_ref(ref)
    assert (ticket.kind, ticket.order_id, ticket.last_message) == ("refund", order.id, "I want a refund")
    assert order.state == OrderState.DELIVERED
    assert await demo.shop.store.pending_outbox() == 0  # no refund row queued
    assert f"[to {MERCHANT_ID}] 🎫 Ticket #{number} (refund request)" in text
    assert await demo.shop.store.ledger(since, until) == ledger_before  # no money moved


async def test_human_hand_over_round_trip(demo):
    _relay(demo)
    await demo.customer.say("I need to talk to a person about code GI60-ABCD-EFGH-JKLM")
    text = demo.out.text()
    number = int(re.search(r"ticket #(\d+)", text).group(1))
    assert f"I have passed your message to the merchant (ticket #{number})" in text
    assert f"[to {MERCHANT_ID}] 🎫 Ticket #{number} (talk to a person) from console:{CUSTOMER_ID}" in text
    assert "GI60-ABCD-EFGH-JKLM" not in text  # a pasted code is masked before it is stored or relayed
    assert (await demo.shop.store.ticket_by_id(number)).last_message == \
        "I need to talk to a person about code ***"
    demo.out.clear()
    await demo.merchant.say("/tickets")
    assert f"#{number} open · talk to a person · console:{CUSTOMER_ID}" in demo.out.text()
    demo.out.clear()
    await demo.merchant.say(f"/reply {number} Sorry for the trouble, a new code is on its way")
    text = demo.out.text()
    assert f"[to {CUSTOMER_ID}] 💬 The merchant answers (ticket #{number}):\nSorry for the trouble" in text
    assert f"Sent to console:{CUSTOMER_ID} (ticket #{number})." in text
    assert (await demo.shop.store.ticket_by_id(number)).state == "answered"
    demo.out.clear()
    await demo.merchant.say(f"/close {number}")
    assert f"Ticket #{number} closed." in demo.out.text()
    assert f"[to {CUSTOMER_ID}] Your request (ticket #{number}) is closed." in demo.out.text()
    assert (await demo.shop.store.ticket_by_id(number)).state == "closed"
    demo.out.clear()
    await demo.merchant.say(f"/reply {number} hello?")
    assert f"Ticket #{number} does not exist or is closed." in demo.out.text()
    await demo.merchant.say("/tickets")
    assert "No open tickets." in demo.out.text()


async def test_chinese_customer_gets_the_merchants_answer_in_chinese(demo):
    _relay(demo)
    await demo.stranger.say("人工客服")
    number = int(TICKET.search(demo.out.text()).group(1))
    assert "已将您的消息转给商家" in demo.out.text()
    demo.out.clear()
    await demo.merchant.say(f"/reply {number} 马上处理")
    assert "[to stranger] 💬 商家回复（工单" in demo.out.text()
    assert "马上处理" in demo.out.text()


async def test_ticket_commands_are_unknown_to_customers(demo):
    _relay(demo)
    await demo.customer.say("talk to a human please")
    number = int(TICKET.search(demo.out.text()).group(1))
    for command in ("/tickets", f"/reply {number} you are refunded", f"/close {number}"):
        demo.out.clear()
        await demo.customer.say(command)
        assert demo.out.text() == "Unknown command. Send /start for the menu.", command
    assert (await demo.shop.store.ticket_by_id(number)).state == "open"
    demo.out.clear()
    await demo.merchant.say("/reply")
    assert "/reply TICKET TEXT" in demo.out.text()
    await demo.merchant.say("/close abc")
    assert "/reply TICKET TEXT" in demo.out.text()


async def test_unclear_text_asks_with_buttons_and_talk_to_a_person_opens_a_ticket(demo):
    _relay(demo)
    await demo.customer.say("blah blah")
    text = demo.out.text()
    assert "Sorry, I am not sure what you need." in text
    assert "[1] 🛒 Shop  [2] 📦 My orders  [3] 🙋 Talk to a person" in text
    assert await demo.shop.store.live_tickets(10) == []
    demo.out.clear()
    await demo.customer.say("3")
    number = int(TICKET.search(demo.out.text()).group(1))
    ticket = await demo.shop.store.ticket_by_id(number)
    assert (ticket.kind, ticket.user_id, ticket.last_message) == ("human", CUSTOMER_ID, "")
    assert f"[to {MERCHANT_ID}] 🎫 Ticket #{number} (talk to a person) from console:customer: (no message)" in \
        demo.out.text()


async def test_questions_answered_from_the_catalogue_text(demo):
    answers = {
        "how do I pay": "To pay: pick a product and quantity",
        "hello": "Hello! How can I help?",
        "thanks": "You are welcome!",
        "is it in stock": "Prices and stock of every product are shown in the shop",
        "invoice please": "For a receipt or invoice",
        "how do I redeem the code": "Every product's redemption steps come with its codes.",
    }
    for question, answer in answers.items():
        demo.out.clear()
        await demo.customer.say(question)
        assert answer in demo.out.text(), question
    assert await demo.shop.store.live_tickets(10) == []


async def test_how_to_redeem_adds_the_instructions_of_the_latest_delivered_product(demo):
    await _bought(demo)
    demo.out.clear()
    await demo.customer.say("how do I redeem the code")
    assert "How to redeem Genshin" in demo.out.text() or "Open the official redemption page" in demo.out.text()


async def test_merchant_faq_entry_is_answered_in_the_customers_language(demo):
    demo.customer.ctx.faq = FaqMatcher.default().with_entries(FaqEntry(
        "hours", examples_en=("what are your opening hours", "when are you open"),
        answer_en="We deliver day and night.", answer_zh="全天自动发货。"))
    await demo.customer.say("when are you open")
    assert "We deliver day and night." in demo.out.text()
    demo.out.clear()
    await demo.stranger.say("what are your opening hours")
    assert "全天自动发货。" in demo.out.text()


async def test_merchant_free_text_still_opens_the_menu(demo):
    await demo.merchant.say("I want a refund")
    assert "Welcome to the shop!" in demo.out.text()
    assert await demo.shop.store.live_tickets(10) == []


async def test_report_button_of_someone_elses_order_is_refused(demo):
    ref, _ = await _bought(demo)
    replies = await demo.stranger.conversation.handle(Incoming("console", "stranger", "stranger",
                                                               button=f"badcode:{ref}:1", language="zh_CN"))
    assert replies[0].text == "未找到该订单。"
    assert await demo.shop.store.live_tickets(10) == []


def test_codes_are_masked_and_order_numbers_kept():
    text = "code GI60-ABCD-EFGH-JKLM and ab12cd34ef, order K7Q2M9XHA3BC, 卡密X7Y8Z9W0Q1无效, year 2026"
    assert mask_codes(text) == "code *** and ***, order K7Q2M9XHA3BC, 卡密***无效, year 2026"


async def test_bad_code_report_then_merchant_replace_gives_the_customer_a_new_code(demo):
    _relay(demo)
    ref, code = await _bought(demo)
    await demo.customer.say("my code does not work")
    await demo.customer.say("1")  # ⚠️ Report this code as bad
    number = int(re.search(r"ticket #(\d+)", demo.out.text()).group(1))
    order = await demo.shop.store.order_by_ref(ref)
    [old] = await demo.shop.store.order_items(order.id)
    stock = {lv.pool_slug: lv.available for lv in await demo.shop.store.stock_levels()}["genshin-60"]
    demo.out.clear()
    await demo.merchant.say(f"/replace {ref}")
    await _settle(demo)
    text = demo.out.text()
    assert f"Order {ref}: code id {old.code.id} quarantined" in text
    assert f"Reports closed: #{number}." in text
    assert f"[to {CUSTOMER_ID}] The merchant has replaced the code of order {ref}" in text
    new_codes = CODE.findall(text)
    assert len(new_codes) == 1
    assert new_codes[0] != code
    assert code not in text
    [new] = await demo.shop.store.order_items(order.id)
    assert new.code.id != old.code.id
    assert (await demo.shop.store.ticket_by_id(number)).state == "closed"
    assert {lv.pool_slug: lv.available for lv in await demo.shop.store.stock_levels()}["genshin-60"] == stock - 1
    # the customer's "My orders" now shows only the new code
    demo.out.clear()
    await demo.customer.say("/orders")
    await demo.customer.say("1")
    assert CODE.findall(demo.out.text()) == new_codes
    # a second /replace for the same order: no open report, one code → that one again is a new report's job
    demo.out.clear()
    await demo.merchant.say(f"/replace {ref} 1")
    assert f"Order {ref} has no open bad-code report and no code number like that: its codes are numbers 2." \
        in demo.out.text()
    assert await demo.shop.store.order_items(order.id) == [new]
    # the new code can be reported in turn (its order item is number 2 now)
    demo.out.clear()
    await demo.customer.say("the code is invalid")
    assert "Report this code as bad" in demo.out.text()
    await demo.customer.say("1")
    second = int(re.search(r"ticket #(\d+)", demo.out.text()).group(1))
    assert (await demo.shop.store.ticket_by_id(second)).code_id == new.code.id


async def test_replace_is_unknown_to_customers_and_refused_without_stock(demo):
    ref, _ = await _bought(demo)
    demo.out.clear()
    await demo.customer.say(f"/replace {ref}")
    assert demo.out.text() == "Unknown command. Send /start for the menu."
    order = await demo.shop.store.order_by_ref(ref)
    [item] = await demo.shop.store.order_items(order.id)
    pool = await demo.shop.store.pool_by_slug("genshin-60")
    # empty the pool: every other code is sold
    store = demo.shop.store
    from tests.storage.seed import new_order, payment

    sku = next(s for s in await store.skus() if s.pool_id == pool.id and s.units == 1)
    while await store.pool_available(pool.id):
        other = await store.reserve(new_order(sku, qty=1, user=f"bulk{await store.pool_available(pool.id)}"),
                                    order.created_at)
        await store.receive_payment(payment(other.ref, other.amount), order.created_at)
    demo.out.clear()
    await demo.merchant.say(f"/replace {ref}")
    assert f"Order {ref}: no stock left in its pool for a replacement; nothing was changed." in demo.out.text()
    assert await store.order_items(order.id) == [item]
    await demo.merchant.say("/replace K23456789ABC")
    assert "Order not found." in demo.out.text()


async def test_merchant_edits_faq_entries_in_chat_and_every_process_answers_with_them(demo):
    from bot.demo import make_context
    from handlers.router import Conversation

    await demo.merchant.say("/faq add hours when are you open | what are your opening hours | 什么时候营业 | 几点发货"
                            " => We deliver day and night. | 全天自动发货。")
    assert "FAQ entry hours saved (4 examples)" in demo.out.text()
    demo.out.clear()
    await demo.customer.say("when are you open")
    assert "We deliver day and night." in demo.out.text()
    demo.out.clear()
    await demo.stranger.say("你们几点发货")
    assert "全天自动发货。" in demo.out.text()
    # another process (a fresh context on the same database) answers with the entry too
    fresh = make_context(demo.shop, {MERCHANT_ID})
    replies = await Conversation(fresh).handle(Incoming("console", "other", "other", text="what are your opening hours",
                                                        language="en"))
    assert replies[0].text == "We deliver day and night."
    demo.out.clear()
    await demo.merchant.say("/faq list")
    assert "• hours: 什么时候营业 | 几点发货 | when are you open | what are your opening hours → " in demo.out.text()
    # an edit replaces the entry; remove deletes it
    await demo.merchant.say("/faq edit hours when are you open => Open 9 to 5.")
    demo.out.clear()
    await demo.customer.say("when are you open")
    assert "Open 9 to 5." in demo.out.text()
    await demo.merchant.say("/faq remove hours")
    assert "FAQ entry hours removed." in demo.out.text()
    demo.out.clear()
    await demo.customer.say("when are you open")
    assert "Open 9 to 5." not in demo.out.text()
    demo.out.clear()
    await demo.merchant.say("/faq list")
    assert "No merchant FAQ entries yet." in demo.out.text()


async def test_faq_edits_are_checked_and_merchant_only(demo):
    for bad, error in (("/faq add refund money back => no", "'refund' is a built-in intent"),
                       ("/faq add Bad-Id hello there => hi", "id must be lower-case"),
                       ("/faq add hours when are you open", "expected: /faq add ID"),
                       ("/faq add hours => only an answer", "has no examples")):
        demo.out.clear()
        await demo.merchant.say(bad)
        assert "FAQ entry not saved:" in demo.out.text(), bad
        assert error in demo.out.text(), bad
    await demo.merchant.say("/faq remove nothing_here")
    assert "There is no merchant FAQ entry nothing_here." in demo.out.text()
    demo.out.clear()
    await demo.customer.say("/faq add hours when are you open => never")
    assert demo.out.text() == "Unknown command. Send /start for the menu."
    assert await demo.shop.store.kv_get("faq.merchant_entries", datetime.now(UTC)) is None


async def test_during_a_hand_over_unclear_messages_go_on_to_the_merchant(demo):
    _relay(demo)
    await demo.customer.say("blah blah")
    assert "Sorry, I am not sure what you need." in demo.out.text()  # no hand-over yet: the bot asks
    await demo.customer.say("talk to a human please")
    number = int(TICKET.search(demo.out.text()).group(1))
    demo.out.clear()
    await demo.customer.say("the thing with my account ZX81 since yesterday")
    text = demo.out.text()
    assert f"Passed on to the merchant (ticket #{number})." in text
    assert f"[to {MERCHANT_ID}] 🎫 Ticket #{number} (talk to a person) from console:{CUSTOMER_ID}: the thing with my" \
        in text
    assert (await demo.shop.store.ticket_by_id(number)).last_message == "the thing with my account ZX81 since yesterday"
    demo.out.clear()
    await demo.customer.say("how do I pay")  # a question the bot knows is still answered by the bot
    assert "To pay: pick a product" in demo.out.text()
    await demo.merchant.say(f"/close {number}")
    demo.out.clear()
    await demo.customer.say("the thing with my account ZX81 since yesterday")
    assert "Sorry, I am not sure what you need." in demo.out.text()
