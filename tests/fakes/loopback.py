"""Servers on 127.0.0.1 for tests and benchmarks: a free port, and a uvicorn server running in this loop."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(app: Any, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Start uvicorn on 127.0.0.1:port in the running loop; returns once it accepts connections."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                           proxy_headers=False))  # as in bot/server.py
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
        await asyncio.sleep(0.01)
    return server, task


async def shut(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await task
