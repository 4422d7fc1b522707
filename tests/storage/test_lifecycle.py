"""The one order lifecycle, on both backends: every verb is driven, and every event written to order_events must be
allowed by the table in fulfillment/orders.py (a move in TRANSITIONS, or a note that stays in its state)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fulfillment.orders import HOLDING, PAYABLE, AllowAll, OrderService, can_record
from storage import events
from storage.events import EventType
from storage.records import OrderState, PaymentOutcome
from storage.records_supply import NewProcurement, ProcurementState, Settlement, SkuSource, SkuSourcing
from tests.storage.seed import NOW, fake_code, make_shop, new_order, payment

S = OrderState
TTL = timedelta(minutes=15)


async def _deliver_all(store, at):
    for row in await store.claim_outbox(at, at + timedelta(seconds=60), 50):
        if row.kind == "deliver":
            await store.complete_outbox(row.id, at)


async def test_every_verb_writes_only_events_the_lifecycle_table_allows(store):
    shop = await make_shop(store, codes=12)
    orders = OrderService(store, AllowAll(), TTL, clock=lambda: NOW)
    touched = []

    async def reserve(user, ttl=TTL):
        order = await store.reserve(new_order(shop.sku, user=user, ttl=ttl), NOW)
        touched.append(order.id)
        return order

    # reserve → invoice → pay → deliver (two payments at once: SQLite's group-commit path too), then a dispute
    sold = [await reserve(f"buyer{i}") for i in range(3)]
    await orders.await_payment(sold[0])
    results = await asyncio.gather(*(store.receive_payment(payment(o.ref, 1000), NOW) for o in sold))
    assert {r.outcome for r in results} == {PaymentOutcome.ALLOCATED}
    await _deliver_all(store, NOW)
    assert await store.record_dispute(sold[0].id, "merchant", NOW)
    # code replacement, then a refund of a delivered order
    item = (await store.order_items(sold[1].id))[0]
    assert await store.replace_code(sold[1].id, item.code.id, NOW) is not None
    assert await store.refund(sold[2].id, events.refunded(reason="merchant"), NOW)

    # cancel, expiry, a late payment with stock and one without (failed, then refunded)
    cancelled = await reserve("cancels")
    await orders.cancel(cancelled.ref, "cancels")
    late = await reserve("late", ttl=timedelta(minutes=1))
    unlucky = await reserve("unlucky", ttl=timedelta(minutes=1))
    assert await orders.expire_due() == 0
    await store.expire_reservations(NOW + timedelta(minutes=5), 10)
    assert (await store.receive_payment(payment(late.ref, 1000), NOW)).outcome == PaymentOutcome.ALLOCATED
    hog = await store.reserve(new_order(shop.sku, user="hog", qty=await store.pool_available(shop.pool.id)), NOW)
    touched.append(hog.id)
    assert (await store.receive_payment(payment(unlucky.ref, 1000), NOW)).outcome == PaymentOutcome.FAILED
    assert await store.refund(unlucky.id, events.refunded(reason="automatic refund: could not fulfil"), NOW)
    await store.transition(hog.id, list(HOLDING), S.EXPIRED, events.cancelled(), NOW)

    # review: a wrong amount (then refunded = rejected), and a risk hold (flagged, held, approved, delivered)
    wrong = await reserve("wrong")
    assert (await store.receive_payment(payment(wrong.ref, 1), NOW)).outcome == PaymentOutcome.REVIEW
    assert await store.refund(wrong.id, events.refunded(reason="rejected by merchant 1"), NOW)
    held = await reserve("held")
    await store.add_order_note(held.id, events.risk_flagged(reasons=["velocity"]), NOW)
    await store.transition(held.id, list(PAYABLE), S.REVIEW, events.risk_review(reasons=["velocity", "amount"]), NOW)
    assert (await store.receive_payment(payment(held.ref, 1000), NOW)).outcome == PaymentOutcome.REVIEW
    assert await orders.approve_review(held.id, "merchant 1")
    await _deliver_all(store, NOW)
    await store.add_order_note(held.id, events.note(text="called the customer"), NOW)

    # on demand after payment: a backorder paid, waiting on its supplier, delivered from the supplier's codes; a
    # second one whose only supplier order definitively failed fails (refund queued), then is refunded
    await store.save_sku_sourcing(SkuSourcing(shop.sku.id, sources=(SkuSource("kw", "1"),), max_unit_cost=100,
                                              on_demand=True))
    for user, outcome in (("sourced", Settlement(ProcurementState.SUCCEEDED, "S1", 50)),
                          ("sourced_failed", Settlement(ProcurementState.FAILED, detail="refused"))):
        waits = await reserve(user)
        await store.transition(waits.id, list(HOLDING), S.EXPIRED, events.cancelled(), NOW)
        drain = await store.reserve(new_order(shop.sku, user="drain", qty=max(
            await store.pool_available(shop.pool.id), 1)), NOW)
        touched.append(drain.id)
        paid = await store.receive_payment(payment(waits.ref, 1000), NOW)
        assert (paid.outcome, paid.detail) == (PaymentOutcome.ALLOCATED, "procuring")
        planned = await store.plan_procurement(NewProcurement(f"P{user}", "kw", "1", 1, 100, "CNY", shop.pool.id,
                                                              waits.id), NOW)
        assert planned is not None
        assert await store.mark_procurement_sent(planned.our_ref, NOW)
        await store.settle_procurement(planned.our_ref, outcome, [fake_code()], NOW)
        if outcome.state is ProcurementState.FAILED:
            assert await store.fail_backorder(waits.id, "no source left", NOW)
            assert await store.refund(waits.id, events.refunded(reason="automatic refund: could not fulfil"), NOW)
        await _deliver_all(store, NOW)
        await store.transition(drain.id, list(HOLDING), S.EXPIRED, events.cancelled(), NOW)

    seen = set()
    for order_id in touched:
        for ev in await store.order_events(order_id):
            frm = S(ev.from_state) if ev.from_state else None
            assert can_record(frm, S(ev.to_state), ev.type), (order_id, ev)
            assert ev.is_note == (ev.from_state == ev.to_state), ev
            seen.add(ev.type)
    assert seen == set(EventType)  # every event type was written by some verb
    states = {(await store.order_by_id(i)).state for i in touched}
    assert states >= {S.DELIVERED, S.REFUNDED, S.EXPIRED}

