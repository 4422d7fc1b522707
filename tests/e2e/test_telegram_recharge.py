"""A direct-recharge purchase over Telegram (PTB against the fake Bot API server): inline buttons, the mobile
number typed as a message, shown back with its carrier, confirmed by a button, invoiced with the target stored."""

from __future__ import annotations

from dataclasses import replace

from tests.e2e.test_telegram import CUSTOMER, running_bot


def _shows(user: int, expect: str):
    return lambda p: int(p["chat_id"]) == user and expect in str(p.get("text", ""))


async def test_a_top_up_over_telegram_asks_the_number_and_invoices_with_it(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        code_sku = await bot.shop.catalog.find_sku("genshin-60")  # stocked: reservation needs no supplier
        await bot.shop.store.upsert_sku(replace(code_sku, slug="fake-topup", target_rule="mobile"))
        topup = await bot.shop.catalog.find_sku("fake-topup")
        await bot.shop.catalog.set_price("fake-topup", "telegram", 80)
        fake.send_text(CUSTOMER, f"/start sku_{topup.id}")
        await fake.wait_for("sendMessage", _shows(CUSTOMER, "How many?"))
        fake.press_button(CUSTOMER, 1, f"qty:{topup.id}:1")
        await fake.wait_for("editMessageText", _shows(CUSTOMER, "Send the mainland China mobile number"))
        fake.send_text(CUSTOMER, "138 0013 800")
        await fake.wait_for("sendMessage", _shows(CUSTOMER, "A mainland China mobile number has 11 digits."))
        fake.send_text(CUSTOMER, "+86 138 0013 8000")
        shown = await fake.wait_for("sendMessage", _shows(CUSTOMER, "Top up 13800138000 (China Mobile)"))
        buttons = [b["callback_data"] for row in shown["reply_markup"]["inline_keyboard"] for b in row]
        assert buttons == [f"rbuy:{topup.id}:1:80", f"rchange:{topup.id}", f"rcancel:{topup.id}"]
        assert await bot.shop.store.orders_for_user("telegram", str(CUSTOMER), 10, 0) == []
        fake.press_button(CUSTOMER, 1, buttons[0])
        invoice = await fake.wait_for("sendInvoice", lambda p: int(p["chat_id"]) == CUSTOMER)
        order = await bot.shop.store.order_by_ref(invoice["payload"])
        assert order.target == "13800138000"
