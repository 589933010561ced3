"""The real twilio SDK, rebased on the fake Twilio server, through the processor."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from effects.fakes.senders import FakeSenders
from effects.fakes.twilio_server import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    DEMO_LANDLINE_NUMBER,
    DOWN_NUMBER,
    INVALID_NUMBER,
    NOT_SMS_CAPABLE_NUMBER,
    THROTTLED_ONCE_NUMBER,
    UNSUBSCRIBED_NUMBER,
    FakeTwilioServer,
    TwilioFailure,
)
from effects.ledger_memory import InMemoryLedger
from effects.ports import EffectId, Senders
from effects.processor import CredentialsRefused, EffectProcessor
from effects.retry import RetryPolicy
from effects.twilio_http import build_twilio_client, close_twilio_client, rebase
from effects.twilio_senders import TwilioCallPlacer, TwilioSmsSender, TwilioVoicemailDropper
from effects.twiml import CallbackUrls
from tests.effects.helpers import LINE, Sleeps, command, sms, types_of

PUBLIC = "https://effects.example.com"


@dataclass
class World:
    twilio: FakeTwilioServer
    effects: EffectProcessor
    sleeps: Sleeps


TRANSPORTS = ["async", "aiohttp", "threads"]


@asynccontextmanager
async def world_on(
    twilio: FakeTwilioServer, transport: str, timeout: float = 5.0
) -> AsyncIterator[World]:
    """The processor with the real SDK on `transport`, rebased on `twilio`."""
    client = build_twilio_client(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        api_base=twilio.url,
        transport=transport,
        timeout=timeout,
    )
    urls = CallbackUrls(PUBLIC)
    fakes = FakeSenders()
    sleeps = Sleeps()
    senders = Senders(
        sms=TwilioSmsSender(client, urls),
        calls=TwilioCallPlacer(client, urls),
        voicemail=TwilioVoicemailDropper(client, urls),
        email=fakes.email,
        webhooks=fakes.webhooks,
        power_dialer=fakes.power_dialer,
    )
    effects = EffectProcessor(
        ledger=InMemoryLedger(),
        senders=senders,
        clock=sleeps.clock,
        retry=RetryPolicy(max_attempts=5),
        sleep=sleeps,
        rand=lambda: 0.25,
    )
    try:
        yield World(twilio, effects, sleeps)
    finally:
        await close_twilio_client(client)


@pytest.fixture(params=TRANSPORTS)
async def world(request: pytest.FixtureRequest, twilio: FakeTwilioServer) -> AsyncIterator[World]:
    async with world_on(twilio, request.param) as built:
        yield built


def twiml_of(form_value: str | None) -> ET.Element:
    assert form_value is not None
    return ET.fromstring(form_value)


def test_the_sdk_is_rebased_on_the_configured_host() -> None:
    assert (
        rebase("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json", "http://127.0.0.1:9")
        == "http://127.0.0.1:9/2010-04-01/Accounts/AC1/Messages.json"
    )
    assert rebase("https://api.twilio.com/x?a=1", "https://proxy.internal/tw/") == (
        "https://proxy.internal/tw/x?a=1"
    )
    assert rebase("https://example.com/x", "http://127.0.0.1:9") == "https://example.com/x"


async def test_sms_send_reaches_twilio_once_with_its_status_callback(world: World) -> None:
    # when
    events = await world.effects.handle(sms(body="Hi Ann! Reply STOP to opt out."))
    # then
    [request] = world.twilio.requests
    assert request.resource == "Messages"
    assert request.value("To") == "+12125550101"
    assert request.value("From") == LINE
    assert request.value("Body") == "Hi Ann! Reply STOP to opt out."
    assert request.value("StatusCallback") == (
        f"{PUBLIC}/twilio/status?effect_id=fx%3Awelcome%3Ac-1%3A1%3As1%3A1"
    )
    assert request.effect_id == "fx:welcome:c-1:1:s1:1"
    [sent] = events
    assert sent.type == "effect.sent"
    assert sent.data["provider_id"] == request.sid
    # and a redelivery does not reach Twilio again
    await world.effects.handle(sms())
    assert world.twilio.accepted_by_effect == {"fx:welcome:c-1:1:s1:1": 1}


async def test_mms_send_carries_its_media(world: World) -> None:
    mms = command(
        "mms.send",
        to="+12125550101",
        from_number=LINE,
        body="Our menu",
        media_url="https://cdn.example.com/menu.png",
    )
    assert types_of(await world.effects.handle(mms)) == ["effect.sent"]
    assert world.twilio.requests[0].form["MediaUrl"] == ["https://cdn.example.com/menu.png"]


@pytest.mark.parametrize("body", ["", None])
async def test_a_picture_mms_without_words_goes_with_no_body(
    world: World, body: str | None
) -> None:
    # A blank opt-out phrase leaves a picture step's MMS with no text: Twilio takes a
    # message of media alone, so it is sent rather than refused for its empty body.
    words = {} if body is None else {"body": body}
    mms = command(
        "mms.send", to="+12125550101", from_number=LINE, media_url="https://x/p.png", **words
    )
    assert types_of(await world.effects.handle(mms)) == ["effect.sent"]
    form = world.twilio.requests[0].form
    assert (form["MediaUrl"], "Body" in form) == (["https://x/p.png"], False)


async def test_mms_send_carries_every_media_url_in_order(world: World) -> None:
    media = ["https://cdn.example.com/a.png", "https://cdn.example.com/b.png"]
    mms = command("mms.send", to="+12125550101", from_number=LINE, body="Menu", media_url=media)
    assert types_of(await world.effects.handle(mms)) == ["effect.sent"]
    assert world.twilio.requests[0].form["MediaUrl"] == media


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_answer_in_time_is_unknown_and_never_sent_again(transport: str) -> None:
    # given a Twilio that takes a second to answer, and a client that waits 0.2 s: the
    # text may have gone out, and two texts are worse than a late one
    async with FakeTwilioServer(latency=1.0) as slow, world_on(slow, transport, 0.2) as world:
        # when
        events = await world.effects.handle(sms())
        # then it is reported in doubt, not retried
        assert types_of(events) == ["effect.unknown"]
        assert world.sleeps.delays == []
        entry = await world.effects.ledger.get(EffectId("fx:welcome:c-1:1:s1:1"))
        assert entry is not None
        assert entry.status == "unknown"
        # and a redelivery says the same without asking Twilio again
        assert types_of(await world.effects.handle(sms())) == ["effect.unknown"]
        await asyncio.sleep(1.2)  # let the slow answer finish before counting
        assert slow.requests_by_effect == {"fx:welcome:c-1:1:s1:1": 1}


async def test_notify_sms_texts_the_user(world: World) -> None:
    notify = command("notify.sms", to="+12125550007", from_number=LINE, body="New lead: Ann")
    assert types_of(await world.effects.handle(notify)) == ["effect.sent"]
    assert world.twilio.requests[0].value("To") == "+12125550007"
    assert world.twilio.requests[0].value("Body") == "New lead: Ann"


async def test_progressive_dial_calls_the_contact_with_a_one_digit_gather(world: World) -> None:
    dial = command(
        "call.dial",
        to="+12125550101",
        mode="progressive",
        ring_group="rg-sales",
        ring_group_numbers=["+12125550007", "+12125550008"],
        message="To connect, press 1. For a callback, press 2. To opt out, press 9.",
        repeat_message=False,
        from_number=LINE,
    )
    assert types_of(await world.effects.handle(dial)) == ["effect.sent"]
    [call] = world.twilio.requests
    assert call.resource == "Calls"
    assert call.value("To") == "+12125550101"
    assert call.value("From") == LINE
    assert call.form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    response = twiml_of(call.value("Twiml"))
    gather = response.find("Gather")
    assert gather is not None
    assert gather.get("numDigits") == "1"
    assert gather.get("action") == (
        f"{PUBLIC}/twilio/gather?effect_id=fx%3Awelcome%3Ac-1%3A1%3As1%3A1&mode=progressive"
    )
    say = gather.find("Say")
    assert say is not None
    assert say.text == "To connect, press 1. For a callback, press 2. To opt out, press 9."


async def test_a_number_that_takes_no_texts_still_takes_a_call(world: World) -> None:
    # a landline (the demo's): Twilio's 21614 refuses a message, never a call
    dial = command(
        "call.dial",
        to=DEMO_LANDLINE_NUMBER,
        mode="progressive",
        ring_group_numbers=["+12125550007"],
        from_number=LINE,
    )
    assert types_of(await world.effects.handle(sms(2, to=DEMO_LANDLINE_NUMBER))) == [
        "effect.failed"
    ]
    assert types_of(await world.effects.handle(dial)) == ["effect.sent"]


async def test_preview_dial_calls_each_agent_and_repeats_the_message(world: World) -> None:
    dial = command(
        "call.dial",
        to="+12125550101",
        mode="preview",
        ring_group="rg-sales",
        ring_group_numbers=["+12125550007", "+12125550008"],
        message="New lead Ann. Press any key to connect.",
        repeat_message=True,
        from_number=LINE,
    )
    [sent] = await world.effects.handle(dial)
    calls = world.twilio.requests
    assert [c.value("To") for c in calls] == ["+12125550007", "+12125550008"]
    assert sent.data["provider_id"] == ",".join(str(c.sid) for c in calls)
    gather = twiml_of(calls[0].value("Twiml")).find("Gather")
    assert gather is not None
    assert gather.get("action", "").endswith("&mode=preview")
    say = gather.find("Say")
    assert say is not None
    assert say.get("loop") == "0"  # until a key is pressed
    assert say.text == "New lead Ann. Press any key to connect."


async def test_preview_dial_without_repeat_connects_after_one_playing(world: World) -> None:
    dial = command(
        "call.dial",
        to="+12125550101",
        mode="preview",
        ring_group="rg-sales",
        ring_group_numbers=["+12125550007"],
        message="New lead Ann.",
        repeat_message=False,
        from_number=LINE,
    )
    await world.effects.handle(dial)
    response = twiml_of(world.twilio.requests[0].value("Twiml"))
    say = response.find("Gather/Say")
    assert say is not None
    assert say.get("loop") == "1"
    redirect = response.find("Redirect")
    assert redirect is not None
    assert redirect.text is not None
    assert redirect.text.endswith("&mode=preview")


async def test_voicemail_drop_plays_the_recording_after_the_beep(world: World) -> None:
    drop = command(
        "voicemail.drop",
        to="+12125550101",
        recording_url="https://cdn.example.com/vm.mp3",
        from_number=LINE,
    )
    assert types_of(await world.effects.handle(drop)) == ["effect.sent"]
    [call] = world.twilio.requests
    assert call.value("MachineDetection") == "DetectMessageEnd"
    play = twiml_of(call.value("Twiml")).find("Play")
    assert play is not None
    assert play.text == "https://cdn.example.com/vm.mp3"


async def test_an_unsubscribed_recipient_opts_the_contact_out_of_sms(world: World) -> None:
    events = await world.effects.handle(sms(to=UNSUBSCRIBED_NUMBER))
    assert types_of(events) == ["effect.failed", "contact.opted_out"]
    assert events[0].data["code"] == "21610"
    assert events[1].data["channel"] == "sms"
    assert events[1].data["contact_id"] == "c-1"
    assert len(world.twilio.requests) == 1


@pytest.mark.parametrize(
    ("number", "code", "reason"),
    [
        (INVALID_NUMBER, "21211", "invalid 'To' phone number"),
        (NOT_SMS_CAPABLE_NUMBER, "21614", "'To' number is not SMS-capable"),
        (DEMO_LANDLINE_NUMBER, "21614", "'To' number is not SMS-capable"),
    ],
)
async def test_an_invalid_number_fails_with_the_reason(
    world: World, number: str, code: str, reason: str
) -> None:
    [failed] = await world.effects.handle(sms(to=number))
    assert failed.type == "effect.failed"
    assert failed.data["code"] == code
    assert failed.data["reason"].startswith(reason)
    assert len(world.twilio.requests) == 1  # never retried


async def test_a_text_longer_than_twilio_takes_fails_with_twilios_code(world: World) -> None:
    # given a text that shortcodes made longer than Twilio's 1,600 characters
    long_text = command("sms.send", to="+12125550101", from_number=LINE, body="x" * 1601)
    # when it is carried out, then it fails for good, asked once
    [failed] = await world.effects.handle(long_text)
    assert (failed.type, failed.data["code"]) == ("effect.failed", "21617")
    assert len(world.twilio.requests) == 1


async def test_a_429_is_retried_after_a_backoff(world: World) -> None:
    events = await world.effects.handle(sms(to=THROTTLED_ONCE_NUMBER))
    assert types_of(events) == ["effect.sent"]
    assert [r.accepted for r in world.twilio.requests] == [False, True]
    assert world.sleeps.delays == [0.25]  # uniform(0, 1 s) drawn at 0.25


async def test_a_429s_retry_after_is_waited_for_on_every_transport(world: World) -> None:
    # given Twilio refusing the first try with Retry-After: 7 (the SDK's exception drops
    # the headers; the transport keeps it for the send that read it)
    to = "+12025550177"
    world.twilio.fail_first(to, TwilioFailure(429, 20429, "Too Many Requests", retry_after="7"))
    events = await world.effects.handle(sms(to=to))
    assert types_of(events) == ["effect.sent"]
    assert world.sleeps.delays == [7.0]  # not the backoff's 0.25


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_a_5xx_that_may_come_after_the_message_was_taken_is_in_doubt(
    world: World, status: int
) -> None:
    # given Twilio (or a gateway before it) answering 500, 502 or 504 once: the message may
    # have been created all the same
    to = "+12025550178"
    world.twilio.fail_first(to, TwilioFailure(status, 20500, "Internal Server Error"))
    # when the text is sent, and the command delivered again
    events = await world.effects.handle(sms(to=to))
    again = await world.effects.handle(sms(to=to))
    # then it is in doubt, never sent a second time
    assert types_of(events) == types_of(again) == ["effect.unknown"]
    assert events[0].data["reason"].endswith("(it may have been carried out)")
    assert len(world.twilio.requests) == 1
    assert world.sleeps.delays == []


async def test_a_provider_that_stays_down_fails_the_effect_after_five_tries(world: World) -> None:
    [failed] = await world.effects.handle(sms(to=DOWN_NUMBER))
    assert failed.type == "effect.failed"
    assert failed.data["reason"].startswith("gave up after 5 attempts: twilio 503")
    assert len(world.twilio.requests) == 5
    assert world.sleeps.delays == [0.25, 0.5, 1.0, 2.0]


async def test_wrong_credentials_fail_no_step_and_stop_the_processor(
    twilio: FakeTwilioServer,
) -> None:
    client: Any = build_twilio_client(
        account_sid=ACCOUNT_SID, auth_token="wrong", api_base=twilio.url, transport="async"
    )
    fakes = FakeSenders()
    effects = EffectProcessor(
        ledger=InMemoryLedger(),
        senders=Senders(
            sms=TwilioSmsSender(client, CallbackUrls(PUBLIC)),
            calls=fakes.calls,
            voicemail=fakes.voicemail,
            email=fakes.email,
            webhooks=fakes.webhooks,
            power_dialer=fakes.power_dialer,
        ),
        clock=Sleeps().clock,
    )
    outcomes = await effects.handle(sms())
    # the text stays pending, with no outcome, and the processor says why it must stop
    assert outcomes == []
    with pytest.raises(CredentialsRefused, match="Authenticate"):
        effects.check_credentials()
    # and no later command is tried meanwhile
    assert await effects.handle(sms(2)) == []
    await close_twilio_client(client)
    assert twilio.accepted() == []
    entry = await effects.ledger.get(EffectId("fx:welcome:c-1:1:s1:1"))
    assert entry is not None
    assert entry.status == "pending"


async def test_twilio_unreachable_is_retried_not_unknown() -> None:
    # a port nobody listens on: the connection is refused, so nothing was sent
    client: Any = build_twilio_client(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, api_base="http://127.0.0.1:9"
    )
    fakes = FakeSenders()
    sleeps = Sleeps()
    effects = EffectProcessor(
        ledger=InMemoryLedger(),
        senders=Senders(
            sms=TwilioSmsSender(client, CallbackUrls(PUBLIC)),
            calls=fakes.calls,
            voicemail=fakes.voicemail,
            email=fakes.email,
            webhooks=fakes.webhooks,
            power_dialer=fakes.power_dialer,
        ),
        clock=sleeps.clock,
        sleep=sleeps,
        rand=lambda: 0.0,
        retry=RetryPolicy(max_attempts=2),
    )
    [failed] = await effects.handle(sms())
    await close_twilio_client(client)
    assert failed.type == "effect.failed"
    assert "connection to Twilio failed" in failed.data["reason"]
    assert len(sleeps.delays) == 1


async def test_notify_sms_to_a_ring_group_texts_each_member_once(world: World) -> None:
    notify = command(
        "notify.sms",
        to="rg-sales",
        ring_group="rg-sales",
        ring_group_numbers=["+12125550007", "+12125550008"],
        from_number=LINE,
        body="New lead: Ann",
    )
    await world.effects.handle(notify)
    await world.effects.handle(notify)
    assert sorted(r.value("To") or "" for r in world.twilio.accepted()) == [
        "+12125550007",
        "+12125550008",
    ]


async def test_a_member_the_provider_refuses_does_not_keep_the_others_from_their_text(
    world: World,
) -> None:
    # given a ring group whose first member's number is invalid
    notify = command(
        "notify.sms",
        to="rg-sales",
        ring_group="rg-sales",
        ring_group_numbers=[INVALID_NUMBER, "+12125550008"],
        from_number=LINE,
        body="New lead: Ann",
    )
    # when the notice is carried out, and delivered again
    [sent] = await world.effects.handle(notify)
    [again] = await world.effects.handle(notify)
    # then the second member is texted once, and the outcome names the member missed
    assert [r.value("To") for r in world.twilio.accepted()] == ["+12125550008"]
    assert sent.type == "effect.sent"
    assert sent.data["undelivered"].startswith(f"{INVALID_NUMBER}: invalid 'To' phone number")
    assert again.data == sent.data


@pytest.mark.parametrize(
    "members", [[UNSUBSCRIBED_NUMBER], [UNSUBSCRIBED_NUMBER, INVALID_NUMBER]], ids=["one", "all"]
)
async def test_an_unsubscribed_member_opts_no_contact_out(world: World, members: list[str]) -> None:
    # given a notice whose members' numbers have all texted STOP to the line (21610)
    notify = command(
        "notify.sms",
        to="rg-sales",
        ring_group="rg-sales",
        ring_group_numbers=members,
        from_number=LINE,
        body="New lead: Ann",
    )
    # when it is carried out, and delivered again
    first = await world.effects.handle(notify)
    again = await world.effects.handle(notify)
    # then it fails for the members, and the lead it is about is not opted out
    assert types_of(first) == types_of(again) == ["effect.failed"]
    assert first[0].data["code"] == "21610"


async def test_a_preview_call_reaches_the_agents_it_can(world: World) -> None:
    dial = command(
        "call.dial",
        to="+12125550101",
        mode="preview",
        ring_group="rg-sales",
        ring_group_numbers=[INVALID_NUMBER, "+12125550007"],
        message="New lead Ann.",
        from_number=LINE,
    )
    [sent] = await world.effects.handle(dial)
    assert [c.value("To") for c in world.twilio.accepted()] == ["+12125550007"]
    assert sent.data["undelivered"].startswith(f"{INVALID_NUMBER}: ")


async def test_a_ring_group_none_of_whose_members_is_reached_fails_as_one_send(
    world: World,
) -> None:
    notify = command(
        "notify.sms",
        to="rg-sales",
        ring_group="rg-sales",
        ring_group_numbers=[INVALID_NUMBER, NOT_SMS_CAPABLE_NUMBER],
        from_number=LINE,
        body="New lead: Ann",
    )
    [failed] = await world.effects.handle(notify)
    assert failed.type == "effect.failed"
    assert failed.data["code"] == "21211"  # the first member's refusal
    assert len(world.twilio.requests) == 2
