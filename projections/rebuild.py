"""Rebuilding the PostgreSQL read models from a whole output file, in bulk.

A rebuild starts from nothing, so it needs none of what makes `apply` safe to repeat: no
lookup of the events already stored, no loading of state, no upserts. It reads the file once
and folds every event in memory with the state.py classes (the rules every other path uses);
the history rows go to PostgreSQL with binary COPY as they come; then what the fold ended
with (sequences, enrollments, cards, keys, hourly and daily counts) is copied, and the
indexes are built over rows already in place.

With `workers=2` (the default) that work is split between two processes, each on its own
connection and core, both reading the file: this one folds the state, a second one
(`python -m projections.rebuild`) writes the history rows, keys and counters and indexes
them. The history needs no state but the sequence definitions (to place a rejected lead),
which it folds for itself; handing it decoded events instead would cost as much as parsing
the lines again.

Everything is loaded into a staging schema, each table truncated in the transaction that
copies into it, so COPY FREEZE stores the rows frozen and all-visible (index-only scans need
no VACUUM). The last transaction replaces the target schema's tables with the staged ones:
readers keep the old read models until that commit and see the new ones after it, never a
half-built state, and a failure leaves the old ones as they were.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, LiteralString

import orjson
import psycopg
from psycopg import conninfo, sql

from projections.deployment import DEPLOYMENT_TABLE
from projections.history import history_rank, history_row
from projections.pg_rows import (
    CONTACT_TYPES,
    CONTACT_WRITE_COLUMNS,
    ENROLLMENT_COLUMNS,
    ENROLLMENT_TYPES,
    HISTORY_COLUMNS,
    HISTORY_COPY_TYPES,
    SEQUENCE_COLUMNS,
    card_row,
    enrollment_row,
    sequence_row,
)
from projections.pg_tables import (
    DAY,
    HISTORY_TABLES,
    HOUR,
    STATE_TABLES,
    TABLES,
    create_index,
    create_indexes,
    create_tables,
    floor_to,
    trigram_extension,
)
from projections.state import (
    BOOK_TYPES,
    CATALOG_TYPES,
    DIRECTORY_TYPES,
    Catalog,
    Directory,
    EnrollmentBook,
)
from projections.stream import (
    LineError,
    MalformedEventError,
    contact_of,
    decode_line,
    moves_clock,
    parse_moment,
    text_of,
    without_nul,
)
from schemas.envelope import ENGINE_SOURCE
from streams.collector import cycle_collector_paused

PROGRESS_EVERY = 1 << 13  # lines between progress reports
READ_BUFFER = 1 << 20  # bytes read from the file at a time
# With two processes, the first builds these history indexes once the second has loaded the
# rows (it is done with the state by then) while the second copies the keys and counters and
# builds the rest: about 3 s of index building for the first, 3 s of work for the second.
HANDED_OVER = ("history_event", "history_sequence_type_time")
LOADED = b"loaded\n"  # the second process's word that the history rows are committed
# Index builds sort in memory rather than in temporary files.
INDEX_MEMORY: LiteralString = "SET maintenance_work_mem = '512MB'"

# position, type, time, data, id, source, subject of an event to apply
Decoded = tuple[int, str, datetime, Mapping[str, Any], str | None, str, str | None]


class RebuildFailedError(RuntimeError):
    """The second process of a bulk load failed (its traceback went to stderr)."""


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What a rebuild read: `records` events, of which `applied` were new (a redelivered
    event is read, not applied again); `position` is the line of the last event."""

    records: int
    applied: int
    position: int
    errors: tuple[LineError, ...]
    seconds: dict[str, float]  # by step, for the curious and the benchmark


def staging_schema(schema: str) -> str:
    staging = f"{schema[:50]}__rebuild"
    if staging == schema:
        raise ValueError(f"schema {schema!r} is its own staging name; choose another")
    return staging


def rebuild_file(
    conn: psycopg.Connection[Any],
    path: Path | str,
    *,
    schema: str,
    name: str,
    progress: Callable[[int], None] | None = None,
    workers: int = 2,
) -> Rebuilt:
    """Replace the read models in `schema` with those of the output file at `path`.
    `progress` is called now and then with the line reached; `workers=2` writes the history
    from a second process. Give it an autocommit connection."""
    path = Path(path)
    staging_name = staging_schema(schema)
    staging = sql.Identifier(staging_name)
    clock = _Clock()
    with path.open("rb"):
        pass  # a missing file fails here, before anything is touched
    # Started first, so its interpreter starts while this one prepares the staging tables.
    child = _start_history_writer() if workers > 1 else None
    try:
        trigram = trigram_extension(conn)
        memory = conn.execute("SELECT current_setting('maintenance_work_mem')").fetchone()
        # One rebuild per staging schema at a time: another would drop this one's tables
        # (two schemas alike in their first 50 characters share one).
        lock = f"dripstream rebuild {staging_name}"
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (lock,))
        try:
            with conn.transaction():
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(staging))
                create_tables(conn, staging)
            conn.execute(INDEX_MEMORY)
            decoder = _Decoder()
            state = _State()
            with cycle_collector_paused(), path.open("rb", buffering=READ_BUFFER) as lines:
                events = decoder.events(lines, progress)
                if child is not None:
                    _load_beside_history(
                        conn,
                        child,
                        path,
                        staging_name,
                        trigram,
                        events,
                        state,
                        decoder,
                        name,
                        clock,
                    )
                else:
                    _load_all(conn, staging, trigram, events, state, decoder, name, clock)
            with conn.transaction():
                _swap(conn, staging, sql.Identifier(schema))
            clock.lap("swap and commit")
        finally:
            if memory is not None:
                conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (memory[0],))
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (lock,))
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
    return Rebuilt(
        decoder.records, decoder.applied, decoder.position, tuple(decoder.errors), clock.laps
    )


def _load_all(
    conn: psycopg.Connection[Any],
    staging: sql.Identifier,
    trigram: str | None,
    events: Iterator[Decoded],
    state: _State,
    decoder: _Decoder,
    name: str,
    clock: _Clock,
) -> None:
    """Everything in this process: fold and write the history rows line by line."""
    with conn.transaction():
        _truncate(conn, staging, TABLES)
        with _copy_history(conn, staging) as history:
            _fold_history(events, state, history, with_state=True)
        clock.lap("read, fold and copy history")
        history.store(conn, staging)
        state.store(conn, staging, name, decoder)
        clock.lap("copy the rest")
    _index(conn, staging, trigram, TABLES, clock)


def _start_history_writer() -> subprocess.Popen[bytes]:
    """The second process: this module run as a program (not a fork, which would share the
    connection's socket), on the same code as this process wherever it was imported from.
    It waits for its orders on stdin (the password among them: not in argv)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.Popen(
        [sys.executable, "-m", "projections.rebuild"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )


def _load_beside_history(
    conn: psycopg.Connection[Any],
    child: subprocess.Popen[bytes],
    path: Path,
    staging_name: str,
    trigram: str | None,
    events: Iterator[Decoded],
    state: _State,
    decoder: _Decoder,
    name: str,
    clock: _Clock,
) -> None:
    """Fold here while the second process writes the history, index, and wait for it."""
    staging = sql.Identifier(staging_name)
    info = conn.info
    orders = {
        "url": conninfo.make_conninfo(
            info.dsn, **({"password": info.password} if info.password else {})
        ),
        "path": str(path),
        "staging": staging_name,
        "trigram": trigram,
    }
    assert child.stdin is not None
    assert child.stdout is not None
    with contextlib.suppress(BrokenPipeError):  # a child that died: its exit code tells
        child.stdin.write(orjson.dumps(orders))
        child.stdin.close()
    with conn.transaction():
        _truncate(conn, staging, STATE_TABLES)
        fold = state.fold
        for event in events:
            fold(*event)
        clock.lap("read and fold")
        state.store(conn, staging, name, decoder)
        clock.lap("copy the rest")
    _index(conn, staging, trigram, STATE_TABLES, clock)
    if child.stdout.readline() == LOADED:
        for index in HANDED_OVER:
            create_index(conn, staging, trigram, index)
        clock.lap("wait for the history rows, index them")
    report = child.stdout.read()
    child.wait()
    try:
        outcome = orjson.loads(report)
    except orjson.JSONDecodeError:
        outcome = None
    if child.returncode != 0 or not isinstance(outcome, dict):
        raise RebuildFailedError(f"the history writer failed (exit code {child.returncode})")
    clock.laps.update({f"history: {k}": v for k, v in outcome.items()})
    clock.lap("wait for the history indexes")


def _history_main() -> int:
    """The second process: write the history rows, keys and counters of the file its orders
    name, say LOADED, index them, print how long each step took (as JSON) and exit 0; on
    failure the traceback goes to stderr and it exits 1."""
    orders = orjson.loads(sys.stdin.buffer.read())
    staging = sql.Identifier(orders["staging"])
    clock = _Clock()
    with (
        cycle_collector_paused(),
        Path(orders["path"]).open("rb", buffering=READ_BUFFER) as lines,
        psycopg.connect(orders["url"], autocommit=True) as conn,
    ):
        conn.execute(INDEX_MEMORY)
        # The rows in a transaction of their own, so the first process can index them while
        # this one copies the keys and counters (each truncated where it is copied: FREEZE).
        with conn.transaction():
            _truncate(conn, staging, ("history",))
            with _copy_history(conn, staging) as history:
                _fold_history(_Decoder().events(lines, None), _State(), history, with_state=False)
        clock.lap("read and copy")
        sys.stdout.buffer.write(LOADED)
        sys.stdout.buffer.flush()
        with conn.transaction():
            _truncate(conn, staging, (t for t in HISTORY_TABLES if t != "history"))
            history.store(conn, staging)
        clock.lap("copy the rest")
        _index(conn, staging, orders["trigram"], HISTORY_TABLES, clock, skip=HANDED_OVER)
    sys.stdout.buffer.write(orjson.dumps(clock.laps))
    return 0


def _fold_history(
    events: Iterator[Decoded], state: _State, history: _History, *, with_state: bool
) -> None:
    """Write the history row of each event, keyed and counted; fold the whole state too
    `with_state`, else only the definitions (which place a rejected lead). Inline, not a
    method per event: here a call costs about as much as the work."""
    catalog, fold = state.catalog, state.fold
    write_row = history.write_row
    sequence_keys, type_keys, contact_keys = (
        history.sequence_keys,
        history.type_keys,
        history.contact_keys,
    )
    hours, hour_of = history.hours, history.hour_of
    for position, kind, moment, data, event_id, source, subject in events:
        if with_state:
            fold(position, kind, moment, data, event_id, source, subject)
        elif kind in CATALOG_TYPES:
            catalog.fold(kind, data, position)
        row = history_row(
            kind,
            source == ENGINE_SOURCE,
            data,
            text_of(data, "sequence_id"),
            contact_of(data, subject),
            catalog,
        )
        if row is None:
            continue
        row_sequence, row_contact, action, cause = row
        sequence_key = sequence_keys.get(row_sequence)
        if sequence_key is None:
            sequence_key = sequence_keys[row_sequence] = len(sequence_keys) + 1
        type_key = type_keys.get(kind)
        if type_key is None:
            type_key = type_keys[kind] = len(type_keys) + 1
        contact_key = None
        if row_contact is not None:
            contact_key = contact_keys.get(row_contact)
            if contact_key is None:
                contact_key = contact_keys[row_contact] = len(contact_keys) + 1
        hour = hour_of.get(moment)
        if hour is None:
            hour = hour_of[moment] = floor_to(moment, HOUR)
        bucket = (sequence_key, type_key, hour)
        hours[bucket] = hours.get(bucket, 0) + 1
        write_row(
            (
                history_rank(source, event_id),
                source,
                event_id,
                sequence_key,
                contact_key,
                type_key,
                action,
                None if cause == kind else cause,
                moment,
            )
        )


def _truncate(
    conn: psycopg.Connection[Any], staging: sql.Identifier, tables: Iterable[str]
) -> None:
    """In the transaction that copies into them: what lets COPY FREEZE freeze the rows."""
    conn.execute(
        sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(sql.SQL("{}.{}").format(staging, sql.Identifier(t)) for t in tables)
        )
    )


@contextmanager
def _copy_history(conn: psycopg.Connection[Any], staging: sql.Identifier) -> Iterator[_History]:
    with (
        conn.cursor() as cur,
        cur.copy(
            sql.SQL("COPY {}.history ({}) FROM STDIN (FORMAT BINARY, FREEZE)").format(
                staging, _columns(HISTORY_COLUMNS)
            )
        ) as copy,
    ):
        copy.set_types(HISTORY_COPY_TYPES)
        yield _History(copy.write_row)


def _index(
    conn: psycopg.Connection[Any],
    staging: sql.Identifier,
    trigram: str | None,
    tables: tuple[str, ...],
    clock: _Clock,
    *,
    skip: tuple[str, ...] = (),
) -> None:
    """The indexes of `tables` (but those in `skip`), then their statistics."""
    create_indexes(conn, staging, trigram, tables, skip=skip)
    clock.lap("index")
    with conn.transaction():
        # A sample of 9,000 rows a table, not 30,000, is enough for these queries' plans
        # (they look rows up by keys and time); later analyses use the server's target.
        conn.execute("SET LOCAL default_statistics_target = 30")
        for table in tables:
            conn.execute(sql.SQL("ANALYZE {}.{}").format(staging, sql.Identifier(table)))
    clock.lap("analyze")


def _columns(names: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _swap(conn: psycopg.Connection[Any], staging: sql.Identifier, target: sql.Identifier) -> None:
    """Put the staged tables (with their indexes and identities) in place of the target's;
    anything else in the target schema stays (a view on the old tables stops the swap: it
    is not ours to drop)."""
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(target))
    for table in TABLES:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(target, sql.Identifier(table)))
    for table in TABLES:
        conn.execute(
            sql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(
                staging, sql.Identifier(table), target
            )
        )
    conn.execute(sql.SQL("DROP SCHEMA {}").format(staging))
    # A file's read models follow no deployment's topics (projections/deployment.py).
    conn.execute(
        sql.SQL("DROP TABLE IF EXISTS {}.{}").format(target, sql.Identifier(DEPLOYMENT_TABLE))
    )


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now


@dataclass(slots=True)
class _Decoder:
    """Lines to events, as `read_stream` reads them, without the events already applied
    (by CloudEvents identity, as the in-memory models skip them)."""

    records: int = 0
    applied: int = 0
    position: int = 0
    latest: datetime | None = None
    errors: list[LineError] = field(default_factory=list)

    def events(
        self, lines: Iterable[bytes], progress: Callable[[int], None] | None
    ) -> Iterator[Decoded]:
        """The common line (a JSON object with a non-empty string `type`, a string `time`
        that parses, an object `data`, and `id`, `source`, `subject` as strings or null) is
        read straight from the decoded dict; any other goes through `decode_line`, so it is
        accepted, or reported with the reason, exactly as `read_stream` would."""
        loads = orjson.loads
        seen: dict[str, set[str]] = {}  # event ids applied, per source
        position = last = records = applied = 0
        latest = self.latest
        try:
            for position, raw in enumerate(lines, start=1):
                if progress is not None and not position % PROGRESS_EVERY:
                    progress(position)
                moment: datetime | None = None
                try:
                    obj = loads(without_nul(raw))
                    # What an engine writes: every field there, of the right type.
                    kind, raw_time, data = obj["type"], obj["time"], obj["data"]
                    event_id, source, subject = obj["id"], obj["source"], obj["subject"]
                    if (
                        type(kind) is str
                        and kind
                        and type(raw_time) is str
                        and type(data) is dict
                        and (event_id is None or type(event_id) is str)
                        and type(source) is str
                        and (subject is None or type(subject) is str)
                    ):
                        moment = parse_moment(raw_time)
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    moment = None
                if moment is None:
                    if not raw.strip():
                        continue
                    try:
                        event = decode_line(raw)
                    except MalformedEventError as error:
                        self.errors.append(LineError(position, str(error)))
                        continue
                    kind, moment, data = event.type, event.time, event.data
                    event_id, source, subject = event.id, event.source, event.subject
                records += 1
                last = position
                if event_id is not None:
                    ids = seen.get(source)
                    if ids is None:
                        ids = seen[source] = set()
                    if event_id in ids:
                        continue
                    ids.add(event_id)
                applied += 1
                if moves_clock(source, kind) and (latest is None or moment > latest):
                    latest = moment  # the latest decision about the contacts
                yield position, kind, moment, data, event_id, source, subject
        finally:
            # Kept in locals while reading: attribute writes per line add up.
            self.records += records
            self.applied += applied
            self.position = max(self.position, last)
            self.latest = latest
        if progress is not None:
            progress(position)


@dataclass(slots=True)
class _State:
    """Sequences, enrollments and cards, folded in memory over the whole stream."""

    catalog: Catalog = field(default_factory=Catalog)
    book: EnrollmentBook = field(default_factory=EnrollmentBook)
    directory: Directory = field(default_factory=Directory)
    # The (source, id) of each definition and deletion folded: `catalog_events`, so that a
    # later `--resume` or live projector does not apply one of them again.
    catalog_events: list[tuple[str, str]] = field(default_factory=list)

    def fold(
        self,
        position: int,
        kind: str,
        moment: datetime,
        data: Mapping[str, Any],
        event_id: str | None,
        source: str,
        subject: str | None,
    ) -> None:
        # The folds' own first checks, made here to skip the calls (and the reading of the
        # sequence and the contact) for the events they would ignore.
        if kind in CATALOG_TYPES:
            self.catalog.fold(kind, data, position)
            if event_id is not None:
                self.catalog_events.append((source, event_id))
        elif kind in BOOK_TYPES:
            contact_id = contact_of(data, subject)
            self.book.fold(kind, text_of(data, "sequence_id"), contact_id, data, moment)
            if kind in DIRECTORY_TYPES:
                self.directory.fold(kind, contact_id, data, moment)
        elif kind in DIRECTORY_TYPES:
            self.directory.fold(kind, contact_of(data, subject), data, moment)

    def store(
        self, conn: psycopg.Connection[Any], schema: sql.Identifier, name: str, read: _Decoder
    ) -> None:
        """The folded state, and the position (and latest time) of what was read."""
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.projection_position (name, position, latest_time)"
                " VALUES (%s, %s, %s)"
            ).format(schema),
            (name, read.position, read.latest),
        )
        enrollments = (
            # steps_done: a list to become text[].
            (*row[:9], list(row[9]), *row[10:])
            for row in map(enrollment_row, self.book.enrollments.values())
        )
        _copy(
            conn,
            schema,
            "sequences",
            SEQUENCE_COLUMNS,
            map(sequence_row, self.catalog.sequences.values()),
        )
        _copy(conn, schema, "enrollments", ENROLLMENT_COLUMNS, enrollments, ENROLLMENT_TYPES)
        _copy(
            conn,
            schema,
            "contacts",
            CONTACT_WRITE_COLUMNS,
            map(card_row, self.directory.cards.values()),
            CONTACT_TYPES,
        )
        _copy(conn, schema, "catalog_events", ("event_source", "event_id"), self.catalog_events)


class _History:
    """What the history rows need beyond each event: keys for their sequences, types and
    contacts (numbered in order of first appearance) and counts per (sequence, type, UTC
    hour); `_fold_history` fills them as it writes the rows with `write_row`."""

    def __init__(self, write_row: Callable[[tuple[Any, ...]], None]) -> None:
        self.write_row = write_row
        self.sequence_keys: dict[str, int] = {}
        self.type_keys: dict[str, int] = {}
        self.contact_keys: dict[str, int] = {}
        self.hours: dict[tuple[int, int, datetime], int] = {}
        self.hour_of: dict[datetime, datetime] = {}  # each instant's hour, worked out once

    def store(self, conn: psycopg.Connection[Any], schema: sql.Identifier) -> None:
        """The keys, with their identities moved past them, and the counters."""
        for table, column, keys in (
            ("sequence_keys", "sequence_id", self.sequence_keys),
            ("type_keys", "type", self.type_keys),
            ("contact_keys", "contact_id", self.contact_keys),
        ):
            _copy(
                conn,
                schema,
                table,
                ("key", column),
                ((k, v) for v, k in keys.items()),
                ("int2" if table == "type_keys" else "int4", "text"),
            )
            conn.execute(
                sql.SQL("ALTER TABLE {}.{} ALTER COLUMN key RESTART WITH {}").format(
                    schema, sql.Identifier(table), sql.Literal(len(keys) + 1)
                )
            )
        days: dict[tuple[int, int, datetime], int] = {}
        for (sequence_key, type_key, hour), n in self.hours.items():
            bucket = (sequence_key, type_key, floor_to(hour, DAY))
            days[bucket] = days.get(bucket, 0) + n
        for table, counts in (("history_hours", self.hours), ("history_days", days)):
            _copy(
                conn,
                schema,
                table,
                (
                    "sequence_key",
                    "type_key",
                    "hour" if table == "history_hours" else "day",
                    "row_count",
                ),
                ((*bucket, n) for bucket, n in counts.items()),
                ("int4", "int2", "timestamptz", "int8"),
            )


def _copy(
    conn: psycopg.Connection[Any],
    schema: sql.Identifier,
    table: str,
    columns: tuple[str, ...],
    rows: Iterable[tuple[Any, ...]],
    types: tuple[str, ...] | None = None,
) -> None:
    """COPY FREEZE, in binary when the column `types` are given (several times faster for
    timestamps and arrays); text otherwise (jsonb from JSON text)."""
    binary = sql.SQL("FORMAT BINARY, " if types else "")
    with (
        conn.cursor() as cur,
        cur.copy(
            sql.SQL("COPY {}.{} ({}) FROM STDIN ({}FREEZE)").format(
                schema, sql.Identifier(table), _columns(columns), binary
            )
        ) as copy,
    ):
        if types:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)


if __name__ == "__main__":
    sys.exit(_history_main())
