"""Checkout verbs: bad input refused with nothing changed, expiry, cancellation, the state table."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fulfillment.catalog import parse_amount
from fulfillment.errors import BadPrice, BadQuantity, LimitReached, NoPrice, NotAllowed, OutOfStock, UnknownSku
from fulfillment.orders import (
    HOLDING,
    PAYABLE,
    REFUNDABLE,
    TRANSITIONS,
    CheckoutRequest,
    can_move,
    can_record,
    parse_quantity,
    sources_of,
)
from storage.events import EventType
from storage.records import OrderState
from tests.storage.seed import make_shop


def req(sku_id, qty, user="u1", channel="console"):
    return CheckoutRequest(channel, user, user, sku_id, qty)


async def _nothing_changed(shop, seeded, available):
    assert await shop.store.pool_available(seeded.pool.id) == available
    assert await shop.store.orders_for_user("console", "u1", 10, 0) == []


@pytest.mark.parametrize("qty", [0, -1, "abc", "1.5", "", True, 10**9, "٣"])
async def test_bad_quantities_are_refused_and_change_nothing(shop, qty):
    seeded = await make_shop(shop.store, codes=5, vault=shop.vault)
    with pytest.raises(BadQuantity):
        await shop.orders.checkout(req(seeded.sku.id, qty))
    await _nothing_changed(shop, seeded, 5)


async def test_quantity_over_max_and_over_stock(shop):
    seeded = await make_shop(shop.store, codes=5, vault=shop.vault)
    with pytest.raises(BadQuantity) as over_max:
        await shop.orders.checkout(req(seeded.sku.id, 51))
    assert over_max.value.params == {"min": 1, "max": 50}
    with pytest.raises(OutOfStock) as over_stock:
        await shop.orders.checkout(req(seeded.sku.id, 6))
    assert over_stock.value.params == {"available": 5}
    await _nothing_changed(shop, seeded, 5)


async def test_unknown_inactive_or_unpriced_sku_is_refused(shop):
    seeded = await make_shop(shop.store, codes=5, vault=shop.vault)
    with pytest.raises(UnknownSku):
        await shop.orders.checkout(req(424242, 1))
    with pytest.raises(NoPrice):
        await shop.orders.checkout(req(seeded.sku.id, 1, channel="wechat"))
    from dataclasses import replace

    await shop.store.upsert_sku(replace(seeded.sku, active=False))
    with pytest.raises(UnknownSku):
        await shop.orders.checkout(req(seeded.sku.id, 1))
    await _nothing_changed(shop, seeded, 5)


async def test_per_user_limit_counts_earlier_orders(shop):
    seeded = await make_shop(shop.store, codes=10, per_user_limit=3, vault=shop.vault)
    await shop.orders.checkout(req(seeded.sku.id, 2))
    with pytest.raises(LimitReached):
        await shop.orders.checkout(req(seeded.sku.id, 2))
    await shop.orders.checkout(req(seeded.sku.id, 1))
    assert await shop.store.pool_available(seeded.pool.id) == 7


async def test_checkout_fixes_price_and_holds_stock_until_expiry(shop):
    seeded = await make_shop(shop.store, codes=5, vault=shop.vault)
    order = await shop.orders.checkout(req(seeded.big.id, 2))
    assert (order.amount, order.currency, order.state) == (4000, "CNY", OrderState.RESERVED)
    assert await shop.store.pool_available(seeded.pool.id) == 1
    shop.orders.clock = lambda: order.expires_at + timedelta(seconds=1)
    assert await shop.orders.expire_due() == 1
    assert await shop.store.pool_available(seeded.pool.id) == 5
    with pytest.raises(NotAllowed):
        await shop.orders.check_payable(order.ref, order.amount, order.currency)


async def test_cancel_releases_stock_and_only_by_the_buyer(shop):
    seeded = await make_shop(shop.store, codes=3, vault=shop.vault)
    order = await shop.orders.checkout(req(seeded.sku.id, 2))
    from fulfillment.errors import UnknownOrder

    with pytest.raises(UnknownOrder):
        await shop.orders.cancel(order.ref, "someone-else")
    cancelled = await shop.orders.cancel(order.ref, "u1")
    assert cancelled.state == OrderState.EXPIRED
    assert await shop.store.pool_available(seeded.pool.id) == 3
    with pytest.raises(NotAllowed):
        await shop.orders.cancel(order.ref, "u1")


async def test_check_payable_refuses_wrong_amount_and_currency(shop):
    seeded = await make_shop(shop.store, codes=3, vault=shop.vault)
    order = await shop.orders.checkout(req(seeded.sku.id, 1))
    assert (await shop.orders.check_payable(order.ref, 1000, "CNY")).id == order.id
    for amount, currency in ((999, "CNY"), (1000, "XTR")):
        with pytest.raises(NotAllowed):
            await shop.orders.check_payable(order.ref, amount, currency)


@pytest.mark.parametrize("raw", ["9.99", "-1", "1e3", "abc", "", 1.5, None, True, "１２"])
def test_prices_must_be_integer_minor_units(raw):
    with pytest.raises(BadPrice):
        parse_amount(raw)


async def test_bad_price_changes_nothing(shop):
    seeded = await make_shop(shop.store, codes=0, vault=shop.vault)
    with pytest.raises(BadPrice):
        await shop.catalog.set_price(seeded.sku.slug, "console", "9.99")
    with pytest.raises(BadPrice):
        await shop.catalog.set_price(seeded.sku.slug, "telegram", "10", currency="CNY")
    prices = {p.channel: p.amount for p in await shop.store.prices(seeded.sku.id)}
    assert prices == {"console": 1000, "telegram": 50}


def test_parse_quantity_accepts_plain_numbers():
    assert parse_quantity(" 3 ") == 3
    assert parse_quantity(7) == 7


def test_state_table_has_no_exit_from_final_states_and_reaches_delivered():
    assert TRANSITIONS[OrderState.REFUNDED] == frozenset()
    assert TRANSITIONS[OrderState.REJECTED] == frozenset()
    path = ["created", "reserved", "awaiting_payment", "paid", "delivering", "delivered"]
    assert all(can_move(OrderState(a), OrderState(b)) for a, b in zip(path, path[1:], strict=False))
    assert not can_move(OrderState.DELIVERED, OrderState.PAID)


def test_state_groups_follow_the_table():
    assert frozenset(sources_of(OrderState.PAID)) == PAYABLE
    assert frozenset(sources_of(OrderState.REFUNDED)) == REFUNDABLE
    assert OrderState.FAILED in REFUNDABLE  # paid, then no stock: the money goes back
    assert HOLDING < PAYABLE
    assert all(s not in TRANSITIONS[s] for s in OrderState)  # no self-transitions: notes are not moves


def test_a_note_stays_in_its_state_and_a_move_follows_the_table():
    assert can_record(OrderState.DELIVERED, OrderState.DELIVERED, EventType.DISPUTE)
    assert not can_record(OrderState.DELIVERED, OrderState.DELIVERED, EventType.DELIVERED)
    assert not can_record(OrderState.DELIVERED, OrderState.REFUNDED, EventType.NOTE)
    assert can_record(OrderState.DELIVERED, OrderState.REFUNDED, EventType.REFUNDED)
