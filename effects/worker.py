"""The effects worker on Kafka: effect commands in, outcomes out, provider callbacks served.

One loop: take a batch of records (from `effects`, and from `contacts`, where the engine
writes `power_dialer.added` / `.removed`; the rest of that topic is skipped; consumer group
`<prefix>effects`, no auto-commit), carry it out through the processor (each command
claimed in the ledger before its provider is called), publish the outcomes (idempotent
producer, acks=all), then commit the batch's offsets. Batches overlap: the next one is
fetched and started while the last ones finish, so the processor's send slots never wait
for a batch's slowest sends, the producer's acknowledgements or the commit. A command's
outcomes are published as soon as it is done (per contact in the order of the commands:
a text waiting minutes for its line's pace holds back no one else's), and offsets are
committed batch after batch in the order fetched. A crash
anywhere redelivers the uncommitted batches; the ledger turns the redelivery into
re-published outcomes with the same ids, never a second send. A rebalance waits for the
batches in progress to be committed (the listener takes the same lock as starting one).

A record of `effects` that is no effect command goes to `dlq` in the engine worker's shape
(schemas/dead_letters.py, README "Topics").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# aiokafka ships no type information.
from aiokafka import (  # type: ignore[import-untyped, unused-ignore]
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
)
from aiokafka.errors import (  # type: ignore[import-untyped, unused-ignore]
    CommitFailedError,
    IllegalStateError,
)

from effects.commands import EFFECT_TYPES, CommandRejected, decode_command, effect_id_of
from effects.inbound import InboundHandlers, build_inbound_app
from effects.metrics import EffectsMetrics
from effects.ports import Clock
from effects.processor import EffectProcessor, RetryAbandoned
from effects.settings import EffectsSettings
from effects.wiring import Runtime, open_runtime, utc_now
from schemas.dead_letters import RejectedRecord
from schemas.envelope import LETTER_HEADERS, STRUCTURED_HEADERS, CloudEvent
from schemas.registry import DLQ_TOPIC, topic_for
from streams.outages import pace, run_through_outages, start_quietly, stop_client
from streams.progress import ProgressLog, registry_totals

_log = logging.getLogger(__name__)

COMMANDS_TOPIC = "effects"
MAX_RECORD_BATCH_BYTES = 512 * 1024


@dataclass
class Sent:
    """Events handed to the producer: the acknowledgements to come."""

    pending: list[Any] = field(default_factory=list)


class KafkaPublisher:
    """`Publish` on an AIOKafkaProducer: key = the event's subject, value = its JSON."""

    def __init__(self, producer: Any, prefix: str, metrics: EffectsMetrics | None = None) -> None:
        self._producer = producer
        self._prefix = prefix
        self.metrics = metrics or EffectsMetrics()

    async def __call__(self, topic: str, event: CloudEvent) -> None:
        await self.publish_many([event], topic)

    async def publish_many(self, events: Iterable[CloudEvent], topic: str | None = None) -> None:
        """Send all, then wait for every acknowledgement (order per key is kept)."""
        await self.acknowledged(await self.send(events, topic))

    async def send(self, events: Iterable[CloudEvent], topic: str | None = None) -> Sent:
        """Hand every event to the producer, in order (which keeps their order per key);
        what to wait for. Each is counted published once the broker acknowledges it, not
        when its batch of commands is done: a paced send holds a batch for minutes."""
        sent = Sent()
        for event in events:
            key = event.subject.encode() if event.subject else None
            name = self._prefix + (topic or topic_for(event.type))
            future = await self._producer.send(
                name, value=event.encode(), key=key, headers=STRUCTURED_HEADERS
            )
            future.add_done_callback(self._counter(event.type))
            sent.pending.append(future)
        return sent

    def _counter(self, kind: str) -> Callable[[asyncio.Future[Any]], None]:
        published = self.metrics.published.labels(type=kind)

        def count(future: asyncio.Future[Any]) -> None:
            if not future.cancelled() and future.exception() is None:
                published.inc()

        return count

    async def acknowledged(self, sent: Sent) -> None:
        """Wait until the broker has every event `send` handed over; raise its refusal."""
        if sent.pending:
            await asyncio.gather(*sent.pending)

    async def dead_letter(self, rejected: RejectedRecord) -> None:
        """Keyed as the record was read, in the engine worker's shape."""
        name = self._prefix + DLQ_TOPIC
        future = await self._producer.send(
            name, value=rejected.letter(), key=rejected.record_key, headers=LETTER_HEADERS
        )
        await future
        self.metrics.dead_letters.inc()


class _WaitForBatches(ConsumerRebalanceListener):  # type: ignore[misc, unused-ignore]
    def __init__(self, lock: asyncio.Lock, pipeline: BatchPipeline) -> None:
        self._lock = lock
        self._pipeline = pipeline

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # The batches in progress finish and commit before the partitions go; none starts
        # meanwhile (starting one takes the same lock).
        async with self._lock:
            await self._pipeline.settle()
            _log.info("partitions revoked: %s", sorted(str(tp) for tp in revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        _log.info("partitions assigned: %s", sorted(str(tp) for tp in assigned))


async def commands_in(
    records: Iterable[Any], publisher: KafkaPublisher, commands_topic: str
) -> tuple[list[CloudEvent], int]:
    """The effect commands among `records`, in record order, and how many records were
    dead-lettered.

    Records of other types (the `contacts` topic carries power_dialer.* among contact
    facts) are not ours and are skipped; a bad record in `commands_topic`, or one there that
    is no effect command, is dead-lettered.
    """
    commands: list[CloudEvent] = []
    rejected = 0
    for record in records:
        ours = record.topic == commands_topic
        raw: bytes = record.value or b""  # a tombstone has no value; its letter still does
        try:
            command = decode_command(raw)
            if command.type not in EFFECT_TYPES:
                if not ours:
                    continue
                # Never to the processor: a `step.executed` carries the effect id of the
                # command it caused, and claiming that id would make the command a duplicate.
                raise CommandRejected("type", f"{command.type!r} is not an effect command")
            effect_id_of(command)
        except CommandRejected as error:
            if not ours:
                continue  # the engine's own consumer reports what it cannot read
            _log.error(
                "dead-lettered %s:%s@%s: %s", record.topic, record.partition, record.offset, error
            )
            await publisher.dead_letter(
                RejectedRecord(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    value=raw,
                    field=error.field,
                    reason=error.reason,
                )
            )
            rejected += 1
            continue
        commands.append(command)
    return commands, rejected


async def process_records(
    records: Iterable[Any],
    processor: EffectProcessor,
    publisher: KafkaPublisher,
    commands_topic: str,
) -> int:
    """Carry out one batch and publish its outcomes; returns how many were dead-lettered."""
    commands, rejected = await commands_in(records, publisher, commands_topic)
    await publisher.publish_many(await processor.handle_batch(commands))
    processor.check_credentials()  # before the batch is committed: its rest stays pending
    return rejected


Commit = Callable[[Mapping[Any, int]], Awaitable[None]]


class BatchPipeline:
    """Batches carried out side by side, committed in order.

    Each batch's commands go to the processor as soon as the batch is started. A command's
    outcomes are published once it is done and the commands before it with the same key
    (contact) have published theirs: per key they leave in the order of the commands, and a
    slow send (one waiting for its line's pace) holds back no other contact's outcomes. A
    batch's offsets are committed once all its outcomes are out and the batch before it is
    committed, so a redelivery after a crash starts at the oldest batch not committed (the
    ledger makes its commands their outcomes again, with the same ids, never a resend).
    `room()` holds the next batch back while `ahead` commands are still unfinished: enough
    to keep every send slot busy with a batch waiting behind, and no more.
    """

    def __init__(
        self,
        processor: EffectProcessor,
        publisher: KafkaPublisher,
        commit: Commit,
        commands_topic: str,
        *,
        ahead: int,
    ) -> None:
        self._processor = processor
        self._publisher = publisher
        self._commit = commit
        self._commands_topic = commands_topic
        self._ahead = ahead
        self._unfinished = 0
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_of_key: dict[str | None, asyncio.Task[Sent]] = {}  # publishing, per key
        self._failure: BaseException | None = None
        self._stopping = False

    @property
    def unfinished(self) -> int:
        """Commands started and not yet carried out."""
        return self._unfinished

    async def room(self) -> None:
        """Wait until another batch may start; raise what made a batch fail."""
        while True:
            self._raise_failure()
            if self._unfinished < self._ahead:
                return
            self._changed.clear()
            await self._changed.wait()

    def start(self, batches: Mapping[Any, Sequence[Any]]) -> None:
        """Start carrying out one `getmany` result (records per topic partition)."""
        self._raise_failure()
        if self._stopping:
            raise RuntimeError("the pipeline is stopping: no batch starts after a stop")
        records = [record for part in batches.values() for record in part]
        offsets = {tp: part[-1].offset + 1 for tp, part in batches.items() if part}
        previous = self._tasks[-1] if self._tasks else None
        self._unfinished += len(records)
        task = asyncio.create_task(self._run(records, offsets, previous))
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    async def drain(self) -> None:
        """Wait for every batch started to be published and committed; raise a failure."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        self._raise_failure()

    async def settle(self) -> None:
        """Wait for every batch started to end, in success or not."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    def stop_retrying(self) -> None:
        """A stop: the sends in progress end; those to be tried again are left for the
        next processor, with their batch (and the ones after it) uncommitted. No batch
        starts after it: one would commit offsets past a command left behind."""
        self._stopping = True
        self._processor.stop_retrying()

    async def _run(
        self, records: list[Any], offsets: dict[Any, int], previous: asyncio.Task[None] | None
    ) -> None:
        counted = len(records)  # not yet released from `unfinished`

        def finished() -> None:
            nonlocal counted
            if counted > 0:
                counted -= 1
                self._release(1)

        try:
            commands, _ = await commands_in(records, self._publisher, self._commands_topic)
            # The records that were no commands of ours (skipped, dead-lettered) are done.
            self._release(counted - len(commands))
            counted = len(commands)
            # Every command to its end before anything is raised: none is left running
            # unwatched.
            results = await asyncio.gather(
                *(self._published(command, finished) for command in commands),
                return_exceptions=True,
            )
            failures = [result for result in results if isinstance(result, BaseException)]
            # Refused credentials leave commands pending: this batch must not be committed,
            # and the worker stops saying why (before an abandoned retry, which would not).
            self._processor.check_credentials()
            if failures:
                # A real failure before an abandoned retry: the batch must fail, not wait.
                raise min(failures, key=lambda error: isinstance(error, RetryAbandoned))
            batch = Sent()
            for sent in results:
                if isinstance(sent, Sent):
                    batch.pending += sent.pending
            await self._publisher.acknowledged(batch)
            if previous is not None:
                await previous  # its failure is this batch's: no commit
            try:
                await self._commit(offsets)
            except (CommitFailedError, IllegalStateError) as error:
                # Another member owns these partitions now (a batch fetched before a
                # rebalance and started after it) and will see the batch again: the ledger
                # makes that a replay of outcomes, not a resend.
                _log.warning("commit failed after rebalance: %s", error)
        finally:
            self._release(counted)
            counted = 0

    def _published(self, command: CloudEvent, finished: Callable[[], None]) -> asyncio.Task[Sent]:
        """The command carried out and its outcomes handed to the producer after those of
        the last command started with the same key (the producer keeps that order; the
        batch waits for their acknowledgements before its commit)."""
        key = command.subject
        task = asyncio.create_task(self._carry_out(command, self._last_of_key.get(key), finished))
        self._last_of_key[key] = task
        task.add_done_callback(lambda done: self._forget_key(key, done))
        return task

    async def _carry_out(
        self, command: CloudEvent, before: asyncio.Task[Sent] | None, finished: Callable[[], None]
    ) -> Sent:
        try:
            outcomes = await self._processor.handle(command)
        finally:
            finished()
        if before is not None:
            # Its failure is this one's: nothing of the key is published out of order. Not
            # cancelled with this one: it belongs to its own batch.
            await asyncio.shield(before)
        return await self._publisher.send(outcomes)

    def _forget_key(self, key: str | None, task: asyncio.Task[Sent]) -> None:
        if self._last_of_key.get(key) is task:
            del self._last_of_key[key]

    def _release(self, count: int) -> None:
        if count:
            self._unfinished -= count
            self._changed.set()

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.remove(task)
        failure = None if task.cancelled() else task.exception()
        # An abandoned retry is no failure: its batch (and each after it, which awaits it)
        # just stays uncommitted, for the next processor.
        if failure is not None and not isinstance(failure, RetryAbandoned):
            self._failure = self._failure or failure
            self._processor.stop_retrying()  # the worker is going down: no backoff to wait
        self._changed.set()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure


async def consume(
    consumer: Any,
    pipeline: BatchPipeline,
    lock: asyncio.Lock,
    stop: asyncio.Event,
    batch_size: int,
    progress: ProgressLog | None = None,
) -> None:
    """Feed the pipeline from the consumer until `stop`; then let the batches finish."""

    async def stop_retrying_on_stop() -> None:
        # At once, not when the loop comes round: with the provider down, every send slot
        # waits out a backoff and the loop waits in `room()` for one of them to end.
        await stop.wait()
        pipeline.stop_retrying()

    watcher = asyncio.create_task(stop_retrying_on_stop())
    try:
        while not stop.is_set():
            await pipeline.room()
            if stop.is_set():
                break
            batches = await consumer.getmany(timeout_ms=500, max_records=batch_size)
            if stop.is_set():
                break  # asked to stop while waiting: these records stay uncommitted, redelivered
            if batches:
                async with lock:
                    pipeline.start(batches)
            said = progress.line() if progress is not None else None
            if said is not None:
                _log.info("%s", said)
    except asyncio.CancelledError:
        pipeline.cancel()  # sends cut short stay in flight; recovery makes them unknown
        await pipeline.settle()
        raise
    except Exception:
        # Sends already begun end and are recorded; later batches publish nothing, and
        # none waits out a retry's backoff.
        pipeline.stop_retrying()
        await pipeline.settle()
        raise
    finally:
        watcher.cancel()
    pipeline.stop_retrying()
    await pipeline.drain()


# How often the worker checks that it still holds its ledger lease.
LEASE_EVERY = 5.0


async def run_effects_worker(
    settings: EffectsSettings,
    *,
    stop: asyncio.Event | None = None,
    clock: Clock = utc_now,
) -> None:
    """Run until `stop` is set (or forever).

    A PostgreSQL or broker that goes away while commands are carried out ends the run (its
    sends in progress end first); the next starts once they answer, as a restarted process
    would: a new ledger owner whose recovery makes the last run's sends in doubt
    `effect.unknown`, and a new consumer that resumes from the committed offsets, the ledger
    turning the redelivered commands into their outcomes again, never a second send.
    """
    stop = stop or asyncio.Event()
    # The first ledger is opened outside the waits: a database that cannot be reached at
    # the start is more likely a wrong DATABASE_URL than an outage, and says so at once.
    serves = settings.topic_prefix
    opened = [await open_runtime(settings, clock=clock, serves=serves)]

    async def run() -> None:
        runtime = (
            opened.pop() if opened else await open_runtime(settings, clock=clock, serves=serves)
        )
        await _run_until_stopped(settings, stop, runtime)

    await run_through_outages(run, stop, "effects worker", _log)


async def _run_until_stopped(
    settings: EffectsSettings, stop: asyncio.Event, runtime: Runtime
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        # A full record batch makes `send` wait until the partition's last one is on the
        # broker: with the default 16 KiB (~30 outcomes) a batch's publishing was a chain of
        # round trips behind the sends in progress. One record batch stays well under the
        # broker's 1 MB message limit.
        max_batch_size=MAX_RECORD_BATCH_BYTES,
    )
    pace(producer)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        # A batch paced by the per-line rate limit can take minutes.
        max_poll_interval_ms=15 * 60 * 1000,
        # A read_committed fetch waiting at the broker is answered when its wait runs out,
        # not when the engine's transaction commits: the default 500 ms would be the
        # latency of every effect (measured in bench_pipeline).
        fetch_max_wait_ms=20,
    )
    pace(consumer)
    lock = asyncio.Lock()
    runners: list[web.AppRunner] = []
    recovery: asyncio.Task[None] | None = None
    leasing: asyncio.Task[None] | None = None
    try:
        await start_quietly(producer)
        publisher = KafkaPublisher(producer, settings.topic_prefix)
        processor = runtime.processor
        publisher.metrics.count_retries(lambda: processor.retries)
        runners.append(await _serve_inbound(settings, runtime, publisher))
        if settings.metrics_port is not None:
            runners.append(await _serve_metrics(settings, publisher.metrics))
        await publisher.publish_many(await runtime.processor.recover())
        recovery = asyncio.create_task(_recover_periodically(runtime, publisher, settings))
        leasing = asyncio.create_task(_keep_lease(runtime))
        pipeline = BatchPipeline(
            runtime.processor,
            publisher,
            consumer.commit,
            settings.topic(COMMANDS_TOPIC),
            ahead=settings.concurrency + settings.batch_size,
        )
        topics = [settings.topic(name) for name in settings.command_topics]
        consumer.subscribe(topics, listener=_WaitForBatches(lock, pipeline))
        await start_quietly(consumer)
        _log.info("effects worker consuming %s", ", ".join(topics))
        progress = ProgressLog(
            registry_totals(
                publisher.metrics.registry,
                ("dripstream_effects_published_total", "dripstream_effects_dead_letters_total"),
            ),
            ("outcome(s) and contact change(s) published", "dead letter(s)"),
        )
        await consume(consumer, pipeline, lock, stop, settings.batch_size, progress)
    finally:
        for task in (recovery, leasing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await stop_client(consumer)
        for runner in runners:
            await runner.cleanup()
        await stop_client(producer)
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
        mailgun_signing_key=settings.mailgun_webhook_signing_key,
    )
    app = build_inbound_app(handlers)
    if settings.metrics_port is None:
        app.router.add_get("/metrics", publisher.metrics.serve)
    runner = await _served(app, settings.http_host, settings.http_port)
    _log.info("provider callbacks on %s:%s", settings.http_host, settings.http_port)
    return runner


async def _serve_metrics(settings: EffectsSettings, metrics: EffectsMetrics) -> web.AppRunner:
    """`/metrics` apart from the callbacks: the callback server faces the providers, so the
    internet, which has no business reading the counts of what was sent."""
    app = web.Application()
    app.router.add_get("/metrics", metrics.serve)
    runner = await _served(app, settings.metrics_host, settings.metrics_port)
    _log.info("metrics on %s:%s/metrics", settings.metrics_host, settings.metrics_port)
    return runner


async def _served(app: web.Application, host: str, port: int | None) -> web.AppRunner:
    """`app` listening on host:port; a port that cannot be had leaves nothing set up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
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


async def _keep_lease(runtime: Runtime) -> None:
    """The lease tells other workers this one is alive; PostgreSQL drops it with its
    connection (a restart, a failover), while the pool goes on reconnecting. Checked, and
    taken again, every LEASE_EVERY seconds."""
    while True:
        await asyncio.sleep(LEASE_EVERY)
        try:
            if await runtime.ledger.keep_lease():
                _log.warning(
                    "the ledger lease was lost and is taken again; sends in flight meanwhile"
                    " may have been marked unknown by another worker's recovery"
                )
        except Exception:
            _log.exception("the ledger lease could not be taken again; will try again")
