"""A fake webhook receiver on loopback: answers from a script, records what it received."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from effects.fakes._server import LoopbackServer


@dataclass(frozen=True, slots=True)
class ScriptedResponse:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering: a receiver slower than the sender waits


@dataclass(frozen=True, slots=True)
class ReceivedHook:
    path: str
    headers: dict[str, str]
    body: bytes


class FakeWebhookReceiver(LoopbackServer):
    def __init__(self, port: int = 0) -> None:
        self.received: list[ReceivedHook] = []
        self._script: list[ScriptedResponse] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._receive)
        super().__init__(app, port)

    def respond(self, *responses: ScriptedResponse) -> None:
        """Answer the next requests with these, then 200."""
        self._script.extend(responses)

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {key.lower(): value for key, value in request.headers.items()}
        self.received.append(ReceivedHook(request.path, headers, body))
        scripted = self._script.pop(0) if self._script else ScriptedResponse()
        if scripted.delay:
            await asyncio.sleep(scripted.delay)
        return web.Response(status=scripted.status, headers=scripted.headers)
