"""The thin Kafka loop (with a fake producer) and the file runner over the fake servers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from effects.fakes.senders import FakeSenders
from effects.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioServer
from effects.filerun import run_commands_file
from effects.ledger import InMemoryLedger
from effects.processor import EffectProcessor
from effects.settings import EffectsSettings
from effects.wiring import open_runtime
from effects.worker import KafkaPublisher, process_records
from tests.effects.helpers import Clock, command, sms


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


async def test_a_batch_becomes_outcomes_keyed_by_contact_and_bad_records_dead_letters() -> None:
    producer = FakeProducer()
    fakes = FakeSenders()
    effects = EffectProcessor(ledger=InMemoryLedger(), senders=fakes.senders(), clock=Clock())
    records = [
        Record(sms(1).encode(), b"c-1", offset=0),
        Record(b"{not json", b"c-2", offset=1),
        Record(sms(3).encode(), b"c-3", offset=2),
    ]
    rejected = await process_records(
        records, effects, KafkaPublisher(producer, "dripstream."), "dripstream.effects"
    )
    assert rejected == 1
    assert len(fakes.sms.sent) == 2
    [dead, first, second] = sorted(producer.sent, key=lambda sent: sent[0])
    assert dead[0] == "dripstream.dlq"
    assert dead[2] == b"{not json"
    assert dead[3][0][0] == "dripstream-reason"
    assert (first[0], first[1]) == ("dripstream.outcomes", b"c-1")
    assert orjson.loads(first[2])["type"] == "effect.sent"
    assert (second[0], second[1]) == ("dripstream.outcomes", b"c-3")


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
    rejected = await process_records(
        records, effects, KafkaPublisher(producer, "dripstream."), "dripstream.effects"
    )
    assert rejected == 0
    assert await fakes.power_dialer.users_for("c-1") == ["u-7"]
    assert [orjson.loads(sent[2])["type"] for sent in producer.sent] == ["effect.sent"]


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
