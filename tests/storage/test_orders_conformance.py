"""Orders, payments, outbox and refunds conformance (storage/protocols/orders.py, ledger.py),
run against every backend (SQLite and PostgreSQL) via the `store` fixture."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from fulfillment.orders import can_move
from storage import events
from storage.errors import InsufficientStock, PurchaseLimitReached, UnknownRecord
from storage.records import NewOrder, OrderState, PaymentOutcome
from tests.storage.seed import NOW, make_shop, new_order, payment

S = OrderState
REFUND = events.refunded(reason="merchant")


async def test_reserve_holds_stock_and_refuses_oversell(store):
    shop = await make_shop(store, codes=3)
    order = await store.reserve(new_order(shop.sku, qty=2), NOW)
    assert order.state == S.RESERVED
    assert order.quantity == 2
    assert order.ref.startswith("K")
    assert await store.pool_available(shop.pool.id) == 1
    with pytest.raises(InsufficientStock):
        await store.reserve(new_order(shop.big, qty=1), NOW)
    assert await store.pool_available(shop.pool.id) == 1
    levels = {lv.pool_slug: (lv.available, lv.reserved) for lv in await store.stock_levels()}
    assert levels == {"game-pool": (1, 2)}


async def test_reserve_unknown_sku_and_per_user_limit(store):
    shop = await make_shop(store, codes=10, per_user_limit=2)
    with pytest.raises(UnknownRecord):
        await store.reserve(NewOrder("console", "u1", "c", 999_999, 1, 1000, "CNY", NOW), NOW)
    await store.reserve(new_order(shop.sku, qty=2, user="alice"), NOW)
    with pytest.raises(PurchaseLimitReached):
        await store.reserve(new_order(shop.sku, qty=1, user="alice"), NOW)
    await store.reserve(new_order(shop.sku, qty=1, user="bob"), NOW)
    assert await store.pool_available(shop.pool.id) == 7


async def test_expired_reservation_returns_stock(store):
    shop = await make_shop(store, codes=2)
    order = await store.reserve(new_order(shop.sku, qty=2, ttl=timedelta(minutes=1)), NOW)
    assert await store.expire_reservations(NOW, 10) == []
    assert await store.expire_reservations(NOW + timedelta(minutes=2), 10) == [order.id]
    assert (await store.order_by_id(order.id)).state == S.EXPIRED
    assert await store.pool_available(shop.pool.id) == 2


async def test_payment_allocates_writes_outbox_and_ledger(store):
    shop = await make_shop(store, codes=3, unit_cost=40)
    order = await store.reserve(new_order(shop.sku, qty=2), NOW)
    event_id, fresh = await store.record_payment(payment(order.ref, 2000, fee=30), NOW)
    applied = await store.apply_payment(event_id, NOW)
    assert fresh
    assert applied.outcome == PaymentOutcome.ALLOCATED
    assert applied.order_id == order.id
    assert (await store.order_by_id(order.id)).state == S.DELIVERING
    items = await store.order_items(order.id)
    assert [i.item_no for i in items] == [1, 2]
    assert len({i.code.id for i in items}) == 2
    assert await store.pending_outbox() == 1
    ledger = {(line.kind, line.currency): line.amount for line in await store.ledger(NOW, NOW + timedelta(1))}
    assert ledger == {("sale", "CNY"): 2000, ("fee", "CNY"): -30, ("cost", "CNY"): -80}
    assert await store.pool_available(shop.pool.id) == 1


async def test_same_payment_event_twice_allocates_once(store):
    shop = await make_shop(store, codes=5)
    order = await store.reserve(new_order(shop.sku, qty=1), NOW)
    event = payment(order.ref, 1000, txn="tx-1")
    first_id, _ = await store.record_payment(event, NOW)
    await store.apply_payment(first_id, NOW)
    second_id, fresh = await store.record_payment(event, NOW)
    again = await store.apply_payment(second_id, NOW)
    assert (second_id, fresh) == (first_id, False)
    assert again.outcome == PaymentOutcome.ALREADY_APPLIED
    assert len(await store.order_items(order.id)) == 1
    assert await store.pending_outbox() == 1


async def test_wrong_amount_or_currency_holds_for_review(store):
    shop = await make_shop(store, codes=5)
    cheap = await store.reserve(new_order(shop.sku, qty=1, user="a"), NOW)
    other = await store.reserve(new_order(shop.sku, qty=1, user="b"), NOW)
    r1 = await store.apply_payment((await store.record_payment(payment(cheap.ref, 1), NOW))[0], NOW)
    r2 = await store.apply_payment((await store.record_payment(payment(other.ref, 1000, "USD"), NOW))[0], NOW)
    assert r1.outcome == r2.outcome == PaymentOutcome.REVIEW
    for o in (cheap, other):
        assert (await store.order_by_id(o.id)).state == S.REVIEW
        assert await store.order_items(o.id) == []
    assert await store.pending_outbox() == 0


async def test_payment_for_unknown_order_or_paid_order_changes_nothing(store):
    shop = await make_shop(store, codes=5)
    ghost = await store.apply_payment((await store.record_payment(payment("KNOPE", 1000), NOW))[0], NOW)
    assert ghost.outcome == PaymentOutcome.UNKNOWN_ORDER
    order = await store.reserve(new_order(shop.sku), NOW)
    await store.apply_payment((await store.record_payment(payment(order.ref, 1000), NOW))[0], NOW)
    double = await store.apply_payment((await store.record_payment(payment(order.ref, 1000), NOW))[0], NOW)
    assert double.outcome == PaymentOutcome.REVIEW
    assert len(await store.order_items(order.id)) == 1


async def test_late_payment_of_expired_order_allocates_if_stock_allows(store):
    shop = await make_shop(store, codes=1)
    late = await store.reserve(new_order(shop.sku, user="late", ttl=timedelta(minutes=1)), NOW)
    await store.expire_reservations(NOW + timedelta(minutes=5), 10)
    result = await store.apply_payment((await store.record_payment(payment(late.ref, 1000), NOW))[0], NOW)
    assert result.outcome == PaymentOutcome.ALLOCATED
    assert await store.pool_available(shop.pool.id) == 0


async def test_late_payment_without_stock_fails_and_queues_refund(store):
    shop = await make_shop(store, codes=1)
    late = await store.reserve(new_order(shop.sku, user="late", ttl=timedelta(minutes=1)), NOW)
    await store.expire_reservations(NOW + timedelta(minutes=5), 10)
    await store.reserve(new_order(shop.sku, user="other"), NOW)  # takes the only code
    event_id, _ = await store.record_payment(payment(late.ref, 1000, txn="tx-late"), NOW)
    result = await store.apply_payment(event_id, NOW)
    assert result.outcome == PaymentOutcome.FAILED
    assert (await store.order_by_id(late.id)).state == S.FAILED
    rows = await store.claim_outbox(NOW, NOW + timedelta(minutes=1), 10)
    assert [(r.kind, json.loads(r.payload)["txn"]) for r in rows] == [("refund", "tx-late")]


async def test_multi_use_code_serves_several_orders_once_each(store):
    shop = await make_shop(store, codes=1, uses=3)
    orders = [await store.reserve(new_order(shop.sku, user=f"u{i}"), NOW) for i in range(3)]
    with pytest.raises(InsufficientStock):
        await store.reserve(new_order(shop.sku, user="u9"), NOW)
    for o in orders:
        await store.apply_payment((await store.record_payment(payment(o.ref, 1000), NOW))[0], NOW)
    uses = sorted((i.code.id, i.use_no) for items in [await store.order_items(o.id) for o in orders] for i in items)
    assert len(set(uses)) == 3
    assert {u for _, u in uses} == {1, 2, 3}


async def test_outbox_lease_and_completion_delivers(store):
    shop = await make_shop(store, codes=2)
    order = await store.reserve(new_order(shop.sku), NOW)
    await store.apply_payment((await store.record_payment(payment(order.ref, 1000), NOW))[0], NOW)
    rows = await store.claim_outbox(NOW, NOW + timedelta(seconds=60), 10)
    assert [r.kind for r in rows] == ["deliver"]
    assert (rows[0].attempts, rows[0].interrupted) == (1, False)
    assert await store.claim_outbox(NOW + timedelta(seconds=30), NOW + timedelta(seconds=90), 10) == []
    await store.retry_outbox(rows[0].id, NOW + timedelta(seconds=5), "Timeout")
    again = await store.claim_outbox(NOW + timedelta(seconds=6), NOW + timedelta(seconds=66), 10)
    assert [(r.attempts, r.interrupted) for r in again] == [(2, False)]  # a recorded failure: never sent
    # the claimer dies without a word: once its lease lapses the row is claimed again, marked interrupted
    lapsed = await store.claim_outbox(NOW + timedelta(seconds=67), NOW + timedelta(seconds=127), 10)
    assert [(r.id, r.attempts, r.interrupted) for r in lapsed] == [(again[0].id, 3, True)]
    # a claim renewed while its row is processed does not lapse; a row no longer claimed is not renewed
    assert await store.renew_outbox([again[0].id, 999_999], NOW + timedelta(seconds=200)) == 1
    assert await store.claim_outbox(NOW + timedelta(seconds=150), NOW + timedelta(seconds=210), 10) == []
    assert await store.renew_outbox([], NOW) == 0
    await store.complete_outbox(again[0].id, NOW + timedelta(seconds=7))
    await store.complete_outbox(again[0].id, NOW + timedelta(seconds=8))  # idempotent
    assert (await store.order_by_id(order.id)).state == S.DELIVERED
    assert await store.pending_outbox() == 0


async def test_refund_returns_only_never_shown_codes(store):
    shop = await make_shop(store, codes=4)
    shown = await store.reserve(new_order(shop.sku, user="a"), NOW)
    unseen = await store.reserve(new_order(shop.sku, user="b"), NOW)
    for o in (shown, unseen):
        await store.apply_payment((await store.record_payment(payment(o.ref, 1000), NOW))[0], NOW)
    rows = await store.claim_outbox(NOW, NOW + timedelta(seconds=60), 1)  # only the first order is sent
    assert rows[0].order_id == shown.id
    assert await store.refund(shown.id, REFUND, NOW)
    assert await store.refund(unseen.id, REFUND, NOW)
    assert not await store.refund(unseen.id, REFUND, NOW)  # twice changes nothing
    assert await store.pool_available(shop.pool.id) == 2 + 1
    assert len(await store.order_items(shown.id)) == 1
    assert await store.order_items(unseen.id) == []
    refunds = [line for line in await store.ledger(NOW, NOW + timedelta(1)) if line.kind == "refund"]
    assert sum(line.amount for line in refunds) == -2000


async def test_every_recorded_transition_is_in_the_state_table(store):
    shop = await make_shop(store, codes=2)
    a = await store.reserve(new_order(shop.sku, user="a", ttl=timedelta(minutes=1)), NOW)
    b = await store.reserve(new_order(shop.sku, user="b"), NOW)
    await store.transition(b.id, [S.RESERVED], S.AWAITING_PAYMENT, events.invoice_issued(), NOW)
    await store.expire_reservations(NOW + timedelta(minutes=2), 10)
    await store.apply_payment((await store.record_payment(payment(b.ref, 1000), NOW))[0], NOW)
    rows = await store.claim_outbox(NOW, NOW + timedelta(seconds=60), 10)
    await store.complete_outbox(rows[0].id, NOW)
    await store.refund(b.id, REFUND, NOW)
    for order in (a, b):
        for ev in await store.order_events(order.id):
            frm = S(ev.from_state) if ev.from_state else None
            assert can_move(frm, S(ev.to_state)), (ev.from_state, ev.to_state)
    assert [e.to_state for e in await store.order_events(b.id)] == [
        "created", "reserved", "awaiting_payment", "paid", "delivering", "delivered", "refunded"]


async def test_transition_refuses_states_outside_allowed(store):
    shop = await make_shop(store, codes=1)
    order = await store.reserve(new_order(shop.sku), NOW)
    assert not await store.transition(order.id, [S.PAID], S.DELIVERED, events.codes_allocated(), NOW)
    assert await store.transition(order.id, [S.RESERVED], S.EXPIRED, events.cancelled(), NOW)
    assert await store.pool_available(shop.pool.id) == 1


async def test_concurrent_payments_keep_per_event_semantics(store):

    shop = await make_shop(store, codes=40, uses=1)
    orders = [await store.reserve(new_order(shop.sku, user=f"c{i}"), NOW) for i in range(30)]
    events = [payment(o.ref, 1000, txn=f"tx-{i}") for i, o in enumerate(orders)]
    events += [events[0], events[1]]  # the provider repeats two notifications in the same burst
    events.append(payment(orders[2].ref, 1000, txn="tx-second"))  # a second payment for one order
    events.append(payment("KUNKNOWN", 1000))
    wrong = await store.reserve(new_order(shop.sku, user="w"), NOW)
    events.append(payment(wrong.ref, 999))
    results = await asyncio.gather(*(store.receive_payment(e, NOW) for e in events))
    outcomes = [r.outcome for r in results]
    assert outcomes.count(PaymentOutcome.ALLOCATED) == 30
    assert sorted(outcomes[30:32] + [outcomes[0], outcomes[1]]).count(PaymentOutcome.ALREADY_APPLIED) == 2
    assert outcomes[-3:] == [PaymentOutcome.REVIEW, PaymentOutcome.UNKNOWN_ORDER, PaymentOutcome.REVIEW]
    assert {r.order_id for r in results[:30]} == {o.id for o in orders}
    assert len({r.event_id for r in results[:30]}) == 30
    uses = [(i.code.id, i.use_no) for o in orders for i in await store.order_items(o.id)]
    assert len(uses) == 30
    assert len(set(uses)) == 30
    assert await store.pending_outbox() == 30
    again = await store.receive_payment(events[5], NOW)
    assert (again.outcome, again.event_id) == (PaymentOutcome.ALREADY_APPLIED, results[5].event_id)


async def test_refund_row_is_queued_once_and_payment_found(store):
    shop = await make_shop(store, codes=2)
    order = await store.reserve(new_order(shop.sku), NOW)
    await store.receive_payment(payment(order.ref, 1000, txn="tx-r"), NOW)
    assert await store.order_payment(order.id) == ("test", "tx-r", 1000)
    first = await store.enqueue_outbox(order.id, "refund", "{}", NOW)
    second = await store.enqueue_outbox(order.id, "refund", "{}", NOW)
    resend1 = await store.enqueue_outbox(order.id, "resend", "", NOW)
    resend2 = await store.enqueue_outbox(order.id, "resend", "", NOW)
    assert first == second
    assert resend1 != resend2
    assert await store.pending_outbox() == 1 + 1 + 2  # deliver, refund, two resends
    with pytest.raises(UnknownRecord):
        await store.enqueue_outbox(999_999, "resend", "", NOW)


@pytest.mark.parametrize("together", [False, True])
async def test_a_refunded_use_of_a_multi_use_code_is_sold_again_without_collision(store, together):

    shop = await make_shop(store, codes=1, uses=3)
    a, b, c = [await store.reserve(new_order(shop.sku, user=u), NOW) for u in ("a", "b", "c")]
    for o in (a, b, c):
        await store.receive_payment(payment(o.ref, 1000), NOW)
    assert await store.refund(b.id, REFUND, NOW)  # never shown: use 2 goes back to stock
    d = await store.reserve(new_order(shop.sku, user="d"), NOW)
    if together:  # the batch path of SQLite and concurrent calls on PostgreSQL
        results = await asyncio.gather(store.receive_payment(payment(d.ref, 1000), NOW))
    else:
        results = [await store.receive_payment(payment(d.ref, 1000), NOW)]
    assert [r.outcome for r in results] == [PaymentOutcome.ALLOCATED]
    live = sorted([i.use_no for o in (a, c, d) for i in await store.order_items(o.id)])
    assert live == [1, 2, 3]
    assert [i.use_no for i in await store.order_items(d.id)] == [2]


async def test_a_note_is_not_a_move_and_a_move_is_not_a_note(store):
    shop = await make_shop(store, codes=1)
    order = await store.reserve(new_order(shop.sku), NOW)
    with pytest.raises(ValueError, match="note"):
        await store.transition(order.id, [S.RESERVED], S.EXPIRED, events.note(text="gone"), NOW)
    with pytest.raises(ValueError, match="state"):
        await store.add_order_note(order.id, events.cancelled(), NOW)
    with pytest.raises(UnknownRecord):
        await store.add_order_note(order.id + 1000, events.note(text="nobody"), NOW)
    await store.add_order_note(order.id, events.note(text="called"), NOW)
    last = (await store.order_events(order.id))[-1]
    assert (last.from_state, last.to_state, last.type, last.cause) == ("reserved", "reserved", "note", "called")
    assert (await store.order_by_id(order.id)).state == S.RESERVED



async def test_last_order_event_of_a_type_is_the_newest_and_none_for_an_order_without_one(store):
    shop = await make_shop(store)
    order = await store.reserve(new_order(shop.sku, qty=1), NOW)
    assert await store.last_order_event(order.id, events.EventType.RISK_FLAGGED) is None
    await store.add_order_note(order.id, events.risk_flagged(reasons=["velocity"]), NOW)
    await store.add_order_note(order.id, events.risk_flagged(reasons=["new_user", "amount"]), NOW)
    newest = await store.last_order_event(order.id, events.EventType.RISK_FLAGGED)
    assert newest is not None
    assert newest.params["reasons"] == ["new_user", "amount"]
    checkout = await store.last_order_event(order.id, events.EventType.CHECKOUT)
    assert checkout is not None
    assert checkout.to_state == S.CREATED


async def test_order_by_ref_noted_is_the_order_and_its_newest_note_of_that_type_in_one_read(store):
    shop = await make_shop(store)
    order = await store.reserve(new_order(shop.sku, qty=1), NOW)
    other = await store.reserve(new_order(shop.sku, qty=1, user="bob"), NOW)
    await store.add_order_note(other.id, events.risk_flagged(reasons=["not_mine"]), NOW)
    assert await store.order_by_ref_noted("K-NO-SUCH", events.EventType.RISK_FLAGGED) is None
    found = await store.order_by_ref_noted(order.ref, events.EventType.RISK_FLAGGED)
    assert found == (await store.order_by_ref(order.ref), None)
    await store.add_order_note(order.id, events.risk_flagged(reasons=["velocity"]), NOW)
    await store.add_order_note(order.id, events.note(text="called"), NOW)
    await store.add_order_note(order.id, events.risk_flagged(reasons=["new_user", "amount"]), NOW)
    found = await store.order_by_ref_noted(order.ref, events.EventType.RISK_FLAGGED)
    assert found is not None
    assert found[0] == await store.order_by_ref(order.ref)
    assert found[1] == await store.last_order_event(order.id, events.EventType.RISK_FLAGGED)
    assert found[1].params["reasons"] == ["new_user", "amount"]


async def test_concurrent_order_by_ref_noted_calls_each_get_their_own_order_and_note(store):
    shop = await make_shop(store, codes=10)
    orders = [await store.reserve(new_order(shop.sku, qty=1, user=f"u{i}"), NOW) for i in range(4)]
    await store.add_order_note(orders[1].id, events.risk_flagged(reasons=["one"]), NOW)
    await store.add_order_note(orders[2].id, events.note(text="called"), NOW)
    asked = [(o.ref, events.EventType.RISK_FLAGGED) for o in orders] + [
        (orders[1].ref, events.EventType.RISK_FLAGGED), ("K-NO-SUCH", events.EventType.RISK_FLAGGED),
        (orders[2].ref, events.EventType.NOTE), (orders[1].ref, events.EventType.NOTE)]
    found = await asyncio.gather(*(store.order_by_ref_noted(ref, note) for ref, note in asked))
    alone = [await store.order_by_ref_noted(ref, note) for ref, note in asked]
    assert found == alone
    assert [f[0].id if f else None for f in found] == [*(o.id for o in orders), orders[1].id, None, orders[2].id,
                                                       orders[1].id]
    assert [f[1].type.value if f and f[1] else None for f in found] == [
        None, "risk_flagged", None, None, "risk_flagged", None, "note", None]


async def test_the_orders_payment_is_the_one_that_paid_it_even_when_a_held_one_has_the_lower_id(store):
    shop = await make_shop(store)
    order = await store.reserve(new_order(shop.sku, qty=1), NOW)
    # the second payment is recorded first (lower id) but applied after the first one paid the order
    late_id, fresh = await store.record_payment(payment(order.ref, order.amount, order.currency, txn="second"), NOW)
    assert fresh
    paid = await store.receive_payment(payment(order.ref, order.amount, order.currency, txn="first"), NOW)
    assert paid.outcome == PaymentOutcome.ALLOCATED
    held = await store.apply_payment(late_id, NOW)
    assert held.outcome == PaymentOutcome.REVIEW
    own = await store.order_payment(order.id)
    assert own is not None
    assert own[1] == "first"


async def test_refund_queued_is_true_once_the_orders_refund_row_exists(store):
    shop = await make_shop(store)
    order = await store.reserve(new_order(shop.sku, qty=1), NOW)
    await store.receive_payment(payment(order.ref, order.amount, order.currency), NOW)
    assert not await store.refund_queued(order.id)
    await store.enqueue_outbox(order.id, "deliver", "", NOW)
    assert not await store.refund_queued(order.id)
    await store.enqueue_outbox(order.id, "refund", "{}", NOW)
    assert await store.refund_queued(order.id)
