"""The shared-state seam: claim-once keys, values with expiry and leases, shared by every process."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class SharedStateStore(Protocol):
    """De-duplication, small values and leases across processes."""

    async def claim_once(self, scope: str, key: str, expires_at: datetime, now: datetime) -> bool:
        """True for the first claim of (scope, key) until it expires: de-duplication across processes."""
        ...

    async def prune_once_keys(self, now: datetime) -> int: ...
    async def kv_get(self, key: str, now: datetime) -> str | None: ...
    async def kv_put(self, key: str, value: str, expires_at: datetime | None) -> None: ...
    async def try_lease(self, name: str, holder: str, until: datetime, now: datetime) -> bool:
        """Take or extend a named lease; False while another holder's lease is live."""
        ...

    async def release_lease(self, name: str, holder: str) -> None: ...

    async def count_leases(self, prefix: str, now: datetime) -> int:
        """How many live leases have a name starting with `prefix` (e.g. the instances sending for one bot)."""
        ...
