"""Load and chaos (issue 17; not part of CI): 3 `kamibot run` instances on one PostgreSQL database and a Redis of
their own, Telegram in webhook mode with the fake Bot API pushing updates round-robin to the instances, buyers
walking the demo shop and paying for `--seconds`. During the run: SIGKILL a random instance every 10 s and
start it again (a kill due while the two others are still restarting is skipped and counted: never the last live
instance); terminate every PostgreSQL connection once (pg_terminate_backend); stop the private Redis for
10 s and start it again. At the end, by SQL and by the fake's records: zero paid orders undelivered, zero codes
delivered twice, zero payments recorded twice. Prints one JSON line: purchases/s, payment → code p50/p99
outside and inside faults, the recovery time after each fault (fault → first code for a payment made after it).

A buyer whose update an instance acknowledged and then lost in a SIGKILL (Telegram sends an update once) starts
over as a person would; a payment is recorded before its webhook is answered, so a paid buyer waits for the code.

Three kinds of buyers at once (benchmarks/chaos_buyers.py): Telegram (Stars), WeChat (numbered dialog, JSAPI
pay page, signed WeChat Pay notification, the code by customer-service message) and order-API clients (signed
POST /orders with an Idempotency-Key, retried across instances; a retried request must answer the same order).
Payment → code: Telegram and WeChat from the payment update/notification to the code message; the order API
from the first request to the answer carrying the codes (the wallet is debited inside that request).

    python benchmarks/chaos.py [--seconds 60] [--buyers 12] [--wechat-buyers 6] [--api-buyers 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from chaos_buyers import ApiBuyer, Lost, RoundRobin, WeChatSide, wechat_buy, wechat_code  # noqa: E402

from bot.composition import build_shop  # noqa: E402
from bot.settings import Settings  # noqa: E402
from fulfillment.api_clients import ApiKeys  # noqa: E402
from locales import Translator  # noqa: E402
from storage.records import Price  # noqa: E402
from tests.conftest import PG_DSN  # noqa: E402
from tests.e2e import instances  # noqa: E402
from tests.e2e.telegram_process import seed  # noqa: E402
from tests.e2e.walker import Walker  # noqa: E402
from tests.fakes.loopback import free_port  # noqa: E402
from tests.fakes.telegram_bot_api import FakeTelegram  # noqa: E402
from tests.fakes.wechat_api import CallbackPoster  # noqa: E402

INSTANCES = 3
KILL_EVERY_S = 10.0
CODE = re.compile(r"<code>([^<]+)</code>")  # handlers/telegram/render.py: each code as <code>…</code>
SQL = {
    "paid_undelivered": "SELECT COUNT(*) FROM orders WHERE state IN ('paid', 'delivering')",
    "use_sold_twice": "SELECT COUNT(*) FROM (SELECT 1 FROM order_items WHERE NOT released"
                      " GROUP BY code_id, use_no HAVING COUNT(*) > 1) t",
    "payments_twice": "SELECT COUNT(*) FROM (SELECT order_id FROM payment_events WHERE outcome = 'allocated'"
                      " GROUP BY order_id HAVING COUNT(*) > 1) t",
    "txn_twice": "SELECT COUNT(*) FROM (SELECT provider, provider_txn_id FROM payment_events"
                 " GROUP BY provider, provider_txn_id HAVING COUNT(*) > 1) t",
    "delivered": "SELECT COUNT(*) FROM orders WHERE state = 'delivered'",
    "codes_not_units": "SELECT COUNT(*) FROM orders o WHERE state = 'delivered' AND units <>"
                       " (SELECT COUNT(*) FROM order_items i WHERE i.order_id = o.id AND NOT i.released)",
}
DELIVERED_BY_CHANNEL = "SELECT channel, COUNT(*) AS n FROM orders WHERE state = 'delivered' GROUP BY channel"
API_SKU = "genshin-60"


class Redis:
    """A private redis-server on a free port (no persistence)."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed")
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Run:
    def __init__(self, fake: FakeTelegram, side: WeChatSide, api: ApiBuyer, bases: list[str]) -> None:
        self.fake = fake
        self.side = side
        self.api = api
        self.bases = bases
        self.t0 = time.monotonic()
        self.purchases: list[tuple[str, float, float]] = []  # (channel, paid at, seconds to the code), run-relative
        self.restarts: Counter[str] = Counter()
        self.abandoned: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()  # why WeChat walks broke
        self.faults_skipped = 0  # kills due while every other instance was still restarting
        self.faults: list[tuple[str, float, float]] = []  # (kind, start, end), run-relative
        self.stop = asyncio.Event()
        self._users = iter(range(10_000_000, 99_000_000))

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def buyer(self) -> None:
        while not self.stop.is_set():
            user = next(self._users)
            walker = Walker(self.fake, user, timeout_s=8.0)
            try:
                await walker.to_invoice()
                invoice = next(p for m, p in reversed(self.fake.calls)
                               if m == "sendInvoice" and int(p["chat_id"]) == user)
                ref, amount = str(invoice["payload"]), sum(int(p["amount"]) for p in invoice["prices"])
                since = len(self.fake.calls)
                query = self.fake.pre_checkout(user, ref, amount)
                await walker._call("answerPreCheckoutQuery", "pre_checkout_query_id", query, since)
            except AssertionError:  # an update lost with a killed instance: the buyer starts over
                self.restarts["telegram"] += 1
                continue
            paid_at = self.now()
            self.fake.successful_payment(user, ref, amount, f"chaos-{secrets.token_hex(6)}")
            walker.timeout_s = 120.0
            try:
                while True:
                    _, message = await walker._next()
                    if any(e.get("type") == "code" for e in message.get("entities", [])):
                        self.purchases.append(("telegram", paid_at, self.now() - paid_at))
                        break
            except AssertionError:
                self.abandoned["telegram"] += 1  # the final SQL check tells whether the order was delivered after all

    async def wechat_buyer(self) -> None:
        poster = CallbackPoster([f"{b}/wechat" for b in self.bases])
        nxt = RoundRobin(self.bases)
        paid_at = 0.0

        def paid() -> None:
            nonlocal paid_at
            paid_at = self.now()

        async with httpx.AsyncClient(timeout=10) as http:
            try:
                while not self.stop.is_set():
                    openid = "ochaos" + secrets.token_hex(10)
                    try:
                        ref = await wechat_buy(self.side, poster, http, nxt, openid, paid)
                    except Lost as lost:
                        self.restarts["wechat"] += 1
                        self.lost[str(lost)] += 1
                        continue
                    if await wechat_code(self.side, ref, 120.0):
                        self.purchases.append(("wechat", paid_at, self.now() - paid_at))
                    else:
                        self.abandoned["wechat"] += 1
            finally:
                await poster.aclose()

    async def api_buyer(self) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            while not self.stop.is_set():
                start = self.now()
                answer = await self.api.order(http)
                if answer is not None and answer.get("codes"):
                    self.purchases.append(("api", start, self.now() - start))
                elif answer is None:
                    self.abandoned["api"] += 1
                    await asyncio.sleep(0.2)


LOG_EVENT = re.compile(r"(WARNING|ERROR|CRITICAL).*?event=([\w.]+)")


class Logs:
    """Reads every instance's stdout and stderr as it runs (an unread pipe fills at 64 KB and the instance's
    next log write blocks); counts the warnings and errors by event."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.tracebacks = 0

    def drain(self, instance: instances.Instance) -> None:
        for stream in (instance.proc.stdout, instance.proc.stderr):
            if stream is not None:
                threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            found = LOG_EVENT.search(line)
            if found:
                self.events[f"{found.group(1)} {found.group(2)}"] += 1
            elif "Traceback" in line:
                self.tracebacks += 1


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def _restart(run: Run, instances_: list[instances.Instance], k: int, data_dir: Path, db_url: str,
                   env: dict[str, str], restarting: set[int]) -> None:
    """SIGKILL instance k and start it again on its port (the fake's round-robin list stays valid)."""
    start = run.now()
    victim = instances_[k]
    victim.proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(victim.proc.wait)
    fresh = instances_[k] = instances.start(data_dir, db_url, port=victim.port, **env)
    LOGS.drain(fresh)
    try:
        await instances.wait_ready(fresh, within_s=120)
    finally:
        restarting.discard(k)
        run.faults.append(("kill", start, run.now()))


async def _faults(run: Run, instances_: list[instances.Instance], data_dir: Path, db_url: str, env: dict[str, str],
                  redis: Redis, seconds: float, db_name: str) -> None:
    """The fault plan on the run's clock; a restart runs beside the plan, so faults keep their times."""
    rng = random.Random(17)
    plan: list[tuple[float, str]] = [(t, "kill") for t in range(int(KILL_EVERY_S), int(seconds), int(KILL_EVERY_S))]
    plan += [(seconds * 0.42, "pg_terminate"), (seconds * 0.58, "redis_stop")]
    restarting: set[int] = set()
    side: list[asyncio.Task[None]] = []
    for at, kind in sorted(plan):
        await asyncio.sleep(max(0.0, at - run.now()))
        start = run.now()
        if kind == "kill":
            ready = [k for k in range(len(instances_)) if k not in restarting]
            if len(ready) < 2:  # never the last live instance: a kill waits for no restart, it is skipped
                run.faults_skipped += 1
                continue
            k = rng.choice(ready)
            restarting.add(k)
            side.append(asyncio.create_task(_restart(run, instances_, k, data_dir, db_url, env, restarting)))
        elif kind == "pg_terminate":
            admin = await asyncpg.connect(PG_DSN)
            await admin.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1"
                              " AND pid <> pg_backend_pid()", db_name)
            await admin.close()
            run.faults.append((kind, start, run.now()))
        else:
            async def outage(start: float = start) -> None:
                redis.stop()
                await asyncio.sleep(10.0)
                redis.start()
                run.faults.append(("redis_stop", start, run.now()))

            side.append(asyncio.create_task(outage()))
    await asyncio.gather(*side)


CHANNELS = ("telegram", "wechat", "api")
LOGS = Logs()


def _recovery(run: Run) -> list[dict[str, Any]]:
    """Per fault: from its start to the first code for a payment made after it, overall and per channel."""
    out = []
    for kind, start, end in sorted(run.faults, key=lambda f: f[1]):
        first: dict[str, float | None] = {}
        for channel in (None, *CHANNELS):
            after = [paid + took for ch, paid, took in run.purchases if paid >= start and channel in (None, ch)]
            first[channel or "all"] = round(min(after) - start, 2) if after else None
        out.append({"fault": kind, "at_s": round(start, 1), "fault_s": round(end - start, 2),
                    "recovered_s": first.pop("all"), "recovered_s_by_channel": first})
    return out


def _in_fault(run: Run, paid: float) -> bool:
    return any(start - 0.5 <= paid <= end + 3.0 for _, start, end in run.faults)


def _latency(run: Run, channel: str | None) -> dict[str, Any]:
    mine = [(paid, took) for ch, paid, took in run.purchases if channel in (None, ch)]
    inside = [took for paid, took in mine if _in_fault(run, paid)]
    outside = [took for paid, took in mine if not _in_fault(run, paid)]
    return {"outside_faults": {"p50": _pct(outside, 0.5), "p99": _pct(outside, 0.99), "n": len(outside)},
            "inside_faults": {"p50": _pct(inside, 0.5), "p99": _pct(inside, 0.99), "n": len(inside)}}


async def _seed_api(data_dir: Path, db_url: str) -> tuple[str, str]:
    """An order-API price for the demo's genshin-60 and a funded key; (key id, secret)."""
    shop = await build_shop(Settings(data_dir=data_dir, database_url=db_url))
    try:
        sku = await shop.catalog.find_sku(API_SKU)
        await shop.store.set_price(Price(sku.id, "api", "CNY", 600))
        keys = ApiKeys(shop.store, shop.vault)
        key = await keys.create("chaos", ["orders:write", "orders:read"])
        await keys.top_up(key.client.key_id, 600 * 100_000, "CNY", "chaos")
        return key.client.key_id, key.secret
    finally:
        await shop.close()


def _telegram_codes(fake: FakeTelegram) -> list[tuple[str, str, str]]:
    """(code, chat, Bot API method) for every code in every message sent or edited."""
    out = []
    for method, params in fake.calls:
        if method in ("sendMessage", "sendDocument", "editMessageText"):
            for code in set(CODE.findall(str(params.get("text") or params.get("caption") or ""))):
                out.append((code, str(params["chat_id"]), method))
    return out


def _unlabelled_repeats(texts: list[tuple[str, str]]) -> int:
    """(chat, text) of every code message: repeats of a code in one chat whose later message does not say it is
    the same delivery again (locales: delivery.interrupted; the chaos buyers never ask for their codes again)."""
    tr = Translator()
    labels = [tr(lang, "delivery.interrupted") for lang in ("zh_CN", "en")]
    seen: set[tuple[str, str]] = set()
    unlabelled = 0
    for chat, text in texts:
        for code in set(CODE.findall(text)):
            if (code, chat) in seen and not any(label in text for label in labels):
                unlabelled += 1
            seen.add((code, chat))
    return unlabelled


async def main(seconds: float, buyers: int, wechat_buyers: int, api_buyers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kamibot-chaos-") as tmp:
        data_dir = Path(tmp)
        db_name = "kbchaos_" + secrets.token_hex(4)
        admin = await asyncpg.connect(PG_DSN)
        await admin.execute(f"CREATE DATABASE {db_name}")
        await admin.close()
        db_url = PG_DSN.rsplit("/", 1)[0] + "/" + db_name
        redis = Redis(data_dir)
        redis.start()
        fake = FakeTelegram()
        await fake.start()
        ports = [free_port() for _ in range(INSTANCES)]
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        side = WeChatSide(data_dir, bases[0])
        await side.start()
        running: list[instances.Instance] = []
        try:
            await seed(data_dir, db_url, extra_codes=20_000)
            key_id, secret = await _seed_api(data_dir, db_url)
            env = {**instances.telegram_env(fake), **side.env(), "KAMIBOT_REDIS_URL": redis.url,
                   "KAMIBOT_TELEGRAM__STARS_RECOVERY_EVERY_S": "10", "KAMIBOT_JOBS__RECOVER_EVERY_S": "5",
                   "KAMIBOT_API__RATE_PER_S": "100000", "KAMIBOT_API__BURST": "100000",
                   "KAMIBOT_API__IDEMPOTENCY_LEASE_S": "2"}
            running = [instances.start(data_dir, db_url, port=p, **env) for p in ports]
            for i in running:
                LOGS.drain(i)
            await asyncio.gather(*(instances.wait_ready(i, within_s=60) for i in running))
            fake.webhook = (running[0].webhook, instances.SECRET)
            fake.balance([i.webhook for i in running])
            api = ApiBuyer(key_id, secret, API_SKU, RoundRobin(bases))
            run = Run(fake, side, api, bases)
            workers = [asyncio.create_task(run.buyer()) for _ in range(buyers)]
            workers += [asyncio.create_task(run.wechat_buyer()) for _ in range(wechat_buyers)]
            workers += [asyncio.create_task(run.api_buyer()) for _ in range(api_buyers)]
            faults = asyncio.create_task(_faults(run, running, data_dir, db_url, env, redis, seconds, db_name))
            await asyncio.sleep(seconds)
            ended = run.now()
            run.stop.set()
            await faults
            await asyncio.gather(*workers)
            counts: dict[str, int] = {}
            conn = await asyncpg.connect(db_url)
            try:
                for _ in range(120):  # let the outbox drain after the last faults
                    if not await conn.fetchval(SQL["paid_undelivered"]):
                        break
                    await asyncio.sleep(0.5)
                for name, sql in SQL.items():
                    counts[name] = int(await conn.fetchval(sql))
                by_channel = {str(r["channel"]): int(r["n"]) for r in await conn.fetch(DELIVERED_BY_CHANNEL)}
            finally:
                await conn.close()
        finally:
            for i in running:
                with contextlib.suppress(Exception):
                    await instances.stop(i)
            await fake.stop()
            await side.stop()
            redis.stop()
            admin = await asyncpg.connect(PG_DSN)
            await admin.execute(f"DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")
            await admin.close()
    # the fakes' records: every code message a buyer received, by channel and chat
    telegram_codes = _telegram_codes(fake)
    methods: dict[tuple[str, str], list[str]] = {}
    for code, chat, method in telegram_codes:
        methods.setdefault((code, chat), []).append(method)
    sent = ([("telegram", code, chat) for code, chat, _ in telegram_codes]
            + [("wechat", code, chat) for code, chat in side.codes_sent()]
            + [("api", code, "api") for code in api.codes()])
    per_chat = Counter(sent)
    chats_per_code = Counter(code for _, code, _ in set(sent))
    api_checks = api.check()
    per_channel = {ch: {"purchases": sum(1 for c, _, _ in run.purchases if c == ch),
                        "delivered_orders": by_channel.get(ch, 0), "walks_restarted": run.restarts[ch],
                        "paid_without_code_seen_by_buyer": run.abandoned[ch],
                        "codes_in_fake_records": sum(n for (c, _, _), n in per_chat.items() if c == ch),
                        "pay_to_code_s": _latency(run, ch)} for ch in CHANNELS}
    acks = side.acks
    per_channel["wechat"] |= {"walks_broken_by": dict(run.lost),
                              "notify_acknowledged_s": {"p50": _pct(acks, 0.5), "p99": _pct(acks, 0.99)},
                              "notify_answers": dict(side.notify_answers)}
    per_channel["api"] |= {"retried_requests": api.retries, "refused": api.refused,
                           "keys_answered_twice": api_checks["retried_keys_checked"]}
    return {"benchmark": "chaos", "instances": INSTANCES, "seconds": round(ended, 1),
            "buyers": {"telegram": buyers, "wechat": wechat_buyers, "api": api_buyers},
            "purchases": len(run.purchases), "purchases_per_s": round(len(run.purchases) / ended, 2),
            "pay_to_code_s": _latency(run, None), "channels": per_channel,
            "recovery": _recovery(run), "kills_skipped_last_live_instance": run.faults_skipped,
            "load_average_1m": round(os.getloadavg()[0], 1),
            "checks": {"paid_undelivered": counts["paid_undelivered"],
                       "code_use_sold_twice": counts["use_sold_twice"],
                       "delivered_order_codes_not_units": counts["codes_not_units"],
                       "code_sent_to_two_chats": sum(1 for n in chats_per_code.values() if n > 1),
                       "code_message_repeated_in_one_chat": sum(
                           1 for (ch, _, _), n in per_chat.items() if n > 1 and ch != "api"),
                       "repeated_code_message_not_labelled": _unlabelled_repeats(
                           [(str(p["chat_id"]), str(p.get("text") or p.get("caption") or ""))
                            for m, p in fake.calls if m in ("sendMessage", "sendDocument")]
                           + side.code_texts()),
                       "telegram_repeats_by_methods": dict(Counter(
                           "+".join(m) for m in methods.values() if len(m) > 1)),
                       "api_retry_answered_another_order": api_checks["idempotent_retry_differs"],
                       "api_code_in_two_orders": api_checks["code_in_two_orders"],
                       "orders_paid_twice": counts["payments_twice"], "payment_txn_twice": counts["txn_twice"]},
            "delivered_orders": counts["delivered"],
            "instance_logs": {"by_event": dict(LOGS.events.most_common(12)), "tracebacks": LOGS.tracebacks},
            "median_purchase_s": round(statistics.median([t for _, _, t in run.purchases]), 3)
            if run.purchases else None}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--buyers", type=int, default=12, help="Telegram buyers")
    parser.add_argument("--wechat-buyers", type=int, default=6)
    parser.add_argument("--api-buyers", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.seconds, args.buyers, args.wechat_buyers, args.api_buyers))))
