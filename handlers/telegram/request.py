"""PTB's HTTP seam (telegram.request.BaseRequest) on aiohttp instead of httpx.

Measured in benchmarks/telegram.py: with httpx every Bot API call cost the bot 1–2 ms of CPU, much of it in
httpcore's pool (each request walks every pooled connection and asks its socket whether it is readable). aiohttp's
client keeps idle connections in a per-host list and parses responses in C. PTB documents BaseRequest as the
place to swap the HTTP library; status codes and Telegram errors are still mapped by PTB's own
BaseRequest._request_wrapper, so 429 still raises RetryAfter and 403 Forbidden.

Requests without files go as JSON (the Bot API accepts application/json); uploads as multipart/form-data.
BotApi's hot calls (JsonCall bodies) skip aiohttp too and go through the small keep-alive client in http1.py.
aiohttp has no separate write timeout: a request's write is bounded by its read timeout instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import aiohttp
import yarl
from telegram import Bot
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from handlers.telegram.http1 import Http1Pool

_JSON = {"Content-Type": "application/json", "User-Agent": BaseRequest.USER_AGENT}
_FORM = {"User-Agent": BaseRequest.USER_AGENT}
T = TypeVar("T")


class AiohttpRequest(BaseRequest):
    """One aiohttp session with a bounded connection pool (per PTB Bot: API calls, or getUpdates)."""

    def __init__(self, pool_size: int = 64, read_timeout: float | None = 5.0, connect_timeout: float = 5.0,
                 pool_timeout: float = 5.0) -> None:
        self._pool_size = pool_size
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._session: aiohttp.ClientSession | None = None
        self._shut = False
        self._urls: dict[str, yarl.URL] = {}
        self._split: dict[str, tuple[str, str]] = {}
        self._http1: dict[str, Http1Pool] = {}
        self._timeouts: dict[tuple[float | None, float | None, float | None], aiohttp.ClientTimeout] = {}

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        self._shut = False
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=30, enable_cleanup_closed=True)
            # the Bot API sets no cookies: the dummy jar skips cookie filtering on every request
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout(
                self._read_timeout, self._connect_timeout, self._pool_timeout), skip_auto_headers=("User-Agent",),
                cookie_jar=aiohttp.DummyCookieJar())

    async def shutdown(self) -> None:
        self._shut = True
        for http in self._http1.values():
            await http.close()
        self._http1.clear()
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _timeout(self, read: float | None, connect: float | None, pool: float | None) -> aiohttp.ClientTimeout:
        key = (read, connect, pool)
        timeout = self._timeouts.get(key)
        if timeout is None:
            # aiohttp's "connect" covers waiting for a pooled connection and opening one; sock_connect the latter
            wait = None if pool is None or connect is None else pool + connect
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(total=None, connect=wait, sock_connect=connect,
                                                                  sock_read=read)
        return timeout

    async def do_request(self, url: str, method: str, request_data: RequestData | None = None,
                         read_timeout: object = BaseRequest.DEFAULT_NONE,
                         write_timeout: object = BaseRequest.DEFAULT_NONE,
                         connect_timeout: object = BaseRequest.DEFAULT_NONE,
                         pool_timeout: object = BaseRequest.DEFAULT_NONE) -> tuple[int, bytes]:
        if self._shut:
            raise RuntimeError("AiohttpRequest is shut down")
        read = self._read_timeout if read_timeout is BaseRequest.DEFAULT_NONE else read_timeout
        connect = self._connect_timeout if connect_timeout is BaseRequest.DEFAULT_NONE else connect_timeout
        pool = self._pool_timeout if pool_timeout is BaseRequest.DEFAULT_NONE else pool_timeout
        if isinstance(request_data, JsonCall):
            return await self._json_post(url, request_data, read, connect, pool)
        if self._session is None:  # a call before Bot.initialize (PTB's httpx request allowed that too)
            await self.initialize()
        session = self._session
        assert session is not None
        timeout = self._timeout(read, connect, pool)  # type: ignore[arg-type]
        target = _remember(self._urls, url, yarl.URL)
        try:
            if request_data is None:
                async with session.request(method, target, headers=_FORM, timeout=timeout) as response:
                    return response.status, await response.read()
            files = request_data.multipart_data
            if not files:
                body = json.dumps(request_data.parameters, ensure_ascii=False).encode()  # nested values as JSON
                async with session.request(method, target, data=body, headers=_JSON,
                                           timeout=timeout) as response:
                    return response.status, await response.read()
            form = aiohttp.FormData()
            for name, value in request_data.json_parameters.items():
                form.add_field(name, value)
            for name, part in files.items():
                filename, content, *rest = part
                form.add_field(name, content, filename=filename,
                               content_type=rest[0] if rest else "application/octet-stream")
            async with session.request(method, target, data=form, headers=_FORM, timeout=timeout) as response:
                return response.status, await response.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}") from exc

    async def _json_post(self, url: str, call: JsonCall, read: float | None, connect: float | None,
                         pool: float | None) -> tuple[int, bytes]:
        """A BotApi call: on the small HTTP/1.1 client (http1.py), one pool per origin."""
        origin, path = _remember(self._split, url, _origin_and_path)
        http = self._http1.get(origin)
        if http is None:
            http = self._http1[origin] = Http1Pool(origin, self._pool_size, self.USER_AGENT)
        body = json.dumps(call.parameters, ensure_ascii=False).encode()
        try:
            return await http.post(path, body, connect, read, pool)
        except TimeoutError as exc:
            raise TimedOut from exc
        except OSError as exc:  # ConnectionError is one; the message names neither URL nor token
            raise NetworkError(f"http1.{type(exc).__name__}") from None


def _remember(cache: dict[str, T], url: str, make: Callable[[str], T]) -> T:
    """make(url), kept for the Bot API's few method URLs; file URLs (one per file) past the bound are not kept."""
    value = cache.get(url)
    if value is None:
        value = make(url)
        if len(cache) < 256:
            cache[url] = value
    return value


def _origin_and_path(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", parts.path + (f"?{parts.query}" if parts.query else "")


class JsonCall:
    """A Bot API request body built by the caller: what AiohttpRequest.do_request reads of a RequestData."""

    multipart_data: dict[str, Any] = {}  # noqa: RUF012 - never written: no files in a JSON call

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.parameters = {k: v for k, v in parameters.items() if v is not None}


class BotApi:
    """The hot Bot API calls (send a message or an invoice, answer a button or a pre-checkout query) as plain JSON.

    Measured: PTB turns every argument into a RequestParameter and every answer into a frozen Message of ~120
    attributes, about a third of the bot's CPU per purchase, for answers the shop never reads. These calls go
    through the same AiohttpRequest and PTB's BaseRequest.post, so status codes map to the same TelegramError
    classes (RetryAfter, Forbidden, BadRequest, NetworkError); everything else still goes through PTB's Bot.
    """

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def call(self, method: str, **params: Any) -> Any:
        request = self.bot.request
        return await request.post(f"{self.bot.base_url}/{method}", cast(RequestData, JsonCall(params)))


def inline_keyboard(rows: list[list[dict[str, Any]]]) -> dict[str, Any] | None:
    """An InlineKeyboardMarkup as the Bot API's JSON (rows of button objects), or None for no keyboard."""
    return {"inline_keyboard": rows} if rows else None
