"""API clients of the order API: keys (a public key id and a secret shown once, kept sealed under the vault key),
scopes, revocation, and their prepaid wallets (every movement a wallet ledger line)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from fulfillment.api_secrets import SecretBox
from fulfillment.errors import BadInput
from fulfillment.ttl_cache import TtlCache
from fulfillment.vault import Vault
from storage.protocols.api import ApiClient, ApiStore, InsufficientBalance, NameTaken, WalletLine
from storage.protocols.shared import SharedStateStore
from storage.records import OnceKey

log = logging.getLogger("kamibot.api")
SCOPES = ("catalog:read", "orders:write", "orders:read")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
SECRET_PURPOSE = "api-secret"
#: a wallet movement's amount, in minor units (one top-up of at most 10^12: a trillion fen)
MAX_TOP_UP = 10**12
#: a process reuses a client's record (scopes, revocation) this long before reading it again
CLIENT_TTL_S = 1.0
#: expired nonces are pruned once per this many signed requests of a process, and at most once per PRUNE_GAP_S:
#: a nonce is kept ten minutes, so a minute's leftovers cost nothing, while a prune each second at 1,000 requests a
#: second cost every order in flight beside it some 40 ms (bench_api.py's slowest orders)
PRUNE_EVERY = 1000
PRUNE_GAP_S = 60.0

__all__ = ["SCOPES", "ApiClient", "ApiKeys", "NewKey", "WalletLine"]


class KeyStore(ApiStore, SharedStateStore, Protocol):
    """Clients and wallets, and the claim-once keys that make a nonce single-use across processes."""


@dataclass(frozen=True)
class NewKey:
    client: ApiClient
    secret: str  # shown once to the merchant; never stored in clear, never logged


class ApiKeys:
    def __init__(self, store: KeyStore, vault: Vault,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.box = SecretBox(vault)
        self.clock = clock
        self._secrets: dict[tuple[str, bytes], str] = {}  # (key id, nonce) -> clear secret, this process only
        self._clients: TtlCache[str, ApiClient | None] = TtlCache(CLIENT_TTL_S, keep_none=False)  # by key id
        self._requests = 0
        self._pruning: asyncio.Task[None] | None = None
        self._pruned_at = time.monotonic()  # of the last prune (or the start) of this process

    async def create(self, name: str, scopes: list[str]) -> NewKey:
        if not _NAME.match(name):
            raise BadInput("name: letters, digits, _ . - (at most 64)")
        wanted = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
        if not wanted or any(s not in SCOPES for s in wanted):
            raise BadInput(f"scopes: one or more of {', '.join(SCOPES)}")
        key_id = "kk_" + secrets.token_hex(8)
        secret = "ks_" + secrets.token_urlsafe(32)
        sealed = self.box.seal(SECRET_PURPOSE, key_id, secret.encode())
        try:
            client = await self.store.create_api_client(key_id, name, wanted, sealed, self.clock())
        except NameTaken:
            raise BadInput(f"an API client named {name} exists") from None
        log.info("event=api.key_created key_id=%s scopes=%s", key_id, ",".join(wanted))
        return NewKey(client, secret)

    async def clients(self) -> list[ApiClient]:
        return await self.store.api_clients()

    async def revoke(self, ref: str) -> bool:
        client = await self.find(ref)
        done = await self.store.revoke_api_client(client.key_id, self.clock())
        self._clients.forget(client.key_id)
        if done:
            log.info("event=api.key_revoked key_id=%s", client.key_id)
        return done

    async def find(self, ref: str) -> ApiClient:
        """A client by key id or name."""
        client = await self.store.api_client(ref)
        if client is None:
            client = next((c for c in await self.store.api_clients() if c.name == ref), None)
        if client is None:
            raise BadInput(f"no API client {ref}")
        return client

    async def live_client(self, key_id: str) -> ApiClient | None:
        """The client of a request's key id, unless unknown or revoked. A known client is remembered for
        CLIENT_TTL_S, so a revocation in another process takes effect within that time."""
        client = await self._clients.get(key_id, lambda: self.store.api_client(key_id))
        return client if client is not None and client.revoked_at is None else None

    def nonce_key(self, key_id: str, nonce: str, window: timedelta) -> OnceKey:
        """The claim-once key of a request's nonce, kept past both ends of the signature window."""
        return OnceKey("api.nonce", f"{key_id}:{nonce}", self.clock() + 2 * window)

    async def claim_nonce(self, key: OnceKey) -> bool:
        """True the first time the nonce is seen within the signature window, in any process."""
        return await self.store.claim_once(key.scope, key.key, key.expires_at, self.clock())

    def count_request(self) -> None:
        """Each signed request leaves a nonce key: once per PRUNE_EVERY requests of this process, PRUNE_GAP_S
        apart at least, the expired claim-once keys are deleted, in the background (no request waits for it)."""
        self._requests += 1
        if self._requests % PRUNE_EVERY or (self._pruning is not None and not self._pruning.done()):
            return
        if time.monotonic() - self._pruned_at < PRUNE_GAP_S:
            return
        self._pruned_at = time.monotonic()
        self._pruning = asyncio.ensure_future(self._prune())

    async def _prune(self) -> None:
        try:
            pruned = await self.store.prune_once_keys(self.clock())
        except Exception as exc:  # noqa: BLE001 - tried again PRUNE_EVERY requests later
            log.warning("event=api.nonces_prune_failed error=%s", type(exc).__name__)
            return
        log.info("event=api.nonces_pruned count=%s", pruned)

    async def pruned(self) -> None:
        """Until the prune under way, if any, has ended."""
        if self._pruning is not None:
            await self._pruning

    def secret_of(self, client: ApiClient) -> str:
        cache_key = (client.key_id, client.secret.nonce)
        secret = self._secrets.get(cache_key)
        if secret is None:
            secret = self.box.open(SECRET_PURPOSE, client.key_id, client.secret).decode()
            self._secrets[cache_key] = secret
        return secret

    async def top_up(self, ref: str, amount: int, currency: str, note: str) -> WalletLine:
        """A merchant's wallet movement (negative: a correction); never below zero."""
        if not _CURRENCY.match(currency):
            raise BadInput("currency: three capital letters (CNY, USD)")
        if amount == 0 or abs(amount) > MAX_TOP_UP:
            raise BadInput("amount: a non-zero whole number of minor units")
        client = await self.find(ref)
        try:
            line = await self.store.adjust_wallet(client.id, currency, amount, "topup", note[:200], self.clock())
        except InsufficientBalance:
            raise BadInput("the wallet holds less than that") from None
        assert line is not None  # only order-bound movements are once-only
        log.info("event=api.wallet_topup client_id=%s currency=%s amount=%s", client.id, currency, amount)
        return line

    async def set_price(self, ref: str, sku_id: int, amount: int | None, currency: str) -> ApiClient:
        """The client's own price of a SKU (minor units), or None to sell it at the `api` channel price again."""
        if not _CURRENCY.match(currency):
            raise BadInput("currency: three capital letters (CNY, USD)")
        if amount is not None and not 0 <= amount <= MAX_TOP_UP:
            raise BadInput("amount: a whole number of minor units")
        client = await self.find(ref)
        await self.store.set_api_price(client.id, sku_id, None if amount is None else (currency, amount))
        log.info("event=api.price_set client_id=%s sku_id=%s", client.id, sku_id)
        return client

    async def wallet(self, client_id: int) -> dict[str, int]:
        return await self.store.wallet_balances(client_id)

    async def wallet_lines(self, client_id: int, limit: int = 50) -> list[WalletLine]:
        return await self.store.wallet_lines(client_id, limit)
