"""The bot as a separate process (`kamibot run`, SQLite) answering WeChat callbacks in safe (AES) mode.

(a) burst: N customers send a message at the same moment: every passive reply must come back inside
    WeChat's 5 s, none lost; messages/s from the first send to the last reply.
(b) steady: R messages/s for S seconds: passive-reply latency p50/p99.
Peak RSS of the bot process from /proc (VmHWM). Prints one JSON line.

    python benchmarks/wechat.py [--burst 1000] [--rate 200] [--seconds 30]

Targets (issue #5): burst ≥ 500 messages/s with every reply < 5 s, steady p99 < 100 ms.
(c) notify → customer-service message is measured with WeChat Pay's notify route (not here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

from tests.fakes.loopback import free_port  # noqa: E402
from tests.fakes.wechat_api import AES_KEY, APP_ID, APP_SECRET, TOKEN, FakeWeChat, callback, message_xml  # noqa: E402
from tests.wechat.conftest import reply_text  # noqa: E402

WORDS = ("menu", "shop", "help", "orders", "菜单", "商店")


def _env(data: Path, fake: FakeWeChat, port: int) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "KAMIBOT_DATA_DIR": str(data), "KAMIBOT_LOG_LEVEL": "WARNING",
            "KAMIBOT_HTTP_PORT": str(port), "KAMIBOT_DEFAULT_LANGUAGE": "en", "KAMIBOT_WECHAT__APP_ID": APP_ID,
            "KAMIBOT_WECHAT__APP_SECRET": APP_SECRET, "KAMIBOT_WECHAT__TOKEN": TOKEN,
            "KAMIBOT_WECHAT__ENCODING_AES_KEY": AES_KEY, "KAMIBOT_WECHAT__API_BASE_URL": fake.base_url}


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


async def _post(port: int, path: str, body: bytes) -> tuple[int, str]:
    """One request on its own connection, as WeChat's servers send them. A hand-written HTTP/1.1 client: httpx's
    pool does work quadratic in the requests queued in it and would measure itself, not the bot."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
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


async def main(args: argparse.Namespace) -> dict[str, object]:
    fake = FakeWeChat()
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        data, port = Path(tmp), free_port()
        env = _env(data, fake, port)
        load = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "catalog", "load",
                                                    str(ROOT / "bot" / "demo_shop.toml"), env=env,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert await load.wait() == 0
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
            out: dict[str, object] = {"burst": await burst(port, args.burst)}
            out["steady"] = await steady(port, args.rate, args.seconds)
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
            await fake.stop()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--settle", type=float, default=8.0, help="seconds to wait after start-up before measuring")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
