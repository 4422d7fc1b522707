"""fulfillment/aftersales.py on every Store backend (SQLite, PostgreSQL): each verb's result or shop error."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fulfillment.aftersales import AfterSalesService
from fulfillment.errors import (
    AlreadyReplaced,
    BadInput,
    NoCodes,
    NoReplacementStock,
    NotAllowed,
    ReplaceWhichItem,
    UnknownOrder,
    UnknownSku,
)
from storage.records import NewTicket, PaymentOutcome
from tests.storage.seed import NOW, fake_code, make_shop, new_order, payment


def _service(store) -> AfterSalesService:
    return AfterSalesService(store, clock=lambda: NOW)


async def _delivered(store, shop, user="u1", qty=1):
    """Paid, allocated and its delivery sent (the order is delivered at NOW)."""
    order = await store.reserve(new_order(shop.sku, qty=qty, user=user), NOW)
    assert (await store.receive_payment(payment(order.ref, order.amount), NOW)).outcome == PaymentOutcome.ALLOCATED
    for row in await store.claim_outbox(NOW, NOW + timedelta(minutes=1), 10):
        await store.complete_outbox(row.id, NOW)
    return await store.order_by_id(order.id)


def _report(user="u1") -> NewTicket:
    return NewTicket("console", user, "chat-" + user, "bad_code", language="en")


async def _restock(store, shop) -> None:
    batch = await store.create_batch(shop.pool.id, "acme", 0, "CNY", "more")
    await store.insert_codes(batch, shop.pool.id, [fake_code()])


async def test_a_report_failed_for_lack_of_stock_is_auto_replaced_once_stock_arrives(store):
    shop = await make_shop(store, codes=1, uses=2, unit_cost=0)
    service = _service(store)
    await service.set_auto_replace(shop.sku.slug, 24, "console", "m1")
    order = await _delivered(store, shop)
    [old] = await store.order_items(order.id)
    failed = await service.report_bad_code(_report(), order.ref, 1, "{old}->{new}")
    assert (failed.outcome, failed.replaced, failed.ticket.state) == ("no_stock", None, "open")
    assert await store.order_items(order.id) == [old]
    await _restock(store, shop)
    done = await service.report_bad_code(_report(), order.ref, 1, "{old}->{new}")
    assert done.replaced is not None
    assert (done.outcome, done.ticket.state) == ("replaced", "closed")
    assert done.ticket.last_message == f"{old.code.id}->{done.replaced.new_code_id}"
    [new] = await store.order_items(order.id)
    await _restock(store, shop)
    again = await service.report_bad_code(_report(), order.ref, new.item_no, "{old}->{new}")
    assert (again.outcome, again.replaced) == ("already_used", None)
    assert await store.order_items(order.id) == [new]


async def test_auto_replace_only_for_marked_skus_within_the_window(store):
    shop = await make_shop(store, codes=4)
    service = _service(store)
    order = await _delivered(store, shop)
    assert (await service.report_bad_code(_report(), order.ref, 1, "")).outcome == "not_asked"
    await service.set_auto_replace(shop.sku.slug, 2, "console", "m1")
    assert await service.auto_replace_policy() == {shop.sku.slug: 2}
    late = NOW + timedelta(hours=2, minutes=1)
    assert (await service.report_bad_code(_report(), order.ref, 1, "", now=late)).outcome == "not_asked"
    assert (await service.report_bad_code(_report(), order.ref, 1, "")).outcome == "replaced"
    await service.set_auto_replace(shop.sku.slug, None, "console", "m1")
    assert await service.auto_replace_policy() == {}
    assert [e[3:] for e in await store.audit_entries(5)] == [("autoreplace", f"{shop.sku.slug} off"),
                                                            ("autoreplace", f"{shop.sku.slug} on 2")]
    with pytest.raises(UnknownSku):
        await service.set_auto_replace("nope", 24, "console", "m1")


async def test_a_report_is_refused_for_someone_elses_unpaid_or_missing_item(store):
    shop = await make_shop(store, codes=3)
    service = _service(store)
    order = await _delivered(store, shop)
    unpaid = await store.reserve(new_order(shop.sku, user="u1"), NOW)
    with pytest.raises(UnknownOrder):
        await service.report_bad_code(_report("u2"), order.ref, 1, "")
    with pytest.raises(NoCodes) as no_codes:
        await service.report_bad_code(_report(), unpaid.ref, 1, "")
    assert no_codes.value.params == {"ref": unpaid.ref}
    with pytest.raises(BadInput):
        await service.report_bad_code(_report(), order.ref, 7, "")
    assert await store.live_tickets(10) == []


async def test_merchant_replace_translates_each_refusal(store):
    shop = await make_shop(store, codes=2)
    service = _service(store)
    unpaid = await store.reserve(new_order(shop.sku, user="u2"), NOW)  # holds the other code
    order = await _delivered(store, shop)
    with pytest.raises(UnknownOrder):
        await service.replace_code("K23456789ABC", None, "m1")
    with pytest.raises(NotAllowed):
        await service.replace_code(unpaid.ref, None, "m1")
    with pytest.raises(NoReplacementStock) as no_stock:
        await service.replace_code(order.ref, None, "m1")
    assert no_stock.value.params == {"ref": order.ref}
    await _restock(store, shop)
    found, done = await service.replace_code(order.ref, None, "m1")
    assert found.id == order.id
    assert done.replaced is not None
    with pytest.raises(ReplaceWhichItem) as which:
        await service.replace_code(order.ref, 1, "m1")
    assert which.value.params == {"ref": order.ref, "items": "2"}
    assert AlreadyReplaced.message_id == "ticket.replace_nothing"


async def test_customer_resend_once_per_pause(store):
    shop = await make_shop(store, codes=2)
    order = await _delivered(store, shop)
    clock = [NOW]
    service = AfterSalesService(store, clock=lambda: clock[0])
    assert await service.customer_resend(order) is True
    clock[0] = NOW + timedelta(minutes=4)
    assert await service.customer_resend(order) is False
    clock[0] = NOW + timedelta(minutes=6)
    assert await service.customer_resend(order) is True


async def test_remind_overdue_once_per_sla_period_and_only_open_tickets(store):
    service = _service(store)
    sla = timedelta(minutes=30)
    t = await service.open_ticket(NewTicket("console", "u1", "c1", "human", "help"))
    answered = await service.open_ticket(NewTicket("console", "u2", "c2", "human", "help"))
    await store.answer_ticket(answered.id, "on it", NOW)
    assert await service.remind_overdue(sla, NOW + timedelta(minutes=29)) == []
    [due] = await service.remind_overdue(sla, NOW + timedelta(minutes=31))
    assert (due.ticket.id, due.period, due.waited) == (t.id, 1, timedelta(minutes=31))
    assert await service.remind_overdue(sla, NOW + timedelta(minutes=59)) == []
    assert [d.ticket.id for d in await service.remind_overdue(sla, NOW + timedelta(minutes=61))] == [t.id]
