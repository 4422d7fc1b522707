"""What a conversation may use: services and the translator, handed in by the composition root."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fulfillment.aftersales import AfterSalesService
from fulfillment.catalog import CatalogService
from fulfillment.delivery import DeliveryWorker
from fulfillment.orders import OrderService
from fulfillment.payments import PaymentInbox
from fulfillment.vault import Vault
from locales import Translator, normalise_language
from risk.engine import RiskEngine
from storage.protocol import Store

if TYPE_CHECKING:
    from handlers.faq import FaqMatcher
    from handlers.faq.builtin import BuiltinMatcher


@dataclass
class ShopContext:
    store: Store
    catalog: CatalogService
    orders: OrderService
    payments: PaymentInbox
    delivery: DeliveryWorker
    vault: Vault
    tr: Translator
    merchants: dict[str, set[str]] = field(default_factory=dict)  # channel -> merchant user ids
    timezone: str = "Asia/Shanghai"
    support_contact: str = ""
    languages: dict[tuple[str, str], str] = field(default_factory=dict)  # (channel, user) -> chosen language
    broadcasters: dict[str, Any] = field(default_factory=dict)  # channel -> object with async broadcast(text, report)
    #: channel -> send(chat_id, Reply): for messages that answer nobody's message (progress reports)
    senders: dict[str, Callable[[str, Any], Awaitable[None]]] = field(default_factory=dict)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    #: the rule engine (merchant /risk commands, review decisions, chat flood control); None when disabled
    risk: RiskEngine | None = None
    #: the after-sales FAQ matcher; None: the built-in one, taken from faq_builtin on first use
    faq: FaqMatcher | None = None
    #: after-sales verbs: reports, replacements, resends, tickets (built by the composition root)
    aftersales: AfterSalesService = field(kw_only=True)
    #: the built-in FAQ matcher, built once per shop off the event loop (built by the composition root)
    faq_builtin: BuiltinMatcher = field(kw_only=True)
    #: sourcing and procurement (fulfillment.sourcing.SourcingService) when `kamibot run` built it; None otherwise
    supply: Any = None

    def language(self, channel: str, user_id: str, platform_language: str) -> str:
        chosen = self.languages.get((channel, user_id))
        return chosen or normalise_language(platform_language, self.tr.default)

    async def load_language(self, channel: str, user_id: str) -> None:
        """Bring a language chosen earlier (perhaps in another process) into this process's cache."""
        if (channel, user_id) not in self.languages:
            stored = await self.store.user_language(channel, user_id)
            if stored:
                self.languages[(channel, user_id)] = stored

    async def choose_language(self, channel: str, user_id: str, chat_id: str, language: str) -> None:
        self.languages[(channel, user_id)] = language
        await self.store.touch_user(channel, user_id, chat_id, datetime.now(UTC))
        await self.store.set_user_language(channel, user_id, language)

    def spawn(self, work: Awaitable[Any]) -> None:
        """Background work that must outlive the reply (kept referenced until done)."""
        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run())
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def is_merchant(self, channel: str, user_id: str) -> bool:
        return user_id in self.merchants.get(channel, set())
