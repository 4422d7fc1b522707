"""One conformance suite, run against every Store backend (SQLite and PostgreSQL) via the `store` fixture."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from fulfillment.orders import can_move
from storage import events
from storage.errors import InsufficientStock, PurchaseLimitReached, UnknownRecord
from storage.records import BatchStats, NewOrder, OrderState, PaymentOutcome, Price
from tests.storage.seed import NOW, fake_code, make_shop, new_order, payment

S = OrderState
REFUND = events.refunded(reason="merchant")


async def test_migrate_is_idempotent_and_records_version(store):
    first = await store.schema_version()
    again = await store.migrate()
    assert first >= 1
    assert again == first


async def test_catalogue_round_trip_and_prices(store):
    shop = await make_shop(store, codes=0)
    assert [c.slug for c in await store.categories()] == ["game-cat"]
    assert (await store.sku_by_slug("game-2")).units == 2
    assert (await store.product_by_id(shop.product.id)).name_zh == "100 钻石"
    await store.set_price(Price(shop.sku.id, "console", "CNY", 1234))
    prices = {p.channel: (p.currency, p.amount) for p in await store.prices(shop.sku.id)}
    assert prices == {"console": ("CNY", 1234), "telegram": ("XTR", 50)}


async def test_insert_codes_counts_duplicates_within_batch_and_vault(store):
    shop = await make_shop(store, codes=0)
    a, b = fake_code(), fake_code(uses=3)
    batch1 = await store.create_batch(shop.pool.id, "acme", 10, "CNY", "one.txt")
    first = await store.insert_codes(batch1, shop.pool.id, [a, b, a])
    assert (first.inserted, first.duplicate_in_batch, first.duplicate_in_vault) == (2, 1, 0)
    second = await store.insert_codes(batch1, shop.pool.id, [b])  # a later chunk of the same file
    assert (second.inserted, second.duplicate_in_batch, second.duplicate_in_vault) == (0, 1, 0)
    batch2 = await store.create_batch(shop.pool.id, "acme", 10, "CNY", "two.txt")
    third = await store.insert_codes(batch2, shop.pool.id, [a, fake_code()])
    assert (third.inserted, third.duplicate_in_batch, third.duplicate_in_vault) == (1, 0, 1)
    await store.finish_batch(batch2, BatchStats(imported=1, duplicate_in_vault=1))
    assert await store.pool_available(shop.pool.id) == 1 + 3 + 1
    assert await store.count_codes() == 3


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
    assert rows[0].attempts == 1
    assert await store.claim_outbox(NOW + timedelta(seconds=30), NOW + timedelta(seconds=90), 10) == []
    await store.retry_outbox(rows[0].id, NOW + timedelta(seconds=5), "Timeout")
    again = await store.claim_outbox(NOW + timedelta(seconds=6), NOW + timedelta(seconds=66), 10)
    assert [r.attempts for r in again] == [2]
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
    assert not await store.transition(order.id, [S.PAID], S.DELIVERED, events.note(text="bogus"), NOW)
    assert await store.transition(order.id, [S.RESERVED], S.EXPIRED, events.cancelled(), NOW)
    assert await store.pool_available(shop.pool.id) == 1


async def test_vault_key_checks_and_rekey(store):
    shop = await make_shop(store, codes=2)
    await store.register_vault_key("k1", b"check1")
    await store.register_vault_key("k1", b"other")  # first registration wins
    assert await store.vault_key_checks() == {"k1": b"check1"}
    rows = await store.codes_not_under_key("k2", 0, 10)
    assert len(rows) == 2
    moved = rows[0].__class__(rows[0].id, rows[0].digest, "k2", b"n" * 12, b"c" * 20)
    assert await store.rekey_code(rows[0].id, "k1", moved)
    assert not await store.rekey_code(rows[0].id, "k1", moved)  # already moved
    assert [r.id for r in await store.codes_not_under_key("k2", 0, 10)] == [rows[1].id]
    assert (await store.code_by_id(rows[0].id)).key_id == "k2"
    assert shop.pool.id


async def test_concurrent_payments_keep_per_event_semantics(store):
    import asyncio

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
    import asyncio

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


async def test_customers_language_referrer_blocking_and_audit(store):
    await store.touch_user("telegram", "20", "20", NOW, referrer="20")  # oneself is no referrer
    await store.touch_user("telegram", "10", "10", NOW, referrer="99")
    await store.touch_user("telegram", "10", "10b", NOW, referrer="77")  # the first referrer stays
    await store.touch_user("wechat", "o1", "o1", NOW)
    await store.set_user_language("telegram", "10", "zh_CN")
    assert await store.user_language("telegram", "10") == "zh_CN"
    assert await store.user_language("telegram", "20") is None
    assert await store.user_language("telegram", "nobody") is None
    await store.set_user_blocked("telegram", "20", True)
    assert await store.reachable_users("telegram", "", 10) == [("10", "10b")]
    assert await store.reachable_users("telegram", "10", 10) == []
    await store.audit("telegram", "900", "price", "genshin-60 650", NOW)
    entries = await store.audit_entries(5)
    assert [(e[1], e[2], e[3], e[4]) for e in entries] == [("telegram", "900", "price", "genshin-60 650")]


async def test_claim_once_is_first_wins_until_expiry(store):
    later = NOW + timedelta(minutes=5)
    assert await store.claim_once("wechat.msg", "m1", later, NOW)
    assert not await store.claim_once("wechat.msg", "m1", later, NOW)  # the retry
    assert await store.claim_once("wechat.evt", "m1", later, NOW)  # scopes are separate
    results = await asyncio.gather(*(store.claim_once("nonce", "n", later, NOW) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    # once expired, the key can be claimed again (and pruning removes only the expired)
    assert await store.claim_once("wechat.msg", "m1", later + timedelta(minutes=5), later)
    assert await store.prune_once_keys(later + timedelta(seconds=1)) == 2


async def test_kv_values_expire_and_leases_have_one_holder(store):
    soon, later = NOW + timedelta(seconds=30), NOW + timedelta(minutes=5)
    await store.kv_put("wechat.token", "t1", soon)
    assert await store.kv_get("wechat.token", NOW) == "t1"
    assert await store.kv_get("wechat.token", later) is None
    await store.kv_put("wechat.token", "t2", None)
    assert await store.kv_get("wechat.token", later) == "t2"
    assert await store.kv_get("missing", NOW) is None
    assert await store.try_lease("refresh", "p1", soon, NOW)
    assert not await store.try_lease("refresh", "p2", soon, NOW)
    assert await store.try_lease("refresh", "p1", later, NOW)  # the holder extends
    assert await store.try_lease("refresh", "p2", later + timedelta(minutes=1), later)  # expired: taken over
    await store.release_lease("refresh", "p1")  # not the holder: nothing happens
    assert not await store.try_lease("refresh", "p1", later, NOW + timedelta(minutes=5, seconds=30))
    await store.release_lease("refresh", "p2")
    assert await store.try_lease("refresh", "p1", later, NOW)


async def test_risk_rules_lists_decisions_and_user_stats(store):
    from storage.records import RiskDecisionRecord

    assert await store.latest_risk_rules() is None
    await store.save_risk_rules("a = 1", "file", NOW)
    await store.save_risk_rules("a = 2", "telegram:900", NOW)
    assert await store.latest_risk_rules() == "a = 2"
    await store.set_risk_list("ip", "10.0.0.0/8", "block", "farm", NOW)
    await store.set_risk_list("user", "telegram:5", "allow", "", NOW)
    await store.set_risk_list("ip", "10.0.0.0/8", "allow", "moved", NOW)
    await store.set_risk_list("user", "telegram:5", None, "", NOW)
    assert await store.risk_lists() == [("ip", "10.0.0.0/8", "allow")]
    for i, decision in enumerate(["allow", "deny", "review"]):
        await store.record_risk_decisions([RiskDecisionRecord(NOW, "checkout", "telegram", "7", decision, 10 * i,
                                                              "r1,r2", ip="1.2.3.4", order_id=40 + i)])
    await store.record_risk_decisions([RiskDecisionRecord(NOW, "paid", "telegram", "8", "allow", 0)] * 3)
    assert len(await store.risk_decisions("user", "telegram:8", 10)) == 3
    by_user = await store.risk_decisions("user", "telegram:7", 2)
    assert [d.decision for d in by_user] == ["review", "deny"]
    assert (by_user[0].at, by_user[0].reasons) == (NOW, "r1,r2")
    assert [d.order_id for d in await store.risk_decisions("ip", "1.2.3.4", 10)] == [42, 41, 40]
    assert [d.score for d in await store.risk_decisions("order", "41", 10)] == [10]
    assert await store.risk_decisions("user", "wechat:7", 10) == []
    with pytest.raises(ValueError, match="filter"):
        await store.risk_decisions("sku", "1", 1)
    shop = await make_shop(store, codes=3)
    await store.touch_user("console", "u1", "u1", NOW)
    paid = await store.reserve(new_order(shop.sku, user="u1"), NOW)
    await store.receive_payment(payment(paid.ref, 1000), NOW)
    await store.reserve(new_order(shop.sku, user="u1"), NOW)  # unpaid: not counted
    assert [o.id for o in await store.orders_in_state(S.DELIVERING, 10)] == [paid.id]
    await store.refund(paid.id, REFUND, NOW)
    assert await store.orders_in_state(S.DELIVERING, 10) == []
    stats = await store.user_stats("console", "u1")
    assert (stats.first_seen, stats.paid_orders, stats.refunded_orders) == (NOW, 1, 1)
    assert (await store.user_stats("console", "nobody")).first_seen is None


async def test_a_dispute_is_recorded_once_per_order_and_counted_per_user(store):
    shop = await make_shop(store, codes=5)
    paid = await store.reserve(new_order(shop.sku, user="u1"), NOW)
    await store.receive_payment(payment(paid.ref, 1000), NOW)
    other = await store.reserve(new_order(shop.sku, user="u1"), NOW)
    theirs = await store.reserve(new_order(shop.sku, user="u2"), NOW)
    assert (await store.user_stats("console", "u1")).disputes == 0
    later = NOW + timedelta(days=3)
    assert await store.record_dispute(paid.id, "merchant", later) is True
    events = await store.order_events(paid.id)
    assert (events[-1].from_state, events[-1].to_state, events[-1].cause, events[-1].at) == (
        "delivering", "delivering", "dispute:merchant", later)
    assert (await store.order_by_id(paid.id)).state == S.DELIVERING  # the order itself does not move
    assert await store.record_dispute(paid.id, "telegram", later) is False  # a second report changes nothing
    assert await store.order_events(paid.id) == events
    assert (await store.user_stats("console", "u1")).disputes == 1
    assert await store.record_dispute(other.id, "wechatpay", later) is True
    assert (await store.user_stats("console", "u1")).disputes == 2
    assert (await store.user_stats("console", "u2")).disputes == 0
    before = await store.order_events(theirs.id)
    with pytest.raises(UnknownRecord):
        await store.record_dispute(theirs.id + 1000, "merchant", later)
    assert await store.order_events(theirs.id) == before
    assert (await store.user_stats("console", "u2")).disputes == 0
    with pytest.raises(ValueError, match="source"):
        await store.record_dispute(theirs.id, " ", later)
    assert await store.order_events(theirs.id) == before
