"""A fake Twilio REST API on loopback: enough of Messages and Calls for the real SDK.

It checks Basic auth (account sid and auth token), answers with Twilio-shaped JSON (`sid`,
`status`, ...) or Twilio-shaped errors (`code`, `message`, `more_info`, `status`) for the
numbers it was told to refuse, and records every request with the effect id it finds in the
StatusCallback URL's query, so a test can assert "each effect id reached Twilio at most once".
It can also play Twilio's part afterwards: signed status callbacks to that URL.

Run alone: `python -m effects.fakes.twilio_server [--port N] [--http lean|aiohttp]
[--log]`; it prints its base URL (and, on stderr, the settings that point `dripstream
effects` at it), `--log` prints every request it answers as a JSON line on stdout, and
`GET /_fake/stats` gives its counters. Alone it
answers through a bare HTTP server (`_lean_server.py`, the default) so that on a small box
the stand-in takes as little CPU as it can from the processor being measured; in tests it
runs on aiohttp, in the test's process, where callbacks and scripting are needed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hmac
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import orjson
from aiohttp import web
from twilio.request_validator import (  # type: ignore[import-untyped, unused-ignore]
    RequestValidator,
)
from yarl import URL

from effects.fakes._lean_server import LeanRequest, LeanResponse, LeanServer
from effects.fakes._server import LoopbackServer, print_json_line, stop_requested

ACCOUNT_SID = "AC00000000000000000000000000000000"
AUTH_TOKEN = "fake-twilio-auth-token"  # noqa: S105 - the fake's own credential

# Numbers with a scripted answer (see FakeTwilioServer.__init__).
UNSUBSCRIBED_NUMBER = "+12025550161"
INVALID_NUMBER = "+12025550162"
THROTTLED_ONCE_NUMBER = "+12025550163"
NOT_SMS_CAPABLE_NUMBER = "+12025550164"
DOWN_NUMBER = "+12025550165"
# The bundled demo's landline (ops/demo): `dripstream demo` and the README's live walkthrough
# on this server show the same refused text.
DEMO_LANDLINE_NUMBER = "+12125550188"


@dataclass(frozen=True, slots=True)
class TwilioFailure:
    status: int
    code: int
    message: str
    retry_after: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    resource: str  # Messages | Calls
    form: dict[str, list[str]]
    effect_id: str | None
    sid: str | None  # None when refused

    def value(self, key: str) -> str | None:
        values = self.form.get(key)
        return values[0] if values else None

    @property
    def accepted(self) -> bool:
        return self.sid is not None


@dataclass(frozen=True, slots=True)
class _Received:
    resource: str
    form: dict[str, list[str]]
    effect_id: str | None


_CREATE_PATH = re.compile(r"/2010-04-01/Accounts/(?P<sid>[^/]+)/(?P<resource>Messages|Calls)\.json")


@dataclass
class _Script:
    always: dict[str, TwilioFailure] = field(default_factory=dict)
    first: dict[str, list[TwilioFailure]] = field(default_factory=dict)
    # Refused for texts only: a landline takes calls (21614 is a Messages error).
    texts: dict[str, TwilioFailure] = field(default_factory=dict)


# Twilio refuses a message body over 1,600 characters (its error 21617); a text can grow
# past it only once shortcodes are filled in, which a sequence file's check cannot see.
BODY_LIMIT = 1600


def _too_long(body: str) -> TwilioFailure | None:
    if len(body) <= BODY_LIMIT:
        return None
    return TwilioFailure(
        400, 21617, "The concatenated message body exceeds the 1600 character limit."
    )


class FakeTwilioServer(LoopbackServer):
    def __init__(
        self,
        *,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        latency: float = 0.0,
        port: int = 0,
        keep_requests: bool = True,
        report: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """`report`, when given, is called with a summary of every create request as it is
        answered (refused ones too), e.g. to print what a standalone fake received."""
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.latency = latency
        self.keep_requests = keep_requests
        self.report = report
        self.requests: list[RecordedRequest] = []
        self.accepted_by_effect: Counter[str] = Counter()
        self.requests_by_effect: Counter[str] = Counter()
        self.sids_by_effect: dict[str, list[str]] = {}
        self.request_count = 0
        self._sequence = 0
        self._script = _Script(
            always={
                UNSUBSCRIBED_NUMBER: TwilioFailure(
                    400, 21610, "Attempt to send to unsubscribed recipient"
                ),
                INVALID_NUMBER: TwilioFailure(
                    400, 21211, f"The 'To' number {INVALID_NUMBER} is not a valid phone number."
                ),
                DOWN_NUMBER: TwilioFailure(503, 20500, "Service unavailable"),
            },
            first={THROTTLED_ONCE_NUMBER: [TwilioFailure(429, 20429, "Too Many Requests")]},
            texts=dict.fromkeys(
                (NOT_SMS_CAPABLE_NUMBER, DEMO_LANDLINE_NUMBER),
                TwilioFailure(400, 21614, "'To' number is not a valid mobile number"),
            ),
        )
        app = web.Application()
        prefix = "/2010-04-01/Accounts/{sid}"
        app.add_routes(
            [
                web.post(prefix + "/Messages.json", self._messages),
                web.post(prefix + "/Calls.json", self._calls),
                web.get("/_fake/stats", self._stats),
            ]
        )
        super().__init__(app, port)

    # -- scripting -------------------------------------------------------------------------

    def fail_first(self, number: str, *failures: TwilioFailure) -> None:
        self._script.first.setdefault(number, []).extend(failures)

    def accepted(self, resource: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.accepted and resource in (None, r.resource)]

    # -- the API ---------------------------------------------------------------------------

    def _authorized(self, authorization: str, account_sid: str) -> bool:
        if not authorization.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (
            hmac.compare_digest(user, self.account_sid)
            and hmac.compare_digest(password, self.auth_token)
            and account_sid == self.account_sid
        )

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        return await self._create(request, "Messages")

    async def _calls(self, request: web.Request) -> web.StreamResponse:
        return await self._create(request, "Calls")

    async def _create(self, request: web.Request, resource: str) -> web.Response:
        received = self.receive(
            resource,
            request.headers.get("Authorization", ""),
            request.match_info["sid"],
            await request.read(),
        )
        if self.latency and isinstance(received, _Received):
            await asyncio.sleep(self.latency)
        answer = self.respond(received)
        return web.Response(
            body=answer.body,
            status=answer.status,
            content_type="application/json",
            headers=dict(answer.headers),
        )

    # Both HTTP frontends (aiohttp above, the lean one of `python -m`) share these two.

    def receive(
        self, resource: str, authorization: str, account_sid: str, body: bytes
    ) -> _Received | TwilioFailure:
        """Count a create request as it arrives (before any latency)."""
        if not self._authorized(authorization, account_sid):
            return TwilioFailure(401, 20003, "Authenticate")
        form = parse_qs(body.decode(), keep_blank_values=True)
        callback = form.get("StatusCallback", [""])[0]
        effect_id = parse_qs(urlsplit(callback).query).get("effect_id", [None])[0]
        self.request_count += 1
        if effect_id is not None:
            self.requests_by_effect[effect_id] += 1
        return _Received(resource, form, effect_id)

    def respond(self, received: _Received | TwilioFailure) -> LeanResponse:
        """Decide the answer: a scripted failure, or accepted with a new sid."""
        answer = self._answer(received)
        if self.report is not None:
            self.report(_summary(received, answer))
        return answer

    def _answer(self, received: _Received | TwilioFailure) -> LeanResponse:
        if isinstance(received, TwilioFailure):
            return _error(received)
        resource, form, effect_id = received.resource, received.form, received.effect_id
        to = form.get("To", [""])[0]
        failure = self._failure_for(to, resource)
        if failure is None and resource == "Messages":
            failure = _too_long(form.get("Body", [""])[0])
        if failure is not None:
            self._record(RecordedRequest(resource, form, effect_id, None))
            return _error(failure)
        self._sequence += 1
        sid = f"{'SM' if resource == 'Messages' else 'CA'}{self._sequence:032x}"
        self._record(RecordedRequest(resource, form, effect_id, sid))
        if effect_id is not None:
            self.accepted_by_effect[effect_id] += 1
            self.sids_by_effect.setdefault(effect_id, []).append(sid)
        body: dict[str, Any] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": form.get("From", [""])[0],
            "status": "queued",
            "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/{resource}/{sid}.json",
        }
        if resource == "Messages":
            body["body"] = form.get("Body", [""])[0]
            body["num_media"] = str(len(form.get("MediaUrl", [])))
            body["direction"] = "outbound-api"
        return LeanResponse(201, orjson.dumps(body))

    def _failure_for(self, to: str, resource: str) -> TwilioFailure | None:
        queued = self._script.first.get(to)
        if queued:
            return queued.pop(0)
        found = self._script.always.get(to)
        if found is None and resource == "Messages":
            found = self._script.texts.get(to)
        return found

    def _record(self, recorded: RecordedRequest) -> None:
        if self.keep_requests:
            self.requests.append(recorded)

    def stats(self) -> dict[str, int]:
        return {
            "requests": self.request_count,
            "accepted": sum(self.accepted_by_effect.values()),
            "effects": len(self.accepted_by_effect),
            "max_accepted_per_effect": max(self.accepted_by_effect.values(), default=0),
        }

    async def _stats(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats())

    # -- the lean frontend (benchmarks) ----------------------------------------------------

    def handle_lean(self, request: LeanRequest) -> LeanResponse:
        path = request.target.partition("?")[0]
        if request.method == "GET" and path == "/_fake/stats":
            return LeanResponse(200, orjson.dumps(self.stats()))
        match = _CREATE_PATH.fullmatch(path)
        if request.method != "POST" or match is None:
            return LeanResponse(404, b'{"message": "not found"}')
        received = self.receive(
            match["resource"],
            request.headers.get("authorization", ""),
            match["sid"],
            request.body,
        )
        return self.respond(received)

    # -- Twilio's side of the callbacks ----------------------------------------------------

    def signature(self, url: str, params: dict[str, str]) -> str:
        return str(RequestValidator(self.auth_token).compute_signature(url, params))

    async def send_status_callback(self, effect_id: str, status: str) -> int:
        """POST a signed status callback for the effect's (first accepted) request, as
        Twilio would; returns the HTTP status the application answered."""
        recorded = next(r for r in self.requests if r.effect_id == effect_id and r.accepted)
        url = recorded.value("StatusCallback") or ""
        assert recorded.sid is not None
        if recorded.resource == "Messages":
            params = {"MessageSid": recorded.sid, "MessageStatus": status}
        else:
            params = {"CallSid": recorded.sid, "CallStatus": status}
        params |= {
            "AccountSid": self.account_sid,
            "To": recorded.value("To") or "",
            "From": recorded.value("From") or "",
        }
        headers = {"X-Twilio-Signature": self.signature(url, params)}
        async with (
            aiohttp.ClientSession() as session,
            # encoded=True: request the URL byte for byte as signed, as Twilio does
            session.post(URL(url, encoded=True), data=params, headers=headers) as response,
        ):
            return response.status


def _summary(received: _Received | TwilioFailure, answer: LeanResponse) -> dict[str, Any]:
    """One request and its answer, flat: what `--log` prints."""
    reply = orjson.loads(answer.body)
    if isinstance(received, TwilioFailure):
        return {"status": answer.status, "code": received.code, "message": received.message}
    summary: dict[str, Any] = {
        "resource": received.resource,
        "status": answer.status,
        "sid": reply.get("sid"),
        "code": reply.get("code"),
        "effect_id": received.effect_id,
    }
    for key in ("To", "From", "Body", "MediaUrl", "Twiml", "Url"):
        values = received.form.get(key)
        if values:
            summary[key.lower()] = values[0] if len(values) == 1 else values
    return {key: value for key, value in summary.items() if value is not None}


def _error(failure: TwilioFailure) -> LeanResponse:
    headers = (("Retry-After", failure.retry_after),) if failure.retry_after else ()
    body = {
        "code": failure.code,
        "message": failure.message,
        "more_info": f"https://www.twilio.com/docs/errors/{failure.code}",
        "status": failure.status,
    }
    return LeanResponse(failure.status, orjson.dumps(body), headers=headers)


async def _serve(port: int, latency: float, frontend: str, *, log: bool = False) -> None:
    stop = stop_requested()
    server = FakeTwilioServer(
        port=port,
        latency=latency,
        keep_requests=False,
        report=print_json_line if log else None,
    )
    running: FakeTwilioServer | LeanServer
    if frontend == "aiohttp":
        running = await server.start()
    else:
        running = await LeanServer(server.handle_lean, port=port, latency=latency).start()
    url = running.url
    print(url, flush=True)
    print(
        f"fake Twilio: TWILIO_API_BASE={url} TWILIO_ACCOUNT_SID={ACCOUNT_SID}"
        f" TWILIO_AUTH_TOKEN={AUTH_TOKEN}",
        file=sys.stderr,
        flush=True,
    )
    await stop.wait()
    await running.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Twilio REST API on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument(
        "--http",
        choices=["lean", "aiohttp"],
        default="lean",
        help="the HTTP server in front of the fake (lean: cheapest, for benchmarks)",
    )
    parser.add_argument(
        "--log", action="store_true", help="print every request answered as a JSON line"
    )
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port, args.latency, args.http, log=args.log))


if __name__ == "__main__":
    main()
