"""A fake SendGrid v3 mail send on loopback, for the real `sendgrid` SDK.

`POST /v3/mail/send` with `Authorization: Bearer <key>` answers 202 and an `X-Message-Id`;
every request is recorded with the effect id found in its `custom_args`.

Run alone: `python -m effects.fakes.sendgrid_server [--port N] [--api-key KEY] [--log]`; it
prints its base URL (and, on stderr, the settings that point `dripstream effects` at it),
and `--log` prints every mail it answers as a JSON line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from effects.fakes._server import LoopbackServer, print_json_line, stop_requested

API_KEY = "SG.fake-sendgrid-key"

THROTTLED_ONCE_ADDRESS = "throttled-once@example.com"
REJECTED_ADDRESS = "rejected@example.com"


@dataclass(frozen=True, slots=True)
class SendGridFailure:
    status: int
    message: str
    retry_after: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedMail:
    body: dict[str, Any]
    effect_id: str | None
    message_id: str | None

    @property
    def recipients(self) -> list[str]:
        return [
            to["email"]
            for personalization in self.body.get("personalizations", [])
            for to in personalization.get("to", [])
        ]

    @property
    def text(self) -> str:
        return "".join(
            part["value"] for part in self.body.get("content", []) if part["type"] == "text/plain"
        )


def _effect_id(body: dict[str, Any]) -> str | None:
    found = body.get("custom_args", {}).get("effect_id")
    for personalization in body.get("personalizations", []):
        found = personalization.get("custom_args", {}).get("effect_id", found)
    return str(found) if found is not None else None


class FakeSendGridServer(LoopbackServer):
    def __init__(
        self,
        *,
        api_key: str = API_KEY,
        latency: float = 0.0,
        port: int = 0,
        report: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """`report`, when given, is called with a summary of every request as it is
        answered (refused ones too), e.g. to print what a standalone fake received.
        `latency`: seconds before each answer, after the mail is recorded (a client that
        gives up sooner leaves a mail that was accepted all the same)."""
        self.api_key = api_key
        self.latency = latency
        self.report = report
        self.mails: list[RecordedMail] = []
        self.accepted_by_effect: Counter[str] = Counter()
        self._sequence = 0
        self._always: dict[str, SendGridFailure] = {
            REJECTED_ADDRESS: SendGridFailure(400, "Does not contain a valid address.")
        }
        self._first: dict[str, list[SendGridFailure]] = {
            THROTTLED_ONCE_ADDRESS: [SendGridFailure(429, "too many requests", "2")]
        }
        app = web.Application()
        app.add_routes([web.post("/v3/mail/send", self._send)])
        super().__init__(app, port)

    def fail_first(self, address: str, *failures: SendGridFailure) -> None:
        self._first.setdefault(address, []).extend(failures)

    def accepted(self) -> list[RecordedMail]:
        return [mail for mail in self.mails if mail.message_id is not None]

    async def _send(self, request: web.Request) -> web.StreamResponse:
        mail, answer = await self._answer(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.report is not None:
            self.report(_summary(mail, answer))
        return answer

    async def _answer(self, request: web.Request) -> tuple[RecordedMail | None, web.Response]:
        expected = f"Bearer {self.api_key}"
        if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
            return None, _error(SendGridFailure(401, "The provided authorization grant is invalid"))
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return None, _error(SendGridFailure(400, "Bad Request"))
        effect_id = _effect_id(body)
        recorded = RecordedMail(body, effect_id, None)
        for address in recorded.recipients:
            failure = self._failure_for(address)
            if failure is not None:
                self.mails.append(recorded)
                return recorded, _error(failure)
        self._sequence += 1
        message_id = f"fakeSG{self._sequence:016d}"
        accepted = RecordedMail(body, effect_id, message_id)
        self.mails.append(accepted)
        if effect_id is not None:
            self.accepted_by_effect[effect_id] += 1
        return accepted, web.Response(status=202, headers={"X-Message-Id": message_id})

    def _failure_for(self, address: str) -> SendGridFailure | None:
        queued = self._first.get(address)
        if queued:
            return queued.pop(0)
        return self._always.get(address)


def _error(failure: SendGridFailure) -> web.Response:
    headers = {"Retry-After": failure.retry_after} if failure.retry_after else None
    return web.json_response(
        {"errors": [{"message": failure.message, "field": None, "help": None}]},
        status=failure.status,
        headers=headers,
    )


def _summary(mail: RecordedMail | None, answer: web.Response) -> dict[str, Any]:
    """One request and its answer, flat: what `--log` prints."""
    summary: dict[str, Any] = {"status": answer.status}
    if mail is not None:
        summary |= {
            "message_id": mail.message_id,
            "effect_id": mail.effect_id,
            "to": mail.recipients,
            "from": (mail.body.get("from") or {}).get("email"),
            "subject": mail.body.get("subject"),
            "text": mail.text,
        }
    return {key: value for key, value in summary.items() if value is not None}


async def _serve(port: int, api_key: str, *, log: bool) -> None:
    stop = stop_requested()
    server = await FakeSendGridServer(
        api_key=api_key, port=port, report=print_json_line if log else None
    ).start()
    print(server.url, flush=True)
    print(
        f"fake SendGrid: SENDGRID_API_BASE={server.url} SENDGRID_API_KEY={api_key}",
        file=sys.stderr,
        flush=True,
    )
    await stop.wait()
    await server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake SendGrid v3 mail send on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=API_KEY, help=f"the key it accepts ({API_KEY})")
    parser.add_argument(
        "--log", action="store_true", help="print every request answered as a JSON line"
    )
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port, args.api_key, log=args.log))


if __name__ == "__main__":
    main()
