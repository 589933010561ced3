"""Mailgun's signed callbacks: delivery events and Routes' inbound mail; 403 and silence for
a bad, missing or stale signature."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from aggregates.intake import ParsedLead, parse_lead_email
from effects.fakes._server import LoopbackServer
from effects.inbound import InboundHandlers, add_inbound_routes
from effects.lead_mail import lead_email_received
from effects.ledger_memory import InMemoryLedger
from effects.mailgun_signature import sign
from effects.ports import EffectId
from effects.publish import InMemorySink
from schemas.validation import decode_event
from tests.effects.helpers import T0, Clock, command, types_of

SIGNING_KEY = "mailgun-signing-key"
FX = "fx:welcome:c-1:1:s1:1"
MESSAGE_ID = "20270702140000.1.abc@mg.example.com"


def signed(at: datetime = T0, key: str = SIGNING_KEY) -> dict[str, str]:
    """The signature fields as Mailgun makes them for a request sent at `at`."""
    timestamp = str(int(at.timestamp()))
    token = secrets.token_hex(25)
    return {"timestamp": timestamp, "token": token, "signature": sign(key, timestamp, token)}


def event_body(
    event: str = "delivered", signature: dict[str, str] | None = None, **data: Any
) -> bytes:
    event_data = {
        "event": event,
        "id": "ev-1",
        "recipient": "ann@example.com",
        "message": {"headers": {"message-id": MESSAGE_ID}},
        "user-variables": {"effect_id": FX},
        **data,
    }
    return orjson.dumps({"signature": signature or signed(), "event-data": event_data})


@dataclass
class Callbacks:
    url: str
    sink: InMemorySink
    ledger: InMemoryLedger
    session: aiohttp.ClientSession

    async def post_event(self, body: bytes) -> int:
        headers = {"Content-Type": "application/json"}
        async with self.session.post(f"{self.url}/mailgun/events", data=body, headers=headers) as r:
            return r.status

    async def post_mail(self, fields: dict[str, str]) -> int:
        form = aiohttp.FormData()
        for name, value in fields.items():
            form.add_field(name, value)
        async with self.session.post(f"{self.url}/mailgun/inbound", data=form) as response:
            return response.status


async def serve(signing_key: str | None) -> AsyncIterator[Callbacks]:
    app = web.Application()
    server = LoopbackServer(app)
    sink = InMemorySink()
    ledger = InMemoryLedger()
    handlers = InboundHandlers(
        ledger=ledger,
        publish=sink,
        clock=Clock(),
        public_base_url="http://127.0.0.1",
        twilio_auth_token="unused",
        sendgrid_inbound_token="inbound-token",
        mailgun_signing_key=signing_key,
    )
    add_inbound_routes(app, handlers)
    async with server, aiohttp.ClientSession() as session:
        yield Callbacks(server.url, sink, ledger, session)
    # and whatever was published passes the project's validation
    for _, published in sink.published:
        decode_event(published.encode())


@pytest.fixture
async def callbacks() -> AsyncIterator[Callbacks]:
    async for served in serve(SIGNING_KEY):
        yield served


async def given_email_in_ledger(ledger: InMemoryLedger, status: str) -> None:
    email = command("email.send", to="ann@example.com", subject="Hi", body="x")
    await ledger.claim(EffectId(FX), email, T0)
    await ledger.begin(EffectId(FX), T0)
    if status == "sent":
        await ledger.record_sent(EffectId(FX), "mailgun", MESSAGE_ID, T0)
    else:
        await ledger.record_unknown(EffectId(FX), "no answer from Mailgun", T0)


# -- events ----------------------------------------------------------------------------------


async def test_a_signed_delivery_event_becomes_effect_status_changed(callbacks: Callbacks) -> None:
    # given an e-mail Mailgun accepted
    await given_email_in_ledger(callbacks.ledger, "sent")
    # when Mailgun reports it delivered
    assert await callbacks.post_event(event_body("delivered")) == 200
    # then one status change on outcomes, matched to the effect and its message
    [(topic, changed)] = callbacks.sink.published
    assert topic == "outcomes"
    assert changed.type == "effect.status_changed"
    assert changed.id == f"{FX}/status/ev-1/delivered"
    assert changed.subject == "c-1"
    assert changed.data["provider"] == "mailgun"
    assert changed.data["provider_id"] == MESSAGE_ID
    assert changed.data["status"] == "delivered"
    assert changed.data["sequence_id"] == "welcome"


async def test_an_event_settles_an_email_left_unknown(callbacks: Callbacks) -> None:
    # given an e-mail whose send timed out: unknown, never sent again
    await given_email_in_ledger(callbacks.ledger, "unknown")
    # when Mailgun's event about it arrives
    assert await callbacks.post_event(event_body("accepted")) == 200
    # then it was sent after all: effect.sent follows the status change
    assert types_of(callbacks.sink.events()) == ["effect.status_changed", "effect.sent"]
    sent = callbacks.sink.events()[1]
    assert (sent.data["provider"], sent.data["provider_id"]) == ("mailgun", MESSAGE_ID)
    entry = await callbacks.ledger.get(EffectId(FX))
    assert entry is not None
    assert entry.status == "sent"


@pytest.mark.parametrize(
    ("severity", "status"), [("permanent", "failed"), ("temporary", "deferred")]
)
async def test_only_a_permanent_failure_reads_failed(
    callbacks: Callbacks, severity: str, status: str
) -> None:
    await given_email_in_ledger(callbacks.ledger, "sent")
    assert await callbacks.post_event(event_body("failed", severity=severity)) == 200
    assert callbacks.sink.events()[0].data["status"] == status


async def test_an_event_about_mail_sent_by_something_else_is_passed_over(
    callbacks: Callbacks,
) -> None:
    assert await callbacks.post_event(event_body("opened", **{"user-variables": {}})) == 200
    assert callbacks.sink.published == []


def stale() -> dict[str, str]:
    return signed(at=T0 - timedelta(minutes=16))


def future() -> dict[str, str]:
    return signed(at=T0 + timedelta(minutes=16))


def forged() -> dict[str, str]:
    return signed(key="someone-elses-key")


def tampered() -> dict[str, str]:
    # a good signature whose timestamp was moved afterwards to look fresh
    fields = signed(at=T0 - timedelta(hours=2))
    return fields | {"timestamp": str(int(T0.timestamp()))}


def unsigned() -> dict[str, str]:
    return {"timestamp": str(int(T0.timestamp())), "token": "t" * 50, "signature": ""}


@pytest.mark.parametrize("signature", [forged, tampered, stale, future, unsigned])
async def test_an_event_that_fails_the_signature_check_is_refused_and_publishes_nothing(
    callbacks: Callbacks, signature: Any
) -> None:
    await given_email_in_ledger(callbacks.ledger, "unknown")
    assert await callbacks.post_event(event_body(signature=signature())) == 403
    assert callbacks.sink.published == []
    entry = await callbacks.ledger.get(EffectId(FX))
    assert entry is not None
    assert entry.status == "unknown"  # not settled by a forgery


async def test_a_signature_a_few_minutes_old_still_passes(callbacks: Callbacks) -> None:
    # Mailgun warns that its webhooks can lag: minutes are not a replay
    body = event_body(signature=signed(at=T0 - timedelta(minutes=14)))
    assert await callbacks.post_event(body) == 200


@pytest.mark.parametrize("body", [b"not json", b"[]", orjson.dumps({"event-data": {}})])
async def test_a_body_without_a_signature_is_refused(callbacks: Callbacks, body: bytes) -> None:
    assert await callbacks.post_event(body) == 403
    assert callbacks.sink.published == []


async def test_without_a_signing_key_every_callback_is_refused() -> None:
    async for unconfigured in serve(None):
        assert await unconfigured.post_event(event_body()) == 403
        assert await unconfigured.post_mail({"recipient": "leads@x.example", **signed()}) == 403
        assert unconfigured.sink.published == []


# -- inbound mail ----------------------------------------------------------------------------


def forwarded(**fields: str) -> dict[str, str]:
    """A Route's forward of a lead mail, signed now."""
    mail = {
        "recipient": "Leads-7f3kq@intake.example.com",
        "sender": "bounce@zillow.example",
        "from": "Zillow <leads@zillow.example>",
        "subject": "New lead: Ann Lee",
        "body-plain": "Name: Ann Lee\nPhone: (212) 555-0101\n",
        "stripped-text": "Name: Ann Lee",
        "body-html": "<p>Name: Ann Lee</p>",
        "message-headers": orjson.dumps(
            [["Message-Id", "<abc@mail.zillow.example>"], ["Subject", "New lead: Ann Lee"]]
        ).decode(),
    }
    return mail | signed() | fields


async def test_a_forwarded_mail_becomes_lead_email_received(callbacks: Callbacks) -> None:
    assert await callbacks.post_mail(forwarded()) == 200
    [(topic, event)] = callbacks.sink.published
    assert topic == "intake"
    assert event.type == "lead.email_received"
    assert event.id == "mailgun-inbound:abc@mail.zillow.example"
    assert event.subject == "leads-7f3kq@intake.example.com"
    assert event.data == {
        "to": "leads-7f3kq@intake.example.com",
        "from": "Zillow <leads@zillow.example>",
        "subject": "New lead: Ann Lee",
        "body": "Name: Ann Lee\nPhone: (212) 555-0101\n",
    }


async def test_the_same_mail_reads_the_same_as_through_sendgrid(callbacks: Callbacks) -> None:
    # given the same lead mail, once through each provider's inbound route
    sendgrid = aiohttp.FormData()
    for name, value in {
        "to": "Leads-7f3kq@intake.example.com",
        "from": "Zillow <leads@zillow.example>",
        "subject": "New lead: Ann Lee",
        "text": "Name: Ann Lee\nPhone: (212) 555-0101\n",
        "headers": "Message-ID: <abc@mail.zillow.example>",
    }.items():
        sendgrid.add_field(name, value)
    url = f"{callbacks.url}/sendgrid/inbound?token=inbound-token"
    async with callbacks.session.post(url, data=sendgrid) as r:
        assert r.status == 200
    assert await callbacks.post_mail(forwarded()) == 200
    # then the engine is handed the same fact, under each provider's id
    through_sendgrid, through_mailgun = callbacks.sink.events()
    assert through_sendgrid.data == through_mailgun.data
    assert through_sendgrid.id == "sendgrid-inbound:abc@mail.zillow.example"
    assert through_mailgun.id == "mailgun-inbound:abc@mail.zillow.example"


async def test_an_html_only_mail_goes_as_html_for_the_lead_parser(callbacks: Callbacks) -> None:
    html_only = forwarded(**{"body-plain": "", "stripped-text": ""})
    html_only["body-html"] = "<p>Name: Ann Lee<br>Phone: 212-555-0101</p>"
    assert await callbacks.post_mail(html_only) == 200
    body = callbacks.sink.events()[0].data["body"]
    assert body == "<p>Name: Ann Lee<br>Phone: 212-555-0101</p>"
    lead = parse_lead_email(subject="x", body=body, sender=None)
    assert isinstance(lead, ParsedLead)
    assert (lead.first_name, lead.phone) == ("Ann", "+12125550101")


async def test_a_mail_without_message_id_gets_a_digest_id_stable_across_retries(
    callbacks: Callbacks,
) -> None:
    # given Mailgun posting the same mail twice (a retry), each signed afresh
    first = forwarded(**{"message-headers": "[]"})
    again = forwarded(**{"message-headers": "[]"})
    assert first["token"] != again["token"]
    assert await callbacks.post_mail(first) == 200
    assert await callbacks.post_mail(again) == 200
    # then both carry one id, so the engine sees one lead
    one, other = callbacks.sink.events()
    assert one.id == other.id
    assert one.id.startswith("mailgun-inbound:")


@pytest.mark.parametrize("signature", [forged, tampered, stale, unsigned])
async def test_a_forward_that_fails_the_signature_check_is_refused(
    callbacks: Callbacks, signature: Any
) -> None:
    assert await callbacks.post_mail(forwarded(**signature())) == 403
    assert callbacks.sink.published == []


async def test_a_forward_without_a_recipient_is_a_bad_request(callbacks: Callbacks) -> None:
    assert await callbacks.post_mail(forwarded(recipient="")) == 400
    assert callbacks.sink.published == []


async def test_a_captured_signature_sent_again_with_another_body_is_refused(
    callbacks: Callbacks,
) -> None:
    # given one signed delivery event of a mail in the ledger, taken
    await given_email_in_ledger(callbacks.ledger, "sent")
    signature = signed()
    assert await callbacks.post_event(event_body(signature=signature)) == 200
    # when someone posts that signature again, with a body of their own, to either route
    forged_event = event_body("failed", signature=signature, id="ev-forged", severity="permanent")
    forged_lead = forwarded(**signature)
    # then both are refused, and only the first event was published
    assert await callbacks.post_event(forged_event) == 403
    assert await callbacks.post_mail(forged_lead) == 403
    assert types_of(callbacks.sink.events()) == ["effect.status_changed"]


async def test_an_event_for_a_mail_this_ledger_never_had_is_passed_over(
    callbacks: Callbacks,
) -> None:
    # given a signed event naming an effect of another deployment sharing the webhook
    assert await callbacks.post_event(event_body(signature=signed())) == 200
    # then nothing is published: it would name no contact
    assert callbacks.sink.events() == []


async def test_a_token_is_forgotten_once_its_timestamp_could_no_longer_pass() -> None:
    ledger = InMemoryLedger()
    assert await ledger.first_use("mailgun:t", T0, T0 + timedelta(minutes=30)) is True
    assert await ledger.first_use("mailgun:t", T0 + timedelta(minutes=29), T0) is False
    later = T0 + timedelta(minutes=31)
    assert await ledger.first_use("mailgun:t", later, later + timedelta(minutes=30)) is True


@pytest.mark.parametrize("word", ["unsubscribed", "complained"])
async def test_an_unsubscribe_or_complaint_opts_the_contact_out_of_email(
    callbacks: Callbacks, word: str
) -> None:
    await given_email_in_ledger(callbacks.ledger, "sent")
    assert await callbacks.post_event(event_body(word)) == 200
    [opted] = callbacks.sink.events("contact.opted_out")
    assert (opted.subject, opted.data["channel"]) == ("c-1", "email")


async def test_a_forward_that_fails_after_its_check_can_be_posted_again() -> None:
    # given a publisher that fails once (the broker away), as Mailgun's first try meets it
    app = web.Application()
    server = LoopbackServer(app)
    sink = InMemorySink()
    failures = [RuntimeError("broker away")]

    async def publish(topic: str, event: Any) -> None:
        if failures:
            raise failures.pop()
        await sink(topic, event)

    handlers = InboundHandlers(
        ledger=InMemoryLedger(),
        publish=publish,
        clock=Clock(),
        public_base_url="http://127.0.0.1",
        twilio_auth_token="unused",
        mailgun_signing_key=SIGNING_KEY,
    )
    add_inbound_routes(app, handlers)
    mail = forwarded()
    async with server, aiohttp.ClientSession() as session:
        callbacks = Callbacks(server.url, sink, InMemoryLedger(), session)
        # when the first post fails and Mailgun posts the very same request again
        assert await callbacks.post_mail(mail) == 500
        assert await callbacks.post_mail(mail) == 200
        # then the retry is taken, not refused as a replay, and the lead is published once
        assert types_of(sink.events()) == ["lead.email_received"]
        # and a third post of it is a replay
        assert await callbacks.post_mail(mail) == 403


async def test_a_lead_mail_too_large_for_a_record_is_cut_not_lost(callbacks: Callbacks) -> None:
    # (the server takes forms of up to 25 MB; this test's of 1 MB: the cut is what counts)
    huge = "Name: Ann Lee\nPhone: (212) 555-0101\n" + "> quoted thread\n" * 15_000
    assert await callbacks.post_mail(forwarded(**{"body-plain": huge})) == 200
    [lead] = callbacks.sink.events()
    assert lead.data["body"].startswith("Name: Ann Lee")
    assert len(lead.data["body"]) == 200_000


@pytest.mark.parametrize("filler", ["\x01", '"', "\U0001f600"])
def test_a_lead_of_any_characters_fits_a_kafka_record(filler: str) -> None:
    # the worst cases for JSON: a control character (six bytes), a quote (two), an emoji (four)
    lead = lead_email_received(
        "mailgun",
        to="leads@in.example.com",
        sender=filler * 5_000,
        subject=filler * 5_000,
        body="Name: Ann\n" + filler * 300_000,
        headers=[("Message-Id", "<k@mail.example>")],
        at=T0,
    )
    assert len(lead.encode()) < 1_000_000
    assert lead.data["body"].startswith("Name: Ann\n")


def test_a_lead_with_nul_in_its_message_id_or_address_still_decodes_as_an_input() -> None:
    # the engine refuses NUL anywhere: a forged Message-ID must not cost the lead
    lead = lead_email_received(
        "mailgun",
        to="leads\x00@in.example.com",
        sender="ann@example.com",
        subject="Lead",
        body="Name: Ann\nPhone: (212) 555-0101",
        headers=[("Message-Id", "<k\x00@mail.example>")],
        at=T0,
    )
    decoded = decode_event(lead.encode(), as_input=True)
    assert decoded.id == "mailgun-inbound:k @mail.example"
    assert decoded.data["to"] == "leads @in.example.com"


async def test_a_signed_token_holding_a_nul_is_refused(callbacks: Callbacks) -> None:
    # given a signature made over a token with a NUL (the ledger keeps each token, and
    # PostgreSQL's text cannot hold one: the lookup answered 500)
    timestamp, token = str(int(T0.timestamp())), "tok\x00en"
    signature = {"timestamp": timestamp, "token": token}
    signature["signature"] = sign(SIGNING_KEY, timestamp, token)
    # then the event is refused, and nothing published
    assert await callbacks.post_event(event_body(signature=signature)) == 403
    assert callbacks.sink.events() == []
