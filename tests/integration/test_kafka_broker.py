"""The real broker keeps a contact's records in order on one partition, with aiokafka and faust."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import faust
import pytest
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from tests.integration.conftest import MakeTopic

pytestmark = pytest.mark.kafka

PARTITIONS = 6
# The partition the Java client (org.apache.kafka.common.utils.Utils.murmur2, as used by
# Kafka's default partitioner) picks for each key out of 6, computed with kafka-clients 3.9.1.
# Upstream systems producing with Java clients must land a contact on the same partition.
JAVA_PARTITION_OF = {
    "contact-0": 2,
    "contact-1": 2,
    "contact-2": 5,
    "contact-3": 3,
    "contact-4": 1,
    "contact-5": 1,
    "contact-6": 5,
    "contact-7": 2,
    "contact-8": 0,
    "contact-9": 2,
    "contact-10": 1,
    "contact-11": 5,
}
RECORDS_PER_KEY = 40


async def produce_interleaved(bootstrap: str, topic: str, per_key: int) -> dict[str, set[int]]:
    """Sends `per_key` numbered values for every key, keys interleaved; returns the
    partitions the broker acknowledged for each key."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        pending = []
        for seq in range(per_key):
            for key in JAVA_PARTITION_OF:
                sent = await producer.send(topic, key=key.encode(), value=f"{key}:{seq}".encode())
                pending.append((key, sent))
        acknowledged: dict[str, set[int]] = defaultdict(set)
        for key, sent in pending:
            metadata = await sent
            acknowledged[key].add(metadata.partition)
        return acknowledged
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, expected: int) -> list[tuple[int, int, str, int]]:
    """Reads the whole topic from the start: (partition, offset, key, seq) in arrival order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        received: list[tuple[int, int, str, int]] = []
        async with asyncio.timeout(60):
            while len(received) < expected:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, records in batches.items():
                    for record in records:
                        key, seq = record.value.decode().rsplit(":", 1)
                        assert record.key.decode() == key
                        received.append((tp.partition, record.offset, key, int(seq)))
        return received
    finally:
        await consumer.stop()


async def test_each_key_stays_on_one_partition_in_order(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    # given values 0..39 for each of 12 contacts, sent interleaved to a 6-partition topic
    acknowledged = await produce_interleaved(kafka_bootstrap, kafka_topic, RECORDS_PER_KEY)

    # when a consumer reads the topic back from the start
    received = await read_all(
        kafka_bootstrap, kafka_topic, RECORDS_PER_KEY * len(JAVA_PARTITION_OF)
    )

    # then every contact's values are all there, in order, on the partition Java would pick
    by_key: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for partition, offset, key, seq in received:
        by_key[key].append((partition, offset, seq))
    for key, java_partition in JAVA_PARTITION_OF.items():
        assert acknowledged[key] == {java_partition}, key
        assert {partition for partition, _, _ in by_key[key]} == {java_partition}, key
        assert [seq for _, _, seq in by_key[key]] == list(range(RECORDS_PER_KEY)), key
        offsets = [offset for _, offset, _ in by_key[key]]
        assert offsets == sorted(offsets), key
    assert len({p for p, _, _, _ in received}) > 1, "the keys should spread over partitions"


async def test_a_faust_agent_counts_every_record(
    kafka_bootstrap: str, make_topic: MakeTopic, kafka_admin: AIOKafkaAdminClient, tmp_path: Path
) -> None:
    # given a faust app, with an in-memory table, whose agent counts records per key
    topic_name = await make_topic(partitions=PARTITIONS)
    app_id = f"dripstream-test-{uuid.uuid4().hex[:10]}"
    app = faust.App(
        app_id,
        broker=f"kafka://{kafka_bootstrap}",
        store="memory://",
        datadir=str(tmp_path),
        web_enabled=False,
        autodiscover=False,
        topic_replication_factor=1,
        topic_partitions=PARTITIONS,
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    counts = app.Table("counts", default=int, partitions=PARTITIONS)
    total = RECORDS_PER_KEY * len(JAVA_PARTITION_OF)
    seen: list[bytes] = []
    all_seen = asyncio.Event()

    @app.agent(topic, concurrency=1)
    async def count(stream: faust.StreamT[bytes]) -> None:
        async for key, value in stream.items():
            counts[key.decode()] += 1
            seen.append(value)
            if len(seen) >= total:
                all_seen.set()

    try:
        async with asyncio.timeout(90):
            await app.start()

            # when the records arrive on the real broker
            await produce_interleaved(kafka_bootstrap, topic_name, RECORDS_PER_KEY)

            # then the agent sees every one of them, once, and the table counts them per key
            await all_seen.wait()
            await asyncio.sleep(0.5)  # a duplicate delivered right after the last would show
    finally:
        async with asyncio.timeout(60):
            await app.stop()
        leftovers = [t for t in await kafka_admin.list_topics() if t.startswith(app_id)]
        if leftovers:
            await kafka_admin.delete_topics(leftovers)

    assert len(seen) == total
    assert Counter(seen) == Counter(
        f"{key}:{seq}".encode() for key in JAVA_PARTITION_OF for seq in range(RECORDS_PER_KEY)
    )
    assert {key: counts[key] for key in JAVA_PARTITION_OF} == dict.fromkeys(
        JAVA_PARTITION_OF, RECORDS_PER_KEY
    )
