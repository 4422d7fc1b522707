"""A value read from the store and reused for a few seconds in this process (a SKU, a price list, an API client),
read once however many requests miss it at the same moment.

Why single-flight: every API request of a second finds such an entry expired at the same instant. Without it, each
of 50 concurrent requests read it again, some 250 queries at once that took the pool's connections from the order
transactions every second (bench_api.py's slowest orders all fell on those instants).

Why read ahead: even read once, an expired entry made every request wait for the reads behind it (a SKU, its
prices, a distributor's list, a cost: eight queries in a row on a busy pool, 50-80 ms), once a second. An entry used
in the last quarter of its life is read again in the background while it is still served, so under steady use
nobody waits, and no value is ever served older than its TTL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float, max_entries: int = 10_000, keep_none: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        #: False: a None answer (say, an unknown key id) is not remembered, so junk keys cannot fill the cache
        self.keep_none = keep_none
        self.clock = clock
        self._values: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Task[V]] = {}
        self._generation = 0  # bumped by forget(): a read begun before it does not store what it read

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The remembered value, else `load()`'s; concurrent misses of one key share one load (its error too)."""
        hit = self._values.get(key)
        now = self.clock()
        if hit is not None and hit[0] > now:
            if hit[0] - now < self.ttl_s / 4 and key not in self._loading:
                self._start(key, load)  # read ahead, in the background: this caller is served now
            return hit[1]
        task = self._loading.get(key) or self._start(key, load)
        # shielded: a caller that gives up does not cancel the read the others wait for
        return await asyncio.shield(task)

    def _start(self, key: K, load: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        task = self._loading[key] = asyncio.ensure_future(self._load(key, load, self._generation))
        task.add_done_callback(_retrieved)  # nobody may be waiting for it: no "never retrieved" warning
        return task

    async def _load(self, key: K, load: Callable[[], Awaitable[V]], generation: int) -> V:
        started = self.clock()  # the value is as old as the read's start: its TTL counts from there
        try:
            value = await load()
            if (value is not None or self.keep_none) and generation == self._generation:
                if len(self._values) >= self.max_entries:
                    self._values.clear()
                self._values[key] = (started + self.ttl_s, value)
            return value
        finally:
            if self._loading.get(key) is asyncio.current_task():
                del self._loading[key]

    def forget(self, key: K) -> None:
        """This process changed the value: the next get reads it again (also past a read already under way)."""
        self._values.pop(key, None)
        self._loading.pop(key, None)
        self._generation += 1


def _retrieved(task: asyncio.Task[object]) -> None:
    if not task.cancelled():
        task.exception()
