"""The Redis limiter: a whole check (every operation of it) is one Lua script, atomic, one round trip.

The script mirrors `MemoryLimiter`'s arithmetic exactly.  Bucket keys are derived inside the script
(`key:<window number>`), which a single Redis allows; a Redis Cluster would need hash tags in the keys.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from risk.limiters import _BAD, Count, Distinct, Op, Outcome, Plan, validate

# ARGV: now, commit flag, key prefix, and the operations as one string (an op per line, fields split by tabs):
# packing the check as 4 arguments and answering with one string keeps the client's encode/parse work small.
_SCRIPT = """
local PLAN = {}
local now = tonumber(ARGV[1])
local commit = ARGV[2] == '1'
local prefix = ARGV[3]
local ops = {}
if ARGV[5] == nil then
  for line in string.gmatch(ARGV[4], '[^\\n]+') do
    local t, key, a, b, c = string.match(line, '^(%a)\\t([^\\t]+)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)$')
    ops[#ops + 1] = {t, prefix .. key, tonumber(a), b, tonumber(c)}
  end
else
  -- a rule plan: the keys are built here from the check's signal values (ARGV 5..10)
  local vals = {user = ARGV[5], ip = ARGV[6], fp = ARGV[7], sku = ARGV[8], global = '*'}
  local amount, currency = ARGV[9], ARGV[10]
  for _, r in ipairs(PLAN) do  -- {kind, key base, dimension, of, window, limit, currency}
    local kind, base, dim, of, w, limit, cur = r[1], r[2], r[3], r[4], r[5], r[6], r[7]
    local dv = vals[dim] or ''
    local op = false
    if dv ~= '' then
      local key = prefix .. base .. ':' .. dv
      if kind == 'v' then
        op = {'c', key, w, '1', limit}
      elseif kind == 'f' then
        op = {'c', key, w, '0', limit}  -- failed payments: read only
      elseif kind == 'a' then
        if cur == currency then op = {'c', key, w, amount, limit} end
      else
        local member = vals[of] or ''
        if member ~= '' then op = {'d', key, w, member, limit} end
      end
    end
    ops[#ops + 1] = op
  end
end
local n = #ops
local values, flags, state, fresh = {}, {}, {}, {}
local over = false
for i = 1, n do
  local op = ops[i]
  local value, exceeded = -1, 0
  local t, key, a, b, c
  if op then t, key, a, b, c = op[1], op[2], op[3], op[4], op[5] end
  if not op then
    value = -1
  elseif t == 'c' then
    local cost = tonumber(b)
    local bucket = math.floor(now / a)
    local k = key .. ':' .. bucket
    local got = redis.call('MGET', k, key .. ':' .. (bucket - 1))
    local cur, prev = tonumber(got[1] or '0'), tonumber(got[2] or '0')
    local est = cur + prev * (1 - (now - bucket * a) / a) + cost
    value = math.floor(est)
    if c >= 0 and est > c then exceeded = 1 end
    state[i] = k
    fresh[i] = (bucket + 2) * a
  elseif t == 'd' then
    local bucket = math.floor(now / a)
    local k = key .. ':' .. bucket
    value = redis.call('SCARD', k)
    if value == 0 then fresh[i] = (bucket + 1) * a end
    if value == 0 or redis.call('SISMEMBER', k, b) == 0 then
      value = value + 1
      state[i] = k  -- a new member: added on commit
    else
      state[i] = false  -- already counted: nothing to add
    end
    if c >= 0 and value > c then exceeded = 1 end
  else
    local burst = tonumber(b)
    local h = redis.call('HMGET', key, 'tokens', 'at')
    local tokens = burst
    if h[1] then tokens = math.min(burst, tonumber(h[1]) + math.max(0, now - tonumber(h[2])) * a) end
    value = math.floor(tokens - c)
    if tokens < c then exceeded = 1 end
    state[i] = tokens
  end
  if exceeded == 1 then over = true end
  values[i] = tostring(value)
  flags[i] = exceeded
end
local committed = 0
if commit and not over then
  committed = 1
  for i = 1, n do
    local op = ops[i]
    local t, key = op and op[1], op and op[2]
    if not op then
      -- a rule that does not apply to this check
    elseif t == 'c' then
      -- the expiry is set once, when the window's key is created
      if redis.call('INCRBY', state[i], op[4]) == tonumber(op[4]) then redis.call('EXPIREAT', state[i], fresh[i]) end
    elseif t == 'd' then
      if state[i] then
        redis.call('SADD', state[i], op[4])
        if fresh[i] then redis.call('EXPIREAT', state[i], fresh[i]) end
      end
    else
      redis.call('HSET', key, 'tokens', tostring(state[i] - op[5]), 'at', ARGV[1])
      redis.call('EXPIREAT', key, math.ceil(now + tonumber(op[4]) / op[3] + 1))
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


def _plan_script(plan: Plan) -> str:
    """The script with this plan's rules written into it: Redis caches it by SHA, so a check sends only the
    signal values (parsing a plan argument, even with cjson, cost Redis more than the counting)."""
    rows = []
    for r in plan.rules:  # Plan admits only letters, digits and _:.- in these fields
        limit = -1 if r.limit is None else r.limit
        rows.append(f"{{'{r.kind}','{r.key_base}','{r.dimension}','{r.of}',{r.window_s},{limit},'{r.currency}'}}")
    return _SCRIPT.replace("local PLAN = {}", "local PLAN = {" + ",".join(rows) + "}", 1)


def _outcome(raw: object) -> Outcome:
    committed, values, flags = (raw.decode() if isinstance(raw, bytes) else str(raw)).split(" ")
    return Outcome(tuple(int(v) for v in values.split(",")), tuple(f == "1" for f in flags.split(",")),
                   committed == "1")


class RedisLimiter:
    def __init__(self, url: str, prefix: str = "kb:rl:", timeout_s: float = 0.5) -> None:
        self.prefix = prefix
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                              max_connections=256)
        self._script = self.client.register_script(_SCRIPT)
        self._plans: dict[Plan, AsyncScript] = {}

    async def apply(self, ops: list[Op], now: float, commit: bool = True) -> Outcome:
        validate(ops)
        if not ops:
            return Outcome((), (), commit)
        raw = await self._script(args=[repr(float(now)), "1" if commit else "0", self.prefix,
                                       "\n".join(_line(op) for op in ops)])
        return _outcome(raw)

    async def apply_plan(self, plan: Plan, values: Mapping[str, str], amount: int, currency: str,
                         now: float) -> Outcome:
        for v in values.values():
            if _BAD.search(v) or len(v) > 512:
                raise ValueError("signal values must be printable and at most 512 characters")
        if not plan.rules:
            return Outcome((), (), True)
        script = self._plans.get(plan)
        if script is None:
            script = self._plans[plan] = self.client.register_script(_plan_script(plan))
        raw = await script(args=[repr(float(now)), "1", self.prefix, "", values.get("user", ""),
                                       values.get("ip", ""), values.get("fp", ""), values.get("sku", ""),
                                       str(amount), currency])
        return _outcome(raw)

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()

