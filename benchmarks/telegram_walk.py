"""How the Telegram shop feels to one buyer, and to everyone while one user floods (issue 13 §2 and §4).

The bot runs as `kamibot run` (polling, SQLite, the demo shop) against the fake Bot API with Telegram's real
pace (a burst of 4 then one message per second per chat, 30 per second overall). A walker presses the first
button that leads on at each step (tests/e2e/walker.py).

(a) walk: `/start` → invoice → paid → code, one buyer at a time (1.2 s apart: buyers never share the overall
    30/s): seconds to the invoice and to the code, new messages and edits per purchase. Target: invoice < 1 s.
(b) flood: one user sends 300 updates in 2 s (messages and button presses alternating) while buyers walk the
    same way; the flooder's answers, notices and answered presses, the buyers' purchase times alone and during
    the flood, a newcomer's first reply (`/start` 1 s into the flood).
(c) crowd (`--crowd N`): N buyers start walking at once (browsing and paying at the same time, issue 17 "paid
    deliveries first"): seconds from the successful payment to the code message, p50/p99/max (target p99 < 1.5 s),
    and from `/start` to the invoice.
Prints one JSON line.

    python benchmarks/telegram_walk.py [--buyers 5] [--walk-only] [--crowd 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.telegram_process import cpu_seconds, telegram_bot_process  # noqa: E402
from tests.e2e.walker import Walk, Walker  # noqa: E402
from tests.fakes.telegram_bot_api import FakeTelegram  # noqa: E402

FLOODER, NEWCOMER = 4001, 4002
SENT = ("sendMessage", "editMessageText", "sendInvoice", "sendDocument")


async def _buyers(fake: FakeTelegram, first: int, n: int, every_s: float) -> list[Walk]:
    async def one(k: int) -> Walk:
        await asyncio.sleep(k * every_s)
        return await Walker(fake, first + k).buy(f"bench-{first + k}")

    return list(await asyncio.gather(*(one(k) for k in range(n))))


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)], 3)


async def _crowd(fake: FakeTelegram, first: int, n: int) -> dict[str, Any]:
    paid_at: dict[int, float] = {}  # when each buyer's successful_payment update was injected
    real = fake.successful_payment

    def paying(user_id: int, *args: Any, **kwargs: Any) -> None:
        paid_at[user_id] = time.monotonic()
        real(user_id, *args, **kwargs)

    async def one(k: int) -> tuple[Walk, float]:
        walk = await Walker(fake, first + k, timeout_s=120.0).buy(f"crowd-{first + k}")
        return walk, walk.started + walk.code_s - paid_at[first + k]

    fake.successful_payment = paying  # type: ignore[method-assign]
    started = time.monotonic()
    try:
        done = await asyncio.gather(*(one(k) for k in range(n)))
    finally:
        del fake.successful_payment
    to_code = [paid for _, paid in done]
    invoice = [w.invoice_s for w, _ in done]
    return {"buyers": n, "seconds": round(time.monotonic() - started, 2),
            "payment_to_code_s": {"p50": _quantile(to_code, 0.5), "p99": _quantile(to_code, 0.99),
                                  "max": round(max(to_code), 3)},
            "start_to_invoice_s": {"p50": _quantile(invoice, 0.5), "p99": _quantile(invoice, 0.99),
                                   "max": round(max(invoice), 3)}}


def _summary(walks: list[Walk]) -> dict[str, Any]:
    return {"to_invoice_s": {"median": round(statistics.median(w.invoice_s for w in walks), 3),
                             "max": round(max(w.invoice_s for w in walks), 3)},
            "to_code_s": {"median": round(statistics.median(w.code_s for w in walks), 3),
                          "max": round(max(w.code_s for w in walks), 3)},
            "new_messages_per_purchase": statistics.median(w.new_messages for w in walks),
            "edits_per_purchase": statistics.median(w.edits for w in walks)}


async def _flood(fake: FakeTelegram, menu_id: int, updates: int, seconds: float) -> set[str]:
    loop = asyncio.get_running_loop()
    start, presses = loop.time(), set()
    for i in range(updates):
        await asyncio.sleep(max(0.0, start + i * seconds / updates - loop.time()))
        if i % 2:
            presses.add(fake.press_button(FLOODER, menu_id, "shop"))
        else:
            fake.send_text(FLOODER, "/start")
    return presses


async def _first_reply(fake: FakeTelegram, after_s: float) -> float:
    await asyncio.sleep(after_s)
    walker = Walker(fake, NEWCOMER)
    started = time.monotonic()
    fake.send_text(NEWCOMER, "/start")
    await walker._next()
    return time.monotonic() - started


async def _until_quiet(fake: FakeTelegram, chat: int, quiet_s: float, limit_s: float) -> None:
    """Until nothing more was sent to `chat` for quiet_s."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        before = sum(1 for m, p in fake.calls if m in SENT and int(p.get("chat_id", 0)) == chat)
        await asyncio.sleep(quiet_s)
        if sum(1 for m, p in fake.calls if m in SENT and int(p.get("chat_id", 0)) == chat) == before:
            return


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--buyers", type=int, default=5)
    ap.add_argument("--walk-only", action="store_true", help="(a) only")
    ap.add_argument("--crowd", type=int, default=0, help="(c) only: this many buyers at once")
    args = ap.parse_args()
    fake = FakeTelegram()
    await fake.start()
    figures: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with telegram_bot_process(Path(tmp), fake, extra_codes=args.crowd + 10) as proc:
                await _buyers(fake, 5000, 1, 0)  # warm-up
                if args.crowd:
                    figures["crowd"] = await _crowd(fake, 6000, args.crowd)
                    print(json.dumps(figures))
                    return
                alone = await _buyers(fake, 5001, args.buyers, 1.2)
                figures["walk_alone"] = _summary(alone)
                if args.walk_only:
                    print(json.dumps(figures))
                    return
                since = len(fake.calls)
                to_flooder_at: list[float] = []
                fake.listener = lambda m, p, at: to_flooder_at.append(at) if (
                    m in SENT and int(p.get("chat_id", 0)) == FLOODER) else None
                fake.send_text(FLOODER, "/start")
                _, menu = await Walker(fake, FLOODER)._next()
                cpu, flood_at = cpu_seconds(proc), time.monotonic()
                presses, during, first_reply = await asyncio.gather(
                    _flood(fake, int(menu["message_id"]), 300, 2.0), _buyers(fake, 5101, args.buyers, 1.2),
                    _first_reply(fake, 1.0))
                cpu = cpu_seconds(proc) - cpu
                await _until_quiet(fake, FLOODER, 3.0, 120.0)
                to_flooder = [p for m, p in fake.calls[since:] if m in SENT and int(p.get("chat_id", 0)) == FLOODER]
                answered = {p["callback_query_id"] for m, p in fake.calls[since:] if m == "answerCallbackQuery"}
                figures |= {
                    "flood": {"updates": 300, "seconds": 2.0,
                              "flooder_messages_and_edits": len(to_flooder),
                              "flooder_slow_down_notices": sum("too fast" in str(p.get("text")) for p in to_flooder),
                              "flooder_presses_answered": f"{len(presses & answered)}/{len(presses)}",
                              "flooder_last_answer_after_flood_start_s": round(max(to_flooder_at) - flood_at, 1),
                              "newcomer_first_reply_s": round(first_reply, 3),
                              "bot_cpu_s_during": round(cpu, 2),
                              "buyers_during": _summary(during),
                              "purchase_ratio_during_vs_alone": round(
                                  statistics.median(w.code_s for w in during)
                                  / statistics.median(w.code_s for w in alone), 2)}}
    finally:
        await fake.stop()
    print(json.dumps(figures))


if __name__ == "__main__":
    asyncio.run(main())
