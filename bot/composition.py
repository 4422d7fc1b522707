"""The composition root: the one place that turns Settings into a store, a vault and services."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bot.settings import Settings
from fulfillment.aftersales import AfterSalesService
from fulfillment.api_clients import ApiKeys
from fulfillment.audit import AuditTrail
from fulfillment.catalog import CatalogService
from fulfillment.checkpoints import Checkpoints, NoCheckpoints
from fulfillment.customers import Customers
from fulfillment.delivery import Channel, DeliveryWorker
from fulfillment.disputes import Chargebacks
from fulfillment.distributors import DistributorDesk
from fulfillment.errors import VaultError
from fulfillment.faq_entries import FaqEntries
from fulfillment.importer import CodeImporter
from fulfillment.order_lookup import OrderLookup
from fulfillment.orders import STATE_GROUPS, AllowAll, OrderService, RiskHook
from fulfillment.payments import PaymentInbox, PaymentProvider, TestPaymentProvider
from fulfillment.pending_import import PendingImports
from fulfillment.recharge_drafts import RechargeDrafts
from fulfillment.reports import SalesReports
from fulfillment.vault import Vault, key_checks, open_key_ring
from handlers.context import Services, ShopContext
from handlers.ordering import UserTurns
from risk.engine import RiskEngine
from storage.protocol import Store
from storage.url import parse_database_url

if TYPE_CHECKING:
    from bot.reconcile_cli import ReconcileRuntime

log = logging.getLogger("kamibot.boot")


@dataclass
class Shop:
    settings: Settings
    store: Store
    vault: Vault
    catalog: CatalogService
    orders: OrderService
    payments: PaymentInbox
    delivery: DeliveryWorker
    providers: dict[str, PaymentProvider]
    channels: dict[str, Channel] = field(default_factory=dict)
    risk: RiskEngine | None = None
    #: reconciliation (issue 16), built with the chat context (build_context); its daily job runs in run_jobs
    reconcile: ReconcileRuntime | None = None
    #: the Redis client shared by this process's turns and /readyz (None: no KAMIBOT_REDIS_URL)
    redis: Any = None
    #: one user's turn across instances (bot/user_lock.py); None on SQLite without Redis (one instance)
    turns: UserTurns | None = None

    async def close(self) -> None:
        if self.reconcile is not None:
            await self.reconcile.aclose()
        if self.risk is not None:
            await self.risk.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.store.close()


def build_services(shop: Shop) -> Services:
    """The shop verbs the conversations and channel adapters call (each over the one store)."""
    importer = CodeImporter(shop.store, shop.vault)
    return Services(
        lookup=OrderLookup(shop.store),
        customers=Customers(shop.store),
        audit=AuditTrail(shop.store),
        aftersales=AfterSalesService(shop.store),
        importer=importer,
        pending_imports=PendingImports(shop.store, shop.vault, shop.catalog, importer),
        reports=SalesReports(shop.store),
        chargebacks=Chargebacks(shop.store, shop.risk),
        faq_entries=FaqEntries(shop.store),
        recharge_drafts=RechargeDrafts(shop.store),
        distributors=DistributorDesk(shop.store, ApiKeys(shop.store, shop.vault)),
    )


def build_context(shop: Shop, merchants: dict[str, set[str]] | None = None) -> ShopContext:
    """What the conversations of every channel share in this process."""
    from bot.reconcile_cli import build_reconciliation
    from handlers.faq.builtin import BuiltinMatcher
    from handlers.reconcile_admin import report_new
    from locales import Translator

    faq = BuiltinMatcher()
    faq.prewarm()
    ctx = ShopContext(catalog=shop.catalog, orders=shop.orders, payments=shop.payments,
                      delivery=shop.delivery, vault=shop.vault, tr=Translator(shop.settings.default_language),
                      services=build_services(shop), merchants=merchants or {},
                      timezone=shop.settings.display_timezone, support_contact=shop.settings.support_contact,
                      risk=shop.risk, faq_builtin=faq)
    shop.reconcile = shop.reconcile or build_reconciliation(shop)
    ctx.reconcile = shop.reconcile.recon
    shop.reconcile.report = lambda: report_new(ctx)  # new discrepancies to this context's merchants
    return ctx


async def open_store(settings: Settings, migrate: bool = True) -> Store:
    url = parse_database_url(settings.resolved_database_url, base_dir=settings.data_dir)
    store: Store
    if url.backend == "sqlite":
        from storage.sqlite import SqliteStore

        assert url.sqlite_path is not None
        store = await SqliteStore(url.sqlite_path, states=STATE_GROUPS).open()
    else:
        from storage.postgres import PostgresStore

        store = await PostgresStore(url.dsn, max_size=settings.database_pool_size, states=STATE_GROUPS).open()
    if migrate:
        version = await store.migrate()
        log.info("event=db.ready backend=%s schema_version=%s", url.backend, version)
    return store


async def open_vault(settings: Settings, store: Store) -> Vault:
    """Create the key file for a new shop; refuse to start on a missing or wrong one for an existing vault."""
    checks = await store.vault_key_checks()
    if not checks and await store.count_codes():
        raise VaultError("the database holds codes but no registered vault keys; refusing to start")
    path = settings.resolved_key_file
    ring, created = open_key_ring(path, checks)
    for kid, check in key_checks(ring).items():
        if kid not in checks:
            await store.register_vault_key(kid, check)
    if created:
        log.info("event=vault.key_created path=%s", path)
    return Vault(ring, key_path=path)


async def build_shop(settings: Settings, *, store: Store | None = None, risk: RiskHook | None = None,
                     checkpoints: Checkpoints | None = None,
                     providers: dict[str, PaymentProvider] | None = None) -> Shop:
    store = store or await open_store(settings)
    try:
        vault = await open_vault(settings, store)
    except BaseException:
        await store.close()
        raise
    checkpoints = checkpoints or NoCheckpoints()
    providers = providers if providers is not None else {"test": TestPaymentProvider()}
    channels: dict[str, Channel] = {}
    engine: RiskEngine | None = None
    if risk is None and settings.risk.enabled:
        from bot.risk import EngineHook, build_engine

        engine = await build_engine(settings, store)
        risk = EngineHook(engine, vault.fingerprint)
    payments = PaymentInbox(store, checkpoints, risk=risk)
    delivery = DeliveryWorker(store, vault, channels, providers, checkpoints)
    payments.on_applied = delivery.wake
    redis, turns = build_turns(settings, store)
    return Shop(
        settings=settings,
        store=store,
        vault=vault,
        catalog=CatalogService(store),
        orders=OrderService(store, risk or AllowAll(), timedelta(seconds=settings.reservation_ttl_seconds)),
        payments=payments,
        delivery=delivery,
        providers=providers,
        channels=channels,
        risk=engine,
        redis=redis,
        turns=turns,
    )


def build_turns(settings: Settings, store: Store) -> tuple[Any, UserTurns | None]:
    """Redis turns when Redis is configured, database leases on PostgreSQL, none on SQLite (one instance)."""
    from bot.user_lock import LeaseTurns, RedisTurns

    if settings.redis_url:
        import redis.asyncio as aioredis

        client = aioredis.from_url(settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return client, RedisTurns(client)
    if parse_database_url(settings.resolved_database_url, base_dir=settings.data_dir).backend != "sqlite":
        return None, LeaseTurns(store)
    return None, None
