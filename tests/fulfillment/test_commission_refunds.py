"""Commission and refunds on a real shop of each backend: a partial refund reverses its proportional share of the
distributor's commission in its own transaction (rounded so the full refund after it reverses exactly the rest),
a refund of commission already paid out is a clawback carried and offset by later commission (payouts refused
meanwhile, statement and CSV showing it), and a refunded API order credits the client's wallet once."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.composition import build_services, build_shop
from fulfillment.aftersales import AfterSalesService
from fulfillment.api_clients import ApiKeys
from fulfillment.api_orders import ApiOrders, OrderRequest, WalletProvider
from fulfillment.distributor_statement import CSV_HEADER, statement
from fulfillment.distributors import CommissionPass, DistributorDesk, DistributorRefused, attach_commissions
from storage import events
from storage.protocols.distributors import PartRefund
from storage.records import OrderState, Price
from tests.fulfillment.conftest import settings_for
from tests.fulfillment.test_distributors import TZ, Chat, _delivered
from tests.storage.seed import make_shop


@pytest.fixture
async def dshop(store, tmp_path):
    shop = await build_shop(settings_for(tmp_path), store=store)
    shop.channels["console"] = Chat()
    seeded = await make_shop(shop.store, codes=20, unit_cost=50, vault=shop.vault)
    await shop.store.set_price(Price(seeded.sku.id, "api", "CNY", 1000))
    yield shop, seeded, DistributorDesk(shop.store, ApiKeys(shop.store, shop.vault))
    if shop.risk is not None:
        await shop.risk.close()


def _window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(hours=1), now + timedelta(hours=1)


async def _sums(store) -> dict[str, int]:
    """The shop ledger's sum per kind over the test's window (the test's orders only)."""
    out: dict[str, int] = {}
    for line in await store.ledger(*_window()):
        out[line.kind] = out.get(line.kind, 0) + line.amount
    return out


async def _lines(store, dist_id: int, order_id: int | None = None):
    return [ln for ln in await store.commission_lines(dist_id, *_window())
            if order_id is None or ln.order_id == order_id]


async def _acme(shop, desk, bp: str):
    attach_commissions(shop.store, shop.delivery)
    await desk.add("acme")
    await desk.set_commission("acme", bp)
    await build_services(shop).customers.touch("console", "c1", "c1", referrer="acme")
    return await desk.find("acme")


async def test_partial_refunds_reverse_a_proportional_share_and_the_full_refund_exactly_the_rest(dshop):
    shop, seeded, desk = dshop
    acme = await _acme(shop, desk, "333")  # 3.33 %: shares are fractions of a fen
    order = await _delivered(shop, seeded.sku, "c1", qty=3)  # 3000 → commission floor(3000 × 0.0333) = 99
    store, now = shop.store, datetime.now(UTC)
    assert await store.commission_balances(acme.id) == {"CNY": 99}
    # when 1001 of 3000 is refunded: floor(99 × 1001 / 3000) = 33 reversed, with the refund line, at once
    assert await store.refund_part(order.id, "wx:1", 1001, now) == PartRefund.RECORDED
    assert await store.commission_balances(acme.id) == {"CNY": 66}
    assert (await _sums(store))["refund"] == -1001
    # a repeated notification of the same refund changes nothing
    assert await store.refund_part(order.id, "wx:1", 1001, now) == PartRefund.ALREADY
    # 1000 more (2001 in all): floor(99 × 2001 / 3000) = 66 reversed in all, so this one is 33, not floor(33.0)
    assert await store.refund_part(order.id, "wx:2", 1000, now) == PartRefund.RECORDED
    assert await store.commission_balances(acme.id) == {"CNY": 33}
    # 1 fen more: floor(99 × 2002 / 3000) = 66 still: no line
    assert await store.refund_part(order.id, "wx:3", 1, now) == PartRefund.RECORDED
    assert [ln.amount for ln in await _lines(store, acme.id, order.id)] == [99, -33, -33]
    # more than is left, or exactly what is left (that is the full refund's), or nothing: refused, nothing changed
    before = (await _sums(store), await store.commission_balances(acme.id), await store.refunded_parts(order.id))
    assert await store.refund_part(order.id, "wx:4", 999, now) == PartRefund.TOO_BIG
    assert await store.refund_part(order.id, "wx:4", 998, now) == PartRefund.COMPLETES
    assert await store.refund_part(order.id, "wx:4", 0, now) == PartRefund.TOO_BIG
    assert await store.refund_part(order.id + 999, "wx:4", 5, now) == PartRefund.NOT_REFUNDABLE
    assert (await _sums(store), await store.commission_balances(acme.id),
            await store.refunded_parts(order.id)) == before == (before[0], {"CNY": 33}, 2002)
    assert (await store.order_by_id(order.id)).state == OrderState.DELIVERED
    # the merchant's full refund asks the provider for what is left, books it, and reverses the rest (33), all in
    # the refund's transaction: the pass finds nothing
    await AfterSalesService(store).request_refund(order.ref, "m1")
    await shop.delivery.drain()
    txn = (await store.order_payment(order.id))[1]
    assert shop.providers["test"].refunds[txn] == 998
    assert (await store.order_by_id(order.id)).state == OrderState.REFUNDED
    assert await CommissionPass(store).run_once() == 0
    assert await store.commission_balances(acme.id) == {"CNY": 0}
    assert [ln.amount for ln in await _lines(store, acme.id, order.id)] == [99, -33, -33, -33]
    sums = await _sums(store)
    assert sums["refund"] == -3000 == -sums["sale"]
    assert sums["commission"] == 0  # the shop ledger carries the same commission lines
    # a refunded order takes no partial refund any more
    assert await store.refund_part(order.id, "wx:5", 1, now) == PartRefund.NOT_REFUNDABLE


@pytest.mark.parametrize(("bp", "parts"), [("1000", (1,)), ("9999", (1, 1, 1)), ("7", (700, 1299)),
                                           ("10000", (1999,)), ("1", (1000,))])
async def test_partial_reversals_never_exceed_the_accrual_and_the_full_refund_nets_it_to_zero(dshop, bp, parts):
    shop, seeded, desk = dshop
    acme = await _acme(shop, desk, bp)
    order = await _delivered(shop, seeded.sku, "c1", qty=2)  # 2000
    accrued = 2000 * int(bp) // 10_000
    refunded = 0
    for i, part in enumerate(parts):
        assert await shop.store.refund_part(order.id, f"r{i}", part, datetime.now(UTC)) == PartRefund.RECORDED
        refunded += part
        # the reversals so far are exactly floor(accrual × refunded / amount): never more than the share
        assert await shop.store.commission_balances(acme.id) == {"CNY": accrued - accrued * refunded // 2000}
    assert await shop.store.refund(order.id, events.refunded(reason="test"), datetime.now(UTC))
    assert await shop.store.commission_balances(acme.id) == {"CNY": 0}
    assert sum(ln.amount for ln in await _lines(shop.store, acme.id, order.id) if ln.amount < 0) == -accrued
    assert (await _sums(shop.store))["refund"] == -2000


async def test_concurrent_partial_refunds_passes_and_full_refunds_reverse_exactly_the_accrual(dshop):
    shop, seeded, desk = dshop
    acme = await _acme(shop, desk, "333")
    order = await _delivered(shop, seeded.sku, "c1", qty=2)  # 2000 → 66
    store, now = shop.store, datetime.now(UTC)
    passes = [CommissionPass(store) for _ in range(3)]
    parts = await asyncio.gather(*(store.refund_part(order.id, f"r{i % 10}", 100, now) for i in range(20)),
                                 *(p.run_once() for p in passes))
    assert sorted(str(o) for o in parts[:20]) == ["already"] * 10 + ["recorded"] * 10
    assert await store.refunded_parts(order.id) == 1000
    assert await store.commission_balances(acme.id) == {"CNY": 66 - 66 * 1000 // 2000}
    done = await asyncio.gather(*(store.refund(order.id, events.refunded(reason=f"r{i}"), now) for i in range(3)),
                                *(store.refund_part(order.id, "late", 1, now) for _ in range(2)),
                                *(p.run_once() for p in passes))
    assert sorted(done[:3]) == [False, False, True]
    assert set(done[3:5]) <= {PartRefund.RECORDED, PartRefund.ALREADY, PartRefund.NOT_REFUNDABLE}
    assert await store.commission_balances(acme.id) == {"CNY": 0}
    assert sum(ln.amount for ln in await _lines(store, acme.id, order.id) if ln.amount < 0) == -66
    sums = await _sums(store)
    assert (sums["refund"], sums["commission"]) == (-2000, 0)


async def test_an_accrual_after_partial_refunds_reverses_their_share_at_once(dshop):
    shop, seeded, desk = dshop
    await desk.add("acme")  # no delivery hook: the order is accrued by a later pass (as one of another process)
    await desk.set_commission("acme", "1000")
    await build_services(shop).customers.touch("console", "c1", "c1", referrer="acme")
    acme = await desk.find("acme")
    order = await _delivered(shop, seeded.sku, "c1", qty=2)  # 2000
    assert await shop.store.refund_part(order.id, "r1", 555, datetime.now(UTC)) == PartRefund.RECORDED
    assert await shop.store.commission_balances(acme.id) == {}
    # when the pass accrues 200, the share of the 555 refunded before, floor(200 × 555 / 2000) = 55, goes with it
    assert await CommissionPass(shop.store).run_once() == 1
    assert [ln.amount for ln in await _lines(shop.store, acme.id, order.id)] == [200, -55]
    assert (await _sums(shop.store))["commission"] == -145
    assert await shop.store.refund_part(order.id, "r2", 445, datetime.now(UTC)) == PartRefund.RECORDED
    assert await shop.store.commission_balances(acme.id) == {"CNY": 100}  # 1000 of 2000 refunded: half reversed
    assert await shop.store.refund(order.id, events.refunded(reason="test"), datetime.now(UTC))
    assert await shop.store.commission_balances(acme.id) == {"CNY": 0}
    assert (await _sums(shop.store))["commission"] == 0


async def test_a_refund_after_the_payout_is_a_clawback_carried_and_offset_by_later_commission(dshop):
    shop, seeded, desk = dshop
    acme = await _acme(shop, desk, "1000")
    first = await _delivered(shop, seeded.sku, "c1", qty=2)  # commission 200
    await desk.payout("acme", "200", "bank transfer")
    with pytest.raises(DistributorRefused) as nothing:
        await desk.payout("acme", "1", "more")
    assert (nothing.value.message_id, nothing.value.params["clawback"]) == ("distributor.payout_nothing_payable", 0)
    # the customer is refunded after acme was paid: the reversal takes the payable to -200, a clawback
    await AfterSalesService(shop.store).request_refund(first.ref, "m1")
    await shop.delivery.drain()
    assert await shop.store.commission_balances(acme.id) == {"CNY": -200}
    with pytest.raises(DistributorRefused) as clawback:
        await desk.payout("acme", "50", "anything")
    assert clawback.value.message_id == "distributor.payout_nothing_payable"
    assert (clawback.value.params["payable"], clawback.value.params["clawback"]) == (-200, 200)
    # the next commission offsets it: 300 accrued, 100 payable, and no more than that is paid out
    await _delivered(shop, seeded.sku, "c1", qty=3)
    assert await shop.store.commission_balances(acme.id) == {"CNY": 100}
    with pytest.raises(DistributorRefused) as too_big:
        await desk.payout("acme", "101", "too much")
    assert (too_big.value.message_id, too_big.value.params["payable"]) == ("distributor.payout_too_big", 100)
    await desk.payout("acme", "100", "the rest")
    assert await shop.store.commission_balances(acme.id) == {"CNY": 0}
    # the statement shows the clawback and what is carried after each line; the closing equals the ledger
    st = await statement(shop.store, acme, datetime.now(ZoneInfo(TZ)).strftime("%Y-%m"), TZ)
    assert st.clawbacks() == {"CNY": 200}
    assert st.closing == await shop.store.commission_balances(acme.id) == {"CNY": 0}
    rows = list(csv.reader(io.StringIO(st.csv().decode())))
    assert tuple(rows[0]) == CSV_HEADER
    got = [(r[2], int(r[6]), int(r[8]), int(r[10]), int(r[11])) for r in rows[1:] if r[0] == "commission"]
    assert got == [("accrual", 200, 200, 0, 0), ("payout", -200, 0, 0, 0), ("reversal", -200, -200, 200, 200),
                   ("accrual", 300, 100, -200, 0), ("payout", -100, 0, 0, 0)]
    assert [(r[2], r[7], r[8], r[11]) for r in rows[1:] if r[0] == "balance"] == [
        ("opening", "CNY", "0", "0"), ("closing", "CNY", "0", "0")]


async def test_the_statement_of_a_month_that_ends_in_clawback_carries_it(dshop):
    shop, seeded, desk = dshop
    acme = await _acme(shop, desk, "1000")
    first = await _delivered(shop, seeded.sku, "c1", qty=2)
    await desk.payout("acme", "200", "paid")
    await AfterSalesService(shop.store).request_refund(first.ref, "m1")
    await shop.delivery.drain()
    st = await statement(shop.store, acme, datetime.now(ZoneInfo(TZ)).strftime("%Y-%m"), TZ)
    assert st.closing == {"CNY": -200}
    rows = list(csv.reader(io.StringIO(st.csv().decode())))
    assert [(r[2], r[8], r[11]) for r in rows[1:] if r[0] == "balance"] == [("opening", "0", "0"),
                                                                            ("closing", "-200", "200")]
    # the next month opens with it carried
    nxt = datetime.now(ZoneInfo(TZ)).replace(day=1) + timedelta(days=32)
    later = await statement(shop.store, acme, nxt.strftime("%Y-%m"), TZ)
    assert later.opening == {"CNY": -200}
    assert [(r[2], r[8], r[11]) for r in list(csv.reader(io.StringIO(later.csv().decode())))[1:]
            if r[0] == "balance"] == [("opening", "-200", "200"), ("closing", "-200", "200")]


async def test_a_refunded_api_order_credits_the_wallet_exactly_once(dshop):
    shop, seeded, desk = dshop
    shop.channels["api"] = Chat()  # as `kamibot run` wires the order API's channel and wallet provider
    shop.providers["wallet"] = WalletProvider(shop.store)
    new = await desk.create_key("shopb", ["orders:write"])
    await desk.add("acme", "shopb")
    await desk.move_wallet("acme", "+5000", "prepaid")
    view = await ApiOrders(shop.store, shop.catalog, shop.vault).place(new.client, OrderRequest("B-1",
                                                                                                seeded.sku.slug, 2))
    await shop.delivery.drain()
    order = await shop.store.order_by_ref(view.order_no)
    assert await shop.store.wallet_balances(new.client.id) == {"CNY": 3000}
    # the merchant refunds it; the provider is called again as after a crash before the refund was recorded, and
    # the refund row is drained twice
    await AfterSalesService(shop.store).request_refund(order.ref, "m1")
    await shop.delivery.drain()
    await WalletProvider(shop.store).refund(order, "again", order.amount)
    await shop.delivery.drain()
    assert (await shop.store.order_by_id(order.id)).state == OrderState.REFUNDED
    assert await shop.store.wallet_balances(new.client.id) == {"CNY": 5000}
    lines = await shop.store.wallet_lines(new.client.id, 50)
    assert [(ln.kind, ln.amount) for ln in lines] == [("refund", 2000), ("order", -2000), ("topup", 5000)]
    assert sum(ln.amount for ln in lines) == lines[0].balance_after == 5000
    sums = await _sums(shop.store)
    assert sums["refund"] == -sums["sale"] == -2000
    assert sums.get("commission", 0) == 0  # API orders are the distributor's own purchases: no commission
