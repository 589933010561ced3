"""The fake Twilio server behind its lean HTTP frontend (the one benchmarks run): the real
SDK on every transport gets the same answers as from the aiohttp frontend."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from effects.fakes._lean_server import LeanServer
from effects.fakes.twilio_server import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    UNSUBSCRIBED_NUMBER,
    FakeTwilioServer,
)
from effects.ports import Delivered, Rejected, SmsMessage, Transient
from effects.twilio_http import build_twilio_client, close_twilio_client
from effects.twilio_senders import TwilioSmsSender
from effects.twiml import CallbackUrls
from tests.effects.helpers import LINE


@pytest.fixture
async def lean() -> AsyncIterator[tuple[FakeTwilioServer, str]]:
    fake = FakeTwilioServer()
    async with LeanServer(fake.handle_lean) as server:
        yield fake, server.url


@pytest.mark.parametrize("transport", ["async", "aiohttp", "threads"])
async def test_texts_are_accepted_or_refused_as_scripted(
    lean: tuple[FakeTwilioServer, str], transport: str
) -> None:
    fake, url = lean
    client: Any = build_twilio_client(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, api_base=url, transport=transport
    )
    sender = TwilioSmsSender(client, CallbackUrls("https://effects.example.com"))
    # when two texts go out, one to an unsubscribed number
    sent = await sender.send_sms(
        SmsMessage(effect_id="fx:1", to="+16465550100", from_number=LINE, body="Hi & bye")
    )
    refused = await sender.send_sms(
        SmsMessage(effect_id="fx:2", to=UNSUBSCRIBED_NUMBER, from_number=LINE, body="Hi")
    )
    await close_twilio_client(client)
    # then the first was accepted with a sid, the second refused with Twilio's code
    assert isinstance(sent, Delivered)
    assert sent.provider_id.startswith("SM")
    assert isinstance(refused, Rejected)
    assert refused.opted_out
    [accepted] = fake.accepted("Messages")
    assert (accepted.effect_id, accepted.value("Body"), accepted.value("To")) == (
        "fx:1",
        "Hi & bye",
        "+16465550100",
    )
    assert fake.requests_by_effect == {"fx:1": 1, "fx:2": 1}


async def test_wrong_credentials_are_refused(lean: tuple[FakeTwilioServer, str]) -> None:
    fake, url = lean
    client: Any = build_twilio_client(account_sid=ACCOUNT_SID, auth_token="wrong", api_base=url)
    result = await TwilioSmsSender(client, CallbackUrls("https://e.example.com")).send_sms(
        SmsMessage(effect_id="fx:1", to="+16465550100", from_number=LINE, body="Hi")
    )
    await close_twilio_client(client)
    assert isinstance(result, Transient)
    assert (result.code, result.credentials) == ("20003", True)
    assert fake.request_count == 0


async def test_its_counters_are_served(lean: tuple[FakeTwilioServer, str]) -> None:
    _, url = lean

    # urllib blocks: it runs in a thread while the server answers on this loop
    def fetch() -> dict[str, int]:
        with urllib.request.urlopen(f"{url}/_fake/stats") as response:
            result: dict[str, int] = json.loads(response.read())
        return result

    assert await asyncio.to_thread(fetch) == {
        "requests": 0,
        "accepted": 0,
        "effects": 0,
        "max_accepted_per_effect": 0,
    }
