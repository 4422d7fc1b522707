"""Merchant commands in chat: only for merchant ids; bad input refused with nothing changed."""

from __future__ import annotations

from bot.demo import MERCHANT_ID
from storage.records import Price


async def test_customer_cannot_use_merchant_commands(demo):
    for command in ("/stock", "/price genshin-60 1", "/sku", "/report"):
        demo.out.clear()
        await demo.customer.say(command)
        assert demo.out.text() == "Unknown command. Send /start for the menu."
    sku = await demo.shop.store.sku_by_slug("genshin-60")
    assert Price(sku.id, "console", "CNY", 600) in await demo.shop.store.prices(sku.id)


async def test_stock_lists_pools_and_sellable_per_sku(demo):
    await demo.merchant.say("/stock")
    text = demo.out.text()
    assert "pool genshin-60: 30 / 0" in text
    assert "sku genshin-300 (300 crystals (5 codes)): 6 sellable" in text
    assert "pool video-month: 12 / 0" in text


async def test_price_accepts_integer_minor_units_only(demo):
    await demo.merchant.say("/price genshin-60 9.99")
    assert "whole numbers in fen" in demo.out.text()
    await demo.merchant.say("/price genshin-60 45 telegram")
    await demo.merchant.say("/price genshin-60 650")
    sku = await demo.shop.store.sku_by_slug("genshin-60")
    prices = {p.channel: (p.amount, p.currency) for p in await demo.shop.store.prices(sku.id)}
    assert prices["console"] == (650, "CNY")
    assert prices["telegram"] == (45, "XTR")
    await demo.merchant.say("/price nope 100")
    assert "does not exist" in demo.out.lines[-1]


async def test_sku_edit_validates_fields(demo):
    await demo.merchant.say("/sku genshin-60 max=3 limit=2 name_en='60 gems'")
    sku = await demo.shop.store.sku_by_slug("genshin-60")
    assert (sku.max_qty, sku.per_user_limit, sku.name_en) == (3, 2, "60 gems")
    await demo.merchant.say("/sku genshin-60 min=5")
    await demo.merchant.say("/sku genshin-60 colour=red")
    assert (await demo.shop.store.sku_by_slug("genshin-60")).min_qty == 1


async def test_import_in_chat_reports_duplicates_and_invalid_lines(demo, tmp_path):
    f = tmp_path / "more.txt"
    f.write_text("NEW-1\nNEW-2\nNEW-1\n\n" + "X" * 300 + "\n")
    await demo.merchant.say(f"/import genshin-60 {f} cost=400 supplier=acme")
    text = demo.out.text()
    assert "2 imported, 1 duplicates within the file, 0 already in stock, 1 invalid lines" in text
    assert "line 5: code longer than 256 characters" in text
    assert (await demo.shop.store.pool_available((await demo.shop.store.pool_by_slug("genshin-60")).id)) == 32


async def test_order_and_report_after_a_sale(demo):
    for step in ("/start", "1", "1", "1", "1", "1", "1", "1"):
        await demo.customer.say(step)
    import re

    ref = re.search(r"Order (K[0-9A-Z]{11})", demo.out.text()).group(1)
    demo.out.clear()
    await demo.merchant.say(f"/order {ref}")
    assert "delivering → delivered" in demo.out.text()
    demo.out.clear()
    await demo.merchant.say("/report 7d")
    assert ("genshin-60 · CNY · 1 orders · revenue CN¥6.00 · refunds CN¥0.00 · cost CN¥4.20 · fees CN¥0.00"
            " · profit CN¥1.80") in demo.out.text()


async def _sold(demo):
    import re

    for step in ("/start", "1", "1", "1", "1", "1", "1", "1"):
        await demo.customer.say(step)
    return re.search(r"Order (K[0-9A-Z]{11})", demo.out.text()).group(1)


async def test_refund_needs_the_confirm_button_and_happens_once(demo):
    ref = await _sold(demo)
    demo.out.clear()
    await demo.merchant.say(f"/refund {ref}")
    assert f"Refund order {ref} (CN¥6.00)" in demo.out.text()
    order = await demo.shop.store.order_by_ref(ref)
    assert order.state.value == "delivered"  # nothing happens before the press
    replies = await demo.customer.conversation.handle(
        __import__("handlers.types", fromlist=["Incoming"]).Incoming("console", "customer", "customer",
                                                                      button=f"mrefund:{ref}", language="en"))
    assert "Sorry, I did not understand that." in replies[0].text  # a customer cannot press it
    await demo.merchant.say("1")
    await demo.merchant.say(f"/refund {ref}")
    await demo.merchant.say("1")  # a second press
    assert (await demo.shop.store.order_by_ref(ref)).state.value == "refunded"
    assert list(demo.shop.providers["test"].refunds.values()) == [600]
    assert f"Order {ref} was refunded" in demo.out.text()


async def test_resend_and_user_orders(demo):
    ref = await _sold(demo)
    demo.out.clear()
    await demo.merchant.say(f"/resend {ref}")
    assert f"Codes of order {ref}" in demo.out.text()
    demo.out.clear()
    await demo.merchant.say("/orders customer")
    assert ref in demo.out.text()


async def test_merchant_changes_are_audited_and_reads_are_not(demo):
    await demo.merchant.say("/stock")
    await demo.merchant.say("/price genshin-60 650")
    entries = await demo.shop.store.audit_entries(10)
    assert [(e[1], e[2], e[3], e[4]) for e in entries] == [("console", "merchant", "price", "genshin-60 650")]


async def test_sku_can_be_created_in_chat_and_bad_fields_change_nothing(demo):
    await demo.merchant.say("/sku new genshin-120 product=genshin-crystals pool=genshin-60 name_en='120 crystals'"
                            " name_zh='120 结晶' units=2 max=4")
    sku = await demo.shop.store.sku_by_slug("genshin-120")
    assert (sku.units, sku.max_qty, sku.name_zh) == (2, 4, "120 结晶")
    await demo.merchant.say("/sku new genshin-999 product=nope pool=genshin-60 name_en=x name_zh=x")
    await demo.merchant.say("/sku new genshin-998 product=genshin-crystals pool=genshin-60 name_en=x")
    await demo.merchant.say("/sku new genshin-997 product=genshin-crystals pool=genshin-60 name_en=x name_zh=x"
                            " units=-1")
    assert await demo.shop.store.sku_by_slug("genshin-999") is None
    assert await demo.shop.store.sku_by_slug("genshin-998") is None
    assert await demo.shop.store.sku_by_slug("genshin-997") is None


async def test_sku_edit_in_chat_is_held_to_the_catalogue_bounds(demo):
    # the catalogue caps a SKU's quantity at 1000 (fulfillment/catalog.py SkuSpec); chat used to accept 5000
    await demo.merchant.say("/sku genshin-60 max=5000")
    await demo.merchant.say("/sku genshin-60 units=0")
    await demo.merchant.say("/sku genshin-60 max=٥")  # non-ASCII digits are not whole numbers
    sku = await demo.shop.store.sku_by_slug("genshin-60")
    assert (sku.max_qty, sku.units) == (5, 1)  # as seeded
    assert "max_qty: Input should be less than or equal to 1000" in demo.out.text()
    await demo.merchant.say("/sku genshin-60 max=1000 active=off")
    sku = await demo.shop.store.sku_by_slug("genshin-60")
    assert (sku.max_qty, sku.active) == (1000, False)


async def test_sku_new_in_chat_is_held_to_the_catalogue_bounds(demo):
    await demo.merchant.say("/sku new genshin-big product=genshin-crystals pool=genshin-60 name_en=x name_zh=x"
                            " max=5000")
    assert await demo.shop.store.sku_by_slug("genshin-big") is None
    assert "max_qty: Input should be less than or equal to 1000" in demo.out.text()


async def test_refund_is_refused_while_the_orders_supplier_order_is_open(demo):
    from datetime import UTC, datetime

    from storage.records_supply import NewProcurement, ProcurementState, Settlement

    ref = await _sold(demo)
    store = demo.shop.store
    order = await store.order_by_ref(ref)
    planned = await store.plan_procurement(NewProcurement("PTESTREFUNDOPEN1", "kw", "41847", 1, 500, "CNY",
                                                          order.pool_id, order.id), datetime.now(UTC))
    assert planned is not None
    assert planned.state is ProcurementState.PLANNED
    demo.out.clear()
    await demo.merchant.say(f"/refund {ref}")
    assert "Not refunded: this order's purchase at a supplier is still open" in demo.out.text()
    assert "PTESTREFUNDOPEN1" in demo.out.text()  # the merchant sees which purchase
    replies = await demo.merchant.conversation.handle(
        __import__("handlers.types", fromlist=["Incoming"]).Incoming("console", MERCHANT_ID, MERCHANT_ID,
                                                                      button=f"mrefund:{ref}", language="en"))
    assert "Not refunded" in replies[0].text  # an old confirm button is refused too
    assert await store.pending_outbox() == 0  # nothing queued
    assert (await store.order_by_ref(ref)).state.value == "delivered"
    assert demo.shop.providers["test"].refunds == {}
    # the supplier answered "failed": the refund goes through
    await store.settle_procurement("PTESTREFUNDOPEN1", Settlement(ProcurementState.FAILED, detail="test"), [],
                                   datetime.now(UTC))
    await demo.merchant.say(f"/refund {ref}")
    await demo.merchant.say("1")
    assert (await store.order_by_ref(ref)).state.value == "refunded"
