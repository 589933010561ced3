"""`dripstream worker`: the engine on Kafka and PostgreSQL, each decision exactly once.

A consumer group reads the co-partitioned input topics; the range assignor gives one
worker partition p of every input topic (a "group"). Records of a group are decided in
order (streams/ordering.py), and each group's batch is one PostgreSQL transaction holding
the accepted inputs, their decisions and the group's Kafka positions (streams/store.py);
only then are the offsets committed to Kafka. A record at or below the stored position is
a redelivery and changes nothing. On every assignment the engine is rebuilt from the stored
inputs of its groups, so a worker never decides on state it has not recorded. Decisions
reach Kafka through the outbox relay (streams/relay.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.coordinator.assignors.range import RangePartitionAssignor  # type: ignore[import-untyped]
from aiokafka.errors import CommitFailedError  # type: ignore[import-untyped]
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from aggregates.engine import DEFINITION_COMMANDS, Engine
from schemas.envelope import ENGINE_SOURCE, CloudEvent
from schemas.registry import EVENT_TYPES
from schemas.validation import EventRejected, decode_event
from streams import routing
from streams.metrics import WorkerMetrics
from streams.ordering import GroupBuffer, Pending
from streams.relay import Relay
from streams.store import (
    AlreadyRecorded,
    Definition,
    EngineStore,
    InputRecord,
    OutboxRow,
    outbox_rows,
)

log = logging.getLogger("dripstream.worker")

INPUT_TOPICS = ("contacts", "calls", "messages", "appointments", "intake", "commands")
GROUP_ID = "engine"
FINISHED_AFTER = 2.0  # seconds without a record before every topic counts as read to the end
Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    bootstrap_servers: str
    database_url: str
    topic_prefix: str = "dripstream."
    clock: str = "wall"  # "wall" or "event"
    group_id: str | None = None  # default: `<prefix>engine`, one group per deployment
    batch_size: int = 2000
    idle_ms: int = 200
    metrics_port: int | None = None
    relay: bool = True
    schema: str = "public"


def topic_for(event_type: str) -> str:
    info = EVENT_TYPES.get(event_type)
    return info.topic if info else "decisions"


@dataclass(slots=True)
class _Batch:
    """What one group's records of a batch come to, before it is recorded."""

    inputs: list[InputRecord] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    last: dict[str, int] = field(default_factory=dict)  # topic -> last offset decided
    definition: Definition | None = None


class EngineWorker:
    def __init__(self, settings: WorkerSettings, clock: Clock = wall_clock) -> None:
        self.settings = settings
        self.clock = clock
        self.event_clock = settings.clock == "event"
        self.store = EngineStore(settings.database_url, settings.schema)
        self.metrics = WorkerMetrics()
        self.engine = Engine()
        self.partition_count = 0
        self.partition_clock: dict[int, datetime] = {}
        self.definitions_version = 0
        self.positions: dict[tuple[str, int], int] = {}
        self.assigned: set[TopicPartition] = set()
        self.buffers: dict[int, GroupBuffer] = {}
        self.quiet_since: float | None = None
        self.stale = False  # set when the store refused a batch: rebuild before going on
        self.rebuilding = False
        self.commands_read = False
        self.stopping = asyncio.Event()
        prefix = settings.topic_prefix
        self.topics = tuple(prefix + t for t in INPUT_TOPICS)
        self.consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=settings.bootstrap_servers,
            group_id=settings.group_id or f"{prefix}{GROUP_ID}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=settings.batch_size,
            session_timeout_ms=30_000,
            heartbeat_interval_ms=3_000,
        )
        self.relay = (
            Relay(self.store, settings.bootstrap_servers, prefix, self.metrics.published.inc)
            if settings.relay
            else None
        )

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopping.set)
        if self.settings.metrics_port is not None:
            self.metrics.serve(self.settings.metrics_port)
        self.consumer.subscribe(topics=list(self.topics), listener=_Rebalance(self))
        await self.consumer.start()
        relay_task = asyncio.create_task(self.relay.run(self.stopping)) if self.relay else None
        try:
            while not self.stopping.is_set():
                await self._step()
                if relay_task is not None and relay_task.done() and not self.stopping.is_set():
                    relay_task.result()  # a relay that died takes the worker down, loudly
                    raise RuntimeError("the outbox relay stopped")
        finally:
            await self.consumer.stop()  # leaves the group; offsets were committed per batch
            if relay_task is not None:
                await relay_task
            self.store.close()

    async def _step(self) -> None:
        if self.stale and not self.rebuilding:
            await self._rebuild()
        fetched = await self.consumer.getmany(timeout_ms=self.settings.idle_ms)
        if self.rebuilding or self.stale:
            # Fetched for an assignment whose engine is not rebuilt yet: the rebuild seeks
            # every partition back to its stored position, so these come again.
            return
        started = time.perf_counter()
        self._sync_definitions()
        for tp, records in fetched.items():
            if tp in self.assigned:
                self._buffer(tp, records)
        if fetched:
            self.quiet_since = None
        elif self.quiet_since is None:
            self.quiet_since = time.monotonic()
        # Without watermarks a topic that never gets a record would hold its group back
        # for ever: after a quiet spell every topic counts as read to the end.
        finished = (
            self.quiet_since is not None and time.monotonic() - self.quiet_since >= FINISHED_AFTER
        )
        everything = set(self.topics) if finished else set()
        if self.event_clock and not await self._commands_read():
            return  # definitions first: see _commands_read
        commits: dict[TopicPartition, int] = {}
        # Groups holding a definition change go first, so every group decides with it.
        for group in sorted(
            self.buffers, key=lambda g: (not self.buffers[g].holds_definition(), g)
        ):
            buffer = self.buffers[group]
            ready = (
                buffer.event_time_order(set() if buffer.watermarked else everything)
                if self.event_clock
                else buffer.arrival_order()
            )
            if ready and not self.stale:
                for topic, offset in self._decide_group(group, ready).items():
                    commits[TopicPartition(topic, group)] = offset + 1
        if commits:
            try:
                await self.consumer.commit(commits)
            except CommitFailedError:
                # A rebalance took the partitions meanwhile; what was decided is in the
                # store, and the next owner starts from there.
                log.warning("offset commit refused by a rebalance; the store keeps the positions")
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self._fire_timers(finished=finished)
        self._report_lag()

    def _buffer(self, tp: TopicPartition, records: Iterable[Any]) -> None:
        stored = self.positions.get((tp.topic, tp.partition), -1)
        buffer = self.buffers.setdefault(tp.partition, GroupBuffer(self.topics))
        for record in records:
            if record.offset <= stored:
                self.metrics.redelivered.inc()
                continue
            raw: bytes = record.value or b""
            try:
                event: CloudEvent | None = decode_event(raw)
                rejection = None
            except EventRejected as rejected:
                event, rejection = None, (rejected.field, rejected.reason)
            if event is not None and event.type == "stream.watermark":
                buffer.watermark(tp.topic, event.time)
                continue
            buffer.add(
                Pending(tp.topic, tp.partition, record.offset, record.key, raw, event, rejection)
            )

    async def _commands_read(self) -> bool:
        """Under the event clock, nothing is decided until the assigned `commands`
        partitions have been read to their end once since the assignment: a history pushed
        through after `sequences apply` must not be decided before its definitions."""
        if self.commands_read:
            return True
        for tp in self.assigned:
            if tp.topic != self.settings.topic_prefix + "commands":
                continue
            highwater = self.consumer.highwater(tp)
            if highwater is None or await self.consumer.position(tp) < highwater:
                return False
        self.commands_read = True
        return True

    # ---- deciding ------------------------------------------------------------------------

    def _decide_group(self, group: int, ready: list[Pending]) -> dict[str, int]:
        batch = _Batch()
        decided: dict[str, int] = {}
        for item in ready:
            self.metrics.events_in.inc()
            batch.last[item.topic] = item.offset
            if self._decide(item, batch):
                # A definition change is recorded alone, so other workers adopt it in order.
                decided.update(self._record(group, batch))
                batch = _Batch()
        decided.update(self._record(group, batch))
        return decided

    def _decide(self, item: Pending, batch: _Batch) -> bool:
        event = item.event
        if event is None:
            self.metrics.dead_letters.inc()
            batch.outbox.append(routing.dead_letter(item))
            return False
        if event.source == ENGINE_SOURCE:
            return False  # the engine's own change, applied when it was decided
        if event.type == "enrollment.requested" and routing.needs_fan_out(event):
            batch.outbox.extend(routing.fan_out(event, self.store.contacts_matching))
            return False
        if event.type == "lead.email_received":
            destination = routing.lead_destination(event)
            if destination is not None and self.partition_of(destination) != item.partition:
                batch.outbox.append(routing.rerouted_lead(event, destination))
                return False
        at: datetime | None = None
        if self.event_clock:
            outputs = self.engine.handle(event, partition=item.partition)
            if event.type not in DEFINITION_COMMANDS:
                self._advance_clock(item.partition, event.time)
        else:
            at = self.clock()
            outputs = self.engine.handle(event, at=at)
        batch.inputs.append(
            InputRecord(
                item.topic, item.partition, item.offset, at, self.definitions_version, item.raw
            )
        )
        batch.outbox.extend(outbox_rows(outputs, topic_for))
        self.metrics.events_out.inc(len(outputs))
        if event.subject and not event.subject.startswith("sequence"):
            batch.touched.add(event.subject)
        if event.type in DEFINITION_COMMANDS:
            batch.definition = self._definition_change(event)
            return True
        return False

    def _advance_clock(self, group: int, moment: datetime) -> None:
        known = self.partition_clock.get(group)
        if known is None or moment > known:
            self.partition_clock[group] = moment

    def _definition_change(self, event: CloudEvent) -> Definition:
        """The change a sequence command made, as the other workers must adopt it."""
        now = self.engine.now or event.time
        data = event.data
        if event.type == "sequence.applied":
            return dict(data), [], now, event.id
        if event.type == "sequence.delete_requested":
            return {"sequences": []}, [str(data["sequence_id"])], now, event.id
        copy = self.engine.raw_definition(str(data["new_id"]))
        return {"sequences": [copy] if copy else []}, [], now, event.id

    def partition_of(self, contact_id: str) -> int:
        return int((murmur2(contact_id.encode()) & 0x7FFFFFFF) % max(1, self.partition_count))

    def _record(self, group: int, batch: _Batch) -> dict[str, int]:
        if not batch.last:
            return {}
        for topic, offset in batch.last.items():
            self.positions[(topic, group)] = offset
        progress = sum(offset + 1 for (topic, g), offset in self.positions.items() if g == group)
        contacts = [
            (c, sorted(state.tags), state.line_id)
            for c in sorted(batch.touched)
            if (state := self.engine.contacts.get(c)) is not None
        ]
        try:
            self.store.record(
                group,
                progress,
                batch.inputs,
                [(topic, group, offset) for topic, offset in sorted(batch.last.items())],
                batch.outbox,
                contacts,
                batch.definition,
            )
        except AlreadyRecorded:
            # Another worker recorded this group first (a rebalance fenced us): our
            # in-memory state is stale, so start again from the store.
            log.warning("group %s was recorded elsewhere; rebuilding from the store", group)
            self.stale = True
            return {}
        return dict(batch.last)

    def _fire_timers(self, *, finished: bool) -> None:
        if not self.event_clock:
            self._tick(self.clock(), None)
            return
        # Event time moves only with the inputs. A group fires its timers up to where all
        # its topics are known complete (the producer's watermarks); without watermarks,
        # up to its latest input once the stream has gone quiet.
        for group in sorted({tp.partition for tp in self.assigned}):
            buffer = self.buffers.get(group)
            moment = buffer.complete_until() if buffer is not None else None
            if moment is None and finished:
                moment = self.partition_clock.get(group)
            if moment is not None:
                self._tick(moment, group)

    def _tick(self, now: datetime, group: int | None) -> None:
        due = self.engine.next_due(group)
        if due is None or due > now:
            return
        outputs = self.engine.advance(now, partition=group)
        if group is not None:
            self._advance_clock(group, now)
        self.metrics.timers_fired.inc(
            sum(1 for e in outputs if e.type in ("step.executed", "step.skipped"))
        )
        if outputs:
            names = sorted(f"{tp.topic}:{tp.partition}" for tp in self.assigned)
            self.store.record_tick(now, names, outbox_rows(outputs, topic_for), group)
            self.metrics.events_out.inc(len(outputs))

    def _sync_definitions(self) -> None:
        for change in self.store.definitions_after(self.definitions_version):
            outputs = self.engine.adopt(
                change.document, change.deleted, change.applied_at, f"defs:{change.version}"
            )
            self.definitions_version = change.version
            if outputs:
                names = sorted(f"{tp.topic}:{tp.partition}" for tp in self.assigned)
                self.store.record_tick(change.applied_at, names, outbox_rows(outputs, topic_for))

    # ---- rebalancing ---------------------------------------------------------------------

    async def assign(self, partitions: set[TopicPartition]) -> None:
        await self.consumer.topics()  # the partition count the timers are grouped by
        contacts_topic = self.settings.topic_prefix + "contacts"
        self.partition_count = len(self.consumer.partitions_for_topic(contacts_topic) or ())
        if not self.partition_count:
            raise RuntimeError(f"no partitions known for {contacts_topic}: is the topic there?")
        self.assigned = set(partitions)
        await self._rebuild()

    async def _rebuild(self) -> None:
        """A fresh engine from the stored inputs of the assigned groups, in the order they
        were decided. It runs in a thread so the consumer's heartbeats go on meanwhile."""
        started = time.perf_counter()
        self.rebuilding = True
        try:
            await self._rebuild_engine()
        finally:
            self.rebuilding = False
        log.info("rebuilt the engine from the store in %.2fs", time.perf_counter() - started)

    async def _rebuild_engine(self) -> None:
        names = sorted(f"{tp.topic}:{tp.partition}" for tp in self.assigned)
        engine, clocks, applied, replayed = await asyncio.to_thread(self._replay_store, names)
        self.engine = engine
        self.partition_clock = clocks
        self.definitions_version = applied
        self.stale = False
        self.commands_read = False
        self.buffers = {tp.partition: GroupBuffer(self.topics) for tp in self.assigned}
        stored = self.store.positions()
        self.positions = {
            key: value for key, value in stored.items() if TopicPartition(*key) in self.assigned
        }
        for tp in self.assigned:
            # The store, not Kafka's committed offsets, says what was decided: nothing
            # recorded means from the beginning.
            position = self.positions.get((tp.topic, tp.partition))
            self.consumer.seek(tp, position + 1 if position is not None else 0)
        self.metrics.rebuilds.inc()
        log.info("replayed %d stored inputs", replayed)

    def _replay_store(self, names: list[str]) -> tuple[Engine, dict[int, datetime], int, int]:
        engine = Engine(partition_of=self.partition_of)
        clocks: dict[int, datetime] = {}
        pending = self.store.definitions_after(0)
        applied = 0
        replayed = 0
        for item in self.store.replayable(names):
            while pending and pending[0].version <= item.definitions:
                change = pending.pop(0)
                engine.adopt(
                    change.document, change.deleted, change.applied_at, f"defs:{change.version}"
                )
                applied = change.version
            if item.kind == "tick" and item.at is not None:
                engine.advance(item.at, partition=item.partition)
            elif item.event is not None:
                event = decode_event(item.event)
                if item.at is not None:  # decided by the wall clock
                    engine.handle(event, at=item.at)
                else:
                    engine.handle(event, partition=item.partition)
                    if event.type not in DEFINITION_COMMANDS and item.partition is not None:
                        known = clocks.get(item.partition)
                        clocks[item.partition] = (
                            event.time if known is None else max(known, event.time)
                        )
                replayed += 1
        for change in pending:
            engine.adopt(
                change.document, change.deleted, change.applied_at, f"defs:{change.version}"
            )
            applied = change.version
        return engine, clocks, applied, replayed

    def _report_lag(self) -> None:
        self.metrics.active_enrollments.set(self.engine.active_enrollments())
        self.metrics.timers_pending.set(self.engine.pending_timers())
        lag = 0
        for tp in self.assigned:
            highwater = self.consumer.highwater(tp)
            position = self.positions.get((tp.topic, tp.partition), -1)
            if highwater is not None:
                lag += max(0, highwater - (position + 1))
        self.metrics.lag.set(lag)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Batches are recorded before getmany is called again, so a revocation has nothing in
    flight; an assignment rebuilds the engine for exactly the groups now owned."""

    def __init__(self, worker: EngineWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.worker.assigned -= set(revoked)
        self.worker.rebuilding = True  # nothing is decided until the new assignment is rebuilt

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.worker.assign(set(assigned))


def run_worker(settings: WorkerSettings) -> None:
    async def main() -> None:
        # aiokafka clients must be made inside the running loop.
        await EngineWorker(settings).run()

    asyncio.run(main())
