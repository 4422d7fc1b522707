"""A small keep-alive HTTP/1.1 client for the hot Bot API calls (JSON POST in, status and body out).

Why not only aiohttp: measured on this machine against a local server, one aiohttp POST costs the caller about
65 µs of CPU (URL, headers, cookies, timers, payload objects, response object, stream reader); this client about
12 µs: it writes one bytes string and lets httptools (the C parser uvicorn uses) parse the answer. A purchase
makes four such calls, which is what keeps the bot above 300 purchases/s. Everything else (getUpdates, uploads,
file downloads, rare calls) stays on aiohttp through PTB.

Scope, on purpose: POST with a body, HTTP/1.1 keep-alive (Content-Length or chunked answers, "Connection:
close" honoured), TLS through the ssl module, a bounded pool per client, connect and read time limits. No
redirects, proxies or cookies (the Bot API uses none of them).

Idle connections are not reused after MAX_IDLE_S: a server closes an idle keep-alive connection on its own clock
(uvicorn after 5 s, nginx after 75 s), and a request written in the instant it does so is lost with no answer
("connection closed before the response") — a customer's reply gone. Such a failure is not retried here (the
server may have read the request), so the pool retires idle connections before a server would, as httpx's own
pool does (keepalive_expiry, 5 s).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import cast
from urllib.parse import urlsplit

import httptools

#: an idle connection older than this is closed instead of reused (see the module docstring)
MAX_IDLE_S = 4.0


class _Conn(asyncio.Protocol):
    """One connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.closed = False
        self.reusable = True
        self.idle_since = 0.0  # loop time it went back to the pool

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP response ({type(exc).__name__})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError("connection closed before the response"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        self.reusable = self.parser.should_keep_alive()
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), b"".join(self.body)))
        self.body = []

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


class Http1Pool:
    """Keep-alive connections to one origin, at most `size` of them at once."""

    def __init__(self, origin: str, size: int = 64, user_agent: str = "kamibot", max_idle: float = MAX_IDLE_S
                 ) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("origin must be http:// or https:// with a host")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        host_header = parts.netloc.rsplit("@", 1)[-1]
        self._head = (f"\r\nHost: {host_header}\r\nUser-Agent: {user_agent}\r\n"
                      "Content-Type: application/json\r\nContent-Length: ").encode()
        self._idle: deque[_Conn] = deque()
        self.max_idle = max_idle
        self._slots = asyncio.Semaphore(size)
        self._all: set[_Conn] = set()

    async def post(self, path: str, body: bytes, connect_timeout: float | None, read_timeout: float | None,
                   pool_timeout: float | None = None) -> tuple[int, bytes]:
        """POST body to path (which starts with "/"); the response status and body. Raises ConnectionError,
        OSError or TimeoutError; a connection that failed or was told to close is not reused."""
        request = b"POST " + path.encode() + b" HTTP/1.1" + self._head + str(len(body)).encode() + b"\r\n\r\n" + body
        async with asyncio.timeout(pool_timeout):
            await self._slots.acquire()
        try:
            conn = await self._connection(connect_timeout)
            try:
                async with asyncio.timeout(read_timeout):
                    result = await conn.exchange(request)
            except BaseException:
                conn.close()
                self._all.discard(conn)
                raise
            if conn.reusable and not conn.closed:
                conn.idle_since = asyncio.get_running_loop().time()
                self._idle.append(conn)
            else:
                conn.close()
                self._all.discard(conn)
            return result
        finally:
            self._slots.release()

    async def _connection(self, connect_timeout: float | None) -> _Conn:
        loop = asyncio.get_running_loop()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to have been closed by the server
            if (not conn.closed and conn.transport is not None and not conn.transport.is_closing()
                    and loop.time() - conn.idle_since < self.max_idle):
                return conn
            conn.close()  # closed by the server, or idle long enough that the server may be closing it now
            self._all.discard(conn)
        async with asyncio.timeout(connect_timeout):
            _, conn = await loop.create_connection(_Conn, self.host, self.port, ssl=self.ssl,
                                                   server_hostname=self.host if self.ssl else None)
        self._all.add(conn)
        return conn

    async def close(self) -> None:
        for conn in list(self._all):
            conn.close()
        self._all.clear()
        self._idle.clear()
