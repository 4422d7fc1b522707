"""`kamibot run` as its own OS process against the fake Bot API, on a seeded demo shop (SQLite file).

The bot gets a process of its own so that what a test or a benchmark measures of it is not mixed with the
fake server's and the walkers' work in the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

from bot.composition import build_shop
from bot.demo import seed_demo
from bot.settings import Settings
from fulfillment.importer import ImportSource, import_codes
from tests.e2e.procs import settings_env, spawn
from tests.fakes.loopback import free_port
from tests.fakes.telegram_bot_api import FakeTelegram


async def seed(data_dir: Path, db_url: str, extra_codes: int = 0) -> None:
    """The demo shop, and `extra_codes` more codes for its first SKU (genshin-60; the demo has 30)."""
    shop = await build_shop(Settings(data_dir=data_dir, database_url=db_url))
    try:
        await seed_demo(shop)
        if extra_codes:
            path = data_dir / "more-codes.txt"
            path.write_text("".join(f"MORE-{secrets.token_hex(8)}\n" for _ in range(extra_codes)), encoding="utf-8")
            pool = await shop.catalog.find_pool("genshin-60")
            await import_codes(shop.store, shop.vault, pool, ImportSource(path, "txt"), supplier="test", unit_cost=1)
    finally:
        await shop.close()


@contextlib.asynccontextmanager
async def telegram_bot_process(data_dir: Path, fake: FakeTelegram, extra_codes: int = 0,
                               **settings: str) -> AsyncIterator[subprocess.Popen[str]]:
    """Polling mode; `settings`: more KAMIBOT_TELEGRAM__* values (e.g. PER_CHAT_BURST="4")."""
    db_url = f"sqlite:///{data_dir / 'shop.db'}"
    await seed(data_dir, db_url, extra_codes)
    env = {**settings_env(data_dir, db_url), "KAMIBOT_HTTP_PORT": str(free_port()),
           "KAMIBOT_DEFAULT_LANGUAGE": "en", "KAMIBOT_TELEGRAM__TOKEN": fake.token,
           "KAMIBOT_TELEGRAM__BASE_URL": fake.base_url, "KAMIBOT_TELEGRAM__BASE_FILE_URL": fake.base_file_url,
           **{f"KAMIBOT_TELEGRAM__{k.upper()}": v for k, v in settings.items()}}
    proc = spawn("bot", "run", env=env)
    failed: BaseException | None = None
    try:
        await fake.wait_for("deleteWebhook", timeout=60)  # polling starts right after
        await asyncio.sleep(0.3)
        if proc.poll() is not None:
            raise AssertionError(f"the bot stopped: {proc.communicate()[1][-2000:]}")
        yield proc
    except BaseException as exc:
        failed = exc
        raise
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = await asyncio.to_thread(proc.communicate, timeout=30)
        except Exception:
            proc.kill()
            raise
        if failed is not None and err:  # what the bot logged, next to the test's failure
            failed.add_note("the bot's log (last 4000 characters):\n" + err[-4000:])
    errors = [line for line in err.splitlines() if "ERROR" in line or "Traceback" in line]
    assert not errors, errors[:5]


def cpu_seconds(proc: subprocess.Popen[str]) -> float:
    """User + system CPU time the process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
