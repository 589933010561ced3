"""A small aiohttp server on 127.0.0.1 and a free port, for the fake providers; what they share
when run alone."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web


class LoopbackServer:
    def __init__(self, app: web.Application, port: int = 0) -> None:
        self._app = app
        self._port = port
        self._runner: web.AppRunner | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("server not started")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bind(self) -> int:
        """Reserve the port before starting (so a public URL can be built from it)."""
        if self._socket is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self._port))
            self._socket = sock
        return self.port

    async def start(self) -> Self:
        self.bind()
        assert self._socket is not None
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


def stop_requested() -> asyncio.Event:
    """Set on SIGTERM or SIGINT, from now on: a fake run from the command line then ends
    with status 0, as the services beside it do, instead of being killed by the signal.
    Called before the fake prints its URL, which is when a caller may already stop it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def print_json_line(summary: dict[str, Any]) -> None:
    """A fake's `--log`: one request and its answer, a JSON line on stdout, at once."""
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")
    sys.stdout.flush()
