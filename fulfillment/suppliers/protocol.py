"""The `Supplier` seam: what the shop asks of an upstream supplier, in our own types (integer minor units).

Every order-shaped call carries `our_ref`, our own procurement reference, recorded by the caller *before* the call
and sent to the supplier as its idempotency key (kashangwl `outer_order_id`, acg-faka `request_no`).

How outcomes reach the caller:
- `buy_codes` / `recharge` return a `SupplierOrder` when the supplier answered; its status says what the supplier
  said (PENDING, PROCESSING, SUCCEEDED, FAILED, or UNKNOWN when the supplier itself does not know);
- they raise `DefinitiveFailure` (errors.py) when nothing happened and it is safe to try elsewhere;
- they raise `OutcomeUnknown` when the request may have been acted on (timeout after sending, reset, 5xx, garbage):
  the caller must treat the purchase as unknown and `query` until definitive, never buy elsewhere meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Money:
    """An amount in integer minor units (fen for CNY) and its ISO currency."""

    amount: int
    currency: str = "CNY"

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError("Money.amount is an int of minor units")


class ProductType(StrEnum):
    RECHARGE = "recharge"  # credited to a target account (话费, game id); no codes
    CARD = "card"  # card number and/or password codes
    VOUCHER = "voucher"  # 卡券: a ticket (often an image URL) per unit
    MANUAL = "manual"  # delivered by a person at the supplier, later


class StockState(StrEnum):
    IN_STOCK = "in_stock"
    OUT_OF_STOCK = "out_of_stock"
    OFF_SALE = "off_sale"  # maintenance, withdrawn or banned for now


@dataclass(frozen=True)
class SupplierProduct:
    product_id: str
    name: str
    cost: Money  # what one unit costs us now
    stock: StockState
    product_type: ProductType
    face_value: Money | None = None  # what the unit is worth to the customer, when the supplier says
    stock_count: int | None = None  # None: the supplier does not count (unlimited or undisclosed)


class OrderStatus(StrEnum):
    PENDING = "pending"  # accepted, waiting (kashangwl 100)
    PROCESSING = "processing"  # being charged or delivered (kashangwl 101)
    SUCCEEDED = "succeeded"  # delivered (kashangwl 200)
    FAILED = "failed"  # definitively failed after acceptance, supplier refunds (kashangwl 500)
    UNKNOWN = "unknown"  # the supplier does not know yet (kashangwl 501): keep querying

    @property
    def definitive(self) -> bool:
        return self in (OrderStatus.SUCCEEDED, OrderStatus.FAILED)


@dataclass(frozen=True)
class SupplierOrder:
    """One order at a supplier as it stands now. `codes` are secrets: repr shows how many, never what."""

    our_ref: str
    status: OrderStatus
    supplier_order_id: str | None = None
    codes: tuple[str, ...] = field(default=(), repr=False)
    cost: Money | None = None  # what the supplier actually charged for the whole order
    product_id: str | None = None
    quantity: int | None = None
    detail: str = ""  # the supplier's state text or our note; never codes or keys

    def __repr__(self) -> str:
        return (f"SupplierOrder(our_ref={self.our_ref!r}, status={self.status.value}, "
                f"supplier_order_id={self.supplier_order_id!r}, codes=<{len(self.codes)} hidden>, cost={self.cost!r}, "
                f"product_id={self.product_id!r}, quantity={self.quantity!r}, detail={self.detail!r})")

    __str__ = __repr__


@runtime_checkable
class Supplier(Protocol):
    """An upstream supplier. Implementations: kashangwl.KashangwlSupplier, acgfaka.AcgFakaSupplier."""

    name: str
    #: True when `query(our_ref)` can find an order by our reference alone (kashangwl: /api/outer-order);
    #: False when only the supplier's own order id works (acg-faka) - an order whose answer was lost stays unknown.
    queries_by_reference: bool
    #: the body to answer a valid callback with (kashangwl: b"ok"); None when the supplier sends no callbacks
    callback_answer: bytes | None

    async def catalogue(self) -> list[SupplierProduct]: ...

    async def buy_codes(self, our_ref: str, product_id: str, quantity: int, max_unit_cost: Money) -> SupplierOrder: ...

    async def recharge(self, our_ref: str, product_id: str, target_account: str, quantity: int,
                       max_unit_cost: Money) -> SupplierOrder: ...

    async def query(self, our_ref: str, supplier_order_id: str | None = None) -> SupplierOrder: ...

    async def balance(self) -> Money: ...

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> SupplierOrder:
        """Verify the callback's signature and read it; raises ForgedCallback (answer 403, change nothing)."""
        ...

    async def aclose(self) -> None: ...
