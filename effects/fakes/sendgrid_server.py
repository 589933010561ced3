"""A fake SendGrid v3 mail send on loopback, for the real `sendgrid` SDK.

`POST /v3/mail/send` with `Authorization: Bearer <key>` answers 202 and an `X-Message-Id`;
every request is recorded with the effect id found in its `custom_args`.
"""

from __future__ import annotations

import hmac
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from effects.fakes._server import LoopbackServer

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
    def __init__(self, *, api_key: str = API_KEY, port: int = 0) -> None:
        self.api_key = api_key
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
        expected = f"Bearer {self.api_key}"
        if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
            return _error(SendGridFailure(401, "The provided authorization grant is invalid"))
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(SendGridFailure(400, "Bad Request"))
        effect_id = _effect_id(body)
        recorded = RecordedMail(body, effect_id, None)
        for address in recorded.recipients:
            failure = self._failure_for(address)
            if failure is not None:
                self.mails.append(recorded)
                return _error(failure)
        self._sequence += 1
        message_id = f"fakeSG{self._sequence:016d}"
        self.mails.append(RecordedMail(body, effect_id, message_id))
        if effect_id is not None:
            self.accepted_by_effect[effect_id] += 1
        return web.Response(status=202, headers={"X-Message-Id": message_id})

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
