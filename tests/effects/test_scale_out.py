"""Effects processors on Kafka and one PostgreSQL ledger, joining and dying mid-run.

Given 3,000 SMS commands on the `effects` topic and a fake Twilio that takes a moment per
send, when a first `dripstream effects` is joined by a second while it sends (the
partitions move), the first is killed with SIGKILL (its partitions move to the others once
its session lapses, with sends of its own in flight) and a third joins, then Twilio saw
each effect id at most once, and every effect has its outcome on `outcomes`: sent, failed,
or unknown for what was in flight at the kill. Nothing is lost, nothing sent twice.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

# aiokafka ships no type information.
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import NewTopic  # type: ignore[import-untyped]

from effects.fakes.twilio_server import FakeTwilioServer
from tests.effects.helpers import sms, start_effects

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
COUNT = 3_000
CONCURRENCY = 32  # sends in flight per processor, at most


async def start_processor(
    kafka_bootstrap: str, prefix: str, group: str, database_url: str, twilio: FakeTwilioServer
) -> asyncio.subprocess.Process:
    return await start_effects(
        twilio.url,
        database_url,
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        DRIPSTREAM_TOPIC_PREFIX=prefix,
        EFFECTS_CONSUMER_GROUP=group,
        EFFECTS_LINE_RATE="100000",
        EFFECTS_CONCURRENCY=str(CONCURRENCY),
        EFFECTS_BATCH_SIZE="100",
        EFFECTS_HTTP_PORT="0",
    )


async def publish_texts(bootstrap: str, topic: str, effect_ids: list[str]) -> None:
    """An SMS command for each effect id, the n-th to contact c-n, on `topic`."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        for n, effect_id in enumerate(effect_ids):
            command = sms(n, to=f"+1646{n:07d}", effect_id=effect_id)
            await producer.send(topic, command.encode(), key=command.subject.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def until_sent(twilio: FakeTwilioServer, count: int, limit: float = 120) -> None:
    async with asyncio.timeout(limit):
        while twilio.request_count < count:
            await asyncio.sleep(0.02)


async def read_outcomes(
    kafka_bootstrap: str, prefix: str, effect_ids: set[str]
) -> dict[str, set[str]]:
    """The outcome types announced per effect id, read until every effect has a final one."""
    consumer = AIOKafkaConsumer(
        prefix + "outcomes",
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    announced: dict[str, set[str]] = {}
    final = {"effect.sent", "effect.failed", "effect.unknown"}
    try:
        async with asyncio.timeout(180):
            while not all(announced.get(e, set()) & final for e in effect_ids):
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        event = orjson.loads(record.value)
                        effect_id = event["id"].rsplit("/", 1)[0]  # <effect id>/<what>
                        announced.setdefault(effect_id, set()).add(event["type"])
    finally:
        await consumer.stop()
    return announced


async def test_processors_joining_and_dying_mid_run_send_each_effect_once(
    kafka_bootstrap: str, kafka_admin: Any, clean_database: str
) -> None:
    prefix = f"dripstream.so{uuid.uuid4().hex[:10]}."
    group = f"effects-{uuid.uuid4().hex[:8]}"
    topics = [prefix + name for name in ("effects", "outcomes", "contacts", "dlq")]
    await kafka_admin.create_topics([NewTopic(name, 6, 1) for name in topics])
    effect_ids = [f"fx:scale:c-{n}:1:s1:1" for n in range(COUNT)]
    processes: list[asyncio.subprocess.Process] = []
    try:
        async with FakeTwilioServer(latency=0.02) as twilio:
            await publish_texts(kafka_bootstrap, prefix + "effects", effect_ids)

            processes.append(
                await start_processor(kafka_bootstrap, prefix, group, clean_database, twilio)
            )
            await until_sent(twilio, COUNT // 6)
            processes.append(
                await start_processor(kafka_bootstrap, prefix, group, clean_database, twilio)
            )
            await until_sent(twilio, COUNT // 3)
            sent_at_kill = twilio.request_count
            processes[0].send_signal(signal.SIGKILL)
            await processes[0].wait()
            processes.append(
                await start_processor(kafka_bootstrap, prefix, group, clean_database, twilio)
            )
            announced = await read_outcomes(kafka_bootstrap, prefix, set(effect_ids))
            alive = [p.returncode for p in processes[1:]]
            assert alive == [None, None], "a processor died"
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), timeout=60)
        await kafka_admin.delete_topics(topics)

    # then Twilio saw each effect id at most once, and all but the killed one's last
    # sends got through
    assert max(twilio.requests_by_effect.values()) == 1
    assert len(twilio.requests_by_effect) >= COUNT - CONCURRENCY
    # and the ledger and the outcomes agree: each effect sent, or unknown (in flight at the kill)
    with psycopg.connect(clean_database) as conn:
        rows = conn.execute("SELECT effect_id, status FROM effect_ledger").fetchall()
    ledger = dict(rows)
    assert set(ledger) == set(effect_ids)
    unknown = {e for e, status in ledger.items() if status == "unknown"}
    assert {status for e, status in ledger.items() if e not in unknown} == {"sent"}
    assert len(unknown) <= CONCURRENCY, len(unknown)
    for effect_id, status in ledger.items():
        assert f"effect.{status}" in announced[effect_id], effect_id
    assert sent_at_kill < COUNT // 2, "the kill came after most of the work"
    # and the processors still running stopped cleanly on SIGTERM
    assert [p.returncode for p in processes[1:]] == [0, 0]
