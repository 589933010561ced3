"""The effects worker on a real Kafka broker: commands in, each sent once, outcomes out."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import aiohttp
import orjson
import pytest

# aiokafka ships no type information.
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import NewTopic  # type: ignore[import-untyped]

from effects.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioServer
from effects.settings import EffectsSettings
from effects.worker import run_effects_worker
from ops.effects_cli import engine_dead_letter
from tests.effects.helpers import command, sms

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

COUNT = 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_worker_sends_each_command_once_and_publishes_outcomes(
    kafka_bootstrap: str, kafka_admin: Any
) -> None:
    prefix = f"dripstream.fx{uuid.uuid4().hex[:10]}."
    topics = [prefix + name for name in ("effects", "outcomes", "contacts", "dlq")]
    await kafka_admin.create_topics([NewTopic(name, 3, 1) for name in topics])
    port = free_port()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    consumer = AIOKafkaConsumer(
        prefix + "outcomes",
        prefix + "dlq",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    stop = asyncio.Event()
    try:
        async with FakeTwilioServer() as twilio:
            settings = EffectsSettings(
                kafka_bootstrap_servers=kafka_bootstrap,
                topic_prefix=prefix,
                consumer_group=f"effects-{uuid.uuid4().hex[:8]}",
                http_port=port,
                twilio_account_sid=ACCOUNT_SID,
                twilio_auth_token=AUTH_TOKEN,
                twilio_api_base=twilio.url,
                line_rate_per_second=100_000,
                batch_size=16,
            )
            worker = asyncio.create_task(
                run_effects_worker(settings, dead_letter=engine_dead_letter, stop=stop)
            )
            # given commands (one of them twice) and a record that is no command
            await producer.start()
            commands = [sms(n, to=f"+1646{n:07d}") for n in range(COUNT)]
            for command in [*commands, commands[0]]:
                await producer.send_and_wait(
                    prefix + "effects", command.encode(), key=command.subject.encode()
                )
            await producer.send_and_wait(prefix + "effects", b"{oops", key=b"c-x")
            # when the worker has done its work
            await consumer.start()
            outcomes: list[dict[str, Any]] = []
            dead: list[bytes] = []
            async with asyncio.timeout(90):
                while len({o["id"] for o in outcomes}) < COUNT or not dead:
                    batches = await consumer.getmany(timeout_ms=500)
                    for tp, records in batches.items():
                        for record in records:
                            if tp.topic.endswith("dlq"):
                                dead.append(record.value)
                            else:
                                outcomes.append(orjson.loads(record.value))
            # then each effect reached Twilio once, and its outcome is keyed by its contact
            assert max(twilio.accepted_by_effect.values()) == 1
            assert len(twilio.accepted_by_effect) == COUNT
            assert {o["type"] for o in outcomes} == {"effect.sent"}
            assert [orjson.loads(letter)["value"] for letter in dead] == ["{oops"]
            # and the callback server answers
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/healthz") as response,
            ):
                assert response.status == 200
            stop.set()
            await asyncio.wait_for(worker, timeout=30)
        # and the consumer group committed every command
        check = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=settings.group_id)
        await check.start()
        try:
            partitions = [TopicPartition(prefix + "effects", p) for p in range(3)]
            ends = await check.end_offsets(partitions)
            for partition in partitions:
                assert await check.committed(partition) == ends[partition]
        finally:
            await check.stop()
    finally:
        stop.set()
        await producer.stop()
        await consumer.stop()
        await kafka_admin.delete_topics(topics)


async def test_a_decision_on_effects_is_dead_lettered_and_its_effect_still_sent_once(
    kafka_bootstrap: str, kafka_admin: Any
) -> None:
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
    try:
        async with FakeTwilioServer() as twilio:
            settings = EffectsSettings(
                kafka_bootstrap_servers=kafka_bootstrap,
                topic_prefix=prefix,
                consumer_group=f"effects-{uuid.uuid4().hex[:8]}",
                http_port=free_port(),
                twilio_account_sid=ACCOUNT_SID,
                twilio_auth_token=AUTH_TOKEN,
                twilio_api_base=twilio.url,
                line_rate_per_second=100_000,
            )
            worker = asyncio.create_task(
                run_effects_worker(settings, dead_letter=engine_dead_letter, stop=stop)
            )
            # given on `effects`: the decision naming an effect, the effect, and bytes that
            # are no JSON at all
            await producer.start()
            text = sms(1)
            executed = command("step.executed", 1)
            garbage = b"\xff garbage not json"
            written = [
                await producer.send_and_wait(prefix + "effects", value, key=key)
                for key, value in [
                    (b"c-1", executed.encode()),
                    (b"c-1", text.encode()),
                    (b"c-9", garbage),
                ]
            ]
            # when the worker has done its work
            await consumer.start()
            outcomes: list[dict[str, Any]] = []
            dead: list[tuple[bytes | None, dict[str, Any]]] = []
            async with asyncio.timeout(90):
                while not outcomes or len(dead) < 2:
                    batches = await consumer.getmany(timeout_ms=500)
                    for tp, records in batches.items():
                        for record in records:
                            if tp.topic.endswith("dlq"):
                                dead.append((record.key, orjson.loads(record.value)))
                            else:
                                outcomes.append(orjson.loads(record.value))
            stop.set()
            await asyncio.wait_for(worker, timeout=30)
        # then the text reached Twilio once and was answered effect.sent
        assert dict(twilio.accepted_by_effect) == {text.data["effect_id"]: 1}
        assert [(o["type"], o["data"]["effect_id"]) for o in outcomes] == [
            ("effect.sent", text.data["effect_id"])
        ]
        # and the two others are dead letters in the engine worker's shape, keyed as read
        by_offset = {(letter["partition"], letter["offset"]): (key, letter) for key, letter in dead}
        key, letter = by_offset[(written[0].partition, written[0].offset)]
        assert key == b"c-1"
        assert (letter["topic"], letter["field"]) == (prefix + "effects", "type")
        assert letter["reason"] == "'step.executed' is not an effect command"
        assert orjson.loads(letter["value"]) == orjson.loads(executed.encode())
        key, letter = by_offset[(written[2].partition, written[2].offset)]
        assert key == b"c-9"
        assert set(letter) == {
            "topic", "partition", "offset", "key", "field", "reason", "value", "value_hex"
        }  # fmt: skip
        where = (letter["topic"], letter["key"], letter["field"])
        assert where == (prefix + "effects", "c-9", "event")
        assert letter["reason"].startswith("not valid JSON")
        assert bytes.fromhex(letter["value_hex"]) == garbage
    finally:
        stop.set()
        await producer.stop()
        await consumer.stop()
        await kafka_admin.delete_topics(topics)
