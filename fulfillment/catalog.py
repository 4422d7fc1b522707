"""Catalogue verbs: what the storefront shows, and for merchants create and edit products and SKUs, set prices,
load a shop file, list the stock. A SKU's fields are checked in one place (`sku_spec`), for chat, CLI and files."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fulfillment.errors import BadPrice, BadQuantity, ImportRefused, UnknownSku
from fulfillment.recharge_target import check_rule
from fulfillment.wholenumbers import parse_whole
from storage.protocol import Store
from storage.records import Category, Pool, Price, Product, Sku, StockLevel

#: the currency each channel charges in (Telegram digital goods: Stars only)
CHANNEL_CURRENCY = {"telegram": "XTR", "wechat": "CNY", "console": "CNY", "api": "CNY"}
MAX_PRICE = 100_000_000  # 1,000,000.00 CNY or 100M Stars: anything above is a typo
#: `key=value` words a merchant types for a SKU → SkuSpec fields (numbers are whole, `active` is on/off)
SKU_OPTIONS = {"product": "product", "pool": "pool", "name_en": "name_en", "name_zh": "name_zh", "units": "units",
               "min": "min_qty", "max": "max_qty", "limit": "per_user_limit", "active": "active", "target": "target"}
_SKU_NUMBERS = {"units", "min_qty", "max_qty", "per_user_limit"}
_TYPED_NUMBER_MAX = 10**12  # the SKU's own bounds come after, from SkuSpec


def parse_amount(raw: object) -> int:
    """A price in integer minor units (fen, Stars)."""
    return parse_whole(raw, 0, MAX_PRICE, BadPrice, "price in minor units (fen or Stars)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CategorySpec(_Strict):
    slug: str = Field(min_length=1, max_length=64)
    name_en: str
    name_zh: str
    sort: int = 0


class PoolSpec(_Strict):
    slug: str = Field(min_length=1, max_length=64)
    name: str
    low_stock: int = Field(10, ge=0)


class ProductSpec(_Strict):
    slug: str = Field(min_length=1, max_length=64)
    category: str
    name_en: str
    name_zh: str
    description_en: str = ""
    description_zh: str = ""
    instructions_en: str = ""
    instructions_zh: str = ""
    active: bool = True


class SkuSpec(_Strict):
    slug: str = Field(min_length=1, max_length=64)
    product: str
    pool: str
    name_en: str
    name_zh: str
    units: int = Field(1, ge=1, le=1000)
    min_qty: int = Field(1, ge=1)
    max_qty: int = Field(10, ge=1, le=1000)
    per_user_limit: int = Field(0, ge=0)
    active: bool = True
    prices: dict[str, int] = Field(default_factory=dict)
    #: a direct-recharge SKU's target rule: "mobile" or "re:PATTERN" (fulfillment/recharge_target.py); none: codes
    target: str | None = None

    @field_validator("target")
    @classmethod
    def _target_rule(cls, rule: str | None) -> str | None:
        return check_rule(rule)  # a bad rule (BadTarget is a ValueError) is refused here, before anything is saved


class ShopFile(_Strict):
    category: list[CategorySpec] = Field(default_factory=list)
    pool: list[PoolSpec] = Field(default_factory=list)
    product: list[ProductSpec] = Field(default_factory=list)
    sku: list[SkuSpec] = Field(default_factory=list)


def sku_spec(fields: Mapping[str, object]) -> SkuSpec:
    """The one check of a SKU's fields (chat /sku, `kamibot catalog sku`): BadQuantity names the first problem."""
    try:
        spec = SkuSpec.model_validate(dict(fields))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadQuantity(f"{where}: {first['msg']}") from None
    if spec.min_qty > spec.max_qty:
        raise BadQuantity(f"sku {spec.slug}: min_qty above max_qty")
    return spec


def sku_options(words: Mapping[str, str], allowed: frozenset[str]) -> dict[str, object]:
    """A merchant's `key=value` words → SkuSpec fields; keys outside `allowed` (SKU_OPTIONS keys) are refused."""
    fields: dict[str, object] = {}
    for key, value in words.items():
        name = SKU_OPTIONS.get(key)
        if name is None or key not in allowed:
            raise BadQuantity(f"unknown field {key!r}")
        if name in _SKU_NUMBERS:
            fields[name] = parse_whole(value, 0, _TYPED_NUMBER_MAX, BadQuantity, key)
        elif name == "active":
            fields[name] = value.lower() in ("1", "on", "yes", "true")
        else:
            fields[name] = value
    return fields


@dataclass(frozen=True, slots=True)
class SkuStock:
    sku: Sku
    sellable: int  # items the pool's available uses make


@dataclass(frozen=True, slots=True)
class StockListing:
    """Stock per pool, and what each SKU can still sell (merchant /stock, `kamibot codes stock`)."""

    pools: list[StockLevel]
    skus: list[SkuStock]

    @staticmethod
    def low(level: StockLevel) -> bool:
        return level.available <= level.low_stock


@dataclass(frozen=True, slots=True)
class LowStock:
    pool_slug: str
    available: int


class CatalogService:
    def __init__(self, store: Store) -> None:
        self.store = store
        #: own stock plus what healthy sources report (fulfillment.sourcing.SourcingService.sellable), when the
        #: supply side runs; None: own stock only
        self.supply_sellable: Callable[[Sku], Awaitable[int]] | None = None

    # -- what the storefront shows -------------------------------------------------
    async def categories(self) -> list[Category]:
        return await self.store.categories()

    async def products(self, category_id: int | None = None) -> list[Product]:
        return await self.store.products(category_id)

    async def product(self, product_id: int) -> Product | None:
        return await self.store.product_by_id(product_id)

    async def skus(self, product_id: int | None = None) -> list[Sku]:
        return await self.store.skus(product_id)

    async def sku(self, sku_id: int) -> Sku | None:
        return await self.store.sku_by_id(sku_id)

    async def prices(self, sku_id: int) -> list[Price]:
        return await self.store.prices(sku_id)

    async def price_on(self, sku_id: int, channel: str) -> Price | None:
        return next((p for p in await self.store.prices(sku_id) if p.channel == channel), None)

    async def sellable(self, sku: Sku) -> int:
        """Items of this SKU its pool can still make, plus for an on-demand SKU what its healthy sources report
        once the supply side is running (`supply_sellable`, set by bot/supply.py)."""
        if self.supply_sellable is not None:
            return await self.supply_sellable(sku)
        return await self.store.pool_available(sku.pool_id) // sku.units

    async def stock_listing(self) -> StockListing:
        levels = {lv.pool_id: lv for lv in await self.store.stock_levels()}
        skus = [SkuStock(s, levels[s.pool_id].available // s.units if s.pool_id in levels else 0)
                for s in await self.store.skus()]
        return StockListing(list(levels.values()), skus)

    async def low_stock_crossed(self, pool_id: int, taken: int) -> LowStock | None:
        """The pool, when taking `taken` uses just now took it across its low-stock mark (once per crossing)."""
        pool = next((p for p in await self.store.pools() if p.id == pool_id), None)
        if pool is None:
            return None
        available = await self.store.pool_available(pool.id)  # one row, not the stock report
        if available <= pool.low_stock < available + taken:
            return LowStock(pool.slug, available)
        return None

    # -- merchant edits ----------------------------------------------------------------
    async def save_sku(self, spec: SkuSpec) -> None:
        """Create or update one SKU checked by `sku_spec` (its product and pool must exist)."""
        await self.apply(ShopFile(sku=[spec]))

    async def edit_sku(self, ref: str, changes: Mapping[str, object]) -> Sku:
        """Change fields of an existing SKU, held to the same bounds as a new one; one write."""
        sku = await self.find_sku(ref)
        current: dict[str, object] = {"slug": sku.slug, "product": str(sku.product_id), "pool": str(sku.pool_id),
                                      "name_en": sku.name_en, "name_zh": sku.name_zh, "units": sku.units,
                                      "min_qty": sku.min_qty, "max_qty": sku.max_qty,
                                      "per_user_limit": sku.per_user_limit, "active": sku.active,
                                      "target": sku.target_rule}
        if {"slug", "product", "pool"} & changes.keys():
            raise BadQuantity("slug, product and pool of a SKU are not edited")
        spec = sku_spec(current | dict(changes))
        edited = replace(sku, **{"target_rule" if name == "target" else name: getattr(spec, name) for name in changes})
        return await self.store.upsert_sku(edited)

    async def find_sku(self, ref: str) -> Sku:
        """A SKU by slug or numeric id, as merchants type it."""
        ref = ref.strip()
        sku = await self.store.sku_by_slug(ref)
        if sku is None and ref.isdigit():
            sku = await self.store.sku_by_id(int(ref))
        if sku is None:
            raise UnknownSku(f"unknown SKU {ref!r}", sku=ref)
        return sku

    async def find_pool(self, ref: str) -> Pool:
        """A pool by slug, or the pool a SKU draws from."""
        pool = await self.store.pool_by_slug(ref.strip())
        if pool is not None:
            return pool
        sku = await self.find_sku(ref)
        return next(p for p in await self.store.pools() if p.id == sku.pool_id)

    async def set_price(self, sku_ref: str, channel: str, amount: object, currency: str | None = None) -> Price:
        if channel not in CHANNEL_CURRENCY:
            raise BadPrice(f"unknown channel {channel!r}")
        sku = await self.find_sku(sku_ref)
        price = Price(sku.id, channel, currency or CHANNEL_CURRENCY[channel], parse_amount(amount))
        if channel == "telegram" and price.currency != "XTR":
            raise BadPrice("Telegram digital goods are paid in Stars (XTR)")
        await self.store.set_price(price)
        return price

    async def stock(self) -> list[StockLevel]:
        return await self.store.stock_levels()

    async def load_file(self, path: Path) -> dict[str, int]:
        try:
            data = tomllib.loads(await asyncio.to_thread(path.read_text, encoding="utf-8"))
            spec = ShopFile.model_validate(data)
        except (OSError, UnicodeDecodeError) as exc:
            raise ImportRefused(f"cannot read {path.name}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ImportRefused(f"{path.name}: {exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ImportRefused(f"{path.name}: {where}: {first['msg']}") from None
        return await self.apply(spec)

    async def apply(self, spec: ShopFile) -> dict[str, int]:
        """Upsert everything by slug; checks every reference before writing anything."""
        cats = {c.slug for c in spec.category} | {c.slug for c in await self.store.categories()}
        pools = {p.slug for p in spec.pool} | {p.slug for p in await self.store.pools()}
        prods = {p.slug for p in spec.product} | {p.slug for p in await self.store.products()}
        for p in spec.product:
            if p.category not in cats:
                raise ImportRefused(f"product {p.slug}: unknown category {p.category!r}")
        for s in spec.sku:
            if s.product not in prods or s.pool not in pools:
                raise ImportRefused(f"sku {s.slug}: unknown product or pool")
            if s.min_qty > s.max_qty:
                raise ImportRefused(f"sku {s.slug}: min_qty above max_qty")
            for channel, amount in s.prices.items():
                if channel not in CHANNEL_CURRENCY:
                    raise ImportRefused(f"sku {s.slug}: unknown channel {channel!r}")
                parse_amount(amount)
        cat_ids = {c.slug: (await self.store.upsert_category(c.slug, c.name_en, c.name_zh, c.sort)).id
                   for c in spec.category}
        cat_ids |= {c.slug: c.id for c in await self.store.categories() if c.slug not in cat_ids}
        pool_ids = {p.slug: (await self.store.upsert_pool(p.slug, p.name, p.low_stock)).id for p in spec.pool}
        pool_ids |= {p.slug: p.id for p in await self.store.pools() if p.slug not in pool_ids}
        for p in spec.product:
            await self.store.upsert_product(Product(0, cat_ids[p.category], p.slug, p.name_en, p.name_zh,
                                                    p.description_en, p.description_zh, p.instructions_en,
                                                    p.instructions_zh, p.active))
        prod_ids = {p.slug: p.id for p in await self.store.products()}
        for s in spec.sku:
            sku = await self.store.upsert_sku(Sku(0, prod_ids[s.product], pool_ids[s.pool], s.slug, s.name_en,
                                                  s.name_zh, s.units, s.min_qty, s.max_qty, s.per_user_limit,
                                                  s.active, s.target))
            for channel, amount in s.prices.items():
                await self.store.set_price(Price(sku.id, channel, CHANNEL_CURRENCY[channel], amount))
        return {"categories": len(spec.category), "pools": len(spec.pool), "products": len(spec.product),
                "skus": len(spec.sku)}
