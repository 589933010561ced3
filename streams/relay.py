"""The outbox relay: recorded decisions to the output topics, in order, exactly once.

Each batch of outbox rows is published in one Kafka transaction together with the relay's
position (a record on `<prefix>relay-position`), so a crash either publishes the batch and
its position or neither. A PostgreSQL advisory lock keeps one relay active at a time; the
fixed transactional id fences a relay that lost it.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]

from streams.store import EngineStore

log = logging.getLogger("dripstream.relay")

POSITION_TOPIC = "relay-position"
RELAY_LOCK = 0x64726970  # "drip": the advisory lock id of the relay, per schema and prefix
BATCH = 1000
POSITION_READ_TIMEOUT = 120.0  # seconds to read the position topic before giving up loudly


class Relay:
    def __init__(
        self,
        store: EngineStore,
        bootstrap_servers: str,
        prefix: str,
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.on_published = on_published
        self.bootstrap_servers = bootstrap_servers
        self.prefix = prefix
        self.published = 0
        # One relay per store and topic prefix: the lock id derives from both.
        self.lock_id = RELAY_LOCK ^ (
            zlib.crc32(f"{store.datastore.schema}/{prefix}".encode()) & 0x7FFFFFFF
        )

    async def run(self, stopping: asyncio.Event) -> None:
        with self.store.datastore.get_connection() as lock_conn:
            while not stopping.is_set():
                row = lock_conn.execute(
                    "SELECT pg_try_advisory_lock(%s) AS held", (self.lock_id,)
                ).fetchone()
                lock_conn.commit()
                if row and row["held"]:
                    break
                await _sleep_or_stop(stopping, 1.0)
            if stopping.is_set():
                return
            try:
                await self._publish_until(stopping)
            finally:
                lock_conn.execute("SELECT pg_advisory_unlock(%s)", (self.lock_id,))
                lock_conn.commit()

    async def _publish_until(self, stopping: asyncio.Event) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            transactional_id=f"{self.prefix}outbox-relay",
            enable_idempotence=True,
            linger_ms=5,
        )
        await producer.start()
        try:
            position = await self._read_position()
            log.info("outbox relay resumes after row %d", position)
            while True:
                rows = await asyncio.to_thread(self.store.outbox_after, position, BATCH)
                if not rows:
                    if stopping.is_set():
                        return
                    await _sleep_or_stop(stopping, 0.05)
                    continue
                last = rows[-1][0]
                async with producer.transaction():
                    for _, row in rows:
                        key = row.key.encode() if row.key is not None else None
                        await producer.send(self.prefix + row.topic, row.value, key=key)
                    await producer.send(
                        self.prefix + POSITION_TOPIC, orjson.dumps({"position": last}), key=b"relay"
                    )
                position = last
                self.published += len(rows)
                if self.on_published is not None:
                    self.on_published(len(rows))
        finally:
            await producer.stop()

    async def _read_position(self) -> int:
        """The position of the last committed batch: the tail of the position topic."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            # The consumer's own metadata only covers topics it reads; ask for all of them.
            cluster = await consumer._client.fetch_all_metadata()
            partitions = cluster.partitions_for_topic(self.prefix + POSITION_TOPIC)
            if not partitions:
                log.info("no position topic yet: the relay starts at the beginning")
                return 0
            position = 0
            tps = [TopicPartition(self.prefix + POSITION_TOPIC, p) for p in partitions]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            log.info("position topic ends: %s", {tp.partition: end for tp, end in ends.items()})
            deadline = asyncio.get_running_loop().time() + POSITION_READ_TIMEOUT
            for tp in tps:
                end = ends[tp]
                if end == 0:
                    continue
                consumer.seek(tp, max(0, end - 50))
                # Read to the end, however long the first fetch takes: stopping early
                # would send published rows again.
                while (await consumer.position(tp)) < end:
                    if asyncio.get_running_loop().time() > deadline:
                        raise TimeoutError(f"could not read {tp.topic} to its end")
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for record in batch.get(tp, []):
                        position = max(position, int(orjson.loads(record.value)["position"]))
            return position
        finally:
            await consumer.stop()


async def _sleep_or_stop(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
    except TimeoutError:
        return
