"""Idempotency-Key on the order API's POSTs: the first response is stored (sealed: it carries codes) and every
retry with the same key and body gets it back byte for byte, also while the first is still running (a retry waits
for it); the same key with another body is refused. A request that failed (an error response) stores nothing, so
a retry runs again; a holder that died leaves a lease that runs out, and the next retry takes over — harmless,
because placing an order is itself idempotent by the client's order number."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from fulfillment.api_errors import ApiCode, ApiError
from fulfillment.api_secrets import SecretBox
from storage.protocols.api import IdempotencyStore, IdemState

log = logging.getLogger("kamibot.api")
PURPOSE = "api-response"
MAX_KEY = 128


class IdempotentReplies:
    def __init__(self, store: IdempotencyStore, box: SecretBox, lease: timedelta = timedelta(seconds=30),
                 wait: timedelta = timedelta(seconds=20), poll_s: float = 0.02,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.box = box
        self.lease = lease
        self.wait = wait
        self.poll_s = poll_s
        self.clock = clock

    @staticmethod
    def valid_key(key: str) -> bool:
        return 0 < len(key) <= MAX_KEY and key.isascii() and key.isprintable() and " " not in key

    async def run(self, client_id: int, key: str, request_hash: str,
                  work: Callable[[], Awaitable[tuple[int, bytes]]]) -> tuple[int, bytes]:
        """(status, body) of the first successful run of `work` under this key."""
        owner = f"{client_id}:{key}"
        deadline = self.clock() + self.wait
        while True:
            now = self.clock()
            claim = await self.store.claim_idempotency(client_id, key, request_hash, now + self.lease, now)
            if claim.state == IdemState.MISMATCH:
                raise ApiError(ApiCode.IDEMPOTENCY_KEY_REUSED)
            if claim.state == IdemState.DONE:
                assert claim.body is not None
                return claim.status, self.box.open(PURPOSE, owner, claim.body)
            if claim.state == IdemState.NEW:
                break
            if self.clock() >= deadline:
                raise ApiError(ApiCode.IDEMPOTENCY_IN_PROGRESS)
            await asyncio.sleep(self.poll_s)
        try:
            status, body = await work()
        except Exception:
            await self.store.release_idempotency(client_id, key)
            raise
        if status >= 300:
            await self.store.release_idempotency(client_id, key)
            return status, body
        stored = await self.store.finish_idempotency(client_id, key, status, self.box.seal(PURPOSE, owner, body))
        assert stored.body is not None
        # another holder (after a lease takeover) may have stored first: the stored response is the answer
        return stored.status, self.box.open(PURPOSE, owner, stored.body)
