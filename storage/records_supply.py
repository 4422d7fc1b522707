"""Records of the supply side (suppliers, procurements, SKU sources): plain frozen dataclasses, no SQL.

Money in integer minor units, times UTC-aware. A supplier's credential is stored only as ciphertext
(`SealedSecret`, sealed by fulfillment/suppliers/credentials.py under the vault key); repr never shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

SUPPLIER_PROTOCOLS = ("kashangwl", "acgfaka", "kamibot")


class ProcurementState(StrEnum):
    PLANNED = "planned"  # written before anything is sent
    SENT = "sent"  # the request may be at the supplier: only a query or callback settles it
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # definitively: nothing bought (or refunded by the supplier)
    UNKNOWN = "unknown"  # the answer was lost or the supplier does not know yet: query until definitive

    @property
    def open(self) -> bool:
        return self in (ProcurementState.PLANNED, ProcurementState.SENT, ProcurementState.UNKNOWN)


@dataclass(frozen=True)
class SealedSecret:
    key_id: str
    nonce: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)


@dataclass(frozen=True)
class SupplierRecord:
    name: str
    protocol: str  # kashangwl | acgfaka | kamibot
    base_url: str
    account: str  # kashangwl customer_id, acg-faka app_id, kamibot API key id (not secret)
    secret: SealedSecret  # kashangwl key, acg-faka app_key, kamibot API secret
    notify_url: str = ""
    product_ids: tuple[str, ...] = ()  # the catalogue we follow (kashangwl reads products one id at a time)
    connect_timeout_ms: int = 3000
    read_timeout_ms: int = 10_000
    breaker_failures: int = 5
    breaker_cool_down_s: int = 30
    low_balance: int = 0  # minor units; under it merchants are alerted
    currency: str = "CNY"
    active: bool = True
    id: int = 0


@dataclass(frozen=True)
class NewProcurement:
    our_ref: str
    supplier: str
    product_id: str
    quantity: int
    max_unit_cost: int
    currency: str
    pool_id: int
    order_id: int | None = None  # on demand: the order these codes are for; None: a restock


@dataclass(frozen=True)
class Procurement:
    id: int
    our_ref: str
    supplier: str
    product_id: str
    quantity: int
    max_unit_cost: int
    currency: str
    pool_id: int
    order_id: int | None
    state: ProcurementState
    supplier_order_id: str | None
    cost: int | None  # what the supplier charged for the whole order
    batch_id: int | None
    received: int  # codes that went into the vault
    duplicates: int  # codes the vault already held (never sold again)
    shortfall: int  # quantity - received
    held: bool  # a callback or answer that does not match ours: a merchant decides
    detail: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Settlement:
    """What a query, a buy answer or a callback said, as settle_procurement takes it."""

    state: ProcurementState  # SUCCEEDED, FAILED or UNKNOWN
    supplier_order_id: str | None = None
    cost: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class SkuSource:
    supplier: str
    product_id: str


@dataclass(frozen=True)
class SkuSourcing:
    """A SKU's sources in order of preference (own stock is always first when `own`), the most one unit may
    cost from a supplier, and how many to buy when its pool runs low (0: no automatic restock)."""

    sku_id: int
    own: bool = True
    sources: tuple[SkuSource, ...] = ()
    max_unit_cost: int = 0
    restock_quantity: int = 0
    on_demand: bool = False
    margin_floor: int = 0  # per unit, minor units: a price under cost + this alerts the merchants
    markup_bp: int = 0  # auto-reprice rule: price = cost × (1 + markup_bp / 10000); 0: no automatic repricing
    price_unit: int = 1  # repriced amounts are rounded up to a multiple of this (the channel's unit)


@dataclass(frozen=True)
class SupplierProductRow:
    """A supplier product as the last catalogue sync saw it."""

    supplier: str
    product_id: str
    name: str
    cost: int
    currency: str
    stock: str  # fulfillment.suppliers.protocol.StockState value
    stock_count: int | None


@dataclass(frozen=True)
class CostChange:
    supplier: str
    product_id: str
    old_cost: int | None  # None: first seen
    new_cost: int
