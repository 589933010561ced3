"""`dripstream projections run`: the PostgreSQL read models kept current from the output topics.

A consumer group reads `decisions`, `effects`, `contacts` and `outcomes` (read_committed:
of the relay's records only what its transactions committed) and applies each poll to the
read models in one PostgreSQL transaction together with the offsets it reached
(projections/postgres.py `apply_consumed`).
Those stored offsets, not Kafka's committed ones, say where reading resumes: on every
assignment each partition is sought to its stored offset, so a crash between the
transaction and Kafka's commit re-reads records the read models already hold, and they are
skipped. Kafka's offsets are still committed afterwards, as a view of progress for tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from projections.pg_reads import DEFAULT_SCHEMA
from projections.postgres import PostgresProjection
from projections.stream import READ_MODEL_TOPICS, Consumed, MalformedEventError, decode_line
from streams.outages import pace, start_quietly, stop_client
from streams.progress import ProgressLog

log = logging.getLogger(__name__)

POLL_MS = 500
MAX_RECORDS = 5_000


@dataclass(frozen=True, slots=True)
class ProjectorSettings:
    bootstrap_servers: str
    topic_prefix: str
    schema: str = DEFAULT_SCHEMA

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self.topic_prefix + name for name in READ_MODEL_TOPICS)

    @property
    def group_id(self) -> str:
        """One consumer group per schema: projectors of one schema share the partitions,
        a second schema (to keep serving the old one while another fills) reads them all."""
        group = self.topic_prefix + "projections"
        return group if self.schema == DEFAULT_SCHEMA else f"{group}.{self.schema}"


def consumed(topic: str, partition: int, offset: int, value: bytes | None) -> Consumed:
    """One record as the read models take it: an output event, or None for anything else
    (a record that is not JSON or not an event still moves its partition's offset)."""
    try:
        event = decode_line(value or b"")
    except (orjson.JSONDecodeError, MalformedEventError) as error:
        log.warning("skipped %s:%d@%d: %s", topic, partition, offset, error)
        return Consumed(topic, partition, offset, None)
    return Consumed(topic, partition, offset, event)


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc, unused-ignore]
    """Each partition taken starts where the read models say, not where Kafka does."""

    def __init__(self, consumer: AIOKafkaConsumer, projection: PostgresProjection) -> None:
        self._consumer = consumer
        self._projection = projection
        # The lookup's error, for the projector's loop to raise: aiokafka only logs what a
        # listener raises, and the partitions would stay paused without a word.
        self.failure: Exception | None = None

    async def on_partitions_revoked(self, revoked: Any) -> None:
        log.info("partitions revoked: %s", sorted(str(tp) for tp in revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        taken = list(assigned)
        # Nothing is read from the partitions until each is at its stored offset: while
        # the offsets are looked up (an await), the fetcher would read them from the
        # group's committed offsets, and those records, applied first, would make the
        # earlier ones look like redeliveries (a `--reset` lost them: first with a seek
        # awaited per partition, then, under load, during this lookup). Offset 0 gone by
        # retention resets to the earliest kept (auto_offset_reset).
        self._consumer.pause(*taken)
        try:
            stored = await asyncio.to_thread(self._projection.offsets)
        except Exception as error:
            self.failure = error
            raise
        for tp in taken:
            self._consumer.seek(tp, stored.get((tp.topic, tp.partition), 0))
        self._consumer.resume(*taken)
        log.info("partitions assigned: %s", sorted(str(tp) for tp in taken))


async def run_projector(
    settings: ProjectorSettings, projection: PostgresProjection, stop: asyncio.Event
) -> int:
    """Apply the output topics to the read models until `stop` is set; returns how many
    events were new to them."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        # A read_committed fetch parked at the broker is answered when its wait runs out.
        fetch_max_wait_ms=100,
    )
    pace(consumer)
    listener = _SeekToStored(consumer, projection)
    consumer.subscribe(settings.topics, listener=listener)
    applied = 0
    progress = ProgressLog(lambda: (applied,), ("new event(s) applied to the read models",))
    try:
        await start_quietly(consumer)  # inside: a failed start is stopped too
        while not stop.is_set():
            said = progress.line()
            if said is not None:
                log.info("%s", said)
            if listener.failure is not None:
                raise listener.failure
            polled = asyncio.ensure_future(
                consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
            )
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({polled, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not polled.done():
                polled.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await polled
                break
            records = [
                consumed(tp.topic, tp.partition, record.offset, record.value)
                for tp, batch in polled.result().items()
                for record in batch
            ]
            if not records:
                continue
            applied += await asyncio.to_thread(projection.apply_consumed, records)
            try:
                await consumer.commit()
            except KafkaError as error:  # a view of progress only: the store decides
                log.debug("could not commit the consumer's offsets: %s", error)
    finally:
        await stop_client(consumer)
    return applied
