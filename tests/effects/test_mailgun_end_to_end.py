"""Mailgun end to end: a replay's e-mail steps carried out by `dripstream effects` through the
fake Mailgun, and an e-mail in doubt settled by Mailgun's signed event."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from effects.fakes import mailgun_server
from effects.fakes._server import LoopbackServer
from effects.fakes.mailgun_server import FakeMailgunServer
from effects.fakes.senders import FakeSenders
from effects.fakes.sendgrid_server import FakeSendGridServer
from effects.fakes.twilio_server import FakeTwilioServer
from effects.fakes.webhook_receiver import FakeWebhookReceiver
from effects.inbound import InboundHandlers, add_inbound_routes
from effects.ledger_memory import InMemoryLedger
from effects.mailgun import MailgunEmailSender
from effects.ports import Delivered, EffectId, EmailMessage
from effects.processor import EffectProcessor
from effects.publish import InMemorySink
from tests.effects.helpers import Clock, command, types_of
from tests.effects.test_filerun import (
    CONTACTS,
    dripstream_effects,
    provider_environment,
    replay_out,
)


def callbacks_app(ledger: InMemoryLedger, sink: InMemorySink, clock: Clock) -> web.Application:
    """The callback server's routes, taking the fake Mailgun's signing key."""
    handlers = InboundHandlers(
        ledger=ledger,
        publish=sink,
        clock=clock,
        public_base_url="http://127.0.0.1",
        twilio_auth_token="unused",
        mailgun_signing_key=mailgun_server.SIGNING_KEY,
    )
    return add_inbound_routes(web.Application(), handlers)


def mailgun_sender(url: str, clock: Clock, *, timeout: float) -> MailgunEmailSender:
    return MailgunEmailSender(
        api_key=mailgun_server.API_KEY,
        domain=mailgun_server.DOMAIN,
        api_base=url,
        default_from="hello@mg.example.com",
        postal_address="1 Main St",
        unsubscribe_link=False,
        timeout=timeout,
        clock=clock,
    )


@pytest.mark.timeout(180)
async def test_a_replays_emails_go_out_through_mailgun_once_each(
    tmp_path: Path,
    twilio: FakeTwilioServer,
    sendgrid: FakeSendGridServer,
    mailgun: FakeMailgunServer,
    receiver: FakeWebhookReceiver,
) -> None:
    # given a replay's output with an e-mail step per contact, and both providers' keys
    # set with Mailgun chosen to send
    out = replay_out(tmp_path, receiver.url)
    environment = provider_environment(twilio, sendgrid) | {
        "EFFECTS_EMAIL_PROVIDER": "mailgun",
        "MAILGUN_API_BASE": mailgun.url,
        "MAILGUN_API_KEY": mailgun_server.API_KEY,
        "MAILGUN_DOMAIN": mailgun_server.DOMAIN,
        "EFFECTS_EMAIL_FROM": "hello@mg.example.com",
    }
    # when `dripstream effects` carries it out
    outcomes = tmp_path / "outcomes.jsonl"
    status, stderr = await dripstream_effects(out, outcomes, environment)
    # then every e-mail reached Mailgun once, and SendGrid nothing
    assert status == 0, stderr
    assert sorted(mailgun.accepted_by_effect.values()) == [1] * CONTACTS
    assert sendgrid.mails == []
    first = mailgun.accepted()[0]
    assert first.value("from") == "hello@mg.example.com"
    assert first.value("subject") == "Hello"
    # and each has its effect.sent naming Mailgun and the message it queued
    written = [orjson.loads(line) for line in outcomes.read_bytes().splitlines()]
    emails = [o for o in written if o["data"]["effect_type"] == "email.send"]
    assert Counter(o["type"] for o in emails) == {"effect.sent": CONTACTS}
    queued = {m.effect_id: m.message_id for m in mailgun.accepted()}
    assert {o["data"]["effect_id"]: o["data"]["provider_id"] for o in emails} == queued
    assert {o["data"]["provider"] for o in emails} == {"mailgun"}


async def test_an_email_in_doubt_is_settled_by_mailguns_signed_event() -> None:
    # given a Mailgun slower than the sender waits, and the callback server on one ledger
    clock = Clock()
    ledger = InMemoryLedger()
    sink = InMemorySink()
    app = callbacks_app(ledger, sink, clock)
    async with (
        FakeMailgunServer(latency=1.0) as slow,
        LoopbackServer(app) as callbacks,
        aiohttp.ClientSession() as session,
    ):
        sender = mailgun_sender(slow.url, clock, timeout=0.2)
        processor = EffectProcessor(
            ledger=ledger, senders=replace(FakeSenders().senders(), email=sender), clock=clock
        )
        email = command("email.send", to="ann@example.com", subject="Hi", body="x")
        # when the send times out: unknown, as it may have been queued
        assert types_of(await processor.handle(email)) == ["effect.unknown"]
        # and Mailgun then reports the message it did queue as delivered
        [queued] = slow.accepted()
        event = slow.event_for(queued, "delivered", clock())
        async with session.post(f"{callbacks.url}/mailgun/events", json=event) as answer:
            assert answer.status == 200
        # then the effect is sent, with Mailgun's id, and a redelivery says so without
        # sending again
        assert types_of(sink.events()) == ["effect.status_changed", "effect.sent"]
        assert sink.events()[1].data["provider_id"] == queued.message_id
        [again] = await processor.handle(email)
        assert (again.type, again.data["provider_id"]) == ("effect.sent", queued.message_id)
        assert len(slow.messages) == 1
        entry = await ledger.get(EffectId(str(email.data["effect_id"])))
        assert entry is not None
        assert entry.status == "sent"
        await sender.close()


async def test_a_forged_event_does_not_settle_an_email_in_doubt() -> None:
    # given a message the fake Mailgun queued, and its event signed with another key (the
    # other refusals are in test_mailgun_callbacks)
    clock = Clock()
    ledger = InMemoryLedger()
    sink = InMemorySink()
    app = callbacks_app(ledger, sink, clock)
    async with (
        FakeMailgunServer() as fake,
        LoopbackServer(app) as callbacks,
        aiohttp.ClientSession() as session,
    ):
        sender = mailgun_sender(fake.url, clock, timeout=5.0)
        email = EmailMessage(EffectId("fx:1"), ("ann@example.com",), "Hi", "x", None, False)
        assert isinstance(await sender.send_email(email), Delivered)
        await sender.close()
        [queued] = fake.accepted()
        forged = fake.event_for(queued, "delivered", clock(), signing_key="guess")
        # when it is posted, then it is refused and nothing is said
        async with session.post(f"{callbacks.url}/mailgun/events", json=forged) as answer:
            assert answer.status == 403
        assert sink.published == []
