"""effects/httpclient.py against a scripted raw server: framing, keep-alive, and the line
between "nothing was sent" (safe to retry) and "maybe sent"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from effects.httpclient import Http1Client, NoResponseError, RequestNotSentError

Script = Callable[[bytes], list[bytes]]
"""Given one raw request, the chunks to write back (b"" closes the connection)."""


@dataclass
class RawServer:
    script: Script
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                for chunk in self.script(request):
                    if chunk == b"":
                        writer.close()
                        return
                    if chunk == b"<hang>":
                        await asyncio.sleep(3600)
                    writer.write(chunk)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


Serve = Callable[[Script], Awaitable[RawServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """`await serve(script)`: a raw server on a free loopback port."""
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> RawServer:
        raw = RawServer(script)
        server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
        raw.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return raw

    yield start
    for server in servers:
        server.close()


def ok(body: bytes, *extra: bytes) -> list[bytes]:
    head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
    return [head + b"".join(extra) + f"Content-Length: {len(body)}\r\n\r\n".encode() + body]


async def test_a_form_post_is_framed_and_its_json_answer_read(serve: Serve) -> None:
    server = await serve(lambda _: ok(b'{"sid": "SM1"}'))
    client = Http1Client()
    response = await client.request(
        "POST",
        f"http://127.0.0.1:{server.port}/2010-04-01/Messages.json",
        {"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Basic eDp5"},
        b"To=%2B1&Body=Hi",
    )
    await client.close()
    assert response.status == 201
    assert response.text == '{"sid": "SM1"}'
    assert response.headers["content-type"] == "application/json"
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /2010-04-01/Messages.json HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b"Content-Length: 15" in lines
    assert b"Authorization: Basic eDp5" in lines
    assert body == b"To=%2B1&Body=Hi"


async def test_one_connection_carries_request_after_request(serve: Serve) -> None:
    server = await serve(lambda _: ok(b"{}"))
    client = Http1Client()
    for _ in range(5):
        response = await client.request("POST", f"http://127.0.0.1:{server.port}/x", {}, b"a=1")
        assert response.status == 201
    await client.close()
    assert server.connections == 1
    assert len(server.requests) == 5


async def test_a_chunked_answer_is_reassembled(serve: Serve) -> None:
    chunked = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nhello\r\n",
        b"7;ext=1\r\n, world\r\n",
        b"0\r\nX-Trailer: t\r\n\r\n",
    ]
    server = await serve(lambda _: chunked)
    client = Http1Client()
    first = await client.request("GET", f"http://127.0.0.1:{server.port}/a", {})
    second = await client.request("GET", f"http://127.0.0.1:{server.port}/b", {})
    await client.close()
    assert first.body == second.body == b"hello, world"
    assert server.connections == 1  # still reusable after a chunked answer


async def test_an_answer_delimited_by_close_is_read_to_the_end(serve: Serve) -> None:
    server = await serve(lambda _: [b"HTTP/1.1 200 OK\r\n\r\nuntil the end", b""])
    client = Http1Client()
    response = await client.request("GET", f"http://127.0.0.1:{server.port}/", {})
    again = await client.request("GET", f"http://127.0.0.1:{server.port}/", {})
    await client.close()
    assert response.body == again.body == b"until the end"
    assert server.connections == 2  # such a connection is never reused


async def test_interim_answers_are_skipped_and_connection_close_honoured(serve: Serve) -> None:
    server = await serve(
        lambda _: [b"HTTP/1.1 100 Continue\r\n\r\n", *ok(b"{}", b"Connection: close\r\n")]
    )
    client = Http1Client()
    for _ in range(2):
        response = await client.request("POST", f"http://127.0.0.1:{server.port}/", {}, b"")
        assert response.status == 201
    await client.close()
    assert server.connections == 2


async def test_a_refused_connection_is_not_sent() -> None:
    client = Http1Client(connect_timeout=2.0)
    # port 9 (discard) has no listener on loopback here: refused before any byte goes out
    with pytest.raises(RequestNotSentError):
        await client.request("POST", "http://127.0.0.1:9/x", {}, b"a=1")


async def test_a_server_that_closes_without_answering_may_have_received_it(
    serve: Serve,
) -> None:
    server = await serve(lambda _: [b""])
    client = Http1Client()
    with pytest.raises(NoResponseError):
        await client.request("POST", f"http://127.0.0.1:{server.port}/x", {}, b"a=1")
    assert len(server.requests) == 1


async def test_an_answer_cut_short_is_no_answer(serve: Serve) -> None:
    server = await serve(
        lambda _: [b'HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"sid"', b""]
    )
    client = Http1Client()
    with pytest.raises(NoResponseError):
        await client.request("POST", f"http://127.0.0.1:{server.port}/x", {}, b"a=1")
    assert len(server.requests) == 1


async def test_a_slow_answer_times_out_and_the_connection_is_dropped(serve: Serve) -> None:
    calls: list[int] = []

    def script(_: bytes) -> list[bytes]:
        calls.append(1)
        return [b"<hang>"] if len(calls) == 1 else ok(b"{}")

    server = await serve(script)
    client = Http1Client()
    with pytest.raises(TimeoutError):
        await client.request("POST", f"http://127.0.0.1:{server.port}/x", {}, b"", timeout=0.2)
    response = await client.request("POST", f"http://127.0.0.1:{server.port}/x", {}, b"")
    await client.close()
    assert response.status == 201
    assert server.connections == 2


async def test_a_line_break_in_a_header_is_refused_before_sending(serve: Serve) -> None:
    server = await serve(lambda _: ok(b"{}"))
    client = Http1Client()
    with pytest.raises(RequestNotSentError):
        await client.request(
            "POST", f"http://127.0.0.1:{server.port}/x", {"X-Evil": "a\r\nInjected: 1"}, b""
        )
    await client.close()
    assert server.requests == []
