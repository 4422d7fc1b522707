"""acg-faka's shared-shop ("共享店铺") protocol: one acg-faka shop buying from another with its balance.

Source: github lizhipay/acg-faka (read at 574c3ff8, 2026-08):
- app/Util/Str.php `generateSignature`: drop `sign`, ksort, drop '' values,
  md5(urldecode(http_build_query(data)) . "&key=" . app_key);
- app/Interceptor/SharedValidation.php: every /shared/* call is a form POST with `app_id` and `sign`, checked
  over *all posted fields* with the key of user `app_id`; a mismatch answers {"code": 0, "msg": "密钥错误"};
- app/Service/Bind/Shared.php (the client side, `post()`): form_params, redirects refused, answer
  {"code": 200, "msg": ..., "data": ...}, any other code is an error whose `msg` says why;
- app/Controller/Shared/Authentication.php `connect`: {shopName, balance};
  app/Controller/Shared/Commodity.php `items` (categories with `children` commodities: code, name, price,
  user_price, delivery_way, stock), `inventory` (sharedCode, race -> count, delivery_way, factory_price = our unit
  cost), `trade` (shared_code, num, contact, request_no, ... paid from our balance: pay_id forced to 1),
  `query` (tradeNo -> secret, status);
- app/Service/Bind/Order.php `trade`: a repeated `request_no` is refused with "The request ID already exists"
  (the first order is not returned); the answer is {tradeNo, amount, secret, ...}; for automatic delivery the
  codes are `secret`, one per line (PHP_EOL), delivered in the same transaction as the payment (all or nothing:
  a shortage leaves a sorry text instead); app/Model/Bill.php refuses with "余额不足";
- kernel/Kernel.php: a JSONException answers HTTP 200 {"code": 0, "msg": ...}; any other exception an HTML page.

Differences from the PHP client, on purpose:
- we do not post `app_key` in the body (the PHP client does, a legacy leak): the server signs whatever was posted,
  so the signature still verifies and the key never travels;
- acg-faka has no price guard in `trade`, so we read `inventory` first and refuse before buying when its
  factory_price is above `max_unit_cost` (a price change between the two calls remains possible; the charged
  `amount` comes back in the order and the caller compares);
- acg-faka finds orders only by its own tradeNo: an order whose answer was lost cannot be found by our reference
  (`queries_by_reference = False`); it stays UNKNOWN until a merchant settles it;
- a secret whose line count differs from the quantity is not taken for codes (it can be acg-faka's "sold out"
  text): the order is reported UNKNOWN for a merchant to check;
- no callbacks exist: `parse_callback` refuses everything; no recharge: `recharge` refuses before sending.

Limits: refusals are told apart by their `msg`, which acg-faka passes through `lang()` (kernel/Helper.php): a shop
set to a language other than zh-cn/en may word them differently, and an unrecognised refusal is a plain
`Rejected` (still definitive: every JSONException in `trade` is raised before its transaction commits). The one
refusal that is not "nothing happened" is the repeated request_no, so a reference once sent must never be sent
again as a new buy; the caller records "sent" before the call and resolves such orders by query or by hand.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from fulfillment.suppliers.amounts import yuan_to_minor
from fulfillment.suppliers.errors import (
    AuthenticationFailed,
    BadAnswer,
    DefinitiveFailure,
    ForgedCallback,
    InsufficientBalance,
    NotSent,
    OrderNotFound,
    OutcomeUnknown,
    PriceAboveLimit,
    ProductUnavailable,
    Rejected,
    SupplierUnavailable,
    scrub,
)
from fulfillment.suppliers.protocol import (
    Money,
    OrderStatus,
    ProductType,
    StockState,
    SupplierOrder,
    SupplierProduct,
)
from fulfillment.suppliers.transport import HttpPolicy, SupplierHttp

log = logging.getLogger("kamibot.suppliers.acgfaka")

DUPLICATE_MESSAGE = "The request ID already exists"
_REFUSALS: dict[str, type[DefinitiveFailure]] = {
    "商户ID不存在": AuthenticationFailed, "密钥错误": AuthenticationFailed, "余额不足": InsufficientBalance,
    "商品不存在": ProductUnavailable, "当前商品已停售": ProductUnavailable, "库存不足": ProductUnavailable,
}


def sign(params: Mapping[str, str], app_key: str) -> str:
    """acg-faka Str::generateSignature: sorted non-empty k=v pairs joined by '&', then '&key=' + app_key, md5."""
    pairs = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")
    return hashlib.md5(f"{pairs}&key={app_key}".encode()).hexdigest()


@dataclass(frozen=True)
class AcgFakaConfig:
    base_url: str  # the upstream shop, e.g. https://shop.example.com
    app_id: str  # our user id at that shop
    app_key: str = field(repr=False)
    name: str = "acg-faka"
    currency: str = "CNY"
    policy: HttpPolicy = HttpPolicy()


class AcgFakaSupplier:
    queries_by_reference = False
    callback_answer: bytes | None = None

    def __init__(self, config: AcgFakaConfig, http: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self.name = config.name
        self.http = SupplierHttp(config.name, config.base_url, config.policy, http)

    async def aclose(self) -> None:
        await self.http.aclose()

    def _signed(self, params: Mapping[str, str]) -> dict[str, str]:
        form = {**params, "app_id": self.config.app_id}
        form["sign"] = sign(form, self.config.app_key)
        return form

    def _refusal(self, path: str, answer: Mapping[str, Any], our_ref: str) -> DefinitiveFailure:
        message = scrub(str(answer.get("msg", "")), self.config.app_key)
        return _REFUSALS.get(message, Rejected)(f"{path}: {message or answer.get('code')}", supplier=self.name,
                                                our_ref=our_ref)

    async def _read(self, path: str, params: dict[str, str], our_ref: str = "") -> Any:
        answer = await self.http.read(path, lambda: self._signed(params), our_ref)
        if answer.get("code") == 200:
            return answer.get("data")
        if scrub(str(answer.get("msg", ""))) == "订单不存在":
            raise OrderNotFound(f"{path}: 订单不存在", supplier=self.name, our_ref=our_ref)
        raise self._refusal(path, answer, our_ref)

    # -- reads ---------------------------------------------------------------------------------------------------
    async def catalogue(self) -> list[SupplierProduct]:
        data = await self._read("/shared/commodity/items", {})
        if not isinstance(data, list):
            raise BadAnswer("items: data is not a list", supplier=self.name)
        products = []
        for category in data:
            for item in (category.get("children") or []) if isinstance(category, dict) else []:
                try:
                    products.append(self._product(item))
                except BadAnswer as exc:
                    log.warning("event=supplier.product_skipped supplier=%s reason=%s", self.name, exc.detail)
        return products

    def _product(self, item: Any) -> SupplierProduct:
        if not isinstance(item, dict) or not str(item.get("code") or "").strip():
            raise BadAnswer("commodity without a code")
        code = str(item["code"])
        raw_price = item.get("factory_price") or item.get("user_price") or item.get("price")
        manual = item.get("delivery_way", 0) != 0
        count = item.get("stock") if isinstance(item.get("stock"), int) and not manual else None
        if item.get("status", 1) != 1:
            stock = StockState.OFF_SALE
        else:
            stock = StockState.OUT_OF_STOCK if count == 0 else StockState.IN_STOCK
        return SupplierProduct(product_id=code, name=str(item.get("name") or code),
                               cost=Money(yuan_to_minor(raw_price, f"price of {code}"), self.config.currency),
                               stock=stock, product_type=ProductType.MANUAL if manual else ProductType.CARD,
                               stock_count=count)

    async def balance(self) -> Money:
        data = await self._read("/shared/authentication/connect", {})
        if not isinstance(data, dict):
            raise BadAnswer("connect: data is not an object", supplier=self.name)
        raw = str(data.get("balance", "")).strip()
        amount = yuan_to_minor(raw.lstrip("-"), "balance")
        return Money(-amount if raw.startswith("-") else amount, self.config.currency)

    async def query(self, our_ref: str, supplier_order_id: str | None = None) -> SupplierOrder:
        if not supplier_order_id:
            return SupplierOrder(our_ref=our_ref, status=OrderStatus.UNKNOWN,
                                 detail="acg-faka finds orders by its own trade number only")
        data = await self._read("/shared/commodity/query", {"tradeNo": supplier_order_id}, our_ref)
        if not isinstance(data, dict):
            raise BadAnswer("query: data is not an object", supplier=self.name, our_ref=our_ref)
        if data.get("status") != 1:
            return SupplierOrder(our_ref=our_ref, status=OrderStatus.PENDING, supplier_order_id=supplier_order_id)
        lines = _lines(data.get("secret"))
        status = OrderStatus.SUCCEEDED if lines else OrderStatus.PROCESSING
        return SupplierOrder(our_ref=our_ref, status=status, supplier_order_id=supplier_order_id, codes=lines)

    # -- writes --------------------------------------------------------------------------------------------------
    async def recharge(self, our_ref: str, product_id: str, target_account: str, quantity: int,
                       max_unit_cost: Money) -> SupplierOrder:
        raise Rejected("acg-faka shared shops sell codes, not recharges", supplier=self.name, our_ref=our_ref)

    async def buy_codes(self, our_ref: str, product_id: str, quantity: int, max_unit_cost: Money) -> SupplierOrder:
        if quantity < 1:
            raise ValueError("quantity must be at least 1")
        if max_unit_cost.currency != self.config.currency:
            raise ValueError(f"max_unit_cost in {max_unit_cost.currency}, supplier prices in {self.config.currency}")
        manual = await self._check(our_ref, product_id, quantity, max_unit_cost)
        form = self._signed({"shared_code": product_id, "num": str(quantity), "contact": our_ref, "card_id": "0",
                             "device": "0", "password": "", "race": "", "request_no": our_ref})
        answer = await self.http.write("/shared/commodity/trade", form, our_ref)
        if answer.get("code") != 200:
            if scrub(str(answer.get("msg", ""))) == DUPLICATE_MESSAGE:
                raise OutcomeUnknown("reference already used at the supplier; its order cannot be read by reference",
                                     supplier=self.name, our_ref=our_ref)
            log.info("event=supplier.refused supplier=%s ref=%s", self.name, our_ref)
            raise self._refusal("/shared/commodity/trade", answer, our_ref)
        try:
            return self._traded(answer.get("data"), our_ref, product_id, quantity, manual)
        except BadAnswer as exc:
            raise OutcomeUnknown(f"trade answer unreadable: {exc.detail}", supplier=self.name,
                                 our_ref=our_ref) from None

    async def _check(self, our_ref: str, product_id: str, quantity: int, max_unit_cost: Money) -> bool:
        """Price and stock before buying (acg-faka has no price guard); True when delivery is manual."""
        try:
            data = await self._read("/shared/commodity/inventory", {"sharedCode": product_id, "race": ""}, our_ref)
            if not isinstance(data, dict):
                raise BadAnswer("inventory: data is not an object")
            unit = yuan_to_minor(data.get("factory_price") or data.get("user_price") or data.get("price"),
                                 "factory_price")
        except (SupplierUnavailable, BadAnswer) as exc:
            raise NotSent(f"price check failed ({exc.kind}); nothing bought", supplier=self.name,
                          our_ref=our_ref) from None
        if unit > max_unit_cost.amount:
            raise PriceAboveLimit(f"unit cost {unit} above {max_unit_cost.amount}", supplier=self.name,
                                  our_ref=our_ref)
        manual = bool(data.get("delivery_way", 0) != 0)
        count = data.get("count")
        if not manual and isinstance(count, int) and count < quantity:
            raise ProductUnavailable(f"{count} in stock for {quantity}", supplier=self.name, our_ref=our_ref)
        return manual

    def _traded(self, data: Any, our_ref: str, product_id: str, quantity: int, manual: bool) -> SupplierOrder:
        if not isinstance(data, dict) or not str(data.get("tradeNo") or "").strip():
            raise BadAnswer("trade answer without tradeNo")
        cost = Money(yuan_to_minor(data.get("amount"), "amount"), self.config.currency)
        base = SupplierOrder(our_ref=our_ref, status=OrderStatus.SUCCEEDED, supplier_order_id=str(data["tradeNo"]),
                             cost=cost, product_id=product_id, quantity=quantity)
        if manual:
            return replace(base, status=OrderStatus.PROCESSING, detail="delivered by hand at the supplier")
        lines = _lines(data.get("secret"))
        if len(lines) != quantity:
            log.warning("event=supplier.code_count_mismatch supplier=%s ref=%s lines=%d ordered=%d", self.name,
                        our_ref, len(lines), quantity)
            return replace(base, status=OrderStatus.UNKNOWN,
                           detail=f"paid, but {len(lines)} lines of secret for {quantity} codes")
        return replace(base, codes=lines)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> SupplierOrder:
        raise ForgedCallback("acg-faka sends no callbacks", supplier=self.name)


def _lines(secret: Any) -> tuple[str, ...]:
    if not isinstance(secret, str):
        return ()
    return tuple(line.strip() for line in secret.splitlines() if line.strip())
