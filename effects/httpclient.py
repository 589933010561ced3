"""A small asyncio HTTP/1.1 client for the providers' hot path (the Twilio SDK's transport).

Why not aiohttp here: on the development box its client cost about 0.4 ms of CPU per
request and this one about 0.12 ms, and a send is little more than one request (see
bench/README.md, "Effects"). It keeps connections alive and sends one request per
connection at a time; it speaks http and https (the system's CA store) and reads responses
framed by Content-Length, chunked, or by the connection closing. No redirects, proxies or
compression: the Twilio API needs none of them.

What matters most for at-most-once is the line between "nothing was sent" and "maybe
sent". `RequestNotSentError` is raised only when no byte of the request left this process
(connecting failed or timed out, or the request was refused before writing); after the
first write any failure is `NoResponseError` or `TimeoutError`, and the caller must treat
the request as possibly received.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

_MAX_HEAD: Final = 64 * 1024
_MAX_BODY: Final = 16 * 1024 * 1024
_FRAMING: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class RequestNotSentError(ConnectionError):
    """No byte of the request was written: a retry cannot duplicate it."""


class NoResponseError(ConnectionError):
    """The request was (at least partly) written and no complete response came back."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


# Parser states of one response.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _UNTIL_CLOSE, _DONE = range(7)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `exchange` writes a request and awaits its response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._waiter: asyncio.Future[HttpResponse] | None = None
        self._state = _DONE
        self._head_only = False
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._remaining = 0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes nobody asked for: the connection cannot be trusted for the next request.
            self.reusable = False
            self.close()
            return
        self._buffer += data
        try:
            self._parse()
        except NoResponseError as error:
            self._fail(error)

    def eof_received(self) -> bool:
        if self._state == _UNTIL_CLOSE:
            self._finish()
        self.closed = True
        self.reusable = False
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._state == _UNTIL_CLOSE and exc is None:
            self._finish()
        self._fail(NoResponseError(f"connection closed before the response was complete: {exc}"))

    # -- one exchange ----------------------------------------------------------------------

    def exchange(self, request: bytes, *, head_only: bool) -> asyncio.Future[HttpResponse]:
        assert self.transport is not None
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._state = _HEAD
        self._head_only = head_only
        self._status = 0
        self._headers = {}
        self._body = bytearray()
        self.reusable = False
        self.transport.write(request)
        return waiter

    def time_out(self) -> None:
        self._fail(TimeoutError("no complete response within the timeout"))
        self.close()

    def close(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, error: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        self._state = _DONE
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _finish(self) -> None:
        waiter, self._waiter = self._waiter, None
        self._state = _DONE
        if self._buffer:
            self.reusable = False  # more than one response's worth of bytes
        if waiter is not None and not waiter.done():
            waiter.set_result(HttpResponse(self._status, self._headers, bytes(self._body)))

    # -- parsing ---------------------------------------------------------------------------

    def _parse(self) -> None:
        buffer = self._buffer
        while self._state != _DONE:
            if self._state == _HEAD:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > _MAX_HEAD:
                        raise NoResponseError("response head too large")
                    return
                head = bytes(buffer[:end])
                del buffer[: end + 4]
                self._read_head(head)
            elif self._state == _LENGTH:
                if len(buffer) < self._remaining:
                    return
                self._body += buffer[: self._remaining]
                del buffer[: self._remaining]
                self._finish()
            elif self._state == _CHUNK_SIZE:
                end = buffer.find(b"\r\n")
                if end < 0:
                    return
                size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
                del buffer[: end + 2]
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise NoResponseError(f"bad chunk size {size_text!r}") from None
                if size < 0 or len(self._body) + size > _MAX_BODY:
                    raise NoResponseError("bad chunk size")
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILERS
            elif self._state == _CHUNK_DATA:
                if len(buffer) < self._remaining + 2:
                    return
                if buffer[self._remaining : self._remaining + 2] != b"\r\n":
                    raise NoResponseError("chunk not followed by CRLF")
                self._body += buffer[: self._remaining]
                del buffer[: self._remaining + 2]
                self._state = _CHUNK_SIZE
            elif self._state == _TRAILERS:
                end = buffer.find(b"\r\n")
                if end < 0:
                    return
                del buffer[: end + 2]
                if end == 0:  # the empty line after the trailers
                    self._finish()
            else:  # _UNTIL_CLOSE: everything up to the end of the stream
                if len(self._body) + len(buffer) > _MAX_BODY:
                    raise NoResponseError("response body too large")
                self._body += buffer
                buffer.clear()
                return

    def _read_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit():
            raise NoResponseError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        status = int(code)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise NoResponseError(f"malformed header line {line[:80]!r}")
            key = name.strip().lower().decode("latin-1")
            text = value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        if 100 <= status < 200:
            return  # an interim response (100 Continue): the real one follows
        self._status = status
        self._headers = headers
        connection = headers.get("connection", "").lower()
        keep_alive = (
            "keep-alive" in connection if version == b"HTTP/1.0" else "close" not in connection
        )
        if self._head_only or status in {204, 304}:
            self.reusable = keep_alive
            self._finish()
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self.reusable = keep_alive
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            try:
                self._remaining = int(headers["content-length"])
            except ValueError:
                raise NoResponseError("bad Content-Length") from None
            if not 0 <= self._remaining <= _MAX_BODY:
                raise NoResponseError("bad Content-Length")
            self.reusable = keep_alive
            self._state = _LENGTH
        else:
            self._state = _UNTIL_CLOSE


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    host_header: str


def _origin(url: str) -> _Origin:
    parts = urlsplit(url)
    if not parts.hostname:
        raise RequestNotSentError(f"no host in {url[:80]!r}")
    default = 443 if parts.scheme == "https" else 80
    port = parts.port or default
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return _Origin(
        parts.scheme, parts.hostname, port, host if port == default else f"{host}:{port}"
    )


class Http1Client:
    """Keep-alive pools per origin, at most `pool_size` requests in progress at once."""

    def __init__(
        self,
        *,
        pool_size: int = 32,
        connect_timeout: float = 5.0,
        timeout: float = 15.0,
        idle_timeout: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._slots = asyncio.Semaphore(pool_size)
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        # Shorter than common servers' keep-alive timeouts, so a connection is dropped
        # here before the server closes it under a request (which would leave the request
        # ambiguous).
        self._idle_timeout = idle_timeout
        self._ssl = ssl_context
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._origins: dict[str, _Origin] = {}

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        *,
        timeout: float | None = None,
    ) -> HttpResponse:
        origin, target = self._split(url)
        request = self._encode(method, origin, target, headers, body)
        async with self._slots:
            connection = await self._connection(origin)
            loop = asyncio.get_running_loop()
            waiter = connection.exchange(request, head_only=method == "HEAD")
            timer = loop.call_later(timeout or self._timeout, connection.time_out)
            try:
                response = await waiter
            except BaseException:
                # Cancelled or failed mid-exchange: the connection's state is unknown.
                connection.close()
                raise
            finally:
                timer.cancel()
            if connection.reusable and not connection.closed:
                connection.idle_since = time.monotonic()
                self._idle.setdefault(origin, []).append(connection)
            else:
                connection.close()
            return response

    async def close(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _split(self, url: str) -> tuple[_Origin, str]:
        # The same few bases are asked for again and again: parse each once.
        scheme, _, rest = url.partition("://")
        if scheme not in {"http", "https"}:
            raise RequestNotSentError(f"not an absolute http(s) URL: {url[:80]!r}")
        end = len(rest)
        for mark in "/?#":
            found = rest.find(mark)
            if 0 <= found < end:
                end = found
        key = f"{scheme}://{rest[:end]}"
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _origin(key)
        target = rest[end:].partition("#")[0]
        return origin, target if target.startswith("/") else "/" + target

    def _encode(
        self,
        method: str,
        origin: _Origin,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> bytes:
        if " " in target or " " in method:
            raise RequestNotSentError(f"bad request line: {method} {target[:80]!r}")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {origin.host_header}"]
        for name, value in headers.items():
            if name.lower() in _FRAMING:
                continue  # framing is this client's business
            lines.append(f"{name}: {value}")
        if body is not None or method in {"POST", "PUT", "PATCH"}:
            lines.append(f"Content-Length: {len(body or b'')}")
        head = "\r\n".join(lines)
        # One check for the whole head: a line break inside a name or value (header
        # injection) shows up as one more than the separators put there.
        if head.count("\n") != len(lines) - 1 or head.count("\r") != len(lines) - 1:
            raise RequestNotSentError("refusing a request line or header with a line break")
        try:
            encoded = (head + "\r\n\r\n").encode("latin-1")
        except UnicodeEncodeError as error:
            raise RequestNotSentError(f"request head is not latin-1: {error}") from None
        return encoded + body if body else encoded

    async def _connection(self, origin: _Origin) -> _Connection:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            # Most recently used first: the least likely to have been closed by the server.
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self._idle_timeout:
                return connection
            connection.close()
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, protocol = await loop.create_connection(
                    _Connection,
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context else None,
                )
        except (OSError, TimeoutError) as error:
            raise RequestNotSentError(
                f"cannot connect to {origin.host}:{origin.port}: {error or type(error).__name__}"
            ) from error
        return protocol
