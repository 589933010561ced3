"""Reading the read models in PostgreSQL: the queries behind `sequences list`, `show` and
`contacts`, `history` and the contact view, live (projections/postgres.py writes them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from projections.contacts_view import ContactSummary, contact_summary
from projections.history import (
    EPOCH,
    HistoryLine,
    HistoryPage,
    HistoryQuery,
    SearchTerms,
    resolve_zone,
    time_window,
)
from projections.pg_rows import (
    CONTACT_COLUMNS,
    ENROLLMENT_COLUMNS,
    SEQUENCE_SUMMARY_COLUMNS,
    columns,
    enrollment_from_row,
    sequence_from_row,
)
from projections.pg_tables import Span, folding, nonempty, span_condition, split_window
from projections.sequence_contacts import SequenceContactsPage, SequenceContactsQuery, contacts_page
from projections.sequence_detail import SequenceDetail, sequence_detail
from projections.sequences_list import SequenceRow, problems_of
from projections.state import Catalog, ContactCard, SequenceInfo, UnknownSequenceError

DEFAULT_SCHEMA = "readmodels"
DEFAULT_NAME = "readmodels"


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
# test is a LIKE the trigram indexes answer. `%(like)s` is the escaped text within `%`, as
# typed: lower() folds it as it folds the stored ids, with `{fold}` (pg_tables `folding`:
# ICU where PostgreSQL has it, as the index was built); `%(folded)s` is it folded as
# `folded` holds the card's fields (search_text, in Python on both sides).
_MATCHING_CONTACTS: LiteralString = """
    SELECT key FROM {s}.contact_keys WHERE lower(contact_id{fold}) LIKE lower(%(like)s::text{fold})
    UNION
    SELECT k.key FROM {s}.contacts c JOIN {s}.contact_keys k ON k.contact_id = c.contact_id
    WHERE c.folded LIKE %(folded)s {digits}
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
_NEWEST_FIRST: LiteralString = " ORDER BY time DESC, position DESC"
# A sequence's contacts in the order of the in-memory models (ids compared byte by byte).
_CONTACTS_ORDER: LiteralString = (
    'ORDER BY e.enrolled_at, e.contact_id COLLATE "C", e.enrollment_id COLLATE "C"'
)
# The rows of a page chosen by their keys (`{chosen}`: time, position, type_key and
# `{extra}`), read from the table by the type index: a position names one event, so
# (sequence, type, time, position) names one row.
_CHOSEN_ROWS: LiteralString = """
    SELECT h.position, h.contact_key, h.type_key, h.action, h.event, h.time {extra}
    FROM ({chosen}) AS chosen JOIN {s}.history h ON h.sequence_key = %s
    AND h.type_key = chosen.type_key AND h.time = chosen.time AND h.position = chosen.position
"""


def for_reading(conn: psycopg.Connection[Any]) -> None:
    """Set up a session (autocommit) that answers read-model queries: a page of a large
    history is costed high enough for PostgreSQL to compile it (JIT), which took 3 s of a
    5 s answer at a million inputs, for queries whose work is an index range."""
    conn.execute("SET jit = off")


def _like(text: str) -> str:
    """A LIKE pattern that matches `text` anywhere, with its own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class PostgresReadModels:
    """Reader of the read-model tables in one schema (default `readmodels`, so the tables
    never meet the event store's)."""

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
        self._fold: sql.Composable | None = None  # pg_tables `folding`, asked at the first search

    def _sql(self, text: LiteralString, **fragments: sql.Composable) -> sql.Composed:
        return sql.SQL(text).format(s=self._schema, **fragments)

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
                    "SELECT {enrollment}, {card} FROM ("
                    " SELECT e.enrollment_id, e.enrolled_at, e.contact_id FROM {s}.enrollments e"
                    " WHERE e.sequence_id = %s{active}"
                    " {order} LIMIT %s OFFSET %s) AS page"
                    " JOIN {s}.enrollments e ON e.enrollment_id = page.enrollment_id"
                    " LEFT JOIN {s}.contacts c ON c.contact_id = e.contact_id {order}",
                    order=sql.SQL(_CONTACTS_ORDER),
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
                    enrollment_from_row(row[:width]),
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
                columns=columns(SEQUENCE_SUMMARY_COLUMNS),
                definition=sql.SQL(definition),
            ),
            (sequence_id,),
        ).fetchone()
        return Catalog([] if row is None else [sequence_from_row(row)]).shown(sequence_id)

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
        now = query.now or latest or EPOCH
        start, end = time_window(query.timeframe, now, zone)
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
            timeframe=query.timeframe,
            now=now,
            start=start,
            end=end,
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
        no further than the page, so a rare type costs as little as a common one. The keys
        alone come from the index (a page far down skips rows it never reads from the
        table); then the page's rows are read."""
        params: list[Any] = []
        arms: list[sql.Composable] = []
        for type_key in sorted(counts):
            arm = (
                sql.SQL("(")
                + self._sql("SELECT time, position, type_key FROM {s}.history WHERE ")
                + _Scope(scope.sequence_key, [type_key], scope.start, scope.end).condition(
                    params, "time", [(scope.start, scope.end)]
                )
                + sql.SQL(_NEWEST_FIRST)
            )
            if limit is not None:
                arm += sql.SQL(" LIMIT %s")
                params.append(offset + limit)
            arms.append(arm + sql.SQL(")"))
        chosen = (
            sql.SQL("SELECT * FROM (")
            + sql.SQL(" UNION ALL ").join(arms)
            + sql.SQL(") AS u" + _NEWEST_FIRST + " LIMIT %s OFFSET %s")
        )
        rows = self._sql(_CHOSEN_ROWS, chosen=chosen, extra=sql.SQL(""))
        return self._fetch(
            self._sql(_PAGE, rows=rows, extra=sql.SQL("")),
            [*params, limit, offset, scope.sequence_key],
        )

    def _folding(self) -> sql.Composable:
        if self._fold is None:
            self._fold = folding(self._conn)
        return self._fold

    def _matching_contacts(self, terms: SearchTerms) -> list[int]:
        digits = sql.SQL(_MATCHING_DIGITS if terms.digits else "")
        found = self._conn.execute(
            self._sql(_MATCHING_CONTACTS, digits=digits, fold=self._folding()),
            {
                "like": _like(terms.typed),
                "folded": _like(terms.folded),
                "digits": _like(terms.digits),
            },
            prepare=False,
        ).fetchall()
        return sorted(int(row[0]) for row in found)

    def _search(
        self, scope: _Scope, contacts: list[int], limit: int | None, offset: int
    ) -> tuple[int, list[TupleRow]]:
        """The rows of the matching contacts: counted, and the page chosen, in one pass over
        the contact index alone; then only the page's rows are read (`_CHOSEN_ROWS`). Only a
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
        rows = self._sql(_CHOSEN_ROWS, chosen=chosen, extra=sql.SQL(", chosen.total"))
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
                columns=columns(CONTACT_COLUMNS),
            ),
            (contact_id,),
        ).fetchone()
        enrollments = self._conn.execute(
            self._sql(
                "SELECT {columns} FROM {s}.enrollments WHERE contact_id = %s"
                ' ORDER BY enrolled_at, enrollment_id COLLATE "C"',
                columns=columns(ENROLLMENT_COLUMNS),
            ),
            (contact_id,),
        ).fetchall()
        sequences = self._conn.execute(
            self._sql(
                "SELECT {columns} FROM {s}.sequences WHERE sequence_id IN"
                " (SELECT sequence_id FROM {s}.enrollments WHERE contact_id = %s)",
                columns=columns(SEQUENCE_SUMMARY_COLUMNS),
            ),
            (contact_id,),
        ).fetchall()
        return contact_summary(
            contact_id,
            None if card is None else ContactCard(*card),
            [enrollment_from_row(row) for row in enrollments],
            Catalog(sequence_from_row(row) for row in sequences),
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
