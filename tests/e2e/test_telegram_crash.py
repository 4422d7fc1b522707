"""SIGKILL `kamibot run` between taking Stars payments from Telegram and recording them; after a restart every
payer has exactly one code. Telegram sends an update once: what the bot acknowledged (the next getUpdates offset,
the webhook's 200) before recording it never comes again. The Stars recovery job is off here, so this proves the
intake alone (recovery from getStarTransactions: test_stars_recovery_* and the last test here)."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import httpx
import pytest

from bot.composition import build_shop
from bot.demo import seed_demo
from bot.settings import Settings
from fulfillment.checkpoints import PAYMENT_TAKEN
from fulfillment.orders import CheckoutRequest
from storage.records import OrderState
from tests.e2e.procs import settings_env, spawn
from tests.fakes.loopback import free_port
from tests.fakes.telegram_bot_api import FakeTelegram

PAYERS = 12
FIRST_PAYER = 5000
SECRET = "crash-secret-1"


async def _orders(tmp_path: Path, db_url: str) -> dict[int, str]:
    """One unpaid order of 45 Stars per payer (SKU 1 of the demo shop)."""
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    await seed_demo(shop)
    refs = {}
    for user in range(FIRST_PAYER, FIRST_PAYER + PAYERS):
        order = await shop.orders.checkout(CheckoutRequest("telegram", str(user), str(user), 1, 1))
        assert order.amount == 45
        refs[user] = order.ref
    await shop.close()
    return refs


def _env(tmp_path: Path, db_url: str, fake: FakeTelegram, port: int, mode: str, recovery_every: float) -> dict:
    return {**settings_env(tmp_path, db_url), "KAMIBOT_HTTP_PORT": str(port), "KAMIBOT_DEFAULT_LANGUAGE": "en",
            "KAMIBOT_TELEGRAM__TOKEN": fake.token, "KAMIBOT_TELEGRAM__BASE_URL": fake.base_url,
            "KAMIBOT_TELEGRAM__BASE_FILE_URL": fake.base_file_url, "KAMIBOT_TELEGRAM__MODE": mode,
            "KAMIBOT_TELEGRAM__WEBHOOK_SECRET": SECRET, "KAMIBOT_TELEGRAM__PER_CHAT_INTERVAL_S": "0",
            "KAMIBOT_TELEGRAM__STARS_RECOVERY_EVERY_S": str(recovery_every),
            "KAMIBOT_TELEGRAM__STARS_RECOVERY_GRACE_S": "0"}


async def _healthy(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz", timeout=1)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("kamibot run did not come up")


def _pay_all(fake: FakeTelegram, refs: dict[int, str], **how: object) -> None:
    for user, ref in refs.items():
        fake.successful_payment(user, ref, 45, f"charge-{user}", **how)


async def _every_payer_has_one_code(fake: FakeTelegram, refs: dict[int, str], db_url: str, tmp_path: Path) -> None:
    for user in refs:
        await fake.wait_for("sendMessage", lambda p, u=user: int(p["chat_id"]) == u and "<code>" in p["text"],
                            timeout=60)
    await asyncio.sleep(1.0)  # nothing more arrives
    codes: dict[int, list[str]] = {user: [] for user in refs}
    for p in fake.sent("sendMessage"):
        if int(p["chat_id"]) in codes:
            codes[int(p["chat_id"])] += re.findall(r"<code>([^<]+)</code>", p["text"])
    assert all(len(c) == 1 for c in codes.values()), codes
    assert len({c[0] for c in codes.values()}) == PAYERS, "no code went to two payers"
    shop = await build_shop(Settings(data_dir=tmp_path, database_url=db_url))
    for ref in refs.values():
        assert (await shop.store.order_by_ref(ref)).state == OrderState.DELIVERED, ref
    await shop.close()


async def _stop(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM), err[-3000:]


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_killed_between_taking_and_recording_payments_every_payer_gets_one_code(tmp_path, db_url, fake, mode):
    refs = await _orders(tmp_path, db_url)
    port = free_port()
    env = _env(tmp_path, db_url, fake, port, mode, recovery_every=0)
    if mode == "webhook":
        fake.webhook = (f"http://127.0.0.1:{port}/telegram/webhook", SECRET)
    else:
        _pay_all(fake, refs)  # one getUpdates batch of PAYERS payments
    # given: a bot that dies at the first payment it took and had not recorded
    proc = spawn("tests.e2e.run_killed", PAYMENT_TAKEN, "1", env=env)
    if mode == "webhook":
        await _healthy(port)
        _pay_all(fake, refs)  # Telegram pushes every payment; the bot dies while handling the first
    _, err = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    # when: it starts again (Telegram keeps whatever was not acknowledged)
    again = spawn("bot", "run", env=env)
    try:
        await _every_payer_has_one_code(fake, refs, db_url, tmp_path)
    finally:
        await _stop(again)


async def test_payments_whose_updates_were_lost_are_found_at_start_up(tmp_path, db_url, fake):
    refs = await _orders(tmp_path, db_url)
    # given: paid, but the updates were acknowledged by a bot that crashed (what the old intake lost for good)
    _pay_all(fake, refs, lost=True)
    env = _env(tmp_path, db_url, fake, free_port(), "polling", recovery_every=600)
    # when: the bot starts; the Stars recovery job's next regular tick is ten minutes away
    proc = spawn("bot", "run", env=env)
    try:
        await _every_payer_has_one_code(fake, refs, db_url, tmp_path)
    finally:
        await _stop(proc)
