"""The risk seam: rules, block/allow lists, the decision log, customer statistics and disputes."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from storage.records import (
    RiskDecisionRecord,
    UserStats,
)


class RiskStore(Protocol):
    """What the risk engine keeps in the database."""

    async def save_risk_rules(self, body: str, actor: str, now: datetime) -> int: ...
    async def latest_risk_rules(self) -> str | None: ...
    async def set_risk_list(self, kind: str, value: str, list_name: str | None, note: str, now: datetime) -> None:
        """Put a value on the `block` or `allow` list of its kind (user, ip, fp); None removes it."""
        ...

    async def risk_lists(self) -> list[tuple[str, str, str]]: ...
    async def record_risk_decisions(self, rows: list[RiskDecisionRecord]) -> None:
        """Many decisions in one transaction (the decision log writes in batches)."""
        ...
    async def risk_decisions(self, field: str, value: str, limit: int) -> list[RiskDecisionRecord]:
        """Latest decisions by `user` (channel:user_id), `ip` or `order`."""
        ...

    async def user_stats(self, channel: str, user_id: str) -> UserStats: ...
    async def record_dispute(self, order_id: int, source: str, now: datetime) -> bool:
        """Record a dispute (chargeback) against an order: a `dispute` note (storage/events.py) in its current
        state, once per order (False when it already has one). Raises UnknownRecord."""
        ...
