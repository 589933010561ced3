"""Provider callbacks: signatures checked, events published, 403 and silence otherwise."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from aggregates.intake import ParsedLead, parse_lead_email
from effects.fakes._server import LoopbackServer
from effects.inbound import InboundHandlers, add_inbound_routes
from effects.lead_mail import message_key
from effects.ledger_memory import InMemoryLedger
from effects.ports import EffectId, named_effect
from effects.publish import InMemorySink
from schemas.envelope import format_time
from schemas.validation import decode_event, encode_event
from tests.effects.helpers import LINE, T0, Clock, command, sms, types_of
from tests.engine.helpers import decide, definitions, event, sequence

TOKEN = "twilio-auth-token"
INBOUND_TOKEN = "parse-secret"
FX = "fx:welcome:c-1:1:s1:1"


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    text: str

    def twiml(self) -> ET.Element:
        assert self.content_type == "text/xml"
        return ET.fromstring(self.text)


@dataclass
class Inbound:
    url: str
    sink: InMemorySink
    ledger: InMemoryLedger
    signing_key: ec.EllipticCurvePrivateKey
    session: aiohttp.ClientSession

    async def twilio(
        self, path: str, params: dict[str, str], *, signature: str | None = None
    ) -> Answer:
        """POST as Twilio does, signed with the auth token unless told otherwise."""
        url = self.url + path
        if signature is None:
            signature = RequestValidator(TOKEN).compute_signature(url, params)
        headers = {"X-Twilio-Signature": signature}
        async with self.session.post(url, data=params, headers=headers) as response:
            return Answer(response.status, response.content_type, await response.text())

    async def sendgrid_events(
        self,
        body: bytes,
        *,
        key: ec.EllipticCurvePrivateKey | None = None,
        signed_at: datetime = T0,
    ) -> int:
        """POST as SendGrid does, signed at `signed_at` (the server's clock reads T0)."""
        timestamp = str(int(signed_at.timestamp()))
        signature = (key or self.signing_key).sign(
            timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
        headers = {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }
        async with self.session.post(
            self.url + "/sendgrid/events", data=body, headers=headers
        ) as r:
            return r.status


@pytest.fixture
async def inbound() -> AsyncIterator[Inbound]:
    signing_key = ec.generate_private_key(ec.SECP256R1())
    public_der = signing_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    app = web.Application()
    server = LoopbackServer(app)
    server.bind()
    sink = InMemorySink()
    ledger = InMemoryLedger()
    handlers = InboundHandlers(
        ledger=ledger,
        publish=sink,
        clock=Clock(),
        public_base_url=server.url,
        twilio_auth_token=TOKEN,
        sendgrid_public_key=base64.b64encode(public_der).decode(),
        sendgrid_inbound_token=INBOUND_TOKEN,
    )
    add_inbound_routes(app, handlers)
    async with server, aiohttp.ClientSession() as session:
        yield Inbound(server.url, sink, ledger, signing_key, session)
    # and whatever was published passes the project's validation
    for _, published in sink.published:
        decode_event(published.encode())


async def given_in_ledger(inbound: Inbound, event: object, status: str) -> None:
    ledger = inbound.ledger
    effect_id = EffectId(event.data["effect_id"])  # type: ignore[attr-defined]
    await ledger.claim(effect_id, event, T0)  # type: ignore[arg-type]
    await ledger.begin(effect_id, T0)
    if status == "sent":
        await ledger.record_sent(effect_id, "twilio", "SM1", T0)
    elif status == "unknown":
        await ledger.record_unknown(effect_id, "read timeout", T0)


async def test_a_signed_status_callback_becomes_effect_status_changed(inbound: Inbound) -> None:
    await given_in_ledger(inbound, sms(), "sent")
    response = await inbound.twilio(
        f"/twilio/status?effect_id={FX}",
        {"MessageSid": "SM1", "MessageStatus": "delivered", "AccountSid": "AC1"},
    )
    assert response.status == 204
    [(topic, event)] = inbound.sink.published
    assert topic == "outcomes"
    assert event.type == "effect.status_changed"
    assert event.id == f"{FX}/status/SM1/delivered"
    assert event.subject == "c-1"
    assert event.data["status"] == "delivered"
    assert event.data["provider_id"] == "SM1"
    assert event.data["sequence_id"] == "welcome"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (f"/twilio/status?effect_id={FX}", {"MessageSid": "SM1", "MessageStatus": "delivered"}),
        ("/twilio/sms", {"From": "+12125550101", "To": LINE, "Body": "STOP", "MessageSid": "SM2"}),
        (f"/twilio/gather?effect_id={FX}&mode=progressive", {"Digits": "9", "CallSid": "CA1"}),
    ],
)
async def test_a_bad_twilio_signature_is_refused_and_nothing_is_published(
    inbound: Inbound, path: str, params: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    await given_in_ledger(inbound, sms(), "unknown")
    forged = RequestValidator("not-the-token").compute_signature(inbound.url + path, params)
    for signature in (forged, ""):
        response = await inbound.twilio(path, params, signature=signature)
        assert response.status == 403
    assert inbound.sink.published == []
    assert "bad X-Twilio-Signature" in caplog.text
    entry = await inbound.ledger.get(EffectId(FX))
    assert entry is not None
    assert entry.status == "unknown"  # not reconciled by a forgery


async def test_a_signature_for_other_parameters_is_refused(inbound: Inbound) -> None:
    path = f"/twilio/status?effect_id={FX}"
    signed_for = RequestValidator(TOKEN).compute_signature(
        inbound.url + path, {"MessageSid": "SM1", "MessageStatus": "queued"}
    )
    response = await inbound.twilio(
        path, {"MessageSid": "SM1", "MessageStatus": "delivered"}, signature=signed_for
    )
    assert response.status == 403
    assert inbound.sink.published == []


async def test_a_status_callback_reconciles_an_unknown_effect(inbound: Inbound) -> None:
    await given_in_ledger(inbound, sms(), "unknown")
    await inbound.twilio(
        f"/twilio/status?effect_id={FX}", {"MessageSid": "SM7", "MessageStatus": "sent"}
    )
    assert types_of(inbound.sink.events()) == ["effect.status_changed", "effect.sent"]
    sent = inbound.sink.events("effect.sent")[0]
    assert sent.id == f"{FX}/sent"
    assert sent.data["provider_id"] == "SM7"
    assert "undelivered" not in sent.data  # one recipient: its status says it all
    entry = await inbound.ledger.get(EffectId(FX))
    assert entry is not None
    assert (entry.status, entry.provider_id) == ("sent", "SM7")


async def test_one_members_status_does_not_claim_a_ring_group_was_all_reached(
    inbound: Inbound,
) -> None:
    # given a text to a ring group of two, in doubt (its processor died between members)
    notice = command(
        "notify.sms",
        to="rg-sales",
        body="New lead",
        from_number=LINE,
        ring_group_numbers=["+12125550007", "+12125550008"],
    )
    await given_in_ledger(inbound, notice, "unknown")
    # when the first member's message reports its status
    await inbound.twilio(
        f"/twilio/status?effect_id={FX}", {"MessageSid": "SM8", "MessageStatus": "sent"}
    )
    # then the effect is sent, and the outcome says the other member is in doubt
    sent = inbound.sink.events("effect.sent")[0]
    assert sent.data["undelivered"].startswith("in doubt for the other members of 2")


async def test_an_inbound_sms_becomes_message_received_for_the_contact(inbound: Inbound) -> None:
    await given_in_ledger(inbound, sms(to="+12125550101"), "sent")
    response = await inbound.twilio(
        "/twilio/sms",
        {"From": "+12125550101", "To": LINE, "Body": "Yes please", "MessageSid": "SM99"},
    )
    assert response.status == 200
    assert response.content_type == "text/xml"
    [(topic, event)] = inbound.sink.published
    assert topic == "messages"
    assert event.type == "message.received"
    assert event.id == "twilio:SM99"
    assert event.subject == "c-1"
    assert event.data == {
        "message_id": "SM99",
        "contact_id": "c-1",
        "channel": "sms",
        "body": "Yes please",
        "from": "+12125550101",
        "to": LINE,
    }


async def test_an_inbound_sms_holding_nul_is_passed_on_decodable(inbound: Inbound) -> None:
    # given a text whose body holds U+0000 (the engine refuses NUL: PostgreSQL cannot hold it)
    await given_in_ledger(inbound, sms(to="+12125550101"), "sent")
    response = await inbound.twilio(
        "/twilio/sms",
        {"From": "+12125550101", "To": LINE, "Body": "STOP\x00", "MessageSid": "SM98"},
    )
    # then it is still signed as sent, and published with U+FFFD in its place
    assert response.status == 200
    [(_, event)] = inbound.sink.published
    assert event.data["body"] == "STOP\ufffd"
    assert decode_event(encode_event(event), as_input=True).data["body"] == "STOP\ufffd"


def progressive_dial() -> object:
    return command(
        "call.dial",
        to="+12125550101",
        mode="progressive",
        ring_group="rg-sales",
        ring_group_numbers=["+12125550007", "+12125550008"],
        message="Press 1 to talk, 2 for a callback, 9 to opt out.",
        repeat_message=False,
        from_number=LINE,
    )


async def gather(
    inbound: Inbound, digit: str, mode: str = "progressive", call: str = "CA1"
) -> ET.Element:
    answer = await inbound.twilio(
        f"/twilio/gather?effect_id={FX}&mode={mode}", {"Digits": digit, "CallSid": call}
    )
    assert answer.status == 200
    return answer.twiml()


async def test_key_1_connects_the_contact_to_the_ring_group(inbound: Inbound) -> None:
    await given_in_ledger(inbound, progressive_dial(), "sent")
    response = await gather(inbound, "1")
    numbers = [n.text for n in response.iter("Number")]
    assert numbers == ["+12125550007", "+12125550008"]
    dial = response.find("Dial")
    assert dial is not None
    assert dial.get("callerId") == LINE
    [(topic, pressed)] = inbound.sink.published
    assert topic == "outcomes"
    assert pressed.type == "dialer.key_pressed"
    assert pressed.data["digit"] == "1"
    assert pressed.data["action"] == "connect"
    assert pressed.data["contact_id"] == "c-1"
    assert pressed.data["effect_id"] == FX


async def test_key_2_asks_for_a_callback(inbound: Inbound) -> None:
    await given_in_ledger(inbound, progressive_dial(), "sent")
    response = await gather(inbound, "2")
    assert response.find("Hangup") is not None
    [pressed] = inbound.sink.events()
    assert pressed.data["action"] == "callback"


async def test_key_9_opts_the_contact_out_of_everything(inbound: Inbound) -> None:
    await given_in_ledger(inbound, progressive_dial(), "sent")
    response = await gather(inbound, "9")
    assert response.find("Hangup") is not None
    assert inbound.sink.topics() == ["outcomes", "contacts", "contacts"]
    pressed, opted_out, dnc = inbound.sink.events()
    assert pressed.data["action"] == "opt_out"
    assert opted_out.type == "contact.opted_out"
    assert opted_out.data["channel"] == "all"
    assert opted_out.subject == "c-1"
    # an opt-out covers messages (CONTRACT.md §2); the calls stop with DNC
    assert (dnc.type, dnc.subject, dnc.data["dnc"]) == ("contact.dnc_changed", "c-1", True)
    decode_event(dnc.encode())  # an input the engine reads


async def test_another_key_plays_the_prompt_again(inbound: Inbound) -> None:
    await given_in_ledger(inbound, progressive_dial(), "sent")
    response = await gather(inbound, "5")
    say = response.find("Gather/Say")
    assert say is not None
    assert say.text == "Press 1 to talk, 2 for a callback, 9 to opt out."
    assert inbound.sink.published == []


def preview_dial(agents: list[str], *, repeat_message: bool, **data: Any) -> object:
    return command(
        "call.dial",
        to="+12125550101",
        mode="preview",
        ring_group_numbers=agents,
        message="New lead",
        repeat_message=repeat_message,
        from_number=LINE,
        **data,
    )


async def test_in_preview_the_first_agent_to_press_a_key_gets_the_contact(inbound: Inbound) -> None:
    preview = preview_dial(
        ["+12125550007", "+12125550008"], repeat_message=True, ring_group="rg-sales"
    )
    await given_in_ledger(inbound, preview, "sent")
    first = await gather(inbound, "4", mode="preview", call="CA-agent-1")
    second = await gather(inbound, "1", mode="preview", call="CA-agent-2")
    assert [n.text for n in first.iter("Number")] == ["+12125550101"]
    assert second.find("Dial") is None
    assert second.find("Hangup") is not None
    [pressed] = inbound.sink.events()
    assert pressed.data["action"] == "connect"
    assert pressed.data["call_sid"] == "CA-agent-1"


@pytest.mark.parametrize(("closes", "connected"), [(-60, False), (0, False), (60, True)])
async def test_in_preview_a_key_pressed_after_the_contacts_window_closed_dials_no_one(
    inbound: Inbound, closes: int, connected: bool
) -> None:
    # given a preview call whose agent stayed on the line (a repeated message) until the
    # contact's quiet-hours window closed (or not yet)
    closing = format_time(T0 + timedelta(seconds=closes))
    preview = preview_dial(["+12125550007"], repeat_message=True, send_before=closing)
    await given_in_ledger(inbound, preview, "sent")
    # when the agent presses 1 at T0
    answer = await gather(inbound, "1", mode="preview", call="CA-agent-1")
    # then the contact is dialed only while the window is open
    assert [n.text for n in answer.iter("Number")] == (["+12125550101"] if connected else [])
    assert (answer.find("Hangup") is None) == connected
    assert len(inbound.sink.events()) == (1 if connected else 0)


async def test_in_preview_without_repeat_the_agent_is_connected_without_a_key(
    inbound: Inbound,
) -> None:
    preview = preview_dial(["+12125550007"], repeat_message=False)
    await given_in_ledger(inbound, preview, "sent")
    answer = await inbound.twilio(
        f"/twilio/gather?effect_id={FX}&mode=preview", {"CallSid": "CA-agent-1"}
    )
    assert [n.text for n in answer.twiml().iter("Number")] == ["+12125550101"]
    assert inbound.sink.published == []  # no key was pressed


async def test_signed_sendgrid_events_become_status_changes(inbound: Inbound) -> None:
    mail = command("email.send", to="ann@example.com", subject="Hi", body="x")
    await given_in_ledger(inbound, mail, "unknown")
    body = orjson.dumps(
        [
            {
                "email": "ann@example.com",
                "event": "delivered",
                "sg_event_id": "ev-1",
                "sg_message_id": "abc123.filter0001.1.0",
                "effect_id": FX,
                "timestamp": 1782993600,
            },
            {"email": "x@example.com", "event": "open", "sg_event_id": "ev-2"},  # not ours
        ]
    )
    assert await inbound.sendgrid_events(body) == 204
    assert types_of(inbound.sink.events()) == ["effect.status_changed", "effect.sent"]
    changed = inbound.sink.events()[0]
    assert changed.id == f"{FX}/status/ev-1/delivered"
    assert changed.data["provider"] == "sendgrid"
    assert changed.data["provider_id"] == "abc123"
    entry = await inbound.ledger.get(EffectId(FX))
    assert entry is not None
    assert entry.status == "sent"


async def test_sendgrid_events_signed_by_another_key_are_refused(inbound: Inbound) -> None:
    body = orjson.dumps([{"event": "delivered", "effect_id": FX, "sg_event_id": "ev-1"}])
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert await inbound.sendgrid_events(body, key=stranger) == 403
    async with inbound.session.post(inbound.url + "/sendgrid/events", data=body) as response:
        assert response.status == 403
    assert inbound.sink.published == []


def parse_form(**fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    return form


HTML_LEAD = (
    "<table><tr><td>Name</td><td>Maya Ortiz</td></tr>"
    "<tr><td>Phone</td><td>(720) 555-0142</td></tr>"
    '<tr><td>Email</td><td><a href="mailto:maya@example.com">maya@example.com</a></td></tr>'
    "</table>"
)


async def test_an_inbound_parse_mail_becomes_lead_email_received(inbound: Inbound) -> None:
    form = parse_form(
        to='"Leads" <Leads-7f3kq@intake.example.com>',
        **{"from": "Zillow <leads@zillow.example>"},
        subject="New lead: Ann Lee",
        text="Name: Ann Lee\nPhone: (212) 555-0101\n",
        html="<p>Name: Ann Lee</p>",
        headers="Message-ID: <abc@mail.zillow.example>\nSubject: New lead: Ann Lee",
        envelope='{"to":["leads-7f3kq@intake.example.com"],"from":"bounce@zillow.example"}',
    )
    url = f"{inbound.url}/sendgrid/inbound?token={INBOUND_TOKEN}"
    async with inbound.session.post(url, data=form) as response:
        assert response.status == 200
    [(topic, event)] = inbound.sink.published
    assert topic == "intake"
    assert event.type == "lead.email_received"
    assert event.id == "sendgrid-inbound:abc@mail.zillow.example"
    assert event.data == {
        "to": "leads-7f3kq@intake.example.com",
        "from": "Zillow <leads@zillow.example>",
        "subject": "New lead: Ann Lee",
        "body": "Name: Ann Lee\nPhone: (212) 555-0101\n",
    }


async def test_an_html_only_mail_goes_as_html_and_its_table_is_read(inbound: Inbound) -> None:
    form = parse_form(to="leads@intake.example.com", subject="x", html=HTML_LEAD)
    url = f"{inbound.url}/sendgrid/inbound?token={INBOUND_TOKEN}"
    async with inbound.session.post(url, data=form) as response:
        assert response.status == 200
    body = inbound.sink.events()[0].data["body"]
    assert body == HTML_LEAD
    # flattened to text, the cells ran together ("NameMaya Ortiz") and no field was read
    assert parse_lead_email(subject="x", body=body, sender="Zillow <leads@zillow.example>") == (
        ParsedLead(
            first_name="Maya", last_name="Ortiz", phone="+17205550142", email="maya@example.com"
        )
    )


async def test_inbound_parse_without_the_token_is_refused(inbound: Inbound) -> None:
    form = parse_form(to="leads@intake.example.com", subject="x", text="y")
    async with inbound.session.post(f"{inbound.url}/sendgrid/inbound?token=guess", data=form) as r:
        assert r.status == 403
    assert inbound.sink.published == []


async def test_what_effects_learns_is_decided_by_the_engine_not_passed_over(
    inbound: Inbound,
) -> None:
    # given c-1 enrolled, its next text a day away, and a STOP text and a key 9 that reach
    # `effects`' callbacks (the text and the call each an effect of its own)
    text = sms(to="+12125550101", effect_id="fx:welcome:c-1:1:s0:1")
    await given_in_ledger(inbound, text, "sent")
    await inbound.twilio(
        "/twilio/sms", {"From": "+12125550101", "To": LINE, "Body": "STOP", "MessageSid": "SM7"}
    )
    await given_in_ledger(inbound, progressive_dial(), "sent")
    await gather(inbound, "9")
    learnt = [orjson.loads(event.encode()) for event in inbound.sink.events()]
    learnt = [e for e in learnt if e["type"] in ("message.received", "contact.dnc_changed")]
    assert len(learnt) == 2
    later = {"id": "s1", "type": "send_sms", "text": "x", "delay": {"kind": "default",
             "amount": 1, "unit": "days"}}  # fmt: skip
    watch = sequence(
        id="dnc-watch", triggers=[{"type": "dnc_changed", "on": "added"}], remove_on_opt_out=False
    )
    earlier = "2027-07-02T13:00:00Z"  # before the callbacks' clock (T0)
    given = [
        event("contact.created", earlier, contact_id="c-1", phone="+12125550101"),
        event("contact.tag_added", earlier, contact_id="c-1", tag="hot"),
    ]
    # when a worker (or a replay of a topic dump) reads them as input
    out = decide(
        definitions(sequence(steps=[later]), watch),
        given + learnt,
    )
    # then the STOP opts c-1 out and removes them, and the DNC sets off its trigger
    assert out.one("contact.opted_out")["data"]["contact_id"] == "c-1"
    assert out.one("enrollment.disenrolled")["data"]["reason"] == "opted_out"
    assert out.one("enrollment.enrolled", sequence_id="dnc-watch")["data"]["via"] == "dnc_changed"
    assert out.of("sms.send") == []


async def call_ends(inbound: Inbound, status: str, call: str = "CA1", **more: str) -> None:
    answer = await inbound.twilio(
        f"/twilio/status?effect_id={FX}", {"CallSid": call, "CallStatus": status, **more}
    )
    assert answer.status == 204


async def test_a_progressive_call_the_contact_took_ends_as_an_answered_call_completed(
    inbound: Inbound,
) -> None:
    # given a progressive call on which the contact pressed 1 and spoke for two minutes
    await given_in_ledger(inbound, progressive_dial(), "sent")
    await gather(inbound, "1")
    # when Twilio reports the end of the call
    await call_ends(inbound, "completed", CallDuration="120")
    # then the engine is told: an answered outbound call with the contact, not placed by hand
    [(topic, ended)] = [(t, e) for t, e in inbound.sink.published if e.type == "call.completed"]
    assert (topic, ended.subject, ended.id) == ("calls", "c-1", f"{FX}/call/CA1")
    assert {k: ended.data[k] for k in ("call_id", "contact_id", "direction", "answered")} == {
        "call_id": "CA1",
        "contact_id": "c-1",
        "direction": "outbound",
        "answered": True,
    }
    assert (ended.data["duration"], ended.data["manual"]) == (120, False)


@pytest.mark.parametrize("status", ["completed", "no-answer", "busy"])
async def test_a_progressive_call_nobody_took_ends_unanswered(
    inbound: Inbound, status: str
) -> None:
    # given a call that a machine took (no key pressed), or that nobody took
    await given_in_ledger(inbound, progressive_dial(), "sent")
    await call_ends(inbound, status)
    [ended] = inbound.sink.events("call.completed")
    assert ended.data["answered"] is False


async def test_a_voicemail_drop_is_answered_only_when_a_person_picked_up(inbound: Inbound) -> None:
    drop = command("voicemail.drop", to="+12125550101", recording_url="https://e.x/v.mp3",
                   from_number=LINE)  # fmt: skip
    await given_in_ledger(inbound, drop, "sent")
    await call_ends(inbound, "completed", call="CA1", AnsweredBy="machine_end_beep")
    await call_ends(inbound, "completed", call="CA2", AnsweredBy="human")
    assert [e.data["answered"] for e in inbound.sink.events("call.completed")] == [False, True]


async def test_a_preview_call_and_a_call_still_ringing_tell_the_engine_nothing(
    inbound: Inbound,
) -> None:
    preview = command(
        "call.dial",
        to="+12125550101",
        mode="preview",
        ring_group="rg-sales",
        ring_group_numbers=["+12125550007"],
        message="m",
        from_number=LINE,
    )
    await given_in_ledger(inbound, preview, "sent")
    await call_ends(inbound, "completed")
    await call_ends(inbound, "ringing")
    assert inbound.sink.events("call.completed") == []


async def test_an_answered_dialer_call_removes_the_contact_who_responded(inbound: Inbound) -> None:
    # given c-1 enrolled in a sequence that removes on response, and a dialer call they took
    await given_in_ledger(inbound, progressive_dial(), "sent")
    await gather(inbound, "1")
    await call_ends(inbound, "completed", CallDuration="45")
    [ended] = [orjson.loads(e.encode()) for e in inbound.sink.events("call.completed")]
    later = {"id": "s1", "type": "send_sms", "text": "x", "delay": {"kind": "default",
             "amount": 1, "unit": "days"}}  # fmt: skip
    earlier = "2027-07-02T13:00:00Z"  # before the callbacks' clock (T0)
    given = [
        event("contact.created", earlier, contact_id="c-1", phone="+12125550101"),
        event("contact.tag_added", earlier, contact_id="c-1", tag="hot"),
    ]
    # when the engine reads the call's end
    out = decide(definitions(sequence(steps=[later])), [*given, ended])
    assert out.rejected == []
    # then the contact is removed: they answered a call (the seed's "remove on response")
    assert out.one("enrollment.disenrolled")["data"]["reason"] == "responded"
    assert out.of("sms.send") == []


def sendgrid_event(event: str, n: int) -> dict[str, object]:
    return {
        "email": "ann@example.com",
        "event": event,
        "sg_event_id": f"ev-{n}",
        "sg_message_id": "abc123.filter0001.1.0",
        "effect_id": FX,
        "timestamp": 1782993600,
    }


async def test_an_unsubscribe_from_an_email_opts_the_contact_out_of_email(
    inbound: Inbound,
) -> None:
    # given an e-mail sent to c-1, then its unsubscribe link used and a spam report made
    mail = command("email.send", to="ann@example.com", subject="Hi", body="x")
    await given_in_ledger(inbound, mail, "sent")
    body = orjson.dumps([sendgrid_event("group_unsubscribe", 1), sendgrid_event("spamreport", 2)])
    assert await inbound.sendgrid_events(body) == 204
    # then the engine is told: an e-mail opt-out of c-1, on contacts, the same event twice
    opted = [(t, e) for t, e in inbound.sink.published if e.type == "contact.opted_out"]
    assert [(t, e.subject, e.data["channel"]) for t, e in opted] == [
        ("contacts", "c-1", "email"),
        ("contacts", "c-1", "email"),
    ]
    first, second = (e for _, e in opted)
    assert (first.id, first.data) == (second.id, second.data)  # a repeat the engine drops
    # and the engine, reading it, skips the next e-mail to c-1
    fact, again = orjson.loads(first.encode()), orjson.loads(second.encode())
    later = {"id": "s1", "type": "email_contact", "subject": "s", "body": "b",
             "delay": {"kind": "default", "amount": 1, "unit": "days"}}  # fmt: skip
    earlier = "2027-07-02T13:00:00Z"
    given = [
        event("contact.created", earlier, contact_id="c-1", email="ann@example.com"),
        event("contact.tag_added", earlier, contact_id="c-1", tag="hot"),
    ]
    seq = sequence(steps=[later], remove_on_opt_out=False)
    out = decide(definitions(seq), [*given, fact, again], until="2027-07-04T13:00:00Z")
    assert out.rejected == []
    assert out.of("email.send") == []
    assert out.one("step.skipped")["data"]["reason"] == "opted_out"


async def test_an_unsubscribe_from_a_users_notice_opts_no_contact_out(inbound: Inbound) -> None:
    notice = command("notify.email", to="u-7", body="x", user_emails=["sam@example.com"])
    await given_in_ledger(inbound, notice, "sent")
    assert await inbound.sendgrid_events(orjson.dumps([sendgrid_event("unsubscribe", 1)])) == 204
    assert inbound.sink.events("contact.opted_out") == []


async def test_an_html_mail_s_unseen_parts_do_not_push_its_fields_past_the_cut(
    inbound: Inbound,
) -> None:
    # given an HTML-only mail whose style sheet alone is longer than the body kept
    style = "<head><style>" + ".x{color:red}" * 20_000 + "</style></head>"
    image = '<img src="data:image/png;base64,' + "A" * 250_000 + '">'
    form = parse_form(
        to="leads@intake.example.com", subject="x", html=f"<html>{style}<body>{image}{HTML_LEAD}"
    )
    url = f"{inbound.url}/sendgrid/inbound?token={INBOUND_TOKEN}"
    async with inbound.session.post(url, data=form) as response:
        assert response.status == 200
    # then what is kept still holds the lead
    body = inbound.sink.events()[0].data["body"]
    assert len(style) > 200_000
    assert parse_lead_email(subject="x", body=body, sender=None) == ParsedLead(
        first_name="Maya", last_name="Ortiz", phone="+17205550142", email="maya@example.com"
    )


# --- what no one should be able to send (a callback security audit) -----------------------


@pytest.fixture
async def unconfigured() -> AsyncIterator[Inbound]:
    """The callback server with neither a Twilio auth token nor an Inbound Parse token."""
    app = web.Application()
    server = LoopbackServer(app)
    server.bind()
    sink, ledger = InMemorySink(), InMemoryLedger()
    handlers = InboundHandlers(
        ledger=ledger, publish=sink, clock=Clock(), public_base_url=server.url, twilio_auth_token=""
    )
    add_inbound_routes(app, handlers)
    async with server, aiohttp.ClientSession() as session:
        yield Inbound(server.url, sink, ledger, ec.generate_private_key(ec.SECP256R1()), session)


async def test_without_an_auth_token_no_twilio_callback_is_taken(unconfigured: Inbound) -> None:
    # signed with the empty key, as anyone could
    params = {"From": "+12125550101", "To": "+12125550000", "Body": "STOP", "MessageSid": "SM1"}
    url = unconfigured.url + "/twilio/sms"
    signature = RequestValidator("").compute_signature(url, params)
    answer = await unconfigured.twilio("/twilio/sms", params, signature=signature)
    assert answer.status == 403
    assert unconfigured.sink.published == []


async def test_without_a_token_inbound_parse_takes_no_mail(unconfigured: Inbound) -> None:
    form = parse_form(to="leads@intake.example.com", subject="x", text="Phone: 212-555-0101")
    async with unconfigured.session.post(f"{unconfigured.url}/sendgrid/inbound", data=form) as r:
        assert r.status == 403
    assert unconfigured.sink.published == []


async def test_a_mail_in_latin1_is_read_in_the_charset_inbound_parse_names(
    inbound: Inbound,
) -> None:
    form = aiohttp.FormData()
    form.add_field("to", "leads@intake.example.com")
    form.add_field("subject", "Solicitud")
    form.add_field("charsets", '{"to":"UTF-8","subject":"UTF-8","text":"iso-8859-1"}')
    # sent as bytes (here as a file part, which is read as its text all the same)
    latin1 = "Nombre: José Núñez\nTeléfono: 212-555-0101\n".encode("latin-1")
    form.add_field("text", latin1, filename="text", content_type="text/plain")
    url = f"{inbound.url}/sendgrid/inbound?token={INBOUND_TOKEN}"
    async with inbound.session.post(url, data=form) as response:
        assert response.status == 200
    [event] = inbound.sink.events()
    assert event.data["body"] == "Nombre: José Núñez\nTeléfono: 212-555-0101\n"


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/twilio/sms", "application/x-www-form-urlencoded", b"Body=\xff\xfe"),
        ("/twilio/sms", "application/x-www-form-urlencoded; charset=x-bogus", b"Body=hi"),
        ("/sendgrid/events", "application/json", b'[{"a":"\xff"}]'),
    ],
    ids=["bytes-not-utf8", "unknown-charset", "events-not-utf8"],
)
async def test_a_body_that_does_not_read_as_its_form_is_a_400_not_a_500(
    inbound: Inbound, path: str, content_type: str, body: bytes
) -> None:
    headers = {"Content-Type": content_type, "X-Twilio-Signature": "x"}
    async with inbound.session.post(inbound.url + path, data=body, headers=headers) as r:
        assert r.status == 400
    assert inbound.sink.published == []


async def test_a_file_posted_to_a_twilio_route_is_refused_not_a_crash(inbound: Inbound) -> None:
    form = aiohttp.FormData()
    form.add_field("Body", b"STOP", filename="stop.txt")
    headers = {"X-Twilio-Signature": "x"}
    async with inbound.session.post(f"{inbound.url}/twilio/sms", data=form, headers=headers) as r:
        assert r.status == 403
    assert inbound.sink.published == []


async def test_an_inbound_parse_post_over_the_bound_is_refused(
    inbound: Inbound, monkeypatch: pytest.MonkeyPatch
) -> None:
    # read part by part, the bound request.post() kept is kept by hand (here made small)
    monkeypatch.setattr("effects.callback_forms.CLIENT_MAX_SIZE", 1000)
    form = aiohttp.FormData()
    form.add_field("to", "leads@intake.example.com")
    form.add_field("text", b"x" * 5000, filename="text", content_type="text/plain")
    url = f"{inbound.url}/sendgrid/inbound?token={INBOUND_TOKEN}"
    async with inbound.session.post(url, data=form) as response:
        assert response.status == 413
    assert inbound.sink.published == []


@pytest.mark.parametrize(
    ("signed_at", "status"),
    [
        (T0 - timedelta(hours=23), 204),
        (T0 - timedelta(hours=25), 403),  # past the engine's window for repeats
        (T0 + timedelta(minutes=3), 204),  # a clock a little ahead
        (T0 + timedelta(hours=1), 403),
    ],
    ids=["a-day-old", "older", "slightly-ahead", "far-ahead"],
)
async def test_a_signed_event_batch_is_taken_only_while_fresh(
    inbound: Inbound, signed_at: datetime, status: int
) -> None:
    # a captured "unsubscribe" sent again after the engine forgot it would opt out again
    body = orjson.dumps([{"event": "delivered", "effect_id": "fx:1", "sg_event_id": "e1"}])
    assert await inbound.sendgrid_events(body, signed_at=signed_at) == status


async def test_a_status_from_a_provider_that_does_not_carry_the_effect_is_passed_over(
    inbound: Inbound,
) -> None:
    # given an e-mail in doubt, and a signed Twilio status callback naming it
    mail = command("email.send", to="ann@example.com", subject="Hi", body="x")
    await given_in_ledger(inbound, mail, "unknown")
    effect_id = mail.data["effect_id"]
    params = {"MessageSid": "SM1", "MessageStatus": "unsubscribe"}
    answer = await inbound.twilio(f"/twilio/status?effect_id={effect_id}", params)
    # then nothing is published: no opt-out, no e-mail settled as sent by Twilio
    assert answer.status == 204
    assert inbound.sink.published == []
    entry = await inbound.ledger.get(EffectId(effect_id))
    assert entry is not None
    assert entry.status == "unknown"


def _part(name: bytes, value: bytes) -> bytes:
    return (
        b'--BND\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value + b"\r\n"
    )


MULTIPART = {"Content-Type": "multipart/form-data; boundary=BND"}


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"xx", {"Content-Type": "multipart/form-data"}, 400),  # no boundary
        (b"--BND\r\nnonsense", MULTIPART, 400),  # cut short
        (_part(b"envelope", b'{"to":5}') + _part(b"text", b"x") + b"--BND--\r\n", MULTIPART, 400),
        (_part(b"envelope", b'{"to":{"a":1}}') + b"--BND--\r\n", MULTIPART, 400),
    ],
)
async def test_an_inbound_parse_post_that_does_not_read_is_400_not_500(
    inbound: Inbound, body: bytes, headers: dict[str, str], status: int
) -> None:
    url = f"{inbound.url}/sendgrid/inbound?token={INBOUND_TOKEN}"
    async with inbound.session.post(url, data=body, headers=headers) as response:
        assert response.status == status
    assert inbound.sink.published == []


async def test_a_mail_decoding_to_a_lone_surrogate_is_still_a_lead(inbound: Inbound) -> None:
    # given a mail whose charset (UTF-7) decodes its text to a lone surrogate
    body = (
        _part(b"to", b"leads@intake.example.com")
        + _part(b"text", b"Name: Ann +2D8-")
        + _part(b"charsets", b'{"text":"utf-7"}')
        + b"--BND--\r\n"
    )
    url = f"{inbound.url}/sendgrid/inbound?token={INBOUND_TOKEN}"
    async with inbound.session.post(url, data=body, headers=MULTIPART) as response:
        assert response.status == 200
    # then the lead goes on, the character it could not be replaced, the event writable
    [event] = inbound.sink.events()
    assert event.data["body"] == "Name: Ann \ufffd"
    assert decode_event(event.encode()).id == event.id


async def test_a_signed_callback_naming_no_possible_effect_publishes_nothing(
    inbound: Inbound,
) -> None:
    # given signed Twilio callbacks whose effect id holds a NUL (no ledger row can: in
    # PostgreSQL the lookup itself failed, a 500) or runs past any id the engine makes
    for effect_id in ("fx%00x", "fx" + "x" * 2_000):
        status = await inbound.twilio(
            f"/twilio/status?effect_id={effect_id}", {"MessageSid": "SM1", "MessageStatus": "sent"}
        )
        gather = await inbound.twilio(
            f"/twilio/gather?effect_id={effect_id}", {"Digits": "9", "CallSid": "CA1"}
        )
        # then the status is refused, the call told it can no longer be connected
        assert status.status == 400
        assert "can no longer be connected" in gather.text
    assert inbound.sink.published == []


@pytest.mark.parametrize(
    ("effect_id", "named"),
    [("fx:a:c-1:1:s1:1", True), ("", False), ("fx\x00", False), ("f" * 1_001, False), (7, False)],
)
def test_only_a_text_that_could_be_an_effect_id_names_one(effect_id: object, named: bool) -> None:
    assert (named_effect(effect_id) is not None) == named


def test_a_message_id_longer_than_any_mails_names_the_lead_by_its_digest() -> None:
    forged = [("Message-ID", "<" + "m" * 1_000_000 + "@example.com>")]
    usual = [("Message-ID", "<abc@mail.zillow.example>")]
    long_key = message_key(forged, "leads@intake.example.com", "", "", "")
    assert long_key.startswith("sha256:")
    assert len(long_key) == len("sha256:") + 32
    assert message_key(usual, "leads@intake.example.com", "", "", "") == "abc@mail.zillow.example"


async def test_a_key_pressed_on_a_call_naming_a_text_is_no_opt_out(inbound: Inbound) -> None:
    # given a text in the ledger, and a signed gather naming it (no call of ours)
    await given_in_ledger(inbound, sms(), "sent")
    answer = await inbound.twilio(f"/twilio/gather?effect_id={FX}", {"Digits": "9"})
    # then the caller is told it cannot be connected, and nothing follows from the key
    assert "can no longer be connected" in answer.text
    assert inbound.sink.published == []
