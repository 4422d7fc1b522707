"""Several `kamibot run` OS processes on one database (and Redis): start them, wait until each answers
/healthz, read their /metrics, stop them gracefully and check that none logged an error."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.e2e.procs import settings_env, spawn
from tests.fakes.loopback import free_port
from tests.fakes.telegram_bot_api import FakeTelegram

SECRET = "instances-webhook-secret"


@dataclass
class Instance:
    proc: subprocess.Popen[str]
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook(self) -> str:
        return f"{self.base}/telegram/webhook"


def telegram_env(fake: FakeTelegram, mode: str = "webhook") -> dict[str, str]:
    return {"KAMIBOT_TELEGRAM__TOKEN": fake.token, "KAMIBOT_TELEGRAM__BASE_URL": fake.base_url,
            "KAMIBOT_TELEGRAM__BASE_FILE_URL": fake.base_file_url, "KAMIBOT_TELEGRAM__MODE": mode,
            "KAMIBOT_TELEGRAM__WEBHOOK_SECRET": SECRET, "KAMIBOT_TELEGRAM__STARS_RECOVERY_EVERY_S": "0",
            "KAMIBOT_DEFAULT_LANGUAGE": "en"}


def start(data_dir: Path, db_url: str, port: int = 0, **env: str) -> Instance:
    port = port or free_port()
    proc = spawn("bot", "run", env={**settings_env(data_dir, db_url), "KAMIBOT_HTTP_PORT": str(port), **env})
    return Instance(proc, port)


async def wait_ready(instance: Instance, within_s: float = 30.0) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(int(within_s / 0.1)):
            if instance.proc.poll() is not None:
                raise AssertionError(f"an instance stopped: {instance.proc.communicate()[1][-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{instance.base}/healthz", timeout=1)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError("an instance did not answer /healthz in time")


async def stop(instance: Instance) -> str:
    """SIGTERM (uvicorn's graceful stop); its stderr."""
    if instance.proc.poll() is None:
        instance.proc.send_signal(signal.SIGTERM)
    try:
        _, err = await asyncio.to_thread(instance.proc.communicate, timeout=30)
    except subprocess.TimeoutExpired:
        instance.proc.kill()
        raise
    return err


@contextlib.asynccontextmanager
async def running(data_dir: Path, db_url: str, count: int, **env: str) -> AsyncIterator[list[Instance]]:
    """`count` instances, all answering /healthz; on exit stopped, and none may have logged an error."""
    instances = [start(data_dir, db_url, **env) for _ in range(count)]
    errors: list[str] = []
    try:
        await asyncio.gather(*(wait_ready(i) for i in instances))
        yield instances
    finally:
        for err in await asyncio.gather(*(stop(i) for i in instances)):
            errors += [line for line in err.splitlines() if "ERROR" in line or "Traceback" in line]
    assert not errors, errors[:5]


async def job_work(instance: Instance) -> dict[str, float]:
    """kamibot_job_work_total by job, as this instance's /metrics shows it."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{instance.base}/metrics", timeout=5)).text
    pattern = r'^kamibot_job_work_total\{job="([^"]+)"\} (\S+)$'
    return {job: float(value) for job, value in re.findall(pattern, text, re.M)}
