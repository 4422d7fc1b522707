"""First-purchase cohorts by month in the customer portrait, on both backends: each customer of the period counts
in the local month of their first sale ever (even when it lies before the period), with their orders in the
period; the month follows the display timezone; the CLI prints them."""

from __future__ import annotations

from datetime import timedelta

from bot.report_cli import render_portrait
from fulfillment.money_report import Cohort, portrait
from tests.storage.seed import NOW, make_shop, new_order, payment
from tests.storage.test_reports_conformance import seed


async def pay(store, sku, user, at):
    order = await store.reserve(new_order(sku, user=user), at)
    await store.apply_payment((await store.record_payment(payment(order.ref, 1000), at))[0], at)


async def test_cohorts_by_first_purchase_month(store):
    game, _ = await seed(store)  # a, b, c, d: first sales on 2026-11-26/27 (Asia/Shanghai)
    await pay(store, game.sku, "a", NOW - timedelta(days=60))  # a first bought in September
    await pay(store, game.sku, "a", NOW)
    edge = NOW.replace(month=10, day=31, hour=16, minute=30)  # 2026-10-31 16:30 UTC = 11-01 00:30 in Shanghai
    await pay(store, game.sku, "e", edge)
    await pay(store, game.sku, "e", NOW)
    since, until = NOW - timedelta(hours=12), NOW + timedelta(days=2)
    p = await portrait(store, since, until, timezone="Asia/Shanghai")
    assert p.cohorts == [Cohort("2026-09", 1, 2), Cohort("2026-11", 4, 4)]
    utc = await portrait(store, since, until, timezone="UTC")
    assert utc.cohorts == [Cohort("2026-09", 1, 2), Cohort("2026-10", 1, 1), Cohort("2026-11", 3, 3)]
    assert "cohort 2026-09\t1 customers\t2 orders" in render_portrait(p, "table")
    empty = await portrait(store, NOW - timedelta(days=400), NOW - timedelta(days=399))
    assert empty.cohorts == []


async def test_a_customer_on_two_channels_is_two_customers(store):
    game = await make_shop(store, codes=5)
    await pay(store, game.sku, "x", NOW)
    order = await store.reserve(new_order(game.sku, user="x", channel="telegram"), NOW)
    await store.apply_payment((await store.record_payment(payment(order.ref, 1000), NOW))[0], NOW)
    p = await portrait(store, NOW - timedelta(hours=1), NOW + timedelta(hours=1), timezone="UTC")
    assert p.cohorts == [Cohort("2026-11", 2, 2)]
