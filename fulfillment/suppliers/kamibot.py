"""Another kamibot shop as a supplier, through that shop's signed order API (`/api/v1`).

Wire source: our own order API, as the upstream serves it and documents it at `/api/openapi.json`
(handlers/api/openapi.py, generated from handlers/api/models.py and fulfillment/api_orders.py), its request
signature (fulfillment/api_signing.py: X-Kami-Key, X-Kami-Timestamp within 300 s, X-Kami-Nonce used once,
X-Kami-Signature = hex HMAC-SHA256 over METHOD, PATH, CANONICAL_QUERY, hex SHA256(body), TIMESTAMP, NONCE), its
error catalogue (fulfillment/api_errors.py: a stable `code`, "every refusal changes nothing") and its signed
callbacks (fulfillment/api_callbacks.py: `order.delivered`, `order.refunded`, and `order.failed`, signed the same
way with *our* key, over the callback URL's path and query, body without codes).

- catalogue = GET /products: our own prices at that shop (our price list there, else its `api` price), and
  its stock state (`in_stock`/`low` -> in stock, `out_of_stock`) with the count it sells now;
- buy N codes = POST /orders with our procurement reference as `client_order_no` AND as the `Idempotency-Key`:
  a repeat of the same request (a retry after a lost answer, or a second process) returns the first order byte for
  byte and can never buy twice; the order is paid from our prepaid wallet there in the same transaction as its
  allocation and is answered with its codes;
- query = GET /orders/{client_order_no}; `UNKNOWN_ORDER` (404) says the order does not exist. The upstream places
  an order in one transaction, and refuses a request whose timestamp is more than 300 s old, so "does not exist"
  some minutes after sending is definitive (the procurement's not_found_after window);
- balance = GET /wallet (our wallet balance in the supplier's currency);
- callbacks: verified with our own secret over POST, our notify URL's path and query, the body's SHA-256, the
  timestamp (±300 s) and a nonce (refused when seen before by this process; a replay that reaches another process
  only repeats a settlement, which is a no-op). `order.delivered` carries no codes: the procurement reads them with
  its own query. `order.failed` and `order.refunded` say nothing was (or stays) bought: our wallet was credited.

Mapping of the upstream's answers:
- INSUFFICIENT_BALANCE -> InsufficientBalance; OUT_OF_STOCK, UNKNOWN_SKU, NO_PRICE, LIMIT_REACHED ->
  ProductUnavailable; BAD_SIGNATURE, STALE_TIMESTAMP, NONCE_REUSED, UNKNOWN_KEY, MISSING_SCOPE ->
  AuthenticationFailed; MALFORMED, BAD_QUANTITY, BODY_TOO_LARGE, BAD_CALLBACK_URL, NOT_FOUND, RATE_LIMITED ->
  Rejected. All definitive: the API documents that each refusal changes nothing;
- DUPLICATE_ORDER_NO / IDEMPOTENCY_KEY_REUSED (our reference already names an order there, placed with another
  body): that order is read back and is the answer (the procurement holds it when its product or quantity differ);
- IDEMPOTENCY_IN_PROGRESS (the first request with our reference still runs), INTERNAL and any 5xx, a timeout or
  reset after sending, an answer that is not the documented JSON, or a refusal code we do not know -> OutcomeUnknown;
- order states: delivering/delivered with as many codes as ordered -> SUCCEEDED (with none yet -> PROCESSING, with
  another count -> UNKNOWN for a merchant); paid -> PROCESSING; created, reserved, awaiting_payment, review ->
  PENDING; refunded, failed, expired, rejected -> FAILED (our wallet keeps or gets back the money).

The API has no price guard: before buying we read GET /products/{sku} and refuse (PriceAboveLimit, nothing sent)
when our price there is above `max_unit_cost` (unless our reference is an order there already: a repeat gets that
order back); a price change between the two calls stays possible, and the charged `amount` comes back as the
order's cost. The API takes no recharge target: `recharge` refuses before sending.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from fulfillment import api_signing as signing
from fulfillment.suppliers.amounts import MAX_MINOR
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
    SupplierError,
    SupplierUnavailable,
)
from fulfillment.suppliers.protocol import (
    Money,
    OrderStatus,
    ProductType,
    StockState,
    SupplierOrder,
    SupplierProduct,
)
from fulfillment.suppliers.transport import Garbage, HttpPolicy, json_object

log = logging.getLogger("kamibot.suppliers.kamibot")

API_PREFIX = "/api/v1"
#: the API's client_order_no pattern (handlers/api/models.py ORDER_NO_PATTERN)
_ORDER_NO = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_SKU = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: failures raised before a byte of the request left (as in transport.py)
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)

_REFUSALS: dict[str, type[DefinitiveFailure]] = {
    "INSUFFICIENT_BALANCE": InsufficientBalance,
    "OUT_OF_STOCK": ProductUnavailable, "UNKNOWN_SKU": ProductUnavailable, "NO_PRICE": ProductUnavailable,
    "LIMIT_REACHED": ProductUnavailable,
    "BAD_SIGNATURE": AuthenticationFailed, "STALE_TIMESTAMP": AuthenticationFailed,
    "NONCE_REUSED": AuthenticationFailed, "UNKNOWN_KEY": AuthenticationFailed, "MISSING_SCOPE": AuthenticationFailed,
    "MALFORMED": Rejected, "BAD_QUANTITY": Rejected, "BODY_TOO_LARGE": Rejected, "BAD_CALLBACK_URL": Rejected,
    "NOT_FOUND": Rejected, "RATE_LIMITED": Rejected,
}
#: our reference already names an order there (another body): read that order
_TAKEN = frozenset({"DUPLICATE_ORDER_NO", "IDEMPOTENCY_KEY_REUSED"})
_STATES = {"paid": OrderStatus.PROCESSING, "created": OrderStatus.PENDING, "reserved": OrderStatus.PENDING,
           "awaiting_payment": OrderStatus.PENDING, "review": OrderStatus.PENDING,
           "refunded": OrderStatus.FAILED, "failed": OrderStatus.FAILED, "expired": OrderStatus.FAILED,
           "rejected": OrderStatus.FAILED}
_WITH_CODES = frozenset({"delivering", "delivered"})
_EVENTS = {"order.delivered": OrderStatus.SUCCEEDED, "order.failed": OrderStatus.FAILED,
           "order.refunded": OrderStatus.FAILED}


@dataclass(frozen=True)
class KamibotConfig:
    base_url: str  # the upstream shop's HTTP root (where /api/v1 lives), e.g. https://shop-a.example.com
    key_id: str  # our API key id at that shop (`kamibot api-keys create` there)
    secret: str = field(repr=False)
    notify_url: str = ""  # our callback URL (…/suppliers/NAME/notify), sent as callback_url; "" for none
    name: str = "kamibot"
    currency: str = "CNY"
    policy: HttpPolicy = HttpPolicy()


@dataclass(frozen=True)
class _Answer:
    status: int
    data: Any  # the parsed JSON body

    @property
    def code(self) -> str:
        return str(self.data.get("code", "")) if isinstance(self.data, dict) else ""


class KamibotSupplier:
    queries_by_reference = True
    callback_answer: bytes | None = b"ok"

    def __init__(self, config: KamibotConfig, http: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.name = config.name
        self.clock = clock
        self._root = config.base_url.rstrip("/")
        self._path_prefix = urlsplit(self._root).path.rstrip("/") + API_PREFIX
        self._http = http
        self._own_http = http is None
        self._signer = signing.Signer(config.key_id, config.secret)
        self._seen_nonces: dict[str, float] = {}  # callback nonces this process accepted, until they go stale

    async def aclose(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:  # a redirect must never carry a signed order elsewhere
            self._http = httpx.AsyncClient(timeout=self.config.policy.timeout(), follow_redirects=False)
        return self._http

    # -- wire ----------------------------------------------------------------------------------------------------
    async def _send(self, method: str, sub: str, body: bytes = b"", extra: Mapping[str, str] | None = None
                    ) -> _Answer:
        path = self._path_prefix + sub
        headers = self._signer.headers(method, path, "", body, timestamp=int(self.clock()))
        headers["accept"] = "application/json"
        if body:
            headers["content-type"] = "application/json"
        headers.update(extra or {})
        response = await self._client().request(method, self._root + API_PREFIX + sub, content=body, headers=headers,
                                                timeout=self.config.policy.timeout())
        if response.status_code >= 500:
            raise Garbage(f"HTTP {response.status_code}")
        return _Answer(response.status_code, json_object(response))

    async def _read(self, sub: str, our_ref: str = "") -> Any:
        """GET, retried with backoff (each attempt freshly signed); the answer's JSON on 200."""
        policy, last = self.config.policy, ""
        for attempt in range(max(1, policy.read_attempts)):
            if attempt:
                await asyncio.sleep(policy.retry_backoff * 2 ** (attempt - 1))
            try:
                answer = await self._send("GET", sub)
            except (Garbage, httpx.HTTPError) as exc:
                last = _describe(exc)
                log.warning("event=supplier.read_failed supplier=%s path=%s ref=%s attempt=%d reason=%s", self.name,
                            sub.split("/")[1], our_ref or "-", attempt + 1, last)
                continue
            if answer.status == 200:
                return answer.data
            if answer.code == "RATE_LIMITED":
                last = "RATE_LIMITED"
                continue
            if answer.code == "UNKNOWN_ORDER":
                raise OrderNotFound(f"{sub.split('/')[1]}: UNKNOWN_ORDER", supplier=self.name, our_ref=our_ref)
            raise _REFUSALS.get(answer.code, Rejected)(f"HTTP {answer.status} {answer.code or '-'}",
                                                       supplier=self.name, our_ref=our_ref)
        raise SupplierUnavailable(f"{sub.split('/')[1]}: {last}", supplier=self.name, our_ref=our_ref)

    # -- reads ---------------------------------------------------------------------------------------------------
    async def catalogue(self) -> list[SupplierProduct]:
        data = await self._read("/products")
        items = data.get("products")
        if not isinstance(items, list):
            raise BadAnswer("products: not a list", supplier=self.name)
        products = []
        for item in items:
            try:
                product = self._product(item)
            except BadAnswer as exc:
                log.warning("event=supplier.product_skipped supplier=%s reason=%s", self.name, exc.detail)
                continue
            if product.cost.currency != self.config.currency:
                log.info("event=supplier.product_skipped supplier=%s product=%s reason=currency", self.name,
                         product.product_id)
                continue
            products.append(product)
        return products

    def _product(self, item: Any) -> SupplierProduct:
        if not isinstance(item, dict) or not isinstance(item.get("sku"), str) or not _SKU.match(item["sku"]):
            raise BadAnswer("product without a valid sku")
        sku = item["sku"]
        price, available = _minor(item.get("price"), f"price of {sku}"), item.get("available")
        if not isinstance(available, int) or isinstance(available, bool) or available < 0:
            raise BadAnswer(f"available of {sku} is not a count")
        stock = {"in_stock": StockState.IN_STOCK, "low": StockState.IN_STOCK,
                 "out_of_stock": StockState.OUT_OF_STOCK}.get(str(item.get("stock")))
        if stock is None:
            raise BadAnswer(f"stock of {sku} is not a documented state")
        name = str(item.get("name_en") or item.get("name_zh") or sku)[:200]
        return SupplierProduct(product_id=sku, name=name, cost=Money(price, str(item.get("currency") or "")),
                               stock=stock if available > 0 else StockState.OUT_OF_STOCK,
                               product_type=ProductType.CARD, stock_count=available)

    async def product(self, sku: str, our_ref: str = "") -> tuple[SupplierProduct, int, int]:
        """One product with its min and max quantity (GET /products/{sku})."""
        data = await self._read(f"/products/{sku}", our_ref)
        product = self._product(data)
        low, high = data.get("min_quantity"), data.get("max_quantity")
        if not isinstance(low, int) or not isinstance(high, int):
            raise BadAnswer("product without its quantity range", supplier=self.name, our_ref=our_ref)
        return product, low, high

    async def balance(self) -> Money:
        data = await self._read("/wallet")
        balances = data.get("balances")
        if not isinstance(balances, dict):
            raise BadAnswer("wallet without balances", supplier=self.name)
        raw = balances.get(self.config.currency, 0)
        if isinstance(raw, bool) or not isinstance(raw, int) or abs(raw) > MAX_MINOR:
            raise BadAnswer("wallet balance is not an amount", supplier=self.name)
        return Money(raw, self.config.currency)

    async def query(self, our_ref: str, supplier_order_id: str | None = None) -> SupplierOrder:
        """The order by our reference (the upstream's client_order_no); its own order_no is not needed."""
        _check_ref(our_ref)
        data = await self._read(f"/orders/{our_ref}", our_ref)
        try:
            return self._order(data, our_ref)
        except BadAnswer as exc:
            raise BadAnswer(exc.detail, supplier=self.name, our_ref=our_ref) from None

    # -- writes --------------------------------------------------------------------------------------------------
    async def recharge(self, our_ref: str, product_id: str, target_account: str, quantity: int,
                       max_unit_cost: Money) -> SupplierOrder:
        raise Rejected("the kamibot order API takes no recharge target", supplier=self.name, our_ref=our_ref)

    async def buy_codes(self, our_ref: str, product_id: str, quantity: int, max_unit_cost: Money) -> SupplierOrder:
        _check_ref(our_ref)
        if quantity < 1:
            raise ValueError("quantity must be at least 1")
        if max_unit_cost.currency != self.config.currency:
            raise ValueError(f"max_unit_cost in {max_unit_cost.currency}, supplier prices in {self.config.currency}")
        if not _SKU.match(product_id):
            raise ProductUnavailable("not a kamibot SKU", supplier=self.name, our_ref=our_ref)
        try:
            await self._check(our_ref, product_id, quantity, max_unit_cost)
        except DefinitiveFailure:
            placed = await self._placed_before(our_ref)
            if placed is None:
                raise
            return placed  # a repeat of a reference already placed: its order, whatever the price or stock now
        order: dict[str, object] = {"client_order_no": our_ref, "sku": product_id, "quantity": quantity}
        if self.config.notify_url:
            order["callback_url"] = self.config.notify_url
        body = json.dumps(order, separators=(",", ":"), sort_keys=True).encode()
        try:
            answer = await self._send("POST", "/orders", body, {signing.IDEMPOTENCY_HEADER: our_ref})
        except _NOT_SENT as exc:
            log.warning("event=supplier.not_sent supplier=%s ref=%s reason=%s", self.name, our_ref, _describe(exc))
            raise NotSent(f"orders: {_describe(exc)}", supplier=self.name, our_ref=our_ref) from None
        except (Garbage, httpx.HTTPError) as exc:
            log.warning("event=supplier.outcome_unknown supplier=%s ref=%s reason=%s", self.name, our_ref,
                        _describe(exc))
            raise OutcomeUnknown(f"orders: {_describe(exc)}", supplier=self.name, our_ref=our_ref) from None
        if answer.status in (200, 201):
            try:
                return self._order(answer.data, our_ref, product_id, quantity)
            except BadAnswer as exc:
                raise OutcomeUnknown(f"order answer unreadable: {exc.detail}", supplier=self.name,
                                     our_ref=our_ref) from None
        code = answer.code
        if code in _TAKEN:
            return await self._existing(our_ref, code)
        refusal = _REFUSALS.get(code)
        if refusal is None:  # IDEMPOTENCY_IN_PROGRESS, or a code this adapter does not know: it may have happened
            log.warning("event=supplier.outcome_unknown supplier=%s ref=%s reason=%s", self.name, our_ref,
                        code or answer.status)
            raise OutcomeUnknown(f"orders: HTTP {answer.status} {code or '-'}", supplier=self.name, our_ref=our_ref)
        log.info("event=supplier.refused supplier=%s ref=%s code=%s", self.name, our_ref, code)
        raise refusal(f"orders: {code}", supplier=self.name, our_ref=our_ref)

    async def _check(self, our_ref: str, sku: str, quantity: int, max_unit_cost: Money) -> None:
        """Price and quantity range before buying (the API has no price guard); nothing is sent on failure."""
        try:
            product, low, high = await self.product(sku, our_ref)
        except (SupplierUnavailable, BadAnswer) as exc:
            raise NotSent(f"price check failed ({exc.kind}); nothing bought", supplier=self.name,
                          our_ref=our_ref) from None
        if product.cost.currency != max_unit_cost.currency:
            raise Rejected(f"priced in {product.cost.currency[:8]}, not {max_unit_cost.currency}", supplier=self.name,
                           our_ref=our_ref)
        if product.cost.amount > max_unit_cost.amount:
            raise PriceAboveLimit(f"unit cost {product.cost.amount} above {max_unit_cost.amount}",
                                  supplier=self.name, our_ref=our_ref)
        if not low <= quantity <= high:
            raise Rejected(f"quantity {quantity} outside {low}..{high}", supplier=self.name, our_ref=our_ref)
        # stock is not checked here: the upstream refuses OUT_OF_STOCK itself, in the order's own transaction

    async def _placed_before(self, our_ref: str) -> SupplierOrder | None:
        try:
            return await self.query(our_ref)
        except SupplierError:
            return None

    async def _existing(self, our_ref: str, code: str) -> SupplierOrder:
        """Our reference already names an order there: that order is the answer."""
        try:
            return await self.query(our_ref)
        except SupplierError as exc:
            raise OutcomeUnknown(f"{code}, its order unreadable ({exc.kind})", supplier=self.name,
                                 our_ref=our_ref) from None

    # -- parsing -------------------------------------------------------------------------------------------------
    def _order(self, data: Any, our_ref: str, product_id: str | None = None,
               quantity: int | None = None) -> SupplierOrder:
        if not isinstance(data, dict):
            raise BadAnswer("order is not an object")
        if data.get("client_order_no") != our_ref:
            raise BadAnswer("the order answered belongs to another reference")
        state, order_no, sku = data.get("state"), data.get("order_no"), data.get("sku")
        count = data.get("quantity")
        if not isinstance(state, str) or not isinstance(order_no, str) or not order_no or not isinstance(sku, str):
            raise BadAnswer("order without its state, number or sku")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise BadAnswer("order without a quantity")
        currency = data.get("currency")
        if not isinstance(currency, str) or not currency:
            raise BadAnswer("order without a currency")
        cost = Money(_minor(data.get("amount"), "amount"), currency)
        raw_codes = data.get("codes") or []
        if not isinstance(raw_codes, list) or not all(isinstance(c, str) for c in raw_codes):
            raise BadAnswer("codes are not a list of strings")
        codes = tuple(c.strip() for c in raw_codes if c.strip())
        detail = state[:32]
        if state in _WITH_CODES:
            if len(codes) == count:
                status = OrderStatus.SUCCEEDED
            elif not codes:
                status = OrderStatus.PROCESSING
            else:
                log.warning("event=supplier.code_count_mismatch supplier=%s ref=%s codes=%d ordered=%d", self.name,
                            our_ref, len(codes), count)
                status, detail = OrderStatus.UNKNOWN, f"{state[:32]}, but {len(codes)} codes for {count}"
        else:
            status = _STATES.get(state, OrderStatus.UNKNOWN)
        return SupplierOrder(our_ref=our_ref, status=status, supplier_order_id=order_no,
                             codes=codes if status is OrderStatus.SUCCEEDED else (), cost=cost,
                             product_id=sku or product_id, quantity=count or quantity, detail=detail)

    def parse_callback(self, headers: Mapping[str, str], body: bytes) -> SupplierOrder:
        low = {k.lower(): v for k, v in headers.items()}
        stamp = low.get(signing.TIMESTAMP_HEADER, "")
        nonce = low.get(signing.NONCE_HEADER, "")
        signature = low.get(signing.SIGNATURE_HEADER, "")
        if not self.config.notify_url:
            raise ForgedCallback("no notify URL configured: callbacks are not expected", supplier=self.name)
        if low.get(signing.KEY_HEADER) != self.config.key_id or not signature or not stamp.isdigit() \
                or not 8 <= len(nonce) <= 64:
            raise ForgedCallback("callback without our key id, timestamp, nonce or signature", supplier=self.name)
        now = self.clock()
        if abs(now - int(stamp)) > signing.WINDOW_S:
            raise ForgedCallback("stale callback timestamp", supplier=self.name)
        url = urlsplit(self.config.notify_url)
        if not signing.matches(self.config.secret, signature, "POST", url.path or "/", url.query, body, stamp, nonce):
            log.warning("event=supplier.callback_forged supplier=%s", self.name)
            raise ForgedCallback("signature does not verify", supplier=self.name)
        self._seen_nonces = {n: t for n, t in self._seen_nonces.items() if t > now}
        if nonce in self._seen_nonces:
            raise ForgedCallback("callback nonce seen before (a replay)", supplier=self.name)
        self._seen_nonces[nonce] = now + 2 * signing.WINDOW_S
        return self._event(body)

    def _event(self, body: bytes) -> SupplierOrder:
        try:
            event = json.loads(body)
        except ValueError:
            raise ForgedCallback("signed callback is not JSON", supplier=self.name) from None
        order = event.get("order") if isinstance(event, dict) else None
        if not isinstance(order, dict) or not isinstance(order.get("client_order_no"), str) \
                or not _ORDER_NO.match(order["client_order_no"]):
            raise ForgedCallback("signed callback without its order", supplier=self.name)
        our_ref, kind = order["client_order_no"], str(event.get("type", ""))
        status = _EVENTS.get(kind, OrderStatus.UNKNOWN)
        if kind == "order.refunded":
            log.warning("event=supplier.refunded_upstream supplier=%s ref=%s", self.name, our_ref)
        count = order.get("quantity")
        amount, currency = order.get("amount"), order.get("currency")
        cost = None
        if isinstance(amount, int) and not isinstance(amount, bool) and 0 <= amount <= MAX_MINOR \
                and isinstance(currency, str) and currency:
            cost = Money(amount, currency)
        sku = order.get("sku")
        order_no = order.get("order_no")
        return SupplierOrder(our_ref=our_ref, status=status,
                             supplier_order_id=order_no if isinstance(order_no, str) and order_no else None,
                             cost=cost, product_id=sku if isinstance(sku, str) and sku else None,
                             quantity=count if isinstance(count, int) and not isinstance(count, bool) else None,
                             detail=kind[:32])


def _check_ref(our_ref: str) -> None:
    if not _ORDER_NO.match(our_ref):
        raise ValueError("our reference does not fit the API's client_order_no pattern")


def _minor(raw: object, what: str) -> int:
    """An amount the API gives in integer minor units; anything else (float, string, negative, absurd) refused."""
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0 or raw > MAX_MINOR:
        raise BadAnswer(f"{what} is not an amount in minor units")
    return raw


def _describe(exc: BaseException) -> str:
    """The failure's type and, for our garbage marker, its note; httpx texts can quote URLs, so not theirs."""
    return str(exc) if isinstance(exc, Garbage) else type(exc).__name__
