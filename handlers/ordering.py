"""One user's work in arrival order, different users' work side by side (both chat adapters use it).

A user's second message may depend on the answer to the first (a number typed after a numbered menu, a
button pressed under the last reply), so it waits for it; nobody else waits. The lock of a user is kept
only while something of theirs runs or waits, so the table does not grow with the number of users.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class InOrder(Generic[K]):
    def __init__(self) -> None:
        self._locks: dict[K, asyncio.Lock] = {}
        self._waiting: Counter[K] = Counter()

    @asynccontextmanager
    async def turn(self, key: K) -> AsyncIterator[None]:
        """Wait until everything `key` started earlier is done (asyncio.Lock wakes waiters first come, first
        served), then hold the turn for the body."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key], self._locks[key]

    def pending(self, key: K) -> int:
        """Work of `key` running or waiting now."""
        return self._waiting.get(key, 0)

    def __len__(self) -> int:
        return len(self._locks)
