"""TtlCache: concurrent misses share one read, an error is shared and not remembered, forget wins over a read
under way, and None is not remembered when the cache says so."""

from __future__ import annotations

import asyncio

import pytest

from fulfillment.ttl_cache import TtlCache


class Reads:
    def __init__(self, value: object = "v") -> None:
        self.count = 0
        self.value = value
        self.gate = asyncio.Event()

    async def __call__(self) -> object:
        self.count += 1
        await self.gate.wait()
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


async def test_fifty_concurrent_misses_read_once_and_the_value_is_reused_until_it_expires():
    now = [0.0]
    cache: TtlCache[str, object] = TtlCache(1.0, clock=lambda: now[0])
    read = Reads()
    waiting = [asyncio.ensure_future(cache.get("k", read)) for _ in range(50)]
    await asyncio.sleep(0)
    read.gate.set()
    assert await asyncio.gather(*waiting) == ["v"] * 50
    assert read.count == 1
    assert await cache.get("k", read) == "v"
    assert read.count == 1
    now[0] = 1.5
    assert await cache.get("k", read) == "v"
    assert read.count == 2


async def test_an_error_reaches_every_waiter_and_is_not_remembered():
    cache: TtlCache[str, object] = TtlCache(10.0)
    failing = Reads(RuntimeError("db down"))
    waiting = [asyncio.ensure_future(cache.get("k", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    failing.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError] * 3
    assert failing.count == 1
    ok = Reads("fresh")
    ok.gate.set()
    assert await cache.get("k", ok) == "fresh"


async def test_a_caller_that_gives_up_does_not_cancel_the_read_of_the_others():
    cache: TtlCache[str, object] = TtlCache(10.0)
    read = Reads()
    impatient = asyncio.ensure_future(cache.get("k", read))
    patient = asyncio.ensure_future(cache.get("k", read))
    await asyncio.sleep(0)
    impatient.cancel()
    read.gate.set()
    assert await patient == "v"
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_forget_during_a_read_keeps_that_read_from_being_remembered():
    cache: TtlCache[str, object] = TtlCache(10.0)
    stale = Reads("before revoke")
    first = asyncio.ensure_future(cache.get("k", stale))
    await asyncio.sleep(0)
    cache.forget("k")
    stale.gate.set()
    assert await first == "before revoke"  # its caller asked before the change
    fresh = Reads("after revoke")
    fresh.gate.set()
    assert await cache.get("k", fresh) == "after revoke"


async def test_none_is_read_again_each_time_when_not_kept():
    cache: TtlCache[str, object] = TtlCache(10.0, keep_none=False)
    unknown = Reads(None)
    unknown.gate.set()
    assert await cache.get("junk", unknown) is None
    assert await cache.get("junk", unknown) is None
    assert unknown.count == 2


async def test_an_entry_used_near_its_end_is_read_again_in_the_background_while_still_served():
    now = [0.0]
    cache: TtlCache[str, object] = TtlCache(1.0, clock=lambda: now[0])
    first = Reads("old")
    first.gate.set()
    assert await cache.get("k", first) == "old"
    now[0] = 0.5  # three quarters of its life left: served, nothing read
    second = Reads("new")
    assert await cache.get("k", second) == "old"
    assert second.count == 0
    now[0] = 0.8  # the last quarter: still served at once, the next value read beside it
    assert await cache.get("k", second) == "old"
    await asyncio.sleep(0)
    assert second.count == 1
    assert await cache.get("k", second) == "old"  # one read ahead at a time
    second.gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await cache.get("k", second) == "new"
    assert second.count == 1
    now[0] = 1.9  # the new value's TTL counts from its read (at 0.8): gone at 1.8, so the caller waits
    third = Reads("newer")
    waiting = asyncio.ensure_future(cache.get("k", third))
    await asyncio.sleep(0)
    assert not waiting.done()
    third.gate.set()
    assert await waiting == "newer"
