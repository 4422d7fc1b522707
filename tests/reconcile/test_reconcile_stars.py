"""Telegram Stars reconciliation over the fake Bot API's getStarTransactions (paged, limit 1-100): planted
mismatches among more than a page of transactions are found, exactly those; malformed lists and API failures
change nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.reconcile_cli import HttpBotApi
from fulfillment.reconcile import Kind, ReconcileError, Reconciliation
from fulfillment.reconcile_stars import StarTransactions
from storage import events
from storage.records import NewOrder, PaymentEventIn
from tests.reconcile.conftest import tomorrow
from tests.storage.seed import make_shop

K = Kind


@pytest.fixture
async def recon(store, fake) -> AsyncIterator[Reconciliation]:
    api = HttpBotApi(fake.base_url, fake.token)
    r = Reconciliation(store, "Asia/Shanghai", clock=tomorrow)
    r.add("telegram", StarTransactions(store, api).collect)
    yield r
    await api.aclose()


def _today() -> str:
    return datetime.now(UTC).astimezone(Reconciliation(None, "Asia/Shanghai").zone).date()  # type: ignore[arg-type]


async def _order(store, sku, user: int, amount: int = 50):
    return await store.reserve(NewOrder("telegram", str(user), str(user), sku.id, 1, amount, "XTR",
                                        datetime.now(UTC) + timedelta(minutes=15)), datetime.now(UTC))


async def _shop_pays(store, order, charge: str, amount: int = 50) -> None:
    await store.receive_payment(PaymentEventIn("telegram", charge, order.ref, amount, "XTR"), datetime.now(UTC))


async def _ledger(store):
    now = datetime.now(UTC)
    return sorted((x.kind, x.amount, x.orders) for x in await store.ledger(now - timedelta(days=3),
                                                                           now + timedelta(days=3)))


async def test_planted_mismatches_over_several_pages_are_found_exactly(store, fake, recon):
    shop = await make_shop(store, codes=20)
    # more than a page of transactions that are not the shop's: withdrawals and paid media
    for i in range(105):
        fake.star_transactions.append({"id": f"w{i}", "amount": 10, "date": int(time.time()),
                                       "receiver": {"type": "fragment"} if i % 2 else
                                       {"type": "user", "transaction_type": "paid_media_payment", "user": {"id": 1}}})
    orders = {name: await _order(store, shop.sku, 100 + i) for i, name in enumerate(
        ("a", "b", "refunded", "changed", "their_refund", "our_refund", "lonely"))}
    for name in ("a", "b", "refunded", "their_refund", "our_refund"):
        fake.successful_payment(100, orders[name].ref, 50, f"ch-{name}", lost=True)
        await _shop_pays(store, orders[name], f"ch-{name}")
    fake.successful_payment(100, orders["changed"].ref, 45, "ch-changed", lost=True)
    await _shop_pays(store, orders["changed"], "ch-changed", 50)
    await _shop_pays(store, orders["lonely"], "ch-lonely")  # Telegram never listed it
    fake.successful_payment(100, "NOT-OURS", 70, "ch-stranger", lost=True)  # a charge the shop does not know
    fake.successful_payment(100, "OLD", 70, "ch-old", lost=True, age_s=3 * 86400)  # another day: not this one
    fake.chargeback("ch-refunded")
    await store.refund(orders["refunded"].id, events.refunded(reason="merchant"), datetime.now(UTC))
    fake.chargeback("ch-their_refund")
    await store.refund(orders["our_refund"].id, events.refunded(reason="merchant"), datetime.now(UTC))
    before = await _ledger(store)

    outcome = await recon.run("telegram", _today(), "console", "m1")

    assert {(d.kind, d.reference) for d in outcome.new} == {
        (K.AMOUNT_MISMATCH, "ch-changed"), (K.MISSING_AT_PROVIDER, "ch-lonely"), (K.MISSING_IN_SHOP, "ch-stranger"),
        (K.REFUND_MISMATCH, "ch-their_refund"), (K.REFUND_MISMATCH, "ch-our_refund")}
    found = {d.reference: d for d in outcome.new}
    assert (found["ch-changed"].expected, found["ch-changed"].actual) == (50, 45)
    assert (found["ch-their_refund"].expected, found["ch-their_refund"].actual) == (0, 50)
    assert (found["ch-our_refund"].expected, found["ch-our_refund"].actual) == (50, 0)
    assert "does not know" in found["ch-stranger"].detail  # the unknown charge, said plainly
    assert await _ledger(store) == before  # reconciliation only reports: the ledger is untouched
    pages = [p for m, p in fake.calls if m == "getStarTransactions"]
    assert [(int(p["offset"]), int(p["limit"])) for p in pages] == [(0, 100), (100, 100)]
    assert (await recon.run("telegram", _today(), "console", "m1")).new == ()


async def test_bad_transaction_lists_and_failures_change_nothing(store, fake, recon):
    fake.successful_payment(100, "NOT-OURS", 70, "ch-stranger", lost=True)
    fake.fail_next("getStarTransactions", 500, "Internal Server Error")
    with pytest.raises(ReconcileError) as failed:
        await recon.run("telegram", _today(), "console", "m1")
    assert failed.value.message_id == "reconcile.provider_failed"
    fake.star_transactions.append({"id": "ch-bad", "amount": "lots", "date": int(time.time()),
                                   "source": {"type": "user", "user": {"id": 1}, "invoice_payload": "X"}})
    with pytest.raises(ReconcileError) as refused:
        await recon.run("telegram", _today(), "console", "m1")
    assert refused.value.message_id == "reconcile.bad_transactions"
    assert await store.discrepancies(True, 10) == []
    with pytest.raises(ReconcileError) as future:
        await recon.run("telegram", _today() + timedelta(days=1), "console", "m1")
    assert future.value.message_id == "reconcile.future_date"
    fake.star_transactions.clear()
    empty = await recon.run("telegram", _today() - timedelta(days=2), "console", "m1")
    assert (empty.checked, empty.found) == (0, 0)


async def test_the_fake_refuses_a_limit_outside_1_to_100(fake):
    api = HttpBotApi(fake.base_url, fake.token)
    try:
        for bad in (0, 101):
            with pytest.raises(RuntimeError, match="400"):
                await api.call("getStarTransactions", offset=0, limit=bad)
        assert await api.call("getStarTransactions", offset=0, limit=1) == {"transactions": []}
    finally:
        await api.aclose()
