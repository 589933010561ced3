"""Provider callbacks over HTTP (aiohttp): checked, then turned into events and published.

Routes (all POST, form-encoded unless said):
- `/twilio/status?effect_id=` — message and call status callbacks -> `effect.status_changed`;
  an `unknown` ledger row is reconciled to `sent` (and `effect.sent` is emitted); the end of
  a progressive call or voicemail drop -> `call.completed` on `calls`, for the engine.
- `/twilio/sms` — inbound SMS -> `message.received` (channel sms).
- `/twilio/gather?effect_id=&mode=` — a dialer's key press -> `dialer.key_pressed`
  (9 also -> `contact.opted_out`, channel all, and `contact.dnc_changed` to DNC); answers
  with TwiML.
- `/sendgrid/events` — SendGrid's signed Event Webhook (JSON) -> `effect.status_changed`.
- `/sendgrid/inbound` — SendGrid Inbound Parse (multipart) -> `lead.email_received`.
- `/mailgun/events`, `/mailgun/inbound` — Mailgun's event webhooks and Routes' forwards
  (`mailgun_callbacks.py`), signed with MAILGUN_WEBHOOK_SIGNING_KEY.

Twilio requests must carry a valid X-Twilio-Signature for the public URL they were sent to
(`public_base_url` + path and query); SendGrid events a valid ECDSA signature. A request that
fails its check gets 403, is logged, and publishes nothing. Inbound Parse has no signature
scheme: it is protected by a secret `token` query parameter when one is configured.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDict, MultiDictProxy
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader
from twilio.request_validator import (  # type: ignore[import-untyped, unused-ignore]
    RequestValidator,
)

from aggregates.duplicates import DUPLICATE_WINDOW
from effects import outcomes, twiml
from effects.callback_forms import CLIENT_MAX_SIZE, form_of, inbound_parse_form, text_of
from effects.commands import CALL_DIAL, VOICEMAIL_DROP, send_before_of
from effects.lead_mail import (
    first_address,
    header_lines,
    lead_email_received,
    seen_html,
)
from effects.ledger import Ledger, LedgerEntry
from effects.mailgun_callbacks import MailgunCallbacks
from effects.ports import Clock, Publish, named_effect
from effects.provider_status import status_outcomes
from effects.publish import publish_all
from schemas.envelope import EFFECTS_SOURCE, CloudEvent

_log = logging.getLogger(__name__)

TWIML = "text/xml"
SIGNATURE_HEADER = "X-Twilio-Signature"
# A call's last status callback carries one of these (Twilio's CallStatus values).
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


class InboundHandlers:
    def __init__(
        self,
        *,
        ledger: Ledger,
        publish: Publish,
        clock: Clock,
        public_base_url: str,
        twilio_auth_token: str,
        sendgrid_public_key: str | None = None,
        sendgrid_inbound_token: str | None = None,
        mailgun_signing_key: str | None = None,
    ) -> None:
        self._ledger = ledger
        self._publish = publish
        self._clock = clock
        self._base = public_base_url.rstrip("/")
        # Without a token anyone could sign with the empty key: the routes refuse all.
        self._validator = RequestValidator(twilio_auth_token) if twilio_auth_token else None
        if not twilio_auth_token:
            _log.warning("TWILIO_AUTH_TOKEN is not set: the /twilio/ callbacks refuse everything")
        self._urls = twiml.CallbackUrls(self._base)
        self._sendgrid = EventWebhook(sendgrid_public_key) if sendgrid_public_key else None
        self._inbound_token = sendgrid_inbound_token or None
        if not sendgrid_inbound_token:
            _log.warning("SENDGRID_INBOUND_TOKEN is not set: /sendgrid/inbound refuses every mail")
        # Without a signing key its routes refuse everything: Mailgun signs all it posts.
        self.mailgun = MailgunCallbacks(
            ledger=ledger, publish=publish, clock=clock, signing_key=mailgun_signing_key
        )

    # -- checks ----------------------------------------------------------------------------

    async def _twilio_form(self, request: web.Request) -> MultiDictProxy[Any]:
        if self._validator is None:
            raise web.HTTPForbidden(text="Twilio callbacks are not set up (TWILIO_AUTH_TOKEN)")
        form = await form_of(request)
        url = self._base + request.raw_path
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not signature or not self._signed(url, form, signature):
            _log.warning("refused %s: bad X-Twilio-Signature from %s", url, request.remote)
            raise web.HTTPForbidden(text="bad signature")
        # Signed as sent; NUL, which PostgreSQL (the ledger, the engine's store) cannot
        # hold and the engine refuses, becomes U+FFFD, so an inbound text is not lost to it.
        return MultiDictProxy(
            MultiDict(
                (key, value.replace("\x00", "\ufffd") if isinstance(value, str) else value)
                for key, value in form.items()
            )
        )

    def _signed(self, url: str, form: MultiDictProxy[Any], signature: str) -> bool:
        if any(not isinstance(value, str) for value in form.values()):
            return False  # Twilio posts no files; its validator fails on one
        assert self._validator is not None
        return bool(self._validator.validate(url, form, signature))

    # -- Twilio ----------------------------------------------------------------------------

    async def twilio_status(self, request: web.Request) -> web.StreamResponse:
        form = await self._twilio_form(request)
        effect_id = named_effect(request.query.get("effect_id", ""))
        sid = str(form.get("MessageSid") or form.get("CallSid") or "")
        status = str(form.get("MessageStatus") or form.get("CallStatus") or "")
        if effect_id is None or not status:
            raise web.HTTPBadRequest(text="effect_id and a status are required")
        now = self._clock()
        entry = await self._ledger.get(effect_id)
        context = entry.context if entry else {}
        events = await status_outcomes(
            self._ledger,
            effect_id,
            entry,
            provider="twilio",
            provider_id=sid,
            status=status,
            callback_key=sid or "-",
            at=now,
        )
        if entry is not None and form.get("CallSid") and status in FINAL_CALL_STATUSES:
            answered = await self._contact_answered(entry, sid, status, form)
            if answered is not None:
                # Seconds: a value past any call's length (or int()'s 4,300 digits) is none.
                duration = str(form.get("CallDuration", ""))[:9]
                events.append(
                    outcomes.call_completed(
                        effect_id,
                        context,
                        call_sid=sid,
                        answered=answered,
                        duration=int(duration) if duration.isdecimal() else None,
                        at=now,
                    )
                )
        await publish_all(self._publish, events)
        return web.Response(status=204)

    async def _contact_answered(
        self, entry: LedgerEntry, call_sid: str, status: str, form: MultiDictProxy[Any]
    ) -> bool | None:
        """Whether the contact took this call, for the calls whose end tells: a progressive
        call is the contact's own leg, answered by a person when a key was pressed on it
        (a machine presses none); a voicemail drop's machine detection names who answered.
        None for a preview call: its legs ring the agents, and the contact's is a <Dial>
        whose end no status callback reports."""
        if entry.type not in (CALL_DIAL, VOICEMAIL_DROP) or _is_preview(entry):
            return None
        if status != "completed":
            return False  # busy, no answer, failed or canceled
        if entry.type == VOICEMAIL_DROP:
            return str(form.get("AnsweredBy", "")) == "human"
        return await self._ledger.connected_by(entry.effect_id) == call_sid

    async def twilio_sms(self, request: web.Request) -> web.StreamResponse:
        form = await self._twilio_form(request)
        sender = str(form.get("From", ""))
        message_sid = str(form.get("MessageSid") or form.get("SmsSid") or "")
        if not sender or not message_sid:
            raise web.HTTPBadRequest(text="From and MessageSid are required")
        # The contact is whoever we last texted or called at that number; a stranger's
        # number stands in for a contact id so the engine still sees (and can refuse) it.
        contact_id = await self._ledger.contact_for_address(sender) or sender
        event = CloudEvent(
            id=f"twilio:{message_sid}",
            source=EFFECTS_SOURCE,
            type=outcomes.MESSAGE_RECEIVED,
            time=self._clock(),
            subject=contact_id,
            data={
                "message_id": message_sid,
                "contact_id": contact_id,
                "channel": "sms",
                "body": str(form.get("Body", "")),
                "from": sender,
                "to": str(form.get("To", "")),
            },
        )
        await self._publish("messages", event)
        return web.Response(text="<Response/>", content_type=TWIML)

    async def twilio_gather(self, request: web.Request) -> web.StreamResponse:
        form = await self._twilio_form(request)
        effect_id = named_effect(request.query.get("effect_id", ""))
        mode = "preview" if request.query.get("mode") == "preview" else "progressive"
        digit = str(form.get("Digits", ""))
        call_sid = str(form.get("CallSid", ""))
        entry = None if effect_id is None else await self._ledger.get(effect_id)
        # Only a dialer's call asks for a key: a gather naming a text or a mail is no
        # call of ours to act on (no opt-out, no DNC from it).
        if effect_id is None or entry is None or entry.type != CALL_DIAL:
            text = twiml.say_and_hang_up("Sorry, this call can no longer be connected.")
            return web.Response(text=text, content_type=TWIML)
        data: Mapping[str, Any] = entry.command.get("data", {})
        context = entry.context
        caller_id = data.get("from_number")
        now = self._clock()
        events: list[CloudEvent] = []
        if mode == "preview" and _past_window(data, now):
            # An agent kept on the line (a repeated message) presses a key after the
            # contact's quiet-hours window closed: dialing the contact now is what the
            # deadline forbids, whenever the agents' calls were placed.
            document = twiml.say_and_hang_up(
                "The time to call this contact has passed. The call will not be connected."
            )
        elif mode == "preview":
            if await self._ledger.mark_connected(effect_id, call_sid):
                document = twiml.connect_to(
                    [str(data.get("to", ""))], caller_id, "Connecting you to the contact."
                )
                if digit:  # none when the message played once and connected by itself
                    events.append(
                        outcomes.dialer_key_pressed(
                            effect_id,
                            context,
                            call_sid=call_sid,
                            digit=digit,
                            action=twiml.CONNECT,
                            mode=mode,
                            at=now,
                        )
                    )
            else:
                document = twiml.say_and_hang_up("Another agent has taken this call.")
        else:
            action = twiml.PROGRESSIVE_KEYS.get(digit)
            if action is None:
                message = str(data.get("message", ""))
                document = twiml.progressive_prompt(message, self._base + request.raw_path)
            else:
                # A key on the contact's own leg: a person took the call (the end of the
                # call says so to the engine, as an answered `call.completed`).
                await self._ledger.mark_connected(effect_id, call_sid)
                events.append(
                    outcomes.dialer_key_pressed(
                        effect_id,
                        context,
                        call_sid=call_sid,
                        digit=digit,
                        action=action,
                        mode=mode,
                        at=now,
                    )
                )
                if action == twiml.CONNECT:
                    numbers = [str(n) for n in data.get("ring_group_numbers") or []]
                    document = twiml.connect_to(numbers, caller_id, "Connecting you now.")
                elif action == twiml.CALLBACK:
                    document = twiml.say_and_hang_up("Thank you. We will call you back soon.")
                else:
                    document = twiml.say_and_hang_up(
                        "You have been removed from our contact list. Goodbye."
                    )
                    # "Removed from our contact list": no more messages (the opt-out) and
                    # no more calls (DNC; an opt-out alone leaves the dialers running).
                    said = "pressed 9 during a dialer call"
                    events.append(outcomes.contact_opted_out(effect_id, context, "all", said, now))
                    events.append(outcomes.contact_put_on_dnc(effect_id, context, said, now))
        await publish_all(self._publish, events)
        return web.Response(text=document, content_type=TWIML)

    # -- SendGrid --------------------------------------------------------------------------

    async def sendgrid_events(self, request: web.Request) -> web.StreamResponse:
        body = await text_of(request)
        signature = request.headers.get(EventWebhookHeader.SIGNATURE, "")
        timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP, "")
        if not self._verified(body, signature, timestamp):
            _log.warning("refused SendGrid events from %s: bad signature", request.remote)
            raise web.HTTPForbidden(text="bad signature")
        if not _fresh(timestamp, self._clock()):
            _log.warning("refused SendGrid events from %s: signed at %s", request.remote, timestamp)
            raise web.HTTPForbidden(text="signed too long ago, or in the future")
        try:
            batch = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise web.HTTPBadRequest(text="not JSON") from None
        now = self._clock()
        events: list[CloudEvent] = []
        for item in batch if isinstance(batch, list) else []:
            effect_id = named_effect(item.get("effect_id")) if isinstance(item, dict) else None
            if effect_id is None:
                continue  # a mail of another sender's, or an id no effect of ours has
            status = str(item.get("event", ""))
            provider_id = str(item.get("sg_message_id", "")).split(".")[0]
            key = str(item.get("sg_event_id") or provider_id or "-")
            events += await status_outcomes(
                self._ledger,
                effect_id,
                await self._ledger.get(effect_id),
                provider="sendgrid",
                provider_id=provider_id,
                status=status,
                callback_key=key,
                at=now,
            )
        await publish_all(self._publish, events)
        return web.Response(status=204)

    def _verified(self, body: str, signature: str, timestamp: str) -> bool:
        if self._sendgrid is None or not signature or not timestamp:
            return False
        try:
            return bool(self._sendgrid.verify_signature(body, signature, timestamp))
        except (ValueError, TypeError):  # a signature that is not base64 / not DER
            return False

    async def sendgrid_inbound(self, request: web.Request) -> web.StreamResponse:
        if self._inbound_token is None:
            raise web.HTTPForbidden(text="Inbound Parse is not set up (SENDGRID_INBOUND_TOKEN)")
        given = request.query.get("token", "")
        if not hmac.compare_digest(given.encode(), self._inbound_token.encode()):
            _log.warning("refused Inbound Parse from %s: bad token", request.remote)
            raise web.HTTPForbidden(text="bad token")
        try:
            form = await inbound_parse_form(request)
        except (ValueError, HttpProcessingError) as error:  # no boundary, a part cut short
            raise web.HTTPBadRequest(text=f"not a form of a mail: {error}") from None
        to = _recipient(form)
        sender = str(form.get("from", ""))
        subject = str(form.get("subject", ""))
        text = form.get("text")
        # An HTML-only mail goes as it is: the lead parser reads its tables, line breaks and
        # links, which flattening to text here would run together.
        body = str(text) if text else seen_html(str(form.get("html", "")))
        if not to:
            raise web.HTTPBadRequest(text="no recipient")
        headers = header_lines(str(form.get("headers", "")))
        event = lead_email_received(
            "sendgrid",
            to=to,
            sender=sender,
            subject=subject,
            body=body,
            headers=headers,
            at=self._clock(),
        )
        await self._publish("intake", event)
        return web.Response(status=200, text="ok")

    async def health(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})


def add_inbound_routes(app: web.Application, handlers: InboundHandlers) -> web.Application:
    app.add_routes(
        [
            web.post("/twilio/status", handlers.twilio_status),
            web.post("/twilio/sms", handlers.twilio_sms),
            web.post("/twilio/gather", handlers.twilio_gather),
            web.post("/sendgrid/events", handlers.sendgrid_events),
            web.post("/sendgrid/inbound", handlers.sendgrid_inbound),
            *handlers.mailgun.routes(),
            web.get("/healthz", handlers.health),
        ]
    )
    return app


def build_inbound_app(handlers: InboundHandlers) -> web.Application:
    # Inbound Parse and Mailgun's Routes post whole mails, attachments included.
    return add_inbound_routes(web.Application(client_max_size=CLIENT_MAX_SIZE), handlers)


# A signed batch is taken for as long as the engine knows its events again (it passes
# over a repeat it decided within DUPLICATE_WINDOW): a batch captured and sent again later
# would opt out again a contact who has since opted back in. A clock a little ahead is
# no replay.
_SIGNED_AHEAD = timedelta(minutes=5)


def _fresh(timestamp: str, now: datetime) -> bool:
    """Whether a SendGrid signature's timestamp (Unix seconds) is recent enough."""
    try:
        signed = datetime.fromtimestamp(int(timestamp), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return False
    return now - DUPLICATE_WINDOW <= signed <= now + _SIGNED_AHEAD


def _past_window(data: Mapping[str, Any], now: datetime) -> bool:
    """Whether the command's `send_before` has passed: a call was placed, so the
    processor read its command (and its `send_before`) first."""
    deadline = send_before_of(data)
    return deadline is not None and now >= deadline


def _is_preview(entry: LedgerEntry) -> bool:
    return entry.type == CALL_DIAL and entry.command.get("data", {}).get("mode") == "preview"


def _recipient(form: MultiDictProxy[Any]) -> str:
    """The envelope recipient when SendGrid gives it, else the first To: address."""
    envelope = form.get("envelope")
    if envelope:
        try:
            told = orjson.loads(str(envelope))
        except orjson.JSONDecodeError:
            told = None
        recipients = told.get("to") if isinstance(told, dict) else None
        if isinstance(recipients, str):
            recipients = [recipients]
        if isinstance(recipients, list) and recipients and isinstance(recipients[0], str):
            return recipients[0].strip().lower()
    return first_address(str(form.get("to", "")))
