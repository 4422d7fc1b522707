"""Distributors (issue 15): partners who buy through the order API at their own prices (paid from the API client's
prepaid wallet) and/or bring customers in chat for a commission.

- A price list per distributor: fixed prices per SKU and a discount (basis points) off the `api` channel price;
  never below the SKU's cost (the newest batch's cost per use, the cheapest in-stock supplier source, whichever is
  higher) unless the merchant set a fixed price with the explicit override.
- Commission: a rate (basis points) per distributor, optionally per SKU, of the delivered orders of customers whose
  referrer is the distributor's code, placed after the distributor was added. The accrual pass writes one ledger
  line per delivered order (0 while the rate is 0: a later rate never reaches back) and one reversal per refunded
  order (unique per order and kind in the store), so it can run any number of times, in any process,
  after a delivery or as a job: it is decoupled from the payment and delivery transactions.
- Payouts recorded by the merchant lower the payable balance (never below zero); statements per month read the
  same ledger (fulfillment/distributor_statement.py).
- Refunds: a partial refund reverses its share of the order's commission in its own transaction, the full refund
  the rest in its own (storage/sqlite_commission.py: the rounding). A refund of commission already paid out takes
  the payable balance below zero: that clawback is carried, offset by the next accruals, and no payout is
  accepted until the balance is positive again (and never more than it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from fulfillment.api_clients import MAX_TOP_UP, ApiKeys, NewKey
from fulfillment.delivery import Delivery, DeliveryWorker
from fulfillment.errors import ShopError
from fulfillment.suppliers.protocol import StockState
from fulfillment.ttl_cache import TtlCache
from storage.protocol import Store
from storage.protocols.api import ApiClient, WalletLine
from storage.protocols.distributors import (
    CommissionKind,
    CommissionLine,
    Distributor,
    DistributorPrice,
    DistributorTaken,
    PayableExceeded,
)
from storage.records import OrderState, Price, Sku

log = logging.getLogger("kamibot.distributors")
__all__ = ["CommissionKind", "CommissionLine", "Distributor", "DistributorDesk", "DistributorPrice",
           "DistributorRefused"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")  # also its referral code: /start ref_<name> (≤ 64 bytes)
_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_BP = 10_000
#: orders of these channels earn no commission: API orders are the distributor's own purchases
NO_COMMISSION_CHANNELS = ("api",)
DELIVERED = (OrderState.DELIVERED.value,)
REFUNDED = (OrderState.REFUNDED.value,)
PASS_BATCH = 500
#: how often the job looks for delivered and refunded orders (a delivery in this process accrues at once)
PASS_EVERY_S = 30.0
#: a process reuses a client's price list and a SKU's cost this long (a merchant's change reaches orders within it)
PRICE_TTL_S = 1.0


class DistributorRefused(ShopError):
    """A merchant's distributor command refused (nothing changed): a locale message id and its parameters."""

    def __init__(self, message_id: str, **params: object) -> None:
        super().__init__(message_id, **params)
        self.message_id = message_id


def discounted(amount: int, bp: int) -> int:
    """amount × (1 - bp/10000), rounded up (the shop never gives away a fraction of a minor unit)."""
    return -(-amount * (MAX_BP - bp) // MAX_BP)


def commission(amount: int, bp: int) -> int:
    """amount × bp/10000 rounded down, as the store's accrual computes it."""
    return amount * bp // MAX_BP


async def sku_cost(store: Store, sku: Sku, currency: str) -> int | None:
    """What one item of the SKU costs the shop in `currency`; None when no cost is known in it."""
    costs: list[int] = []
    last = await store.pool_last_cost(sku.pool_id)
    if last is not None and last[1] == currency:
        costs.append(last[0] * sku.units)
    sourcing = await store.sku_sourcing(sku.id)
    if sourcing is not None and sourcing.sources:
        wanted = {(s.supplier, s.product_id) for s in sourcing.sources}
        live = [p.cost for p in await store.supplier_products() if (p.supplier, p.product_id) in wanted
                and p.stock == StockState.IN_STOCK.value and p.currency == currency]
        if live:
            costs.append(min(live) * sku.units)
    return max(costs) if costs else None


class ClientPrices:
    """The order API's price of a SKU for a client: a distributor's price list when the client is one, else the
    client's own price or the `api` channel price as before. Read per client and SKU at most once per PRICE_TTL_S."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lists: TtlCache[int, tuple[Distributor | None, dict[int, DistributorPrice]]] = TtlCache(PRICE_TTL_S)
        self._costs: TtlCache[tuple[int, str], int | None] = TtlCache(PRICE_TTL_S)

    async def _list(self, client_id: int) -> tuple[Distributor | None, dict[int, DistributorPrice]]:
        async def read() -> tuple[Distributor | None, dict[int, DistributorPrice]]:
            dist = await self.store.distributor_of_client(client_id)
            return dist, await self.store.distributor_prices(dist.id) if dist is not None else {}

        return await self._lists.get(client_id, read)

    async def cost(self, sku: Sku, currency: str) -> int | None:
        return await self._costs.get((sku.id, currency), lambda: sku_cost(self.store, sku, currency))

    async def price(self, client_id: int, sku: Sku, own: Price | None, channel: Price | None) -> Price | None:
        dist, fixed = await self._list(client_id)
        if dist is None:
            return own or channel
        mine = fixed.get(sku.id)
        if mine is not None:
            price = Price(sku.id, "api", mine.currency, mine.amount)
            if mine.below_cost:
                return price  # the merchant's explicit override
        elif own is not None:
            price = own
        elif channel is not None:
            price = Price(sku.id, channel.channel, channel.currency, discounted(channel.amount, dist.discount_bp))
        else:
            return None
        floor = await self.cost(sku, price.currency)
        if floor is not None and price.amount < floor:
            return Price(price.sku_id, price.channel, price.currency, floor)
        return price


class CommissionPass:
    """Accruals for delivered orders and reversals for refunded ones, each at most once per order (the store's
    unique index decides under any number of concurrent passes)."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.clock = clock

    async def run_once(self) -> int:
        """Job tick: lines written (a full batch asks for the next tick at once)."""
        accrued = await self.store.accrue_commissions(DELIVERED, NO_COMMISSION_CHANNELS, self.clock(), PASS_BATCH)
        reversed_ = await self.store.reverse_commissions(REFUNDED, self.clock(), PASS_BATCH)
        if accrued or reversed_:
            log.info("event=commission.pass accrued=%s reversed=%s", accrued, reversed_)
        return accrued + reversed_

    async def after_delivery(self, order_id: int, channel: str) -> int:
        """The delivered order's accrual right away (the job would find it later too)."""
        if channel in NO_COMMISSION_CHANNELS:
            return 0
        return await self.store.accrue_commissions(DELIVERED, NO_COMMISSION_CHANNELS, self.clock(), 1, order_id)


def attach_commissions(store: Store, delivery: DeliveryWorker) -> tuple[str, float, Callable[[], Awaitable[int]]]:
    """Accrue a delivered order's commission right after its delivery (chained after the worker's observer, so
    never breaking delivery); the returned (name, seconds, tick) job of bot.jobs.run_jobs catches up on everything
    else, e.g. deliveries of other processes and refunds."""
    commissions = CommissionPass(store)
    observer = delivery.on_delivered

    async def delivered(sent: Delivery, done_at: datetime) -> None:
        if observer is not None:
            await observer(sent, done_at)
        await commissions.after_delivery(sent.order.id, sent.order.channel)

    delivery.on_delivered = delivered
    return "commissions", PASS_EVERY_S, commissions.run_once


def _bp(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) > MAX_BP:
        raise DistributorRefused("distributor.bad_bp")
    return int(raw)


def _amount(raw: str, signed: bool = False) -> int:
    digits = raw[1:] if signed and raw[:1] in "+-" else raw
    if (signed and raw[:1] not in "+-") or not (digits.isascii() and digits.isdigit()):
        raise DistributorRefused("distributor.bad_amount")
    value = int(digits)
    if not 0 < value <= MAX_TOP_UP:
        raise DistributorRefused("distributor.bad_amount")
    return -value if raw.startswith("-") else value


def _currency(raw: str) -> str:
    if not _CURRENCY.match(raw):
        raise DistributorRefused("distributor.bad_currency")
    return raw


@dataclass(frozen=True)
class DistributorView:
    distributor: Distributor
    client: ApiClient | None
    prices: dict[int, DistributorPrice]
    rates: dict[int, int]
    payable: dict[str, int]
    wallet: dict[str, int]


class DistributorDesk:
    """The merchant's distributor verbs (chat commands and CLI); every refusal changes nothing."""

    def __init__(self, store: Store, keys: ApiKeys,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.keys = keys
        self.clock = clock
        self.commissions = CommissionPass(store, clock)
        self.prices = ClientPrices(store)

    # -- who ---------------------------------------------------------------------------
    async def find(self, name: str) -> Distributor:
        dist = await self.store.distributor(name)
        if dist is None:
            raise DistributorRefused("distributor.unknown", name=name[:40])
        return dist

    async def _client(self, ref: str) -> ApiClient:
        try:
            return await self.keys.find(ref)
        except ShopError:
            raise DistributorRefused("distributor.unknown_client", client=ref[:40]) from None

    async def add(self, name: str, client_ref: str = "") -> Distributor:
        if not _NAME.match(name):
            raise DistributorRefused("distributor.bad_name")
        client = await self._client(client_ref) if client_ref else None
        try:
            dist = await self.store.create_distributor(name, name, client.id if client else None, self.clock())
        except DistributorTaken:
            raise DistributorRefused("distributor.taken", name=name) from None
        log.info("event=distributor.added distributor_id=%s api_client=%s", dist.id, client.id if client else "-")
        return dist

    async def link(self, name: str, client_ref: str) -> Distributor:
        dist = await self.find(name)
        client = await self._client(client_ref)
        try:
            return await self.store.update_distributor(dist.id, api_client_id=client.id)
        except DistributorTaken:
            raise DistributorRefused("distributor.client_taken", client=client.name) from None

    async def all(self) -> list[Distributor]:
        return await self.store.distributors()

    async def view(self, name: str) -> DistributorView:
        dist = await self.find(name)
        client = next((c for c in await self.store.api_clients() if c.id == dist.api_client_id), None)
        wallet = await self.store.wallet_balances(client.id) if client is not None else {}
        return DistributorView(dist, client, await self.store.distributor_prices(dist.id),
                               await self.store.commission_rates(dist.id),
                               await self.store.commission_balances(dist.id), wallet)

    # -- price list and commission ---------------------------------------------------------
    async def set_discount(self, name: str, raw_bp: str) -> Distributor:
        dist = await self.find(name)
        return await self.store.update_distributor(dist.id, discount_bp=_bp(raw_bp))

    async def set_commission(self, name: str, raw_bp: str, sku: Sku | None = None) -> Distributor:
        dist = await self.find(name)
        if sku is not None:
            bp = None if raw_bp == "clear" else _bp(raw_bp)
            await self.store.set_commission_rate(dist.id, sku.id, bp)
            return dist
        return await self.store.update_distributor(dist.id, commission_bp=_bp(raw_bp))

    async def set_price(self, name: str, sku: Sku, raw_amount: str, currency: str = "CNY",
                        override: bool = False) -> DistributorPrice | None:
        """A fixed price of the SKU ("clear": none again). Under the SKU's cost only with the override."""
        dist = await self.find(name)
        if raw_amount == "clear":
            await self.store.set_distributor_price(dist.id, sku.id, None)
            return None
        amount = _amount(raw_amount) if raw_amount != "0" else 0
        currency = _currency(currency)
        cost = await sku_cost(self.store, sku, currency)
        if cost is not None and amount < cost and not override:
            raise DistributorRefused("distributor.below_cost", sku=sku.slug, cost=cost, currency=currency)
        price = DistributorPrice(sku.id, currency, amount, override and cost is not None and amount < cost)
        await self.store.set_distributor_price(dist.id, sku.id, price)
        return price

    # -- money -------------------------------------------------------------------------------
    async def move_wallet(self, name: str, raw_amount: str, note: str, currency: str = "CNY") -> WalletLine:
        """A top-up (+) or correction (-, with a note) of the distributor's API wallet: one wallet ledger line."""
        dist = await self.find(name)
        amount = _amount(raw_amount, signed=True)
        currency = _currency(currency)
        if amount < 0 and not note.strip():
            raise DistributorRefused("distributor.note_needed")
        if dist.api_client_id is None:
            raise DistributorRefused("distributor.no_wallet", name=dist.name)
        client = next(c for c in await self.store.api_clients() if c.id == dist.api_client_id)
        try:
            return await self.keys.top_up(client.key_id, amount, currency, note.strip())
        except ShopError:
            raise DistributorRefused("distributor.wallet_short", name=dist.name) from None

    async def payout(self, name: str, raw_amount: str, note: str, currency: str = "CNY") -> CommissionLine:
        dist = await self.find(name)
        amount = _amount(raw_amount)
        currency = _currency(currency)
        try:
            line = await self.store.record_payout(dist.id, currency, amount, note.strip()[:200], self.clock())
        except PayableExceeded as exc:
            if exc.payable <= 0:  # nothing owed, or a clawback carried: offset by future commission first
                raise DistributorRefused("distributor.payout_nothing_payable", name=dist.name, currency=currency,
                                         payable=exc.payable, clawback=-exc.payable if exc.payable < 0 else 0
                                         ) from None
            raise DistributorRefused("distributor.payout_too_big", name=dist.name, currency=currency,
                                     payable=exc.payable) from None
        log.info("event=distributor.payout distributor_id=%s currency=%s amount=%s", dist.id, currency, amount)
        return line

    # -- API keys -------------------------------------------------------------------------------
    async def create_key(self, name: str, scopes: list[str]) -> NewKey:
        return await self.keys.create(name, scopes)

    async def revoke_key(self, ref: str) -> bool:
        await self._client(ref)
        return await self.keys.revoke(ref)
