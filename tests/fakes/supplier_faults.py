"""What the fake suppliers share: fault switches, a TCP proxy that can reset or stall a connection after the
server has acted on the request, and a loopback runner (uvicorn behind the proxy)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, fields
from typing import Any

from starlette.responses import Response

from tests.fakes.loopback import free_port, serve, shut

FAULT_HEADER = "x-fake-fault"


@dataclass
class Faults:
    """Each switch is a count of the next orders it applies to (0: off), except `latency` (seconds, every answer).
    "after accept" faults act once the order is booked: the money is gone, the answer is lost or garbage."""

    latency: float = 0.0
    hold_after_accept: int = 0  # booked, the answer never comes (the client's read timeout fires)
    http_500_after_accept: int = 0  # booked, then an HTML 500 page
    reset_after_accept: int = 0  # booked, then the TCP connection is reset (RST)
    html_after_accept: int = 0  # booked, then HTTP 200 with an HTML page
    truncated_after_accept: int = 0  # booked, then HTTP 200 with half a JSON document
    missing_fields_after_accept: int = 0  # booked, then {"code": ok} whose data lacks the order's id/state
    fewer_codes: int = 0  # booked and paid in full, one code fewer delivered
    duplicate_codes: int = 0  # booked, the last code is a copy of the first
    http_500_on_read: int = 0  # a read (product, order, balance...) answers an HTML 500 without acting
    # kashangwl only
    server_error_after_accept: int = 0  # booked, then {"code": "server_error"} (documented: outcome unknown)
    unknown_then_success: int = 0  # answers state 501; settles to 200 later (callback + query)
    unknown_then_failed: int = 0  # answers state 501; settles to 500 later, balance refunded
    callback_before_response: int = 0  # the success callback is delivered before the buy is answered
    duplicate_callbacks: int = 0  # the final callback is sent twice
    wrong_product_callback: int = 0  # the final callback names another product (validly signed)

    def take(self, name: str) -> bool:
        count = getattr(self, name)
        if count > 0:
            setattr(self, name, count - 1)
            return True
        return False

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, f.default)


def read_fault(faults: Faults) -> Response | None:
    if faults.take("http_500_on_read"):
        return Response(b"<html><body>502 Bad Gateway</body></html>", status_code=502, media_type="text/html")
    return None


def after_accept_fault(faults: Faults, good_json: bytes) -> Response | None:
    """The lost-answer faults, in a fixed order; None when no switch is on."""
    if faults.take("hold_after_accept"):
        return Response(b"", headers={FAULT_HEADER: "hold"})
    if faults.take("reset_after_accept"):
        return Response(b"", headers={FAULT_HEADER: "reset"})
    if faults.take("http_500_after_accept"):
        return Response(b"<html><body><h1>500 Internal Server Error</h1></body></html>", status_code=500,
                        media_type="text/html")
    if faults.take("html_after_accept"):
        return Response(b"<!DOCTYPE html><html><body>Please wait... (cdn check)</body></html>", media_type="text/html")
    if faults.take("truncated_after_accept"):
        return Response(good_json[: max(1, len(good_json) // 2)], media_type="application/json")
    return None


class FaultProxy:
    """Forwards 127.0.0.1:port to the backend; a response carrying FAULT_HEADER is replaced by a reset or a stall."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        upstream = asyncio.ensure_future(_pump(reader, backend_writer))
        try:
            while chunk := await backend_reader.read(65536):
                marker = chunk.lower()
                if f"{FAULT_HEADER}: reset".encode() in marker:
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()  # RST: the client reads "connection reset by peer"
                    return
                if f"{FAULT_HEADER}: hold".encode() in marker:
                    await upstream  # say nothing until the client gives up and closes
                    return
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            upstream.cancel()
            for w in (writer, backend_writer):
                with contextlib.suppress(Exception):
                    w.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


class Running:
    """A Starlette app served on loopback behind a FaultProxy; `url` is the proxy's address."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.url = ""
        self._server: Any = None
        self._task: Any = None
        self._proxy: FaultProxy | None = None

    async def __aenter__(self) -> Running:
        port = free_port()
        self._server, self._task = await serve(self.app, port)
        self._proxy = FaultProxy(port)
        self.url = f"http://127.0.0.1:{await self._proxy.start()}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._proxy is not None:
            await self._proxy.close()
        await shut(self._server, self._task)
