"""`kamibot run`: the Starlette app under uvicorn plus the background jobs, in one process."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.composition import Shop, build_shop
from bot.jobs import run_jobs
from bot.settings import Settings


def create_app(shop: Shop) -> Starlette:
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "schema": await shop.store.schema_version(),
                             "outbox_pending": await shop.store.pending_outbox()})

    return Starlette(routes=[Route("/healthz", health)])


async def serve(settings: Settings) -> int:
    shop = await build_shop(settings)
    stop = asyncio.Event()
    jobs = asyncio.create_task(run_jobs(shop, stop))
    server = uvicorn.Server(uvicorn.Config(create_app(shop), host=settings.http_host, port=settings.http_port,
                                           log_level=settings.log_level.lower(), lifespan="off"))
    try:
        await server.serve()
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await jobs
        await shop.close()
    return 0
