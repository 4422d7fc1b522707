"""`kamibot run`: the Starlette app under uvicorn plus the background jobs, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Lifespan

from bot.composition import Shop, build_shop
from bot.jobs import JobStatus, run_jobs
from bot.settings import Settings

log = logging.getLogger("kamibot.server")


def create_app(shop: Shop, jobs: JobStatus, lifespan: Lifespan[Starlette] | None = None) -> Starlette:
    async def health(request: Request) -> JSONResponse:
        stale = jobs.stale()
        body = {"status": "degraded" if stale else "ok", "schema": await shop.store.schema_version(),
                "outbox_pending": await shop.store.pending_outbox(), "stale_jobs": stale,
                "job_failures": jobs.failures}
        return JSONResponse(body, status_code=503 if stale else 200)

    return Starlette(routes=[Route("/healthz", health)], lifespan=lifespan)


async def serve(settings: Settings) -> int:
    """Jobs live in the app's lifespan, so uvicorn's graceful shutdown (SIGTERM/SIGINT) stops them and
    closes the store before it exits (uvicorn then re-raises the signal, as it documents)."""
    shop = await build_shop(settings)
    status = JobStatus()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        jobs = asyncio.create_task(run_jobs(shop, stop, status))
        try:
            yield
        finally:
            stop.set()
            await jobs
            await shop.close()
            log.info("event=server.stopped")

    app = create_app(shop, status, lifespan)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.http_host, port=settings.http_port,
                                           log_level=settings.log_level.lower(), lifespan="on"))
    await server.serve()
    return 0
