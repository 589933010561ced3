"""Mailgun's callbacks: delivery events and inbound lead e-mails, signed both.

- `POST /mailgun/events` — an event webhook, JSON `{"signature": {timestamp, token,
  signature}, "event-data": {...}}` -> `effect.status_changed` (provider `mailgun`) for the
  effect named by `event-data.user-variables.effect_id`; an `unknown` effect is reconciled
  to `sent`, as for SendGrid's events.
- `POST /mailgun/inbound` — a Route's forward of a mail (form fields `recipient`, `from`,
  `subject`, `body-plain`, `stripped-text`, `body-html`, `message-headers`, and the
  signature's `timestamp`, `token`, `signature`) -> `lead.email_received` on `intake`.

A request whose signature fails (`mailgun_signature`) gets 403, is logged, and publishes
nothing. What passes gets 200: Mailgun takes any other answer as a reason to post again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from aiohttp import web

from effects.callback_forms import form_of
from effects.lead_mail import first_address, lead_email_received, seen_html
from effects.ledger import Ledger
from effects.mailgun_signature import MailgunSignatureCheck
from effects.ports import Clock, Publish, named_effect
from effects.provider_status import status_outcomes
from effects.publish import publish_all

_log = logging.getLogger(__name__)

PROVIDER = "mailgun"
# A `failed` event of severity `temporary`: Mailgun tries again by itself. Reported under
# SendGrid's word for the same, so that only a permanent failure reads as `failed` (the
# History report shows that one as "Email failed").
TRYING_AGAIN = "deferred"


class MailgunCallbacks:
    def __init__(
        self, *, ledger: Ledger, publish: Publish, clock: Clock, signing_key: str | None
    ) -> None:
        self._ledger = ledger
        self._publish = publish
        self._clock = clock
        self._check = MailgunSignatureCheck(signing_key, clock)

    async def _verify(self, request: web.Request, fields: Mapping[str, Any]) -> str:
        """The token's key once the request is Mailgun's and its token new; else 403."""
        token = _text(fields.get("token"))
        refusal = self._check.refusal(
            _text(fields.get("timestamp")), token, _text(fields.get("signature"))
        )
        if refusal is None:
            # Mailgun signs the timestamp and token, not the body: a captured signature
            # would carry any body. Each token is good once, for as long as its timestamp
            # could be taken (either side of our clock), then forgotten.
            now = self._clock()
            kept_until = now + 2 * self._check.max_distance
            if not await self._ledger.first_use(f"mailgun:{token}", now, kept_until):
                refusal = "a token already used (a replayed request)"
        if refusal is not None:
            _log.warning("refused %s from %s: %s", request.path, request.remote, refusal)
            raise web.HTTPForbidden(text="bad signature")
        return f"mailgun:{token}"

    @contextlib.asynccontextmanager
    async def _taken_back_on_failure(self, key: str) -> AsyncIterator[None]:
        """A request that fails after its token was taken gives the token back: Mailgun
        posts it again (the same token, within the window) and must not be refused."""
        try:
            yield
        except BaseException:
            await self._ledger.forget_use(key)
            raise

    async def events(self, request: web.Request) -> web.StreamResponse:
        try:
            document = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            document = None
        # Unreadable, or without a signature: nothing shows it is Mailgun's.
        if not isinstance(document, dict):
            document = {}
        signature = document.get("signature")
        key = await self._verify(request, signature if isinstance(signature, dict) else {})
        async with self._taken_back_on_failure(key):
            return await self._event(document)

    async def _event(self, document: Mapping[str, Any]) -> web.StreamResponse:
        data = document.get("event-data")
        if not isinstance(data, dict) or not data.get("event"):
            raise web.HTTPBadRequest(text="event-data with an event is required")
        variables = data.get("user-variables")
        effect_id = named_effect(
            variables.get("effect_id") if isinstance(variables, dict) else None
        )
        if effect_id is None:
            return web.Response(text="not an effect of ours")  # a mail sent by something else
        provider_id = message_id_of(data)
        events = await status_outcomes(
            self._ledger,
            effect_id,
            await self._ledger.get(effect_id),
            provider=PROVIDER,
            provider_id=provider_id,
            status=status_of(data),
            callback_key=_text(data.get("id")) or provider_id or "-",
            at=self._clock(),
        )
        await publish_all(self._publish, events)
        return web.Response(text="ok")

    async def inbound(self, request: web.Request) -> web.StreamResponse:
        form = await form_of(request)
        key = await self._verify(request, form)
        async with self._taken_back_on_failure(key):
            return await self._lead(form)

    async def _lead(self, form: Mapping[str, Any]) -> web.StreamResponse:
        to = first_address(_text(form.get("recipient"))) or first_address(_text(form.get("To")))
        if not to:
            raise web.HTTPBadRequest(text="no recipient")
        sender = _text(form.get("from")) or _text(form.get("sender"))
        subject = _text(form.get("subject"))
        # The whole plain body first, as SendGrid's `text`: the lead parser tells quoted
        # text apart itself, and the same mail must read the same through either provider.
        body = (
            _text(form.get("body-plain"))
            or _text(form.get("stripped-text"))
            or seen_html(_text(form.get("body-html")))  # as SendGrid's `html`
        )
        headers = [*_header_pairs(_text(form.get("message-headers")))]
        headers.append(("Message-Id", _text(form.get("Message-Id"))))
        event = lead_email_received(
            PROVIDER,
            to=to,
            sender=sender,
            subject=subject,
            body=body,
            headers=headers,
            at=self._clock(),
        )
        await self._publish("intake", event)
        return web.Response(text="ok")

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/mailgun/events", self.events),
            web.post("/mailgun/inbound", self.inbound),
        ]


def status_of(event_data: Mapping[str, Any]) -> str:
    """Mailgun's event name (accepted, delivered, failed, opened, ...), but for a failure
    Mailgun will retry by itself."""
    event = _text(event_data.get("event"))
    if event == "failed" and event_data.get("severity") == "temporary":
        return TRYING_AGAIN
    return event


def message_id_of(event_data: Mapping[str, Any]) -> str:
    """The Message-Id Mailgun gave the mail, as the sender recorded it (no angle brackets)."""
    message = event_data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    found = headers.get("message-id") if isinstance(headers, dict) else None
    return _text(found).strip().strip("<>")


def _header_pairs(raw: str) -> list[tuple[str, str]]:
    """Mailgun's `message-headers`: a JSON list of [name, value] pairs."""
    try:
        pairs = orjson.loads(raw) if raw else []
    except orjson.JSONDecodeError:
        return []
    if not isinstance(pairs, list):
        return []
    return [
        (str(pair[0]), str(pair[1])) for pair in pairs if isinstance(pair, list) and len(pair) == 2
    ]


def _text(value: object) -> str:
    """A field as text: a string, or a whole number (a JSON timestamp); else "" (absent, a
    file upload, a JSON object)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""
