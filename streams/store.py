"""The engine's durable log on PostgreSQL, through the eventsourcing library.

One transaction per Kafka partition and batch holds: the accepted input records (the
stored events of the stream `in:<topic>:<partition>`, version = Kafka offset), the Kafka
position (eventsourcing `Tracking`), and the decisions those inputs caused (the `outbox`
table, unique by event id). The engine's state is a pure function of its inputs and their
decision times, so a worker rebuilds it by replaying the stored inputs of the partitions it
is given, in the store's notification order; timers are part of that state.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from psycopg import Cursor
from psycopg.rows import DictRow

from schemas.envelope import CloudEvent, format_time, parse_time

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
    "CREATE TABLE IF NOT EXISTS {schema}.dripstream_contacts ("
    " contact_id text PRIMARY KEY,"
    " tags text[] NOT NULL DEFAULT '{{}}',"
    " line_id text)",
    "CREATE TABLE IF NOT EXISTS {schema}.dripstream_positions ("
    " topic text NOT NULL,"
    " partition int NOT NULL,"
    " position bigint NOT NULL,"
    " PRIMARY KEY (topic, partition))",
)

AlreadyRecorded = IntegrityError
# A change of definitions to adopt: (document, deleted sequence ids, when, cause id).
Definition = tuple[dict[str, Any], list[str], datetime, str]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
SETUP_LOCK = 0x64726971  # advisory lock serialising the creation of the tables


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One event to publish: the topic (without prefix), its key and its JSON bytes."""

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
        state = orjson.dumps(
            {
                "at": format_time(self.at) if self.at else None,
                "definitions": self.definitions,
                "event": orjson.Fragment(self.event),
            }
        )
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
    kind: str  # "input" or "tick"
    at: datetime | None
    definitions: int
    event: bytes | None
    partition: int | None


@dataclass(frozen=True, slots=True)
class Definitions:
    version: int
    document: dict[str, Any]
    deleted: tuple[str, ...]
    applied_at: datetime


class EngineRecorder(PostgresProcessRecorder):
    """The eventsourcing process recorder, plus the outbox rows in the same transaction."""

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

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        schema = self.datastore.schema
        outbox: Sequence[OutboxRow] = kwargs.get("outbox", ())
        if outbox:
            # The same decision can be recorded twice only by a rebuilt worker re-firing a
            # timer; its id is the same, so the second copy is dropped here.
            curs.executemany(
                f"INSERT INTO {schema}.dripstream_outbox (event_id, topic, key, value)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
                [(row.event_id, row.topic, row.key, row.value) for row in outbox],
            )
        contacts: Sequence[tuple[str, list[str], str | None]] = kwargs.get("contacts", ())
        if contacts:
            curs.executemany(
                f"INSERT INTO {schema}.dripstream_contacts (contact_id, tags, line_id)"
                " VALUES (%s, %s, %s) ON CONFLICT (contact_id)"
                " DO UPDATE SET tags = EXCLUDED.tags, line_id = EXCLUDED.line_id",
                contacts,
            )
        positions: Sequence[tuple[str, int, int]] = kwargs.get("positions", ())
        if positions:
            curs.executemany(
                f"INSERT INTO {schema}.dripstream_positions (topic, partition, position)"
                " VALUES (%s, %s, %s) ON CONFLICT (topic, partition)"
                " DO UPDATE SET position = EXCLUDED.position",
                positions,
            )
        definition: Definition | None = kwargs.get("definition")
        if definition is not None:
            document, deleted, at, cause = definition
            curs.execute(
                f"INSERT INTO {schema}.dripstream_definitions"
                " (document, deleted, applied_at, cause)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (cause) DO NOTHING",
                (orjson.dumps(document).decode(), deleted, at, cause),
            )


class EngineStore:
    """What the worker and the relay need from PostgreSQL."""

    def __init__(self, database_url: str, schema: str = "public") -> None:
        if not _IDENTIFIER.fullmatch(schema):
            raise ValueError(f"schema {schema!r} must be a plain SQL identifier")
        params = _conninfo(database_url)
        self.datastore = PostgresDatastore(
            dbname=params["dbname"],
            host=params["host"],
            port=params["port"],
            user=params["user"],
            password=params["password"],
            schema=schema,
            pool_size=4,
            originator_id_type="text",
        )
        self.recorder = EngineRecorder(self.datastore)
        with self.datastore.get_connection() as conn:
            # Workers starting together would race creating the tables (and the library's
            # tracking migration row): one at a time.
            conn.execute("SELECT pg_advisory_lock(%s)", (SETUP_LOCK,))
            try:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                conn.commit()
                self.recorder.create_table()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
                conn.commit()

    def close(self) -> None:
        self.datastore.close()

    def positions(self) -> dict[tuple[str, int], int]:
        """The highest Kafka offset already recorded, per input topic partition."""
        schema = self.datastore.schema
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(f"SELECT topic, partition, position FROM {schema}.dripstream_positions")
            return {
                (str(r["topic"]), int(r["partition"])): int(r["position"]) for r in curs.fetchall()
            }

    def record(
        self,
        group: int,
        progress: int,
        inputs: Sequence[InputRecord],
        positions: Sequence[tuple[str, int, int]],
        outbox: Sequence[OutboxRow],
        contacts: Sequence[tuple[str, list[str], str | None]] = (),
        definition: Definition | None = None,
    ) -> None:
        """One transaction for one partition group (one partition number across the input
        topics): the inputs in the order they were decided, the group's new positions,
        and the decisions.

        `progress` (the sum of the group's next offsets) grows with every record; the
        eventsourcing tracking refuses one that does not, so a redelivered or stale batch
        raises AlreadyRecorded and the caller knows its in-memory state is stale.
        """
        self.recorder.insert_events(
            [record.stored() for record in inputs],
            tracking=Tracking(f"inputs:{group}", progress),
            outbox=outbox,
            contacts=contacts,
            definition=definition,
            positions=positions,
        )

    def record_tick(
        self,
        at: datetime,
        partitions: Sequence[str],
        outbox: Sequence[OutboxRow],
        partition: int | None = None,
    ) -> None:
        """Decisions of timers fired by the clock alone (of one partition's timers, or all),
        with a tick so a rebuild fires them at the same point."""
        tick = StoredEvent(
            originator_id=f"tick:{format_time(at)}:{partition}:{','.join(partitions)}",
            originator_version=0,
            topic=TICK_TOPIC,
            state=orjson.dumps(
                {"at": format_time(at), "partitions": list(partitions), "partition": partition}
            ),
        )
        try:
            self.recorder.insert_events([tick], outbox=outbox)
        except IntegrityError:
            # The same tick recorded before a restart: its decisions have the same ids.
            self.recorder.insert_events([], outbox=outbox)

    def replayable(self, partitions: Sequence[str]) -> Iterator[Replayable]:
        """The stored inputs of these partitions (`topic:partition`) and the ticks that
        touched them, in the order they were decided."""
        wanted = {f"{INPUT_TOPIC}:{p}" for p in partitions}
        start = 1
        while True:
            batch = self.recorder.select_notifications(start=start, limit=2000)
            if not batch:
                return
            for note in batch:
                if note.topic in wanted:
                    state = orjson.loads(note.state)
                    at = parse_time(state["at"]) if state["at"] else None
                    partition = int(note.topic.rsplit(":", 1)[1])
                    yield Replayable(
                        note.id,
                        "input",
                        at,
                        int(state["definitions"]),
                        orjson.dumps(state["event"]),
                        partition,
                    )
                elif note.topic == TICK_TOPIC:
                    state = orjson.loads(note.state)
                    if wanted & {f"{INPUT_TOPIC}:{p}" for p in state["partitions"]}:
                        yield Replayable(
                            note.id,
                            "tick",
                            parse_time(state["at"]),
                            0,
                            None,
                            state.get("partition"),
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

    def contacts_matching(self, tag: str | None, line_id: str | None) -> list[str]:
        schema = self.datastore.schema
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            if tag is not None:
                curs.execute(
                    f"SELECT contact_id FROM {schema}.dripstream_contacts"
                    " WHERE %s = ANY(tags) ORDER BY 1",
                    (tag,),
                )
            else:
                curs.execute(
                    f"SELECT contact_id FROM {schema}.dripstream_contacts"
                    " WHERE line_id = %s ORDER BY 1",
                    (line_id,),
                )
            return [str(r["contact_id"]) for r in curs.fetchall()]

    def outbox_after(self, position: int, limit: int) -> list[tuple[int, OutboxRow]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT id, event_id, topic, key, value"
                f" FROM {self.datastore.schema}.dripstream_outbox"
                " WHERE id > %s ORDER BY id LIMIT %s",
                (position, limit),
            )
            return [
                (int(r["id"]), OutboxRow(r["event_id"], r["topic"], r["key"], bytes(r["value"])))
                for r in curs.fetchall()
            ]


def outbox_rows(events: Sequence[CloudEvent], topic_for: Any) -> list[OutboxRow]:
    return [OutboxRow(e.id, topic_for(e.type), e.subject, e.encode()) for e in events]


def _conninfo(url: str) -> dict[str, str]:
    from urllib.parse import unquote, urlsplit  # noqa: PLC0415 - only here

    parts = urlsplit(url)
    return {
        "dbname": parts.path.lstrip("/") or "postgres",
        "host": parts.hostname or "127.0.0.1",
        "port": str(parts.port or 5432),
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
    }
