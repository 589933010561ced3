"""The effects worker on Kafka: effect commands in, outcomes out, provider callbacks served.

One loop: take a batch of records (from `effects`, and from `contacts`, where the engine
writes `power_dialer.added` / `.removed`; the rest of that topic is skipped; consumer group
`dripstream-effects`, no auto-commit), carry it out through the processor (each command
claimed in the ledger before its provider is called), publish the outcomes (idempotent
producer, acks=all), then commit the batch's offsets. A crash anywhere redelivers the batch;
the ledger turns the redelivery into re-published outcomes with the same ids, never a
second send. A rebalance waits for the batch in progress to be committed (the listener
takes the same lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from aiohttp import web

# aiokafka ships no type information.
from aiokafka import (  # type: ignore[import-untyped, unused-ignore]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
)
from aiokafka.errors import CommitFailedError  # type: ignore[import-untyped, unused-ignore]

from effects.commands import EFFECT_TYPES, CommandRejected, decode_command, effect_id_of
from effects.inbound import InboundHandlers, build_inbound_app
from effects.outcomes import topic_for
from effects.ports import Clock
from effects.processor import EffectProcessor
from effects.settings import EffectsSettings
from effects.wiring import Runtime, open_runtime, utc_now
from schemas.envelope import CloudEvent

_log = logging.getLogger(__name__)

COMMANDS_TOPIC = "effects"
DEAD_LETTER_TOPIC = "dlq"


class KafkaPublisher:
    """`Publish` on an AIOKafkaProducer: key = the event's subject, value = its JSON."""

    def __init__(self, producer: Any, prefix: str) -> None:
        self._producer = producer
        self._prefix = prefix

    async def __call__(self, topic: str, event: CloudEvent) -> None:
        await self.publish_many([event], topic)

    async def publish_many(self, events: Iterable[CloudEvent], topic: str | None = None) -> None:
        """Send all, then wait for every acknowledgement (order per key is kept)."""
        pending = []
        for event in events:
            key = event.subject.encode() if event.subject else None
            name = self._prefix + (topic or topic_for(event))
            pending.append(await self._producer.send(name, value=event.encode(), key=key))
        if pending:
            await asyncio.gather(*pending)

    async def dead_letter(self, raw: bytes, reason: str, key: bytes | None) -> None:
        future = await self._producer.send(
            self._prefix + DEAD_LETTER_TOPIC,
            value=raw,
            key=key,
            headers=[("dripstream-reason", reason.encode())],
        )
        await future


class _WaitForBatch(ConsumerRebalanceListener):  # type: ignore[misc, unused-ignore]
    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # The batch in progress finishes and commits before the partitions go.
        async with self._lock:
            _log.info("partitions revoked: %s", sorted(str(tp) for tp in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        _log.info("partitions assigned: %s", sorted(str(tp) for tp in assigned))


async def process_records(
    records: Iterable[Any],
    processor: EffectProcessor,
    publisher: KafkaPublisher,
    commands_topic: str,
) -> int:
    """Decode, carry out and publish one batch; returns how many were dead-lettered.

    Records of other types (the `contacts` topic carries power_dialer.* among contact
    facts) are not ours and are skipped; a bad record in `commands_topic` is dead-lettered.
    """
    commands: list[CloudEvent] = []
    rejected = 0
    for record in records:
        ours = record.topic == commands_topic
        try:
            command = decode_command(record.value)
            if command.type not in EFFECT_TYPES and not ours:
                continue
            effect_id_of(command)
        except CommandRejected as error:
            if not ours:
                continue  # the engine's own consumer reports what it cannot read
            _log.error(
                "dead-lettered %s:%s@%s: %s", record.topic, record.partition, record.offset, error
            )
            await publisher.dead_letter(record.value, str(error), record.key)
            rejected += 1
            continue
        commands.append(command)
    outcomes = await processor.handle_batch(commands)
    await publisher.publish_many(outcomes)
    return rejected


async def run_effects_worker(
    settings: EffectsSettings,
    *,
    stop: asyncio.Event | None = None,
    clock: Clock = utc_now,
) -> None:
    """Run until `stop` is set (or forever)."""
    stop = stop or asyncio.Event()
    runtime = await open_runtime(settings, clock=clock)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        # A batch paced by the per-line rate limit can take minutes.
        max_poll_interval_ms=15 * 60 * 1000,
    )
    lock = asyncio.Lock()
    runner: web.AppRunner | None = None
    recovery: asyncio.Task[None] | None = None
    try:
        await producer.start()
        publisher = KafkaPublisher(producer, settings.topic_prefix)
        runner = await _serve_inbound(settings, runtime, publisher)
        await publisher.publish_many(await runtime.processor.recover())
        recovery = asyncio.create_task(_recover_periodically(runtime, publisher, settings))
        topics = [settings.topic(name) for name in settings.command_topics]
        consumer.subscribe(topics, listener=_WaitForBatch(lock))
        await consumer.start()
        _log.info("effects worker consuming %s", ", ".join(topics))
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=settings.batch_size)
            if not batches:
                continue
            async with lock:
                records = [record for part in batches.values() for record in part]
                await process_records(
                    records, runtime.processor, publisher, settings.topic(COMMANDS_TOPIC)
                )
                offsets = {tp: part[-1].offset + 1 for tp, part in batches.items()}
                try:
                    await consumer.commit(offsets)
                except CommitFailedError as error:
                    # Another member owns these partitions now and will see the batch
                    # again: the ledger makes that a replay of outcomes, not a resend.
                    _log.warning("commit failed after rebalance: %s", error)
    finally:
        if recovery is not None:
            recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recovery
        await consumer.stop()
        if runner is not None:
            await runner.cleanup()
        await producer.stop()
        await runtime.close()


async def _serve_inbound(
    settings: EffectsSettings, runtime: Runtime, publisher: KafkaPublisher
) -> web.AppRunner:
    handlers = InboundHandlers(
        ledger=runtime.ledger,
        publish=publisher,
        clock=runtime.clock,
        public_base_url=settings.public_url,
        twilio_auth_token=settings.twilio_auth_token,
        sendgrid_public_key=settings.sendgrid_webhook_public_key,
        sendgrid_inbound_token=settings.sendgrid_inbound_token,
    )
    runner = web.AppRunner(build_inbound_app(handlers), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.http_host, settings.http_port).start()
    _log.info("provider callbacks on %s:%s", settings.http_host, settings.http_port)
    return runner


async def _recover_periodically(
    runtime: Runtime, publisher: KafkaPublisher, settings: EffectsSettings
) -> None:
    """Another worker may die while this one lives: its in-flight rows become unknown here."""
    while True:
        await asyncio.sleep(settings.recovery_interval_seconds)
        try:
            await publisher.publish_many(await runtime.processor.recover())
        except Exception:
            _log.exception("recovery pass failed; will try again")
