"""HTTP to a supplier: per-supplier connect/read timeouts, retries only for idempotent reads, and the one place
that decides which transport failure means "never sent" and which means "outcome unknown".

The client is aiohttp, not httpx (as handlers/telegram/request.py, for the same reason): measured against the fake
suppliers, an httpx request cost the shop ~2 ms of CPU, much of it in httpcore's pool walking every pooled
connection and polling its socket on each request, an aiohttp one under 0.5 ms (client and fake server together).
At 50 purchases a second that is a tenth of a core. aiohttp has no write timeout: a write is bounded by the read
timeout's clock starting once the request is sent, as a stalled upload shows up as a read that never comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from fulfillment.suppliers.errors import NotSent, OutcomeUnknown, Rejected, SupplierError, SupplierUnavailable

log = logging.getLogger("kamibot.suppliers")

#: failures raised before a single byte of the request left: nothing can have happened at the supplier (aiohttp's
#: ConnectionTimeoutError covers waiting for a pooled connection and opening one; it must be tested before the
#: read timeouts, its base classes)
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.InvalidURL)
#: anything else once the request may have left: the answer is lost
_LOST = (aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class HttpPolicy:
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    read_attempts: int = 3  # for query / catalogue / balance only; buys and recharges are sent exactly once
    retry_backoff: float = 0.2  # seconds, doubled per attempt
    max_connections: int = 32  # per supplier; purchases in flight are bounded by its breaker (breaker.py) anyway

    def timeout(self) -> httpx.Timeout:
        """For the adapters on httpx (kamibot.py)."""
        return httpx.Timeout(connect=self.connect_timeout, read=self.read_timeout, write=self.read_timeout,
                             pool=self.connect_timeout)

    def client_timeout(self) -> aiohttp.ClientTimeout:
        # "connect" is waiting for a pooled connection plus opening one; sock_connect the opening alone
        return aiohttp.ClientTimeout(total=None, connect=2 * self.connect_timeout, sock_connect=self.connect_timeout,
                                     sock_read=self.read_timeout)


class Garbage(Exception):
    """An answer that is not the JSON object the protocol promises (HTML, truncated, a bare string)."""


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's body as the JSON object a supplier protocol promises; Garbage (an unknown outcome, never a
    refusal) for HTML, truncated JSON or a bare value."""
    return json_body(response.status_code, response.content, response.headers.get("content-type", ""))


def json_body(status: int, content: bytes, content_type: str) -> dict[str, Any]:
    """json_object of an answer read by any client."""
    try:
        data = json.loads(content)
    except ValueError:
        raise Garbage(f"HTTP {status} body is not JSON ({content_type or 'no content-type'})") from None
    if not isinstance(data, dict):
        raise Garbage("answer is not a JSON object")
    return data


class SupplierHttp:
    """Form POSTs to one supplier. `build` makes the signed form per attempt (timestamps change between retries)."""

    def __init__(self, supplier: str, base_url: str, policy: HttpPolicy,
                 http: aiohttp.ClientSession | None = None) -> None:
        self.supplier = supplier
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self._http = http
        self._own_http = http is None
        self._timeout = policy.client_timeout()
        #: held around each write (SupplierRegistry wires its breaker's purchase slots here)
        self.gate: Callable[[], AbstractAsyncContextManager[None]] | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            # suppliers set no cookies we keep: the dummy jar skips cookie filtering on every request
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.policy.max_connections), timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar())
        return self._http

    async def aclose(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
            self._http = None

    async def _post(self, path: str, form: dict[str, str]) -> Any:
        # redirects refused: a 30x must never carry a signed order to another host (acg-faka does the same)
        async with self._client().post(self.base_url + path, data=form, headers={"Accept": "application/json"},
                                       allow_redirects=False) as response:
            status = response.status
            if status >= 500:
                raise Garbage(f"HTTP {status}")
            if status >= 300:
                raise Rejected(f"HTTP {status}", supplier=self.supplier)
            content = await response.read()
            return json_body(status, content, response.headers.get("Content-Type", ""))

    async def read(self, path: str, build: Callable[[], dict[str, str]], our_ref: str = "") -> dict[str, Any]:
        """An idempotent call, retried with backoff; raises SupplierUnavailable when every attempt failed."""
        last = ""
        for attempt in range(max(1, self.policy.read_attempts)):
            if attempt:
                await asyncio.sleep(self.policy.retry_backoff * 2 ** (attempt - 1))
            try:
                data: dict[str, Any] = await self._post(path, build())
                return data
            except Rejected:
                raise
            except (Garbage, *_LOST) as exc:
                last = _describe(exc)
                log.warning("event=supplier.read_failed supplier=%s path=%s ref=%s attempt=%d reason=%s",
                            self.supplier, path, our_ref or "-", attempt + 1, last)
        raise SupplierUnavailable(f"{path}: {last}", supplier=self.supplier, our_ref=our_ref)

    async def write(self, path: str, form: dict[str, str], our_ref: str) -> dict[str, Any]:
        """A call that may buy: sent once, holding a purchase slot of the supplier's breaker when `gate` is set
        (breaker.py: its NoPurchaseSlot is raised before anything is sent). NotSent when it never left,
        OutcomeUnknown when the answer was lost."""
        try:
            async with self.gate() if self.gate is not None else contextlib.nullcontext():
                data: dict[str, Any] = await self._post(path, form)
            return data
        except _NOT_SENT as exc:
            log.warning("event=supplier.not_sent supplier=%s path=%s ref=%s reason=%s", self.supplier, path, our_ref,
                        _describe(exc))
            raise NotSent(f"{path}: {_describe(exc)}", supplier=self.supplier, our_ref=our_ref) from None
        except SupplierError as exc:
            exc.our_ref = exc.our_ref or our_ref
            raise
        except (Garbage, *_LOST) as exc:
            log.warning("event=supplier.outcome_unknown supplier=%s path=%s ref=%s reason=%s", self.supplier, path,
                        our_ref, _describe(exc))
            raise OutcomeUnknown(f"{path}: {_describe(exc)}", supplier=self.supplier, our_ref=our_ref) from None


def _describe(exc: BaseException) -> str:
    """The failure's type and, for our own garbage marker, its note; client texts can quote URLs, so not theirs."""
    if isinstance(exc, Garbage):
        return str(exc)
    return type(exc).__name__
