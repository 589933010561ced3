"""`dripstream worker`: the engine on Kafka and PostgreSQL, each decision exactly once.

A consumer group reads the co-partitioned input topics (one worker owns partition p of
every input topic: the range assignor). Per batch and partition, one PostgreSQL
transaction records the accepted inputs, the decisions and the Kafka position (see
streams/store.py); only then is the Kafka offset committed. A record at or below the
stored position is a redelivery and changes nothing. On every new assignment the engine
is rebuilt from the stored inputs of its partitions, so a worker never decides on state
it did not record. Decisions reach Kafka through the outbox relay (streams/relay.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition  # type: ignore[import-untyped]
from aiokafka.coordinator.assignors.range import RangePartitionAssignor  # type: ignore[import-untyped]
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from aggregates.engine import Engine
from aggregates.intake import LeadProblem, contact_id_for_lead, parse_lead_email
from schemas.envelope import ENGINE_SOURCE, CloudEvent
from schemas.registry import DLQ_TOPIC, EVENT_TYPES
from schemas.validation import EventRejected, decode_event
from streams.metrics import WorkerMetrics
from streams.relay import Relay
from streams.store import AlreadyRecorded, EngineStore, InputRecord, OutboxRow, outbox_rows

log = logging.getLogger("dripstream.worker")

INPUT_TOPICS = ("contacts", "calls", "messages", "appointments", "intake", "commands")
GROUP_ID = "dripstream-engine"
SEQUENCE_COMMANDS = frozenset(
    {"sequence.applied", "sequence.delete_requested", "sequence.copy_requested"}
)
Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    bootstrap_servers: str
    database_url: str
    topic_prefix: str = "dripstream."
    clock: str = "wall"  # "wall" or "event"
    group_id: str = GROUP_ID
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
    """What one partition's records of a batch come to, before it is recorded."""

    inputs: list[InputRecord] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    definition: tuple[dict[str, Any], list[str], datetime, str] | None = None


class EngineWorker:
    def __init__(self, settings: WorkerSettings, clock: Clock = wall_clock) -> None:
        self.settings = settings
        self.clock = clock
        self.store = EngineStore(settings.database_url, settings.schema)
        self.metrics = WorkerMetrics()
        self.engine = Engine()
        self.partition_count = 0
        self.partition_clock: dict[int, datetime] = {}
        self.definitions_version = 0
        self.positions: dict[TopicPartition, int | None] = {}
        self.assigned: set[TopicPartition] = set()
        self.stopping = asyncio.Event()
        prefix = settings.topic_prefix
        self.topics = [prefix + t for t in INPUT_TOPICS]
        self.consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=settings.bootstrap_servers,
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=settings.batch_size,
        )
        self.relay = (
            Relay(self.store, settings.bootstrap_servers, prefix) if settings.relay else None
        )

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopping.set)
        if self.settings.metrics_port is not None:
            self.metrics.serve(self.settings.metrics_port)
        self.consumer.subscribe(topics=self.topics, listener=_Rebalance(self))
        await self.consumer.start()
        relay_task = asyncio.create_task(self.relay.run(self.stopping)) if self.relay else None
        try:
            while not self.stopping.is_set():
                await self._step()
                if relay_task is not None and relay_task.done() and not self.stopping.is_set():
                    relay_task.result()  # a relay that died takes the worker down, loudly
                    raise RuntimeError("the outbox relay stopped")
        finally:
            await self.consumer.stop()  # commits nothing further and leaves the group
            if relay_task is not None:
                await relay_task
            self.store.close()

    async def _step(self) -> None:
        batches = await self.consumer.getmany(timeout_ms=self.settings.idle_ms)
        started = time.perf_counter()
        self._sync_definitions()
        if batches:
            commits: dict[TopicPartition, int] = {}
            for tp in sorted(batches, key=lambda t: (t.topic, t.partition)):
                records = batches[tp]
                if tp not in self.assigned:
                    continue
                self._decide_partition(tp, records)
                commits[tp] = records[-1].offset + 1
            if commits:
                await self.consumer.commit(commits)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
        self._fire_timers(idle=not batches)
        self._report_lag()

    # ---- deciding ------------------------------------------------------------------------

    def _decide_partition(self, tp: TopicPartition, records: Sequence[Any]) -> None:
        position = self.positions.get(tp)
        batch = _Batch()
        last = position if position is not None else -1
        for record in records:
            if position is not None and record.offset <= position:
                self.metrics.redelivered.inc()
                continue
            last = record.offset
            self.metrics.events_in.inc()
            if self._decide_record(tp, record, batch):
                # A definition change is recorded alone, so others see it in order.
                self._record(tp, batch, last)
                batch = _Batch()
        self._record(tp, batch, last)

    def _decide_record(self, tp: TopicPartition, record: Any, batch: _Batch) -> bool:
        raw: bytes = record.value or b""
        try:
            event = decode_event(raw)
        except EventRejected as rejected:
            batch.outbox.append(self._dead_letter(tp, record, rejected.field, rejected.reason))
            return False
        if event.source == ENGINE_SOURCE:
            return False  # the engine's own change, already applied when it was decided
        if event.type == "enrollment.requested" and self._fan_out(event, tp, batch):
            return False
        if event.type == "lead.email_received" and self._route_lead(event, tp, batch):
            return False
        if self.settings.clock == "wall":
            at: datetime | None = self.clock()
            outputs = self.engine.handle(event, at=at)
        else:
            at = None
            outputs = self.engine.handle(event, partition=tp.partition)
            if event.type not in SEQUENCE_COMMANDS:
                clock = self.partition_clock.get(tp.partition)
                self.partition_clock[tp.partition] = (
                    event.time if clock is None else max(clock, event.time)
                )
        batch.inputs.append(
            InputRecord(tp.topic, tp.partition, record.offset, at, self.definitions_version, raw)
        )
        batch.outbox.extend(outbox_rows(outputs, topic_for))
        self.metrics.events_out.inc(len(outputs))
        if event.subject and not event.subject.startswith("sequence:"):
            batch.touched.add(event.subject)
        if event.type in SEQUENCE_COMMANDS:
            batch.definition = self._definition_change(event)
            return True
        return False

    def _definition_change(
        self, event: CloudEvent
    ) -> tuple[dict[str, Any], list[str], datetime, str]:
        """The change a sequence command made, as others must adopt it."""
        now = self.engine.now or event.time
        data = event.data
        if event.type == "sequence.applied":
            return dict(data), [], now, event.id
        if event.type == "sequence.delete_requested":
            return {"sequences": []}, [str(data["sequence_id"])], now, event.id
        copy = self.engine.raw_definition(str(data["new_id"]))
        return {"sequences": [copy] if copy else []}, [], now, event.id

    def _fan_out(self, event: CloudEvent, tp: TopicPartition, batch: _Batch) -> bool:
        """An enrollment request that names other partitions' contacts, or a tag or line,
        is split into one request per contact, keyed by that contact."""
        data = event.data
        ids = [str(c) for c in data.get("contact_ids") or ()]
        selectors = bool(data.get("tag") or data.get("line_id") or data.get("contact_group"))
        if not selectors and len(ids) == 1 and event.subject == ids[0]:
            return False
        targets = dict.fromkeys(ids)
        for tag, line in _selectors(data):
            targets.update(dict.fromkeys(self.store.contacts_matching(tag, line)))
        for contact_id in targets:
            request = CloudEvent(
                id=f"{event.id}/{contact_id}",
                source=event.source,
                type=event.type,
                time=event.time,
                subject=contact_id,
                data={"sequence_id": data["sequence_id"], "contact_ids": [contact_id]},
            )
            batch.outbox.append(OutboxRow(request.id, "commands", contact_id, request.encode()))
        return True

    def _route_lead(self, event: CloudEvent, tp: TopicPartition, batch: _Batch) -> bool:
        """A lead e-mail becomes a contact whose id comes from the lead: the e-mail goes to
        that contact's partition first, so its state lives where its later inputs arrive."""
        data = event.data
        lead = parse_lead_email(
            subject=data.get("subject"), body=str(data["body"]), sender=data.get("from")
        )
        if isinstance(lead, LeadProblem):
            return False
        contact_id = contact_id_for_lead(
            str(data["to"]).strip().lower(), lead, str(data.get("message_id") or event.id)
        )
        if self.partition_of(contact_id) == tp.partition:
            return False
        routed = CloudEvent(
            id=event.id,
            source=event.source,
            type=event.type,
            time=event.time,
            subject=contact_id,
            data=data,
        )
        batch.outbox.append(OutboxRow(f"route:{event.id}", "intake", contact_id, routed.encode()))
        return True

    def partition_of(self, contact_id: str) -> int:
        if not self.partition_count:
            return 0
        return int((murmur2(contact_id.encode()) & 0x7FFFFFFF) % self.partition_count)

    def _dead_letter(
        self, tp: TopicPartition, record: Any, field_name: str, reason: str
    ) -> OutboxRow:
        self.metrics.dead_letters.inc()
        raw: bytes = record.value or b""
        letter = {
            "topic": tp.topic,
            "partition": tp.partition,
            "offset": record.offset,
            "key": record.key.decode("utf-8", "replace") if record.key else None,
            "field": field_name,
            "reason": f"{field_name}: {reason}",
            "value": raw.decode("utf-8", "replace"),
            "value_hex": raw.hex(),
        }
        key = record.key.decode("utf-8", "replace") if record.key else None
        return OutboxRow(
            f"dlq:{tp.topic}:{tp.partition}:{record.offset}", DLQ_TOPIC, key, orjson.dumps(letter)
        )

    def _record(self, tp: TopicPartition, batch: _Batch, last: int) -> None:
        if last < 0 or (self.positions.get(tp) is not None and last <= (self.positions[tp] or 0)):
            return
        contacts = [
            (c, sorted(state.tags), state.line_id)
            for c in sorted(batch.touched)
            if (state := self.engine.contacts.get(c)) is not None
        ]
        try:
            self.store.record(
                tp.topic, tp.partition, batch.inputs, last, batch.outbox, contacts, batch.definition
            )
        except AlreadyRecorded:
            # Another worker recorded this partition first (we were fenced by a
            # rebalance): our in-memory state is stale, so start again from the store.
            log.warning(
                "position of %s:%s already recorded elsewhere; rebuilding", tp.topic, tp.partition
            )
            self._rebuild()
            return
        self.positions[tp] = last

    def _fire_timers(self, *, idle: bool) -> None:
        if self.settings.clock == "wall":
            self._tick(self.clock(), None)
        elif idle:
            # Event time moves only with the inputs; when they pause, each partition fires
            # what is due at its latest event time, so a finished history ends where
            # `replay` ends.
            for partition, clock in sorted(self.partition_clock.items()):
                self._tick(clock, partition)

    def _tick(self, now: datetime, partition: int | None) -> None:
        due = self.engine.next_due(partition)
        if due is None or due > now:
            return
        outputs = self.engine.advance(now, partition=partition)
        self.metrics.timers_fired.inc(
            sum(1 for e in outputs if e.type in ("step.executed", "step.skipped"))
        )
        if outputs:
            partitions = sorted(f"{tp.topic}:{tp.partition}" for tp in self.assigned)
            self.store.record_tick(now, partitions, outbox_rows(outputs, topic_for), partition)
            self.metrics.events_out.inc(len(outputs))

    def _sync_definitions(self) -> None:
        for change in self.store.definitions_after(self.definitions_version):
            outputs = self.engine.adopt(
                change.document, change.deleted, change.applied_at, f"defs:{change.version}"
            )
            self.definitions_version = change.version
            if outputs:
                partitions = sorted(f"{tp.topic}:{tp.partition}" for tp in self.assigned)
                self.store.record_tick(
                    change.applied_at, partitions, outbox_rows(outputs, topic_for)
                )

    # ---- rebalancing ---------------------------------------------------------------------

    def assign(self, partitions: set[TopicPartition]) -> None:
        self.assigned = set(partitions)
        self._rebuild()

    def _rebuild(self) -> None:
        """A fresh engine from the stored inputs of the assigned partitions."""
        started = time.perf_counter()
        contacts_topic = self.settings.topic_prefix + "contacts"
        self.partition_count = len(self.consumer.partitions_for_topic(contacts_topic) or ())
        engine = Engine(partition_of=self.partition_of)
        clocks: dict[int, datetime] = {}
        applied = 0
        pending = self.store.definitions_after(0)
        names = sorted(f"{tp.topic}:{tp.partition}" for tp in self.assigned)
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
                    if event.type not in SEQUENCE_COMMANDS and item.partition is not None:
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
        self.engine = engine
        self.partition_clock = clocks
        self.definitions_version = applied
        self.positions = {tp: self.store.position(tp.topic, tp.partition) for tp in self.assigned}
        for tp, position in self.positions.items():
            if position is not None:
                self.consumer.seek(tp, position + 1)
        self.metrics.rebuilds.inc()
        log.info(
            "rebuilt the engine from %d stored inputs in %.2fs",
            replayed,
            time.perf_counter() - started,
        )

    def _report_lag(self) -> None:
        self.metrics.active_enrollments.set(self.engine.active_enrollments())
        self.metrics.timers_pending.set(self.engine.pending_timers())
        lag = 0
        for tp in self.assigned:
            highwater = self.consumer.highwater(tp)
            position = self.positions.get(tp)
            if highwater is not None:
                lag += max(0, highwater - (position + 1 if position is not None else 0))
        self.metrics.lag.set(lag)


def _selectors(data: Any) -> list[tuple[str | None, str | None]]:
    found: list[tuple[str | None, str | None]] = []
    if data.get("tag"):
        found.append((str(data["tag"]), None))
    if data.get("line_id"):
        found.append((None, str(data["line_id"])))
    for item in data.get("contact_group") or ():
        if isinstance(item, str):
            if item.startswith("tag:"):
                found.append((item[4:], None))
            elif item.startswith("line:"):
                found.append((None, item[5:]))
        elif isinstance(item, dict):
            if item.get("tag"):
                found.append((str(item["tag"]), None))
            elif item.get("line_id"):
                found.append((None, str(item["line_id"])))
    return found


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Batches are recorded before getmany returns, so a revocation has nothing in flight;
    an assignment rebuilds the engine for exactly the partitions now owned."""

    def __init__(self, worker: EngineWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.worker.assigned -= set(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.worker.assign(set(assigned))


def run_worker(settings: WorkerSettings) -> None:
    async def main() -> None:
        # aiokafka clients must be made inside the running loop.
        await EngineWorker(settings).run()

    asyncio.run(main())
