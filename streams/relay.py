"""The outbox relay: recorded decisions to the output topics, in order, exactly once.

Each batch of outbox rows is published in one Kafka transaction together with the relay's
position (a record on `<prefix>relay-position`), so a crash either publishes the batch and
its position or neither. A PostgreSQL advisory lock keeps one relay active at a time; the
fixed transactional id fences a relay that lost it.

The worker runs the relay in a process of its own (`start_relay_process`), so publishing
uses the second core instead of taking turns with the engine on the worker's event loop.
It wakes on the NOTIFY that every outbox write sends at commit (streams/store.py) and
polls only as a fallback. Rows are packed into record batches per partition here, with
Kafka's default partitioner (murmur2 of the key), rather than handed to the producer one
`send` at a time, which costs tens of microseconds a record in Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import signal
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from schemas.dead_letters import RejectedRecord
from schemas.envelope import LETTER_HEADERS, STRUCTURED_HEADERS
from schemas.registry import DLQ_TOPIC
from streams.outages import (
    log_as_service,
    pace,
    run_through_outages,
    sleep_unless_stopped,
    stop_client,
)
from streams.store import OUTBOX_CHANNEL, OutboxRow, outbox_select

log = logging.getLogger("dripstream.relay")

POSITION_TOPIC = "relay-position"
RELAY_LOCK = 0x64726970  # "drip": the advisory lock id of the relay, per schema and prefix
BATCH = 5000  # rows per Kafka transaction at most: a backlog goes out in few transactions
MAX_BATCH_BYTES = 512 * 1024  # one record batch, well under the broker's 1 MB message limit
# The largest key and value an empty batch takes with room to spare (the batch's and the
# record's framing, the headers).
MAX_RECORD_BYTES = MAX_BATCH_BYTES - 4096
POLL_SECONDS = 1.0  # without a notification (a missed one, a lost connection), look anyway
POSITION_READ_TIMEOUT = 120.0  # seconds to read the position topic before giving up loudly


@dataclass(frozen=True, slots=True)
class RelaySettings:
    bootstrap_servers: str
    database_url: str
    prefix: str
    schema: str = "public"
    batch: int = BATCH
    poll_seconds: float = POLL_SECONDS


@functools.lru_cache(maxsize=1 << 16)
def _key_hash(key: bytes) -> int:
    # The same keys come again and again (a contact's decisions); murmur2 is pure Python.
    return int(murmur2(key)) & 0x7FFFFFFF


def record_key(row: OutboxRow) -> bytes | None:
    """The Kafka key of an outbox row. A dead letter's is the refused record's own bytes,
    kept exact in its `key_hex`: the outbox's text column holds a key that is not UTF-8 (or
    has a NUL) only with U+FFFD in its place, which would key and place the letter apart
    from the record it stands for."""
    if row.topic == DLQ_TOPIC:
        try:
            letter = orjson.loads(row.value)
            if "key_hex" in letter:
                exact = letter["key_hex"]
                # An empty key is a key (b""), and hashes apart from none.
                return None if exact is None else bytes.fromhex(exact)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            pass  # not a letter this relay wrote: its text key, as any row's
    return row.key.encode() if row.key is not None else None


def partition_for(key: bytes | None, event_id: str, partitions: int) -> int:
    """Kafka's default partitioner for a key, so a contact's records land where every
    other producer of that key puts them; keyless rows spread by their event id."""
    return _key_hash(key if key is not None else event_id.encode()) % partitions


class Relay:
    def __init__(
        self,
        settings: RelaySettings,
        on_published: Callable[[int], None] | None = None,
        on_dead_lettered: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_published = on_published
        self.on_dead_lettered = on_dead_lettered
        self.prefix = settings.prefix
        self.published = 0
        self.hurry = False  # the worker is gone: stop after the batch in hand
        self.idle = asyncio.Event()  # set while it waits for a commit to wake it
        self.wake = asyncio.Event()  # set by a commit's notification
        self.partition_counts: dict[str, int] = {}
        self.select = outbox_select(settings.schema)
        # One relay per store and topic prefix: the lock id derives from both.
        self.lock_id = RELAY_LOCK ^ (
            zlib.crc32(f"{settings.schema}/{settings.prefix}".encode()) & 0x7FFFFFFF
        )

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish until `stopping` is set and the outbox is drained (or, with `hurry`,
        until the batch in hand is done)."""
        url = self.settings.database_url
        async with (
            await psycopg.AsyncConnection.connect(url, autocommit=True) as listen_conn,
            await psycopg.AsyncConnection.connect(url, autocommit=True) as read_conn,
        ):
            held = False
            while not held and not stopping.is_set():
                cursor = await listen_conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", (self.lock_id,)
                )
                row = await cursor.fetchone()
                held = bool(row and row[0])
                if not held:
                    await sleep_unless_stopped(stopping, 1.0)
            if not held or self.hurry:
                return
            wake = self.wake
            await listen_conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
            listener = asyncio.create_task(_listen(listen_conn, wake))
            stopper = asyncio.create_task(_wake_on(stopping, wake))  # a stop ends the wait too
            try:
                await self._publish_until(stopping, read_conn, wake)
            finally:
                for task in (listener, stopper):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                        await task

    async def run_through_outages(self, stopping: asyncio.Event) -> None:
        """`run`, started again when PostgreSQL or the broker goes away: it reconnects,
        takes the lock again and resumes from the position on Kafka, so nothing is
        published twice or left out (a transaction cut short is aborted by the next
        producer under the same transactional id)."""
        await run_through_outages(lambda: self.run(stopping), stopping, "outbox relay", log)

    async def _publish_until(
        self, stopping: asyncio.Event, conn: psycopg.AsyncConnection[Any], wake: asyncio.Event
    ) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            transactional_id=f"{self.prefix}outbox-relay",
            enable_idempotence=True,
            linger_ms=0,  # record batches are built here; a commit sends what is left
            max_batch_size=MAX_BATCH_BYTES,
        )
        pace(producer)
        await producer.start()
        try:
            position = await self._read_position()
            log.info("outbox relay resumes after row %d", position)
            ahead: asyncio.Task[list[tuple[int, OutboxRow]]] | None = None
            while True:
                if ahead is None:
                    wake.clear()  # before reading: a commit after it wakes the wait below
                    rows = await self._fetch(conn, position)
                else:
                    rows, ahead = await ahead, None
                if not rows:
                    if stopping.is_set():
                        return
                    self.idle.set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), self.settings.poll_seconds)
                    self.idle.clear()
                    continue
                last = rows[-1][0]
                async with producer.transaction():
                    delivered, letters = await self._send(producer, rows)
                    delivered.append(
                        await producer.send(
                            self.prefix + POSITION_TOPIC,
                            orjson.dumps({"position": last}),
                            key=b"relay",
                        )
                    )
                    # Read the next rows while this transaction is acknowledged and
                    # commits; a wake-up that came before this read is for rows it will
                    # see, so forget it.
                    if not self.hurry:
                        wake.clear()
                        ahead = asyncio.create_task(self._fetch(conn, last))
                    # Every batch acknowledged before the commit: a batch the broker
                    # refused (a record over its size limit) raises here, the
                    # transaction aborts and the relay stops loudly, rather than commit
                    # the position past rows that never reached Kafka.
                    await asyncio.gather(*delivered)
                position = last
                self.published += len(rows)
                if self.on_published is not None:
                    self.on_published(len(rows))
                if letters and self.on_dead_lettered is not None:
                    self.on_dead_lettered(letters)  # counted once committed
                if self.hurry:
                    return
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                    await ahead
            await stop_client(producer)

    async def _fetch(
        self, conn: psycopg.AsyncConnection[Any], position: int
    ) -> list[tuple[int, OutboxRow]]:
        cursor = await conn.execute(
            self.select, (position, self.settings.batch), binary=True, prepare=True
        )
        return [
            (int(i), OutboxRow(event_id, topic, key, bytes(value)))
            for i, event_id, topic, key, value in await cursor.fetchall()
        ]

    async def _send(
        self, producer: Any, rows: Sequence[tuple[int, OutboxRow]]
    ) -> tuple[list[asyncio.Future[Any]], int]:
        """The rows as record batches, one open batch per partition, in row order: a
        partition's records keep the order they were decided in. Returns the batches'
        delivery futures, and how many rows went to `dlq` instead, too large for a record."""
        delivered: list[asyncio.Future[Any]] = []
        open_batches: dict[tuple[str, int], Any] = {}
        letters = 0
        for row_id, decided in rows:
            row = decided
            key = record_key(row)
            size = len(row.value) + len(key or b"")
            if size > MAX_RECORD_BYTES:
                bound = self.prefix + row.topic
                count = await self._partition_count(producer, bound)
                row = _too_large(row_id, row, key, size, bound, count)
                letters += 1
                key = record_key(row)
            topic = self.prefix + row.topic
            count = await self._partition_count(producer, topic)
            where = (topic, partition_for(key, row.event_id, count))
            batch = open_batches.get(where)
            if batch is None:
                batch = open_batches[where] = producer.create_batch()
            headers = LETTER_HEADERS if row.topic == DLQ_TOPIC else STRUCTURED_HEADERS
            if batch.append(key=key, value=row.value, timestamp=None, headers=headers) is None:
                # Full: send it and start the next one for this partition.
                batch.close()
                delivered.append(await producer.send_batch(batch, where[0], partition=where[1]))
                batch = open_batches[where] = producer.create_batch()
                if batch.append(key=key, value=row.value, timestamp=None, headers=headers) is None:
                    raise ValueError(f"outbox row {row.event_id} is larger than a record batch")
        for (topic, partition), batch in open_batches.items():
            batch.close()
            delivered.append(await producer.send_batch(batch, topic, partition=partition))
        return delivered, letters

    async def _partition_count(self, producer: Any, topic: str) -> int:
        count = self.partition_counts.get(topic)
        if count is None:
            count = self.partition_counts[topic] = len(await producer.partitions_for(topic))
        return count

    async def _read_position(self) -> int:
        """The position of the last committed batch: the tail of the position topic."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        pace(consumer)
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
            await stop_client(consumer)


def _too_large(
    row_id: int, row: OutboxRow, key: bytes | None, size: int, topic: str, partitions: int
) -> OutboxRow:
    """A `dlq` letter in place of a row too large for a Kafka record (an input's 600 KB
    name put into a text twice): the relay stopped at such a row, at every start, and held
    back everything decided after it. The letter names the topic and partition the row was
    bound for, and as `offset` its row in the outbox, where it stays whole."""
    log.error(
        "outbox row %d (%s) is %d bytes, more than a record may carry: dead-lettered",
        row_id,
        row.event_id,
        size,
    )
    letter = RejectedRecord(
        topic,
        partition_for(key, row.event_id, partitions),
        row_id,
        key,
        row.value,
        "event",
        f"an output of {size} bytes, more than a Kafka record may carry here"
        f" ({MAX_RECORD_BYTES}): not published; kept whole in the outbox, row {row_id}",
    )
    return OutboxRow(f"{row.event_id}:too-large", DLQ_TOPIC, letter.text_key, letter.letter())


async def _listen(conn: psycopg.AsyncConnection[Any], wake: asyncio.Event) -> None:
    async for _ in conn.notifies():
        wake.set()


async def _wake_on(stopping: asyncio.Event, wake: asyncio.Event) -> None:
    await stopping.wait()
    wake.set()


# ---- the relay's own process ---------------------------------------------------------------


def start_relay_process(
    settings: RelaySettings,
    published: Synchronized[int] | None = None,
    dead_lettered: Synchronized[int] | None = None,
) -> SpawnProcess:
    """The relay in a child process. It drains the outbox and exits on SIGTERM, and stops
    after the batch in hand when its parent dies (even by SIGKILL), so a killed worker
    leaves no relay behind to hold the lock. It adds the rows it publishes to `published`,
    and those it had to send to `dlq` instead to `dead_lettered`."""
    context = multiprocessing.get_context("spawn")  # no copy of the worker's Kafka clients
    process = context.Process(
        target=relay_process_main,
        args=(settings, published, dead_lettered),
        name="dripstream-relay",
    )
    process.daemon = True  # a worker that exits normally takes its relay with it
    process.start()
    return process


def relay_process_main(
    settings: RelaySettings,
    published: Synchronized[int] | None,
    dead_lettered: Synchronized[int] | None = None,
) -> None:
    log_as_service()

    def adding_to(shared: Synchronized[int] | None) -> Callable[[int], None]:
        def add(n: int) -> None:
            if shared is not None:
                with shared.get_lock():
                    shared.value += n

        return add

    async def main() -> None:
        relay = Relay(settings, adding_to(published), adding_to(dead_lettered))
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)

        parent = multiprocessing.parent_process()
        if parent is not None:
            sentinel = parent.sentinel

            def orphaned() -> None:
                relay.hurry = True
                stopping.set()
                loop.remove_reader(sentinel)

            # The parent's end of this pipe closes when the parent dies, however it dies.
            loop.add_reader(sentinel, orphaned)
        await relay.run_through_outages(stopping)
        log.info("outbox relay stopped after %d rows", relay.published)

    asyncio.run(main())
