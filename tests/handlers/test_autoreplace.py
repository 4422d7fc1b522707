"""The merchant's auto-replace policy on the console demo shop (real SQLite, real matcher)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bot.demo import CUSTOMER_ID, MERCHANT_ID
from storage.records import NewTicket, OrderState
from tests.handlers.test_aftersales import CODE, _bought, _relay, _settle

TICKET = re.compile(r"ticket #(\d+)")


def _stock(levels) -> int:
    return {lv.pool_slug: lv.available for lv in levels}["genshin-60"]


async def _report(demo) -> str:
    """The customer says the code is bad and presses the report button; the transcript of both."""
    demo.out.clear()
    await demo.customer.say("my code does not work")
    await demo.customer.say("1")  # ⚠️ Report this code as bad
    await _settle(demo)
    return demo.out.text()


async def test_merchant_marks_a_sku_and_the_policy_is_listed_and_audited(demo):
    await demo.merchant.say("/autoreplace")
    assert "No SKU is marked for auto-replacement" in demo.out.text()
    demo.out.clear()
    await demo.merchant.say("/autoreplace genshin-60 on hours=12")
    assert "genshin-60: a code reported bad within 12 h of delivery is now replaced automatically" in demo.out.text()
    assert await demo.customer.ctx.services.aftersales.auto_replace_policy() == {"genshin-60": 12}
    demo.out.clear()
    await demo.merchant.say("/autoreplace")
    assert "• genshin-60: 12 h" in demo.out.text()
    for bad in ("/autoreplace nope on", "/autoreplace genshin-60 maybe", "/autoreplace genshin-60 on hours=0"):
        demo.out.clear()
        await demo.merchant.say(bad)
        assert "No SKU nope." in demo.out.text() or "Auto-replace: /autoreplace" in demo.out.text(), bad
    assert await demo.customer.ctx.services.aftersales.auto_replace_policy() == {"genshin-60": 12}
    await demo.merchant.say("/autoreplace genshin-60 off")
    assert await demo.customer.ctx.services.aftersales.auto_replace_policy() == {}
    audit = [(a, d) for _, _, _, a, d in await demo.shop.store.audit_entries(10) if a == "autoreplace"]
    assert ("autoreplace", "genshin-60 on 12") in audit
    assert ("autoreplace", "genshin-60 off") in audit
    demo.out.clear()
    await demo.customer.say("/autoreplace genshin-60 on")
    assert demo.out.text() == "Unknown command. Send /start for the menu."
    assert await demo.customer.ctx.services.aftersales.auto_replace_policy() == {}


async def test_a_marked_sku_is_replaced_at_once_then_the_second_report_goes_to_the_merchant(demo):
    _relay(demo)
    await demo.merchant.say("/autoreplace genshin-60 on")
    ref, code = await _bought(demo)
    order = await demo.shop.store.order_by_ref(ref)
    [old] = await demo.shop.store.order_items(order.id)
    stock = _stock(await demo.shop.store.stock_levels())
    text = await _report(demo)
    assert f"The code you reported for order {ref} is replaced" in text
    number = int(TICKET.search(text).group(1))
    new_codes = [c for c in CODE.findall(text) if c != code]
    assert len(new_codes) == 1  # the new code was delivered to the customer's chat
    [new] = await demo.shop.store.order_items(order.id)
    assert new.code.id != old.code.id
    assert new.item_no == 2
    assert _stock(await demo.shop.store.stock_levels()) == stock - 1
    ticket = await demo.shop.store.ticket_by_id(number)
    assert (ticket.kind, ticket.state, ticket.code_id) == ("bad_code", "closed", old.code.id)
    assert f"code id {old.code.id} quarantined, new code id {new.code.id}" in ticket.last_message
    notice = [line for line in demo.out.lines if line.startswith(f"[to {MERCHANT_ID}]")]
    assert len(notice) == 1
    assert f"Ticket #{number} (bad code report) from console:{CUSTOMER_ID} · order {ref}" in notice[0]
    assert "replaced automatically" in notice[0]
    assert code not in notice[0]
    assert new_codes[0] not in notice[0]
    # the same order again: once per order, so this report waits for the merchant
    text = await _report(demo)
    assert f"will check the code of order {ref}" in text
    second = await demo.shop.store.ticket_by_id(int(TICKET.search(text).group(1)))
    assert (second.state, second.code_id) == ("open", new.code.id)
    assert await demo.shop.store.order_items(order.id) == [new]
    assert f"[to {MERCHANT_ID}] 🎫 Ticket #{second.id} (bad code report)" in text


async def test_an_unmarked_sku_or_a_late_report_goes_to_the_merchant(demo):
    _relay(demo)
    await demo.merchant.say("/autoreplace genshin-300 on")  # another SKU: genshin-60 stays unmarked
    ref, _ = await _bought(demo)
    order = await demo.shop.store.order_by_ref(ref)
    items = await demo.shop.store.order_items(order.id)
    text = await _report(demo)
    assert f"will check the code of order {ref}" in text
    assert await demo.shop.store.order_items(order.id) == items
    # marked now, but the report comes after the window: nothing is replaced
    await demo.merchant.say("/autoreplace genshin-60 on hours=2")
    service = demo.customer.ctx.services.aftersales
    delivered = await service.delivered_at(order)
    assert delivered is not None
    report = NewTicket("console", CUSTOMER_ID, CUSTOMER_ID, "bad_code", language="en")
    late = delivered + timedelta(hours=2, minutes=1)
    done = await service.report_bad_code(report, ref, 1, "{old} {new}", now=late)
    assert (done.replaced, done.ticket.state) == (None, "open")
    assert await demo.shop.store.order_items(order.id) == items
    # within the window the same report replaces (the claim was not used up by the late attempt)
    inside = delivered + timedelta(hours=1, minutes=59)
    done = await service.report_bad_code(report, ref, 1, "{old} {new}", now=inside)
    assert done.replaced is not None
    assert done.ticket.state == "closed"
    await _settle(demo)
    assert (await demo.shop.store.order_items(order.id))[0].code.id != items[0].code.id


async def test_out_of_stock_goes_to_the_merchant_and_changes_nothing(demo):
    _relay(demo)
    await demo.merchant.say("/autoreplace genshin-60 on")
    ref, _ = await _bought(demo)
    order = await demo.shop.store.order_by_ref(ref)
    [item] = await demo.shop.store.order_items(order.id)
    store = demo.shop.store
    from tests.storage.seed import new_order, payment

    pool = await store.pool_by_slug("genshin-60")
    sku = next(s for s in await store.skus() if s.pool_id == pool.id and s.units == 1)
    while await store.pool_available(pool.id):
        other = await store.reserve(new_order(sku, qty=1, user=f"bulk{await store.pool_available(pool.id)}"),
                                    order.created_at)
        await store.receive_payment(payment(other.ref, other.amount), order.created_at)
    text = await _report(demo)
    assert f"will check the code of order {ref}" in text
    number = int(TICKET.search(text).group(1))
    assert (await store.ticket_by_id(number)).state == "open"
    assert f"[to {MERCHANT_ID}] 🎫 Ticket #{number} (bad code report)" in text
    assert await store.order_items(order.id) == [item]
    assert await store.pool_available(pool.id) == 0
    assert (await store.order_by_ref(ref)).state == OrderState.DELIVERED


async def _drain(store, pool, at) -> None:
    """Buy every use left in the pool (other customers)."""
    from tests.storage.seed import new_order, payment

    sku = next(s for s in await store.skus() if s.pool_id == pool.id and s.units == 1)
    while left := await store.pool_available(pool.id):
        other = await store.reserve(new_order(sku, qty=1, user=f"bulk{left}"), at)
        await store.receive_payment(payment(other.ref, other.amount), at)


async def _import(demo, pool, code: str, uses: int = 1) -> None:
    store = demo.shop.store
    batch = await store.create_batch(pool.id, "acme", 0, "CNY", "restock")
    await store.insert_codes(batch, pool.id, [demo.shop.vault.seal(code, uses)])


async def test_a_report_that_failed_for_lack_of_stock_is_auto_replaced_once_stock_arrives(demo):
    """The replacement fails for lack of stock (the bad code's own unsold use was the last stock: it is
    quarantined with it); the once-per-order claim must not be spent by that failure."""
    _relay(demo)
    await demo.merchant.say("/autoreplace genshin-60 on")
    store = demo.shop.store
    pool = await store.pool_by_slug("genshin-60")
    await _drain(store, pool, datetime.now(UTC))
    await _settle(demo)  # the other customers' deliveries go out first
    await _import(demo, pool, "GI60-MULT-IUSE-0001", uses=2)
    ref, code = await _bought(demo)
    assert code == "GI60-MULT-IUSE-0001"
    order = await store.order_by_ref(ref)
    [item] = await store.order_items(order.id)
    assert await store.pool_available(pool.id) == 1  # the bad code's second use is all the stock
    # the report: no stock once the bad code is quarantined, so the merchant gets it and nothing changes
    text = await _report(demo)
    assert f"will check the code of order {ref}" in text
    assert await store.order_items(order.id) == [item]
    assert await store.pool_available(pool.id) == 1
    # stock arrives: the same order's report is replaced automatically now
    await _import(demo, pool, "GI60-FRSH-CODE-0002")
    text = await _report(demo)
    assert f"The code you reported for order {ref} is replaced" in text
    assert "GI60-FRSH-CODE-0002" in text
    [new] = await store.order_items(order.id)
    assert new.code.id != item.code.id
    # and still only once per order
    await _import(demo, pool, "GI60-FRSH-CODE-0003")
    text = await _report(demo)
    assert f"will check the code of order {ref}" in text
    assert await store.order_items(order.id) == [new]
