"""The engine's durable log on PostgreSQL, through the eventsourcing library.

One transaction per worker batch (every partition group the batch touched) holds: the
accepted input records (the stored events of the stream `in:<topic>:<partition>`, version =
Kafka offset), the ticks of the clock that fired timers, each group's Kafka position
(eventsourcing `Tracking`), and the decisions those inputs caused (the `outbox` table,
unique by event id). The engine's state is a pure function of its inputs and their
decision times, so a worker rebuilds it by replaying the stored inputs of the partitions it
is given, in the store's notification order; timers are part of that state.

Rows go in with binary COPY (a batch is thousands of rows; one INSERT per row costs more
in Python than deciding them), and the transaction ends with a NOTIFY that wakes the outbox
relay (streams/relay.py).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from psycopg import Connection, Cursor
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow

from aggregates.timer_queue import Partitions, alone
from schemas.envelope import CloudEvent, format_time, parse_time
from streams.ordering import UNPLACED, Mark

INPUT_TOPIC = "input"
TICK_TOPIC = "tick"
EVENTS_TABLE = "dripstream_log"
TRACKING_TABLE = "dripstream_tracking"

OUTBOX_DDL = (
    "CREATE TABLE IF NOT EXISTS {schema}.dripstream_outbox ("
    " id bigserial PRIMARY KEY,"
    " event_id text NOT NULL UNIQUE,"
    " topic text NOT NULL,"
    " key text,"
    " value bytea NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {schema}.dripstream_definitions ("
    " version bigserial PRIMARY KEY,"
    " document jsonb NOT NULL,"
    " deleted text[] NOT NULL DEFAULT '{{}}',"
    " applied_at timestamptz NOT NULL,"
    " cause text NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS {schema}.dripstream_positions ("
    " topic text NOT NULL,"
    " partition int NOT NULL,"
    " position bigint NOT NULL,"
    " PRIMARY KEY (topic, partition))",
    # How far the topic was read up to that position, under the event clock (ReadTo). Added
    # to a table of an earlier release as it starts: the columns are nullable.
    "ALTER TABLE {schema}.dripstream_positions ADD COLUMN IF NOT EXISTS read_time timestamptz",
    "ALTER TABLE {schema}.dripstream_positions ADD COLUMN IF NOT EXISTS read_run bigint",
    "ALTER TABLE {schema}.dripstream_positions ADD COLUMN IF NOT EXISTS read_line bigint",
    "ALTER TABLE {schema}.dripstream_positions ADD COLUMN IF NOT EXISTS watermarked boolean",
    # The topic prefix these tables serve: one row. Two deployments (prefixes) on one
    # broker must not share them, or each relay would publish the other's decisions.
    "CREATE TABLE IF NOT EXISTS {schema}.dripstream_deployment ("
    " one boolean PRIMARY KEY DEFAULT true CHECK (one),"
    " topic_prefix text NOT NULL)",
    # A clean stop's engine, for the next rebuild of the same groups (streams/snapshots.py).
    "CREATE TABLE IF NOT EXISTS {schema}.dripstream_snapshots ("
    " held text PRIMARY KEY,"
    " code text NOT NULL,"
    " last_record bigint NOT NULL,"
    " applied bigint NOT NULL,"
    " spanned boolean NOT NULL,"
    " taken_at timestamptz NOT NULL DEFAULT now(),"
    " body bytea NOT NULL)",
)

# Whoever commits outbox rows wakes the relay on this channel (payload: the schema).
OUTBOX_CHANNEL = "dripstream_outbox"

# From this many rows (inputs, ticks and decisions) a batch is written with COPY.
COPY_FROM_ROWS = 2000

AlreadyRecorded = IntegrityError
# A change of definitions to adopt: (document, deleted sequence ids, when, cause id).
Definition = tuple[dict[str, Any], list[str], datetime, str]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
SETUP_LOCK = 0x64726971  # advisory lock serialising the creation of the tables


class AnotherDeploymentsStoreError(Exception):
    """The schema's tables already serve another topic prefix."""


class UnsupportedDatabaseOptionError(ValueError):
    """DATABASE_URL names a connection option the event store's pool cannot pass on."""


# What eventsourcing's PostgresDatastore connects with (it builds the connection itself).
_POOL_PARAMETERS = frozenset({"dbname", "host", "port", "user", "password"})


class OutboxRow(NamedTuple):
    """One event to publish: the topic (without prefix), its key and its JSON bytes.
    A tuple, not a dataclass: the worker makes several for every input."""

    event_id: str
    topic: str
    key: str | None
    value: bytes


@dataclass(frozen=True, slots=True)
class InputRecord:
    """An accepted input as stored: the decision time and definitions version it saw."""

    topic: str
    partition: int
    offset: int
    at: datetime | None
    definitions: int
    event: bytes

    def stored(self) -> StoredEvent:
        fields: dict[str, Any] = {
            "at": format_time(self.at) if self.at else None,
            "definitions": self.definitions,
            "event": orjson.Fragment(self.event),
        }
        if self.at is not None:
            # Decided on the wall clock after its own partition's due timers alone (an
            # input stored by an earlier release, without the mark, fired every partition's
            # the worker held, and is replayed so).
            fields["own_timers"] = True
        state = orjson.dumps(fields)
        return StoredEvent(
            originator_id=f"in:{self.topic}:{self.partition}",
            originator_version=self.offset,
            topic=f"{INPUT_TOPIC}:{self.topic}:{self.partition}",
            state=state,
        )


@dataclass(frozen=True, slots=True)
class Replayable:
    """A stored record to feed a rebuild: an input, or a tick of the worker's clock."""

    notification_id: int
    kind: str  # "input", "tick", or "adopt" (another worker's definition change taken)
    at: datetime | None
    definitions: int
    event: bytes | None
    # Whose due timers fired before it: an input's (`_input_partitions`), a tick's (the
    # event clock's partition, or on the wall clock those of the streams the worker held).
    partition: Partitions


def in_definitions_order(items: Iterable[Replayable]) -> list[Replayable]:
    """Stored records as a rebuild replays them: by the definitions version they were
    decided under, then in the order they were decided.

    Each worker adopts another's definition change a little after it was decided, so a
    group it decides for records inputs under the old version after the change's own
    records; replayed in the order of the log alone, a rebuild that takes both workers'
    groups would decide those inputs under the new definitions (enrolling contacts in a
    sequence they never joined, and sending its steps). A group's records never go back
    to an older version, so each group keeps its own order. A tick of a store written
    before ticks carried the version (0) keeps the place of the record before it."""
    keyed: list[tuple[int, Replayable]] = []
    level = 0
    for item in items:
        if item.kind != "tick" or item.definitions:
            level = item.definitions
        keyed.append((level, item))
    keyed.sort(key=lambda entry: entry[0])  # stable: the decided order within a version
    return [item for _, item in keyed]


@dataclass(frozen=True, slots=True)
class Definitions:
    version: int
    document: dict[str, Any]
    deleted: tuple[str, ...]
    applied_at: datetime


class GroupProgress(NamedTuple):
    """A partition group's tracking: the sum of its topics' next offsets. A batch moves it
    from `expected` (what the store must hold when the batch is written: 0 for nothing yet)
    to `progress`."""

    expected: int
    progress: int


_UNREAD = (None, None, None, None)  # a position recorded without how far it was read


@dataclass(frozen=True, slots=True)
class ReadTo:
    """How far an input topic partition was read, counting what was decided up to its
    recorded position (`GroupBuffer.settled`), and whether its producer writes watermarks.
    A worker that starts again reads on after that position, past the watermarks it read
    before: without this, a group would wait for a watermark that never comes again."""

    mark: Mark
    watermarked: bool

    def row(self) -> tuple[datetime, int | None, int | None, bool]:
        moment, run, line = self.mark
        if (run, line) == UNPLACED:
            return moment, None, None, self.watermarked  # 2**63 fits no bigint
        return moment, run, line, self.watermarked

    @classmethod
    def of_row(
        cls, moment: datetime, run: int | None, line: int | None, watermarked: bool | None
    ) -> ReadTo:
        place = UNPLACED if run is None or line is None else (run, line)
        return cls((moment, *place), bool(watermarked))


@dataclass(slots=True)
class BatchRecord:
    """Everything one worker batch records, in one transaction: built while deciding."""

    stored: list[StoredEvent] = field(default_factory=list)  # inputs and ticks, as decided
    trackings: dict[int, GroupProgress] = field(default_factory=dict)  # by partition group
    positions: dict[tuple[str, int], int] = field(default_factory=dict)  # highest offset
    read_to: dict[tuple[str, int], ReadTo] = field(default_factory=dict)  # at those positions
    outbox: list[OutboxRow] = field(default_factory=list)
    definition: Definition | None = None

    def __bool__(self) -> bool:
        return bool(self.stored or self.trackings or self.outbox or self.definition)

    def extend(self, later: BatchRecord) -> None:
        """Take in a batch decided after this one, so one transaction records both."""
        if later.definition is not None:
            if self.definition is not None:
                raise ValueError("a batch holds one definition change at most")
            self.definition = later.definition
        self.stored.extend(later.stored)
        for group, moved in later.trackings.items():
            # From where this batch found the group to where the later one left it.
            earlier = self.trackings.get(group)
            start = moved.expected if earlier is None else earlier.expected
            self.trackings[group] = GroupProgress(start, moved.progress)
        self.positions.update(later.positions)
        self.read_to.update(later.read_to)
        self.outbox.extend(later.outbox)


class EngineRecorder(PostgresProcessRecorder):
    """The eventsourcing process recorder, plus the outbox, positions and definitions in the
    same transaction."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        super().__init__(
            datastore, events_table_name=EVENTS_TABLE, tracking_table_name=TRACKING_TABLE
        )
        schema = datastore.schema
        self.create_table_statements_extra = [ddl.format(schema=schema) for ddl in OUTBOX_DDL]

    def create_table(self) -> None:
        super().create_table()
        with self.datastore.transaction(commit=True) as curs:
            for statement in self.create_table_statements_extra:
                curs.execute(statement)

    def write(self, batch: BatchRecord, *, copy: bool | None = None) -> int | None:
        """One transaction. A group whose tracking is not what the batch expects (another
        worker recorded that group since this one read or wrote it) raises IntegrityError
        and nothing of the batch is kept. Returns the notification id of the batch's last
        stored record (None without one): a snapshot covers the records up to it.

        A large batch goes in with binary COPY (least work per row); a small one as a few
        array-valued statements sent in one pipeline, since COPY costs round trips that
        dominate a batch of a few records. `copy` forces one way (tests run both)."""
        if copy is None:
            copy = len(batch.stored) + len(batch.outbox) >= COPY_FROM_ROWS
        with self.datastore.get_connection() as conn:
            if copy:
                with conn.transaction(), conn.cursor() as curs:
                    return self._write_copying(curs, batch)
            return self._write_pipelined(conn, batch)

    def _last_id_statement(self) -> str:
        """The last notification id this session drew: under the write lock, the batch's
        own ids are the last ones drawn, in order."""
        table = f"{self.datastore.schema}.{EVENTS_TABLE}"
        return f"SELECT currval(pg_get_serial_sequence('{table}', 'notification_id')) AS last"

    def _write_copying(self, curs: Cursor[DictRow], batch: BatchRecord) -> int | None:
        schema = self.datastore.schema
        # The write lock comes before any id is drawn from a sequence: readers of the
        # outbox (the relay) and of the notification log (a rebuild) go by id, so no
        # transaction may commit ids below those of one that committed before it.
        self._lock_table(curs)
        if batch.trackings:
            curs.execute(self._fence_statement(), _fence_arguments(batch))
            _check_fence(curs.fetchall(), batch)
        if batch.stored:
            with curs.copy(
                f"COPY {schema}.{EVENTS_TABLE}"
                " (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["text", "int8", "text", "bytea"])
                for e in batch.stored:
                    copy.write_row((e.originator_id, e.originator_version, e.topic, e.state))
        last = None
        if batch.stored:
            curs.execute(self._last_id_statement())
            row = curs.fetchone()
            last = int(row["last"]) if row else None
        if batch.outbox:
            _copy_outbox(curs, schema, batch.outbox)
        self._write_rest(curs, batch)
        return last

    def _write_pipelined(self, conn: Connection[DictRow], batch: BatchRecord) -> int | None:
        schema = self.datastore.schema
        tracked: list[Any] = []
        last_rows: list[Any] = []
        with conn.transaction():
            with (
                conn.pipeline(),
                conn.cursor() as curs,
                conn.cursor() as tracking,
                conn.cursor() as last,
            ):
                self._lock_table(curs)  # first, as in _write_copying
                if batch.trackings:
                    tracking.execute(self._fence_statement(), _fence_arguments(batch))
                if batch.stored:
                    curs.execute(
                        f"INSERT INTO {schema}.{EVENTS_TABLE}"
                        " (originator_id, originator_version, topic, state)"
                        " SELECT i, v, t, s FROM unnest(%b::text[], %b::bigint[], %b::text[],"
                        " %b::bytea[]) WITH ORDINALITY AS u(i, v, t, s, n) ORDER BY n",
                        _columns(
                            [
                                (e.originator_id, e.originator_version, e.topic, e.state)
                                for e in batch.stored
                            ],
                            4,
                        ),
                    )
                    last.execute(self._last_id_statement())
                if batch.outbox:
                    curs.execute(
                        f"INSERT INTO {schema}.dripstream_outbox (event_id, topic, key, value)"
                        " SELECT e, t, k, v FROM unnest(%b::text[], %b::text[], %b::text[],"
                        " %b::bytea[]) WITH ORDINALITY AS u(e, t, k, v, n) ORDER BY n"
                        " ON CONFLICT (event_id) DO NOTHING",
                        _columns(batch.outbox, 4),
                    )
                self._write_rest(curs, batch)
                if batch.trackings:
                    tracked = tracking.fetchall()  # the pipeline's results, in one round trip
                if batch.stored:
                    last_rows = last.fetchall()
            # Raised inside the transaction, so it rolls back: nothing is kept.
            _check_fence(tracked, batch)
        return int(last_rows[0]["last"]) if last_rows else None

    def _fence_statement(self) -> str:
        """Each group's tracking moves only from the value the batch expects (compare and
        set). Growing alone would not do: a worker that rebuilt before another's write to
        one topic of a group, then read further on another topic, would carry a larger sum
        and pass, its decisions made without the record the other wrote."""
        table = f"{self.datastore.schema}.{TRACKING_TABLE}"
        return (
            "WITH v (name, progress, expected) AS"
            " (SELECT * FROM unnest(%b::text[], %b::bigint[], %b::bigint[]))"
            f" INSERT INTO {table} (application_name, notification_id)"
            " SELECT name, progress FROM v"
            " ON CONFLICT (application_name) DO UPDATE"
            " SET notification_id = EXCLUDED.notification_id"
            f" WHERE {table}.notification_id"
            " = (SELECT expected FROM v WHERE v.name = EXCLUDED.application_name)"
            " RETURNING application_name"
        )

    def _write_rest(self, curs: Cursor[DictRow], batch: BatchRecord) -> None:
        """Positions, a definition change and the relay's wake-up, either way."""
        schema = self.datastore.schema
        if batch.positions:
            rows = [
                (t, p, o, *(read.row() if (read := batch.read_to.get((t, p))) else _UNREAD))
                for (t, p), o in sorted(batch.positions.items())
            ]
            # A position recorded without how far it was read (wall clock) keeps what was.
            curs.execute(
                f"INSERT INTO {schema}.dripstream_positions"
                " (topic, partition, position, read_time, read_run, read_line, watermarked)"
                " SELECT * FROM unnest(%b::text[], %b::int[], %b::bigint[],"
                " %b::timestamptz[], %b::bigint[], %b::bigint[], %b::boolean[])"
                " ON CONFLICT (topic, partition) DO UPDATE SET position = EXCLUDED.position,"
                " read_time = coalesce(EXCLUDED.read_time, dripstream_positions.read_time),"
                " read_run = CASE WHEN EXCLUDED.read_time IS NULL"
                " THEN dripstream_positions.read_run ELSE EXCLUDED.read_run END,"
                " read_line = CASE WHEN EXCLUDED.read_time IS NULL"
                " THEN dripstream_positions.read_line ELSE EXCLUDED.read_line END,"
                " watermarked = coalesce(EXCLUDED.watermarked, dripstream_positions.watermarked)",
                [list(column) for column in zip(*rows, strict=True)],
            )
        if batch.definition is not None:
            document, deleted, at, cause = batch.definition
            curs.execute(
                f"INSERT INTO {schema}.dripstream_definitions"
                " (document, deleted, applied_at, cause)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (cause) DO NOTHING",
                (orjson.dumps(document).decode(), deleted, at, cause),
            )
        if batch.outbox:
            # Delivered at commit, and only then: the relay wakes to rows it can read.
            curs.execute("SELECT pg_notify(%s, %s)", (OUTBOX_CHANNEL, schema))


def _input_partitions(topic: str, at: datetime | None, state: dict[str, Any]) -> Partitions:
    """Whose due timers fired before an input: under the event clock, its partition's by
    that partition's clock; on the wall clock, its partition's alone, or every one the
    deciding worker held when an earlier release stored it (None: the rebuild's all)."""
    partition = int(topic.rsplit(":", 1)[1])
    if at is None:
        return partition
    return alone(partition) if state.get("own_timers") else None


def _tick_partitions(state: dict[str, Any]) -> Partitions:
    """Whose timers a tick fired: the event clock's partition, else those of the streams
    the worker held (a rebuild holding more must not fire the others' timers there: their
    own worker fired them, or will, and what a rebuild fires is never published)."""
    partition = state.get("partition")
    if partition is not None:
        return int(partition)
    return frozenset(int(name.rsplit(":", 1)[1]) for name in state["partitions"])


def tracking_name(group: int) -> str:
    """A partition group's row in the tracking table."""
    return f"inputs:{group}"


def _fence_arguments(batch: BatchRecord) -> tuple[list[str], list[int], list[int]]:
    groups = sorted(batch.trackings)
    return (
        [tracking_name(g) for g in groups],
        [batch.trackings[g].progress for g in groups],
        [batch.trackings[g].expected for g in groups],
    )


def _check_fence(moved: Sequence[Any], batch: BatchRecord) -> None:
    if len(moved) != len(batch.trackings):
        raise IntegrityError(
            f"a group was recorded elsewhere: {len(moved)} of {len(batch.trackings)}"
            " trackings were where this batch expected them"
        )


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as one list per column, for unnest()."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for n in range(width):
            columns[n].append(row[n])
    return columns


def _copy_outbox(curs: Cursor[DictRow], schema: str, rows: Sequence[OutboxRow]) -> None:
    # COPY cannot skip a conflicting row, and a decision may be recorded again (several
    # workers adopting one definition change): stage the rows, then insert them in order
    # (the relay publishes by id) leaving out the ids already there.
    curs.execute(
        "CREATE TEMP TABLE IF NOT EXISTS dripstream_outbox_stage"
        " (n int, event_id text, topic text, key text, value bytea) ON COMMIT DELETE ROWS"
    )
    with curs.copy("COPY dripstream_outbox_stage FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "text", "text", "text", "bytea"])
        for n, row in enumerate(rows):
            copy.write_row((n, row.event_id, row.topic, row.key, row.value))
    curs.execute(
        f"INSERT INTO {schema}.dripstream_outbox (event_id, topic, key, value)"
        " SELECT event_id, topic, key, value FROM dripstream_outbox_stage ORDER BY n"
        " ON CONFLICT (event_id) DO NOTHING"
    )


class EngineStore:
    """What the worker and the relay need from PostgreSQL."""

    def __init__(
        self, database_url: str, schema: str = "public", *, prefix: str = "dripstream."
    ) -> None:
        if not _IDENTIFIER.fullmatch(schema):
            raise ValueError(f"schema {schema!r} must be a plain SQL identifier")
        self._params = _conninfo(database_url)
        self._schema = schema
        self.datastore = self._new_datastore()
        self.recorder = EngineRecorder(self.datastore)
        # Ticks are told apart by this store's own name and a count: two workers, or one
        # before and after a restart, may tick at the same moment.
        self.tick_names = f"tick:{uuid.uuid4().hex}"
        self.tick_count = itertools.count()
        with self.datastore.get_connection() as conn:
            # Workers starting together would race creating the tables (and the library's
            # tracking migration row): one at a time.
            conn.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
            try:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                conn.commit()
                self.recorder.create_table()
                _claim(conn, schema, prefix)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
                conn.commit()

    def _new_datastore(self) -> PostgresDatastore:
        params = self._params
        return PostgresDatastore(
            dbname=params["dbname"],
            host=params["host"],
            port=params["port"],
            user=params["user"],
            password=params["password"],
            schema=self._schema,
            pool_size=4,
            originator_id_type="text",
            # A pooled connection PostgreSQL dropped (a restart) is replaced when taken,
            # rather than failing the write it was taken for.
            pre_ping=True,
        )

    def reconnect(self) -> None:
        """A fresh connection pool, for after PostgreSQL went away: the old pool's own
        retries back off for minutes (to psycopg_pool's reconnect timeout), and would
        leave the worker waiting long after PostgreSQL is back. Not while a write runs."""
        old = self.datastore
        self.datastore = self._new_datastore()
        self.recorder = EngineRecorder(self.datastore)
        with contextlib.suppress(Exception):  # a pool of dead connections closes as it can
            old.close()

    def close(self) -> None:
        self.datastore.close()

    def positions(self) -> dict[tuple[str, int], int]:
        """The highest Kafka offset already recorded, per input topic partition."""
        return self.progress()[0]

    def progress(self) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], ReadTo]]:
        """`positions`, and how far each topic partition was read at its position where
        that was recorded (under the event clock): one read, so the two agree."""
        schema = self.datastore.schema
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT topic, partition, position, read_time, read_run, read_line, watermarked"
                f" FROM {schema}.dripstream_positions"
            )
            rows = curs.fetchall()
        positions = {(str(r["topic"]), int(r["partition"])): int(r["position"]) for r in rows}
        read_to = {
            (str(r["topic"]), int(r["partition"])): ReadTo.of_row(
                r["read_time"], r["read_run"], r["read_line"], r["watermarked"]
            )
            for r in rows
            if r["read_time"] is not None
        }
        return positions, read_to

    def write(self, batch: BatchRecord) -> int | None:
        """One transaction for a worker batch: the inputs and ticks in the order they were
        decided, each group's tracking and positions, the decisions; the notification id
        of its last input or tick (None without one).

        A group's tracking is its `progress` (the sum of its next offsets), which grows with
        every batch and moves only from the value the batch expects, so a redelivered or
        stale batch raises AlreadyRecorded and the caller knows its in-memory state is
        stale.
        """
        return self.recorder.write(batch) if batch else None

    def tick(
        self,
        at: datetime,
        partitions: Sequence[str],
        partition: int | None = None,
        *,
        definitions: int = 0,
        adopted: bool = False,
    ) -> StoredEvent:
        """A tick of the clock that fired timers (of one partition's timers, or all), to
        record with their decisions so a rebuild fires them at the same point, under the
        definitions (version) in force then. `adopted`: no tick but the point where another
        worker's definition change (`definitions`) was adopted; a rebuild adopts it there."""
        state: dict[str, Any] = {
            "at": format_time(at),
            "partitions": list(partitions),
            "partition": partition,
            "definitions": definitions,
        }
        if adopted:
            state["adopted"] = True
        return StoredEvent(
            originator_id=self.tick_names,
            originator_version=next(self.tick_count),
            topic=TICK_TOPIC,
            state=orjson.dumps(state),
        )

    def replayable(self, partitions: Sequence[str], after: int = 0) -> Iterator[Replayable]:
        """The stored inputs of these partitions (`topic:partition`) and the ticks that
        touched them, in the order they were decided; those recorded after the record
        `after` (a notification id)."""
        wanted = {f"{INPUT_TOPIC}:{p}" for p in partitions}
        # Filtered by PostgreSQL: a worker with some of the partitions is sent only their
        # inputs (and the ticks, whose partitions are told apart below).
        topics = sorted(wanted | {TICK_TOPIC})
        start = after + 1
        while True:
            batch = self.recorder.select_notifications(start=start, limit=2000, topics=topics)
            if not batch:
                return
            for note in batch:
                if note.topic in wanted:
                    state = orjson.loads(note.state)
                    at = parse_time(state["at"]) if state["at"] else None
                    yield Replayable(
                        note.id,
                        "input",
                        at,
                        int(state["definitions"]),
                        orjson.dumps(state["event"]),
                        _input_partitions(note.topic, at, state),
                    )
                elif note.topic == TICK_TOPIC:
                    state = orjson.loads(note.state)
                    if wanted & {f"{INPUT_TOPIC}:{p}" for p in state["partitions"]}:
                        adopted = bool(state.get("adopted"))
                        yield Replayable(
                            note.id,
                            "adopt" if adopted else "tick",
                            parse_time(state["at"]),
                            int(state.get("definitions", 0)),  # 0 in rows of older versions
                            None,
                            None if adopted else _tick_partitions(state),
                        )
            start = batch[-1].id + 1

    def definitions_after(self, version: int) -> list[Definitions]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT version, document, deleted, applied_at"
                f" FROM {self.datastore.schema}.dripstream_definitions"
                " WHERE version > %s ORDER BY version",
                (version,),
            )
            return [
                Definitions(
                    int(r["version"]), dict(r["document"]), tuple(r["deleted"]), r["applied_at"]
                )
                for r in curs.fetchall()
            ]


def _claim(conn: Connection[DictRow], schema: str, prefix: str) -> None:
    """Take the schema's tables for `prefix`, or refuse when another prefix has them."""
    conn.execute(
        f"INSERT INTO {schema}.dripstream_deployment (topic_prefix) VALUES (%s)"
        " ON CONFLICT (one) DO NOTHING",
        (prefix,),
    )
    conn.commit()
    row = conn.execute(f"SELECT topic_prefix FROM {schema}.dripstream_deployment").fetchone()
    served = row["topic_prefix"] if row else prefix
    if served != prefix:
        raise AnotherDeploymentsStoreError(
            f"the engine's tables in PostgreSQL schema {schema!r} serve the topic prefix"
            f" {served!r}, not {prefix!r}: give each deployment its own schema (--schema)"
        )


def outbox_select(schema: str) -> str:
    """The relay's query: outbox rows after a position (%s), in id order, at most %s."""
    if not _IDENTIFIER.fullmatch(schema):
        raise ValueError(f"schema {schema!r} must be a plain SQL identifier")
    return (
        f"SELECT id, event_id, topic, key, value FROM {schema}.dripstream_outbox"
        " WHERE id > %s ORDER BY id LIMIT %s"
    )


def outbox_rows(events: Sequence[CloudEvent], topic_for: Any) -> list[OutboxRow]:
    return [OutboxRow(e.id, topic_for(e.type), e.subject, e.encode()) for e in events]


def _conninfo(url: str) -> dict[str, str]:
    """The parameters the event store's pool connects with, from a URL or `key=value` pairs.
    The pool takes no others, so an option beyond them is refused rather than dropped: a
    dropped `sslmode` would have the worker's writes go in the clear while its relay, which
    takes the URL whole, used TLS."""
    given = conninfo_to_dict(url)
    others = sorted(set(given) - _POOL_PARAMETERS)
    if others:
        raise UnsupportedDatabaseOptionError(
            f"DATABASE_URL: the engine's store cannot pass on {', '.join(others)}; set"
            " them as libpq's environment variables instead (PGSSLMODE for sslmode, ...),"
            " which every connection reads"
        )
    defaults = {
        "dbname": "postgres",
        "host": "127.0.0.1",
        "port": "5432",
        "user": "",
        "password": "",
    }
    return {name: str(given.get(name) or default) for name, default in defaults.items()}
