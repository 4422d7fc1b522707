"""The Redis limiter: a whole check (every operation of it) is one Lua script, atomic, one round trip.

The script mirrors `MemoryLimiter`'s arithmetic exactly.  Bucket keys are derived inside the script
(`key:<window number>`), which a single Redis allows; a Redis Cluster would need hash tags in the keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from risk.limiters import _BAD, Count, Distinct, Op, Outcome, Plan, validate

# ARGV: now, commit flag, key prefix, and the operations as one string (an op per line, fields split by tabs):
# packing the check as 4 arguments and answering with one string keeps the client's encode/parse work small.
_SCRIPT = """
local now = tonumber(ARGV[1])
local commit = ARGV[2] == '1'
local prefix = ARGV[3]
local ops = {}
for line in string.gmatch(ARGV[4], '[^\\n]+') do
  local t, key, a, b, c = string.match(line, '^(%a)\\t([^\\t]+)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)$')
  ops[#ops + 1] = {t, prefix .. key, tonumber(a), b, tonumber(c)}
end
local n = #ops
local values, flags, state, fresh = {}, {}, {}, {}
local over = false
for i = 1, n do
  local t, key, a, b, c = unpack(ops[i])
  local value, exceeded = -1, 0
  if t == 'c' then
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
    local t, key, a, b, c = unpack(ops[i])
    if t == 'c' then
      -- a read (cost 0) counts nothing and keeps no key; the expiry is set once, when the window's key is created
      if b ~= '0' and redis.call('INCRBY', state[i], b) == tonumber(b) then
        redis.call('EXPIREAT', state[i], fresh[i])
      end
    elseif t == 'd' then
      if state[i] then
        redis.call('SADD', state[i], b)
        if fresh[i] then redis.call('EXPIREAT', state[i], fresh[i]) end
      end
    else
      redis.call('HSET', key, 'tokens', tostring(state[i] - c), 'at', ARGV[1])
      redis.call('EXPIREAT', key, math.ceil(now + tonumber(b) / a + 1))
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


_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:.-")
_DIMENSION = {"user": "user", "ip": "ip", "fp": "fp", "sku": "sku", "global": "'*'"}


def _lua_text(text: str) -> str:
    """A Lua string literal of any text (bytes other than plain characters as decimal escapes)."""
    return "'" + "".join(chr(b) if b in _SAFE else f"\\{b:03d}" for b in text.encode()) + "'"


def _plan_script(plan: Plan, prefix: str) -> str:
    """A script for one plan and key prefix, written as straight-line Lua: Redis caches it by SHA, so a check
    sends only its signal values, and Redis runs no rule-table walk, builds no op tables and reads every counted
    window with one MGET.  ARGV[1]: now, user, ip, fp, sku, amount, currency joined by tabs (one argument packs
    faster in the client than seven; the values hold no control characters).  The answer is an array of integers:
    a value per rule (-1 where it does not apply), then the numbers of the rules over their limit (if any,
    nothing was counted).

    The arithmetic is `_SCRIPT`'s (and so `MemoryLimiter`'s): an estimate per counting rule, a new distinct
    member counted only on commit, nothing counted when any deny rule is over its limit."""
    n = len(plan.rules)
    windows = sorted({r.window_s for r in plan.rules})
    slot = {w: i + 1 for i, w in enumerate(windows)}  # window -> index into the per-window tables
    out = [
        "local now, user, ip, fp, sku, amount, currency = string.match(ARGV[1],"
        " '^([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)$')",
        "now = tonumber(now)",
        "local cost = tonumber(amount)",
        "local WB, WS, WP, WF = {}, {}, {}, {}",  # per window: number, ':number', ':previous number', weight
        "local K = {" + ",".join(["false"] * n) + "}",  # counted key (count) / key a new member joins (distinct)
        "local V = {" + ",".join(["-1"] * n) + "}",
        "local E, keys, k, over = {}, {}, 0, 0",
    ]
    for w in windows:
        i = slot[w]
        out.append(f"WB[{i}] = math.floor(now / {w}); WS[{i}] = ':' .. WB[{i}]; WP[{i}] = ':' .. (WB[{i}] - 1);"
                   f" WF[{i}] = 1 - (now - WB[{i}] * {w}) / {w}")
    counts = [(i, r) for i, r in enumerate(plan.rules, 1) if r.kind in ("v", "f", "a")]
    for i, r in counts:  # the keys of every applying count rule: this window's and the previous one's
        dim, w = _DIMENSION.get(r.dimension, "''"), slot[r.window_s]
        cond = f"{dim} ~= ''" + (f" and currency == {_lua_text(r.currency)}" if r.kind == "a" else "")
        out.append(f"if {cond} then local base = {_lua_text(f'{prefix}{r.key_base}:')} .. {dim};"
                   f" K[{i}] = base .. WS[{w}]; keys[k + 1] = K[{i}]; keys[k + 2] = base .. WP[{w}]; k = k + 2 end")
    if counts:
        out.append("local got = k > 0 and redis.call('MGET', unpack(keys)) or {}")
        out.append("k = 1")
    for i, r in counts:
        step = {"v": "1", "f": "0", "a": "cost"}[r.kind]
        check = (f" if est > {r.limit} then over = over + 1; V[{n} + over] = {i} end"
                 if r.limit is not None and r.limit >= 0 else "")
        out.append(f"if K[{i}] then local est = tonumber(got[k] or '0') + tonumber(got[k + 1] or '0')"
                   f" * WF[{slot[r.window_s]}] + {step}; k = k + 2; V[{i}] = math.floor(est);{check} end")
    distinct = [(i, r) for i, r in enumerate(plan.rules, 1) if r.kind not in ("v", "f", "a")]
    for i, r in distinct:
        dim, member, w = _DIMENSION.get(r.dimension, "''"), _DIMENSION.get(r.of, "''"), slot[r.window_s]
        check = (f" if v > {r.limit} then over = over + 1; V[{n} + over] = {i} end"
                 if r.limit is not None and r.limit >= 0 else "")
        out.append(f"if {dim} ~= '' and {member} ~= '' then"
                   f" local key = {_lua_text(f'{prefix}{r.key_base}:')} .. {dim} .. WS[{w}];"
                   f" local v = redis.call('SCARD', key); if v == 0 then E[{i}] = (WB[{w}] + 1) * {r.window_s} end;"
                   f" if v == 0 or redis.call('SISMEMBER', key, {member}) == 0 then v = v + 1; K[{i}] = key end;"
                   f" V[{i}] = v;{check} end")
    out.append("if over == 0 then")
    for i, r in counts:  # a read (failed payments) counts nothing; a window's expiry is set when it is created
        w = slot[r.window_s]
        if r.kind == "v":
            out.append(f"  if K[{i}] and redis.call('INCRBY', K[{i}], 1) == 1 then"
                       f" redis.call('EXPIREAT', K[{i}], (WB[{w}] + 2) * {r.window_s}) end")
        elif r.kind == "a":
            out.append(f"  if K[{i}] and cost ~= 0 and redis.call('INCRBY', K[{i}], amount) == cost then"
                       f" redis.call('EXPIREAT', K[{i}], (WB[{w}] + 2) * {r.window_s}) end")
    for i, r in distinct:
        member = _DIMENSION.get(r.of, "''")
        out.append(f"  if K[{i}] then redis.call('SADD', K[{i}], {member});"
                   f" if E[{i}] then redis.call('EXPIREAT', K[{i}], E[{i}]) end end")
    out.append("end")
    out.append("return V")
    return "\n".join(out) + "\n"


def _outcome(raw: object) -> Outcome:
    committed, values, flags = (raw.decode() if isinstance(raw, bytes) else str(raw)).split(" ")
    return Outcome(tuple(int(v) for v in values.split(",")), tuple(f == "1" for f in flags.split(",")),
                   committed == "1")


def _plan_outcome(raw: object, n: int) -> Outcome:
    """A plan script's answer: the n values, then the (1-based) numbers of the rules over their limit."""
    if not isinstance(raw, list):
        raise TypeError(f"unexpected plan script answer {raw!r}")
    if len(raw) == n:
        return Outcome(tuple(raw), (False,) * n, True)
    over = raw[n:]
    return Outcome(tuple(raw[:n]), tuple(i in over for i in range(1, n + 1)), False)


class RedisLimiter:
    def __init__(self, url: str, prefix: str = "kb:rl:", timeout_s: float = 0.5) -> None:
        self.prefix = prefix
        self.client = aioredis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                              max_connections=256)
        self._script = self.client.register_script(_SCRIPT)
        self._plans: dict[int, tuple[Plan, bytes, str]] = {}  # id(plan) -> plan, SHA-1, source
        # EVALSHA straight through execute_command: no script object, no response callback
        self._execute: Callable[..., Awaitable[object]] = self.client.execute_command

    async def apply(self, ops: list[Op], now: float, commit: bool = True) -> Outcome:
        validate(ops)
        if not ops:
            return Outcome((), (), commit)
        raw = await self._script(args=[repr(float(now)), "1" if commit else "0", self.prefix,
                                       "\n".join(_line(op) for op in ops)])
        return _outcome(raw)

    async def apply_plan(self, plan: Plan, values: Mapping[str, str], amount: int, currency: str,
                         now: float) -> Outcome:
        if _BAD.search("".join(values.values()) + currency) or max(map(len, values.values()), default=0) > 512:
            raise ValueError("signal values must be printable and at most 512 characters")
        if not plan.rules:
            return Outcome((), (), True)
        cached = self._plans.get(id(plan))
        if cached is None or cached[0] is not plan:  # the plan is kept, so its id is not reused
            if len(self._plans) > 64:  # plans of replaced rule books
                self._plans.clear()
            source = _plan_script(plan, self.prefix)
            cached = self._plans[id(plan)] = (plan, hashlib.sha1(source.encode()).hexdigest().encode(), source)
        get = values.get
        args = (f"{float(now)!r}\t{get('user', '')}\t{get('ip', '')}\t{get('fp', '')}\t{get('sku', '')}\t{amount}"
                f"\t{currency}",)
        try:
            raw = await self._execute(b"EVALSHA", cached[1], 0, *args)
        except NoScriptError:  # Redis restarted or its script cache was flushed: load it and run it again
            await self.client.script_load(cached[2])
            raw = await self._execute(b"EVALSHA", cached[1], 0, *args)
        return _plan_outcome(raw, len(plan.rules))

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()

