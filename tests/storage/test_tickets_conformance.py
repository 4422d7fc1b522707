"""After-sales tickets, run against every Store backend (SQLite and PostgreSQL) via the `store` fixture."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from storage.records import NewTicket
from tests.storage.seed import NOW, make_shop, new_order


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
