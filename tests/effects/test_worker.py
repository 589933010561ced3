"""The thin Kafka loop (with a fake producer) and the file runner over the fake servers."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from effects.fakes.senders import FakeSenders
from effects.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioServer
from effects.filerun import run_commands_file
from effects.ledger_memory import InMemoryLedger
from effects.processor import EffectProcessor
from effects.settings import EffectsSettings
from effects.wiring import open_runtime
from effects.worker import KafkaPublisher, _served, process_records
from streams.ordering import Pending
from streams.routing import dead_letter
from tests.effects.helpers import Clock, command, sms

# The README's topics table: what a `dlq` record's value holds, whichever worker wrote it.
DEAD_LETTER_KEYS = {
    "topic",
    "partition",
    "offset",
    "key",
    "key_hex",
    "field",
    "reason",
    "value",
    "value_hex",
}


@dataclass
class FakeProducer:
    sent: list[tuple[str, bytes | None, bytes, Any]] = field(default_factory=list)

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None
    ) -> asyncio.Future[None]:
        self.sent.append((topic, key, value, headers))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@dataclass(frozen=True)
class Record:
    value: bytes
    key: bytes | None = None
    topic: str = "dripstream.effects"
    partition: int = 0
    offset: int = 0


def publisher(producer: FakeProducer) -> KafkaPublisher:
    return KafkaPublisher(producer, "dripstream.")


def in_memory() -> tuple[EffectProcessor, FakeSenders]:
    fakes = FakeSenders()
    return EffectProcessor(ledger=InMemoryLedger(), senders=fakes.senders(), clock=Clock()), fakes


async def test_a_batch_becomes_outcomes_keyed_by_contact_and_bad_records_dead_letters() -> None:
    producer = FakeProducer()
    fakes = FakeSenders()
    effects = EffectProcessor(ledger=InMemoryLedger(), senders=fakes.senders(), clock=Clock())
    records = [
        Record(sms(1).encode(), b"c-1", offset=0),
        Record(b"{not json", b"c-2", offset=1),
        Record(sms(3).encode(), b"c-3", offset=2),
    ]
    rejected = await process_records(records, effects, publisher(producer), "dripstream.effects")
    assert rejected == 1
    assert len(fakes.sms.sent) == 2
    [dead, first, second] = sorted(producer.sent, key=lambda sent: sent[0])
    assert (dead[0], dead[1]) == ("dripstream.dlq", b"c-2")
    assert orjson.loads(dead[2])["value"] == "{not json"
    assert dead[3] == [("content-type", b"application/json")]  # a letter is no CloudEvent
    assert (first[0], first[1]) == ("dripstream.outcomes", b"c-1")
    assert orjson.loads(first[2])["type"] == "effect.sent"
    assert (second[0], second[1]) == ("dripstream.outcomes", b"c-3")
    # structured mode, said so for consumers that follow the CloudEvents Kafka binding
    assert first[3] == second[3] == [("content-type", b"application/cloudevents+json")]


async def test_power_dialer_commands_are_taken_from_contacts_and_the_rest_skipped() -> None:
    producer = FakeProducer()
    fakes = FakeSenders()
    effects = EffectProcessor(ledger=InMemoryLedger(), senders=fakes.senders(), clock=Clock())
    contacts = "dripstream.contacts"
    records = [
        Record(command("power_dialer.added", 1, user_id="u-7").encode(), topic=contacts),
        Record(command("contact.tag_added", 2, tag="hot").encode(), topic=contacts),
        Record(b"not ours to judge", topic=contacts),
    ]
    rejected = await process_records(records, effects, publisher(producer), "dripstream.effects")
    assert rejected == 0
    assert await fakes.power_dialer.users_for("c-1") == ["u-7"]
    assert [orjson.loads(sent[2])["type"] for sent in producer.sent] == ["effect.sent"]


async def test_a_dead_letter_of_the_effects_worker_is_the_engine_workers_letter() -> None:
    # given bytes that are not JSON at all, read from `effects`
    producer = FakeProducer()
    effects, fakes = in_memory()
    raw = b"\xff garbage not json"
    record = Record(raw, b"c-9", partition=2, offset=7)
    # when the worker takes them
    rejected = await process_records([record], effects, publisher(producer), "dripstream.effects")
    # then one `dlq` record, keyed as the original, holding the README's JSON
    assert rejected == 1
    assert fakes.sms.sent == []
    [(topic, key, value, _)] = producer.sent
    assert (topic, key) == ("dripstream.dlq", b"c-9")
    letter = orjson.loads(value)
    assert set(letter) == DEAD_LETTER_KEYS
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("dripstream.effects", 2, 7)
    assert letter["key"] == "c-9"
    assert letter["field"] == "event"
    assert letter["reason"].startswith("not valid JSON")
    assert bytes.fromhex(letter["value_hex"]) == raw
    # and byte for byte what the engine worker writes for a record it rejects so
    engine = Pending("dripstream.effects", 2, 7, b"c-9", raw, None, ("event", letter["reason"]))
    assert value == dead_letter(engine).value


async def test_an_event_on_effects_that_is_no_command_leaves_its_effect_id_to_the_command() -> None:
    # given the decision that names an effect, then the effect itself, both on `effects`
    producer = FakeProducer()
    effects, fakes = in_memory()
    executed = command("step.executed", 1)
    records = [
        Record(executed.encode(), b"c-1", offset=0),
        Record(sms(1).encode(), b"c-1", offset=1),
    ]
    # when the worker takes them
    rejected = await process_records(records, effects, publisher(producer), "dripstream.effects")
    # then the decision is a dead letter that says why, and the text still goes out once
    assert rejected == 1
    assert len(fakes.sms.sent) == 1
    [dead, sent] = sorted(producer.sent, key=lambda sent: sent[0])
    letter = orjson.loads(dead[2])
    assert (dead[0], letter["offset"], letter["field"]) == ("dripstream.dlq", 0, "type")
    assert letter["reason"] == "'step.executed' is not an effect command"
    outcome = orjson.loads(sent[2])
    assert (outcome["type"], outcome["data"]["effect_id"]) == (
        "effect.sent",
        sms(1).data["effect_id"],
    )


async def test_the_file_runner_sends_each_command_once(tmp_path: Path) -> None:
    commands = tmp_path / "effects.jsonl"
    outcomes = tmp_path / "outcomes.jsonl"
    lines = [sms(n, to=f"+1212555{n:04d}").encode() for n in range(1, 21)]
    commands.write_bytes(b"\n".join([*lines, lines[0], b"garbage"]) + b"\n")
    async with FakeTwilioServer() as twilio:
        settings = EffectsSettings(
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_api_base=twilio.url,
            line_rate_per_second=10_000,
            batch_size=8,
        )
        status = await run_commands_file(settings, commands, outcomes)
    assert status == 1  # the garbage line, reported
    assert len(twilio.accepted()) == 20
    assert max(twilio.accepted_by_effect.values()) == 1
    written = [orjson.loads(line) for line in outcomes.read_bytes().splitlines()]
    # 20 sends, and the duplicate line replays its outcome with the same id
    assert [e["type"] for e in written] == ["effect.sent"] * 21
    assert len({e["id"] for e in written}) == 20


async def test_the_runtime_wires_the_real_senders_from_settings() -> None:
    async with FakeTwilioServer() as twilio:
        settings = EffectsSettings(
            twilio_account_sid=ACCOUNT_SID,
            twilio_auth_token=AUTH_TOKEN,
            twilio_api_base=twilio.url,
            twilio_transport="threads",
        )
        runtime = await open_runtime(settings)
        try:
            [sent] = await runtime.processor.handle(sms())
        finally:
            await runtime.close()
    assert sent.type == "effect.sent"
    assert twilio.requests[0].value("StatusCallback") == (
        "http://127.0.0.1:8088/twilio/status?effect_id=fx%3Awelcome%3Ac-1%3A1%3As1%3A1"
    )


async def test_a_port_that_cannot_be_had_leaves_no_server_set_up() -> None:
    cleaned: list[bool] = []

    async def note_cleanup(_app: web.Application) -> None:
        cleaned.append(True)

    app = web.Application()
    app.on_cleanup.append(note_cleanup)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="address already in use"):
            await _served(app, "127.0.0.1", taken.getsockname()[1])
    assert cleaned == [True]
