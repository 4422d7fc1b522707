"""PostgreSQL catalogue: categories, products, pools, SKUs, prices and stock levels (a mixin of PostgresStore)."""

from __future__ import annotations

import asyncpg

from storage.postgres_base import PostgresBase
from storage.records import (
    Category,
    Pool,
    Price,
    Product,
    Sku,
    StockLevel,
)

_PRODUCT = ("SELECT id, category_id, slug, name_en, name_zh, description_en, description_zh, instructions_en,"
            " instructions_zh, active FROM products")
_SKU = ("SELECT id, product_id, pool_id, slug, name_en, name_zh, units, min_qty, max_qty, per_user_limit, active,"
        " target_rule FROM skus")


class PgCatalog(PostgresBase):
    """Catalogue verbs of PostgresStore (mixed in)."""

    async def upsert_category(self, slug: str, name_en: str, name_zh: str, sort: int) -> Category:
        r = await self.pool.fetchrow(
            "INSERT INTO categories (slug, name_en, name_zh, sort) VALUES ($1,$2,$3,$4) ON CONFLICT (slug) DO UPDATE"
            " SET name_en = excluded.name_en, name_zh = excluded.name_zh, sort = excluded.sort"
            " RETURNING id, slug, name_en, name_zh, sort", slug, name_en, name_zh, sort)
        assert r is not None
        return Category(r[0], r[1], r[2], r[3], r[4])

    async def upsert_product(self, p: Product) -> Product:
        pid = await self.pool.fetchval(
            "INSERT INTO products (category_id, slug, name_en, name_zh, description_en, description_zh,"
            " instructions_en, instructions_zh, active) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (slug) DO"
            " UPDATE SET category_id = excluded.category_id, name_en = excluded.name_en, name_zh = excluded.name_zh,"
            " description_en = excluded.description_en, description_zh = excluded.description_zh,"
            " instructions_en = excluded.instructions_en, instructions_zh = excluded.instructions_zh,"
            " active = excluded.active RETURNING id", p.category_id, p.slug, p.name_en, p.name_zh,
            p.description_en, p.description_zh, p.instructions_en, p.instructions_zh, p.active)
        found = await self.product_by_id(pid)
        assert found is not None
        return found

    async def upsert_pool(self, slug: str, name: str, low_stock: int) -> Pool:
        r = await self.pool.fetchrow(
            "INSERT INTO pools (slug, name, low_stock) VALUES ($1,$2,$3) ON CONFLICT (slug) DO UPDATE"
            " SET name = excluded.name, low_stock = excluded.low_stock RETURNING id, slug, name, low_stock",
            slug, name, low_stock)
        assert r is not None
        return Pool(r[0], r[1], r[2], r[3])

    async def upsert_sku(self, s: Sku) -> Sku:
        sid = await self.pool.fetchval(
            "INSERT INTO skus (product_id, pool_id, slug, name_en, name_zh, units, min_qty, max_qty, per_user_limit,"
            " active, target_rule) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT (slug) DO UPDATE SET"
            " product_id = excluded.product_id, pool_id = excluded.pool_id, name_en = excluded.name_en,"
            " name_zh = excluded.name_zh, units = excluded.units, min_qty = excluded.min_qty,"
            " max_qty = excluded.max_qty, per_user_limit = excluded.per_user_limit, active = excluded.active,"
            " target_rule = excluded.target_rule"
            " RETURNING id", s.product_id, s.pool_id, s.slug, s.name_en, s.name_zh, s.units, s.min_qty, s.max_qty,
            s.per_user_limit, s.active, s.target_rule)
        found = await self.sku_by_id(sid)
        assert found is not None
        return found

    async def set_price(self, p: Price) -> None:
        await self.pool.execute(
            "INSERT INTO prices (sku_id, channel, currency, amount) VALUES ($1,$2,$3,$4) ON CONFLICT (sku_id, channel)"
            " DO UPDATE SET currency = excluded.currency, amount = excluded.amount",
            p.sku_id, p.channel, p.currency, p.amount)

    async def categories(self) -> list[Category]:
        rows = await self.pool.fetch("SELECT id, slug, name_en, name_zh, sort FROM categories ORDER BY sort, id")
        return [Category(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    @staticmethod
    def _product(r: asyncpg.Record) -> Product:
        return Product(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9])

    @staticmethod
    def _sku(r: asyncpg.Record) -> Sku:
        return Sku(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11])

    async def products(self, category_id: int | None = None) -> list[Product]:
        if category_id is None:
            rows = await self.pool.fetch(_PRODUCT + " ORDER BY id")
        else:
            rows = await self.pool.fetch(_PRODUCT + " WHERE category_id = $1 ORDER BY id", category_id)
        return [self._product(r) for r in rows]

    async def product_by_id(self, product_id: int) -> Product | None:
        r = await self.pool.fetchrow(_PRODUCT + " WHERE id = $1", product_id)
        return self._product(r) if r else None

    async def skus(self, product_id: int | None = None) -> list[Sku]:
        if product_id is None:
            rows = await self.pool.fetch(_SKU + " ORDER BY id")
        else:
            rows = await self.pool.fetch(_SKU + " WHERE product_id = $1 ORDER BY id", product_id)
        return [self._sku(r) for r in rows]

    async def sku_by_id(self, sku_id: int) -> Sku | None:
        r = await self.pool.fetchrow(_SKU + " WHERE id = $1", sku_id)
        return self._sku(r) if r else None

    async def sku_by_slug(self, slug: str) -> Sku | None:
        r = await self.pool.fetchrow(_SKU + " WHERE slug = $1", slug)
        return self._sku(r) if r else None

    async def pools(self) -> list[Pool]:
        rows = await self.pool.fetch("SELECT id, slug, name, low_stock FROM pools ORDER BY id")
        return [Pool(r[0], r[1], r[2], r[3]) for r in rows]

    async def pool_by_slug(self, slug: str) -> Pool | None:
        r = await self.pool.fetchrow("SELECT id, slug, name, low_stock FROM pools WHERE slug = $1", slug)
        return Pool(r[0], r[1], r[2], r[3]) if r else None

    async def prices(self, sku_id: int) -> list[Price]:
        rows = await self.pool.fetch(
            "SELECT sku_id, channel, currency, amount FROM prices WHERE sku_id = $1 ORDER BY channel COLLATE \"C\"",
            sku_id)
        return [Price(r[0], r[1], r[2], r[3]) for r in rows]

    async def stock_levels(self) -> list[StockLevel]:
        rows = await self.pool.fetch(
            "SELECT p.id, p.slug, p.available, COALESCE((SELECT SUM(o.quantity * o.units) FROM orders o"
            " WHERE o.pool_id = p.id AND o.state = ANY ($1::text[])), 0), p.low_stock"
            " FROM pools p ORDER BY p.id", self._holding)
        return [StockLevel(r[0], r[1], r[2], int(r[3]), r[4]) for r in rows]

    async def pool_available(self, pool_id: int) -> int:
        value = await self.pool.fetchval("SELECT available FROM pools WHERE id = $1", pool_id)
        return int(value or 0)
