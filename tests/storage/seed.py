"""Small catalogue builders for storage tests (codes with random digests; no vault needed)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fulfillment.vault import Vault
from storage.protocol import Store
from storage.records import NewCode, NewOrder, PaymentEventIn, Pool, Price, Product, Sku

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@dataclass
class Shop:
    pool: Pool
    sku: Sku
    big: Sku  # draws 2 uses per item
    product: Product


def fake_code(uses: int = 1) -> NewCode:
    return NewCode(secrets.token_bytes(32), "k1", secrets.token_bytes(12), secrets.token_bytes(24), uses)


async def make_shop(store: Store, codes: int = 10, uses: int = 1, per_user_limit: int = 0, unit_cost: int = 50,
                    slug: str = "game", vault: Vault | None = None) -> Shop:
    """A category, product, pool and two SKUs (1 and 2 uses per item); with a vault the codes are real."""
    cat = await store.upsert_category(f"{slug}-cat", "Games", "游戏", 0)
    product = await store.upsert_product(Product(0, cat.id, f"{slug}-100", "100 gems", "100 钻石",
                                                 instructions_en="Redeem in game", instructions_zh="游戏内兑换"))
    pool = await store.upsert_pool(f"{slug}-pool", "Gem codes", 3)
    sku = await store.upsert_sku(Sku(0, product.id, pool.id, f"{slug}-1", "1 code", "1 个", units=1, max_qty=50,
                                     per_user_limit=per_user_limit))
    big = await store.upsert_sku(Sku(0, product.id, pool.id, f"{slug}-2", "2-pack", "2 个装", units=2, max_qty=50))
    for s in (sku, big):
        await store.set_price(Price(s.id, "console", "CNY", 1000 * s.units))
        await store.set_price(Price(s.id, "telegram", "XTR", 50 * s.units))
    if codes:
        batch = await store.create_batch(pool.id, "acme", unit_cost, "CNY", "seed")
        rows = [vault.seal(f"CODE-{secrets.token_hex(6).upper()}", uses) if vault else fake_code(uses)
                for _ in range(codes)]
        await store.insert_codes(batch, pool.id, rows)
    return Shop(pool, sku, big, product)


def new_order(sku: Sku, qty: int = 1, user: str = "u1", channel: str = "console", amount: int | None = None,
              ttl: timedelta = timedelta(minutes=15)) -> NewOrder:
    unit_price = 1000 * sku.units
    return NewOrder(channel, user, "chat-" + user, sku.id, qty, unit_price * qty if amount is None else amount,
                    "CNY", NOW + ttl)


def payment(ref: str, amount: int, currency: str = "CNY", txn: str | None = None, fee: int = 0) -> PaymentEventIn:
    return PaymentEventIn("test", txn or secrets.token_hex(8), ref, amount, currency, fee=fee)
