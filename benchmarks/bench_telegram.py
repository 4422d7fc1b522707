"""The bot as a separate process (`kamibot run`, SQLite) against the fake Bot API server, in polling and webhook mode.

(a) burst: N customers press "buy" at the same moment, pay (pre-checkout + successful_payment) and must each
    receive exactly one code message: purchases/s from the first press to the last code message.
(b) steady: payments arrive at R/s for S seconds: p50/p99 from the successful_payment update leaving the fake
    server to the code message arriving at it.
Peak RSS of the bot process from /proc (VmHWM). Prints one JSON line.

    python benchmarks/bench_telegram.py [--burst 1000] [--rate 100] [--seconds 30] [--modes polling,webhook]

Targets (issue #4): burst ≥ 300 purchases/s, steady p99 < 100 ms, RSS < 200 MB, no lost or duplicated delivery.
The bot's global pace is raised for the run (KAMIBOT_TELEGRAM__GLOBAL_PER_SECOND): the fake server has no
30 messages/s limit and the benchmark measures the shop's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.loopback import free_port  # noqa: E402
from tests.fakes.telegram_bot_api import FakeTelegram  # noqa: E402

SECRET = "bench-secret"
CODE = re.compile(r"<code>([^<]+)</code>")


def _env(data: Path, fake: FakeTelegram, mode: str, port: int) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "KAMIBOT_DATA_DIR": str(data), "KAMIBOT_LOG_LEVEL": "WARNING",
            "KAMIBOT_HTTP_PORT": str(port), "KAMIBOT_TELEGRAM__TOKEN": fake.token,
            "KAMIBOT_TELEGRAM__BASE_URL": fake.base_url, "KAMIBOT_TELEGRAM__BASE_FILE_URL": fake.base_file_url,
            "KAMIBOT_TELEGRAM__MODE": mode, "KAMIBOT_TELEGRAM__WEBHOOK_SECRET": SECRET,
            "KAMIBOT_TELEGRAM__NOTIFY_PAID_ORDERS": "false", "KAMIBOT_TELEGRAM__GLOBAL_PER_SECOND": "100000",
            "KAMIBOT_DEFAULT_LANGUAGE": "en"}


def _prepare_shop(env: dict[str, str], data: Path, codes: int) -> None:
    run = [sys.executable, "-m", "bot"]
    subprocess.run([*run, "catalog", "load", str(ROOT / "bot" / "demo_shop.toml")], env=env, check=True,
                   capture_output=True)
    path = data / "codes.txt"
    path.write_text("".join(f"BENCH-{secrets.token_hex(8)}\n" for _ in range(codes)))
    subprocess.run([*run, "codes", "import", "genshin-60", str(path), "--json"], env=env, check=True,
                   capture_output=True)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Watch:
    """Follows the fake server's calls: invoices per chat, code messages per chat, with arrival times."""

    def __init__(self, fake: FakeTelegram) -> None:
        self.invoices: dict[int, str] = {}
        self.codes: dict[int, list[tuple[float, str]]] = {}
        self.answers = 0
        self.changed = asyncio.Event()
        fake.listener = self.on_call

    def on_call(self, method: str, params: dict[str, Any], at: float) -> None:
        if method == "sendInvoice":
            self.invoices[int(params["chat_id"])] = str(params["payload"])
        elif method == "answerPreCheckoutQuery":
            self.answers += 1
        elif method == "sendMessage" and "<code>" in str(params.get("text", "")):
            for code in CODE.findall(str(params["text"])):
                self.codes.setdefault(int(params["chat_id"]), []).append((at, code))
        self.changed.set()

    async def until(self, predicate: Any, limit_s: float, what: str) -> None:
        deadline = time.monotonic() + limit_s
        while not predicate():
            if time.monotonic() > deadline:
                raise SystemExit(f"benchmark timed out waiting for {what}: invoices {len(self.invoices)},"
                                 f" answers {self.answers}, code chats {len(self.codes)}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.5)


async def _open_invoices(fake: FakeTelegram, watch: Watch, users: list[int]) -> None:
    for user in users:
        fake.press_button(user, 1, "buy:1:1:45")
    await watch.until(lambda: all(u in watch.invoices for u in users), 300, "invoices")
    before = watch.answers
    for user in users:
        fake.pre_checkout(user, watch.invoices[user], 45)
    await watch.until(lambda: watch.answers >= before + len(users), 300, "pre-checkout answers")


async def burst(fake: FakeTelegram, watch: Watch, n: int) -> dict[str, float]:
    users = list(range(10_000, 10_000 + n))
    start = time.monotonic()
    await _open_invoices(fake, watch, users)
    opened = time.monotonic()
    for user in users:
        fake.successful_payment(user, watch.invoices[user], 45, f"burst-{user}")
    await watch.until(lambda: all(u in watch.codes for u in users), 180, "burst codes")
    elapsed = max(watch.codes[u][0][0] for u in users) - start
    await asyncio.sleep(1.0)  # late duplicates would show up here
    paying = max(watch.codes[u][0][0] for u in users) - opened
    return {"purchases": n, "per_s": round(n / elapsed, 1), "checkout_s": round(opened - start, 2),
            "payment_to_last_code_s": round(paying, 2),
            "exactly_one_code_each": all(len(watch.codes[u]) == 1 for u in users),
            "distinct_codes": len({watch.codes[u][0][1] for u in users}) == n}


async def steady(fake: FakeTelegram, watch: Watch, rate: int, seconds: int) -> dict[str, float]:
    users = list(range(50_000, 50_000 + rate * seconds))
    await _open_invoices(fake, watch, users)
    await asyncio.sleep(1.5)  # customers take a moment to pay: the invoice's per-chat pacing slot has passed
    sent_at: dict[int, float] = {}
    start = time.monotonic()
    for i, user in enumerate(users):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        sent_at[user] = time.monotonic()
        fake.successful_payment(user, watch.invoices[user], 45, f"steady-{user}")
    await watch.until(lambda: all(u in watch.codes for u in users), 120, "steady codes")
    latencies = sorted((watch.codes[u][0][0] - sent_at[u]) * 1000 for u in users)
    return {"purchases": len(users), "p50_ms": round(latencies[len(latencies) // 2], 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 1),
            "exactly_one_code_each": all(len(watch.codes[u]) == 1 for u in users)}


async def _until_healthy(port: int) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise SystemExit("the bot's HTTP server did not come up")


async def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    fake = FakeTelegram()
    await fake.start()
    watch = Watch(fake)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        port = free_port()
        env = _env(data, fake, mode, port)
        _prepare_shop(env, data, args.burst + args.rate * args.seconds + 100)
        log = (data / "bot.log").open("w")
        bot = subprocess.Popen([sys.executable, "-m", "bot", "run"], env=env,  # noqa: ASYNC220 - starts at once
                               stdout=subprocess.DEVNULL, stderr=log)
        try:
            await fake.wait_for("getMe", timeout=30)
            if mode == "webhook":
                await _until_healthy(port)  # uvicorn binds after the bot's own start
                fake.webhook = (f"http://127.0.0.1:{port}/telegram/webhook", SECRET)
            else:
                await fake.wait_for("deleteWebhook", timeout=30)
            result: dict[str, Any] = {"burst": await burst(fake, watch, args.burst)}
            result["steady"] = await steady(fake, watch, args.rate, args.seconds)
            result["peak_rss_mb"] = round(_peak_rss_mb(bot.pid), 1)
        finally:
            bot.send_signal(signal.SIGTERM)
            bot.communicate(timeout=30)
            log.close()
            warnings = [line for line in (data / "bot.log").read_text().splitlines() if "WARNING" in line
                        or "ERROR" in line]
            print(f"{mode}: {len(warnings)} warning lines; first: {warnings[:3]}", file=sys.stderr)
            await fake.stop()
    return result


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--modes", default="polling,webhook")
    args = ap.parse_args()
    figures: dict[str, Any] = {}
    for mode in args.modes.split(","):
        figures[mode] = await run_mode(mode, args)
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
