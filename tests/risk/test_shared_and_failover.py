"""Limits shared by OS processes through Redis, and the configured policy when Redis goes away mid-check."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fulfillment.orders import STATE_GROUPS
from risk.engine import RiskEngine, Signals
from risk.failover import FailoverLimiter
from risk.limiters import Count, LimiterUnavailable, MemoryLimiter
from risk.redis_limiter import RedisLimiter
from storage.sqlite import SqliteStore
from tests.conftest import REDIS_URL
from tests.fakes.loopback import free_port
from tests.risk.conftest import drop_prefix, redis_or_skip

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0


async def test_limits_hold_across_two_os_processes_sharing_redis():
    await redis_or_skip()
    prefix = f"kbt:{secrets.token_hex(4)}:"
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.risk.limit_worker", REDIS_URL, prefix, f"w{n}", "60", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for n in range(2)]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    await drop_prefix(prefix)
    assert [p.returncode for p in procs] == [0, 0], [o[1].decode()[-500:] for o in outputs]
    lines = [line.split() for out, _ in outputs for line in out.decode().splitlines()]
    assert sum(int(n) for kind, n in lines if kind == "orders") == 25  # 120 attempts, one shared limit
    assert sum(int(n) for kind, n in lines if kind == "farm") == 7  # 120 distinct users, one shared address


class RedisProxy:
    """A TCP hop in front of the real Redis that can be cut (every connection dropped) and restored."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        self.writers.clear()
        await self.server.wait_closed()


@pytest.fixture
async def proxy() -> AsyncIterator[RedisProxy]:
    await redis_or_skip()
    p = RedisProxy(free_port())
    await p.start()
    yield p
    with contextlib.suppress(Exception):
        await p.cut()


def _order(user: str) -> Signals:
    return Signals("telegram", user, 1, 100, "XTR", fingerprint=f"fp-{user}")


async def test_fail_open_keeps_counting_in_process_and_logs_the_outage_once(proxy, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kamibot.risk")
    prefix = f"kbt:{secrets.token_hex(4)}:"
    limiter = FailoverLimiter(RedisLimiter(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, timeout_s=0.5),
                              MemoryLimiter(), timeout_s=0.5)
    store = await SqliteStore(tmp_path / "r.db", states=STATE_GROUPS).open()
    await store.migrate()
    engine = RiskEngine(store, limiter)
    assert (await engine.evaluate("reserve", _order("a"))).allowed
    await proxy.cut()  # Redis gone between two checks
    results = [await engine.evaluate("reserve", _order("b")) for _ in range(15)]
    limit = engine.book.rules["user_orders_hour"].threshold
    assert [d.allowed for d in results] == [True] * limit + [False] * (15 - limit)  # limits still enforced
    assert limiter.down
    await proxy.start()  # back: the next check goes to Redis again
    assert (await engine.evaluate("reserve", _order("c"))).allowed
    assert not limiter.down
    events = [r.getMessage().split()[0] for r in caplog.records]
    assert events == ["event=risk.limiter_down", "event=risk.limiter_recovered"]
    await engine.close()
    await store.close()
    await drop_prefix(prefix)


async def test_fail_closed_refuses_with_a_reason_when_redis_is_down(proxy, tmp_path):
    limiter = FailoverLimiter(RedisLimiter(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=0.5), None, 0.5)
    store = await SqliteStore(tmp_path / "r.db", states=STATE_GROUPS).open()
    await store.migrate()
    engine = RiskEngine(store, limiter)
    await proxy.cut()
    decision = await engine.evaluate("reserve", _order("a"))
    assert (decision.action, decision.reasons) == ("deny", ("limiter_unavailable",))
    assert await engine.allow_message("telegram", "a")  # flood control never silences customers for it
    with pytest.raises(LimiterUnavailable):
        await limiter.apply([Count("k", 60)], T0)
    await engine.close()
    await store.close()


async def test_a_redis_that_stops_answering_is_time_boxed():
    stalled: list[asyncio.StreamWriter] = []

    async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stalled.append(writer)  # accepts, reads nothing, answers nothing

    server = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = FailoverLimiter(RedisLimiter(f"redis://127.0.0.1:{port}/0", timeout_s=5), MemoryLimiter(), 0.2)
    outcome = await limiter.apply([Count("k", 60, 1, 5)], T0)  # the 0.2 s box, not the 5 s socket timeout
    assert outcome.allowed
    assert limiter.down
    await limiter.close()
    for w in stalled:
        w.close()
    server.close()
    await server.wait_closed()


async def test_a_plan_on_redis_decides_like_the_in_process_limiter_check_after_check():
    """The Redis plan script is generated straight-line Lua: a random run of checks (some refused, some rules
    not applying, windows rolling over) gets the same values, flags and commits as MemoryLimiter."""
    import random

    from risk.limiters import Plan, PlanRule

    await redis_or_skip()
    plan = Plan((PlanRule("v", "v:u", "user", "", 60, 4), PlanRule("v", "v:ip", "ip", "", 3600, None),
                 PlanRule("a", "a:u", "user", "", 120, 900, "CNY"), PlanRule("f", "f:u", "user", "", 60, 2),
                 PlanRule("d", "d:ip", "ip", "user", 300, 2), PlanRule("d", "d:u", "user", "fp", 300, None),
                 PlanRule("v", "v:g", "global", "", 30, 40)))
    prefix = f"kbt:{secrets.token_hex(4)}:'\\\"] --\n:"  # any prefix: written into the script as a literal
    redis_limiter = RedisLimiter(REDIS_URL, prefix=prefix, timeout_s=5)
    memory = MemoryLimiter()
    rng = random.Random(6)
    try:
        now = T0
        for _ in range(400):
            now += rng.random() * 2
            values = {"user": rng.choice(["u1", "u2", "u3"]), "ip": rng.choice(["1.2.3.4", "5.6.7.8", ""]),
                      "fp": rng.choice(["f1", "f2", ""]), "sku": "", "global": "*"}
            amount, currency = rng.choice([0, 100, 250]), rng.choice(["CNY", "XTR"])
            if rng.random() < 0.1:  # failed payments are counted by plain ops on the plan's keys
                op = Count(f"f:u:{values['user']}", 60, 1)
                assert await redis_limiter.apply([op], now) == await memory.apply([op], now)
            got = await redis_limiter.apply_plan(plan, values, amount, currency, now)
            assert got == await memory.apply_plan(plan, values, amount, currency, now), (now, values)
        later = now + 3600
        fresh = await redis_limiter.apply_plan(plan, {"user": "u9", "ip": "9.9.9.9", "fp": "f9"}, 1, "CNY", later)
        assert fresh.committed
        assert fresh.values == (1, 1, 1, 0, 1, 1, 1)
        assert await redis_limiter.client.get(f"{prefix}v:u:u9:{int(later // 60)}") == b"1"
    finally:
        await redis_limiter.close()
        await drop_prefix(prefix)
