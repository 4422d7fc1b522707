"""Catalogue and schema conformance (storage/protocols/catalog.py, schema.py),
run against every backend (SQLite and PostgreSQL) via the `store` fixture."""

from __future__ import annotations

from storage import events
from storage.records import OrderState, Price
from tests.storage.seed import make_shop

S = OrderState
REFUND = events.refunded(reason="merchant")


async def test_migrate_is_idempotent_and_records_version(store):
    first = await store.schema_version()
    again = await store.migrate()
    assert first >= 1
    assert again == first


async def test_catalogue_round_trip_and_prices(store):
    shop = await make_shop(store, codes=0)
    assert [c.slug for c in await store.categories()] == ["game-cat"]
    assert (await store.sku_by_slug("game-2")).units == 2
    assert (await store.product_by_id(shop.product.id)).name_zh == "100 钻石"
    await store.set_price(Price(shop.sku.id, "console", "CNY", 1234))
    prices = {p.channel: (p.currency, p.amount) for p in await store.prices(shop.sku.id)}
    assert prices == {"console": ("CNY", 1234), "telegram": ("XTR", 50)}
