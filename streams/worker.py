"""`dripstream worker`: the engine on Kafka and PostgreSQL, each decision exactly once.

A consumer group reads the co-partitioned input topics; the range assignor gives one worker
partition p of every input topic (a "group"), or, once a sequence spans contacts (a
throttle, owner changes), one worker every group (streams/assignment.py). Records of a
group are decided in order (streams/ordering.py), each into the batch by
streams/deciding.py. What a poll brings (several, under load), across the groups, is
recorded in one PostgreSQL transaction with the clock's ticks, the decisions and each
group's Kafka positions (streams/store.py); only then are the offsets committed to Kafka.
Writes run in a thread while the engine decides on, one at a time and in the order decided:
what is decided while a write runs gathers into the next one, so a batch is never recorded
before the one decided ahead of it (and not at all after one was refused). A record at or
below the stored position is a redelivery and changes nothing. On every assignment the
engine is rebuilt from the stored inputs of its groups (streams/engine_rebuild.py), so a
worker never decides on state it has not recorded, and a write to a group another worker
recorded since this one read it is refused whole (the fence in streams/store.py), timers
fired there included. Decisions reach Kafka through the outbox relay (streams/relay.py),
which runs in a process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaConsumer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.errors import IllegalStateError  # type: ignore[import-untyped]

from aggregates.engine import Engine
from schemas.envelope import format_time
from schemas.registry import INPUT_TOPICS, topic_for
from streams import routing, snapshots
from streams.assignment import MemberState, range_or_one_assignor
from streams.batch_writer import BatchWriter
from streams.deciding import Decided, DecidingContext, decide_record
from streams.engine_rebuild import (
    RebuildAbandonedError,
    Replayed,
    needs_one_worker,
    replay_store,
    spanned_in_store,
)
from streams.input_records import read_record
from streams.metrics import PartitionProgress, WorkerMetrics, consumer_lag
from streams.ordering import GroupBuffer, Pending, position_of, timers_until
from streams.outages import (
    DATABASE_LOST,
    FIRST_WAIT,
    OUTAGES,
    next_wait,
    one_line,
    pace,
    sleep_unless_stopped,
    start_quietly,
)
from streams.processes import install_stop_signals
from streams.progress import ProgressLog, registry_totals
from streams.relay import RelaySettings
from streams.relay_child import RelayChild
from streams.store import (
    BatchRecord,
    EngineStore,
    GroupProgress,
    ReadTo,
    outbox_rows,
)

log = logging.getLogger("dripstream.worker")

GROUP_ID = "engine"
DEFINITIONS_EVERY = 0.05  # seconds between looks for other workers' definition changes
PENDING_AT_MOST = 4  # polls' worth of inputs decided while a write runs, before waiting
FINISHED_AFTER = 2.0  # seconds without a record before every topic counts as read to the end
HELD_SAID_EVERY = 30.0  # seconds a group may wait for a topic before the log says so
MAX_POLL_INTERVAL_MS = 3_600_000  # the longest rebuild (a store replayed without snapshots)
# A fetch waits up to FETCH_WAIT_MS for FETCH_MIN_BYTES: under light load a fetch per
# record or two (each names all the input partitions, decoded in pure Python, and the broker
# answers each) cost more CPU than deciding the records; a backlog still fills it at once.
FETCH_WAIT_MS = 10
FETCH_MIN_BYTES = 64 * 1024
POSITION_WAIT = 0.1  # seconds the lag gauge waits for a partition's position to be known
GAUGES_EVERY = 0.25  # seconds between updates of the gauges (the lag asks every partition)
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
    batch_size: int = 5000  # records per poll at most; polls gathered while a write runs
    # go in one transaction
    idle_ms: int = 200
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    relay: bool = True
    schema: str = "public"
    # The broker drops a member it has not heard from for this long (heartbeats every
    # tenth of it); the broker's own floor is 6 s.
    session_timeout_ms: int = 30_000
    # Seconds between snapshots of the engine while it runs (0: only at a clean stop), so
    # a restart after a crash replays the store from the last one, not from the start.
    snapshot_every: float = 600.0


class EngineWorker:
    def __init__(self, settings: WorkerSettings, clock: Clock = wall_clock) -> None:
        self.settings = settings
        self.clock = clock
        self.event_clock = settings.clock == "event"
        self.store = EngineStore(
            settings.database_url, settings.schema, prefix=settings.topic_prefix
        )
        self.metrics = WorkerMetrics()
        self.partition_count = 0
        self.engine = Engine(partition_of=self.partition_of, live=not self.event_clock)
        self.timers_counted = 0  # of the engine's timers_fired, already in the metric
        self.definitions_version = 0
        self.definitions_checked = float("-inf")
        self.positions: dict[tuple[str, int], int] = {}
        self.assigned: set[TopicPartition] = set()
        self.buffers: dict[int, GroupBuffer] = {}
        self.quiet_since: float | None = None
        self.gauges_at = float("-inf")
        self.stale = False  # the store refused a batch, or was lost: rebuild before going on
        # The engine raised on an input (a bug): its state may be half changed, so what was
        # decided before it is written, and the engine rebuilt from the store without it.
        self.engine_failed = False
        # Per group, since when (monotonic) it has waited: its last decision, or the first
        # record it got with nothing buffered. Only read when a word about it may be due.
        self.waiting_since: dict[int, float] = {}
        self.held_said = float("-inf")
        self.outage_wait = FIRST_WAIT  # before the next try after losing PostgreSQL or Kafka
        self.store_lost = False  # PostgreSQL went away: a fresh pool before the rebuild
        self.reads_lost = False  # a read of the store failed: a fresh pool, no rebuild
        self.rebuilding = False
        self.commands_read = False
        # What this worker tells the group as it joins (streams/assignment.py): whether its
        # definitions need one worker, now or before. Once true, true for good.
        self.one_worker = False
        self.rejoin_wanted = False
        self.stopping = asyncio.Event()
        # What the current poll decided, not yet handed to the writer.
        self.record = BatchRecord()
        self.commits: dict[TopicPartition, int] = {}
        # Moves on every revocation and rebuild: what an older engine decided and did not
        # yet hand to the writer is dropped (the rebuild reads it again from Kafka).
        self.generation = 0
        prefix = settings.topic_prefix
        self.topics = tuple(prefix + t for t in INPUT_TOPICS)
        # Each input topic's name as the registry has it, without the prefix.
        self.topic_names = dict(zip(self.topics, INPUT_TOPICS, strict=True))
        self.consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=settings.bootstrap_servers,
            group_id=settings.group_id or f"{prefix}{GROUP_ID}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            # Range unless a sequence spans contacts (streams/assignment.py): one protocol.
            partition_assignment_strategy=(range_or_one_assignor(self._member_state),),
            max_poll_records=settings.batch_size,
            fetch_max_wait_ms=FETCH_WAIT_MS,
            fetch_min_bytes=FETCH_MIN_BYTES,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.session_timeout_ms // 10,
            # The broker may hold a JoinGroup as long as the rebalance timeout (aiokafka
            # makes it the session's): a request must be allowed to wait longer than that.
            request_timeout_ms=max(40_000, settings.session_timeout_ms + 5_000),
            # A rebuild polls nothing while it replays the store (heartbeats go on): past
            # this, aiokafka leaves the group and the rebuild starts over, for ever.
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        )
        pace(self.consumer)
        self.writes = BatchWriter(
            self.store,
            self._commit_offsets,
            self.metrics.write_seconds,
            stale=lambda: self.stale,
            refused=self._refused,
            lost=self._lost,
            gather_at_most=PENDING_AT_MOST * settings.batch_size,
        )
        self.relay = RelayChild(
            RelaySettings(
                settings.bootstrap_servers, settings.database_url, prefix, settings.schema
            ),
            self.metrics.published,
            self.metrics.dead_letters,
        )
        self.snapshot_at = time.monotonic()
        self.snapshot_covers = -1  # the last record the last snapshot covered
        self.progress = ProgressLog(
            registry_totals(
                self.metrics.registry,
                (
                    "dripstream_events_in_total",
                    "dripstream_events_out_total",
                    "dripstream_timers_fired_total",
                    "dripstream_published_total",
                ),
            ),
            ("input(s) taken", "decision(s) recorded", "timer(s) fired", "published"),
        )

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        install_stop_signals(asyncio.get_running_loop(), self.stopping.set)
        if self.settings.metrics_port is not None:
            self.metrics.serve(self.settings.metrics_port, self.settings.metrics_host)
        if self.settings.relay:
            self.relay.start()
        try:
            self.one_worker = await asyncio.to_thread(self._spanned_in_store)
            self.metrics.one_worker.set(int(self.one_worker))
            self.consumer.subscribe(topics=list(self.topics), listener=_Rebalance(self))
            try:
                await start_quietly(self.consumer)
                while not self.stopping.is_set():
                    try:
                        await self._step()
                        await self._snapshot_if_due()
                    except OUTAGES as error:
                        await self._wait_out(error)
                        continue
                    if not (self.writes.in_doubt or self.reads_lost):
                        self.outage_wait = FIRST_WAIT
                    self.relay.check(stopping=self.stopping.is_set())
                    said = self.progress.line()
                    if said is not None:
                        lag = self.metrics.registry.get_sample_value("dripstream_consumer_lag")
                        log.info("%s; lag %d", said, lag or 0)
                await self._drain()
                if self.writes.last_record != self.snapshot_covers:
                    await self._keep_snapshot()
            finally:
                await self.consumer.stop()  # leaves the group; _drain committed the offsets
        finally:
            await self.relay.stop()
            self.store.close()

    async def _snapshot_if_due(self) -> None:
        """Every `snapshot_every` seconds, once something new was written: what was
        decided is written first, and nothing is decided while the engine is pickled."""
        every = self.settings.snapshot_every
        if not every or time.monotonic() - self.snapshot_at < every or self._unsettled():
            return
        self.snapshot_at = time.monotonic()
        await self._submit(wait=True)
        if self.writes.last_record != self.snapshot_covers:
            await self._keep_snapshot()

    async def _keep_snapshot(self) -> None:
        """The engine as the snapshot its groups' next rebuild may start from instead of
        replaying the store (streams/snapshots.py), now and then and at a clean stop: only
        when everything it decided is written, and nothing is wrong with what it holds."""
        if self._unsettled() or self.record or self.commits:
            return
        started = time.perf_counter()
        covers = self.writes.last_record
        try:
            size = await asyncio.to_thread(
                snapshots.save,
                self.store,
                self._held_key(),
                self.engine,
                self.partition_of,
                last_record=covers,
                applied=self.definitions_version,
                spanned=self.one_worker,
                progress={tp.partition: self._progress(tp.partition) for tp in self.assigned},
            )
        except Exception as error:  # a stop goes on without one: the next start replays
            log.warning("kept no snapshot of the engine (%s)", one_line(error))
            return
        self.snapshot_covers = covers
        log.info(
            "kept the engine as a snapshot for the next start (%.1f MB in %.2fs)",
            size / 1e6,
            time.perf_counter() - started,
        )

    def _unsettled(self) -> bool:
        """Holding nothing, or in a state a rebuild or a write again is to settle."""
        return (
            not self.assigned
            or self.stale
            or self.rebuilding
            or self.rejoin_wanted
            or self.engine_failed
            or self.store_lost
            or self.reads_lost
            or self.writes.in_doubt
        )

    def _held_key(self) -> str:
        return snapshots.held_key(self.settings.clock, self.partition_count, self._stream_names())

    async def _wait_out(self, error: Exception) -> None:
        """PostgreSQL or the broker went away in the middle of a step: forget what it
        decided, wait, and rebuild from the store once it answers (each try that finds it
        still gone comes back here, waiting longer)."""
        lost_database = isinstance(error, DATABASE_LOST)
        log.warning(
            "lost %s (%s); rebuilding from the store in %.1f s",
            "PostgreSQL" if lost_database else "Kafka",
            one_line(error),
            self.outage_wait,
        )
        self._invalidate()
        self.stale = True
        self.store_lost = self.store_lost or lost_database
        await sleep_unless_stopped(self.stopping, self.outage_wait)
        self.outage_wait = next_wait(self.outage_wait)

    async def _step(self) -> None:
        if self.writes.in_doubt and not self.stale:
            await self._write_again()
            await self._report_lag()  # timers falling due meanwhile, records held: shown
            return
        if self.reads_lost and not self.stale:
            await self._reconnect_for_reads()
            await self._report_lag()
            return
        # A rejoin comes before a rebuild, not after it: the new assignment rebuilds anyway.
        if self.stale and not self.rebuilding and not self.rejoin_wanted:
            await self._rebuild()
        if self.rejoin_wanted:
            await self._rejoin()
            return
        fetched = await self.consumer.getmany(timeout_ms=self.settings.idle_ms)
        if self.rebuilding or self.stale:
            # Fetched for an assignment whose engine is not rebuilt yet: the rebuild seeks
            # every partition back to its stored position, so these come again.
            return
        if self.writes.in_doubt:
            # A write was cut off while the consumer waited: these wait in their buffers,
            # decided once it is written again (no seek brings them back).
            for tp, records in fetched.items():
                if tp in self.assigned:
                    self._buffer(tp, records)
            return
        started = time.perf_counter()
        generation = self.generation
        self._sync_definitions()
        if self.rejoin_wanted:
            # Nothing more decided with part of the partitions: the fetched records come
            # again after the new assignment's rebuild (which seeks to the stored positions).
            await self._rejoin()
            return
        if self.event_clock:
            self.engine.expect_partitions({tp.partition for tp in self.assigned})
        for tp, records in fetched.items():
            if tp in self.assigned:
                self._buffer(tp, records)
        # Measured with the fetched records still undecided: a fetch can take thousands at
        # once, and measured after deciding them, a backlog read in big gulps showed 0.
        await self._report_lag()
        if self.generation != generation:
            return  # a rebalance came while the consumer was asked for its positions
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
            await self._submit()  # what adopting definitions decided, if anything
            return  # definitions first: see _commands_read
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
                self.waiting_since[group] = time.monotonic()
                await self._decide_group(group, ready)
            if self.generation != generation or self.rejoin_wanted:
                return  # a rebalance came while a batch was being recorded, or is wanted
        if self.stale:
            # The store refused a write, or the engine failed on an input and may be half
            # changed: no timer fires on it; the next step rebuilds it.
            return
        if self.event_clock:
            self._say_what_holds_back(everything)
        self._fire_timers(finished=finished)
        # Inputs decided, or timers fired alone: a batch either way.
        decided = bool(self.commits or self.record.outbox)
        await self._submit()
        if decided:
            self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _say_what_holds_back(self, everything: set[str]) -> None:
        """Under the event clock, a group whose records wait for a topic that is never read
        further (a producer that writes watermarks to some topics only) decides nothing,
        and the progress line is quiet then: say what it waits for once it has waited
        HELD_SAID_EVERY (a group of a long push always holds its newest records until the
        next watermark, and is fine), at most that often."""
        now = time.monotonic()
        if now - self.held_said < HELD_SAID_EVERY:
            return
        for group, buffer in sorted(self.buffers.items()):
            if now - self.waiting_since.get(group, now) < HELD_SAID_EVERY:
                continue
            held = buffer.held_back(set() if buffer.watermarked else everything)
            if held is None:
                continue
            self.held_said = now
            moment, topics = held
            log.warning(
                "partition %d holds %d record(s) from %s on: waiting for %s to be read up to"
                " then (under --clock event a producer writes stream.watermark records to"
                " every partition of every input topic; see the README)",
                group,
                len(buffer),
                format_time(moment),
                ", ".join(topics),
            )

    def _buffer(self, tp: TopicPartition, records: Iterable[Any]) -> None:
        stored = self.positions.get((tp.topic, tp.partition), -1)
        buffer = self.buffers.setdefault(tp.partition, GroupBuffer(self.topics))
        if not buffer:
            self.waiting_since[tp.partition] = time.monotonic()
        for record in records:
            if record.offset <= stored:
                self.metrics.redelivered.inc()
                continue
            event, rejection, value = read_record(
                record,
                self.topic_names[tp.topic],
                tp.partition,
                self.partition_count,
                self.partition_of,
            )
            position = position_of(record.headers)
            if event is not None and event.type == "stream.watermark":
                buffer.watermark(tp.topic, event.time, position, record.offset)
                continue
            buffer.add(
                Pending(
                    tp.topic,
                    tp.partition,
                    record.offset,
                    record.key,
                    value,
                    event,
                    rejection,
                    position,
                    tuple((n, bytes(v or b"")) for n, v in record.headers or ())
                    if event is None
                    else (),
                )
            )

    async def _commands_read(self) -> bool:
        """Under the event clock, nothing is decided until the assigned `commands`
        partitions have been read to their end once since the assignment: a history pushed
        through after `sequences apply` must not be decided before its definitions."""
        if self.commands_read:
            return True
        commands = self.settings.topic_prefix + "commands"
        # A copy: a revocation during the await below changes the assignment in place.
        for tp in [tp for tp in self.assigned if tp.topic == commands]:
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                return False
            position = await self._position(tp)
            if position is None or position < highwater:
                return False
        self.commands_read = True
        return True

    # ---- writing -------------------------------------------------------------------------

    async def _submit(self, *, wait: bool = False) -> None:
        """Hand what was decided so far to the writer (streams/batch_writer.py) and go on
        deciding; with `wait`, until everything is recorded."""
        record, self.record = self.record, BatchRecord()
        commits, self.commits = self.commits, {}
        await self.writes.submit(record, commits, wait=wait)

    async def _drain(self) -> None:
        await self.writes.drain()

    def _refused(self) -> None:
        self.stale = True

    def _lost(self) -> None:
        self.store_lost = True  # the write waits in doubt: see _write_again

    async def _reconnect_for_reads(self) -> None:
        """A read of the store failed with nothing decided on it: read again on a fresh
        connection pool, once no write runs."""
        await self.writes.submit(BatchRecord(), {}, wait=True)  # reconnect under no write
        if self.writes.in_doubt or self.stale:
            return  # the write met the outage too: it reconnects (or the worker rebuilds)
        if await self._fresh_pool():
            self.definitions_checked = float("-inf")  # read them at once

    async def _write_again(self) -> None:
        """PostgreSQL went away during a write: nothing more is decided until that batch
        (with what was decided behind it) is written again, on a fresh connection pool
        once PostgreSQL answers. Refused, it had committed (or another worker wrote
        meanwhile), and the worker rebuilds; cut off again, it waits longer."""
        if not await self._fresh_pool():
            return  # stopping: what waits is not recorded nor committed, so redelivered
        self.writes.write_again()
        await self.writes.submit(BatchRecord(), {}, wait=True)
        if not (self.writes.in_doubt or self.stale):
            log.info("the write cut off by the outage is written again; no rebuild")
            self.metrics.writes_again.inc()

    async def _fresh_pool(self) -> bool:
        """After the outage's next wait, a fresh connection pool for the store (the old
        one's own retries back off for minutes); False when PostgreSQL is still away, or
        the worker is stopping. Not while a write runs."""
        await sleep_unless_stopped(self.stopping, self.outage_wait)
        if self.stopping.is_set():
            return False
        self.outage_wait = next_wait(self.outage_wait)
        try:
            await asyncio.to_thread(self.store.reconnect)
        except DATABASE_LOST as error:
            log.warning("PostgreSQL still away (%s)", one_line(error))
            return False
        self.store_lost = False
        self.reads_lost = False
        return True

    async def _commit_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        await self.consumer.commit(offsets)

    def _invalidate(self) -> None:
        """Forget what was decided and not yet handed to the writer, and what waits to be
        written: the assignment changed, or the engine is being rebuilt (a new generation,
        which a rebuild under way then sees it must not install)."""
        self.generation += 1
        self.record, self.commits = BatchRecord(), {}
        self.writes.drop_pending()

    def _stream_names(self) -> list[str]:
        """The stored input streams (`topic:partition`) of the assigned partitions."""
        return sorted(f"{tp.topic}:{tp.partition}" for tp in self.assigned)

    # ---- deciding ------------------------------------------------------------------------

    async def _decide_group(self, group: int, ready: list[Pending]) -> None:
        generation = self.generation
        last: dict[str, int] = {}  # topic -> last offset decided
        for item in ready:
            self.metrics.events_in.inc()
            last[item.topic] = item.offset
            decided_a_change = self._decide(item)
            if self.engine_failed:
                self._track(group, last)
                await self._submit(wait=True)
                self.engine_failed = False
                self.stale = True  # the next step rebuilds; the rest of `ready` comes again
                return
            if decided_a_change:
                # A definition change is recorded alone, so other workers adopt it in order.
                self._track(group, last)
                last = {}
                await self._submit(wait=True)
                if self.stale or self.generation != generation:
                    return
                # Its version at once (it is in force here already): the inputs decided
                # next carry it, and a rebuild replays them after the change.
                self._sync_definitions(at_once=True)
                if self.rejoin_wanted:
                    return  # the rest come again after the new assignment's rebuild
        self._track(group, last)

    def _track(self, group: int, last: dict[str, int]) -> None:
        """The group's new positions, in the record and for the offset commit."""
        if not last:
            return
        expected = self._progress(group)
        buffer = self.buffers.get(group)
        for topic, offset in last.items():
            self.positions[(topic, group)] = offset
            self.record.positions[(topic, group)] = offset
            self.commits[TopicPartition(topic, group)] = offset + 1
            if self.event_clock and buffer is not None and topic in buffer.settled:
                read_to = ReadTo(buffer.settled[topic], buffer.watermarked)
                self.record.read_to[(topic, group)] = read_to
        earlier = self.record.trackings.get(group)
        self.record.trackings[group] = GroupProgress(
            expected if earlier is None else earlier.expected, self._progress(group)
        )

    def _fence(self, groups: Iterable[int]) -> None:
        """Timers fired on what this worker knows of these groups are written only if no
        other worker has recorded one of them since: one that lost them in a rebalance it
        has not heard of yet must not run steps the new owner may have cancelled (a DNC, a
        reply). Each tracking stays where it is (a compare and set to the same value)."""
        for group in groups:
            if group not in self.record.trackings:
                progress = self._progress(group)
                self.record.trackings[group] = GroupProgress(progress, progress)

    def _progress(self, group: int) -> int:
        """The group's tracking as this worker knows it: the sum of its next offsets."""
        return sum(offset + 1 for (_, g), offset in self.positions.items() if g == group)

    def _decide(self, item: Pending) -> bool:
        """Decide one record into the current record; True for a definition change."""
        context = DecidingContext(
            self.engine,
            self.metrics,
            self.partition_count,
            self.partition_of,
            self.definitions_version,
            None if self.event_clock else self.clock,
        )
        decided = decide_record(item, self.record, context)
        # The engine may be half changed: what was decided before it is written, and the
        # engine rebuilt from the store without it (see `engine_failed`).
        if decided is Decided.ENGINE_FAILED:
            self.engine_failed = True
        return decided is Decided.DEFINITION_CHANGE

    def partition_of(self, contact_id: str) -> int:
        return routing.kafka_partition(contact_id, self.partition_count)

    def _fire_timers(self, *, finished: bool) -> None:
        if not self.event_clock:
            self._tick(self.clock(), frozenset(tp.partition for tp in self.assigned))
            return
        # Event time moves only with the inputs. A group fires its timers up to where all
        # its topics are known complete (the producer's watermarks); without watermarks,
        # up to its latest input once the stream has gone quiet, and a group that never had
        # an input up to the latest moment of any: owner notices wait for every group to
        # leave their minute (Engine._notices_until), and an empty one must not hold them.
        for group in sorted({tp.partition for tp in self.assigned}):
            buffer = self.buffers.get(group)
            moment = timers_until(
                buffer.complete_until() if buffer is not None else None,
                finished=finished,
                clock=self.engine.partition_clock(group) or self.engine.now,
            )
            if moment is not None:
                self._tick(moment, group)

    def _tick(self, now: datetime, group: int | frozenset[int]) -> None:
        due = self.engine.next_due(group)
        if due is None or due > now:
            return
        outputs = self.engine.advance(now, partition=group)
        if outputs:
            self._fence([group] if isinstance(group, int) else group)
            # Recorded after the inputs decided before it, in the same transaction.
            names = self._stream_names()
            # On the wall clock the tick names the groups it fired for by their streams.
            one = group if isinstance(group, int) else None
            self.record.stored.append(
                self.store.tick(now, names, one, definitions=self.definitions_version)
            )
            self.record.outbox.extend(outbox_rows(outputs, topic_for))
            self.metrics.events_out.inc(len(outputs))

    def _sync_definitions(self, *, at_once: bool = False) -> None:
        # A query on the event loop: under a trickle of records the loop takes many small
        # polls a second, and another worker's definition change may wait this long.
        now = time.monotonic()
        if not at_once and now - self.definitions_checked < DEFINITIONS_EVERY:
            return
        self.definitions_checked = now
        try:
            changes = self.store.definitions_after(self.definitions_version)
        except DATABASE_LOST as error:
            # Nothing is decided yet: read again on a new pool once PostgreSQL answers
            # (_reconnect_for_reads), no rebuild.
            log.warning("could not read the definitions (%s); reading again", one_line(error))
            self.reads_lost = True
            return
        for change in changes:
            outputs = self.engine.adopt(
                change.document, change.deleted, change.applied_at, f"defs:{change.version}"
            )
            self.definitions_version = change.version
            if outputs:
                # Steps the change moved may run now: fenced as fired timers are.
                self._fence(tp.partition for tp in self.assigned)
                names = self._stream_names()
                # Where the adoption happened among this worker's inputs: a rebuild adopts
                # the change at this point (and fires nothing here).
                marker = self.store.tick(
                    change.applied_at, names, definitions=change.version, adopted=True
                )
                self.record.stored.append(marker)
                self.record.outbox.extend(outbox_rows(outputs, topic_for))
                self.metrics.events_out.inc(len(outputs))
            self._note_span(needs_one_worker(self.engine))

    # ---- rebalancing ---------------------------------------------------------------------

    async def assign(self, partitions: set[TopicPartition]) -> None:
        await self.consumer.topics()  # the partition count the timers are grouped by
        contacts_topic = self.settings.topic_prefix + "contacts"
        self.partition_count = len(self.consumer.partitions_for_topic(contacts_topic) or ())
        if not self.partition_count:
            raise RuntimeError(f"no partitions known for {contacts_topic}: is the topic there?")
        self.assigned = set(partitions)
        groups = sorted({tp.partition for tp in partitions})
        self.metrics.groups_held.set(len(groups))
        log.info(
            "assigned partition groups %s of %d",
            ", ".join(map(str, groups)) or "none",
            self.partition_count,
        )
        # Rebuilt by the worker's own loop, not here: aiokafka sends no heartbeats while a
        # rebalance callback runs, and a rebuild longer than the session timeout got the
        # worker expelled from the group, to rebuild again, for ever.
        self._invalidate()
        self.stale = True
        self.rebuilding = False

    async def _rebuild(self) -> None:
        """A fresh engine from the stored inputs of the assigned groups, in the order they
        were decided. It runs in a thread, from the worker's loop, so the consumer's
        heartbeats go on meanwhile; a rebalance meanwhile makes it start again."""
        started = time.perf_counter()
        self.rebuilding = True
        self._invalidate()
        generation = self.generation
        self.metrics.rebuilding.set(1)
        try:
            await self._drain()  # the rebuild reads what the write in flight records
            rebuilt = await self._rebuild_engine(generation)
        finally:
            self.rebuilding = False
            self.metrics.rebuilding.set(0)
        if rebuilt:
            log.info("rebuilt the engine from the store in %.2fs", time.perf_counter() - started)
            self._warn_of_a_split_span()

    # ---- who holds the partitions (streams/assignment.py) ----------------------------------

    def _member_state(self) -> MemberState:
        return MemberState(self.one_worker)

    def _spanned_in_store(self) -> bool:
        """Whether a sequence spanned contacts in any definitions the store holds, told at
        the first join (the engine is built after it). Unread (PostgreSQL away), False:
        the rebuild tells again before anything is decided."""
        try:
            return spanned_in_store(self.store)
        except DATABASE_LOST as error:
            log.warning("could not read the definitions (%s)", one_line(error))
            return False

    def _holds_part(self) -> bool:
        """Some of the partition groups, not all."""
        return 0 < len({tp.partition for tp in self.assigned}) < self.partition_count

    def _note_span(self, spanned: bool) -> None:
        """From the first sequence spanning contacts on, this worker asks for one worker to
        hold every partition, and never again for them to be spread: a rebuild replays
        every stored input, those decided under a throttle too (a snapshot stands for the
        same partitions only), and with part of the partitions it would decide them again
        without the others' places. A worker holding some of them joins the group again,
        deciding nothing more before."""
        if self.one_worker or not spanned:
            return
        self.one_worker = True
        self.metrics.one_worker.set(1)
        if self._holds_part():
            log.info(
                "a sequence spans contacts (a throttle or owner changes): asking the group"
                " to give every partition to one worker"
            )
            self.rejoin_wanted = True

    async def _rejoin(self) -> None:
        """Record what was decided, give the partitions up as a revocation does, and join
        again: a new subscription to the same topics makes aiokafka do so."""
        await self._submit(wait=True)
        if not self.rejoin_wanted:
            return  # a rebalance came meanwhile, and this worker's join told the group
        self.rejoin_wanted = False
        self.assigned = set()
        self.metrics.groups_held.set(0)
        self.rebuilding = True  # nothing is decided until the new assignment is rebuilt
        self._invalidate()
        self.consumer.subscribe(topics=list(self.topics), listener=_Rebalance(self))

    def _warn_of_a_split_span(self) -> None:
        """Holding some of the partitions while the definitions need one worker, this
        worker's rebuild may have decided otherwise than was published: the group gives
        every partition to one worker (streams/assignment.py) unless a worker of a version
        before that is in it (README). Not while it asks for that itself."""
        if self.one_worker and not self.rejoin_wanted and self._holds_part():
            log.warning(
                "this worker holds %d of %d partitions while its definitions need one worker"
                " (a sequence with a throttle or owner changes, now or before): until one"
                " worker holds them all, steps may run otherwise than published (README)",
                len({tp.partition for tp in self.assigned}),
                self.partition_count,
            )

    async def _rebuild_engine(self, generation: int) -> bool:
        names = self._stream_names()
        if self.store_lost or self.reads_lost:  # no write runs now: _rebuild drained them
            await asyncio.to_thread(self.store.reconnect)
        # The positions before the inputs: a write by another worker in between then
        # leaves this one's trackings behind the store's, and its first write is refused
        # (read after, they could cover inputs the replay never saw, and be accepted).
        stored, read_to = await asyncio.to_thread(self.store.progress)
        groups = frozenset(tp.partition for tp in self.assigned)
        try:
            replayed = await asyncio.to_thread(self._replay_store, names, groups)
        except RebuildAbandonedError:
            replayed = None
        if replayed is None or self.generation != generation:
            # The assignment changed meanwhile (`stale` says to start again), or the worker
            # stops: the rest of the store was not replayed for nothing.
            log.info("gave up rebuilding for partition groups %s", sorted(groups))
            return False
        engine = self.engine = replayed.engine
        self.timers_counted = engine.timers_fired  # replayed firings were counted when live
        self.definitions_version = replayed.applied
        self.definitions_checked = float("-inf")
        self.stale = False
        self.store_lost = False
        self.reads_lost = False
        self.commands_read = False
        self.buffers = {tp.partition: GroupBuffer(self.topics) for tp in self.assigned}
        # The records after the stored positions come again: a quiet spell before the
        # rebuild says nothing about them (it would count every topic read to its end).
        self.quiet_since = None
        for (topic, group), read in read_to.items():
            if TopicPartition(topic, group) in self.assigned:
                self.buffers[group].resume(topic, read.mark, read.watermarked)
        self.positions = {
            key: value for key, value in stored.items() if TopicPartition(*key) in self.assigned
        }
        for tp in self.assigned:
            # The store, not Kafka's committed offsets, says what was decided: nothing
            # recorded means from the beginning.
            position = self.positions.get((tp.topic, tp.partition))
            self.consumer.seek(tp, position + 1 if position is not None else 0)
        self.metrics.rebuilds.inc()
        self.writes.last_record = replayed.last_record
        # The snapshot started from needs no keeping again until something is written.
        taken = replayed.snapshot
        self.snapshot_covers = taken.last_record if taken is not None else -1
        if taken is not None:
            self.metrics.snapshots_taken.inc()
            log.info(
                "took the engine from its snapshot of %s and replayed %d stored inputs"
                " recorded after it",
                format_time(taken.taken_at),
                replayed.inputs,
            )
        else:
            log.info("replayed %d stored inputs", replayed.inputs)
        self._note_span(replayed.spanned)
        return True

    def _replay_store(self, names: list[str], groups: frozenset[int]) -> Replayed:
        """A fresh engine from the stored inputs of `names` (of the partition `groups`),
        run in a thread: it changes no state the event loop reads, and reads two flags of
        it, to give up (RebuildAbandonedError) once a rebalance or a stop makes it pointless."""
        generation = self.generation

        def abandoned() -> bool:
            return self.generation != generation or self.stopping.is_set()

        return replay_store(
            self.store,
            names,
            groups,
            partition_of=self.partition_of,
            event_clock=self.event_clock,
            key=snapshots.held_key(self.settings.clock, self.partition_count, names),
            abandoned=abandoned,
        )

    async def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self.gauges_at < GAUGES_EVERY:
            return
        self.gauges_at = now
        self.metrics.active_enrollments.set(self.engine.active_enrollments())
        self.metrics.timers_pending.set(self.engine.pending_timers())
        self.metrics.timers_due.set(self._timers_due())
        self.metrics.repeated_inputs.set(self.engine.duplicates)
        # Fired since the engine was built: the ones before an input and by the clock alike.
        self.metrics.timers_fired.inc(self.engine.timers_fired - self.timers_counted)
        self.timers_counted = self.engine.timers_fired
        # The broker's ends first, with no await between: the assignment cannot change.
        ends = {
            tp: (self.consumer.highwater(tp), self.consumer.last_stable_offset(tp))
            for tp in self.assigned
        }
        progress = [
            PartitionProgress(highwater, last_stable, await self._position(tp))
            for tp, (highwater, last_stable) in ends.items()
        ]
        held = sum(len(buffer) for buffer in self.buffers.values())
        self.metrics.lag.set(consumer_lag(progress, held))

    def _timers_due(self) -> int:
        if not self.event_clock:
            return self.engine.timers_due(self.clock())
        due = 0
        for group in {tp.partition for tp in self.assigned}:
            moment = self.engine.partition_clock(group)
            if moment is not None:
                due += self.engine.timers_due(moment, group)
        return due

    async def _position(self, tp: TopicPartition) -> int | None:
        """The consumer's next offset; None while it is not known (a partition being
        revoked, or its position being reset), rather than wait for it here."""
        try:
            position: int = await asyncio.wait_for(self.consumer.position(tp), POSITION_WAIT)
        except (IllegalStateError, TimeoutError):
            return None
        return position


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """A revocation waits for the writes under way and drops what was decided but not yet
    being written; an assignment rebuilds the engine for exactly the groups now
    owned (and seeks them to their stored positions, so the dropped records come again)."""

    def __init__(self, worker: EngineWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.worker.assigned -= set(revoked)
        # The join that follows tells the group what a rejoin of its own would have.
        self.worker.rejoin_wanted = False
        self.worker.rebuilding = True  # nothing is decided until the new assignment is rebuilt
        self.worker._invalidate()
        # An error of the write is raised again to the worker's own loop.
        with contextlib.suppress(Exception):
            await self.worker._drain()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.worker.assign(set(assigned))
