"""HTTP to a supplier: per-supplier connect/read timeouts, retries only for idempotent reads, and the one place
that decides which transport failure means "never sent" and which means "outcome unknown"."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from fulfillment.suppliers.errors import NotSent, OutcomeUnknown, Rejected, SupplierError, SupplierUnavailable

log = logging.getLogger("kamibot.suppliers")

#: failures raised before a single byte of the request left: nothing can have happened at the supplier
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass(frozen=True)
class HttpPolicy:
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    read_attempts: int = 3  # for query / catalogue / balance only; buys and recharges are sent exactly once
    retry_backoff: float = 0.2  # seconds, doubled per attempt

    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect_timeout, read=self.read_timeout, write=self.read_timeout,
                             pool=self.connect_timeout)


class Garbage(Exception):
    """An answer that is not the JSON object the protocol promises (HTML, truncated, a bare string)."""


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's body as the JSON object a supplier protocol promises; Garbage (an unknown outcome, never a
    refusal) for HTML, truncated JSON or a bare value."""
    try:
        data = json.loads(response.content)
    except ValueError:
        raise Garbage(f"HTTP {response.status_code} body is not JSON "
                      f"({response.headers.get('content-type', 'no content-type')})") from None
    if not isinstance(data, dict):
        raise Garbage("answer is not a JSON object")
    return data


class SupplierHttp:
    """Form POSTs to one supplier. `build` makes the signed form per attempt (timestamps change between retries)."""

    def __init__(self, supplier: str, base_url: str, policy: HttpPolicy,
                 http: httpx.AsyncClient | None = None) -> None:
        self.supplier = supplier
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self._http = http
        self._own_http = http is None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # redirects refused: a 30x must never carry a signed order to another host (acg-faka does the same)
            self._http = httpx.AsyncClient(timeout=self.policy.timeout(), follow_redirects=False)
        return self._http

    async def aclose(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _post(self, path: str, form: dict[str, str]) -> Any:
        response = await self._client().post(self.base_url + path, data=form, timeout=self.policy.timeout(),
                                             headers={"Accept": "application/json"})
        if response.status_code >= 500:
            raise Garbage(f"HTTP {response.status_code}")
        if response.status_code >= 300:
            raise Rejected(f"HTTP {response.status_code}", supplier=self.supplier)
        return json_object(response)

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
            except (Garbage, httpx.HTTPError) as exc:
                last = _describe(exc)
                log.warning("event=supplier.read_failed supplier=%s path=%s ref=%s attempt=%d reason=%s",
                            self.supplier, path, our_ref or "-", attempt + 1, last)
        raise SupplierUnavailable(f"{path}: {last}", supplier=self.supplier, our_ref=our_ref)

    async def write(self, path: str, form: dict[str, str], our_ref: str) -> dict[str, Any]:
        """A call that may buy: sent once. NotSent when it never left, OutcomeUnknown when the answer was lost."""
        try:
            data: dict[str, Any] = await self._post(path, form)
            return data
        except _NOT_SENT as exc:
            log.warning("event=supplier.not_sent supplier=%s path=%s ref=%s reason=%s", self.supplier, path, our_ref,
                        _describe(exc))
            raise NotSent(f"{path}: {_describe(exc)}", supplier=self.supplier, our_ref=our_ref) from None
        except SupplierError as exc:
            exc.our_ref = exc.our_ref or our_ref
            raise
        except (Garbage, httpx.HTTPError) as exc:
            log.warning("event=supplier.outcome_unknown supplier=%s path=%s ref=%s reason=%s", self.supplier, path,
                        our_ref, _describe(exc))
            raise OutcomeUnknown(f"{path}: {_describe(exc)}", supplier=self.supplier, our_ref=our_ref) from None


def _describe(exc: BaseException) -> str:
    """The failure's type and, for our own garbage marker, its note; httpx texts can quote URLs, so not theirs."""
    if isinstance(exc, Garbage):
        return str(exc)
    return type(exc).__name__
