"""The read models in PostgreSQL (psycopg 3), for the live `sequences list` and `history`.

Each batch is one transaction: it locks its `projection_position` row, skips records at or
below the stored position, loads the slice of state the batch touches (sequences, the
enrollments of the sequence x contact pairs it names, contact cards), folds it with the same
classes the in-memory models use, writes the slice back with executemany, copies the new
history rows with COPY, and moves the position, so re-applying the same records changes
nothing. History rows are also unique by CloudEvents (source, id): a redelivered event at a
new position adds no row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, LiteralString

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
    history_entry,
    resolve_zone,
    time_window,
)
from projections.sequences_list import SequenceRow
from projections.state import (
    BOOK_TYPES,
    DIRECTORY_TYPES,
    Catalog,
    ContactCard,
    Directory,
    Enrollment,
    EnrollmentBook,
    SequenceInfo,
)
from projections.stream import EventKey, Positioned

DEFAULT_SCHEMA = "readmodels"
DEFAULT_NAME = "readmodels"

_DDL: tuple[LiteralString, ...] = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    """CREATE TABLE IF NOT EXISTS {s}.projection_position (
        name text PRIMARY KEY,
        position bigint NOT NULL,
        latest_time timestamptz)""",
    """CREATE TABLE IF NOT EXISTS {s}.sequences (
        sequence_id text PRIMARY KEY,
        name text NOT NULL,
        description text,
        created text,
        steps_count integer NOT NULL,
        process_on text,
        line text,
        status text NOT NULL,
        problems jsonb NOT NULL,
        triggers jsonb NOT NULL,
        intake_address text,
        account_timezone text,
        defined_order bigint NOT NULL,
        deleted boolean NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS sequences_intake ON {s}.sequences (intake_address)",
    """CREATE TABLE IF NOT EXISTS {s}.enrollments (
        enrollment_id text PRIMARY KEY,
        sequence_id text NOT NULL,
        contact_id text NOT NULL,
        enrolled_at timestamptz NOT NULL,
        via text,
        steps_total integer,
        state text NOT NULL,
        reason text,
        ended_at timestamptz,
        steps_done text[] NOT NULL,
        next_step_id text,
        next_due_at timestamptz)""",
    "CREATE INDEX IF NOT EXISTS enrollments_pair ON {s}.enrollments (sequence_id, contact_id)",
    "CREATE INDEX IF NOT EXISTS enrollments_contact ON {s}.enrollments (contact_id)",
    """CREATE INDEX IF NOT EXISTS enrollments_active ON {s}.enrollments (sequence_id)
        WHERE state = 'active'""",
    """CREATE TABLE IF NOT EXISTS {s}.contacts (
        contact_id text PRIMARY KEY,
        first_name text,
        last_name text,
        name text,
        phone text,
        email text)""",
    """CREATE TABLE IF NOT EXISTS {s}.history (
        row_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        position bigint NOT NULL,
        event_source text NOT NULL,
        event_id text,
        sequence_id text NOT NULL,
        contact_id text,
        type text NOT NULL,
        action text NOT NULL,
        event text NOT NULL,
        time timestamptz NOT NULL,
        UNIQUE (event_source, event_id))""",
    """CREATE INDEX IF NOT EXISTS history_sequence_time
        ON {s}.history (sequence_id, time DESC, position DESC)""",
)

SEQUENCE_COLUMNS = (
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
)
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
CONTACT_COLUMNS = ("contact_id", "first_name", "last_name", "name", "phone", "email")
HISTORY_COLUMNS = (
    "position",
    "event_source",
    "event_id",
    "sequence_id",
    "contact_id",
    "type",
    "action",
    "event",
    "time",
)


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
           coalesce(sum(greatest(
               coalesce(e.steps_total, s.steps_count) - cardinality(e.steps_done), 0)), 0),
           s.status
    FROM {s}.sequences s
    LEFT JOIN {s}.enrollments e ON e.sequence_id = s.sequence_id AND e.state = 'active'
    WHERE NOT s.deleted
    GROUP BY s.sequence_id
    ORDER BY s.sequence_id COLLATE "C"
"""

# The same filters as HistoryReport.query; `q` is already lower-case (SearchTerms).
_HISTORY_FILTER: LiteralString = """
    FROM {s}.history h
    LEFT JOIN {s}.contacts c ON c.contact_id = h.contact_id
    WHERE h.sequence_id = %(sequence_id)s
      AND (%(types)s::text[] IS NULL OR h.type = ANY(%(types)s::text[]))
      AND (%(start)s::timestamptz IS NULL OR h.time >= %(start)s::timestamptz)
      AND (%(end)s::timestamptz IS NULL OR h.time < %(end)s::timestamptz)
      AND (%(q)s::text IS NULL OR (h.contact_id IS NOT NULL AND (
            strpos(lower(h.contact_id), %(q)s::text) > 0
            OR strpos(lower(c.name), %(q)s::text) > 0
            OR strpos(lower(c.phone), %(q)s::text) > 0
            OR strpos(lower(c.email), %(q)s::text) > 0
            OR (%(digits)s::text <> ''
                AND strpos(regexp_replace(c.phone, '[^0-9]', '', 'g'), %(digits)s::text) > 0))))
"""


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
        self._schema = sql.Identifier(schema)
        self.name = name

    def _sql(self, text: LiteralString, **fragments: sql.Composable) -> sql.Composed:
        return sql.SQL(text).format(s=self._schema, **fragments)

    # --- writing ------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        with self._conn.transaction():
            for statement in _DDL:
                self._conn.execute(self._sql(statement))

    def reset(self) -> None:
        """Forget everything (for a rebuild from the start of the stream)."""
        with self._conn.transaction():
            self._conn.execute(
                self._sql(
                    "TRUNCATE {s}.sequences, {s}.enrollments, {s}.contacts, {s}.history,"
                    " {s}.projection_position RESTART IDENTITY"
                )
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
                if latest is None or event.time > latest:
                    latest = event.time
            self._store(state, entries)
            self._conn.execute(
                self._sql(
                    "UPDATE {s}.projection_position SET position = %s, latest_time = %s"
                    " WHERE name = %s"
                ),
                (max(stored, batch[-1].position), latest, self.name),
            )
        return len(fresh)

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
                    " ON h.event_source = k.source AND h.event_id = k.id"
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
        """Upserts of the rows the batch changed, and COPY of its new history rows."""
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
                with cur.copy(
                    self._sql(
                        "COPY {s}.history ({columns}) FROM STDIN",
                        columns=_columns(HISTORY_COLUMNS),
                    )
                ) as copy:
                    for h in entries:
                        copy.write_row(
                            (
                                h.position,
                                h.event_source,
                                h.event_id,
                                h.sequence_id,
                                h.contact_id,
                                h.type,
                                h.action,
                                h.event,
                                h.time,
                            )
                        )

    # --- reading ------------------------------------------------------------------------

    def latest_time(self) -> datetime | None:
        row = self._conn.execute(
            self._sql("SELECT latest_time FROM {s}.projection_position WHERE name = %s"),
            (self.name,),
        ).fetchone()
        return None if row is None else row[0]

    def sequence_rows(self) -> list[SequenceRow]:
        rows = self._conn.execute(self._sql(_SEQUENCE_ROWS)).fetchall()
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
            )
            for r in rows
        ]

    def history(self, query: HistoryQuery) -> HistoryPage | None:
        """The same page as HistoryReport.query over the same stream."""
        found = self._conn.execute(
            self._sql("SELECT account_timezone FROM {s}.sequences WHERE sequence_id = %s"),
            (query.sequence_id,),
        ).fetchone()
        if found is None:
            exists = self._conn.execute(
                self._sql("SELECT EXISTS (SELECT 1 FROM {s}.history WHERE sequence_id = %s)"),
                (query.sequence_id,),
            ).fetchone()
            if exists is None or not exists[0]:
                return None
        zone = resolve_zone(query.timezone, found[0] if found else None)
        now = query.now or self.latest_time() or EPOCH
        start, end = time_window(query.timeframe, now, zone)
        terms, types = query.terms, query.types
        params: dict[str, Any] = {
            "sequence_id": query.sequence_id,
            "types": None if types is None else sorted(types),
            "start": start,
            "end": end,
            "q": terms.text if terms else None,
            "digits": terms.digits if terms else "",
            "limit": query.limit,
            "offset": query.offset,
        }
        counted = self._conn.execute(
            self._sql("SELECT count(*)" + _HISTORY_FILTER), params
        ).fetchone()
        rows = self._conn.execute(
            self._sql(
                "SELECT h.contact_id, c.name, c.phone, h.action, h.event, h.type, h.time"
                + _HISTORY_FILTER
                + " ORDER BY h.time DESC, h.position DESC LIMIT %(limit)s OFFSET %(offset)s"
            ),
            params,
        ).fetchall()
        return HistoryPage(
            sequence_id=query.sequence_id,
            total=0 if counted is None else int(counted[0]),
            rows=tuple(HistoryLine(*row) for row in rows),
            timezone=zone.key,
        )

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
                columns=_columns(SEQUENCE_COLUMNS),
            ),
            (contact_id,),
        ).fetchall()
        return contact_summary(
            contact_id,
            None if card is None else ContactCard(*card),
            [_enrollment(row) for row in enrollments],
            Catalog(_sequence(row) for row in sequences),
        )


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
        yield from (_sequence_row(s) for s in self.catalog.sequences.values())
        yield from (_enrollment_row(e) for e in self.book.enrollments.values())
        yield from (_card_row(c) for c in self.directory.cards.values())

    def changes(self) -> tuple[list[Row], list[Row], list[Row]]:
        def changed(rows: Iterable[Row]) -> list[Row]:
            return [row for row in rows if row not in self._loaded]

        return (
            changed(_sequence_row(s) for s in self.catalog.sequences.values()),
            changed(_enrollment_row(e) for e in self.book.enrollments.values()),
            changed(_card_row(c) for c in self.directory.cards.values()),
        )


def _sequence_row(s: SequenceInfo) -> Row:
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
    )


def _enrollment_row(e: Enrollment) -> Row:
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


def _card_row(c: ContactCard) -> Row:
    return (c.contact_id, c.first_name, c.last_name, c.name, c.phone, c.email)
