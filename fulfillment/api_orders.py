"""The order API's shop verbs: the client's catalogue (API prices and stock state), the wallet-paid order placed in
one store transaction (storage ApiOrderStore.place_api_order) and answered with its codes, an order by the client's
own number. The channel (handlers/api/) parses and authenticates; everything that decides is here."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from fulfillment.api_errors import ApiCode, ApiError
from fulfillment.callback_urls import BadCallbackUrl, check_callback_url
from fulfillment.catalog import CatalogService
from fulfillment.checkpoints import Checkpoints, NoCheckpoints
from fulfillment.distributors import ClientPrices
from fulfillment.errors import BadQuantity
from fulfillment.orders import MAX_QUANTITY, REFUNDABLE, WITH_CODES, parse_quantity
from fulfillment.recharge_target import BadTarget, check_target
from fulfillment.ttl_cache import TtlCache
from fulfillment.vault import Vault
from storage import errors as store_errors
from storage.protocol import Store
from storage.protocols.api import ApiClient, ApiOrderIn, DuplicateOrderNo, InsufficientBalance, NonceUsed
from storage.records import NewTicket, OnceKey, Order, OrderItem, Price, Sku

log = logging.getLogger("kamibot.api")
CHANNEL = "api"
#: checkpoint (fulfillment/checkpoints.py): the order is placed and paid (committed), its answer not yet sent
API_ORDER_PLACED = "api.order_placed"
#: how long a process reuses a SKU and its API price for orders: a merchant's change reaches API orders within it
CATALOG_TTL_S = 1.0
#: what the order transaction refused (nothing changed), as the API's codes
_REFUSALS: dict[type[Exception], ApiCode] = {
    NonceUsed: ApiCode.NONCE_REUSED, InsufficientBalance: ApiCode.INSUFFICIENT_BALANCE,
    store_errors.InsufficientStock: ApiCode.OUT_OF_STOCK, store_errors.PurchaseLimitReached: ApiCode.LIMIT_REACHED,
    store_errors.UnknownRecord: ApiCode.UNKNOWN_SKU, DuplicateOrderNo: ApiCode.DUPLICATE_ORDER_NO,
}


@dataclass(frozen=True)
class ProductView:
    sku: str
    name_en: str
    name_zh: str
    product: str
    price: int
    currency: str
    min_quantity: int
    max_quantity: int
    stock: str  # in_stock | low | out_of_stock
    available: int  # items sellable now

    def as_json(self) -> dict[str, object]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class OrderView:
    client_order_no: str
    order_no: str
    state: str
    sku: str
    quantity: int
    amount: int
    currency: str
    created_at: str
    codes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class OrderRequest:
    client_order_no: str
    sku: str
    quantity: object  # as sent: parse_quantity decides
    callback_url: str = ""
    target: str | None = None  # a recharge SKU's target, checked against the SKU's rule

    def digest(self) -> str:
        """Of the canonical body: the same order sent twice hashes the same, whatever the JSON spelling."""
        fields: list[object] = [self.client_order_no, self.sku, str(self.quantity), self.callback_url]
        if self.target is not None:  # bodies without a target hash as they always did
            fields.append(self.target)
        canon = json.dumps(fields, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()


class ApiOrders:
    def __init__(self, store: Store, catalog: CatalogService, vault: Vault, allow_private_callbacks: bool = False,
                 checkpoints: Checkpoints | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.checkpoints = checkpoints or NoCheckpoints()
        self._offers: TtlCache[str, tuple[Sku | None, Price | None]] = TtlCache(CATALOG_TTL_S)
        self._price_lists: TtlCache[int, dict[int, tuple[str, int]]] = TtlCache(CATALOG_TTL_S)
        #: a distributor's price list (fixed prices, discount, cost floor) when the client is one
        self.distributor_prices = ClientPrices(store)
        self.catalog = catalog
        self.vault = vault
        self.allow_private_callbacks = allow_private_callbacks
        self.clock = clock

    async def _client_prices(self, client_id: int) -> dict[int, tuple[str, int]]:
        """The client's price list, remembered for CATALOG_TTL_S."""
        return await self._price_lists.get(client_id, lambda: self.store.api_prices(client_id))

    async def _price_for(self, client: ApiClient, sku: Sku, channel_price: Price | None) -> Price | None:
        own = (await self._client_prices(client.id)).get(sku.id)
        mine = Price(sku.id, CHANNEL, own[0], own[1]) if own is not None else None
        return await self.distributor_prices.price(client.id, sku, mine, channel_price)

    async def _view(self, client: ApiClient, sku: Sku) -> ProductView | None:
        price = await self._price_for(client, sku, await self.catalog.price_on(sku.id, CHANNEL))
        product = await self.catalog.product(sku.product_id)
        if price is None or product is None or not product.active or not sku.active:
            return None
        available = await self.catalog.sellable(sku)
        pool = next((p for p in await self.store.pools() if p.id == sku.pool_id), None)
        low = pool is not None and available * sku.units <= pool.low_stock
        stock = "out_of_stock" if available <= 0 else "low" if low else "in_stock"
        return ProductView(sku.slug, sku.name_en, sku.name_zh, product.slug, price.amount, price.currency,
                           sku.min_qty, sku.max_qty, stock, max(available, 0))

    async def products(self, client: ApiClient) -> list[ProductView]:
        """Every active SKU the client can buy: at its own price, else at the `api` channel price."""
        views = [await self._view(client, sku) for sku in await self.catalog.skus()]
        return [v for v in views if v is not None]

    async def product(self, client: ApiClient, slug: str) -> ProductView:
        sku = await self.store.sku_by_slug(slug)
        view = await self._view(client, sku) if sku is not None else None
        if view is None:
            raise ApiError(ApiCode.UNKNOWN_SKU)
        return view

    async def _offer(self, client: ApiClient, slug: str) -> tuple[Sku | None, Price | None]:
        """The SKU of a slug and the client's price of it; the SKU and the channel price are remembered for
        CATALOG_TTL_S (each order would read both again)."""
        async def read() -> tuple[Sku | None, Price | None]:
            sku = await self.store.sku_by_slug(slug)
            return sku, await self.catalog.price_on(sku.id, CHANNEL) if sku is not None and sku.active else None

        sku, price = await self._offers.get(slug, read)
        if sku is None or not sku.active:
            return sku, None
        return sku, await self._price_for(client, sku, price)

    async def place(self, client: ApiClient, req: OrderRequest, nonce: OnceKey | None = None) -> OrderView:
        """Place (or find again) the client's order, claiming the request's nonce in the same transaction when
        given; every refusal changes nothing."""
        sku, price = await self._offer(client, req.sku)
        if sku is None or not sku.active:
            raise ApiError(ApiCode.UNKNOWN_SKU)
        try:
            quantity = parse_quantity(req.quantity)
        except BadQuantity:
            raise ApiError(ApiCode.BAD_QUANTITY) from None
        if not sku.min_qty <= quantity <= min(sku.max_qty, MAX_QUANTITY):
            raise ApiError(ApiCode.BAD_QUANTITY)
        if price is None:
            raise ApiError(ApiCode.NO_PRICE)
        target = _checked_target(sku.target_rule, req.target)
        if req.callback_url:
            try:
                await check_callback_url(req.callback_url, self.allow_private_callbacks)
            except BadCallbackUrl:
                raise ApiError(ApiCode.BAD_CALLBACK_URL) from None
        now = self.clock()
        new = ApiOrderIn(client.id, req.client_order_no, req.digest(), req.callback_url, sku.id, quantity,
                         price.amount * quantity, price.currency, now + timedelta(minutes=15), target=target)
        try:
            placed = await self.store.place_api_order(new, now, nonce)
        except tuple(_REFUSALS) as exc:
            raise ApiError(_REFUSALS[type(exc)]) from None
        self.checkpoints.reach(API_ORDER_PLACED)
        if placed.fresh:
            log.info("event=api.order_placed order_id=%s client_id=%s sku_id=%s quantity=%s",
                     placed.order_id, client.id, sku.id, quantity)
        return self._view_of(placed.order, req.client_order_no, sku, placed.items)

    async def request_refund(self, client: ApiClient, client_order_no: str, reason: str) -> OrderView:
        """A refund request for the merchant: a `refund` ticket about the order (the same live one again on a
        repeat). The merchant refunds in chat (/refund: the money goes back to the wallet, `order.refunded` is
        called back) or closes the ticket."""
        link = await self.store.api_order(client.id, client_order_no)
        order = await self.store.order_by_id(link.order_id) if link is not None else None
        if order is None:
            raise ApiError(ApiCode.UNKNOWN_ORDER)
        if order.state not in REFUNDABLE:
            raise ApiError(ApiCode.NOT_REFUNDABLE)
        ticket = await self.store.open_ticket(NewTicket(CHANNEL, order.user_id, order.chat_id, "refund",
                                                        reason.strip()[:500], order.id), self.clock())
        log.info("event=api.refund_requested order_id=%s ticket_id=%s", order.id, ticket.id)
        sku = await self.store.sku_by_id(order.sku_id)
        assert sku is not None
        return await self._order_view(order, client_order_no, sku)

    async def order(self, client: ApiClient, client_order_no: str) -> OrderView:
        link = await self.store.api_order(client.id, client_order_no)
        order = await self.store.order_by_id(link.order_id) if link is not None else None
        if order is None:
            raise ApiError(ApiCode.UNKNOWN_ORDER)
        sku = await self.store.sku_by_id(order.sku_id)
        assert sku is not None
        return await self._order_view(order, client_order_no, sku)

    async def _order_view(self, order: Order, client_order_no: str, sku: Sku) -> OrderView:
        items = await self.store.order_items(order.id) if order.state in WITH_CODES else []
        return self._view_of(order, client_order_no, sku, items)

    def _view_of(self, order: Order, client_order_no: str, sku: Sku, items: Sequence[OrderItem]) -> OrderView:
        codes = [self.vault.open(item.code) for item in items] if order.state in WITH_CODES else []
        return OrderView(client_order_no, order.ref, order.state.value, sku.slug, order.quantity, order.amount,
                         order.currency, order.created_at.astimezone(UTC).isoformat(timespec="seconds"), codes)


def _checked_target(rule: str | None, text: str | None) -> str | None:
    """A recharge SKU's target normalised by the same check as the chat dialog (fulfillment/recharge_target.py),
    None for a SKU of codes; BAD_TARGET for a missing, malformed or unexpected one."""
    if rule is None:
        if text is not None:
            raise ApiError(ApiCode.BAD_TARGET)
        return None
    try:
        return check_target(rule, text or "")
    except BadTarget:
        raise ApiError(ApiCode.BAD_TARGET) from None


class WalletProvider:
    """The payment provider of wallet-paid API orders: a refund (merchant's, or an order that failed) credits the
    client's wallet with one ledger line per order (a second call changes nothing)."""

    name = "wallet"

    def __init__(self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock

    async def refund(self, order: Order, provider_txn_id: str, amount: int) -> str:
        link = await self.store.api_order_of(order.id)
        if link is None:
            raise ApiError(ApiCode.UNKNOWN_ORDER)
        await self.store.adjust_wallet(link.client_id, order.currency, amount, "refund", order.ref, self.clock(),
                                       order_id=order.id)
        log.info("event=api.wallet_refund order_id=%s client_id=%s", order.id, link.client_id)
        return f"wallet:{order.ref}"
