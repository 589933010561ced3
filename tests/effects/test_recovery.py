"""A crash during a send: the effect becomes unknown, is never resent, and Twilio's status
callback later reconciles it. In memory and in PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import pytest
from aiohttp import web

from effects.fakes._server import LoopbackServer
from effects.fakes.senders import FakeSenders
from effects.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioServer
from effects.inbound import InboundHandlers, add_inbound_routes
from effects.ledger import IN_FLIGHT, SENT, UNKNOWN, Ledger
from effects.ledger_memory import InMemoryLedger
from effects.ledger_postgres import PostgresLedger
from effects.ports import EffectId
from effects.processor import EffectProcessor
from effects.publish import InMemorySink
from effects.twilio_http import build_twilio_client, close_twilio_client
from effects.twilio_senders import TwilioSmsSender
from effects.twiml import CallbackUrls
from tests.effects.helpers import Clock, sms, types_of

FX = EffectId("fx:welcome:c-1:1:s1:1")


@dataclass
class Ledgers:
    first: Ledger
    restart: Callable[[], Awaitable[Ledger]]


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
async def ledgers(request: pytest.FixtureRequest) -> AsyncIterator[Ledgers]:
    if request.param == "memory":
        memory = InMemoryLedger("p-1")

        async def restart_memory() -> Ledger:
            return memory.restarted("p-2")

        yield Ledgers(memory, restart_memory)
        return
    url = request.getfixturevalue("clean_database")
    first = PostgresLedger(url, "p-1", pool_size=2)
    await first.open()
    second = PostgresLedger(url, "p-2", pool_size=2)

    async def restart_postgres() -> Ledger:
        await first.close()
        await second.open()
        return second

    yield Ledgers(first, restart_postgres)
    await first.close()
    await second.close()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_send_cut_short_is_unknown_then_reconciled_by_twilio(ledgers: Ledgers) -> None:
    clock = Clock()
    sink = InMemorySink()
    app = web.Application()
    callbacks = LoopbackServer(app)
    callbacks.bind()
    async with FakeTwilioServer(latency=0.3) as twilio:
        client = build_twilio_client(
            account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, api_base=twilio.url
        )
        senders = replace(
            FakeSenders().senders(), sms=TwilioSmsSender(client, CallbackUrls(callbacks.url))
        )
        # given a processor that dies while Twilio is taking its message
        doomed = EffectProcessor(ledger=ledgers.first, senders=senders, clock=clock)
        send = asyncio.create_task(doomed.handle(sms()))
        await until(lambda: twilio.request_count == 1)
        send.cancel()
        await until(lambda: twilio.accepted_by_effect[FX] == 1)  # Twilio did take it
        entry = await ledgers.first.get(FX)
        assert entry is not None
        assert entry.status == IN_FLIGHT

        # when a new processor starts on the same ledger
        ledger = await ledgers.restart()
        fresh = EffectProcessor(ledger=ledger, senders=senders, clock=clock)
        recovered = await fresh.recover()

        # then the effect is unknown, and a redelivered command does not send it again
        assert types_of(recovered) == ["effect.unknown"]
        assert types_of(await fresh.handle(sms())) == ["effect.unknown"]
        assert twilio.accepted_by_effect[FX] == 1
        assert twilio.requests_by_effect[FX] == 1
        entry = await ledger.get(FX)
        assert entry is not None
        assert entry.status == UNKNOWN

        # when Twilio's signed status callback arrives
        handlers = InboundHandlers(
            ledger=ledger,
            publish=sink,
            clock=clock,
            public_base_url=callbacks.url,
            twilio_auth_token=AUTH_TOKEN,
        )
        add_inbound_routes(app, handlers)
        async with callbacks:
            assert await twilio.send_status_callback(FX, "delivered") == 204

        # then the ledger knows it was sent, with Twilio's sid, and says so
        entry = await ledger.get(FX)
        assert entry is not None
        assert entry.status == SENT
        assert entry.provider_id == twilio.sids_by_effect[FX][0]
        assert types_of(sink.events()) == ["effect.status_changed", "effect.sent"]
        await close_twilio_client(client)
