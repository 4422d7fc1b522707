"""The after-sales assistant over Telegram: the real bot (PTB) against the fake Bot API server on 127.0.0.1."""

from __future__ import annotations

import re

from tests.e2e.test_telegram import CUSTOMER, MERCHANT, _buy_to_invoice, _pay, _press, _say, running_bot

CODE = re.compile(r"<code>([^<]+)</code>")


def _to(chat: int, expect: str):
    return lambda p: int(p["chat_id"]) == chat and expect in p["text"]


async def test_human_hand_over_round_trip_over_telegram(tmp_path, fake):
    async with running_bot(tmp_path, fake):
        answer = await _say(fake, CUSTOMER, "I want to talk to a real person", "passed your message to the merchant")
        number = int(re.search(r"ticket #(\d+)", answer["text"]).group(1))
        notice = await fake.wait_for("sendMessage", _to(MERCHANT, f"Ticket #{number}"))
        assert f"(talk to a person) from telegram:{CUSTOMER}" in notice["text"]
        assert "I want to talk to a real person" in notice["text"]
        await _say(fake, MERCHANT, f"/reply {number} Hello from the shop", f"Sent to telegram:{CUSTOMER}")
        relayed = await fake.wait_for("sendMessage", _to(CUSTOMER, "Hello from the shop"))
        assert f"The merchant answers (ticket #{number})" in relayed["text"]
        await _say(fake, MERCHANT, f"/close {number}", f"Ticket #{number} closed.")
        await fake.wait_for("sendMessage", _to(CUSTOMER, f"Your request (ticket #{number}) is closed."))
        await _say(fake, CUSTOMER, f"/reply {number} I am the merchant now", "Unknown command")


async def test_bad_code_report_and_replace_over_telegram(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        ref = await _buy_to_invoice(fake)
        await _pay(fake, CUSTOMER, ref, 45, "charge-aftersales")
        first = CODE.findall((await fake.wait_for("sendMessage", _to(CUSTOMER, "<code>")))["text"])
        assert len(first) == 1
        prompt = await _say(fake, CUSTOMER, "my code does not work", "Still not working?")
        buttons = [b["callback_data"] for row in prompt["reply_markup"]["inline_keyboard"] for b in row]
        assert f"badcode:{ref}:1" in buttons
        report = await _press(fake, CUSTOMER, f"badcode:{ref}:1", "will check the code of order")
        number = int(re.search(r"ticket #(\d+)", report["text"]).group(1))
        notice = await fake.wait_for("sendMessage", _to(MERCHANT, f"Ticket #{number} (bad code report)"))
        assert first[0] not in notice["text"]
        await _say(fake, MERCHANT, f"/replace {ref}", f"Reports closed: #{number}.")
        await fake.wait_for("sendMessage", _to(CUSTOMER, "The merchant has replaced the code"))
        again = await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == CUSTOMER and "<code>" in p["text"]
                                  and first[0] not in p["text"])
        [new] = CODE.findall(again["text"])
        assert new != first[0]
        order = await bot.shop.store.order_by_ref(ref)
        [item] = await bot.shop.store.order_items(order.id)
        assert item.item_no == 2


async def test_merchant_answers_a_ticket_by_replying_to_its_notice(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        answer = await _say(fake, CUSTOMER, "I want to talk to a real person", "passed your message to the merchant")
        number = int(re.search(r"ticket #(\d+)", answer["text"]).group(1))
        notice = await fake.wait_for("sendMessage", _to(MERCHANT, f"Ticket #{number}"))
        fake.send_text(MERCHANT, "Hello <b>from</b> the shop & co", reply_to=notice)
        await fake.wait_for("sendMessage", _to(MERCHANT, f"Sent to telegram:{CUSTOMER} (ticket #{number})."))
        relayed = await fake.wait_for("sendMessage", _to(CUSTOMER, "Hello &lt;b&gt;from&lt;/b&gt; the shop &amp; co"))
        assert f"The merchant answers (ticket #{number})" in relayed["text"]
        assert (await bot.shop.store.ticket_by_id(number)).state == "answered"
        # a customer replying to one of the bot's messages is just a customer message, never a /reply
        fake.send_text(CUSTOMER, "thanks a lot", reply_to=relayed)
        await fake.wait_for("sendMessage", _to(CUSTOMER, "You are welcome"))
        # a merchant replying to a message that is not a ticket notice gets the menu, as for any free text
        sent = len(fake.sent("sendMessage"))
        fake.send_text(MERCHANT, "what is this", reply_to={"text": "Welcome to the shop!"})
        await fake.wait_for("sendMessage", _to(MERCHANT, "Welcome"))
        assert not [p for p in fake.sent("sendMessage")[sent:] if int(p["chat_id"]) == CUSTOMER]
        assert (await bot.shop.store.ticket_by_id(number)).state == "answered"
