"""The read models in PostgreSQL (psycopg 3), for the live `sequences list` and `history`.

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
from typing import TYPE_CHECKING, Any, LiteralString

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from projections.contacts_view import ContactSummary, contact_summary
from projections.history import (
    EPOCH,
    HistoryEntry,
    HistoryLine,
    HistoryPage,
    HistoryQuery,
    SearchTerms,
    history_entry,
    resolve_zone,
    time_window,
)
from projections.pg_tables import (
    DAY,
    HOUR,
    TABLES,
    Span,
    check_layout,
    create_indexes,
    create_tables,
    floor_to,
    nonempty,
    span_condition,
    split_window,
    trigram_extension,
)
from projections.sequence_contacts import (
    SequenceContactsPage,
    SequenceContactsQuery,
    contacts_page,
)
from projections.sequence_detail import SequenceDetail, sequence_detail
from projections.sequences_list import SequenceRow, problems_of
from projections.state import (
    BOOK_TYPES,
    DIRECTORY_TYPES,
    Catalog,
    ContactCard,
    Directory,
    Enrollment,
    EnrollmentBook,
    SequenceInfo,
    UnknownSequenceError,
)
from projections.stream import Consumed, EventKey, Positioned, merged_by_time

if TYPE_CHECKING:
    from projections.rebuild import Rebuilt

DEFAULT_SCHEMA = "readmodels"
DEFAULT_NAME = "readmodels"

# What every read of a sequence needs; the writers keep its definition too.
SEQUENCE_SUMMARY_COLUMNS = (
    "sequence_id",
    "name",
    "description",
    "created",
    "steps_count",
    "process_on",
    "line",
    "status",
    "problems",
    "triggers",
    "intake_address",
    "account_timezone",
    "defined_order",
    "deleted",
    "step_ids",
)
SEQUENCE_COLUMNS = (*SEQUENCE_SUMMARY_COLUMNS, "definition")
ENROLLMENT_COLUMNS = (
    "enrollment_id",
    "sequence_id",
    "contact_id",
    "enrolled_at",
    "via",
    "steps_total",
    "state",
    "reason",
    "ended_at",
    "steps_done",
    "next_step_id",
    "next_due_at",
)
# Binary COPY types of ENROLLMENT_COLUMNS.
ENROLLMENT_TYPES = (
    "text",
    "text",
    "text",
    "timestamptz",
    "text",
    "int4",
    "text",
    "text",
    "timestamptz",
    "text[]",
    "text",
    "timestamptz",
)
CONTACT_COLUMNS = ("contact_id", "first_name", "last_name", "name", "phone", "email", "seen_at")
HISTORY_COLUMNS = (
    "position",
    "event_source",
    "event_id",
    "sequence_key",
    "contact_key",
    "type_key",
    "action",
    "event",
    "time",
)
# Binary COPY types of HISTORY_COLUMNS.
HISTORY_COPY_TYPES = ("int8", "text", "text", "int4", "int4", "int2", "text", "text", "timestamptz")


def _columns(names: tuple[str, ...]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _upsert(schema: sql.Identifier, table: str, names: tuple[str, ...]) -> sql.Composed:
    """INSERT ... ON CONFLICT on the first column (the key) DO UPDATE every other column."""
    key, *rest = (sql.Identifier(n) for n in names)
    return sql.SQL(
        "INSERT INTO {s}.{table} ({columns}) VALUES ({marks})"
        " ON CONFLICT ({key}) DO UPDATE SET {updates}"
    ).format(
        s=schema,
        table=sql.Identifier(table),
        columns=_columns(names),
        marks=sql.SQL(", ").join(sql.Placeholder() for _ in names),
        key=key,
        updates=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=c) for c in rest),
    )


_SEQUENCE_ROWS: LiteralString = """
    SELECT s.sequence_id, s.name, s.created, s.steps_count, s.process_on, s.line,
           count(e.enrollment_id),
           coalesce(sum(greatest(s.steps_count - CASE
               WHEN e.enrollment_id IS NULL THEN s.steps_count  -- the join's row of no one
               WHEN s.step_ids IS NULL THEN cardinality(e.steps_done)
               -- the steps passed that the definition in force still has (projections/state.py)
               ELSE (SELECT count(*) FROM unnest(e.steps_done) AS d(id) WHERE s.step_ids ? d.id)
               END, 0)), 0),
           s.status, s.problems
    FROM {s}.sequences s
    LEFT JOIN {s}.enrollments e ON e.sequence_id = s.sequence_id AND e.state = 'active'
    WHERE NOT s.deleted {only}
    GROUP BY s.sequence_id
    ORDER BY s.sequence_id COLLATE "C"
"""

# What `history` needs to know before it filters: the sequence's zone, whether it exists, its
# key, the latest event time, and the keys of the types asked for.
_HISTORY_CONTEXT: LiteralString = """
    SELECT (SELECT account_timezone FROM {s}.sequences WHERE sequence_id = %(id)s),
           EXISTS (SELECT 1 FROM {s}.sequences WHERE sequence_id = %(id)s),
           (SELECT key FROM {s}.sequence_keys WHERE sequence_id = %(id)s),
           (SELECT latest_time FROM {s}.projection_position WHERE name = %(name)s),
           ARRAY(SELECT key FROM {s}.type_keys
                 WHERE %(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
"""

# The contacts a search matches (the same rules as `contact_matches`): by id among every
# contact with history rows, by name, phone, e-mail or phone digits among the cards. Each
# test is a LIKE the trigram indexes answer; `%(like)s` is the escaped text within `%`,
# as typed: the server's lower() folds it as it folds the stored values (under a C ctype
# ASCII letters only, so an exact-case search for a name with accents still finds it).
_MATCHING_CONTACTS: LiteralString = """
    SELECT key FROM {s}.contact_keys WHERE lower(contact_id) LIKE lower(%(like)s)
    UNION
    SELECT k.key FROM {s}.contacts c JOIN {s}.contact_keys k ON k.contact_id = c.contact_id
    WHERE lower(c.name) LIKE lower(%(like)s) OR lower(c.phone) LIKE lower(%(like)s)
       OR lower(c.email) LIKE lower(%(like)s) {digits}
"""
_MATCHING_DIGITS: LiteralString = "OR c.phone_digits LIKE %(digits)s"

# A page of history rows (`{rows}` yields them in order, as the inner columns) with what
# the report shows of them (and `{extra}` columns of `{rows}` after those).
_PAGE: LiteralString = """
    SELECT k.contact_id, c.name, c.phone, p.action, coalesce(p.event, t.type), t.type, p.time
           {extra}
    FROM ({rows}) p
    JOIN {s}.type_keys t ON t.key = p.type_key
    LEFT JOIN {s}.contact_keys k ON k.key = p.contact_key
    LEFT JOIN {s}.contacts c ON c.contact_id = k.contact_id
    ORDER BY p.time DESC, p.position DESC
"""
_PAGE_ROWS: LiteralString = (
    "SELECT position, contact_key, type_key, action, event, time FROM {s}.history WHERE "
)
_NEWEST_FIRST: LiteralString = " ORDER BY time DESC, position DESC"


def _like(text: str) -> str:
    """A LIKE pattern that matches `text` anywhere, with its own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class ReadModelsFromFileError(RuntimeError):
    """Records from the topics offered to read models loaded from a file: mixing the two
    would count what both hold twice."""


class PostgresProjection:
    """Writer and reader of the read-model tables in one schema (default `readmodels`, so the
    tables never meet the event store's). Give it an autocommit connection: each `apply` is its
    own transaction."""

    def __init__(
        self,
        conn: psycopg.Connection[TupleRow],
        *,
        schema: str = DEFAULT_SCHEMA,
        name: str = DEFAULT_NAME,
    ) -> None:
        self._conn = conn
        self.schema = schema
        self._schema = sql.Identifier(schema)
        self.name = name

    def _sql(self, text: LiteralString, **fragments: sql.Composable) -> sql.Composed:
        return sql.SQL(text).format(s=self._schema, **fragments)

    # --- writing ------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        check_layout(self._conn, self.schema)
        trigram = trigram_extension(self._conn)
        with self._conn.transaction():
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
        from projections.rebuild import rebuild_file  # noqa: PLC0415 (it imports this module)

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
            entry = history_entry(event, state.catalog, record.position)
            if entry is not None:
                entries.append(entry)
            if event.moves_clock and (latest is None or event.time > latest):
                latest = event.time  # the latest decision: see projections.base
        self._store(state, entries)
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
                    " JOIN unnest(%s::text[], %s::text[]) AS k(source, id)"
                    " ON h.event_id = k.id AND h.event_source = k.source"
                ),
                ([k[0] for k in keys], [k[1] for k in keys]),
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
                    columns=_columns(SEQUENCE_COLUMNS),
                ),
                (list(sequence_ids), list(intake)),
            ).fetchall()
            state.catalog = Catalog(_sequence(row) for row in rows)
        if enrollment_ids or pairs:
            rows = self._conn.execute(
                self._sql(
                    "SELECT {columns} FROM {s}.enrollments WHERE enrollment_id = ANY(%s)"
                    " UNION SELECT {columns} FROM {s}.enrollments e"
                    " JOIN unnest(%s::text[], %s::text[]) AS p(sequence_id, contact_id)"
                    " USING (sequence_id, contact_id)",
                    columns=_columns(ENROLLMENT_COLUMNS),
                ),
                (list(enrollment_ids), [p[0] for p in pairs], [p[1] for p in pairs]),
            ).fetchall()
            state.book = EnrollmentBook(_enrollment(row) for row in rows)
        if contact_ids:
            rows = self._conn.execute(
                self._sql(
                    "SELECT {columns} FROM {s}.contacts WHERE contact_id = ANY(%s)",
                    columns=_columns(CONTACT_COLUMNS),
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
                cur.executemany(_upsert(self._schema, "contacts", CONTACT_COLUMNS), cards)
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
                    columns=_columns(HISTORY_COLUMNS),
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

    # --- reading ------------------------------------------------------------------------

    def latest_time(self) -> datetime | None:
        row = self._conn.execute(
            self._sql("SELECT latest_time FROM {s}.projection_position WHERE name = %s"),
            (self.name,),
        ).fetchone()
        return None if row is None else row[0]

    def sequence_rows(self) -> list[SequenceRow]:
        rows = self._conn.execute(self._sql(_SEQUENCE_ROWS, only=sql.SQL(""))).fetchall()
        return _sequence_rows(rows)

    def sequence_detail(self, sequence_id: str) -> SequenceDetail:
        """As `detail_of` over the same stream; UnknownSequenceError for a sequence the list
        does not show."""
        info = self._shown_sequence(sequence_id, with_definition=True)
        rows = self._conn.execute(
            self._sql(_SEQUENCE_ROWS, only=sql.SQL("AND s.sequence_id = %s")), (sequence_id,)
        ).fetchall()
        if not rows:  # deleted since it was read
            raise UnknownSequenceError(sequence_id, deleted=True)
        return sequence_detail(info, _sequence_rows(rows)[0])

    def sequence_contacts(self, query: SequenceContactsQuery) -> SequenceContactsPage:
        """As `contacts_of` over the same stream, in the same order (enrolled_at, then ids
        compared byte by byte, as Python compares them)."""
        info = self._shown_sequence(query.sequence_id)
        active = sql.SQL("" if query.ended else " AND e.state = 'active'")
        counted = self._conn.execute(
            self._sql(
                "SELECT count(*) FROM {s}.enrollments e WHERE e.sequence_id = %s{active}",
                active=active,
            ),
            (query.sequence_id,),
        ).fetchone()
        total = 0 if counted is None else int(counted[0])
        rows: list[TupleRow] = []
        if total > query.offset and query.limit != 0:
            rows = self._fetch(
                self._sql(
                    "SELECT {enrollment}, {card} FROM {s}.enrollments e"
                    " LEFT JOIN {s}.contacts c ON c.contact_id = e.contact_id"
                    " WHERE e.sequence_id = %s{active}"
                    ' ORDER BY e.enrolled_at, e.contact_id COLLATE "C",'
                    ' e.enrollment_id COLLATE "C" LIMIT %s OFFSET %s',
                    enrollment=sql.SQL(", ").join(
                        sql.Identifier("e", name) for name in ENROLLMENT_COLUMNS
                    ),
                    card=sql.SQL(", ").join(sql.Identifier("c", name) for name in CONTACT_COLUMNS),
                    active=active,
                ),
                [query.sequence_id, query.limit, query.offset],
            )
        width = len(ENROLLMENT_COLUMNS)
        return contacts_page(
            query,
            info,
            total,
            (
                (
                    _enrollment(row[:width]),
                    None if row[width] is None else ContactCard(*row[width:]),
                )
                for row in rows
            ),
        )

    def _shown_sequence(self, sequence_id: str, *, with_definition: bool = False) -> SequenceInfo:
        """The sequence the list shows under this id, as `Catalog.shown`. Its definition
        through the row as jsonb: NULL rather than an error from a table the projector has
        not added the column to yet (a reader may not ALTER it)."""
        definition = ", to_jsonb(s) -> 'definition'" if with_definition else ""
        row = self._conn.execute(
            self._sql(
                "SELECT {columns}{definition} FROM {s}.sequences s WHERE sequence_id = %s",
                columns=_columns(SEQUENCE_SUMMARY_COLUMNS),
                definition=sql.SQL(definition),
            ),
            (sequence_id,),
        ).fetchone()
        return Catalog([] if row is None else [_sequence(row)]).shown(sequence_id)

    def history(self, query: HistoryQuery) -> HistoryPage | None:
        """The same page as HistoryReport.query over the same stream. Without a search the
        total comes from the counters and the page from an index in time order (merged
        across the types asked for); with one, the matching contacts come first (trigram
        indexes), then their rows."""
        types = query.types
        context = self._conn.execute(
            self._sql(_HISTORY_CONTEXT),
            {
                "id": query.sequence_id,
                "name": self.name,
                "types": None if types is None else sorted(types),
            },
        ).fetchone()
        assert context is not None
        account_zone, defined, sequence_key, latest, type_keys = context
        if not defined and sequence_key is None:
            return None
        zone = resolve_zone(query.timezone, account_zone)
        start, end = time_window(query.timeframe, query.now or latest or EPOCH, zone)
        total, rows = 0, []
        if sequence_key is not None and type_keys:
            scope = _Scope(sequence_key, sorted(type_keys), start, end)
            terms = query.terms
            if terms is None:
                counts = self._counts(scope)
                total = sum(counts.values())
                if total > query.offset and query.limit != 0:
                    rows = self._newest(scope, counts, query.limit, query.offset)
            elif contacts := self._matching_contacts(terms):
                total, rows = self._search(scope, contacts, query.limit, query.offset)
        return HistoryPage(
            sequence_id=query.sequence_id,
            total=total,
            rows=tuple(HistoryLine(*row) for row in rows),
            timezone=zone.key,
        )

    def _fetch(self, query: sql.Composed, params: list[Any]) -> list[TupleRow]:
        # Unprepared: each query is planned for its own bounds and keys; a generic plan
        # cannot tell a rare type from a common one.
        return self._conn.execute(query, params, prepare=False).fetchall()

    def _counts(self, scope: _Scope) -> dict[int, int]:
        """Rows per type key in the scope, from the daily and hourly counters and the rows in
        the partial hours at the window's edges."""
        days, hours, bits = (nonempty(spans) for spans in split_window(scope.start, scope.end))
        parts: list[sql.Composable] = []
        params: list[Any] = []
        for table, column, spans in (
            ("history_days", "day", days),
            ("history_hours", "hour", hours),
        ):
            if spans:
                parts.append(
                    self._sql(
                        "SELECT type_key, row_count FROM {s}.{table} WHERE ",
                        table=sql.Identifier(table),
                    )
                    + scope.condition(params, column, spans)
                )
        if bits:
            parts.append(
                self._sql("SELECT type_key, count(*) FROM {s}.history WHERE ")
                + scope.condition(params, "time", bits)
                + sql.SQL(" GROUP BY type_key")
            )
        if not parts:
            return {}
        query = (
            sql.SQL("SELECT type_key, sum(row_count)::bigint FROM (")
            + sql.SQL(" UNION ALL ").join(parts)
            + sql.SQL(") AS c(type_key, row_count) GROUP BY type_key")
        )
        return {int(key): int(n) for key, n in self._fetch(query, params) if n}

    def _newest(
        self, scope: _Scope, counts: dict[int, int], limit: int | None, offset: int
    ) -> list[TupleRow]:
        """A page in time order without a search: each type with rows in the window gives
        them in order from its own index range, and a Merge Append interleaves them, reading
        no further than the page, so a rare type costs as little as a common one."""
        params: list[Any] = []
        arms: list[sql.Composable] = []
        for type_key in sorted(counts):
            arm = (
                sql.SQL("(")
                + self._sql(_PAGE_ROWS)
                + _Scope(scope.sequence_key, [type_key], scope.start, scope.end).condition(
                    params, "time", [(scope.start, scope.end)]
                )
                + sql.SQL(_NEWEST_FIRST)
            )
            if limit is not None:
                arm += sql.SQL(" LIMIT %s")
                params.append(offset + limit)
            arms.append(arm + sql.SQL(")"))
        rows = (
            sql.SQL("SELECT * FROM (")
            + sql.SQL(" UNION ALL ").join(arms)
            + sql.SQL(") AS u" + _NEWEST_FIRST + " LIMIT %s OFFSET %s")
        )
        return self._fetch(self._sql(_PAGE, rows=rows, extra=sql.SQL("")), [*params, limit, offset])

    def _matching_contacts(self, terms: SearchTerms) -> list[int]:
        digits = sql.SQL(_MATCHING_DIGITS if terms.digits else "")
        found = self._conn.execute(
            self._sql(_MATCHING_CONTACTS, digits=digits),
            {"like": _like(terms.typed), "digits": _like(terms.digits)},
            prepare=False,
        ).fetchall()
        return sorted(int(row[0]) for row in found)

    def _search(
        self, scope: _Scope, contacts: list[int], limit: int | None, offset: int
    ) -> tuple[int, list[TupleRow]]:
        """The rows of the matching contacts: counted, and the page chosen, in one pass over
        the contact index alone; then only the page's rows are read (by the type index: a
        position names one event, so (sequence, type, time, position) names one row). Only a
        page past the end needs a second statement, for the total."""
        params: list[Any] = []
        where = scope.condition(params, "time", [(scope.start, scope.end)]) + sql.SQL(
            " AND contact_key = ANY(%s)"
        )
        params.append(contacts)
        if limit == 0:
            return self._search_total(where, params), []
        chosen = (
            self._sql("SELECT time, position, type_key, count(*) OVER () AS total")
            + self._sql(" FROM {s}.history WHERE ")
            + where
            + sql.SQL(_NEWEST_FIRST + " LIMIT %s OFFSET %s")
        )
        rows = (
            sql.SQL("SELECT h.position, h.contact_key, h.type_key, h.action, h.event, h.time,")
            + sql.SQL(" chosen.total FROM (")
            + chosen
            + self._sql(
                ") AS chosen JOIN {s}.history h ON h.sequence_key = %s"
                " AND h.type_key = chosen.type_key AND h.time = chosen.time"
                " AND h.position = chosen.position"
            )
        )
        found = self._fetch(
            self._sql(_PAGE, rows=rows, extra=sql.SQL(", p.total")),
            [*params, limit, offset, scope.sequence_key],
        )
        if not found:
            return self._search_total(where, params), []
        return int(found[0][-1]), [row[:-1] for row in found]

    def _search_total(self, where: sql.Composable, params: list[Any]) -> int:
        counted = self._fetch(self._sql("SELECT count(*) FROM {s}.history WHERE ") + where, params)
        return int(counted[0][0])

    def contact(self, contact_id: str) -> ContactSummary | None:
        card = self._conn.execute(
            self._sql(
                "SELECT {columns} FROM {s}.contacts WHERE contact_id = %s",
                columns=_columns(CONTACT_COLUMNS),
            ),
            (contact_id,),
        ).fetchone()
        enrollments = self._conn.execute(
            self._sql(
                "SELECT {columns} FROM {s}.enrollments WHERE contact_id = %s"
                ' ORDER BY enrolled_at, enrollment_id COLLATE "C"',
                columns=_columns(ENROLLMENT_COLUMNS),
            ),
            (contact_id,),
        ).fetchall()
        sequences = self._conn.execute(
            self._sql(
                "SELECT {columns} FROM {s}.sequences WHERE sequence_id IN"
                " (SELECT sequence_id FROM {s}.enrollments WHERE contact_id = %s)",
                columns=_columns(SEQUENCE_SUMMARY_COLUMNS),
            ),
            (contact_id,),
        ).fetchall()
        return contact_summary(
            contact_id,
            None if card is None else ContactCard(*card),
            [_enrollment(row) for row in enrollments],
            Catalog(_sequence(row) for row in sequences),
        )


class _Scope:
    """The rows a history query is about: one sequence, some types (all it has, when the
    query names none, so the type index serves every query), a time window."""

    def __init__(
        self, sequence_key: int, type_keys: list[int], start: datetime | None, end: datetime | None
    ) -> None:
        self.sequence_key = sequence_key
        self.type_keys = type_keys
        self.start = start
        self.end = end

    def condition(self, params: list[Any], column: str, spans: list[Span]) -> sql.Composable:
        """`sequence_key = .. AND type_key .. AND <column within spans>`."""
        text: sql.Composable = sql.SQL("sequence_key = %s")
        params.append(self.sequence_key)
        if len(self.type_keys) == 1:
            text += sql.SQL(" AND type_key = %s")
            params.append(self.type_keys[0])
        else:
            text += sql.SQL(" AND type_key = ANY(%s)")
            params.append(self.type_keys)
        if spans != [(None, None)]:
            text += sql.SQL(" AND ") + span_condition(column, spans, params)
        return text


def _sequence_rows(rows: list[TupleRow]) -> list[SequenceRow]:
    return [
        SequenceRow(
            id=r[0],
            name=r[1],
            created=r[2],
            steps=r[3],
            process_on=r[4],
            line=r[5],
            contacts=int(r[6]),
            remaining_tasks=int(r[7]),
            status=r[8],
            problems=problems_of(r[9]),
        )
        for r in rows
    ]


def _sequence(row: TupleRow) -> SequenceInfo:
    return SequenceInfo(*row)


def _enrollment(row: TupleRow) -> Enrollment:
    (eid, sid, cid, enrolled_at, via, total, state, reason, ended, done, next_id, due) = row
    return Enrollment(
        enrollment_id=eid,
        sequence_id=sid,
        contact_id=cid,
        enrolled_at=enrolled_at,
        via=via,
        steps_total=total,
        state=state,
        reason=reason,
        ended_at=ended,
        steps_done=set(done),
        next_step_id=next_id,
        next_due_at=due,
    )


Row = tuple[Any, ...]


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


def sequence_row(s: SequenceInfo) -> Row:
    return (
        s.sequence_id,
        s.name,
        s.description,
        s.created,
        s.steps_count,
        s.process_on,
        s.line,
        s.status,
        _json_text(s.problems),
        _json_text(s.triggers),
        s.intake_address,
        s.account_timezone,
        s.defined_order,
        s.deleted,
        None if s.step_ids is None else _json_text(s.step_ids),
        None if s.definition is None else _json_text(s.definition),
    )


def enrollment_row(e: Enrollment) -> Row:
    return (
        e.enrollment_id,
        e.sequence_id,
        e.contact_id,
        e.enrolled_at,
        e.via,
        e.steps_total,
        e.state,
        e.reason,
        e.ended_at,
        tuple(sorted(e.steps_done)),
        e.next_step_id,
        e.next_due_at,
    )


def _json_text(value: Any) -> str:
    # Hashable for the comparison with the loaded row, and key order fixed: jsonb reorders keys.
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def card_row(c: ContactCard) -> Row:
    return (c.contact_id, c.first_name, c.last_name, c.name, c.phone, c.email, c.seen_at)


def _consumed_order(record: Consumed) -> tuple[datetime, str, int, int]:
    assert record.event is not None
    return (record.event.time, record.topic, record.partition, record.offset)
