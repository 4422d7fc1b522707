"""After-sales tickets and bad-code replacement on every Store backend (SQLite, PostgreSQL) via `store`."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from storage.errors import InsufficientStock
from storage.records import NewTicket, PaymentOutcome
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
