"""Who sent an API request: key id, timestamp within ±300 s, the HMAC signature over the canonical request
(fulfillment/api_signing.py), a nonce accepted once across processes, the key's rate limit, then the scope.

Checks run cheapest first and a nonce is claimed only after the signature matched, so forged requests cannot burn
a client's nonces. Every refusal is an ApiError with a fixed message (never the expected signature or a secret).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from fulfillment import api_signing as signing
from fulfillment.api_clients import ApiClient, ApiKeys
from fulfillment.api_errors import ApiCode, ApiError
from handlers.api.wire import ApiRequest
from risk.limiters import Bucket, Limiter, LimiterUnavailable
from storage.records import OnceKey

log = logging.getLogger("kamibot.api")
_MAX_HEADER = 128


@dataclass(frozen=True)
class Caller:
    client: ApiClient
    #: the request's nonce when its claim is deferred to the request's own transaction (else claimed already)
    nonce: OnceKey | None = None


class Authenticator:
    def __init__(self, keys: ApiKeys, limiter: Limiter | None = None, rate_per_s: float = 20.0, burst: int = 40,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.limiter = limiter
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.wall_clock = wall_clock

    async def authenticate(self, req: ApiRequest, defer_nonce: bool = False) -> Caller:
        """The verified caller. With `defer_nonce` the nonce is not claimed here: the caller's one store
        transaction claims it (Caller.nonce), and `settle` claims it when that transaction did not happen."""
        key_id = req.headers.get(signing.KEY_HEADER, "")
        stamp = req.headers.get(signing.TIMESTAMP_HEADER, "")
        nonce = req.headers.get(signing.NONCE_HEADER, "")
        signature = req.headers.get(signing.SIGNATURE_HEADER, "")
        if not key_id or not signature:
            raise ApiError(ApiCode.UNKNOWN_KEY if not key_id else ApiCode.BAD_SIGNATURE)
        if any(len(v) > _MAX_HEADER or not v.isascii() for v in (key_id, stamp, nonce, signature)):
            raise ApiError(ApiCode.MALFORMED)
        if not (8 <= len(nonce) <= 64) or not stamp.isdigit():
            raise ApiError(ApiCode.MALFORMED)
        if abs(self.wall_clock() - int(stamp)) > signing.WINDOW_S:
            raise ApiError(ApiCode.STALE_TIMESTAMP)
        client = await self.keys.live_client(key_id)
        if client is None:
            raise ApiError(ApiCode.UNKNOWN_KEY)
        if not signing.matches(self.keys.secret_of(client), signature, req.method, req.path, req.raw_query, req.body,
                               stamp, nonce):
            log.info("event=api.rejected reason=signature key_id=%s", key_id)
            raise ApiError(ApiCode.BAD_SIGNATURE)
        self.keys.count_request()
        once = self.keys.nonce_key(key_id, nonce, _window())
        if not defer_nonce and not await self.keys.claim_nonce(once):
            raise ApiError(ApiCode.NONCE_REUSED)
        await self._rate_limit(client)
        return Caller(client, once if defer_nonce else None)

    async def settle(self, caller: Caller) -> bool:
        """Claim a deferred nonce whose transaction did not run or was undone; False: it was claimed before."""
        return caller.nonce is None or await self.keys.claim_nonce(caller.nonce)

    async def _rate_limit(self, client: ApiClient) -> None:
        if self.limiter is None:
            return
        try:
            outcome = await self.limiter.apply([Bucket(f"api:{client.key_id}", self.rate_per_s, self.burst)],
                                               self.wall_clock())
        except LimiterUnavailable:
            return  # the shared limiter is down: the signature and nonce checks still hold
        if not outcome.allowed:
            raise ApiError(ApiCode.RATE_LIMITED)


def _window() -> timedelta:
    return timedelta(seconds=signing.WINDOW_S)


def require(client: ApiClient, scope: str) -> None:
    if scope not in client.scopes:
        raise ApiError(ApiCode.MISSING_SCOPE)
