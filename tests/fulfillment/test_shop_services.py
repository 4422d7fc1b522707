"""The service verbs conversations and adapters call instead of the store (catalogue reads and SKU edits, low-stock
crossings, chargebacks, pasted imports held for confirmation, customers, audit), on a real SQLite shop."""

from __future__ import annotations

import dataclasses

import pytest

from fulfillment.audit import AuditTrail
from fulfillment.catalog import sku_options, sku_spec
from fulfillment.customers import Customers
from fulfillment.disputes import Chargebacks
from fulfillment.errors import BadQuantity, ImportRefused, UnknownOrder
from fulfillment.importer import CodeImporter
from fulfillment.orders import CheckoutRequest
from fulfillment.pending_import import PendingImports, Settled
from tests.storage.seed import make_shop


async def test_sku_edit_is_held_to_the_catalogue_bounds_and_changes_nothing_when_refused(shop):
    await make_shop(shop.store, codes=0)
    for changes in ({"max_qty": 5000}, {"min_qty": 60}, {"units": 0}, {"pool": "elsewhere"}):
        with pytest.raises(BadQuantity):
            await shop.catalog.edit_sku("game-1", changes)
    assert (await shop.catalog.find_sku("game-1")).max_qty == 50
    edited = await shop.catalog.edit_sku("game-1", {"max_qty": 7, "active": False})
    assert (edited.max_qty, edited.active) == (7, False)
    assert await shop.catalog.find_sku("game-1") == edited


def test_typed_sku_options_are_whole_numbers_of_known_fields():
    allowed = frozenset({"max", "name_en"})
    assert sku_options({"max": "12", "name_en": "x"}, allowed) == {"max_qty": 12, "name_en": "x"}
    for words in ({"max": "１２"}, {"max": "1.5"}, {"max": "-1"}, {"colour": "red"}, {"units": "2"}):
        with pytest.raises(BadQuantity):
            sku_options(words, allowed)
    with pytest.raises(BadQuantity, match="less than or equal to 1000"):
        sku_spec({"slug": "s", "product": "p", "pool": "q", "name_en": "x", "name_zh": "x", "max_qty": 5000})


async def test_low_stock_is_told_once_when_a_sale_crosses_the_mark(shop):
    seeded = await make_shop(shop.store, codes=5, vault=shop.vault)  # the pool's low-stock mark is 3
    await shop.orders.checkout(CheckoutRequest("console", "u1", "u1", seeded.sku.id, 1))
    assert await shop.catalog.low_stock_crossed(seeded.pool.id, 1) is None  # 4 left
    await shop.orders.checkout(CheckoutRequest("console", "u2", "u2", seeded.sku.id, 1))
    low = await shop.catalog.low_stock_crossed(seeded.pool.id, 1)  # 3 left: crossed now
    assert (low.pool_slug, low.available) == ("game-pool", 3)
    await shop.orders.checkout(CheckoutRequest("console", "u3", "u3", seeded.sku.id, 1))
    assert await shop.catalog.low_stock_crossed(seeded.pool.id, 1) is None  # already below: not again
    assert await shop.catalog.low_stock_crossed(10**6, 1) is None


async def test_a_chargeback_is_recorded_once_per_order(shop):
    seeded = await make_shop(shop.store, codes=5, vault=shop.vault)
    order = await shop.orders.checkout(CheckoutRequest("console", "u1", "u1", seeded.sku.id, 1))
    await shop.payments.receive(shop.providers["test"].pay(order))
    chargebacks = Chargebacks(shop.store)
    assert await chargebacks.record_chargeback(order, "telegram", "telegram") is True
    assert await chargebacks.record_chargeback(order, "telegram", "telegram") is False
    with pytest.raises(UnknownOrder):
        await chargebacks.record_chargeback(dataclasses.replace(order, id=10**6), "telegram", "telegram")


async def test_pasted_codes_are_imported_once_by_the_merchant_who_pasted_them(shop):
    seeded = await make_shop(shop.store, codes=0)
    pending = PendingImports(shop.store, shop.vault, shop.catalog, CodeImporter(shop.store, shop.vault))
    held = await pending.hold("game-pool", ["P-1", "P-2", "P-1"], "7", "acme", "m1")
    assert (held.pool.id, held.count) == (seeded.pool.id, 3)
    assert (await pending.settle(held.token, "wechat", "m2", True)).settled == Settled.EXPIRED  # not theirs
    done = await pending.settle(held.token, "wechat", "m1", True)
    assert done.settled == Settled.IMPORTED
    assert (done.stats.imported, done.stats.duplicate_in_batch) == (2, 1)
    assert (await pending.settle(held.token, "wechat", "m1", True)).settled == Settled.EXPIRED  # pressed twice
    assert await shop.store.pool_available(seeded.pool.id) == 2
    assert (await shop.store.audit_entries(1))[0][1:] == ("wechat", "m1", "import", "pasted game-pool")


async def test_cancelled_paste_imports_nothing_and_a_bad_cost_is_refused(shop):
    seeded = await make_shop(shop.store, codes=0)
    pending = PendingImports(shop.store, shop.vault, shop.catalog, CodeImporter(shop.store, shop.vault))
    held = await pending.hold("game-1", ["P-1"], "0", "", "m1")  # a SKU names its pool
    assert (await pending.settle(held.token, "wechat", "m1", False)).settled == Settled.CANCELLED
    assert (await pending.settle(held.token, "wechat", "m1", True)).settled == Settled.EXPIRED
    assert await shop.store.pool_available(seeded.pool.id) == 0
    with pytest.raises(ImportRefused):
        await pending.hold("game-pool", ["P-1"], "1.5", "", "m1")


async def test_customer_language_and_audit_detail(shop):
    customers = Customers(shop.store)
    assert await customers.language("telegram", "42") is None
    await customers.choose_language("telegram", "42", "42", "zh_CN")
    assert await customers.language("telegram", "42") == "zh_CN"
    await AuditTrail(shop.store).record("telegram", "m1", "price", "x" * 500)
    assert len((await shop.store.audit_entries(1))[0][4]) == 200
