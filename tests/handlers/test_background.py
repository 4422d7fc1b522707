"""handlers/background.py: work started after the reply is kept until done and a failure reaches the log."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from handlers.background import spawn


async def test_failed_task_is_logged_with_its_traceback_and_forgotten(caplog):
    tasks: set[asyncio.Task[Any]] = set()

    async def broken() -> None:
        raise RuntimeError("supplier down")

    with caplog.at_level(logging.ERROR, logger="kamibot.background"):
        task = spawn(tasks, broken(), name="restock")
        assert task in tasks  # referenced while it runs
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # done callbacks run on the next loop turn
    assert tasks == set()
    [record] = caplog.records
    assert "event=background.failed task=restock error=RuntimeError" in record.getMessage()
    assert record.exc_info is not None
    assert "supplier down" in str(record.exc_info[1])


async def test_finished_and_cancelled_tasks_log_nothing(caplog):
    tasks: set[asyncio.Task[Any]] = set()
    done = spawn(tasks, asyncio.sleep(0, result=7))
    hanging = spawn(tasks, asyncio.sleep(3600))
    with caplog.at_level(logging.DEBUG, logger="kamibot.background"):
        assert await done == 7
        hanging.cancel()
        await asyncio.gather(hanging, return_exceptions=True)
        await asyncio.sleep(0)
    assert tasks == set()
    assert caplog.records == []


async def test_any_awaitable_is_accepted(caplog):
    tasks: set[asyncio.Task[Any]] = set()
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = spawn(tasks, future)
    future.set_result("ok")
    assert await task == "ok"
