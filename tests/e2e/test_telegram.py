"""The Telegram channel end to end: the real bot (PTB) against a fake Bot API server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.composition import Shop, build_context, build_shop
from bot.demo import seed_demo
from bot.jobs import JobStatus, run_jobs
from bot.server import create_app
from bot.settings import Settings, TelegramSettings
from bot.telegram import TelegramRuntime, build_telegram
from risk.limiters import Count
from tests.fakes.loopback import free_port, serve, shut
from tests.fakes.telegram_bot_api import FakeTelegram

CUSTOMER, OTHER, MERCHANT = 1001, 1002, 900
SECRET = "webhook-secret-123"


@dataclass
class Bot:
    shop: Shop
    runtime: TelegramRuntime
    fake: FakeTelegram


@contextlib.asynccontextmanager
async def running_bot(tmp_path, fake: FakeTelegram, mode: str = "polling", **telegram: object) -> AsyncIterator[Bot]:
    """`telegram`: more TelegramSettings (the Stars recovery job is off unless stars_recovery_every_s is given)."""
    telegram = {"stars_recovery_every_s": 0.0, **telegram}
    tg = TelegramSettings(token=fake.token, base_url=fake.base_url, base_file_url=fake.base_file_url,
                          admin_ids=[MERCHANT], mode=mode, webhook_secret=SECRET, per_chat_interval_s=0.0, **telegram)
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'shop.db'}", telegram=tg,
                        default_language="en")
    shop = await build_shop(settings)
    await seed_demo(shop)
    runtime = build_telegram(shop, build_context(shop))
    stop, status = asyncio.Event(), JobStatus()
    served = None
    if mode == "webhook":
        port = free_port()
        served = await serve(create_app(shop, status, telegram=runtime), port)
        await runtime.app.bot.set_webhook(f"http://127.0.0.1:{port}/telegram/webhook", secret_token=SECRET)
    await runtime.start()
    jobs = asyncio.create_task(run_jobs(shop, stop, status, delivery_every=0.05, expire_every=0.2,
                                        recover_every=0.5, extra=runtime.jobs()))
    try:
        yield Bot(shop, runtime, fake)
    finally:
        stop.set()
        await jobs
        await runtime.stop()
        if served is not None:
            await shut(*served)
        await shop.close()


def _texts(fake: FakeTelegram, chat: int) -> list[str]:
    return [p["text"] for p in fake.sent("sendMessage") if int(p["chat_id"]) == chat]


async def _say(fake: FakeTelegram, user: int, text: str, expect: str) -> dict:
    fake.send_text(user, text)
    return await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == user and expect in p["text"])


async def _press(fake: FakeTelegram, user: int, data: str, expect: str, method: str = "sendMessage") -> dict:
    fake.press_button(user, 1, data)
    return await fake.wait_for(method, lambda p: int(p["chat_id"]) == user and expect in str(p.get("text", p)))


async def _handled_so_far(fake: FakeTelegram, user: int) -> None:
    """One user's updates run in order: once a new message of theirs is answered, the earlier ones were handled."""
    earlier = {id(p) for p in fake.sent("sendMessage")}
    fake.send_text(user, "/language")
    await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == user and id(p) not in earlier)


async def _buy_to_invoice(fake: FakeTelegram, user: int = CUSTOMER) -> str:
    await _say(fake, user, "/start", "Welcome")
    await _press(fake, user, "shop", "Choose a category")
    await _press(fake, user, "cat:1", "Choose a product")
    product = await _press(fake, user, "prod:1", "Genshin")
    assert "⭐ 45" in product["text"]
    await _press(fake, user, "sku:1", "How many")
    await _press(fake, user, "qty:1:1", "⭐ 45")
    fake.press_button(user, 1, "buy:1:1:45")
    invoice = await fake.wait_for("sendInvoice", lambda p: int(p["chat_id"]) == user)
    assert invoice["currency"] == "XTR"
    assert [int(p["amount"]) for p in invoice["prices"]] == [45]
    assert invoice.get("provider_token") in (None, "")
    return str(invoice["payload"])


async def _pay(fake: FakeTelegram, user: int, ref: str, amount: int, charge: str) -> None:
    query_id = fake.pre_checkout(user, ref, amount)
    answer = await fake.wait_for("answerPreCheckoutQuery", lambda p: p["pre_checkout_query_id"] == query_id)
    assert answer["ok"] in (True, "true", "True")
    fake.successful_payment(user, ref, amount, charge)


async def test_customer_buys_with_stars_and_gets_one_code_message(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        ref = await _buy_to_invoice(fake)
        await _pay(fake, CUSTOMER, ref, 45, "charge-1")
        delivery = await fake.wait_for("sendMessage", lambda p: "<code>" in p["text"])
        codes = re.findall(r"<code>([^<]+)</code>", delivery["text"])
        assert len(codes) == 1
        assert codes[0].startswith("GI60-")
        assert "How to redeem" in delivery["text"]
        assert delivery.get("parse_mode") == "HTML"
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == MERCHANT and "Paid" in p["text"])
        fake.successful_payment(CUSTOMER, ref, 45, "charge-1")  # Telegram repeats the update
        await asyncio.sleep(0.5)
        assert sum("<code>" in t for t in _texts(fake, CUSTOMER)) == 1
        order = await bot.shop.store.order_by_ref(ref)
        assert order.state.value == "delivered"
        await _press(fake, CUSTOMER, "orders:0", ref)
        again = await _press(fake, CUSTOMER, f"codes:{ref}", "<code>")
        assert codes[0] in again["text"]


async def test_pre_checkout_refuses_wrong_amount_cancelled_and_foreign_invoices(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        ref = await _buy_to_invoice(fake)
        for user, amount in ((CUSTOMER, 44), (OTHER, 45)):
            query_id = fake.pre_checkout(user, ref, amount)
            answer = await fake.wait_for("answerPreCheckoutQuery",
                                         lambda p, q=query_id: p["pre_checkout_query_id"] == q)
            assert answer["ok"] in (False, "false", "False")
            assert "no longer valid" in answer["error_message"]
        await _press(fake, CUSTOMER, f"cancel:{ref}", "cancelled")
        query_id = fake.pre_checkout(CUSTOMER, ref, 45)
        answer = await fake.wait_for("answerPreCheckoutQuery", lambda p: p["pre_checkout_query_id"] == query_id)
        assert answer["ok"] in (False, "false", "False")
        failed = await bot.shop.risk.limiter.apply([Count(f"f:failed_payments_hour:telegram:{who}", 3600, 0)
                                                    for who in (CUSTOMER, OTHER)], time.time(), commit=False)
        assert failed.values == (2, 1)  # every refused attempt is a risk signal for its payer


async def test_payment_for_no_order_is_refunded_and_forged_buttons_reveal_nothing(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        fake.successful_payment(CUSTOMER, "KNOSUCHORDER", 45, "charge-x")
        refund = await fake.wait_for("refundStarPayment")
        assert refund["telegram_payment_charge_id"] == "charge-x"
        ref = await _buy_to_invoice(fake)
        await _pay(fake, CUSTOMER, ref, 45, "charge-2")
        await fake.wait_for("sendMessage", lambda p: "<code>" in p["text"])
        answer = await _press(fake, OTHER, f"codes:{ref}", "Order not found")
        assert "<code>" not in answer["text"]
        await _press(fake, OTHER, "buy:1:99999:45", "not possible")
        await _say(fake, OTHER, "/stock", "Unknown command")
        assert await bot.shop.store.orders_for_user("telegram", str(OTHER), 5, 0) == []


async def test_merchant_imports_by_document_and_refunds_in_stars(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        fake.send_document(MERCHANT, "more.txt", b"NEW-1\nNEW-2\nNEW-1\n", "/import genshin-60")
        summary = await fake.wait_for("sendMessage", lambda p: "imported" in p["text"])
        assert "2 imported, 1 duplicates within the file" in summary["text"]
        ref = await _buy_to_invoice(fake)
        await _pay(fake, CUSTOMER, ref, 45, "charge-3")
        await fake.wait_for("sendMessage", lambda p: "<code>" in p["text"])
        await _say(fake, MERCHANT, f"/refund {ref}", "Refund order")
        await _press(fake, MERCHANT, f"mrefund:{ref}", "on its way")
        refund = await fake.wait_for("refundStarPayment")
        assert (int(refund["user_id"]), refund["telegram_payment_charge_id"]) == (CUSTOMER, "charge-3")
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == CUSTOMER and "refunded" in p["text"])
        assert (await bot.shop.store.order_by_ref(ref)).state.value == "refunded"
        fake.refunded_payment(CUSTOMER, ref, 45, "charge-3")  # Telegram confirms the shop's own refund
        await _handled_so_far(fake, CUSTOMER)
        assert (await bot.shop.store.user_stats("telegram", str(CUSTOMER))).disputes == 0
        assert not [p for p in fake.sent("sendMessage") if "chargeback" in p["text"]]


async def test_a_refund_the_shop_did_not_make_is_a_chargeback_for_the_risk_rules(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        ref = await _buy_to_invoice(fake)
        await _pay(fake, CUSTOMER, ref, 45, "charge-cb")
        await fake.wait_for("sendMessage", lambda p: "<code>" in p["text"])
        fake.refunded_payment(CUSTOMER, ref, 45, "charge-cb")
        alert = await fake.wait_for("sendMessage",
                                    lambda p: int(p["chat_id"]) == MERCHANT and "chargeback" in p["text"])
        assert ref in alert["text"]
        assert (await bot.shop.store.user_stats("telegram", str(CUSTOMER))).disputes == 1
        assert (await bot.shop.store.order_by_ref(ref)).state.value == "delivered"  # nothing re-opened
        fake.refunded_payment(CUSTOMER, ref, 45, "charge-cb")  # reported again: still one dispute, one alert
        fake.refunded_payment(OTHER, ref, 45, "charge-cb")  # someone else's claim on the order: ignored
        await _handled_so_far(fake, CUSTOMER)
        await _handled_so_far(fake, OTHER)
        assert (await bot.shop.store.user_stats("telegram", str(CUSTOMER))).disputes == 1
        assert len([p for p in fake.sent("sendMessage") if "chargeback" in p["text"]]) == 1


async def test_blocked_buyer_alerts_the_merchant_and_keeps_the_code(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        ref = await _buy_to_invoice(fake)
        fake.fail_chat(CUSTOMER, 403, "Forbidden: bot was blocked by the user")
        await _pay(fake, CUSTOMER, ref, 45, "charge-4")
        alert = await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == MERCHANT and "blocked" in p["text"])
        assert ref in alert["text"]
        assert len(await bot.shop.store.order_items((await bot.shop.store.order_by_ref(ref)).id)) == 1


async def test_webhook_mode_sells_the_same_way(tmp_path, fake):
    async with running_bot(tmp_path, fake, mode="webhook"):
        ref = await _buy_to_invoice(fake)
        await _pay(fake, CUSTOMER, ref, 45, "charge-5")
        await fake.wait_for("sendMessage", lambda p: "<code>" in p["text"])


async def test_wrong_amount_payment_is_held_for_review_and_merchant_told(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        ref = await _buy_to_invoice(fake)
        fake.successful_payment(CUSTOMER, ref, 44, "charge-6")  # a payment update that does not match
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == MERCHANT and "held for review" in p["text"])
        told = await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == CUSTOMER and "checked" in p["text"])
        assert "<code>" not in told["text"]
        assert (await bot.shop.store.order_by_ref(ref)).state.value == "review"
        notice = next(p for p in fake.sent("sendMessage") if int(p["chat_id"]) == MERCHANT
                      and "held for review" in p["text"])
        assert f"rv:no:{ref}" in str(notice.get("reply_markup"))
        fake.press_button(MERCHANT, 1, f"rv:no:{ref}")  # reject: the Stars go back
        refund = await fake.wait_for("refundStarPayment")
        assert refund["telegram_payment_charge_id"] == "charge-6"
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == MERCHANT and "rejected" in p["text"])


async def test_risk_refuses_at_pre_checkout_with_a_polite_answer(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        ref = await _buy_to_invoice(fake)
        await _say(fake, MERCHANT, f"/risk block user telegram:{CUSTOMER}", "blocked")
        query_id = fake.pre_checkout(CUSTOMER, ref, 45)
        answer = await fake.wait_for("answerPreCheckoutQuery", lambda p: p["pre_checkout_query_id"] == query_id)
        assert answer["ok"] in (False, "false", "False")
        assert "cannot accept this order" in answer["error_message"]
        assert "blocklist" not in answer["error_message"]
        await bot.shop.risk.decisions.flush()
        logged = await bot.shop.store.risk_decisions("user", f"telegram:{CUSTOMER}", 1)
        assert (logged[0].stage, logged[0].reasons) == ("payment", "blocklist:user")
        await _say(fake, MERCHANT, f"/risk unlist user telegram:{CUSTOMER}", "removed")
        await _pay(fake, CUSTOMER, ref, 45, "charge-9")  # allowed again: paid and delivered
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == CUSTOMER and "<code>" in p["text"])


async def test_merchant_documents_that_are_not_text_or_too_big_import_nothing(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        before = await bot.shop.store.count_codes()
        fake.send_document(MERCHANT, "codes.txt", "卡密".encode("gbk") + b"\n", "/import genshin-60")
        await fake.wait_for("sendMessage", lambda p: "not UTF-8" in p["text"])
        fake.send_document(MERCHANT, "huge.txt", b"X-1\n", "/import genshin-60", file_size=25 * 1024 * 1024)
        await fake.wait_for("sendMessage", lambda p: "larger than 20 MB" in p["text"])
        fake.send_document(CUSTOMER, "codes.txt", b"A-1\n", "/import genshin-60")  # not a merchant
        await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == CUSTOMER and "Unknown command" in p["text"])
        assert await bot.shop.store.count_codes() == before


async def test_names_with_markup_characters_are_escaped(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        await _say(fake, MERCHANT, "/sku genshin-60 \"name_en=<b>60</b> & *gems*_[x]\"", "saved")
        await _say(fake, CUSTOMER, "/start", "Welcome")
        await _press(fake, CUSTOMER, "sku:1", "How many")
        shown = [p for p in fake.sent("sendMessage") if int(p["chat_id"]) == CUSTOMER][-1]
        assert "&lt;b&gt;60&lt;/b&gt; &amp; *gems*_[x]" in shown["text"]
        assert (await bot.shop.store.sku_by_id(1)).name_en == "<b>60</b> & *gems*_[x]"


async def test_merchant_is_told_when_a_sale_crosses_the_low_stock_mark(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        pool = await bot.shop.store.pool_by_slug("genshin-60")
        await bot.shop.store.upsert_pool(pool.slug, pool.name, 29)  # 30 codes: the first sale crosses 29
        ref = await _buy_to_invoice(fake)
        await _pay(fake, CUSTOMER, ref, 45, "charge-7")
        alert = await fake.wait_for("sendMessage", lambda p: int(p["chat_id"]) == MERCHANT and "Low stock" in p["text"])
        assert "genshin-60 has 29 left" in alert["text"]


async def test_broadcast_reaches_every_reachable_customer_once_and_reports(tmp_path, fake):
    async with running_bot(tmp_path, fake) as bot:
        customers = [2001, 2002, 2003, 2004]
        for user in customers:
            await _say(fake, user, "/start", "Welcome")
        fake.fail_chat(2003, 403, "Forbidden: bot was blocked by the user")
        await _say(fake, MERCHANT, "/broadcast New codes in stock <b>today</b>!", "Broadcast started")
        done = await fake.wait_for("sendMessage", lambda p: "Broadcast finished" in p["text"])
        assert "3 sent, 1 unreachable" in done["text"]
        got = [int(p["chat_id"]) for p in fake.sent("sendMessage") if "New codes in stock" in p["text"]]
        assert sorted(got) == customers  # 2003 was tried once and failed
        assert "&lt;b&gt;today&lt;/b&gt;" in next(p for p in fake.sent("sendMessage")
                                                   if "New codes" in p["text"])["text"]
        assert ("2003", "2003") not in await bot.shop.store.reachable_users("telegram", "", 100)
        await _say(fake, OTHER, "/broadcast spam", "Unknown command")
