"""The order-API seams (issue 15): API clients and their sealed secrets, prepaid wallets with their ledger, the
one-transaction wallet-paid order, and Idempotency-Key responses.

Plain records and the store outcomes of these verbs live here too (not in storage/records.py or storage/errors.py,
which other work changes at the same time); fulfillment/api_*.py re-exports what callers above it need.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from storage.errors import StoreError
from storage.records import OnceKey, Order, OrderItem


class InsufficientBalance(StoreError):
    """The client's wallet does not cover the amount (nothing changed)."""


class DuplicateOrderNo(StoreError):
    """The client's order number belongs to an order placed with another request body (nothing changed)."""


class NonceUsed(StoreError):
    """The request's nonce was claimed before (nothing changed)."""


class NameTaken(StoreError):
    """An API client of that name exists."""


@dataclass(frozen=True, slots=True)
class Sealed:
    """AES-256-GCM ciphertext under a vault key (fulfillment/api_secrets.py seals and opens it)."""

    key_id: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class ApiClient:
    id: int
    key_id: str
    name: str
    scopes: tuple[str, ...]
    secret: Sealed
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WalletLine:
    """One movement of a wallet: `amount` signed, `balance_after` what the wallet held right after it."""

    id: int
    client_id: int
    currency: str
    amount: int
    balance_after: int
    kind: str  # topup | order | refund
    order_id: int | None
    note: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ApiOrderIn:
    """A wallet-paid order as the API channel asks for it (amount fixed from the client's price)."""

    client_id: int
    client_order_no: str
    request_hash: str  # of the canonical order body: a retry with another body is refused
    callback_url: str
    sku_id: int
    quantity: int
    amount: int
    currency: str
    expires_at: datetime
    language: str = "en"
    target: str | None = None  # a recharge SKU's target, checked against its rule by the caller


@dataclass(frozen=True, slots=True)
class ApiOrderPlaced:
    order: Order  # as committed
    items: tuple[OrderItem, ...]  # its live codes (encrypted), read in the same call
    fresh: bool  # False: the client's number named an earlier order of the same body

    @property
    def order_id(self) -> int:
        return self.order.id


@dataclass(frozen=True, slots=True)
class ApiOrderLink:
    client_id: int
    client_order_no: str
    order_id: int
    request_hash: str
    callback_url: str


class IdemState(enum.StrEnum):
    NEW = "new"  # this caller holds the key: run the request, then finish or release it
    PENDING = "pending"  # another caller runs it right now (lease live): wait and ask again
    MISMATCH = "mismatch"  # the key was used with another request body
    DONE = "done"  # the stored first response is in `status` / `body`


@dataclass(frozen=True, slots=True)
class IdemClaim:
    state: IdemState
    status: int = 0
    body: Sealed | None = None


class ApiClientStore(Protocol):
    async def create_api_client(self, key_id: str, name: str, scopes: tuple[str, ...], secret: Sealed,
                                now: datetime) -> ApiClient:
        """Raises NameTaken."""
        ...

    async def api_client(self, key_id: str) -> ApiClient | None: ...
    async def api_clients(self) -> list[ApiClient]: ...
    async def revoke_api_client(self, key_id: str, now: datetime) -> bool:
        """True when this call revoked a live key."""
        ...


class ApiPriceStore(Protocol):
    """A client's own prices (its price list); a SKU without one sells at the `api` channel price."""

    async def set_api_price(self, client_id: int, sku_id: int, price: tuple[str, int] | None) -> None:
        """(currency, amount) for the client and SKU; None removes it."""
        ...

    async def api_prices(self, client_id: int) -> dict[int, tuple[str, int]]:
        """SKU id -> (currency, amount)."""
        ...


class WalletStore(Protocol):
    async def adjust_wallet(self, client_id: int, currency: str, amount: int, kind: str, note: str,
                            now: datetime, order_id: int | None = None) -> WalletLine | None:
        """Add `amount` (signed) to the wallet and write its ledger line, one transaction. Raises
        InsufficientBalance when the balance would go below zero. With an order, one line per (order, kind):
        a second call changes nothing and returns None."""
        ...

    async def wallet_balances(self, client_id: int) -> dict[str, int]: ...
    async def wallet_lines(self, client_id: int, limit: int) -> list[WalletLine]:
        """Newest first."""
        ...


class ApiOrderStore(Protocol):
    async def place_api_order(self, order: ApiOrderIn, now: datetime, nonce: OnceKey | None = None
                              ) -> ApiOrderPlaced:
        """One transaction: the request's nonce claimed (as claim_once; NonceUsed), the client's order number
        claimed, stock reserved, the wallet debited, the payment applied (codes allocated, deliver outbox row,
        ledger) — or nothing at all. An earlier order of the same number and body comes back with fresh=False.
        Raises NonceUsed, InsufficientBalance, InsufficientStock, PurchaseLimitReached, UnknownRecord (SKU) or
        DuplicateOrderNo."""
        ...

    async def api_order(self, client_id: int, client_order_no: str) -> ApiOrderLink | None: ...
    async def api_order_of(self, order_id: int) -> ApiOrderLink | None: ...


class IdempotencyStore(Protocol):
    async def claim_idempotency(self, client_id: int, key: str, request_hash: str, lease_until: datetime,
                                now: datetime) -> IdemClaim:
        """Take the key (NEW), or report it running (PENDING), used with another body (MISMATCH) or answered
        (DONE). A pending key whose lease ran out (its holder died) is taken over: NEW."""
        ...

    async def finish_idempotency(self, client_id: int, key: str, status: int, body: Sealed) -> IdemClaim:
        """Store the response unless one is stored already; the stored one (DONE) either way."""
        ...

    async def release_idempotency(self, client_id: int, key: str) -> None:
        """Forget a pending key (the request failed and changed nothing: a retry runs again)."""
        ...


class ApiStore(ApiClientStore, ApiPriceStore, WalletStore, ApiOrderStore, IdempotencyStore, Protocol):
    """Everything the order API needs from the store."""
