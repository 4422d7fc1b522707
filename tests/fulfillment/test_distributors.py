"""Distributors on a real shop of each backend: the price list (discount, fixed prices, the cost floor and the
merchant's override) as the order API sells at it, wallet movements as ledger lines, commission accrued once per
delivered order of a referred customer and reversed once on refund, payouts, and a statement that equals the
ledger, CSV included."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.composition import build_services, build_shop
from bot.jobs import JobStatus, run_jobs
from fulfillment.api_clients import ApiKeys
from fulfillment.api_orders import ApiOrders, OrderRequest
from fulfillment.distributor_statement import CSV_HEADER, month_bounds, statement
from fulfillment.distributors import CommissionPass, DistributorDesk, DistributorRefused, attach_commissions
from fulfillment.money_report import MoneyReports
from fulfillment.orders import CheckoutRequest
from storage.records import OrderState, Price
from storage.records_supply import SkuSource, SkuSourcing, SupplierProductRow
from tests.fulfillment.conftest import settings_for
from tests.storage.seed import make_shop

TZ = "Asia/Shanghai"


class Chat:
    """A console channel that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def deliver(self, delivery) -> None:
        self.sent.append(delivery.kind)


@pytest.fixture
async def dshop(store, tmp_path):
    shop = await build_shop(settings_for(tmp_path), store=store)
    shop.channels["console"] = Chat()
    seeded = await make_shop(shop.store, codes=20, unit_cost=50, vault=shop.vault)
    for sku in (seeded.sku, seeded.big):
        await shop.store.set_price(Price(sku.id, "api", "CNY", 1000 * sku.units))
    keys = ApiKeys(shop.store, shop.vault)
    desk = DistributorDesk(shop.store, keys)
    yield shop, seeded, desk
    if shop.risk is not None:
        await shop.risk.close()


async def _delivered(shop, sku, user, qty=1):
    order = await shop.orders.checkout(CheckoutRequest("console", user, user, sku.id, qty))
    await shop.payments.receive(shop.providers["test"].pay(order))
    await shop.delivery.drain()
    order = await shop.store.order_by_id(order.id)
    assert order.state == OrderState.DELIVERED
    return order


async def test_price_list_discount_fixed_prices_and_the_cost_floor(dshop):
    shop, seeded, desk = dshop
    new = await desk.create_key("shopb", ["catalog:read", "orders:write"])
    other = await desk.create_key("plain", ["catalog:read"])
    await desk.add("acme", "shopb")
    prices = desk.prices
    channel = Price(seeded.sku.id, "api", "CNY", 1000)
    assert (await prices.price(new.client.id, seeded.sku, None, channel)).amount == 1000
    await desk.set_discount("acme", "2000")
    prices = DistributorDesk(shop.store, desk.keys).prices  # a fresh cache: the change is read at once
    assert (await prices.price(new.client.id, seeded.sku, None, channel)).amount == 800
    assert (await prices.price(other.client.id, seeded.sku, None, channel)).amount == 1000  # not a distributor
    await desk.set_discount("acme", "9999")  # 1000 × 0.01% = 0.1, far under the cost of 50 per code
    prices = DistributorDesk(shop.store, desk.keys).prices
    assert (await prices.price(new.client.id, seeded.sku, None, channel)).amount == 50
    assert (await prices.price(new.client.id, seeded.big, None, Price(seeded.big.id, "api", "CNY", 2000))
            ).amount == 100  # two uses per item
    # a fixed price under cost is refused without the override, and nothing is stored
    with pytest.raises(DistributorRefused) as refused:
        await desk.set_price("acme", seeded.sku, "30")
    assert refused.value.message_id == "distributor.below_cost"
    assert await shop.store.distributor_prices((await desk.find("acme")).id) == {}
    await desk.set_price("acme", seeded.sku, "30", override=True)
    await desk.set_price("acme", seeded.big, "700")
    prices = DistributorDesk(shop.store, desk.keys).prices
    assert (await prices.price(new.client.id, seeded.sku, None, channel)).amount == 30
    assert (await prices.price(new.client.id, seeded.big, None, channel)).amount == 700
    # a supplier source dearer than the last batch raises the floor of a fixed price without override
    await shop.store.save_sku_sourcing(SkuSourcing(seeded.big.id, sources=(SkuSource("kw", "41"),)))
    await shop.store.record_supplier_products("kw", [SupplierProductRow("kw", "41", "x", 400, "CNY", "in_stock", None)],
                                              datetime.now(UTC))
    prices = DistributorDesk(shop.store, desk.keys).prices
    assert (await prices.price(new.client.id, seeded.big, None, channel)).amount == 800
    with pytest.raises(DistributorRefused):
        await desk.set_price("acme", seeded.big, "799")


async def test_the_order_api_lists_and_sells_at_the_distributors_price(dshop):
    shop, seeded, desk = dshop
    new = await desk.create_key("shopb", ["catalog:read", "orders:write"])
    await desk.add("acme", "shopb")
    await desk.set_discount("acme", "1500")
    await desk.set_price("acme", seeded.big, "1900")
    await desk.move_wallet("acme", "+10000", "prepaid")
    api = ApiOrders(shop.store, shop.catalog, shop.vault)
    listed = {p.sku: p.price for p in await api.products(new.client)}
    assert listed == {seeded.sku.slug: 850, seeded.big.slug: 1900}
    view = await api.place(new.client, OrderRequest("B-1", seeded.sku.slug, 2))
    assert view.amount == 1700
    assert len(view.codes) == 2
    assert await shop.store.wallet_balances(new.client.id) == {"CNY": 8300}
    lines = await shop.store.wallet_lines(new.client.id, 10)
    assert [(ln.kind, ln.amount) for ln in lines] == [("order", -1700), ("topup", 10000)]


async def test_wallet_movements_are_ledger_lines_and_refusals_change_nothing(dshop):
    shop, _, desk = dshop
    await desk.add("loner")
    with pytest.raises(DistributorRefused) as no_wallet:
        await desk.move_wallet("loner", "+100", "")
    assert no_wallet.value.message_id == "distributor.no_wallet"
    new = await desk.create_key("shopb", ["orders:write"])
    await desk.add("acme", "shopb")
    await desk.move_wallet("acme", "+5000", "first top-up")
    await desk.move_wallet("acme", "-1200", "correction", "CNY")
    await desk.move_wallet("acme", "+300", "USD top-up", "USD")
    for raw, note, why in (("-9999", "too much", "distributor.wallet_short"), ("-100", " ", "distributor.note_needed"),
                           ("5000", "no sign", "distributor.bad_amount"), ("+0", "zero", "distributor.bad_amount"),
                           ("+1.5", "fraction", "distributor.bad_amount"), ("+10000000000000", "huge",
                                                                            "distributor.bad_amount")):
        with pytest.raises(DistributorRefused) as refused:
            await desk.move_wallet("acme", raw, note)
        assert refused.value.message_id == why
    with pytest.raises(DistributorRefused):
        await desk.move_wallet("nobody", "+100", "x")
    balances = await shop.store.wallet_balances(new.client.id)
    lines = await shop.store.wallet_lines(new.client.id, 50)
    assert balances == {"CNY": 3800, "USD": 300}
    for ccy, balance in balances.items():
        mine = [ln for ln in lines if ln.currency == ccy]
        assert sum(ln.amount for ln in mine) == balance
        assert mine[0].balance_after == balance  # newest first
    assert len(lines) == 3


async def test_commission_accrues_once_per_delivered_order_and_reverses_once_on_refund(dshop):
    shop, seeded, desk = dshop
    attach_commissions(shop.store, shop.delivery)
    await desk.add("acme")
    await desk.set_commission("acme", "1000")  # 10 %
    await desk.set_commission("acme", "500", seeded.big)  # 5 % on the 2-pack
    customers = build_services(shop).customers
    await customers.touch("console", "c1", "c1", referrer="acme")
    await customers.touch("console", "c2", "c2", referrer="someone-else")
    first = await _delivered(shop, seeded.sku, "c1", qty=2)  # 2000: accrued right after delivery
    acme = await desk.find("acme")
    assert await shop.store.commission_balances(acme.id) == {"CNY": 200}
    await _delivered(shop, seeded.sku, "c2")  # not acme's customer
    passes = CommissionPass(shop.store)
    assert await passes.run_once() == 0
    second = await _delivered(shop, seeded.big, "c1")  # 2000 at 5 %
    assert await passes.run_once() == 0  # already accrued by the delivery hook
    assert await shop.store.commission_balances(acme.id) == {"CNY": 300}
    # the refund reverses the first order's commission in its own transaction, exactly once, however often the
    # pass runs after it
    await build_services(shop).aftersales.request_refund(first.ref, "m1")
    await shop.delivery.drain()
    assert (await shop.store.order_by_id(first.id)).state == OrderState.REFUNDED
    assert await shop.store.commission_balances(acme.id) == {"CNY": 100}
    assert await passes.run_once() == 0
    assert await shop.store.commission_balances(acme.id) == {"CNY": 100}
    now = datetime.now(UTC)
    lines = await shop.store.commission_lines(acme.id, now - timedelta(hours=1), now + timedelta(hours=1))
    assert [(ln.kind.value, ln.order_id, ln.amount) for ln in lines] == [
        ("accrual", first.id, 200), ("accrual", second.id, 100), ("reversal", first.id, -200)]
    assert lines[0].order_ref == first.ref
    assert lines[0].order_amount == 2000
    # the shop's ledger carries the same commission lines: the money report by distributor nets them out of profit
    reports = MoneyReports(shop.store, TZ)
    day = reports.today(now)
    report = await reports.report(day - timedelta(days=1), day + timedelta(days=1), by="distributor")
    rows = {(r.group, r.currency): r for r in report.rows}
    assert set(rows) == {("acme", "CNY"), ("(direct)", "CNY")}
    acme_row = rows["acme", "CNY"]
    assert (acme_row.orders, acme_row.revenue, acme_row.commission) == (2, 4000, 100)
    assert acme_row.profit == acme_row.revenue - acme_row.refunds - acme_row.cost - acme_row.fees - 100
    assert rows["(direct)", "CNY"].commission == 0


async def test_payouts_reduce_the_payable_and_the_statement_equals_the_ledger(dshop):
    shop, seeded, desk = dshop
    await desk.add("acme")
    await desk.set_commission("acme", "1000")
    await build_services(shop).customers.touch("console", "c1", "c1", referrer="acme")
    acme = await desk.find("acme")
    passes = CommissionPass(shop.store)
    orders = [await _delivered(shop, seeded.sku, "c1", qty=q) for q in (1, 3)]
    # one accrual dated in the previous month: it is the statement's opening balance
    october = datetime(2026, 10, 15, tzinfo=UTC)
    assert await shop.store.accrue_commissions(("delivered",), ("api",), october, 1, orders[0].id) == 1
    assert await passes.run_once() == 1
    with pytest.raises(DistributorRefused) as refused:
        await desk.payout("acme", "401", "too much")
    assert refused.value.message_id == "distributor.payout_too_big"
    line = await desk.payout("acme", "250", "=bank transfer 42")
    assert line.amount == -250
    assert await shop.store.commission_balances(acme.id) == {"CNY": 150}
    period = datetime.now(ZoneInfo(TZ)).strftime("%Y-%m")
    st = await statement(shop.store, acme, period, TZ)
    assert st.opening == {"CNY": 100}
    assert st.closing == await shop.store.commission_balances(acme.id)
    assert st.total(line.kind) == {"CNY": -250}
    assert st.orders == 1
    rows = list(csv.reader(io.StringIO(st.csv().decode())))
    assert tuple(rows[0]) == CSV_HEADER
    assert [(r[0], r[2], r[3], r[6], r[8]) for r in rows[1:] if r[0] == "commission"] == [
        ("commission", "accrual", orders[1].ref, "300", "400"), ("commission", "payout", "", "-250", "150")]
    # the sales the distributor brought, from the money report (by distributor): both orders sold this month, the
    # commission booked this month
    assert [(r[2], r[6], r[7], r[9]) for r in rows[1:] if r[0] == "sales"] == [
        ("revenue", "4000", "CNY", "orders=2"), ("refunds", "0", "CNY", "orders=2"),
        ("commission", "-300", "CNY", "orders=2")]
    assert [(r.orders, r.revenue, r.commission) for r in st.sales] == [(2, 4000, 300)]
    payout = next(r for r in rows if r[2] == "payout")
    assert payout[9] == "'=bank transfer 42"  # a note a spreadsheet would run as a formula is quoted
    assert [(r[2], r[8]) for r in rows if r[0] == "balance"] == [("opening", "100"), ("closing", "150")]
    previous = await statement(shop.store, acme, "2026-10", TZ)
    assert previous.opening == {}
    assert previous.closing == {"CNY": 100}
    with pytest.raises(DistributorRefused):
        await statement(shop.store, acme, "2026-13", TZ)
    start, end = month_bounds("2026-11", TZ)
    assert (start.isoformat(), end.isoformat()) == ("2026-10-31T16:00:00+00:00", "2026-11-30T16:00:00+00:00")


async def test_concurrent_passes_accrue_once_and_concurrent_payouts_never_overdraw(dshop):
    shop, seeded, desk = dshop
    await desk.add("acme")
    await desk.set_commission("acme", "1000")
    await build_services(shop).customers.touch("console", "c1", "c1", referrer="acme")
    orders = [await _delivered(shop, seeded.sku, "c1", qty=q) for q in (1, 2, 3)]
    passes = [CommissionPass(shop.store) for _ in range(4)]
    written = await asyncio.gather(*(p.run_once() for p in passes),
                                   *(p.after_delivery(o.id, o.channel) for p in passes for o in orders))
    assert sum(written) == 3
    acme = await desk.find("acme")
    assert await shop.store.commission_balances(acme.id) == {"CNY": 600}
    outcomes = await asyncio.gather(*(desk.payout("acme", "400", f"try {i}") for i in range(4)),
                                    return_exceptions=True)
    assert sum(1 for o in outcomes if not isinstance(o, Exception)) == 1
    assert all(isinstance(o, DistributorRefused) for o in outcomes if isinstance(o, Exception))
    assert await shop.store.commission_balances(acme.id) == {"CNY": 200}


async def test_the_delivery_hook_keeps_the_earlier_observer_and_the_job_reverses_refunds(dshop):
    shop, seeded, desk = dshop
    seen = []

    async def observer(delivery, done_at) -> None:  # the metrics observer of `kamibot run`
        seen.append(delivery.order.id)

    shop.delivery.on_delivered = observer
    name, every, tick = attach_commissions(shop.store, shop.delivery)
    assert (name, every) == ("commissions", 30.0)
    await desk.add("acme")
    await desk.set_commission("acme", "1000")
    await build_services(shop).customers.touch("console", "c1", "c1", referrer="acme")
    order = await _delivered(shop, seeded.sku, "c1")
    acme = await desk.find("acme")
    assert seen == [order.id]
    assert await shop.store.commission_balances(acme.id) == {"CNY": 100}
    await build_services(shop).aftersales.request_refund(order.ref, "m1")
    await shop.delivery.drain()
    stop, status = asyncio.Event(), JobStatus()
    task = asyncio.create_task(run_jobs(shop, stop, status, extra=[(name, every, tick)]))
    try:
        for _ in range(200):
            if await shop.store.commission_balances(acme.id) == {"CNY": 0}:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    assert await shop.store.commission_balances(acme.id) == {"CNY": 0}
    assert status.failures.get("commissions", 0) == 0


async def test_a_rate_never_applies_to_orders_delivered_before_it_or_placed_before_the_distributor(dshop):
    shop, seeded, desk = dshop
    attach_commissions(shop.store, shop.delivery)
    customers = build_services(shop).customers
    await customers.touch("console", "c1", "c1", referrer="acme")  # came through ref_acme before acme existed
    early = await _delivered(shop, seeded.sku, "c1")
    await desk.add("acme")
    unpaid = await _delivered(shop, seeded.sku, "c1")  # acme has no rate yet: a line of 0 pins it
    await desk.set_commission("acme", "1000")
    paid = await _delivered(shop, seeded.sku, "c1", qty=2)
    passes = CommissionPass(shop.store)
    assert await passes.run_once() == 0
    acme = await desk.find("acme")
    assert await shop.store.commission_balances(acme.id) == {"CNY": 200}
    now = datetime.now(UTC)
    lines = await shop.store.commission_lines(acme.id, now - timedelta(hours=1), now + timedelta(hours=1))
    assert [(ln.order_id, ln.amount) for ln in lines] == [(unpaid.id, 0), (paid.id, 200)]
    assert early.id not in {ln.order_id for ln in lines}
    # refunding the order of 0 writes no reversal; the statement shows only lines that move money
    await build_services(shop).aftersales.request_refund(unpaid.ref, "m1")
    await shop.delivery.drain()
    assert await passes.run_once() == 0
    st = await statement(shop.store, acme, datetime.now(ZoneInfo(TZ)).strftime("%Y-%m"), TZ)
    assert [(ln.order_id, ln.amount) for ln in st.lines] == [(paid.id, 200)]
    assert st.orders == 1
