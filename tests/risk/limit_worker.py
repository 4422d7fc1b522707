"""A separate OS process hammering one shared Redis limit; prints how many of its checks were allowed."""

from __future__ import annotations

import asyncio
import sys

from risk.limiters import Count, Distinct
from risk.redis_limiter import RedisLimiter


async def main(url: str, prefix: str, worker: str, checks: int) -> None:
    limiter = RedisLimiter(url, prefix=prefix, timeout_s=5)
    now = 1_800_000_000.0
    orders = Count("v:user:shared", 3600, 1, 25)
    allowed = 0
    for i in range(checks):
        farm = Distinct("d:ip:203.0.113.1", f"{worker}-{i}", 86_400, 7)
        out = await asyncio.gather(limiter.apply([orders], now), limiter.apply([farm], now))
        allowed += out[0].allowed
        print("farm", int(out[1].allowed))
    print("orders", allowed)
    await limiter.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
