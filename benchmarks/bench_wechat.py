"""The bot as a separate process (`kamibot run`, SQLite) answering WeChat callbacks in safe (AES) mode.

(a) burst: N customers send a message at the same moment: every passive reply must come back inside
    WeChat's 5 s, none lost; messages/s from the first send to the last reply.
(b) steady: R messages/s for S seconds: passive-reply latency p50/p99.
(c) payments: WeChat Pay v3 is configured too (against the fake WeChat Pay server, keys made at start). Before
    the clock starts, P customers each check out through the running bot (follow by a product QR code →
    quantity 1 → confirm, safe-mode callbacks) and their notifications are signed and encrypted; then the fake
    sends them to /pay/wechat/notify at R payments/s and each is timed from sending it to the customer-service
    message with the codes arriving at the fake WeChat API (`message/custom/send`) for that openid.
Peak RSS of the bot process from /proc (VmHWM). Prints one JSON line.

    python benchmarks/bench_wechat.py [--burst 1000] [--rate 200] [--seconds 30] [--pay-rate 100] [--pay-seconds 10]
                                [--parts abc]

Targets (issue #5): burst ≥ 500 messages/s with every reply < 5 s, steady p99 < 100 ms,
notify → customer-service message p99 < 150 ms at 100 payments/s.
"""

from __future__ import annotations

import argparse
import asyncio
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
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.loopback import free_port, serve, shut  # noqa: E402
from tests.fakes.wechat_api import AES_KEY, APP_ID, APP_SECRET, TOKEN, FakeWeChat, callback, message_xml  # noqa: E402
from tests.fakes.wechatpay_api import FakeWeChatPay  # noqa: E402
from tests.wechat.conftest import reply_text  # noqa: E402
from tests.wechatpay.conftest import (  # noqa: E402
    API_V3_KEY,
    MCHID,
    MERCHANT_SERIAL,
    PUB_KEY_ID,
    Keys,
    make_certificate,
    write_key_files,
)

WORDS = ("menu", "shop", "help", "orders", "菜单", "商店")
REF = re.compile(r"K[0-9A-Z]{11}")


def _env(data: Path, fake: FakeWeChat, port: int, pay: FakeWeChatPay, pay_port: int) -> dict[str, str]:
    keys = data / "apiclient_key.pem", data / "pub_key.pem"
    return {**os.environ, "PYTHONPATH": str(ROOT), "KAMIBOT_DATA_DIR": str(data), "KAMIBOT_LOG_LEVEL": "WARNING",
            "KAMIBOT_HTTP_PORT": str(port), "KAMIBOT_DEFAULT_LANGUAGE": "en", "KAMIBOT_WECHAT__APP_ID": APP_ID,
            "KAMIBOT_WECHAT__APP_SECRET": APP_SECRET, "KAMIBOT_WECHAT__TOKEN": TOKEN,
            "KAMIBOT_WECHAT__ENCODING_AES_KEY": AES_KEY, "KAMIBOT_WECHAT__API_BASE_URL": fake.base_url,
            # WeChat Pay v3 under the same AppID ("WeChat Pay public key" mode), against the fake server
            "KAMIBOT_WECHATPAY__MCHID": MCHID, "KAMIBOT_WECHATPAY__APP_ID": APP_ID,
            "KAMIBOT_WECHATPAY__API_V3_KEY": API_V3_KEY, "KAMIBOT_WECHATPAY__MERCHANT_SERIAL_NO": MERCHANT_SERIAL,
            "KAMIBOT_WECHATPAY__MERCHANT_KEY_FILE": str(keys[0]), "KAMIBOT_WECHATPAY__PUBLIC_KEY_ID": PUB_KEY_ID,
            "KAMIBOT_WECHATPAY__PUBLIC_KEY_FILE": str(keys[1]),
            "KAMIBOT_WECHATPAY__API_BASE_URL": f"http://127.0.0.1:{pay_port}",
            "KAMIBOT_WECHATPAY__NOTIFY_URL": pay.notify_url, "KAMIBOT_WECHATPAY__PUBLIC_URL": f"http://127.0.0.1:{port}"}


def _keys(data: Path) -> Keys:
    from cryptography.hazmat.primitives.asymmetric import rsa

    platform = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = Keys(rsa.generate_private_key(public_exponent=65537, key_size=2048), platform,
                make_certificate(platform, 0x5A17))
    write_key_files(data, keys, "public_key")  # apiclient_key.pem and pub_key.pem in the data directory
    return keys


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 1)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000, 1) if ordered else 0.0


async def _post(port: int, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One request on its own connection, as WeChat's servers send them. A hand-written HTTP/1.1 client: httpx's
    pool does work quadratic in the requests queued in it and would measure itself, not the bot."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {"Content-Type": "text/xml"}).items())
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        await writer.drain()
        raw = await reader.read(-1)
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload.decode("utf-8")


async def _one(port: int, openid: str, text: str) -> tuple[float, bool]:
    cb = callback(message_xml(openid, text), safe=True)  # encrypted before the clock starts
    path = "/wechat?" + urlencode(cb.params)
    start = time.perf_counter()
    try:
        status, body = await _post(port, path, cb.body)
    except OSError:
        return time.perf_counter() - start, False
    took = time.perf_counter() - start
    return took, status == 200 and bool(reply_text(body, safe=True))


async def burst(port: int, customers: int) -> dict[str, object]:
    cpu = time.process_time()
    start = time.perf_counter()
    results = await asyncio.gather(*(_one(port, f"oBurst{i:022d}", WORDS[i % len(WORDS)])
                                     for i in range(customers)))
    wall = time.perf_counter() - start
    latencies = [t for t, _ in results]
    return {"customers": customers, "answered": sum(ok for _, ok in results),
            "over_5s": sum(t >= 5 for t in latencies), "messages_per_s": round(customers / wall, 1),
            "p50_ms": _pct(latencies, 0.5), "p99_ms": _pct(latencies, 0.99), "max_ms": _pct(latencies, 1.0),
            "client_cpu_s": round(time.process_time() - cpu, 1)}


async def steady(port: int, rate: int, seconds: int) -> dict[str, object]:
    tasks = []
    begin = time.perf_counter()
    for n in range(rate * seconds):
        await asyncio.sleep(max(0.0, begin + n / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(_one(port, f"oSteady{n % 5000:021d}", WORDS[n % len(WORDS)])))
    results = await asyncio.gather(*tasks)
    latencies = [t for t, _ in results]
    return {"rate": rate, "seconds": seconds, "sent": len(results), "answered": sum(ok for _, ok in results),
            "p50_ms": _pct(latencies, 0.5), "p99_ms": _pct(latencies, 0.99), "max_ms": _pct(latencies, 1.0)}


async def _checkout(port: int, openid: str, sku_id: int) -> str:
    """Follow by the product's QR code → quantity 1 → confirm: the order's reference from the checkout reply."""
    answer = ""
    for xml in (message_xml(openid, msg_type="event", event="subscribe", event_key=f"qrscene_sku_{sku_id}"),
                message_xml(openid, "1"), message_xml(openid, "1")):
        cb = callback(xml, safe=True)
        status, body = await _post(port, "/wechat?" + urlencode(cb.params), cb.body)
        assert status == 200, status
        answer = reply_text(body, safe=True)
    found = REF.search(answer)
    assert found is not None, answer
    return found.group(0)


async def payments(port: int, wechat: FakeWeChat, pay: FakeWeChatPay, sku_id: int, rate: int,
                   seconds: int) -> dict[str, object]:
    count = rate * seconds
    openids = [f"oPay{i:024d}" for i in range(count)]
    gate = asyncio.Semaphore(64)

    async def checkout(openid: str) -> str:
        async with gate:
            return await _checkout(port, openid, sku_id)

    refs = await asyncio.gather(*(checkout(o) for o in openids))
    # signed and encrypted before the clock starts (fresh enough: WeChat Pay's 5-minute window)
    notes = [pay.notification("TRANSACTION.SUCCESS", pay.pay(ref, openid, amount=600))
             for ref, openid in zip(refs, openids, strict=True)]
    await asyncio.sleep(1.0)  # let the preparation's passive-reply work settle
    mark = len(wechat.sent)
    started: dict[str, float] = {}
    acks: list[float] = []
    statuses: list[int] = []

    async def notify(openid: str, headers: dict[str, str], body: bytes) -> None:
        start = started[openid] = time.perf_counter()
        try:
            status, _ = await _post(port, "/pay/wechat/notify", body, headers)
        except OSError:
            status = 0
        acks.append(time.perf_counter() - start)
        statuses.append(status)

    tasks = []
    begin = time.perf_counter()
    for n, (openid, (headers, body)) in enumerate(zip(openids, notes, strict=True)):
        await asyncio.sleep(max(0.0, begin + n / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(notify(openid, headers, body)))
    await asyncio.gather(*tasks)
    wanted = set(openids)
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        if len({s.touser for s in wechat.sent[mark:] if s.touser in wanted}) >= count:
            break
        await asyncio.sleep(0.05)
    arrived: dict[str, float] = {}
    messages: dict[str, int] = {}
    for sent in wechat.sent[mark:]:
        if sent.touser in wanted and REF.search(sent.content):
            arrived.setdefault(sent.touser, sent.at)
            messages[sent.touser] = messages.get(sent.touser, 0) + 1
    latencies = [arrived[o] - started[o] for o in openids if o in arrived]
    return {"rate": rate, "seconds": seconds, "payments": count,
            "notify_2xx": sum(200 <= s < 300 for s in statuses), "delivered": len(latencies),
            "duplicates": sum(n - 1 for n in messages.values()),
            "notify_ack_p99_ms": _pct(acks, 0.99), "p50_ms": _pct(latencies, 0.5), "p99_ms": _pct(latencies, 0.99),
            "max_ms": _pct(latencies, 1.0)}


async def _cli(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *args, env=env, cwd=ROOT,
                                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, args
    return out.decode()


async def main(args: argparse.Namespace) -> dict[str, object]:
    fake = FakeWeChat()
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        data, port, pay_port = Path(tmp), free_port(), free_port()
        keys = _keys(data)
        pay = FakeWeChatPay(MCHID, APP_ID, API_V3_KEY.encode(), keys.merchant.public_key(), MERCHANT_SERIAL,
                            keys.platform, PUB_KEY_ID, notify_url=f"http://127.0.0.1:{port}/pay/wechat/notify")
        pay_server = await serve(pay.app(), pay_port)
        env = _env(data, fake, port, pay, pay_port)
        await _cli(env, "catalog", "load", str(ROOT / "bot" / "demo_shop.toml"))
        codes = data / "codes.txt"  # one code per payment of (c), and some to spare
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
        codes.write_text("".join("GI60-" + "-".join("".join(secrets.choice(alphabet) for _ in range(4))
                                                   for _ in range(3)) + "\n"
                                 for _ in range(args.pay_rate * args.pay_seconds + 100)))
        await _cli(env, "codes", "import", "genshin-60", str(codes))
        sku_id = int(re.search(r"genshin-60 \(#(\d+)\)", await _cli(env, "catalog", "list")).group(1))  # type: ignore[union-attr]
        log = (data / "bot.log").open("w")  # a full stderr pipe would stall the bot
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "run", env=env, cwd=ROOT,
                                                    stderr=log)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                for _ in range(300):
                    try:
                        await http.get("/healthz")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
            await asyncio.gather(*(_one(port, f"oWarm{i:023d}", "menu") for i in range(50)))
            await asyncio.sleep(args.settle)  # the FAQ matcher (jieba) builds in a background thread after start
            out: dict[str, object] = {}
            if "a" in args.parts:
                out["burst"] = await burst(port, args.burst)
            if "b" in args.parts:
                out["steady"] = await steady(port, args.rate, args.seconds)
            if "c" in args.parts:
                out["payments"] = await payments(port, fake, pay, sku_id, args.pay_rate, args.pay_seconds)
            out["peak_rss_mb"] = round(_peak_rss_mb(proc.pid), 1)
            out["bot_cpu_s"] = _cpu_s(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                print("bot did not stop within 30 s; log tail:\n" + (data / "bot.log").read_text()[-3000:],
                      file=sys.stderr)
            log.close()
            await shut(*pay_server)
            await fake.stop()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--pay-rate", type=int, default=100)
    parser.add_argument("--pay-seconds", type=int, default=10)
    parser.add_argument("--parts", default="abc", help="which of (a) burst, (b) steady, (c) payments to run")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds to wait after start-up before measuring")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
