"""After-sales tickets and bad-code replacement on every Store backend (SQLite, PostgreSQL) via `store`."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from storage.errors import InsufficientStock
from storage.records import AutoReplaceRequest, NewTicket, OnceKey, PaymentOutcome
from tests.storage.seed import NOW, fake_code, make_shop, new_order, payment


async def test_open_ticket_round_trip_with_order_and_code_id(store):
    shop = await make_shop(store, codes=2)
    order = await store.reserve(new_order(shop.sku), NOW)
    t = await store.open_ticket(NewTicket("console", "u1", "chat-u1", "bad_code", "code does not work",
                                          order_id=order.id, code_id=1, language="zh_CN"), NOW)
    assert t.id >= 1
    assert (t.channel, t.user_id, t.chat_id, t.kind, t.order_id, t.code_id) == (
        "console", "u1", "chat-u1", "bad_code", order.id, 1)
    assert (t.state, t.language, t.last_message) == ("open", "zh_CN", "code does not work")
    assert t.created_at == NOW
    assert t.updated_at == NOW
    assert await store.ticket_by_id(t.id) == t
    assert await store.ticket_by_id(t.id + 1000) is None


async def test_asking_again_updates_the_live_ticket_instead_of_a_second_one(store):
    first = await store.open_ticket(NewTicket("telegram", "u1", "c1", "human", "hello?"), NOW)
    later = NOW + timedelta(minutes=5)
    again = await store.open_ticket(NewTicket("telegram", "u1", "c1", "human", "anyone there?"), later)
    assert again.id == first.id
    assert (again.last_message, again.updated_at, again.created_at) == ("anyone there?", later, NOW)
    other_kind = await store.open_ticket(NewTicket("telegram", "u1", "c1", "refund", "money back"), NOW)
    other_user = await store.open_ticket(NewTicket("telegram", "u2", "c2", "human", "hi"), NOW)
    other_channel = await store.open_ticket(NewTicket("wechat", "u1", "c1", "human", "hi"), NOW)
    assert len({first.id, other_kind.id, other_user.id, other_channel.id}) == 4
    assert [t.id for t in await store.live_tickets(10)] == sorted([first.id, other_kind.id, other_user.id,
                                                                    other_channel.id])


async def test_answer_close_and_reopen_as_a_new_ticket(store):
    t = await store.open_ticket(NewTicket("console", "u1", "c1", "human", "help"), NOW)
    answered = await store.answer_ticket(t.id, "On it", NOW + timedelta(seconds=1))
    assert answered is not None
    assert (answered.state, answered.last_message) == ("answered", "On it")
    # the customer writes again: the same ticket is open again
    back = await store.open_ticket(NewTicket("console", "u1", "c1", "human", "still broken"), NOW)
    assert (back.id, back.state) == (t.id, "open")
    assert await store.close_ticket(t.id, NOW) is True
    assert await store.close_ticket(t.id, NOW) is False  # a second close changes nothing
    assert await store.answer_ticket(t.id, "too late", NOW) is None
    assert (await store.ticket_by_id(t.id)).state == "closed"
    assert await store.live_tickets(10) == []
    fresh = await store.open_ticket(NewTicket("console", "u1", "c1", "human", "new question"), NOW)
    assert fresh.id != t.id
    assert fresh.state == "open"
    assert await store.close_ticket(999_999, NOW) is False


async def test_ticket_text_is_cut_to_500_characters_and_kind_checked(store):
    t = await store.open_ticket(NewTicket("console", "u1", "c1", "human", "x" * 2000), NOW)
    assert len(t.last_message) == 500
    answered = await store.answer_ticket(t.id, "y" * 900, NOW)
    assert answered is not None
    assert len(answered.last_message) == 500
    with pytest.raises(ValueError, match="unknown ticket kind"):
        await store.open_ticket(NewTicket("console", "u1", "c1", "refund_now", "x"), NOW)


async def test_concurrent_identical_questions_make_one_ticket(store):
    tickets = await asyncio.gather(*(store.open_ticket(NewTicket("console", "u9", "c9", "refund", f"try {i}"), NOW)
                                     for i in range(8)))
    assert len({t.id for t in tickets}) == 1
    assert len(await store.live_tickets(50)) == 1


async def test_live_tickets_are_limited_and_oldest_first(store):
    ids = [(await store.open_ticket(NewTicket("console", f"u{i}", "c", "human", "hi"), NOW)).id for i in range(5)]
    assert [t.id for t in await store.live_tickets(3)] == ids[:3]


async def _delivered(store, shop, user="u1", qty=1):
    order = await store.reserve(new_order(shop.sku, qty=qty, user=user), NOW)
    applied = await store.receive_payment(payment(order.ref, order.amount), NOW)
    assert applied.outcome == PaymentOutcome.ALLOCATED
    return order


def _costs(lines):
    return sum(line.amount for line in lines if line.kind == "cost")


async def test_replace_code_quarantines_the_bad_one_and_gives_a_new_use(store):
    shop = await make_shop(store, codes=4, unit_cost=50)
    order = await _delivered(store, shop)
    [old] = await store.order_items(order.id)
    before = await store.pool_available(shop.pool.id)
    cost_before = _costs(await store.ledger(NOW, NOW + timedelta(1)))
    await store.claim_outbox(NOW, NOW + timedelta(minutes=1), 10)  # the first delivery went out
    done = await store.replace_code(order.id, old.code.id, NOW)
    assert done is not None
    assert (done.order_id, done.old_item_no, done.new_item_no, done.old_code_id) == (order.id, 1, 2, old.code.id)
    assert done.new_code_id != old.code.id
    [new] = await store.order_items(order.id)  # only the live item is the order's code now
    assert (new.item_no, new.code.id) == (2, done.new_code_id)
    assert await store.pool_available(shop.pool.id) == before - 1
    assert _costs(await store.ledger(NOW, NOW + timedelta(1))) == cost_before - 50
    rows = await store.claim_outbox(NOW, NOW + timedelta(minutes=1), 10)
    assert [(r.id, r.kind, r.order_id) for r in rows] == [(done.outbox_id, "resend", order.id)]
    # a second call (a double press) changes nothing
    assert await store.replace_code(order.id, old.code.id, NOW) is None
    assert await store.pool_available(shop.pool.id) == before - 1
    # the quarantined code is never sold again: buy everything that is left
    rest = await _delivered(store, shop, user="u2", qty=before - 1)
    sold = {i.code.id for i in await store.order_items(rest.id)}
    assert old.code.id not in sold
    assert done.new_code_id not in sold
    assert await store.pool_available(shop.pool.id) == 0


async def test_replace_code_without_stock_changes_nothing(store):
    shop = await make_shop(store, codes=1, unit_cost=50)
    order = await _delivered(store, shop)
    [old] = await store.order_items(order.id)
    ledger = await store.ledger(NOW, NOW + timedelta(1))
    with pytest.raises(InsufficientStock):
        await store.replace_code(order.id, old.code.id, NOW)
    assert await store.order_items(order.id) == [old]
    assert await store.ledger(NOW, NOW + timedelta(1)) == ledger
    assert await store.pool_available(shop.pool.id) == 0
    # stock arrives: the same report can be served now, and the quarantine happens with it
    batch = await store.create_batch(shop.pool.id, "acme", 60, "CNY", "more")
    await store.insert_codes(batch, shop.pool.id, [fake_code()])
    done = await store.replace_code(order.id, old.code.id, NOW)
    assert done is not None
    assert _costs(await store.ledger(NOW, NOW + timedelta(1))) == -50 - 60


async def test_replace_code_of_a_multi_use_code_takes_its_unsold_uses_out_of_stock(store):
    shop = await make_shop(store, codes=2, uses=3, unit_cost=0)
    order = await _delivered(store, shop)
    [old] = await store.order_items(order.id)
    assert await store.pool_available(shop.pool.id) == 5
    done = await store.replace_code(order.id, old.code.id, NOW)
    assert done is not None
    assert done.new_code_id != old.code.id
    assert await store.pool_available(shop.pool.id) == 2  # 2 unsold uses quarantined, 1 given as the new code
    assert _costs(await store.ledger(NOW, NOW + timedelta(1))) == 0  # no zero-cost ledger lines


async def test_replace_code_only_for_delivered_orders_and_their_own_codes(store):
    shop = await make_shop(store, codes=3)
    unpaid = await store.reserve(new_order(shop.sku), NOW)
    paid = await _delivered(store, shop, user="u2")
    [item] = await store.order_items(paid.id)
    assert await store.replace_code(unpaid.id, item.code.id, NOW) is None
    assert await store.replace_code(paid.id, item.code.id + 999, NOW) is None
    assert await store.replace_code(999_999, item.code.id, NOW) is None
    assert await store.order_items(paid.id) == [item]


async def test_live_ticket_of_a_customer_by_kind(store):
    assert await store.live_ticket("console", "u1", "human") is None
    first = await store.open_ticket(NewTicket("console", "u1", "c1", "human", "hi"), NOW)
    await store.open_ticket(NewTicket("console", "u1", "c1", "refund", "money"), NOW)
    await store.open_ticket(NewTicket("console", "u2", "c2", "human", "other"), NOW)
    await store.open_ticket(NewTicket("telegram", "u1", "c1", "human", "other channel"), NOW)
    found = await store.live_ticket("console", "u1", "human")
    assert found is not None
    assert (found.id, found.last_message) == (first.id, "hi")
    await store.answer_ticket(first.id, "hello", NOW)
    assert (await store.live_ticket("console", "u1", "human")).state == "answered"
    await store.close_ticket(first.id, NOW)
    assert await store.live_ticket("console", "u1", "human") is None


async def test_concurrent_replace_of_one_code_replaces_it_once(store):
    shop = await make_shop(store, codes=5, unit_cost=50)
    order = await _delivered(store, shop)
    [old] = await store.order_items(order.id)
    before = await store.pool_available(shop.pool.id)
    results = await asyncio.gather(*(store.replace_code(order.id, old.code.id, NOW) for _ in range(6)))
    done = [r for r in results if r is not None]
    assert len(done) == 1
    assert len(await store.order_items(order.id)) == 1
    assert await store.pool_available(shop.pool.id) == before - 1
    assert _costs(await store.ledger(NOW, NOW + timedelta(1))) == -100


def _report(order, item, user="u1") -> NewTicket:
    return NewTicket("console", user, "chat-" + user, "bad_code", "", order.id, item.code.id, "en")


async def test_report_bad_code_with_auto_replace_replaces_answers_and_closes_in_one_go(store):
    shop = await make_shop(store, codes=3)
    order = await _delivered(store, shop)
    [old] = await store.order_items(order.id)
    auto = AutoReplaceRequest(OnceKey("aftersales.autoreplace", str(order.id), NOW + timedelta(days=1)),
                              "replaced: {old} -> {new}")
    done = await store.report_bad_code(_report(order, old), auto, NOW)
    assert done.outcome == "replaced"
    assert done.replaced is not None
    [new] = await store.order_items(order.id)
    assert new.code.id == done.replaced.new_code_id
    assert (done.ticket.kind, done.ticket.state, done.ticket.code_id) == ("bad_code", "closed", old.code.id)
    assert done.ticket.last_message == f"replaced: {old.code.id} -> {new.code.id}"
    assert await store.ticket_by_id(done.ticket.id) == done.ticket
    # the claim is spent: the next report of the order is an open ticket and changes nothing
    again = await store.report_bad_code(_report(order, new), auto, NOW)
    assert (again.outcome, again.replaced, again.ticket.state) == ("already_used", None, "open")
    assert await store.order_items(order.id) == [new]
    assert await store.claim_once(auto.claim.scope, auto.claim.key, auto.claim.expires_at, NOW) is False


async def test_report_bad_code_without_stock_opens_a_ticket_and_keeps_the_claim_free(store):
    shop = await make_shop(store, codes=1, uses=2, unit_cost=0)
    order = await _delivered(store, shop)
    [old] = await store.order_items(order.id)
    assert await store.pool_available(shop.pool.id) == 1  # only the bad code's own unsold use is left
    auto = AutoReplaceRequest(OnceKey("aftersales.autoreplace", str(order.id), NOW + timedelta(days=1)), "{old}")
    failed = await store.report_bad_code(_report(order, old), auto, NOW)
    assert (failed.outcome, failed.replaced, failed.ticket.state) == ("no_stock", None, "open")
    assert await store.order_items(order.id) == [old]
    assert await store.pool_available(shop.pool.id) == 1  # the quarantine was rolled back too
    # stock arrives: the same report replaces now (the failed attempt spent no claim), and the live ticket closes
    batch = await store.create_batch(shop.pool.id, "acme", 0, "CNY", "more")
    await store.insert_codes(batch, shop.pool.id, [fake_code()])
    done = await store.report_bad_code(_report(order, old), auto, NOW)
    assert done.outcome == "replaced"
    assert (done.ticket.id, done.ticket.state) == (failed.ticket.id, "closed")
    # and only once
    [new] = await store.order_items(order.id)
    await store.insert_codes(await store.create_batch(shop.pool.id, "acme", 0, "CNY", "x"), shop.pool.id,
                             [fake_code()])
    assert (await store.report_bad_code(_report(order, new), auto, NOW)).outcome == "already_used"


async def test_report_bad_code_without_auto_or_already_replaced_only_opens_the_ticket(store):
    shop = await make_shop(store, codes=3)
    order = await _delivered(store, shop)
    [old] = await store.order_items(order.id)
    plain = await store.report_bad_code(_report(order, old), None, NOW)
    assert (plain.outcome, plain.replaced, plain.ticket.state) == ("not_asked", None, "open")
    await store.replace_code(order.id, old.code.id, NOW)
    auto = AutoReplaceRequest(OnceKey("aftersales.autoreplace", str(order.id), NOW + timedelta(days=1)), "{old}")
    stale = await store.report_bad_code(_report(order, old), auto, NOW)
    assert (stale.outcome, stale.replaced) == ("nothing", None)
    assert await store.claim_once(auto.claim.scope, auto.claim.key, auto.claim.expires_at, NOW) is True


async def test_concurrent_auto_replace_reports_of_one_order_replace_once(store):
    shop = await make_shop(store, codes=5)
    order = await _delivered(store, shop)
    [old] = await store.order_items(order.id)
    auto = AutoReplaceRequest(OnceKey("aftersales.autoreplace", str(order.id), NOW + timedelta(days=1)), "{old}")
    results = await asyncio.gather(*(store.report_bad_code(_report(order, old), auto, NOW) for _ in range(5)))
    assert sorted(r.outcome for r in results).count("replaced") == 1
    assert len(await store.order_items(order.id)) == 1


async def test_replace_reported_code_picks_the_reported_code_and_closes_its_reports(store):
    shop = await make_shop(store, codes=6)
    order = await _delivered(store, shop, qty=2)
    first, second = await store.order_items(order.id)
    human = await store.open_ticket(NewTicket("console", "u1", "c", "human", "hi", order.id), NOW)
    report = await store.open_ticket(_report(order, second), NOW)
    done = await store.replace_reported_code(order.id, None, 20, NOW)
    assert done.replaced is not None
    assert (done.code_chosen, done.replaced.old_code_id, done.closed_tickets) == (True, second.code.id,
                                                                                  (report.id,))
    assert (await store.ticket_by_id(report.id)).state == "closed"
    assert (await store.ticket_by_id(human.id)).state == "open"
    # no report left and two items: which one?
    which = await store.replace_reported_code(order.id, None, 20, NOW)
    assert (which.replaced, which.code_chosen, which.item_nos) == (None, False, (1, 3))
    by_item = await store.replace_reported_code(order.id, 1, 20, NOW)
    assert by_item.replaced is not None
    assert by_item.replaced.old_code_id == first.code.id
    assert (await store.replace_reported_code(order.id, 1, 20, NOW)).code_chosen is False  # item 1 is gone


async def test_replace_reported_code_without_stock_changes_nothing(store):
    shop = await make_shop(store, codes=1)
    order = await _delivered(store, shop)
    [item] = await store.order_items(order.id)
    report = await store.open_ticket(_report(order, item), NOW)
    with pytest.raises(InsufficientStock):
        await store.replace_reported_code(order.id, None, 20, NOW)
    assert await store.order_items(order.id) == [item]
    assert (await store.ticket_by_id(report.id)).state == "open"


async def test_resend_once_queues_one_resend_per_claim(store):
    shop = await make_shop(store, codes=2)
    order = await _delivered(store, shop)
    await store.claim_outbox(NOW, NOW + timedelta(minutes=1), 10)  # the first delivery went out
    claim = OnceKey("after.resend", order.ref, NOW + timedelta(minutes=5))
    outbox_id = await store.resend_once(order.id, claim, NOW)
    assert outbox_id is not None
    assert await store.resend_once(order.id, claim, NOW + timedelta(minutes=1)) is None
    rows = await store.claim_outbox(NOW, NOW + timedelta(minutes=1), 10)
    assert [(r.id, r.kind) for r in rows] == [(outbox_id, "resend")]
    assert await store.resend_once(order.id, claim, NOW + timedelta(minutes=6)) is not None  # the pause is over


async def test_claim_reminders_claims_each_key_once(store):
    a = OnceKey("aftersales.sla", "1:0:1", NOW + timedelta(hours=1))
    b = OnceKey("aftersales.sla", "2:0:1", NOW + timedelta(hours=1))
    assert await store.claim_reminders([a], NOW) == [a]
    assert await store.claim_reminders([a, b], NOW) == [b]
    assert await store.claim_reminders([a, b], NOW) == []


async def test_save_policy_writes_the_value_and_its_audit_entry(store):
    await store.save_policy("aftersales.autoreplace", '{"x": 1}', ("console", "m1", "autoreplace", "x on 1"), NOW)
    await store.save_policy("aftersales.autoreplace", '{}', ("console", "m1", "autoreplace", "x off"), NOW)
    assert await store.kv_get("aftersales.autoreplace", NOW + timedelta(days=999)) == "{}"
    assert [e[1:] for e in await store.audit_entries(5)] == [("console", "m1", "autoreplace", "x off"),
                                                            ("console", "m1", "autoreplace", "x on 1")]
