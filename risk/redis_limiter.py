"""The Redis limiter: a whole check (every operation of it) is one Lua script, atomic, one round trip.

The script mirrors `MemoryLimiter`'s arithmetic exactly.  Bucket keys are derived inside the script
(`key:<window number>`), which a single Redis allows; a Redis Cluster would need hash tags in the keys.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from risk.limiters import Count, Distinct, Op, Outcome, validate

# ARGV: now, commit, then 5 slots per op: type ('c' count, 'd' distinct, 'b' bucket) and its parameters
_SCRIPT = """
local now = tonumber(ARGV[1])
local commit = ARGV[2] == '1'
local n = #KEYS
local out = {0}
local over = false
local state = {}
for i = 1, n do
  local a = 3 + (i - 1) * 5
  local t, key = ARGV[a], KEYS[i]
  local value, exceeded = 0, 0
  if t == 'c' then
    local w, cost, limit = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    local b = math.floor(now / w)
    local cur = tonumber(redis.call('GET', key .. ':' .. b) or '0')
    local prev = tonumber(redis.call('GET', key .. ':' .. (b - 1)) or '0')
    local est = cur + prev * (1 - (now - b * w) / w) + cost
    value = math.floor(est)
    if limit >= 0 and est > limit then exceeded = 1 end
    state[i] = b
  elseif t == 'd' then
    local w, member, limit = tonumber(ARGV[a + 1]), ARGV[a + 2], tonumber(ARGV[a + 3])
    local b = math.floor(now / w)
    local k = key .. ':' .. b
    value = redis.call('SCARD', k)
    if redis.call('SISMEMBER', k, member) == 0 then value = value + 1 end
    if limit >= 0 and value > limit then exceeded = 1 end
    state[i] = b
  else
    local rate, burst, cost = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    local h = redis.call('HMGET', key, 'tokens', 'at')
    local tokens = burst
    if h[1] then tokens = math.min(burst, tonumber(h[1]) + math.max(0, now - tonumber(h[2])) * rate) end
    value = math.floor(tokens - cost)
    if tokens < cost then exceeded = 1 end
    state[i] = tokens
  end
  if exceeded == 1 then over = true end
  out[1 + i] = value
  out[1 + n + i] = exceeded
end
if commit and not over then
  out[1] = 1
  for i = 1, n do
    local a = 3 + (i - 1) * 5
    local t, key = ARGV[a], KEYS[i]
    if t == 'c' then
      local w = tonumber(ARGV[a + 1])
      local k = key .. ':' .. state[i]
      redis.call('INCRBYFLOAT', k, ARGV[a + 2])
      redis.call('EXPIREAT', k, (state[i] + 2) * w)
    elseif t == 'd' then
      local w = tonumber(ARGV[a + 1])
      local k = key .. ':' .. state[i]
      redis.call('SADD', k, ARGV[a + 2])
      redis.call('EXPIREAT', k, (state[i] + 1) * w)
    else
      local rate, burst, cost = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
      redis.call('HSET', key, 'tokens', tostring(state[i] - cost), 'at', ARGV[1])
      redis.call('EXPIREAT', key, math.ceil(now + burst / rate + 1))
    end
  end
end
return out
"""


def _args(op: Op) -> list[Any]:
    if isinstance(op, Count):
        return ["c", op.window_s, op.cost, -1 if op.limit is None else op.limit, ""]
    if isinstance(op, Distinct):
        return ["d", op.window_s, op.member, -1 if op.limit is None else op.limit, ""]
    return ["b", repr(float(op.rate)), op.burst, op.cost, ""]


class RedisLimiter:
    def __init__(self, url: str, prefix: str = "kb:rl:", timeout_s: float = 0.5) -> None:
        self.prefix = prefix
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                              max_connections=256)
        self._script = self.client.register_script(_SCRIPT)

    async def apply(self, ops: list[Op], now: float, commit: bool = True) -> Outcome:
        validate(ops)
        if not ops:
            return Outcome((), (), commit)
        args: list[Any] = [repr(float(now)), "1" if commit else "0"]
        for op in ops:
            args += _args(op)
        raw = await self._script(keys=[self.prefix + op.key for op in ops], args=args)
        n = len(ops)
        values = tuple(int(v) for v in raw[1:1 + n])
        exceeded = tuple(bool(int(v)) for v in raw[1 + n:1 + 2 * n])
        return Outcome(values, exceeded, bool(int(raw[0])))

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()

