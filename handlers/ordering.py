"""One user's work in arrival order, different users' work side by side (both chat adapters use it).

A user's second message may depend on the answer to the first (a number typed after a numbered menu, a
button pressed under the last reply), so it waits for it; nobody else waits. The lock of a user is kept
only while something of theirs runs or waits, so the table does not grow with the number of users.

Across instances (several `kamibot run` behind one webhook) the in-process lock is not enough: the shared
`UserTurns` (Redis or a database lease, built by the composition root, bot/user_lock.py) is taken inside it,
so one user's work runs in one place at a time whichever instance received it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Hashable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class UserTurns(Protocol):
    """A lock per key shared by every instance: `hold(key)` waits until no other instance holds `key`."""

    def hold(self, key: str) -> AbstractAsyncContextManager[None]: ...


class InOrder(Generic[K]):
    def __init__(self, shared: UserTurns | None = None, scope: str = "") -> None:
        self._locks: dict[K, asyncio.Lock] = {}
        self._waiting: Counter[K] = Counter()
        #: the cross-instance turn, keyed "<scope>:<key>" (None: one instance, the process lock suffices)
        self.shared = shared
        self.scope = scope

    @asynccontextmanager
    async def turn(self, key: K) -> AsyncIterator[None]:
        """Wait until everything `key` started earlier is done (asyncio.Lock wakes waiters first come, first
        served), then hold the turn for the body."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] += 1
        try:
            async with lock:
                if self.shared is None:
                    yield
                else:
                    async with self.shared.hold(f"{self.scope}:{key}"):
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
