"""Property: over random sequences of sales (two currencies, three channels, SKUs of two suppliers with their batch
costs), payment fees, full refunds (the shop's verb, which reverses the cost), partial refunds and distributor
commissions, every report's totals equal the ledger's own sums per kind and currency, whatever the grouping (SKU,
channel, supplier, day), and profit = revenue − refunds − cost − fees − commission to the unit — the net of every
ledger line — on both backends.

Sales, fees, costs and full refunds go through the store's verbs; partial refunds and commissions have no verb
yet, so they are booked as ledger lines the way the payment code books a refund line. Hypothesis runs in a worker
thread and hands each example to the test's event loop (the store lives there); every example writes into its own
day, so one shop serves all of them."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fulfillment.money_report import COMMISSION, MoneyReports
from storage import events
from storage.records import NewOrder
from storage.sqltime import ts
from tests.storage.seed import fake_code, make_shop, payment

START = datetime(2026, 1, 1, tzinfo=UTC)
REFUND = events.refunded(reason="merchant")
CHANNELS = ("console", "telegram", "wechat")
KINDS = ("sale", "refund", "cost", "cost_reversal", "fee", COMMISSION)


@dataclass(frozen=True)
class Sale:
    sku: int  # index into the shop's SKUs
    quantity: int
    channel: str
    currency: str
    amount: int
    fee: int
    hour: int
    refund: str  # none | full | partial
    partial: int  # per mille of the amount refunded when partial
    commission: int  # per mille of the amount


sales = st.builds(Sale, sku=st.integers(0, 2), quantity=st.integers(1, 3), channel=st.sampled_from(CHANNELS),
                  currency=st.sampled_from(("CNY", "XTR")), amount=st.integers(1, 200_000),
                  fee=st.integers(0, 500), hour=st.integers(0, 23),
                  refund=st.sampled_from(("none", "none", "full", "partial")), partial=st.integers(1, 999),
                  commission=st.integers(0, 300))


async def book(store, order_id: int, sku_id: int, channel: str, kind: str, currency: str, amount: int,
               at: datetime) -> None:
    """One ledger line, as fulfillment books a refund line (no store verb for partial refunds or commissions)."""
    if hasattr(store, "pool"):
        await store.pool.execute("INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
                                 " VALUES ($1, $2, $3, $4, $5, $6, $7)", order_id, sku_id, channel, kind, currency,
                                 amount, at)
        return

    def insert(db):
        db.execute("INSERT INTO ledger (order_id, sku_id, channel, kind, currency, amount, at)"
                   " VALUES (?,?,?,?,?,?,?)", (order_id, sku_id, channel, kind, currency, amount, ts(at)))

    await store._tx(insert)


async def play(store, skus, day: datetime, plan: list[Sale]) -> None:
    for n, s in enumerate(plan):
        sku = skus[s.sku]
        at = day + timedelta(hours=s.hour, seconds=n)
        order = await store.reserve(NewOrder(s.channel, f"u{n % 3}", f"c{n}", sku.id, s.quantity, s.amount,
                                             s.currency, at + timedelta(minutes=15)), at)
        fee = min(s.fee, s.amount)
        applied = (await store.record_payment(payment(order.ref, s.amount, s.currency, fee=fee), at))[0]
        await store.apply_payment(applied, at)
        if s.refund == "full":
            assert await store.refund(order.id, REFUND, at + timedelta(seconds=1))
        elif s.refund == "partial":
            await book(store, order.id, sku.id, s.channel, "refund", s.currency, -(s.amount * s.partial // 1000), at)
        if s.commission:
            await book(store, order.id, sku.id, s.channel, COMMISSION, s.currency, -(s.amount * s.commission // 1000),
                       at)


async def check(store, day: datetime, plan: list[Sale]) -> None:
    ledger: dict[tuple[str, str], int] = defaultdict(int)
    for line in await store.ledger(day, day + timedelta(days=1)):
        assert line.kind in KINDS
        ledger[(line.kind, line.currency)] += line.amount
    currencies = {c for _, c in ledger}  # a sale's currency, and the batches' cost currency (CNY)
    expect = {c: {"revenue": ledger[("sale", c)], "refunds": -ledger[("refund", c)],
                  "cost": -ledger[("cost", c)] - ledger[("cost_reversal", c)], "fees": -ledger[("fee", c)],
                  "commission": -ledger[(COMMISSION, c)], "net": sum(v for (_, cur), v in ledger.items() if cur == c)}
              for c in currencies}
    # what the plan itself booked, independent of the store's sums
    for c in currencies:
        mine = [s for s in plan if s.currency == c]
        assert expect[c]["revenue"] == sum(s.amount for s in mine)
        assert expect[c]["fees"] == sum(min(s.fee, s.amount) for s in mine)
        assert expect[c]["commission"] == sum(s.amount * s.commission // 1000 for s in mine)
        assert expect[c]["refunds"] == sum(s.amount if s.refund == "full" else s.amount * s.partial // 1000
                                           for s in mine if s.refund != "none")
    reports = MoneyReports(store, "UTC")
    first = day.date()
    for by in ("sku", "channel", "supplier", "day"):
        rep = await reports.report(first, first + timedelta(days=1), by)
        for r in [*rep.rows, *rep.totals]:
            assert r.profit == r.revenue - r.refunds - r.cost - r.fees - r.commission
        got = {t.currency: t for t in rep.totals}
        assert set(got) == currencies
        for c in currencies:
            t = got[c]
            assert (t.revenue, t.refunds, t.cost, t.fees, t.commission) == tuple(
                expect[c][k] for k in ("revenue", "refunds", "cost", "fees", "commission")), by
            assert t.profit == expect[c]["net"], by  # profit is the net of every ledger line, to the unit
            assert t.orders == sum(1 for s in plan if s.currency == c), by


async def test_report_totals_equal_the_ledger_sums(store):
    game = await make_shop(store, codes=0)
    other = await make_shop(store, codes=0, slug="other")
    for shop, supplier, cost, n in ((game, "acme", 40, 600), (other, "beta", 70, 300)):
        batch = await store.create_batch(shop.pool.id, supplier, cost, "CNY", "seed")
        await store.insert_codes(batch, shop.pool.id, [fake_code() for _ in range(n)])
    skus = [game.sku, game.big, other.sku]
    loop = asyncio.get_running_loop()
    days = itertools.count()

    @settings(max_examples=15, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(plan=st.lists(sales, min_size=1, max_size=5))
    def prop(plan: list[Sale]) -> None:
        day = START + timedelta(days=next(days))

        async def run() -> None:
            await play(store, skus, day, plan)
            await check(store, day, plan)

        asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=60)

    await asyncio.to_thread(prop)
