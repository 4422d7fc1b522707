"""`kamibot run`: the Starlette app under uvicorn, the background jobs and the chat channels, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import logging
import os
import secrets
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Lifespan

from bot.composition import Shop, build_context, build_shop
from bot.dashboard import DashboardLinks, DashboardPage, base_url, dashboard_key, dashboard_routes
from bot.jobs import JobStatus, once_per_period, run_jobs, ticket_sla_job
from bot.logs import redact_access_log
from bot.metrics import MetricsMiddleware, ShopMetrics
from bot.settings import Settings
from bot.supply import build_supply
from fulfillment.checkpoints import Checkpoints
from fulfillment.distributors import attach_commissions
from storage.migrations import migrations
from storage.url import parse_database_url

if TYPE_CHECKING:
    from handlers.telegram.polling import PollingLease

log = logging.getLogger("kamibot.server")
MAX_WEBHOOK_BODY = 1024 * 1024
PROBE_S = 2.0  # each readiness probe answers within this or counts as down


async def readiness(shop: Shop, jobs: JobStatus) -> dict[str, str]:
    """/readyz: database reachable, migrations current, Redis answering (when configured), no stale job."""
    checks: dict[str, str] = {}
    backend = parse_database_url(shop.settings.resolved_database_url, base_dir=shop.settings.data_dir).backend
    latest = migrations("sqlite" if backend == "sqlite" else "postgres")[-1][0]
    try:
        version = await asyncio.wait_for(shop.store.schema_version(), PROBE_S)
    except Exception as exc:  # noqa: BLE001 - a probe reports the class only
        checks["database"] = checks["migrations"] = f"unreachable ({type(exc).__name__})"
    else:
        checks["database"] = "ok"
        checks["migrations"] = "ok" if version >= latest else f"behind: schema {version}, code {latest}"
    if shop.redis is not None:
        try:
            await asyncio.wait_for(shop.redis.ping(), PROBE_S)
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - a probe reports the class only
            checks["redis"] = f"unreachable ({type(exc).__name__})"
    stale = jobs.stale()
    checks["jobs"] = "ok" if not stale else "stale: " + ",".join(sorted(stale))
    return checks


class WebhookSink(Protocol):
    """What the webhook route needs from the Telegram runtime: its secret and a way to take an update
    (False: it carried a payment that could not be recorded; answer an error so that Telegram sends it again)."""

    secret: str

    async def feed(self, data: dict[str, Any]) -> bool: ...


def create_app(shop: Shop, jobs: JobStatus, lifespan: Lifespan[Starlette] | None = None,
               telegram: WebhookSink | None = None, wechat_routes: Sequence[BaseRoute] = (),
               metrics: ShopMetrics | None = None) -> Starlette:
    metrics = metrics or ShopMetrics(shop, jobs).attach()

    async def health(request: Request) -> JSONResponse:
        """Alive: the process answers (200 whatever its dependencies say; /readyz judges those). The body adds
        what is cheap to know, the database's figures when it answers."""
        stale = jobs.stale()
        body: dict[str, Any] = {"status": "degraded" if stale else "ok", "stale_jobs": stale,
                                "job_failures": jobs.failures}
        try:
            body["schema"] = await asyncio.wait_for(shop.store.schema_version(), PROBE_S)
            body["outbox_pending"] = await asyncio.wait_for(shop.store.pending_outbox(), PROBE_S)
        except Exception as exc:  # noqa: BLE001 - alive even when the database is not; its class only
            body["database"] = f"unreachable ({type(exc).__name__})"
        return JSONResponse(body)

    async def ready(request: Request) -> JSONResponse:
        checks = await readiness(shop, jobs)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks},
                            status_code=200 if ok else 503)

    async def telegram_webhook(request: Request) -> Response:
        # PTB's Starlette example does not check the secret token: we must (wrong or missing → 403)
        given = request.headers.get("x-telegram-bot-api-secret-token", "")
        if telegram is None or not telegram.secret or not hmac.compare_digest(given.encode(), telegram.secret.encode()):
            return Response(status_code=403)
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BODY:
            return Response(status_code=413)
        try:
            data = json.loads(body)
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                raise ValueError("not an update")
            taken = await telegram.feed(data)
        except (ValueError, TypeError, KeyError):
            log.info("event=telegram.webhook_rejected reason=malformed")
            return Response(status_code=400)
        return Response(status_code=200 if taken else 503)

    routes: list[BaseRoute] = [Route("/healthz", health), Route("/readyz", ready), Route("/metrics", metrics.endpoint),
                               Route("/telegram/webhook", telegram_webhook, methods=["POST"])]
    routes += wechat_routes  # GET/POST /wechat when the Official Account is configured (bot/wechat.py)
    return Starlette(routes=routes, lifespan=lifespan,
                     middleware=[Middleware(MetricsMiddleware, metrics=metrics)])  # HTTP seconds by route


async def _polling_lease(shop: Shop) -> PollingLease | None:
    """Telegram polling is for one instance: take its lease first, so that a second polling instance refuses at
    once (PollingTaken, printed by the CLI) before it builds anything else. The poller renews it."""
    if not shop.settings.telegram.enabled or shop.settings.telegram.mode != "polling":
        return None
    from bot.telegram import polling_lease

    lease = polling_lease(shop)
    try:
        await lease.take()
    except BaseException:
        await shop.close()
        raise
    return lease


async def serve(settings: Settings, checkpoints: Checkpoints | None = None) -> int:
    """Jobs and channels live in the app's lifespan, so uvicorn's graceful shutdown (SIGTERM/SIGINT) stops them
    and closes the store before it exits (uvicorn then re-raises the signal, as it documents)."""
    # SQLite work runs in aiosqlite's thread and gives up the GIL per statement; with the default 5 ms switch
    # interval a busy event loop makes each of those statements wait up to 5 ms (the convoy effect)
    sys.setswitchinterval(0.0005)
    shop = await build_shop(settings, checkpoints=checkpoints)  # checkpoints: crash tests only
    lease = await _polling_lease(shop)
    supply = build_supply(shop)  # suppliers, procurement, restock and on-demand buying (issue 14)
    status = JobStatus()
    ctx = build_context(shop, {"console": set(settings.merchant_ids)})
    links = DashboardLinks(dashboard_key(settings, shop.vault), base_url(settings))
    ctx.dashboard_link = links.link  # merchant /dashboard answers a signed link to GET /dashboard
    supply.attach(ctx)  # merchant /suppliers, /source, /restock, /procurements; low-balance alerts
    telegram = None
    if settings.telegram.enabled:
        from bot.telegram import build_telegram

        telegram = build_telegram(shop, ctx, lease)
    wechat = None
    if settings.wechat.enabled:
        from bot.wechat import build_wechat
        from bot.wechatpay import invoice_pay_link

        wechat = build_wechat(shop, ctx,
                              pay_link=invoice_pay_link(settings) if settings.wechatpay.enabled else None)
    wechatpay = None
    if settings.wechatpay.enabled:  # registers the "wechatpay" provider; its routes and job are added below
        from bot.wechatpay import WeChatPay

        wechatpay = WeChatPay.build(shop, ctx.senders)
    # the catalogue, FAQ matcher (jieba's dictionary), PTB and the rest built above live as long as the process:
    # frozen, the cyclic collector's full passes stop walking those millions of objects again and again
    gc.collect()
    gc.freeze()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        if telegram is not None:
            await telegram.start()
        extra = [ticket_sla_job(ctx, settings), *supply.jobs()]
        extra.append(attach_commissions(shop.store, shop.delivery))  # distributors' commission ledger
        extra += telegram.jobs() if telegram is not None else []
        if wechatpay is not None:
            extra.append(wechatpay.job())
        holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        extra = [once_per_period(shop.store, holder, job) for job in extra]  # one tick a period, all instances
        if telegram is not None:
            extra.append(telegram.share.job())  # every instance: its share of the bot's overall sending rate
        every = settings.jobs
        jobs = asyncio.create_task(run_jobs(shop, stop, status, delivery_every=every.delivery_every_s,
                                            expire_every=every.expire_every_s, recover_every=every.recover_every_s,
                                            extra=extra))
        try:
            yield
        finally:
            stop.set()
            await jobs
            if wechatpay is not None:
                await wechatpay.aclose()
            await supply.aclose()
            if telegram is not None:
                await telegram.stop()
            if wechat is not None:
                await wechat.stop()
            await shop.close()
            log.info("event=server.stopped")

    metrics = ShopMetrics(shop, status).attach()
    app = create_app(shop, status, lifespan, telegram, wechat.routes() if wechat is not None else (), metrics)
    app.router.routes.extend(dashboard_routes(links, DashboardPage(shop.store, ctx.tr, settings.display_timezone)))
    app.router.routes.extend(supply.routes())  # POST /suppliers/{name}/notify
    if wechatpay is not None:
        app.router.routes.extend(wechatpay.routes())  # GET /pay/wechat/{order_ref}, POST /pay/wechat/notify
    if settings.api.enabled:  # the signed order API under /api/v1 (bot/api.py); its channel joins the shop's
        from bot.api import build_api

        api = build_api(shop)
        app.router.routes.extend(api.routes())
        served: ASGIApp = api.front(app, metrics.http)  # API requests skip the route list (bot/api.py ApiFront)
    else:
        served = app
    # proxy_headers off: uvicorn would believe X-Forwarded-For from 127.0.0.1; KAMIBOT_RISK__TRUSTED_PROXIES decides
    config = uvicorn.Config(served, host=settings.http_host, port=settings.http_port, proxy_headers=False,
                            log_level=settings.log_level.lower(), lifespan="on")
    redact_access_log()  # after Config: it (re)configures uvicorn's loggers
    server = uvicorn.Server(config)
    await server.serve()
    return 0
