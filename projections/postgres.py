"""Writing the read models in PostgreSQL (psycopg 3); `pg_reads.py` answers the live
`sequences` and `history` commands from them.

Each batch is one transaction: it locks its `projection_position` row, skips records at or
below the stored position, loads the slice of state the batch touches (sequences, the
enrollments of the sequence x contact pairs it names, contact cards), folds it with the same
classes the in-memory models use, writes the slice back with executemany, copies the new
history rows with COPY, adds them to the hourly and daily counters, and moves the position,
so re-applying the same records changes nothing. History rows are also unique by CloudEvents
(source, id): a redelivered event at a new position adds no row. A rebuild from a file takes
the bulk path in `projections/rebuild.py` instead. The live projector (streams/projector.py)
applies records read from the output topics with `apply_consumed`, which keeps their topic
offsets in `projection_offsets` in the same transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path

from psycopg import sql

from projections.deployment import followed, lock_schema
from projections.history import HistoryEntry, history_entry
from projections.pg_reads import PostgresReadModels
from projections.pg_rows import (
    CONTACT_COLUMNS,
    CONTACT_WRITE_COLUMNS,
    ENROLLMENT_COLUMNS,
    HISTORY_COLUMNS,
    HISTORY_COPY_TYPES,
    SEQUENCE_COLUMNS,
    Row,
    card_row,
    columns,
    enrollment_from_row,
    enrollment_row,
    sequence_from_row,
    sequence_row,
)
from projections.pg_tables import (
    DAY,
    HOUR,
    TABLES,
    check_layout,
    create_indexes,
    create_tables,
    floor_to,
    trigram_extension,
)
from projections.rebuild import Rebuilt, rebuild_file
from projections.state import (
    BOOK_TYPES,
    CATALOG_TYPES,
    DIRECTORY_TYPES,
    Catalog,
    ContactCard,
    Directory,
    EnrollmentBook,
)
from projections.stream import Consumed, EventKey, Positioned, merged_by_time


def _upsert(schema: sql.Identifier, table: str, names: tuple[str, ...]) -> sql.Composed:
    """INSERT ... ON CONFLICT on the first column (the key) DO UPDATE every other column."""
    key, *rest = (sql.Identifier(n) for n in names)
    return sql.SQL(
        "INSERT INTO {s}.{table} ({columns}) VALUES ({marks})"
        " ON CONFLICT ({key}) DO UPDATE SET {updates}"
    ).format(
        s=schema,
        table=sql.Identifier(table),
        columns=columns(names),
        marks=sql.SQL(", ").join(sql.Placeholder() for _ in names),
        key=key,
        updates=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=c) for c in rest),
    )


class ReadModelsFromFileError(RuntimeError):
    """Records from the topics offered to read models loaded from a file: mixing the two
    would count what both hold twice."""


class ReadModelsTakenError(RuntimeError):
    """Records from one topic prefix offered to read models another prefix's projector
    has taken since (`projections run --reset`): they would count both deployments'."""


class PostgresProjection(PostgresReadModels):
    """Writer of the read-model tables (and, as `PostgresReadModels`, their reader). Give it
    an autocommit connection: each `apply` is its own transaction."""

    # The topic prefix this projector claimed the schema for (projections/deployment.py);
    # each batch from the topics checks the schema still follows it. None: not checked.
    follows: str | None = None

    def ensure_schema(self) -> None:
        check_layout(self._conn, self.schema)
        trigram = trigram_extension(self._conn)
        with self._conn.transaction():
            lock_schema(self._conn, self.schema)
            create_tables(self._conn, self._schema)
            create_indexes(self._conn, self._schema, trigram)

    def reset(self) -> None:
        """Forget everything (for a rebuild from the start of the stream)."""
        with self._conn.transaction():
            self._conn.execute(
                sql.SQL("TRUNCATE {tables} RESTART IDENTITY").format(
                    tables=sql.SQL(", ").join(
                        sql.SQL("{s}.{t}").format(s=self._schema, t=sql.Identifier(t))
                        for t in TABLES
                    )
                )
            )

    def rebuild(
        self,
        path: Path | str,
        progress: Callable[[int], None] | None = None,
        workers: int = 2,
    ) -> Rebuilt:
        """Replace the read models with those of a whole output file, in bulk (rebuild.py):
        readers see the old ones until it is done. `workers=2` uses a second process."""
        return rebuild_file(
            self._conn, path, schema=self.schema, name=self.name, progress=progress, workers=workers
        )

    def position(self) -> int:
        row = self._conn.execute(
            self._sql("SELECT position FROM {s}.projection_position WHERE name = %s"),
            (self.name,),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def apply(self, records: Iterable[Positioned]) -> int:
        """Apply a batch in one transaction; returns how many events were new."""
        batch = sorted(records, key=lambda r: r.position)
        if not batch:
            return 0
        with self._conn.transaction():
            stored, latest = self._lock_position()
            fresh = self._unseen([r for r in batch if r.position > stored])
            latest = self._fold_and_store(fresh, latest)
            self._set_position(max(stored, batch[-1].position), latest)
        return len(fresh)

    def offsets(self) -> dict[tuple[str, int], int]:
        """The next offset to read of each topic partition the live projector has read."""
        rows = self._conn.execute(
            self._sql(
                "SELECT topic, partition, next_offset FROM {s}.projection_offsets WHERE name = %s"
            ),
            (self.name,),
        ).fetchall()
        return {(str(topic), int(partition)): int(offset) for topic, partition, offset in rows}

    def apply_consumed(self, records: Iterable[Consumed]) -> int:
        """Apply records read from the output topics in one transaction, with the offsets
        they reach: a record below its partition's stored offset was applied before (a
        redelivery) and changes nothing. The partitions are merged by time (then topic,
        partition, offset), each kept in its own order (`merged_by_time`), so facts from
        the contacts topic and decisions meet as they happened. Returns how many events
        were new."""
        with self._conn.transaction():
            stored, latest = self._lock_position()
            done = self.offsets()
            if stored and not done:
                raise ReadModelsFromFileError(
                    f"the read models in schema {self.schema!r} hold a stream loaded from a"
                    " file (`projections rebuild`), not read from the topics"
                )
            self._check_still_followed()
            reached: dict[tuple[str, int], int] = {}
            new: list[Consumed] = []
            for record in records:
                where = (record.topic, record.partition)
                if record.offset < done.get(where, 0):
                    continue
                reached[where] = max(reached.get(where, 0), record.offset + 1)
                if record.event is not None:
                    new.append(record)
            if not reached:
                return 0
            new.sort(key=lambda record: record.offset)
            new = merged_by_time(new, lambda r: (r.topic, r.partition), _consumed_order)
            positioned = [
                Positioned(stored + n, record.event)
                for n, record in enumerate(new, start=1)
                if record.event is not None
            ]
            fresh = self._unseen(positioned)
            latest = self._fold_and_store(fresh, latest)
            self._set_position(stored + len(positioned), latest)
            with self._conn.cursor() as cur:
                cur.executemany(
                    self._sql(
                        "INSERT INTO {s}.projection_offsets (name, topic, partition, next_offset)"
                        " VALUES (%s, %s, %s, %s) ON CONFLICT (name, topic, partition)"
                        " DO UPDATE SET next_offset = EXCLUDED.next_offset"
                    ),
                    [(self.name, topic, part, offset) for (topic, part), offset in reached.items()],
                )
        return len(fresh)

    def _check_still_followed(self) -> None:
        if self.follows is None:
            return
        now = followed(self._conn, self.schema)
        if now is None:  # a file's rebuild drops the claim with the tables it replaces
            raise ReadModelsFromFileError(
                f"the read models in schema {self.schema!r} were replaced by a stream loaded"
                " from a file (`projections rebuild`)"
            )
        if now != self.follows:
            raise ReadModelsTakenError(
                f"the read models in schema {self.schema!r} follow the topic prefix {now!r}"
                f" since a reset, not {self.follows!r}"
            )

    def _fold_and_store(self, fresh: list[Positioned], latest: datetime | None) -> datetime | None:
        """Fold new events into the stored state they touch and write it back; returns the
        latest event time seen."""
        state = self._load_slice(fresh)
        entries: list[HistoryEntry] = []
        for record in fresh:
            event = record.event
            state.catalog.evolve(event, record.position)
            state.book.evolve(event)
            state.directory.evolve(event)
            entry = history_entry(event, state.catalog)
            if entry is not None:
                entries.append(entry)
            if event.moves_clock and (latest is None or event.time > latest):
                latest = event.time  # the latest decision: see projections.base
        self._store(state, entries)
        catalog_keys = [
            r.event.key for r in fresh if r.event.type in CATALOG_TYPES and r.event.key is not None
        ]
        if catalog_keys:
            with self._conn.cursor() as cur:
                cur.executemany(
                    self._sql(
                        "INSERT INTO {s}.catalog_events (event_source, event_id) VALUES (%s, %s)"
                        " ON CONFLICT DO NOTHING"
                    ),
                    catalog_keys,
                )
        return latest

    def _set_position(self, position: int, latest: datetime | None) -> None:
        self._conn.execute(
            self._sql(
                "UPDATE {s}.projection_position SET position = %s, latest_time = %s WHERE name = %s"
            ),
            (position, latest, self.name),
        )

    def _lock_position(self) -> tuple[int, datetime | None]:
        self._conn.execute(
            self._sql(
                "INSERT INTO {s}.projection_position (name, position) VALUES (%s, 0)"
                " ON CONFLICT (name) DO NOTHING"
            ),
            (self.name,),
        )
        row = self._conn.execute(
            self._sql(
                "SELECT position, latest_time FROM {s}.projection_position"
                " WHERE name = %s FOR UPDATE"
            ),
            (self.name,),
        ).fetchone()
        assert row is not None
        return int(row[0]), row[1]

    def _unseen(self, records: list[Positioned]) -> list[Positioned]:
        keys = [r.event.key for r in records if r.event.key is not None]
        seen: set[EventKey] = set()
        if keys:
            rows = self._conn.execute(
                self._sql(
                    "SELECT h.event_source, h.event_id FROM {s}.history h"
                    " JOIN unnest(%(sources)s::text[], %(ids)s::text[]) AS k(source, id)"
                    " ON h.event_id = k.id AND h.event_source = k.source"
                    " UNION ALL SELECT c.event_source, c.event_id FROM {s}.catalog_events c"
                    " JOIN unnest(%(sources)s::text[], %(ids)s::text[]) AS k(source, id)"
                    " ON c.event_id = k.id AND c.event_source = k.source"
                ),
                {"sources": [k[0] for k in keys], "ids": [k[1] for k in keys]},
            ).fetchall()
            seen = {(str(source), str(event_id)) for source, event_id in rows}
        unseen: list[Positioned] = []
        for record in records:
            key = record.event.key
            if key is not None:
                if key in seen:
                    continue
                seen.add(key)
            unseen.append(record)
        return unseen

    def _load_slice(self, records: list[Positioned]) -> _Slice:
        """The stored state the batch's events fold into, and nothing more: the sequences a
        deletion or a rejected lead names, the enrollments enrollment and step events name
        (all of a sequence x contact pair's when an event names none), and the contacts whose
        cards the batch may change."""
        sequence_ids: set[str] = set()
        intake: set[str] = set()
        enrollment_ids: set[str] = set()
        pairs: set[tuple[str, str]] = set()
        contact_ids: set[str] = set()
        for record in records:
            event = record.event
            sequence_id, contact_id = event.text("sequence_id"), event.contact_id
            if event.type == "sequence.deleted" and sequence_id is not None:
                sequence_ids.add(sequence_id)
            elif event.type == "lead.rejected" and (address := event.text("to")):
                intake.add(address)
            if event.type in BOOK_TYPES and sequence_id is not None and contact_id is not None:
                # Without an id the event goes to the pair's active enrollment, and a new
                # enrollment's id is numbered after the pair's earlier ones: load them all.
                if enrollment_id := event.text("enrollment_id"):
                    enrollment_ids.add(enrollment_id)
                else:
                    pairs.add((sequence_id, contact_id))
            if event.type in DIRECTORY_TYPES and contact_id is not None:
                contact_ids.add(contact_id)
        state = _Slice()
        if sequence_ids or intake:
            rows = self._conn.execute(
                self._sql(
                    "SELECT {columns} FROM {s}.sequences"
                    " WHERE sequence_id = ANY(%s) OR intake_address = ANY(%s)",
                    columns=columns(SEQUENCE_COLUMNS),
                ),
                (list(sequence_ids), list(intake)),
            ).fetchall()
            state.catalog = Catalog(sequence_from_row(row) for row in rows)
        if enrollment_ids or pairs:
            rows = self._conn.execute(
                self._sql(
                    "SELECT {columns} FROM {s}.enrollments WHERE enrollment_id = ANY(%s)"
                    " UNION SELECT {columns} FROM {s}.enrollments e"
                    " JOIN unnest(%s::text[], %s::text[]) AS p(sequence_id, contact_id)"
                    " USING (sequence_id, contact_id)",
                    columns=columns(ENROLLMENT_COLUMNS),
                ),
                (list(enrollment_ids), [p[0] for p in pairs], [p[1] for p in pairs]),
            ).fetchall()
            state.book = EnrollmentBook(enrollment_from_row(row) for row in rows)
        if contact_ids:
            rows = self._conn.execute(
                self._sql(
                    "SELECT {columns} FROM {s}.contacts WHERE contact_id = ANY(%s)",
                    columns=columns(CONTACT_COLUMNS),
                ),
                (list(contact_ids),),
            ).fetchall()
            state.directory = Directory(ContactCard(*row) for row in rows)
        state.remember()
        return state

    def _store(self, state: _Slice, entries: list[HistoryEntry]) -> None:
        """Upserts of the rows the batch changed, COPY of its new history rows and the
        counters they add to."""
        sequences, enrollments, cards = state.changes()
        with self._conn.cursor() as cur:
            if sequences:
                cur.executemany(_upsert(self._schema, "sequences", SEQUENCE_COLUMNS), sequences)
            if enrollments:
                cur.executemany(
                    _upsert(self._schema, "enrollments", ENROLLMENT_COLUMNS),
                    # steps_done: a tuple to compare, a list to become text[].
                    [(*row[:9], list(row[9]), *row[10:]) for row in enrollments],
                )
            if cards:
                cur.executemany(_upsert(self._schema, "contacts", CONTACT_WRITE_COLUMNS), cards)
        if entries:
            self._store_history(entries)

    def _store_history(self, entries: list[HistoryEntry]) -> None:
        sequence_keys = self._keys("sequence_keys", "sequence_id", {e.sequence_id for e in entries})
        type_keys = self._keys("type_keys", "type", {e.type for e in entries})
        contact_keys = self._keys(
            "contact_keys", "contact_id", {e.contact_id for e in entries if e.contact_id}
        )
        hours: Counter[tuple[int, int, datetime]] = Counter()
        with (
            self._conn.cursor() as cur,
            cur.copy(
                self._sql(
                    "COPY {s}.history ({columns}) FROM STDIN (FORMAT BINARY)",
                    columns=columns(HISTORY_COLUMNS),
                )
            ) as copy,
        ):
            copy.set_types(HISTORY_COPY_TYPES)
            for h in entries:
                sequence_key, type_key = sequence_keys[h.sequence_id], type_keys[h.type]
                hours[sequence_key, type_key, floor_to(h.time, HOUR)] += 1
                copy.write_row(
                    (
                        h.position,
                        h.event_source,
                        h.event_id,
                        sequence_key,
                        None if h.contact_id is None else contact_keys[h.contact_id],
                        type_key,
                        h.action,
                        None if h.event == h.type else h.event,
                        h.time,
                    )
                )
        days: Counter[tuple[int, int, datetime]] = Counter()
        for (sequence_key, type_key, hour), n in hours.items():
            days[sequence_key, type_key, floor_to(hour, DAY)] += n
        for table, column, counts in (
            ("history_hours", "hour", hours),
            ("history_days", "day", days),
        ):
            self._conn.execute(
                self._sql(
                    "INSERT INTO {s}.{table} (sequence_key, type_key, {column}, row_count)"
                    " SELECT * FROM unnest(%s::integer[], %s::smallint[], %s::timestamptz[],"
                    " %s::bigint[])"
                    " ON CONFLICT (sequence_key, type_key, {column})"
                    " DO UPDATE SET row_count = {s}.{table}.row_count + EXCLUDED.row_count",
                    table=sql.Identifier(table),
                    column=sql.Identifier(column),
                ),
                (
                    [k[0] for k in counts],
                    [k[1] for k in counts],
                    [k[2] for k in counts],
                    list(counts.values()),
                ),
            )

    def _keys(self, table: str, column: str, values: set[str]) -> dict[str, int]:
        """The keys of these values, adding the ones not keyed yet (only those take a number
        from the identity, so a busy stream does not use them up)."""
        if not values:
            return {}
        wanted = sorted(values)
        names = {"table": sql.Identifier(table), "column": sql.Identifier(column)}
        self._conn.execute(
            self._sql(
                "INSERT INTO {s}.{table} ({column}) SELECT v FROM unnest(%s::text[]) AS u(v)"
                " WHERE NOT EXISTS (SELECT 1 FROM {s}.{table} k WHERE k.{column} = u.v)"
                " ON CONFLICT ({column}) DO NOTHING",
                **names,
            ),
            (wanted,),
        )
        rows = self._conn.execute(
            self._sql("SELECT {column}, key FROM {s}.{table} WHERE {column} = ANY(%s)", **names),
            (wanted,),
        ).fetchall()
        return {str(value): int(key) for value, key in rows}


class _Slice:
    """The part of the state one batch folds into, with the rows as loaded, so only the rows
    the batch changed are written back."""

    def __init__(self) -> None:
        self.catalog = Catalog()
        self.book = EnrollmentBook()
        self.directory = Directory()
        self._loaded: set[Row] = set()

    def remember(self) -> None:
        self._loaded = set(self._rows())

    def _rows(self) -> Iterator[Row]:
        yield from (sequence_row(s) for s in self.catalog.sequences.values())
        yield from (enrollment_row(e) for e in self.book.enrollments.values())
        yield from (card_row(c) for c in self.directory.cards.values())

    def changes(self) -> tuple[list[Row], list[Row], list[Row]]:
        def changed(rows: Iterable[Row]) -> list[Row]:
            return [row for row in rows if row not in self._loaded]

        return (
            changed(sequence_row(s) for s in self.catalog.sequences.values()),
            changed(enrollment_row(e) for e in self.book.enrollments.values()),
            changed(card_row(c) for c in self.directory.cards.values()),
        )


def _consumed_order(record: Consumed) -> tuple[datetime, str, int, int]:
    assert record.event is not None
    return (record.event.time, record.topic, record.partition, record.offset)
