"""Work that outlives the reply (a delivery run, a broadcast, a deferred WeChat answer), owned by a task set.

The task stays referenced until it is done (the event loop keeps only weak references), and a failure reaches
the log with its traceback, the way python-telegram-bot's `Application.create_task` routes a task's exception
to its error handlers (telegram/ext/_application.py `__create_task_done_callback`) instead of letting asyncio
report "exception was never retrieved" at garbage collection, or nothing at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("kamibot.background")


def spawn(tasks: set[asyncio.Task[Any]], work: Awaitable[Any], name: str = "") -> asyncio.Task[Any]:
    """Start `work` now; it is kept in `tasks` until done, and an exception it ends with is logged."""

    async def run() -> Any:
        return await work

    task = asyncio.get_running_loop().create_task(run(), name=name or None)
    tasks.add(task)
    task.add_done_callback(_finished(tasks))
    return task


def _finished(tasks: set[asyncio.Task[Any]]) -> Callable[[asyncio.Task[Any]], None]:
    def done(task: asyncio.Task[Any]) -> None:
        tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("event=background.failed task=%s error=%s", task.get_name(), type(exc).__name__,
                      exc_info=exc)

    return done
