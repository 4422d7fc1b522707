"""The ReconcileStore verbs on every Store backend (SQLite, PostgreSQL) via `store`: discrepancies once per
(source, kind, reference), reported once, resolved once with a note; the shop's payments and refunds of a period;
fee corrections booked once, dated like the sale."""

from __future__ import annotations

from datetime import timedelta

from storage import events
from storage.protocols.reconcile import FeeActual, NewDiscrepancy, ShopRefund
from storage.records import PaymentEventIn
from tests.storage.seed import NOW, make_shop, new_order

DAY = (NOW - timedelta(hours=12), NOW + timedelta(hours=12))


async def _paid(store, shop, txn: str, fee: int = 0, user: str = "u1"):
    order = await store.reserve(new_order(shop.sku, user=user), NOW)
    await store.receive_payment(PaymentEventIn("wechatpay", txn, order.ref, order.amount, "CNY", fee=fee), NOW)
    return order


async def test_a_discrepancy_is_recorded_once_reported_once_and_resolved_once(store):
    first = NewDiscrepancy("wechatpay", "amount_mismatch", "4200001", "REF1", "CNY", 1000, 900, "x", "2026-11-25")
    d, other = await store.record_discrepancies([first, NewDiscrepancy("telegram", "missing_in_shop", "ch1")], NOW)
    assert other.reference == "ch1"
    assert (d.source, d.kind, d.reference, d.expected, d.actual, d.period) == (
        "wechatpay", "amount_mismatch", "4200001", 1000, 900, "2026-11-25")
    again = await store.record_discrepancies([first], NOW + timedelta(days=1))
    assert again == []  # the same (source, kind, reference) found again is not new
    assert [x.reference for x in await store.unreported_discrepancies(10)] == ["4200001", "ch1"]
    assert await store.mark_discrepancy_reported(d.id, NOW)
    assert not await store.mark_discrepancy_reported(d.id, NOW)
    assert [x.reference for x in await store.unreported_discrepancies(10)] == ["ch1"]
    assert await store.resolve_discrepancy(d.id, "m1", "refunded by hand", NOW)
    assert not await store.resolve_discrepancy(d.id, "m1", "again", NOW)
    assert not await store.resolve_discrepancy(9999, "m1", "nobody", NOW)
    resolved = await store.discrepancy(d.id)
    assert (resolved.note, resolved.resolved_by, resolved.resolved_at) == ("refunded by hand", "m1", NOW)
    assert [x.reference for x in await store.discrepancies(False, 10)] == ["ch1"]
    assert [x.reference for x in await store.discrepancies(True, 10)] == ["ch1", "4200001"]


async def test_shop_payments_and_refunds_of_a_period(store):
    shop = await make_shop(store)
    kept = await _paid(store, shop, "T-kept")
    gone = await _paid(store, shop, "T-gone", user="u2")
    assert await store.refund(gone.id, events.refunded(reason="merchant"), NOW)
    pays = {p.txn: p for p in await store.shop_payments("wechatpay", *DAY)}
    assert set(pays) == {"T-kept", "T-gone"}
    assert (pays["T-kept"].order_ref, pays["T-kept"].amount, pays["T-kept"].refunded) == (kept.ref, 1000, 0)
    assert pays["T-gone"].refunded == 1000
    assert await store.shop_payments("wechatpay", DAY[1], DAY[1] + timedelta(days=1)) == []
    assert await store.shop_payments("telegram", *DAY) == []
    assert await store.shop_refunds("wechatpay", *DAY) == [ShopRefund("T-gone", gone.ref, 1000, "CNY")]
    assert (await store.shop_payment("wechatpay", "T-kept")).order_ref == kept.ref
    assert await store.shop_payment("wechatpay", "nope") is None


async def test_fee_corrections_are_booked_once_and_dated_like_the_sale(store):
    shop = await make_shop(store)
    await _paid(store, shop, "T-1", fee=6)  # estimated 6, actually 7
    await _paid(store, shop, "T-2", fee=0, user="u2")  # no estimate, actually 5
    await _paid(store, shop, "T-3", fee=4, user="u3")  # right already
    later = NOW + timedelta(days=1)
    fees = [FeeActual("T-1", 7), FeeActual("T-2", 5), FeeActual("T-3", 4), FeeActual("T-unknown", 9)]
    assert await store.correct_fees("wechatpay", fees, later) == (3, 1 + 5 + 0)
    assert await store.correct_fees("wechatpay", fees, later) == (0, 0)  # once
    day_fees = [line for line in await store.ledger(*DAY) if line.kind == "fee"]
    assert -sum(line.amount for line in day_fees) == 7 + 5 + 4  # the sale's day now carries the actual fees
    assert [line for line in await store.ledger(later - timedelta(hours=1), later + timedelta(hours=1))] == []
