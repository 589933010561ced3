"""A fake Mailgun messages API on loopback, for `MailgunEmailSender`.

`POST /v3/<domain>/messages` with Basic auth `api:<key>` answers 200 and
`{"id": "<...@domain>", "message": "Queued. Thank you."}`; every request is recorded with the
effect id of its `v:effect_id`. It refuses as Mailgun does: 401 and a plain "Forbidden" for
another key, 404 for another domain, and the scripted addresses below. It can also play
Mailgun's part afterwards: a signed event webhook about a mail it accepted (`event_for`).

Run alone: `python -m effects.fakes.mailgun_server [--port N] [--api-key KEY] [--domain D]
[--log]`; it prints its base URL (and, on stderr, the settings that point `dripstream
effects` at it), and `--log` prints every request it answers as a JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hmac
import secrets
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from effects.fakes._server import LoopbackServer, print_json_line, stop_requested
from effects.mailgun_signature import sign

API_KEY = "fake-mailgun-api-key"
DOMAIN = "mg.example.com"
SIGNING_KEY = "fake-mailgun-signing-key"

THROTTLED_ONCE_ADDRESS = "throttled-once@example.com"
REJECTED_ADDRESS = "rejected@example.com"
DOWN_ADDRESS = "down@example.com"


@dataclass(frozen=True, slots=True)
class MailgunFailure:
    status: int
    message: str
    retry_after: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    form: dict[str, list[str]]
    effect_id: str | None
    message_id: str | None  # None when refused

    def value(self, key: str) -> str | None:
        values = self.form.get(key)
        return values[0] if values else None

    @property
    def recipients(self) -> list[str]:
        return self.form.get("to", [])


class FakeMailgunServer(LoopbackServer):
    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        domain: str = DOMAIN,
        signing_key: str = SIGNING_KEY,
        latency: float = 0.0,
        port: int = 0,
        report: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """`report`, when given, is called with a summary of every request as it is
        answered (refused ones too). `latency`: seconds before each answer, after the
        message is recorded (a client that gives up sooner leaves a message queued all the
        same)."""
        self.api_key = api_key
        self.domain = domain
        self.signing_key = signing_key
        self.latency = latency
        self.report = report
        self.messages: list[RecordedMessage] = []
        self.accepted_by_effect: Counter[str] = Counter()
        self._sequence = 0
        self._always: dict[str, MailgunFailure] = {
            REJECTED_ADDRESS: MailgunFailure(400, "to parameter is not a valid address."),
            DOWN_ADDRESS: MailgunFailure(503, "Service Unavailable"),
        }
        self._first: dict[str, list[MailgunFailure]] = {
            THROTTLED_ONCE_ADDRESS: [MailgunFailure(429, "Too many requests", "2")]
        }
        app = web.Application()
        app.add_routes([web.post("/v3/{domain}/messages", self._send)])
        super().__init__(app, port)

    def fail_first(self, address: str, *failures: MailgunFailure) -> None:
        """The next sends to `address` are answered with these, in order."""
        self._first.setdefault(address, []).extend(failures)

    def accepted(self) -> list[RecordedMessage]:
        return [message for message in self.messages if message.message_id is not None]

    def event_for(
        self,
        message: RecordedMessage,
        event: str,
        at: datetime,
        *,
        severity: str | None = None,
        signing_key: str | None = None,
    ) -> dict[str, Any]:
        """Mailgun's webhook body about an accepted message, signed at `at` (with
        `signing_key`, to play a forger, else the fake's own)."""
        timestamp = str(int(at.timestamp()))
        token = secrets.token_hex(25)
        data: dict[str, Any] = {
            "event": event,
            "id": secrets.token_urlsafe(16),
            "timestamp": at.timestamp(),
            "recipient": message.recipients[0] if message.recipients else "",
            "message": {"headers": {"message-id": message.message_id}},
            "user-variables": {"effect_id": message.effect_id} if message.effect_id else {},
        }
        if severity is not None:
            data["severity"] = severity
        key = signing_key or self.signing_key
        return {
            "signature": {
                "timestamp": timestamp,
                "token": token,
                "signature": sign(key, timestamp, token),
            },
            "event-data": data,
        }

    async def _send(self, request: web.Request) -> web.StreamResponse:
        message, answer = await self._answer(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.report is not None:
            self.report(_summary(message, answer))
        return answer

    async def _answer(self, request: web.Request) -> tuple[RecordedMessage | None, web.Response]:
        if not self._authorized(request.headers.get("Authorization", "")):
            return None, web.Response(status=401, text="Forbidden")
        if request.match_info["domain"] != self.domain:
            domain = request.match_info["domain"]
            return None, _error(MailgunFailure(404, f"Domain not found: {domain}"))
        posted = await request.post()
        form: dict[str, list[str]] = {}
        for key, value in posted.items():
            form.setdefault(key, []).append(str(value))
        effect_id = next(iter(form.get("v:effect_id", [])), None)
        refused = RecordedMessage(form, effect_id, None)
        if not form.get("to") or not form.get("from"):
            self.messages.append(refused)
            return refused, _error(MailgunFailure(400, "from and to parameters are missing"))
        for address in form["to"]:
            failure = self._failure_for(address)
            if failure is not None:
                self.messages.append(refused)
                return refused, _error(failure)
        self._sequence += 1
        message_id = f"{self._sequence:016d}.fake@{self.domain}"
        accepted = RecordedMessage(form, effect_id, message_id)
        self.messages.append(accepted)
        if effect_id is not None:
            self.accepted_by_effect[effect_id] += 1
        return accepted, web.json_response(
            {"id": f"<{message_id}>", "message": "Queued. Thank you."}
        )

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            credentials = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(credentials, f"api:{self.api_key}".encode())

    def _failure_for(self, address: str) -> MailgunFailure | None:
        queued = self._first.get(address)
        if queued:
            return queued.pop(0)
        return self._always.get(address)


def _error(failure: MailgunFailure) -> web.Response:
    headers = {"Retry-After": failure.retry_after} if failure.retry_after else None
    return web.json_response({"message": failure.message}, status=failure.status, headers=headers)


def _summary(message: RecordedMessage | None, answer: web.Response) -> dict[str, Any]:
    """One request and its answer, flat: what `--log` prints."""
    summary: dict[str, Any] = {"status": answer.status}
    if message is not None:
        summary |= {
            "message_id": message.message_id,
            "effect_id": message.effect_id,
            "to": message.recipients,
            "from": message.value("from"),
            "subject": message.value("subject"),
            "text": message.value("text"),
        }
    return {key: value for key, value in summary.items() if value is not None}


async def _serve(port: int, api_key: str, domain: str, *, log: bool) -> None:
    stop = stop_requested()
    server = await FakeMailgunServer(
        api_key=api_key, domain=domain, port=port, report=print_json_line if log else None
    ).start()
    print(server.url, flush=True)
    print(
        f"fake Mailgun: EFFECTS_EMAIL_PROVIDER=mailgun MAILGUN_API_BASE={server.url}"
        f" MAILGUN_API_KEY={api_key} MAILGUN_DOMAIN={domain}"
        f" MAILGUN_WEBHOOK_SIGNING_KEY={server.signing_key}",
        file=sys.stderr,
        flush=True,
    )
    await stop.wait()
    await server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Mailgun messages API on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=API_KEY, help=f"the key it accepts ({API_KEY})")
    parser.add_argument("--domain", default=DOMAIN, help=f"the sending domain it has ({DOMAIN})")
    parser.add_argument(
        "--log", action="store_true", help="print every request answered as a JSON line"
    )
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port, args.api_key, args.domain, log=args.log))


if __name__ == "__main__":
    main()
