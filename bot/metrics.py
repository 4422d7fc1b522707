"""GET /metrics in Prometheus text format: one CollectorRegistry per shop (never the process-global default, so
several shops in one process do not collide).

Names carry the `kamibot_` prefix and base units (`_seconds`, `_total`). Labels are low-cardinality only:
channel, state, provider, outcome, job, HTTP method, route *template* and status; never user ids, order refs or
codes. Order counts and the outbox backlog are read from the store at scrape time (right across instances);
payment notifications, paid → delivered seconds and HTTP timings are counted in this process.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fulfillment.delivery import Delivery
from storage.events import EventType

if TYPE_CHECKING:
    from bot.composition import Shop
    from bot.jobs import JobStatus

#: payment → code: the target is p99 < 1.5 s (issue 17), so the buckets are fine below a few seconds
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _JobCollector(Collector):
    """Job ticks and failures from the process's JobStatus (bot/jobs.py), read at scrape time."""

    def __init__(self, status: JobStatus) -> None:
        self.status = status

    def collect(self) -> Iterable[Metric]:
        runs = CounterMetricFamily("kamibot_job_runs", "Background job ticks run, by job", labels=["job"])
        failures = CounterMetricFamily("kamibot_job_failures", "Background job ticks that raised, by job",
                                       labels=["job"])
        # the units of work a tick did in this process (rows sent, reservations expired, …): summed over the
        # instances it is the work done once in total (bot/jobs.py says job by job why)
        work = CounterMetricFamily("kamibot_job_work", "Units of work background jobs did in this process, by job",
                                   labels=["job"])
        for name in sorted(set(self.status.runs) | set(self.status.intervals)):
            runs.add_metric([name], self.status.runs.get(name, 0))
            failures.add_metric([name], self.status.failures.get(name, 0))
            work.add_metric([name], self.status.work.get(name, 0))
        yield runs
        yield failures
        yield work


class ShopMetrics:
    def __init__(self, shop: Shop, jobs: JobStatus | None = None) -> None:
        self.shop = shop
        self.registry = CollectorRegistry()
        r = self.registry
        self.orders = Gauge("kamibot_orders", "Orders by channel and state (from the database)",
                            ["channel", "state"], registry=r)
        self.outbox_pending = Gauge("kamibot_outbox_pending", "Outbox rows waiting to be sent (from the database)",
                                    registry=r)
        self.payments = Counter("kamibot_payment_notifications", "Payment notifications by provider and outcome",
                                ["provider", "outcome"], registry=r)
        self.paid_to_delivered = Histogram("kamibot_paid_to_delivered_seconds",
                                           "Seconds from payment received to the codes sent", registry=r,
                                           buckets=DELIVERY_BUCKETS)
        self.http = Histogram("kamibot_http_request_duration_seconds", "HTTP requests by route template and status",
                              ["method", "route", "status"], registry=r)
        if jobs is not None:
            r.register(_JobCollector(jobs))

    def attach(self) -> ShopMetrics:
        """Hook into the shop's payment inbox and delivery worker (their optional observer callbacks)."""
        self.shop.payments.on_outcome = self.payment
        self.shop.delivery.on_delivered = self.delivered
        return self

    def payment(self, provider: str, outcome: str) -> None:
        self.payments.labels(provider=provider, outcome=outcome).inc()

    async def delivered(self, delivery: Delivery, done_at: datetime) -> None:
        paid = await self.shop.store.last_order_event(delivery.order.id, EventType.PAYMENT_RECEIVED)
        if paid is not None:
            self.paid_to_delivered.observe(max(0.0, (done_at - paid.at).total_seconds()))

    async def refresh(self) -> None:
        """The gauges read from the store (every instance sees the same numbers)."""
        store = self.shop.store
        counts = await store.order_state_counts()
        self.orders.clear()
        for channel, state, n in counts:
            self.orders.labels(channel=channel, state=state).set(n)
        self.outbox_pending.set(await store.pending_outbox())

    async def endpoint(self, request: Request) -> Response:
        token = self.shop.settings.metrics_token.get_secret_value()
        if token:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {token}".encode()):
                return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await self.refresh()
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def route_template(routes: Iterable[BaseRoute], scope: Scope) -> str:
    """The template of the route that serves `scope` ("/pay/wechat/{order_ref}"), never the raw path."""
    for route in routes:
        match, child = route.matches(scope)
        if match == Match.FULL:
            if isinstance(route, Mount):
                inner = route_template(route.routes, {**scope, **child})
                return route.path + (inner if inner != UNMATCHED else "/*")
            return str(getattr(route, "path", UNMATCHED))
    return UNMATCHED


async def timed(app: ASGIApp, scope: Scope, receive: Receive, send: Send,
                observe: Callable[[int, float], None]) -> None:
    """Serve an HTTP request through `app`, then observe(status, seconds): 500 when it answered nothing (raised)."""
    start = time.perf_counter()
    status = 500

    async def send_status(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        await send(message)

    try:
        await app(scope, receive, send_status)
    finally:
        observe(status, time.perf_counter() - start)


class MetricsMiddleware:
    """Pure ASGI middleware: seconds of every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: ShopMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        def observe(status: int, seconds: float) -> None:
            app = scope.get("app")
            route = route_template(app.router.routes if app is not None else [], scope)
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.http.labels(method=method, route=route, status=str(status)).observe(seconds)

        await timed(self.app, scope, receive, send, observe)
