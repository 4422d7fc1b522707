"""Vault conformance (storage/protocols/vault.py),
run against every backend (SQLite and PostgreSQL) via the `store` fixture."""

from __future__ import annotations

from storage import events
from storage.records import BatchStats, OrderState
from tests.storage.seed import fake_code, make_shop

S = OrderState
REFUND = events.refunded(reason="merchant")


async def test_insert_codes_counts_duplicates_within_batch_and_vault(store):
    shop = await make_shop(store, codes=0)
    a, b = fake_code(), fake_code(uses=3)
    batch1 = await store.create_batch(shop.pool.id, "acme", 10, "CNY", "one.txt")
    first = await store.insert_codes(batch1, shop.pool.id, [a, b, a])
    assert (first.inserted, first.duplicate_in_batch, first.duplicate_in_vault) == (2, 1, 0)
    second = await store.insert_codes(batch1, shop.pool.id, [b])  # a later chunk of the same file
    assert (second.inserted, second.duplicate_in_batch, second.duplicate_in_vault) == (0, 1, 0)
    batch2 = await store.create_batch(shop.pool.id, "acme", 10, "CNY", "two.txt")
    third = await store.insert_codes(batch2, shop.pool.id, [a, fake_code()])
    assert (third.inserted, third.duplicate_in_batch, third.duplicate_in_vault) == (1, 0, 1)
    await store.finish_batch(batch2, BatchStats(imported=1, duplicate_in_vault=1))
    assert await store.pool_available(shop.pool.id) == 1 + 3 + 1
    assert await store.count_codes() == 3


async def test_vault_key_checks_and_rekey(store):
    shop = await make_shop(store, codes=2)
    await store.register_vault_key("k1", b"check1")
    await store.register_vault_key("k1", b"other")  # first registration wins
    assert await store.vault_key_checks() == {"k1": b"check1"}
    rows = await store.codes_not_under_key("k2", 0, 10)
    assert len(rows) == 2
    moved = rows[0].__class__(rows[0].id, rows[0].digest, "k2", b"n" * 12, b"c" * 20)
    assert await store.rekey_code(rows[0].id, "k1", moved)
    assert not await store.rekey_code(rows[0].id, "k1", moved)  # already moved
    assert [r.id for r in await store.codes_not_under_key("k2", 0, 10)] == [rows[1].id]
    assert (await store.code_by_id(rows[0].id)).key_id == "k2"
    assert shop.pool.id
