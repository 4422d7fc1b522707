"""The Redis limiter: a whole check (every operation of it) is one Lua script, atomic, one round trip.

The script mirrors `MemoryLimiter`'s arithmetic exactly.  Bucket keys are derived inside the script
(`key:<window number>`), which a single Redis allows; a Redis Cluster would need hash tags in the keys.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from risk.limiters import Count, Distinct, Op, Outcome, validate

# ARGV: now, commit flag, key prefix, and the operations as one string (an op per line, fields split by tabs):
# packing the check as 4 arguments and answering with one string keeps the client's encode/parse work small.
_SCRIPT = """
local now = tonumber(ARGV[1])
local commit = ARGV[2] == '1'
local prefix = ARGV[3]
local ops = {}
for line in string.gmatch(ARGV[4], '[^\\n]+') do
  local t, key, a, b, c = string.match(line, '^(%a)\\t([^\\t]+)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)$')
  ops[#ops + 1] = {t, prefix .. key, a, b, c}
end
local n = #ops
local values, flags, state = {}, {}, {}
local over = false
for i = 1, n do
  local t, key, a, b, c = ops[i][1], ops[i][2], ops[i][3], ops[i][4], ops[i][5]
  local value, exceeded = 0, 0
  if t == 'c' then
    local w, cost, limit = tonumber(a), tonumber(b), tonumber(c)
    local bucket = math.floor(now / w)
    local cur = tonumber(redis.call('GET', key .. ':' .. bucket) or '0')
    local prev = tonumber(redis.call('GET', key .. ':' .. (bucket - 1)) or '0')
    local est = cur + prev * (1 - (now - bucket * w) / w) + cost
    value = math.floor(est)
    if limit >= 0 and est > limit then exceeded = 1 end
    state[i] = bucket
  elseif t == 'd' then
    local w, limit = tonumber(a), tonumber(c)
    local bucket = math.floor(now / w)
    local k = key .. ':' .. bucket
    value = redis.call('SCARD', k)
    if redis.call('SISMEMBER', k, b) == 0 then value = value + 1 end
    if limit >= 0 and value > limit then exceeded = 1 end
    state[i] = bucket
  else
    local rate, burst, cost = tonumber(a), tonumber(b), tonumber(c)
    local h = redis.call('HMGET', key, 'tokens', 'at')
    local tokens = burst
    if h[1] then tokens = math.min(burst, tonumber(h[1]) + math.max(0, now - tonumber(h[2])) * rate) end
    value = math.floor(tokens - cost)
    if tokens < cost then exceeded = 1 end
    state[i] = tokens
  end
  if exceeded == 1 then over = true end
  values[i] = string.format('%d', value)
  flags[i] = exceeded
end
local committed = 0
if commit and not over then
  committed = 1
  for i = 1, n do
    local t, key, a, b, c = ops[i][1], ops[i][2], ops[i][3], ops[i][4], ops[i][5]
    if t == 'c' then
      local k = key .. ':' .. state[i]
      redis.call('INCRBYFLOAT', k, b)
      redis.call('EXPIREAT', k, (state[i] + 2) * tonumber(a))
    elseif t == 'd' then
      local k = key .. ':' .. state[i]
      redis.call('SADD', k, b)
      redis.call('EXPIREAT', k, (state[i] + 1) * tonumber(a))
    else
      redis.call('HSET', key, 'tokens', tostring(state[i] - tonumber(c)), 'at', ARGV[1])
      redis.call('EXPIREAT', key, math.ceil(now + tonumber(b) / tonumber(a) + 1))
    end
  end
end
return committed .. ' ' .. table.concat(values, ',') .. ' ' .. table.concat(flags, ',')
"""


def _line(op: Op) -> str:
    if isinstance(op, Count):
        return f"c\t{op.key}\t{op.window_s}\t{op.cost}\t{-1 if op.limit is None else op.limit}"
    if isinstance(op, Distinct):
        return f"d\t{op.key}\t{op.window_s}\t{op.member}\t{-1 if op.limit is None else op.limit}"
    return f"b\t{op.key}\t{float(op.rate)!r}\t{op.burst}\t{op.cost}"


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
        raw = await self._script(args=[repr(float(now)), "1" if commit else "0", self.prefix,
                                       "\n".join(_line(op) for op in ops)])
        committed, values, flags = (raw.decode() if isinstance(raw, bytes) else str(raw)).split(" ")
        return Outcome(tuple(int(v) for v in values.split(",")), tuple(f == "1" for f in flags.split(",")),
                       committed == "1")

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()

