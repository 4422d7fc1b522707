"""SQLite catalogue: categories, products, pools, SKUs, prices and stock levels (a mixin of SqliteStore)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from storage import sqlite_orders as tx
from storage.records import (
    Category,
    Pool,
    Price,
    Product,
    Sku,
    StockLevel,
)
from storage.sqlite_base import SqliteBase


def _product(r: Sequence[Any]) -> Product:
    return Product(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]))


def _sku(r: Sequence[Any]) -> Sku:
    return Sku(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], bool(r[10]), r[11])


class Catalog(SqliteBase):
    """Catalogue verbs of SqliteStore (mixed in)."""

    async def upsert_category(self, slug: str, name_en: str, name_zh: str, sort: int) -> Category:
        row = await self._tx(lambda db: db.execute(
            "INSERT INTO categories (slug, name_en, name_zh, sort) VALUES (?,?,?,?) ON CONFLICT (slug)"
            " DO UPDATE SET name_en = excluded.name_en, name_zh = excluded.name_zh, sort = excluded.sort"
            " RETURNING id, slug, name_en, name_zh, sort", (slug, name_en, name_zh, sort)).fetchone())
        return Category(*row)

    async def upsert_product(self, p: Product) -> Product:
        row = await self._tx(lambda db: db.execute(
            "INSERT INTO products (category_id, slug, name_en, name_zh, description_en, description_zh,"
            " instructions_en, instructions_zh, active) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (slug) DO UPDATE"
            " SET category_id = excluded.category_id, name_en = excluded.name_en, name_zh = excluded.name_zh,"
            " description_en = excluded.description_en, description_zh = excluded.description_zh,"
            " instructions_en = excluded.instructions_en, instructions_zh = excluded.instructions_zh,"
            " active = excluded.active RETURNING id",
            (p.category_id, p.slug, p.name_en, p.name_zh, p.description_en, p.description_zh,
             p.instructions_en, p.instructions_zh, int(p.active))).fetchone())
        found = await self.product_by_id(int(row[0]))
        assert found is not None
        return found

    async def upsert_pool(self, slug: str, name: str, low_stock: int) -> Pool:
        row = await self._tx(lambda db: db.execute(
            "INSERT INTO pools (slug, name, low_stock) VALUES (?,?,?) ON CONFLICT (slug) DO UPDATE"
            " SET name = excluded.name, low_stock = excluded.low_stock RETURNING id, slug, name, low_stock",
            (slug, name, low_stock)).fetchone())
        return Pool(*row)

    async def upsert_sku(self, s: Sku) -> Sku:
        row = await self._tx(lambda db: db.execute(
            "INSERT INTO skus (product_id, pool_id, slug, name_en, name_zh, units, min_qty, max_qty,"
            " per_user_limit, active, target_rule) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (slug) DO UPDATE SET"
            " product_id = excluded.product_id, pool_id = excluded.pool_id, name_en = excluded.name_en,"
            " name_zh = excluded.name_zh, units = excluded.units, min_qty = excluded.min_qty,"
            " max_qty = excluded.max_qty, per_user_limit = excluded.per_user_limit, active = excluded.active,"
            " target_rule = excluded.target_rule"
            " RETURNING id", (s.product_id, s.pool_id, s.slug, s.name_en, s.name_zh, s.units, s.min_qty,
                              s.max_qty, s.per_user_limit, int(s.active), s.target_rule)).fetchone())
        found = await self.sku_by_id(int(row[0]))
        assert found is not None
        return found

    async def set_price(self, p: Price) -> None:
        await self._tx(lambda db: db.execute(
            "INSERT INTO prices (sku_id, channel, currency, amount) VALUES (?,?,?,?) ON CONFLICT"
            " (sku_id, channel) DO UPDATE SET currency = excluded.currency, amount = excluded.amount",
            (p.sku_id, p.channel, p.currency, p.amount)))

    async def categories(self) -> list[Category]:
        return [Category(*r) for r in await self._all(
            "SELECT id, slug, name_en, name_zh, sort FROM categories ORDER BY sort, id")]

    _PRODUCT = ("SELECT id, category_id, slug, name_en, name_zh, description_en, description_zh,"
                " instructions_en, instructions_zh, active FROM products")
    _SKU = ("SELECT id, product_id, pool_id, slug, name_en, name_zh, units, min_qty, max_qty,"
            " per_user_limit, active, target_rule FROM skus")

    async def products(self, category_id: int | None = None) -> list[Product]:
        if category_id is None:
            rows = await self._all(self._PRODUCT + " ORDER BY id")
        else:
            rows = await self._all(self._PRODUCT + " WHERE category_id = ? ORDER BY id", (category_id,))
        return [_product(r) for r in rows]

    async def product_by_id(self, product_id: int) -> Product | None:
        r = await self._one(self._PRODUCT + " WHERE id = ?", (product_id,))
        return _product(r) if r else None

    async def skus(self, product_id: int | None = None) -> list[Sku]:
        if product_id is None:
            rows = await self._all(self._SKU + " ORDER BY id")
        else:
            rows = await self._all(self._SKU + " WHERE product_id = ? ORDER BY id", (product_id,))
        return [_sku(r) for r in rows]

    async def sku_by_id(self, sku_id: int) -> Sku | None:
        r = await self._one(self._SKU + " WHERE id = ?", (sku_id,))
        return _sku(r) if r else None

    async def sku_by_slug(self, slug: str) -> Sku | None:
        r = await self._one(self._SKU + " WHERE slug = ?", (slug,))
        return _sku(r) if r else None

    async def pools(self) -> list[Pool]:
        return [Pool(*r) for r in await self._all("SELECT id, slug, name, low_stock FROM pools ORDER BY id")]

    async def pool_by_slug(self, slug: str) -> Pool | None:
        r = await self._one("SELECT id, slug, name, low_stock FROM pools WHERE slug = ?", (slug,))
        return Pool(*r) if r else None

    async def prices(self, sku_id: int) -> list[Price]:
        return [Price(*r) for r in await self._all(
            "SELECT sku_id, channel, currency, amount FROM prices WHERE sku_id = ? ORDER BY channel", (sku_id,))]

    async def stock_levels(self) -> list[StockLevel]:
        holding = self._states.values(self._states.holding)
        rows = await self._scan(
            "SELECT p.id, p.slug, p.available, COALESCE((SELECT SUM(o.quantity * o.units) FROM orders o"
            f" WHERE o.pool_id = p.id AND o.state IN ({tx.marks(holding)})), 0), p.low_stock"
            " FROM pools p ORDER BY p.id", holding)
        return [StockLevel(*r) for r in rows]

    async def pool_available(self, pool_id: int) -> int:
        r = await self._one("SELECT available FROM pools WHERE id = ?", (pool_id,))
        return int(r[0]) if r else 0
