"""A bare HTTP/1.1 server on loopback for a fake provider's hot path, when the fake runs as
a benchmark's stand-in.

The fake is not what a benchmark measures, yet on a two-core box every millisecond it burns
is taken from the processor under test: aiohttp's server spent about 0.4 ms of CPU per
request, this one a fraction of that. It parses just what the providers' clients send
(requests framed by Content-Length, keep-alive, one request at a time per connection) and
hands each to a synchronous handler; a `latency` delays the answer, not the handling.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Self

_MAX_HEAD = 64 * 1024
_MAX_BODY = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LeanRequest:
    method: str
    target: str  # path and query, as sent
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True, slots=True)
class LeanResponse:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[LeanRequest], LeanResponse]


def _encode(response: LeanResponse, *, close: bool) -> bytes:
    reason = HTTPStatus(response.status).phrase
    lines = [
        f"HTTP/1.1 {response.status} {reason}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
    ]
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


class _Protocol(asyncio.Protocol):
    def __init__(self, handler: Handler, latency: float, open_: set[asyncio.Transport]) -> None:
        self._handler = handler
        self._latency = latency
        self._open = open_
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._open.add(transport)

    # why the connection went does not matter here: it is forgotten either way
    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002
        if self._transport is not None:
            self._open.discard(self._transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None and not self._transport.is_closing():
            request = self._next_request()
            if request is None:
                return
            close = request.headers.get("connection", "").lower() == "close"
            self._answer(_encode(self._handler(request), close=close), close=close)

    def _next_request(self) -> LeanRequest | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                self._refuse(431)
            return None
        lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._refuse(400)
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                self._refuse(400)
                return None
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            self._refuse(501)  # the clients under test always send a Content-Length
            return None
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY:
            self._refuse(400)
            return None
        if len(buffer) < end + 4 + length:
            return None
        body = bytes(buffer[end + 4 : end + 4 + length])
        del buffer[: end + 4 + length]
        return LeanRequest(parts[0], parts[1], headers, body)

    def _answer(self, response: bytes, *, close: bool) -> None:
        assert self._transport is not None
        transport = self._transport
        if self._latency:
            asyncio.get_running_loop().call_later(
                self._latency, self._write, transport, response, close
            )
        else:
            self._write(transport, response, close)

    @staticmethod
    def _write(transport: asyncio.Transport, response: bytes, close: bool) -> None:
        if not transport.is_closing():
            transport.write(response)
            if close:
                transport.close()

    def _refuse(self, status: int) -> None:
        assert self._transport is not None
        self._buffer.clear()
        self._transport.write(_encode(LeanResponse(status, b""), close=True))
        self._transport.close()


class LeanServer:
    """`handler` on 127.0.0.1 and `port` (0: a free one)."""

    def __init__(self, handler: Handler, *, port: int = 0, latency: float = 0.0) -> None:
        self._handler = handler
        self._port = port
        self._latency = latency
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Transport] = set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        sock: socket.socket = self._server.sockets[0]
        return int(sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Self:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Protocol(self._handler, self._latency, self._connections),
            "127.0.0.1",
            self._port,
            reuse_address=True,
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._connections):
            transport.abort()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
