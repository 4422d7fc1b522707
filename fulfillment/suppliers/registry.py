"""Supplier adapters built from their database rows (storage.records_supply.SupplierRecord), each wrapped in a
GuardedSupplier whose circuit breaker lives as long as this registry (one per process).

The registry caches adapters by name and rebuilds one when its row changed (a new key, URL or timeout); a
supplier that is not active is not offered. `register_local` adds a supplier that has no database row and lives
as long as the registry: the offline demo's simulated supplier (protocol "simulated", fulfillment/suppliers/
simulated.py), which is deliberately not a protocol `kamibot suppliers add` offers for a live shop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fulfillment.suppliers.breaker import CircuitBreaker, GuardedSupplier
from fulfillment.suppliers.credentials import open_secret
from fulfillment.suppliers.protocol import Supplier
from fulfillment.suppliers.simulated import SimulatedSupplier
from storage.protocols.supply import SupplyStore
from storage.records_supply import SupplierRecord

if TYPE_CHECKING:
    from fulfillment.vault import Vault


def build_supplier(record: SupplierRecord, vault: Vault) -> Supplier:
    """The bare adapter of a row (no breaker): the protocol's config with the credential opened.

    The HTTP adapters are imported here, on a process's first real supplier: aiohttp and httpx with them are
    ~20 MB of a CLI command's RSS that never talks to a supplier (`kamibot codes import`: bench_import.py)."""
    if record.protocol == "simulated":  # the offline demo's in-process supplier: no URL, no credential
        return SimulatedSupplier(record.name, record.currency)
    from fulfillment.suppliers.acgfaka import AcgFakaConfig, AcgFakaSupplier
    from fulfillment.suppliers.kamibot import KamibotConfig, KamibotSupplier
    from fulfillment.suppliers.kashangwl import KashangwlConfig, KashangwlSupplier
    from fulfillment.suppliers.transport import HttpPolicy

    secret = open_secret(vault, record.name, record.secret)
    policy = HttpPolicy(connect_timeout=record.connect_timeout_ms / 1000, read_timeout=record.read_timeout_ms / 1000)
    if record.protocol == "kashangwl":
        return KashangwlSupplier(KashangwlConfig(record.base_url, record.account, secret,
                                                 notify_url=record.notify_url, name=record.name,
                                                 product_ids=record.product_ids, currency=record.currency,
                                                 policy=policy))
    if record.protocol == "acgfaka":
        return AcgFakaSupplier(AcgFakaConfig(record.base_url, record.account, secret, name=record.name,
                                             currency=record.currency, policy=policy))
    if record.protocol == "kamibot":
        return KamibotSupplier(KamibotConfig(record.base_url, record.account, secret, notify_url=record.notify_url,
                                             name=record.name, currency=record.currency, policy=policy))
    raise ValueError(f"unknown supplier protocol {record.protocol!r}")


class SupplierRegistry:
    def __init__(self, store: SupplyStore, vault: Vault,
                 build: Callable[[SupplierRecord, Vault], Supplier] = build_supplier) -> None:
        self.store = store
        self.vault = vault
        self._build = build
        self._cache: dict[str, tuple[SupplierRecord, GuardedSupplier]] = {}
        self._replaced: list[GuardedSupplier] = []  # adapters of changed rows: closed with the registry
        self._local: dict[str, SupplierRecord] = {}  # suppliers of this process only (the demo's simulated one)

    def register_local(self, record: SupplierRecord) -> None:
        """Offer a supplier without a database row (a row of the same name is then hidden)."""
        self._local[record.name] = record

    def _guarded(self, record: SupplierRecord) -> GuardedSupplier:
        cached = self._cache.get(record.name)
        if cached is not None and cached[0] == record:
            return cached[1]
        breaker = CircuitBreaker(record.name, record.breaker_failures, float(record.breaker_cool_down_s))
        if cached is not None:
            breaker = cached[1].breaker  # a new key or URL does not forget the supplier's recent failures
            self._replaced.append(cached[1])  # a call may still be using it: closed later, not now
        inner = self._build(record, self.vault)
        from fulfillment.suppliers.transport import SupplierHttp  # loaded with the adapter just built

        http = getattr(inner, "http", None)
        if isinstance(http, SupplierHttp):  # a purchase holds a slot only while its buying request is out
            http.gate = breaker.purchase_slot
        guarded = GuardedSupplier(inner, breaker, gated=isinstance(http, SupplierHttp))
        self._cache[record.name] = (record, guarded)
        return guarded

    async def get(self, name: str) -> GuardedSupplier | None:
        record = self._local.get(name) or await self.store.supplier_by_name(name)
        if record is None or not record.active:
            return None
        return self._guarded(record)

    async def all(self) -> list[GuardedSupplier]:
        rows = [r for r in await self.store.suppliers() if r.name not in self._local]
        return [self._guarded(r) for r in [*self._local.values(), *rows] if r.active]

    def healthy(self, name: str) -> bool:
        """False while the supplier's breaker is open (calls would be refused without being sent)."""
        cached = self._cache.get(name)
        return cached is None or cached[1].breaker.state.value != "open"

    def has_room(self, name: str) -> bool:
        """Has the supplier a free purchase slot now (breaker.py)?"""
        cached = self._cache.get(name)
        return cached is None or cached[1].breaker.has_room()

    async def aclose(self) -> None:
        for guarded in [g for _, g in self._cache.values()] + self._replaced:
            await guarded.aclose()
        self._cache.clear()
        self._replaced.clear()
