"""Migration 0005 on both backends: a database at version 4 with free-text event causes (and risk holds in kv) comes
out with typed events whose parameters are read by type, and the verbs work on it."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from fulfillment.orders import STATE_GROUPS
from storage.events import EventType
from storage.records import OrderState, PaymentOutcome, Price, Product
from tests.conftest import PG_DSN, drop_pg_schema, pg_schema_or_skip
from tests.storage.seed import NOW, fake_code, payment

#: (from, to, cause) as version 4 wrote them, and the typed event each must become
OLD_EVENTS = [
    (None, "created", "checkout", EventType.CHECKOUT, {}),
    ("created", "reserved", "stock held", EventType.STOCK_HELD, {}),
    ("reserved", "awaiting_payment", "invoice issued", EventType.INVOICE_ISSUED, {}),
    ("awaiting_payment", "review", "risk review: velocity_user,big_amount", EventType.RISK_REVIEW,
     {"reasons": ["velocity_user", "big_amount"]}),
    ("review", "awaiting_payment", "approved by telegram:42", EventType.REVIEW_APPROVED, {"actor": "telegram:42"}),
    ("awaiting_payment", "paid", "payment wechatpay:4200001:x", EventType.PAYMENT_RECEIVED,
     {"provider": "wechatpay", "txn": "4200001:x"}),
    ("paid", "delivering", "codes allocated", EventType.CODES_ALLOCATED, {}),
    ("delivering", "delivered", "outbox 17 sent", EventType.DELIVERED, {"outbox_id": 17}),
    ("delivered", "delivered", "dispute:telegram", EventType.DISPUTE, {"source": "telegram"}),
    ("delivered", "delivered", "something a person typed", EventType.NOTE, {"text": "something a person typed"}),
    ("delivered", "refunded", "refund by merchant 7", EventType.REFUNDED, {"reason": "refund by merchant 7"}),
]
OTHER_EVENTS = [
    (None, "created", "checkout", EventType.CHECKOUT, {}),
    ("created", "reserved", "stock held", EventType.STOCK_HELD, {}),
    ("reserved", "expired", "cancelled by customer", EventType.CANCELLED, {}),
    ("expired", "review", "payment amount or currency mismatch", EventType.PAYMENT_MISMATCH, {}),
]


class Old:
    """Raw SQL on a version-4 database of either backend."""

    def __init__(self, store, backend: str) -> None:
        self.store, self.backend = store, backend

    async def run(self, sql: str, *args: object) -> None:
        if self.backend == "postgres":
            n = iter(range(1, 100))
            await self.store.pool.execute("".join(f"${next(n)}" if c == "?" else c for c in sql), *args)
            return
        db = sqlite3.connect(self.store.path, isolation_level=None)
        db.execute(sql, args)
        db.close()

    async def value(self, sql: str, *args: object) -> object:
        if self.backend == "postgres":
            n = iter(range(1, 100))
            return await self.store.pool.fetchval("".join(f"${next(n)}" if c == "?" else c for c in sql), *args)
        db = sqlite3.connect(self.store.path, isolation_level=None)
        try:
            return db.execute(sql, args).fetchone()[0]
        finally:
            db.close()


async def _v4_shop(old: Old) -> tuple[int, int]:
    """A SKU with 3 codes written as version 4 could (today's verbs write columns later migrations add)."""
    store = old.store
    cat = await store.upsert_category("game-cat", "Games", "游戏", 0)
    product = await store.upsert_product(Product(0, cat.id, "game-100", "100 gems", "100 钻石"))
    pool = await store.upsert_pool("game-pool", "Gem codes", 3)
    await old.run("INSERT INTO skus (product_id, pool_id, slug, name_en, name_zh, units, min_qty, max_qty,"
                  " per_user_limit, active) VALUES (?,?,'game-1','1 code','1 个',1,1,50,0,?)", product.id, pool.id,
                  True if old.backend == "postgres" else 1)
    sku_id = int(await old.value("SELECT id FROM skus WHERE slug = 'game-1'"))  # type: ignore[arg-type]
    await store.set_price(Price(sku_id, "console", "CNY", 1000))
    batch = await store.create_batch(pool.id, "acme", 50, "CNY", "seed")
    await store.insert_codes(batch, pool.id, [fake_code() for _ in range(3)])
    return sku_id, pool.id


@pytest.fixture(params=["sqlite", "postgres"])
async def old_store(request, tmp_path):
    if request.param == "sqlite":
        from storage.sqlite import SqliteStore

        s = await SqliteStore(tmp_path / "old.db", states=STATE_GROUPS).open()
        yield s, "sqlite"
        await s.close()
        return
    from storage.postgres import PostgresStore

    schema = await pg_schema_or_skip()
    pg = await PostgresStore(PG_DSN, schema=schema, states=STATE_GROUPS).open()
    yield pg, "postgres"
    await pg.close()
    await drop_pg_schema(schema)


async def _order(old: Old, sku_id: int, pool_id: int, ref: str, state: str, user: str) -> int:
    from storage.sqltime import ts

    when = ts(NOW) if old.backend == "sqlite" else NOW
    expires = ts(NOW + timedelta(minutes=15)) if old.backend == "sqlite" else NOW + timedelta(minutes=15)
    await old.run("INSERT INTO orders (ref, channel, user_id, chat_id, sku_id, pool_id, quantity, units, amount,"
                  " currency, state, language, created_at, expires_at, updated_at)"
                  " VALUES (?,'console',?,?,?,?,1,1,1000,'CNY',?,'en',?,?,?)",
                  ref, user, "chat-" + user, sku_id, pool_id, state, when, expires, when)
    return int(await old.value("SELECT id FROM orders WHERE ref = ?", ref))  # type: ignore[arg-type]


async def test_version_4_causes_become_typed_events(old_store):
    store, backend = old_store
    assert await store.migrate(target=4) == 4
    old = Old(store, backend)
    sku_id, pool_id = await _v4_shop(old)
    from storage.sqltime import ts

    when = ts(NOW) if backend == "sqlite" else NOW
    later = ts(NOW + timedelta(days=3650)) if backend == "sqlite" else NOW + timedelta(days=3650)
    done = await _order(old, sku_id, pool_id, "KOLD1", "refunded", "u1")
    held = await _order(old, sku_id, pool_id, "KOLD2", "review", "u1")
    fresh = await _order(old, sku_id, pool_id, "KOLD3", "reserved", "u2")
    for order_id, rows in ((done, OLD_EVENTS), (held, OTHER_EVENTS)):
        for frm, to, cause, _, _ in rows:
            await old.run("INSERT INTO order_events (order_id, from_state, to_state, cause, at) VALUES (?,?,?,?,?)",
                          order_id, frm, to, cause, when)
    await old.run("INSERT INTO order_events (order_id, from_state, to_state, cause, at) VALUES (?,?,?,?,?)",
                  fresh, None, "created", "checkout", when)
    await old.run("INSERT INTO kv (key, value, expires_at) VALUES (?,?,?)", f"risk.review:{fresh}",
                  "new_user,night", later)

    assert await store.migrate(5) == 5

    got = [(e.from_state, e.to_state, e.type, dict(e.params)) for e in await store.order_events(done)]
    assert got == [(f, t, kind, params) for f, t, _, kind, params in OLD_EVENTS]
    assert [e.type for e in await store.order_events(held)] == [row[3] for row in OTHER_EVENTS]
    flagged = (await store.order_events(fresh))[-1]
    assert (flagged.type, list(flagged.params["reasons"])) == (EventType.RISK_FLAGGED, ["new_user", "night"])
    assert flagged.from_state == flagged.to_state == "reserved"
    assert await store.kv_get(f"risk.review:{fresh}", NOW) is None
    # the display text of the converted events is the old cause
    assert [e.cause for e in await store.order_events(done)] == [row[2] for row in OLD_EVENTS]
    # readers use the types: the dispute counts, a second one is refused; the held order is still refundable
    assert (await store.user_stats("console", "u1")).disputes == 1
    assert await store.record_dispute(done, "merchant", NOW) is False
    # the verbs run on the migrated schema (and on the latest one)
    await store.migrate()
    result = await store.receive_payment(payment("KOLD3", 1000), NOW)
    assert result.outcome == PaymentOutcome.ALLOCATED
    assert (await store.order_by_id(fresh)).state == OrderState.DELIVERING
