"""What a conversation may use: services and the translator, handed in by the composition root."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from fulfillment.aftersales import AfterSalesService
from fulfillment.audit import AuditTrail
from fulfillment.catalog import CatalogService
from fulfillment.customers import Customers
from fulfillment.delivery import DeliveryWorker
from fulfillment.disputes import Chargebacks
from fulfillment.distributors import DistributorDesk
from fulfillment.faq_entries import FaqEntries
from fulfillment.importer import CodeImporter
from fulfillment.order_lookup import OrderLookup
from fulfillment.orders import OrderService
from fulfillment.payments import PaymentInbox
from fulfillment.pending_import import PendingImports
from fulfillment.recharge_drafts import RechargeDrafts
from fulfillment.reconcile import Reconciliation
from fulfillment.reports import SalesReports
from fulfillment.supply_desk import SupplyDesk
from fulfillment.vault import Vault
from handlers.background import spawn
from locales import Translator, normalise_language
from risk.engine import RiskEngine

if TYPE_CHECKING:
    from handlers.faq import FaqMatcher
    from handlers.faq.builtin import BuiltinMatcher


#: a user's stored language choice is read again after this many seconds (several instances: a choice made on
#: another one is followed within it)
LANGUAGE_TTL_S = 10.0
MAX_CACHED_LANGUAGES = 100_000

@dataclass
class Services:
    """The shop verbs a conversation may call besides checkout, payments and delivery (built in bot/)."""

    lookup: OrderLookup
    customers: Customers
    audit: AuditTrail
    aftersales: AfterSalesService
    importer: CodeImporter
    pending_imports: PendingImports
    reports: SalesReports
    chargebacks: Chargebacks
    faq_entries: FaqEntries
    recharge_drafts: RechargeDrafts  # a recharge checkout waiting for the target the customer types
    #: distributors, their price lists, wallets and commission, and the API keys (merchant commands)
    distributors: DistributorDesk | None = None


@dataclass
class ShopContext:
    catalog: CatalogService
    orders: OrderService
    payments: PaymentInbox
    delivery: DeliveryWorker
    vault: Vault
    tr: Translator
    services: Services
    merchants: dict[str, set[str]] = field(default_factory=dict)  # channel -> merchant user ids
    timezone: str = "Asia/Shanghai"
    support_contact: str = ""
    languages: dict[tuple[str, str], str] = field(default_factory=dict)  # (channel, user) -> chosen language
    #: (channel, user) -> when its stored choice was last read (monotonic): re-read after LANGUAGE_TTL_S, so a
    #: choice made through another instance is followed within that time
    language_read: dict[tuple[str, str], float] = field(default_factory=dict)
    broadcasters: dict[str, Any] = field(default_factory=dict)  # channel -> object with async broadcast(text, report)
    #: channel -> send(chat_id, Reply): for messages that answer nobody's message (progress reports)
    senders: dict[str, Callable[[str, Any], Awaitable[None]]] = field(default_factory=dict)
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    #: the rule engine (merchant /risk commands, review decisions, chat flood control); None when disabled
    risk: RiskEngine | None = None
    #: the after-sales FAQ matcher; None: the built-in one, taken from faq_builtin on first use
    faq: FaqMatcher | None = None
    #: the built-in FAQ matcher, built once per shop off the event loop (built by the composition root)
    faq_builtin: BuiltinMatcher = field(kw_only=True)
    #: the merchant's supply desk (sourcing, procurement) when `kamibot run` built it; None otherwise
    supply: SupplyDesk | None = None
    #: reconciliation against WeChat Pay, Telegram Stars and suppliers (merchant /reconcile, /discrepancies)
    reconcile: Reconciliation | None = None
    #: (first local day, day after the last, language) → a signed dashboard link; None without the HTTP app
    dashboard_link: Callable[[date, date, str], str] | None = None

    def language(self, channel: str, user_id: str, platform_language: str) -> str:
        chosen = self.languages.get((channel, user_id))
        return chosen or normalise_language(platform_language, self.tr.default)

    async def load_language(self, channel: str, user_id: str) -> None:
        """Bring a language chosen earlier (perhaps in another process) into this process's cache; read again
        once LANGUAGE_TTL_S have passed (one point read per user and period, not per update)."""
        key, now = (channel, user_id), time.monotonic()
        if now - self.language_read.get(key, -LANGUAGE_TTL_S) < LANGUAGE_TTL_S:
            return
        if len(self.language_read) > MAX_CACHED_LANGUAGES:  # bounded: the oldest readings go, re-read on use
            for stale in [k for k, at in self.language_read.items() if now - at >= LANGUAGE_TTL_S]:
                del self.language_read[stale]
                self.languages.pop(stale, None)
        stored = await self.services.customers.language(channel, user_id)
        self.language_read[key] = now
        if stored:
            self.languages[key] = stored

    async def choose_language(self, channel: str, user_id: str, chat_id: str, language: str) -> None:
        self.languages[(channel, user_id)] = language
        self.language_read[(channel, user_id)] = time.monotonic()
        await self.services.customers.choose_language(channel, user_id, chat_id, language)

    def spawn(self, work: Awaitable[Any]) -> None:
        """Background work that must outlive the reply (kept referenced until done; a failure is logged)."""
        spawn(self.background, work)

    def is_merchant(self, channel: str, user_id: str) -> bool:
        return user_id in self.merchants.get(channel, set())
