"""handlers/telegram/http1.py against a raw HTTP server on 127.0.0.1, on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from handlers.telegram.http1 import Http1Pool

Scenario = Callable[[], Awaitable[None]]


class _Server(asyncio.Protocol):
    """Answers each request with the next scripted reply; records requests and connections."""

    replies: list[bytes] = []  # noqa: RUF012 - set per scenario
    requests: list[bytes] = []  # noqa: RUF012
    connections = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        type(self).connections += 1
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, rest = self.buf.split(b"\r\n\r\n", 1)
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            if len(rest) < length:
                return
            self.buf = rest[length:]
            type(self).requests.append(head + b"\r\n\r\n" + rest[:length])
            reply = type(self).replies.pop(0)
            if reply == b"HANG":
                return
            if reply == b"DROP":
                self.transport.close()  # type: ignore[attr-defined]
                return
            self.transport.write(reply)  # type: ignore[attr-defined]
            if b"Connection: close" in reply:
                self.transport.close()  # type: ignore[attr-defined]


def _ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def _run(scenario: Callable[[], Awaitable[None]], loop: str) -> None:
    if loop == "uvloop":
        uvloop.run(scenario())
    else:
        asyncio.run(scenario())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_keep_alive_chunked_close_and_failures(loop: str) -> None:
    async def scenario() -> None:
        _Server.requests, _Server.connections = [], 0
        chunked = (b"HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\n{\"ok\"\r\n7\r\n:false}\r\n0\r\n\r\n")
        _Server.replies = [_ok(b'{"ok":true}'), _ok(b'{"ok":true,"n":2}'), chunked,
                           _ok(b"{}", "Connection: close\r\n"), _ok(b'{"n":5}'), b"DROP", b"HANG", _ok(b"{}")]
        server = await asyncio.get_running_loop().create_server(_Server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Http1Pool(f"http://127.0.0.1:{port}", size=2, user_agent="kb-test")
        try:
            body = json.dumps({"chat_id": 1, "text": "héllo"}, ensure_ascii=False).encode()
            assert await pool.post("/botT/sendMessage", body, 2, 2) == (200, b'{"ok":true}')
            assert await pool.post("/botT/sendMessage", b"{}", 2, 2) == (200, b'{"ok":true,"n":2}')
            assert _Server.connections == 1  # kept alive
            first = _Server.requests[0]
            assert first.startswith(b"POST /botT/sendMessage HTTP/1.1\r\n")
            assert b"Content-Type: application/json\r\n" in first
            assert b"User-Agent: kb-test\r\n" in first
            assert first.endswith(b"\r\n\r\n" + body)
            assert await pool.post("/botT/x", b"{}", 2, 2) == (429, b'{"ok":false}')  # chunked, decoded
            assert await pool.post("/botT/x", b"{}", 2, 2) == (200, b"{}")  # server says close
            assert await pool.post("/botT/x", b"{}", 2, 2) == (200, b'{"n":5}')
            assert _Server.connections == 2  # a new connection after "Connection: close"
            with pytest.raises(ConnectionError):  # closed before answering
                await pool.post("/botT/x", b"{}", 2, 2)
            with pytest.raises(TimeoutError):  # no answer within the read time limit
                await pool.post("/botT/x", b"{}", 2, 0.2)
            assert await pool.post("/botT/x", b"{}", 2, 2) == (200, b"{}")  # a fresh connection again
            assert _Server.connections == 4
        finally:
            await pool.close()
            server.close()
            await server.wait_closed()

    _run(scenario, loop)


def test_refused_connection_and_bad_origins() -> None:
    async def scenario() -> None:
        server = await asyncio.get_running_loop().create_server(_Server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        pool = Http1Pool(f"http://127.0.0.1:{port}")
        with pytest.raises(ConnectionRefusedError):
            await pool.post("/x", b"{}", 2, 2)

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="origin"):
        Http1Pool("ftp://example.org")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_connection_idle_too_long_is_not_reused(loop: str) -> None:
    """A server closes idle keep-alive connections on its own clock (uvicorn after 5 s); a request written as it
    does is lost. The pool retires a connection idle for max_idle instead of reusing it."""
    async def scenario() -> None:
        _Server.requests, _Server.connections = [], 0
        _Server.replies = [_ok(b"{}"), _ok(b'{"n":2}'), _ok(b'{"n":3}')]
        server = await asyncio.get_running_loop().create_server(_Server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Http1Pool(f"http://127.0.0.1:{port}", size=2, max_idle=0.3)
        try:
            assert await pool.post("/botT/x", b"{}", 2, 2) == (200, b"{}")
            assert await pool.post("/botT/x", b"{}", 2, 2) == (200, b'{"n":2}')
            assert _Server.connections == 1  # reused while fresh
            await asyncio.sleep(0.4)
            assert await pool.post("/botT/x", b"{}", 2, 2) == (200, b'{"n":3}')
            assert _Server.connections == 2  # the idle one was retired, a new one opened
            assert len(pool._all) == 1
        finally:
            await pool.close()
            server.close()
            await server.wait_closed()

    _run(scenario, loop)
