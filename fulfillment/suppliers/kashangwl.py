"""The 卡商网 (kashangwl) supplier protocol, also served by its white-label copies (866ka and others).

Sources (read 2026-12):
- buy:      http://doc.cqmeihu.cn/sales/buy.html and https://www.866ka.cn/api-doc/buy.html - /api/buy with product_id,
  quantity, recharge_account, notify_url, outer_order_id ("同一商家编号下不允许重复": unique per merchant),
  safe_cost (yuan per unit: the platform refuses the order when its price is above it), answer
  {"code": "ok", "message": "", "data": {order_id, product_price, total_price, state, cards[], tickets[]}};
  states 100 waiting, 101 recharging, 200 success, 500 failed, 501 unknown; cards may come later (poll or notify).
- notify:   https://www.866ka.cn/api-doc/order-status-notify.html - form POST (x-www-form-urlencoded) of order_id,
  outer_order_id, product_id, quantity, state, state_info, created_at, timestamp, customer_id, sign, cards,
  tickets; "cards/tickets 不加入签名" (not signed); answer the string "ok", else re-sent after 10 s, 3 times in all.
- signing:  github dtapps/go-library service/kashangwl/sign.go - sign = md5(key + k1 + v1 + k2 + v2 ...), keys in
  ascending order, lower-case hex ("{key}customer_id1192442order_id827669582783timestamp1626845767");
  request.go adds customer_id and a millisecond timestamp to every call.
- fields:   dtapps/go-library service/kashangwl/api.product.go (/api/product: type 1 recharge 2 card 3 voucher
  4 manual, supply_state 1 enough 2 out, stock_state 1 on sale 2 maintenance 3 off), api.order.go (/api/order by
  order_id), api.outer-order.go (/api/outer-order by outer_order_id), api.customer.go (/api/customer: balance),
  api.product.recharge-params.go (/api/product/recharge-params).
- issue 14 (kamibot): the documentation says a `server_error` answer means the outcome is unknown, not failed.

Assumptions where the pages we could read are silent (the fake in tests/fakes/supplier_kashangwl.py follows them):
- requests are sent as a form POST with every value a string (the Java sample posts a form; the Go SDK posts JSON);
- error codes other than "ok" and "server_error" are not listed: we name the ones we classify (`_REFUSALS`) and treat
  any other code on a buy as a refusal, since only server_error is documented as "unknown";
- a repeated outer_order_id is refused (uniqueness is documented, the answer is not): we then read the existing
  order through /api/outer-order, so a repeated buy returns the first order and never buys twice;
- callbacks are signed like requests, over every field but sign, cards and tickets. Because codes are not signed,
  `parse_callback` never returns codes: the caller fetches them with `query`, whose answer comes over our own call.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp

from fulfillment.suppliers.amounts import minor_to_yuan, yuan_to_minor
from fulfillment.suppliers.errors import (
    AuthenticationFailed,
    BadAnswer,
    DefinitiveFailure,
    ForgedCallback,
    InsufficientBalance,
    InvalidTarget,
    OrderNotFound,
    OutcomeUnknown,
    PriceAboveLimit,
    ProductUnavailable,
    Rejected,
    SupplierError,
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

log = logging.getLogger("kamibot.suppliers.kashangwl")

STATES = {100: OrderStatus.PENDING, 101: OrderStatus.PROCESSING, 200: OrderStatus.SUCCEEDED,
          500: OrderStatus.FAILED, 501: OrderStatus.UNKNOWN}
PRODUCT_TYPES = {1: ProductType.RECHARGE, 2: ProductType.CARD, 3: ProductType.VOUCHER, 4: ProductType.MANUAL}
UNKNOWN_CODE = "server_error"
DUPLICATE_CODE = "outer_order_id_exists"
NOT_FOUND_CODE = "order_not_found"
_REFUSALS: dict[str, type[DefinitiveFailure]] = {
    "sign_error": AuthenticationFailed, "customer_not_found": AuthenticationFailed,
    "timestamp_expired": AuthenticationFailed, "balance_not_enough": InsufficientBalance,
    "product_not_found": ProductUnavailable, "product_unavailable": ProductUnavailable,
    "out_of_stock": ProductUnavailable, "price_above_safe_cost": PriceAboveLimit,
    "invalid_recharge_account": InvalidTarget,
}
_UNSIGNED_CALLBACK_FIELDS = frozenset({"sign", "cards", "tickets"})


def sign(key: str, params: Mapping[str, str]) -> str:
    """md5(key + k1v1k2v2...) over the parameters in ascending key order, `sign` itself left out."""
    text = key + "".join(k + params[k] for k in sorted(params) if k != "sign")
    return hashlib.md5(text.encode()).hexdigest()


@dataclass(frozen=True)
class KashangwlConfig:
    base_url: str  # http://www.kashangwl.com or a white-label copy
    customer_id: str
    key: str = field(repr=False)
    notify_url: str = ""
    name: str = "kashangwl"
    product_ids: tuple[str, ...] = ()  # the catalogue we follow: the API reads products one id at a time
    currency: str = "CNY"
    policy: HttpPolicy = HttpPolicy()


class KashangwlSupplier:
    queries_by_reference = True
    callback_answer: bytes | None = b"ok"

    def __init__(self, config: KashangwlConfig, http: aiohttp.ClientSession | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.name = config.name
        self.clock = clock
        self.http = SupplierHttp(config.name, config.base_url, config.policy, http)

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- wire --------------------------------------------------------------------------------------------------
    def _signed(self, params: Mapping[str, str]) -> dict[str, str]:
        form = {**params, "customer_id": self.config.customer_id, "timestamp": str(int(self.clock() * 1000))}
        form["sign"] = sign(self.config.key, form)
        return form

    async def _read(self, path: str, params: dict[str, str], our_ref: str = "") -> Any:
        answer = await self.http.read(path, lambda: self._signed(params), our_ref)
        code = str(answer.get("code", ""))
        if code == "ok":
            return answer.get("data")
        if code == UNKNOWN_CODE:
            raise SupplierUnavailable(f"{path}: server_error", supplier=self.name, our_ref=our_ref)
        if code == NOT_FOUND_CODE:
            raise OrderNotFound(f"{path}: {self._message(answer)}", supplier=self.name, our_ref=our_ref)
        raise _REFUSALS.get(code, Rejected)(f"{path}: {code} {self._message(answer)}", supplier=self.name,
                                            our_ref=our_ref)

    def _message(self, answer: Mapping[str, Any]) -> str:
        return scrub(str(answer.get("message", "")), self.config.key)

    # -- reads ---------------------------------------------------------------------------------------------------
    async def catalogue(self) -> list[SupplierProduct]:
        products = []
        for product_id in self.config.product_ids:
            try:
                products.append(await self.product(product_id))
            except (BadAnswer, ProductUnavailable) as exc:
                log.warning("event=supplier.product_skipped supplier=%s product=%s reason=%s", self.name, product_id,
                            exc.kind)
        return products

    async def product(self, product_id: str) -> SupplierProduct:
        data = _object(await self._read("/api/product", {"product_id": product_id}), "/api/product")
        if data.get("stock_state", 1) != 1:
            stock = StockState.OFF_SALE
        else:
            stock = StockState.OUT_OF_STOCK if data.get("supply_state", 1) == 2 else StockState.IN_STOCK
        name = " ".join(str(part) for part in (data.get("product_name"), data.get("name")) if part)
        return SupplierProduct(
            product_id=str(data.get("id", product_id)), name=name or product_id,
            cost=Money(yuan_to_minor(data.get("price"), "price"), self.config.currency), stock=stock,
            product_type=PRODUCT_TYPES.get(_int(data.get("type")) or 0, ProductType.MANUAL))

    async def recharge_params(self, product_id: str) -> dict[str, Any]:
        """What a recharge product asks for (account label, template inputs): /api/product/recharge-params."""
        return _object(await self._read("/api/product/recharge-params", {"product_id": product_id}),
                       "/api/product/recharge-params")

    async def balance(self) -> Money:
        data = _object(await self._read("/api/customer", {}), "/api/customer")
        raw = str(data.get("balance", "")).strip()
        negative = raw.startswith("-")
        amount = yuan_to_minor(raw.lstrip("-"), "balance")
        return Money(-amount if negative else amount, self.config.currency)

    async def query(self, our_ref: str, supplier_order_id: str | None = None) -> SupplierOrder:
        if supplier_order_id:
            data = await self._read("/api/order", {"order_id": supplier_order_id}, our_ref)
        else:
            data = await self._read("/api/outer-order", {"outer_order_id": our_ref}, our_ref)
        order = self._order(_object(data, "order"), our_ref)
        outer = _object(data, "order").get("outer_order_id")
        if outer not in (None, "", our_ref):
            raise BadAnswer("the order found belongs to another reference", supplier=self.name, our_ref=our_ref)
        return order

    # -- writes --------------------------------------------------------------------------------------------------
    async def buy_codes(self, our_ref: str, product_id: str, quantity: int, max_unit_cost: Money) -> SupplierOrder:
        return await self._buy(our_ref, product_id, quantity, max_unit_cost, {})

    async def recharge(self, our_ref: str, product_id: str, target_account: str, quantity: int,
                       max_unit_cost: Money) -> SupplierOrder:
        if not target_account.strip():
            raise InvalidTarget("empty recharge account", supplier=self.name, our_ref=our_ref)
        return await self._buy(our_ref, product_id, quantity, max_unit_cost,
                               {"recharge_account": target_account.strip()})

    async def _buy(self, our_ref: str, product_id: str, quantity: int, max_unit_cost: Money,
                   extra: dict[str, str]) -> SupplierOrder:
        if quantity < 1:
            raise ValueError("quantity must be at least 1")
        if max_unit_cost.currency != self.config.currency:
            raise ValueError(f"max_unit_cost in {max_unit_cost.currency}, supplier prices in {self.config.currency}")
        params = {"product_id": product_id, "quantity": str(quantity), "outer_order_id": our_ref,
                  "safe_cost": minor_to_yuan(max_unit_cost.amount), **extra}
        if self.config.notify_url:
            params["notify_url"] = self.config.notify_url
        answer = await self.http.write("/api/buy", self._signed(params), our_ref)
        code = str(answer.get("code", ""))
        if code == "ok":
            try:
                return self._order(_object(answer.get("data"), "/api/buy"), our_ref, product_id, quantity)
            except BadAnswer as exc:
                raise OutcomeUnknown(f"/api/buy answer unreadable: {exc.detail}", supplier=self.name,
                                     our_ref=our_ref) from None
        if code == UNKNOWN_CODE:
            raise OutcomeUnknown("/api/buy: server_error", supplier=self.name, our_ref=our_ref)
        if code == DUPLICATE_CODE:
            return await self._existing(our_ref)
        log.info("event=supplier.refused supplier=%s ref=%s code=%s", self.name, our_ref, code or "-")
        raise _REFUSALS.get(code, Rejected)(f"/api/buy: {code} {self._message(answer)}", supplier=self.name,
                                            our_ref=our_ref)

    async def _existing(self, our_ref: str) -> SupplierOrder:
        """Our reference is already an order there (a retried buy): that order is the answer."""
        try:
            return await self.query(our_ref)
        except SupplierError as exc:
            raise OutcomeUnknown(f"reference already used, its order unreadable ({exc.kind})", supplier=self.name,
                                 our_ref=our_ref) from None

    # -- parsing -------------------------------------------------------------------------------------------------
    def _order(self, data: Mapping[str, Any], our_ref: str, product_id: str | None = None,
               quantity: int | None = None) -> SupplierOrder:
        state = _int(data.get("state"))
        if state is None:
            raise BadAnswer("order without a state", supplier=self.name, our_ref=our_ref)
        supplier_order_id = data.get("order_id", data.get("id"))
        if supplier_order_id in (None, ""):
            raise BadAnswer("order without an id", supplier=self.name, our_ref=our_ref)
        total = data.get("total_price")
        return SupplierOrder(
            our_ref=our_ref, status=STATES.get(state) or OrderStatus.UNKNOWN, supplier_order_id=str(supplier_order_id),
            codes=_codes(data), cost=None if total in (None, "") else Money(yuan_to_minor(total, "total_price"),
                                                                             self.config.currency),
            product_id=str(data.get("product_id", product_id or "")) or None,
            quantity=_int(data.get("quantity")) or quantity,
            detail=scrub(str(data.get("state_info") or data.get("recharge_info") or ""), self.config.key))

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> SupplierOrder:
        fields = _callback_fields(headers, body)
        if fields is None or not isinstance(fields.get("sign"), str):
            raise ForgedCallback("unreadable or unsigned callback", supplier=self.name)
        signed = {k: v for k, v in fields.items() if k not in _UNSIGNED_CALLBACK_FIELDS}
        if not all(isinstance(v, str) for v in signed.values()):
            raise ForgedCallback("callback fields are not flat", supplier=self.name)
        expected = sign(self.config.key, signed)
        if not hmac.compare_digest(expected, str(fields["sign"]).lower()) \
                or signed.get("customer_id") != self.config.customer_id:
            log.warning("event=supplier.callback_forged supplier=%s ref=%s", self.name,
                        scrub(str(signed.get("outer_order_id", "-")), limit=64))
            raise ForgedCallback("signature does not verify", supplier=self.name,
                                 our_ref=scrub(str(signed.get("outer_order_id", "")), limit=64))
        our_ref = signed.get("outer_order_id", "")
        try:
            order = self._order({**signed, "state": _int(signed.get("state"))}, our_ref)
        except BadAnswer as exc:
            raise ForgedCallback(f"signed callback without {exc.detail}", supplier=self.name,
                                 our_ref=our_ref) from None
        # codes and tickets are outside the signature: never believed from a callback, fetched with query()
        return SupplierOrder(our_ref=order.our_ref, status=order.status, supplier_order_id=order.supplier_order_id,
                             product_id=order.product_id, quantity=order.quantity, detail=order.detail)


def _callback_fields(headers: Mapping[str, str], body: bytes) -> dict[str, Any] | None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    if "json" in content_type or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        return {k: v if isinstance(v, list | dict) else ("" if v is None else str(v)) for k, v in data.items()}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        return None
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if key in fields:
            return None  # a repeated field could smuggle a second value past the signature
        fields[key] = value
    return fields


def _codes(data: Mapping[str, Any]) -> tuple[str, ...]:
    """Card codes as 'number password' (either alone when the other is empty), tickets as their text."""
    codes: list[str] = []
    for card in data.get("cards") or []:
        if isinstance(card, dict):
            number = str(card.get("card_no", card.get("no", "")) or "").strip()
            password = str(card.get("card_password", card.get("password", "")) or "").strip()
            code = " ".join(part for part in (number, password) if part)
            if code:
                codes.append(code)
    for ticket in data.get("tickets") or []:
        if isinstance(ticket, dict) and str(ticket.get("ticket", "")).strip():
            codes.append(" ".join(p for p in (str(ticket.get("no", "")).strip(), str(ticket["ticket"]).strip()) if p))
    return tuple(codes)


def _object(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadAnswer(f"{what}: data is not an object")
    return data


def _int(raw: Any) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit() and raw.strip().isascii():
        return int(raw)
    return None
