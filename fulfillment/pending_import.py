"""Codes pasted in a chat, held sealed until the merchant confirms: nothing is imported before the press.

Chat platforms that cannot send files (WeChat) bring the codes in the message. While waiting for the
confirmation they are kept in the shared store sealed by the vault (codes are never stored in clear); the
confirmation is claimed once, so a double press or a press in two processes imports once.
"""

from __future__ import annotations

import base64
import json
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from fulfillment.catalog import CatalogService
from fulfillment.importer import CodeImporter, ImportSource, parse_unit_cost
from fulfillment.vault import Vault
from storage.protocol import Store
from storage.records import BatchStats, EncryptedCode, Pool

PENDING_FOR = timedelta(minutes=10)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class HeldImport:
    token: str
    pool: Pool
    count: int


class Settled(StrEnum):
    EXPIRED = "expired"  # unknown, another merchant's, timed out or already pressed
    CANCELLED = "cancelled"
    IMPORTED = "imported"


@dataclass(frozen=True, slots=True)
class PasteOutcome:
    settled: Settled
    pool: Pool | None = None
    stats: BatchStats = field(default_factory=BatchStats)


class PendingImports:
    def __init__(self, store: Store, vault: Vault, catalog: CatalogService, importer: CodeImporter,
                 scope: str = "wechat.paste", clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.vault = vault
        self.catalog = catalog
        self.importer = importer
        self.scope = scope
        self.clock = clock

    def _key(self, token: str) -> str:
        return f"{self.scope.replace('.', ':')}:{token}"

    async def hold(self, pool_ref: str, codes: list[str], cost: str, supplier: str, user: str) -> HeldImport:
        """Seal the codes and keep them for PENDING_FOR; the token goes into the confirm / cancel buttons."""
        unit_cost = parse_unit_cost(cost)
        pool = await self.catalog.find_pool(pool_ref)
        sealed = self.vault.seal("\n".join(codes))
        token = secrets.token_hex(6)
        pending = {"pool": pool.slug, "cost": unit_cost, "supplier": supplier[:64], "user": user,
                   "digest": _b64(sealed.digest), "kid": sealed.key_id, "nonce": _b64(sealed.nonce),
                   "ct": _b64(sealed.ciphertext)}
        await self.store.kv_put(self._key(token), json.dumps(pending), self.clock() + PENDING_FOR)
        return HeldImport(token, pool, len(codes))

    async def settle(self, token: str, channel: str, user: str, accept: bool) -> PasteOutcome:
        """The merchant pressed confirm (`accept`) or cancel; the sealed codes are forgotten either way."""
        now = self.clock()
        raw = await self.store.kv_get(self._key(token), now)
        data = json.loads(raw) if raw else None
        if data is None or data["user"] != user or not await self.store.claim_once(
                self.scope, token, now + PENDING_FOR, now):
            return PasteOutcome(Settled.EXPIRED)
        await self.store.kv_put(self._key(token), "", now)  # forget the sealed codes
        if not accept:
            return PasteOutcome(Settled.CANCELLED)
        text = self.vault.open(EncryptedCode(0, base64.b64decode(data["digest"]), data["kid"],
                                             base64.b64decode(data["nonce"]), base64.b64decode(data["ct"])))
        pool = await self.catalog.find_pool(data["pool"])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pasted.txt"
            path.touch(0o600)
            path.write_text(text + "\n", encoding="utf-8")
            stats = await self.importer.run(pool, ImportSource(path, "txt"), supplier=data["supplier"],
                                            unit_cost=int(data["cost"]))
        await self.store.audit(channel, user, "import", f"pasted {pool.slug}", now)
        return PasteOutcome(Settled.IMPORTED, pool, stats)
