"""A SIMULATED supplier for the offline demo (`kamibot demo`): it answers like a supplier, in this process, and
nothing it sells is real. Protocol name "simulated"; never configure it for a live shop.

- catalogue: phone credit (direct recharge, ¥10 and ¥30) and a one-week video pass sold as codes;
- buy_codes: codes made up on the spot, each starting with `DEMO-` so nobody mistakes one for a real code;
- recharge: accepted as PROCESSING; a query after `delay_s` says SUCCEEDED (a number ending in 0000 FAILED, to
  show the refund path), the same answer every time after that;
- every order is kept by our reference (`our_ref` is the idempotency key, as with a real supplier): a second buy or
  recharge under one reference answers the first order again, and a query of a reference it never saw answers
  OrderNotFound. Its memory is this process's: after a restart it knows none of the earlier orders;
- balance: a fixed float minus what was bought; no callbacks (parse_callback refuses everything).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from fulfillment.suppliers.errors import (
    ForgedCallback,
    InsufficientBalance,
    InvalidTarget,
    OrderNotFound,
    PriceAboveLimit,
    ProductUnavailable,
)
from fulfillment.suppliers.protocol import (
    Money,
    OrderStatus,
    ProductType,
    StockState,
    SupplierOrder,
    SupplierProduct,
)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
FAILING_SUFFIX = "0000"  # a recharge to a number ending in this fails (after the delay): the refund path
MAX_QUANTITY = 100


@dataclass
class _Kept:
    order: SupplierOrder
    accepted_at: float
    target: str = ""


def demo_products(currency: str = "CNY") -> list[SupplierProduct]:
    def money(amount: int) -> Money:
        return Money(amount, currency)

    return [
        SupplierProduct("mobile-10", "Phone credit ¥10 (simulated)", money(980), StockState.IN_STOCK,
                        ProductType.RECHARGE, face_value=money(1000)),
        SupplierProduct("mobile-30", "Phone credit ¥30 (simulated)", money(2940), StockState.IN_STOCK,
                        ProductType.RECHARGE, face_value=money(3000)),
        SupplierProduct("video-week", "Video VIP 1-week code (simulated)", money(300), StockState.IN_STOCK,
                        ProductType.CARD),
    ]


class SimulatedSupplier:
    """In-process stand-in for an upstream supplier (the demo's); implements fulfillment.suppliers.protocol."""

    queries_by_reference = True
    callback_answer: bytes | None = None

    def __init__(self, name: str = "demo-sim", currency: str = "CNY", delay_s: float = 1.0,
                 balance: int = 1_000_000, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.currency = currency
        self.delay_s = delay_s
        self._balance = balance
        self._monotonic = monotonic
        self._products = {p.product_id: p for p in demo_products(currency)}
        self._orders: dict[str, _Kept] = {}

    async def catalogue(self) -> list[SupplierProduct]:
        return list(self._products.values())

    def _product(self, our_ref: str, product_id: str, kind: ProductType, quantity: int,
                 max_unit_cost: Money) -> SupplierProduct:
        product = self._products.get(product_id)
        if product is None or product.product_type is not kind:
            raise ProductUnavailable(f"no {kind.value} product {product_id[:32]!r}", supplier=self.name,
                                     our_ref=our_ref)
        if not 1 <= quantity <= MAX_QUANTITY:
            raise ProductUnavailable(f"quantity {quantity} outside 1-{MAX_QUANTITY}", supplier=self.name,
                                     our_ref=our_ref)
        if product.cost.amount > max_unit_cost.amount:
            raise PriceAboveLimit(f"unit cost {product.cost.amount} above {max_unit_cost.amount}",
                                  supplier=self.name, our_ref=our_ref)
        if product.cost.amount * quantity > self._balance:
            raise InsufficientBalance("simulated balance too low", supplier=self.name, our_ref=our_ref)
        return product

    def _accept(self, our_ref: str, product: SupplierProduct, quantity: int, status: OrderStatus,
                codes: tuple[str, ...] = (), target: str = "") -> SupplierOrder:
        cost = product.cost.amount * quantity
        self._balance -= cost
        order = SupplierOrder(our_ref, status, f"SIM-{secrets.token_hex(6).upper()}", codes, Money(cost, self.currency),
                              product.product_id, quantity, "simulated")
        self._orders[our_ref] = _Kept(order, self._monotonic(), target)
        return order

    async def buy_codes(self, our_ref: str, product_id: str, quantity: int, max_unit_cost: Money) -> SupplierOrder:
        kept = self._orders.get(our_ref)
        if kept is not None:
            return kept.order
        product = self._product(our_ref, product_id, ProductType.CARD, quantity, max_unit_cost)
        codes = tuple("DEMO-" + "-".join("".join(secrets.choice(CODE_ALPHABET) for _ in range(4)) for _ in range(3))
                      for _ in range(quantity))
        return self._accept(our_ref, product, quantity, OrderStatus.SUCCEEDED, codes)

    async def recharge(self, our_ref: str, product_id: str, target_account: str, quantity: int,
                       max_unit_cost: Money) -> SupplierOrder:
        kept = self._orders.get(our_ref)
        if kept is not None:
            return await self.query(our_ref)
        product = self._product(our_ref, product_id, ProductType.RECHARGE, quantity, max_unit_cost)
        if not (len(target_account) == 11 and target_account.isascii() and target_account.isdigit()):
            raise InvalidTarget("not an 11-digit mobile number", supplier=self.name, our_ref=our_ref)
        return self._accept(our_ref, product, quantity, OrderStatus.PROCESSING, target=target_account)

    async def query(self, our_ref: str, supplier_order_id: str | None = None) -> SupplierOrder:
        kept = self._orders.get(our_ref)
        if kept is None:
            raise OrderNotFound("the simulated supplier has no such order", supplier=self.name, our_ref=our_ref)
        if kept.order.status is OrderStatus.PROCESSING and self._monotonic() - kept.accepted_at >= self.delay_s:
            failed = kept.target.endswith(FAILING_SUFFIX)
            kept.order = replace(kept.order, status=OrderStatus.FAILED if failed else OrderStatus.SUCCEEDED,
                                 detail="simulated " + ("failure" if failed else "top-up done"))
            if failed:
                self._balance += kept.order.cost.amount if kept.order.cost else 0  # the supplier refunds us
        return kept.order

    async def balance(self) -> Money:
        return Money(self._balance, self.currency)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> SupplierOrder:
        raise ForgedCallback("the simulated supplier sends no callbacks", supplier=self.name)

    async def aclose(self) -> None:
        return None
