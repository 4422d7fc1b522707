"""The report module over real ledgers on both backends: figures equal hand-computed ledger sums (two currencies,
fees, costs, a refund, a second supplier), local-day boundaries in the display timezone, bad input refused."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from fulfillment.money_report import MoneyReports, ReportError, portrait
from storage import events
from storage.records import NewOrder
from tests.storage.seed import NOW, fake_code, make_shop, new_order, payment

REFUND = events.refunded(reason="merchant")
LATE = NOW + timedelta(hours=5)  # 17:00 UTC on the 26th = 01:00 on the 27th in Asia/Shanghai


async def seed(store):
    """A: 2 × game-1 on console, 2000 fen, fee 30, cost 2 × 40 (acme). B: 1 × game-2 on telegram, 100 XTR,
    cost 2 × 40 fen (acme). C (local 27th): 1 × game-1, 1000 fen, refunded unseen (cost reversed).
    D: 1 × other-1 on console, 1000 fen, cost 70 (beta)."""
    game = await make_shop(store, codes=10, unit_cost=40)
    other = await make_shop(store, codes=0, slug="other")
    batch = await store.create_batch(other.pool.id, "beta", 70, "CNY", "seed")
    await store.insert_codes(batch, other.pool.id, [fake_code() for _ in range(3)])
    a = await store.reserve(new_order(game.sku, qty=2, user="a"), NOW)
    b = await store.reserve(NewOrder("telegram", "b", "chat-b", game.big.id, 1, 100, "XTR", NOW + timedelta(1)), NOW)
    c = await store.reserve(new_order(game.sku, user="c"), NOW)
    d = await store.reserve(new_order(other.sku, user="d"), NOW)
    for order, amount, cur, fee, at in ((a, 2000, "CNY", 30, NOW), (b, 100, "XTR", 0, NOW), (c, 1000, "CNY", 0, LATE),
                                        (d, 1000, "CNY", 0, NOW)):
        await store.apply_payment((await store.record_payment(payment(order.ref, amount, cur, fee=fee), at))[0], at)
    assert await store.refund(c.id, REFUND, LATE)
    return game, other


def figures(report):
    return {(r.group, r.currency): (r.orders, r.revenue, r.refunds, r.cost, r.fees, r.profit) for r in report.rows}


async def test_by_sku_two_currencies(store):
    await seed(store)
    rep = await MoneyReports(store).report(date(2026, 11, 26), date(2026, 11, 28), "sku")
    assert figures(rep) == {
        ("game-1", "CNY"): (2, 3000, 1000, 80, 30, 1890),
        ("game-2", "XTR"): (1, 100, 0, 0, 0, 100),
        ("game-2", "CNY"): (0, 0, 0, 80, 0, -80),
        ("other-1", "CNY"): (1, 1000, 0, 70, 0, 930),
    }
    tot = {t.currency: (t.orders, t.revenue, t.refunds, t.cost, t.fees, t.profit) for t in rep.totals}
    assert tot == {"CNY": (3, 4000, 1000, 230, 30, 2740), "XTR": (1, 100, 0, 0, 0, 100)}
    assert rep.converted is None


async def test_by_channel_and_supplier(store):
    await seed(store)
    reports = MoneyReports(store)
    by_channel = figures(await reports.report(date(2026, 11, 26), date(2026, 11, 28), "channel"))
    assert by_channel == {("console", "CNY"): (3, 4000, 1000, 150, 30, 2820),
                          ("telegram", "XTR"): (1, 100, 0, 0, 0, 100),
                          ("telegram", "CNY"): (0, 0, 0, 80, 0, -80)}
    by_supplier = figures(await reports.report(date(2026, 11, 26), date(2026, 11, 28), "supplier"))
    assert by_supplier == {("acme", "CNY"): (2, 3000, 1000, 160, 30, 1810),
                           ("acme", "XTR"): (1, 100, 0, 0, 0, 100),
                           ("beta", "CNY"): (1, 1000, 0, 70, 0, 930)}


async def test_local_day_boundaries(store):
    await seed(store)
    reports = MoneyReports(store, "Asia/Shanghai")
    days = figures(await reports.report(date(2026, 11, 26), date(2026, 11, 28), "day"))
    assert days == {("2026-11-26", "CNY"): (2, 3000, 0, 230, 30, 2740),
                    ("2026-11-26", "XTR"): (1, 100, 0, 0, 0, 100),
                    ("2026-11-27", "CNY"): (1, 1000, 1000, 0, 0, 0)}
    only_26th = await reports.report(date(2026, 11, 26), date(2026, 11, 27), "sku")
    assert {t.currency: t.revenue for t in only_26th.totals} == {"CNY": 3000, "XTR": 100}
    utc = await MoneyReports(store, "UTC").report(date(2026, 11, 26), date(2026, 11, 27), "day")
    assert {(r.group, r.currency): r.revenue for r in utc.rows} == {("2026-11-26", "CNY"): 4000,
                                                                     ("2026-11-26", "XTR"): 100}
    month = figures(await reports.report(date(2026, 11, 1), date(2026, 12, 1), "month"))
    week = figures(await reports.report(date(2026, 11, 1), date(2026, 12, 1), "week"))
    assert month[("2026-11-01", "CNY")] == week[("2026-11-23", "CNY")] == (3, 4000, 1000, 230, 30, 2740)


async def test_converted_total_is_labelled_and_separate(store):
    await seed(store)
    rep = await MoneyReports(store).report(date(2026, 11, 26), date(2026, 11, 28), "sku", "CNY",
                                           {"XTR": Decimal("13")})
    assert rep.converted is not None
    assert (rep.converted.currency, rep.converted.revenue, rep.converted.profit) == ("CNY", 4000 + 1300, 2740 + 1300)
    assert {t.currency for t in rep.totals} == {"CNY", "XTR"}  # the per-currency totals stay
    no_rate = await MoneyReports(store).report(date(2026, 11, 26), date(2026, 11, 28), "sku", "CNY")
    assert no_rate.skipped == ["XTR"]


async def test_bad_input(store):
    await seed(store)
    reports = MoneyReports(store)
    with pytest.raises(ReportError, match="not before"):
        await reports.report(date(2026, 11, 28), date(2026, 11, 26))
    with pytest.raises(ReportError, match="unknown grouping"):
        await reports.report(date(2026, 11, 26), date(2026, 11, 28), "reseller")
    with pytest.raises(ValueError, match="unknown grouping"):
        await store.ledger_grouped(NOW, NOW, "nope")
    with pytest.raises(ReportError, match="more than"):
        await reports.report(date(2020, 1, 1), date(2026, 1, 1), "day")
    empty = await reports.report(date(2025, 1, 1), date(2025, 2, 1), "day")
    assert empty.rows == []
    assert empty.totals == []


async def test_customer_portrait(store):
    game, other = await seed(store)
    early = NOW - timedelta(days=10)
    old = await store.reserve(new_order(game.sku, user="a"), early)
    again = await store.reserve(new_order(other.sku, user="d"), NOW)
    for order, at in ((old, early), (again, NOW)):
        await store.apply_payment((await store.record_payment(payment(order.ref, 1000), at))[0], at)
    reports = MoneyReports(store)
    rep = await reports.report(date(2026, 11, 26), date(2026, 11, 28))
    p = await portrait(store, rep.since, rep.until)
    assert (p.customers, p.new, p.returning, p.repeat_bp) == (4, 3, 1, 2500)
    assert p.average_order == {"CNY": 5000 // 4, "XTR": 100}
    assert p.refund_bp == {"CNY": 2000, "XTR": 0}
    assert p.channels == {"console": 4, "telegram": 1}
    assert p.languages == {"en": 5}
    assert [(t.user_id, t.orders, t.amounts) for t in p.top] == [
        ("d", 2, {"CNY": 2000}), ("a", 1, {"CNY": 2000}), ("c", 1, {"CNY": 1000}), ("b", 1, {"XTR": 100})]
    empty = await portrait(store, NOW - timedelta(days=400), NOW - timedelta(days=399))
    assert (empty.customers, empty.repeat_bp, empty.top) == (0, 0, [])
