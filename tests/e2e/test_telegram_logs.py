"""Secrets in logs, Telegram side (issue 13 §8): a Stars purchase through a real `kamibot run` in webhook mode at log
level INFO against the fake Bot API, then every line the process wrote (stdout: uvicorn's access log; stderr: our
log) is searched for the bot token, the webhook secret and the delivered code."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import httpx

from bot.composition import build_shop
from bot.demo import seed_demo
from bot.settings import Settings
from tests.e2e.procs import ROOT, settings_env
from tests.e2e.test_telegram import CUSTOMER, MERCHANT, SECRET, _buy_to_invoice, _pay
from tests.fakes.loopback import free_port
from tests.fakes.telegram_bot_api import FakeTelegram


async def test_a_whole_telegram_webhook_purchase_leaves_no_secret_in_the_logs(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'shop.db'}"
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    try:
        assert await seed_demo(shop)
    finally:
        await shop.close()
    fake = FakeTelegram()
    await fake.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **settings_env(tmp_path, db_url), "PYTHONPATH": str(ROOT), "KAMIBOT_HTTP_PORT": str(port),
           "KAMIBOT_DEFAULT_LANGUAGE": "en", "KAMIBOT_LOG_LEVEL": "INFO",
           "KAMIBOT_TELEGRAM__TOKEN": fake.token, "KAMIBOT_TELEGRAM__BASE_URL": fake.base_url,
           "KAMIBOT_TELEGRAM__BASE_FILE_URL": fake.base_file_url, "KAMIBOT_TELEGRAM__MODE": "webhook",
           "KAMIBOT_TELEGRAM__WEBHOOK_SECRET": SECRET, "KAMIBOT_TELEGRAM__ADMIN_IDS": json.dumps([MERCHANT]),
           "KAMIBOT_TELEGRAM__PER_CHAT_INTERVAL_S": "0"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    codes: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for _ in range(400):
                try:
                    await http.get("/healthz")
                    break
                except httpx.TransportError:
                    assert proc.returncode is None, "kamibot run exited"
                    await asyncio.sleep(0.05)
        fake.webhook = (f"{base}/telegram/webhook", SECRET)  # as `kamibot telegram set-webhook` would
        ref = await _buy_to_invoice(fake)
        await _pay(fake, CUSTOMER, ref, 45, "charge-logs-1")
        delivery = await fake.wait_for("sendMessage", lambda p: "<code>" in p["text"])
        codes = re.findall(r"<code>([^<]+)</code>", delivery["text"])
        assert len(codes) == 1
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        await fake.stop()
    text = out.decode() + err.decode()
    assert "event=server.stopped" in text, text[-3000:]
    assert "POST /telegram/webhook" in text  # uvicorn's access log is on
    token_secret = fake.token.split(":", 1)[1]
    leaked = sorted(s for s in (fake.token, token_secret, SECRET, *codes) if s in text)
    assert leaked == [], [line for line in text.splitlines() if any(s in line for s in leaked)][:5]
