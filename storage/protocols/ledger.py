"""The ledger seam: money in and out per SKU, channel and kind (finance reports read it)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from storage.records import (
    LedgerLine,
)


class LedgerStore(Protocol):
    """Ledger lines summed over a period."""

    async def ledger(self, since: datetime, until: datetime) -> list[LedgerLine]: ...
