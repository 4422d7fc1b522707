"""The customers seam: who wrote to the shop, their language and reachability, and the merchant audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class CustomerStore(Protocol):
    """Customers and the audit log."""

    async def touch_user(self, channel: str, user_id: str, chat_id: str, now: datetime, referrer: str = "") -> None:
        """Remember a customer (first/last seen); a referrer is kept only the first time and never oneself."""
        ...

    async def set_user_language(self, channel: str, user_id: str, language: str) -> None: ...
    async def user_language(self, channel: str, user_id: str) -> str | None: ...
    async def set_user_blocked(self, channel: str, user_id: str, blocked: bool) -> None: ...
    async def reachable_users(self, channel: str, after: str, limit: int) -> list[tuple[str, str]]:
        """(user id, chat id) of customers who did not block the bot, by user id after `after`."""
        ...

    async def audit(self, channel: str, actor: str, action: str, detail: str, now: datetime) -> None: ...
    async def audit_entries(self, limit: int) -> list[tuple[datetime, str, str, str, str]]: ...
