"""The effects worker on a real Kafka broker: commands in, each sent once, outcomes out."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

# aiokafka ships no type information.
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import NewTopic  # type: ignore[import-untyped]

from effects.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioServer
from effects.processor import CredentialsRefused
from effects.settings import EffectsSettings
from effects.worker import run_effects_worker
from tests.effects.helpers import command, sms

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

COUNT = 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Rig:
    """An effects worker on fresh topics of the real broker, with a fake Twilio."""

    prefix: str
    producer: Any  # started
    consumer: Any  # of outcomes and dlq, started by `read`
    twilio: FakeTwilioServer
    settings: EffectsSettings
    stop: asyncio.Event
    worker: asyncio.Task[None]

    async def read(
        self, done: Callable[[list[dict[str, Any]], list[tuple[bytes | None, bytes]]], bool]
    ) -> tuple[list[dict[str, Any]], list[tuple[bytes | None, bytes]]]:
        """Outcomes (decoded) and dead letters (key, value) until `done` says enough."""
        await self.consumer.start()
        outcomes: list[dict[str, Any]] = []
        dead: list[tuple[bytes | None, bytes]] = []
        async with asyncio.timeout(90):
            while not done(outcomes, dead):
                batches = await self.consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for record in records:
                        if tp.topic.endswith("dlq"):
                            dead.append((record.key, record.value))
                        else:
                            outcomes.append(orjson.loads(record.value))
        return outcomes, dead

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.worker, timeout=30)


@contextlib.asynccontextmanager
async def effects_worker(
    kafka_bootstrap: str, kafka_admin: Any, **settings: Any
) -> AsyncIterator[Rig]:
    prefix = f"dripstream.fx{uuid.uuid4().hex[:10]}."
    topics = [prefix + name for name in ("effects", "outcomes", "contacts", "dlq")]
    await kafka_admin.create_topics([NewTopic(name, 3, 1) for name in topics])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    consumer = AIOKafkaConsumer(
        prefix + "outcomes",
        prefix + "dlq",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    stop = asyncio.Event()
    settings.setdefault("http_port", free_port())
    try:
        async with FakeTwilioServer() as twilio:
            config = EffectsSettings(
                kafka_bootstrap_servers=kafka_bootstrap,
                topic_prefix=prefix,
                consumer_group=f"effects-{uuid.uuid4().hex[:8]}",
                twilio_account_sid=ACCOUNT_SID,
                twilio_auth_token=settings.pop("twilio_auth_token", AUTH_TOKEN),
                twilio_api_base=twilio.url,
                line_rate_per_second=100_000,
                **settings,
            )
            worker = asyncio.create_task(run_effects_worker(config, stop=stop))
            await producer.start()
            yield Rig(prefix, producer, consumer, twilio, config, stop, worker)
    finally:
        stop.set()
        await producer.stop()
        await consumer.stop()
        await kafka_admin.delete_topics(topics)


async def test_the_worker_sends_each_command_once_and_publishes_outcomes(
    kafka_bootstrap: str, kafka_admin: Any
) -> None:
    port = free_port()
    async with effects_worker(kafka_bootstrap, kafka_admin, http_port=port, batch_size=16) as rig:
        # given commands (one of them twice) and a record that is no command
        commands = [sms(n, to=f"+1646{n:07d}") for n in range(COUNT)]
        for command in [*commands, commands[0]]:
            await rig.producer.send_and_wait(
                rig.prefix + "effects", command.encode(), key=command.subject.encode()
            )
        await rig.producer.send_and_wait(rig.prefix + "effects", b"{oops", key=b"c-x")
        # when the worker has done its work
        outcomes, dead = await rig.read(
            lambda outcomes, dead: len({o["id"] for o in outcomes}) >= COUNT and bool(dead)
        )
        # then each effect reached Twilio once, and its outcome is keyed by its contact
        assert max(rig.twilio.accepted_by_effect.values()) == 1
        assert len(rig.twilio.accepted_by_effect) == COUNT
        assert {o["type"] for o in outcomes} == {"effect.sent"}
        assert [orjson.loads(letter)["value"] for _, letter in dead] == ["{oops"]
        # and the callback server answers, its metrics counting what was done (counted once
        # the outcomes' transaction has committed: a moment after they can be read)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
            for _ in range(50):
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    metrics = await response.text()
                sent = re.search(
                    r'dripstream_effects_published_total\{type="effect.sent"\} (\S+)', metrics
                )
                if sent is not None and float(sent[1]) >= COUNT:
                    break
                await asyncio.sleep(0.1)
        assert sent is not None
        assert float(sent[1]) in (COUNT, COUNT + 1)  # the repeated command's outcome again
        assert "dripstream_effects_dead_letters_total 1.0" in metrics
        await rig.finish()
        # and the consumer group committed every command
        check = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=rig.settings.group_id)
        await check.start()
        try:
            partitions = [TopicPartition(rig.prefix + "effects", p) for p in range(3)]
            ends = await check.end_offsets(partitions)
            for partition in partitions:
                assert await check.committed(partition) == ends[partition]
        finally:
            await check.stop()


async def test_a_metrics_port_takes_the_metrics_off_the_callback_server(
    kafka_bootstrap: str, kafka_admin: Any
) -> None:
    callbacks, metrics = free_port(), free_port()
    async with effects_worker(
        kafka_bootstrap, kafka_admin, http_port=callbacks, metrics_port=metrics
    ) as rig:
        # given a command carried out
        text = sms(1)
        await rig.producer.send_and_wait(
            rig.prefix + "effects", text.encode(), key=text.subject.encode()
        )
        await rig.read(lambda outcomes, _dead: bool(outcomes))
        async with aiohttp.ClientSession() as session:
            # then the metrics are served on their own port
            for _ in range(50):
                async with session.get(f"http://127.0.0.1:{metrics}/metrics") as response:
                    assert response.status == 200
                    served = await response.text()
                if 'dripstream_effects_published_total{type="effect.sent"} 1.0' in served:
                    break
                await asyncio.sleep(0.1)
            assert 'dripstream_effects_published_total{type="effect.sent"} 1.0' in served
            # and the callback server, which the providers (the internet) reach, has none
            async with session.get(f"http://127.0.0.1:{callbacks}/metrics") as response:
                assert response.status == 404
            async with session.get(f"http://127.0.0.1:{callbacks}/healthz") as response:
                assert response.status == 200
        await rig.finish()


async def test_a_decision_on_effects_is_dead_lettered_and_its_effect_still_sent_once(
    kafka_bootstrap: str, kafka_admin: Any
) -> None:
    async with effects_worker(kafka_bootstrap, kafka_admin) as rig:
        # given on `effects`: the decision naming an effect, the effect, and bytes that
        # are no JSON at all
        text = sms(1)
        executed = command("step.executed", 1)
        garbage = b"\xff garbage not json"
        written = [
            await rig.producer.send_and_wait(rig.prefix + "effects", value, key=key)
            for key, value in [
                (b"c-1", executed.encode()),
                (b"c-1", text.encode()),
                (b"c-9", garbage),
            ]
        ]
        # when the worker has done its work
        outcomes, letters = await rig.read(lambda outcomes, dead: bool(outcomes) and len(dead) >= 2)
        await rig.finish()
        prefix, accepted = rig.prefix, dict(rig.twilio.accepted_by_effect)
    # then the text reached Twilio once and was answered effect.sent
    assert accepted == {text.data["effect_id"]: 1}
    assert [(o["type"], o["data"]["effect_id"]) for o in outcomes] == [
        ("effect.sent", text.data["effect_id"])
    ]
    # and the two others are dead letters in the engine worker's shape, keyed as read
    dead = [(key, orjson.loads(value)) for key, value in letters]
    by_offset = {(letter["partition"], letter["offset"]): (key, letter) for key, letter in dead}
    key, letter = by_offset[(written[0].partition, written[0].offset)]
    assert key == b"c-1"
    assert (letter["topic"], letter["field"]) == (prefix + "effects", "type")
    assert letter["reason"] == "'step.executed' is not an effect command"
    assert orjson.loads(letter["value"]) == orjson.loads(executed.encode())
    key, letter = by_offset[(written[2].partition, written[2].offset)]
    assert key == b"c-9"
    assert set(letter) == {
        "topic", "partition", "offset", "key", "key_hex", "field", "reason", "value", "value_hex"
    }  # fmt: skip
    where = (letter["topic"], letter["key"], letter["field"])
    assert where == (prefix + "effects", "c-9", "event")
    assert letter["reason"].startswith("not valid JSON")
    assert bytes.fromhex(letter["value_hex"]) == garbage


async def test_refused_credentials_stop_the_worker_with_the_commands_uncommitted(
    kafka_bootstrap: str, kafka_admin: Any
) -> None:
    async with effects_worker(kafka_bootstrap, kafka_admin, twilio_auth_token="wrong") as rig:
        # given commands on `effects`, and a worker whose Twilio token is wrong
        commands = [sms(n, to=f"+1646{n:07d}") for n in range(3)]
        for command in commands:
            await rig.producer.send_and_wait(
                rig.prefix + "effects", command.encode(), key=command.subject.encode()
            )
        # when it tries them, then it stops, saying why, and sent nothing
        with pytest.raises(CredentialsRefused, match="Authenticate"):
            await asyncio.wait_for(rig.worker, timeout=60)
        assert rig.twilio.accepted() == []
        # and no outcome failed a step, and nothing was committed: a worker with the right
        # token gets every command again
        check = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=rig.settings.group_id)
        await check.start()
        try:
            partitions = [TopicPartition(rig.prefix + "effects", p) for p in range(3)]
            for partition in partitions:
                assert await check.committed(partition) is None
        finally:
            await check.stop()
