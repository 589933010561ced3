"""The bulk rebuild and the counted history: given an output file, a rebuild stores what
applying the same stream stores; history totals and pages from the counters and the merged
type indexes are the in-memory report's, in every zone and timeframe."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from projections.history import EVENT_KINDS, TIMEFRAMES, HistoryQuery
from projections.pg_tables import OlderLayoutError, nonempty, split_window
from projections.postgres import PostgresProjection
from projections.rebuild import RebuildFailedError, staging_schema
from projections.stream import LineError, OutputEvent, Positioned, read_stream
from tests.projections.helpers import Stream
from tests.projections.test_postgres_projection import QUERIES, in_memory, rich_stream
from tests.projections.test_sequences_list import engine_streams

DAY0 = datetime(2028, 3, 9, tzinfo=UTC)  # the days around 2028-03-12, when US clocks jump
ZONES = (
    "UTC",
    "America/Denver",
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "America/St_Johns",  # -03:30 / -02:30
    "Australia/Lord_Howe",  # a half-hour DST
)
SLOW = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def other_schema(conn: psycopg.Connection[Any], pg_schema: str) -> Iterator[str]:
    """A second empty schema, for the other path to write to."""
    name = f"{pg_schema}_b"
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def applied(conn: psycopg.Connection[Any], schema: str, path: Path) -> PostgresProjection:
    """The stream of a file applied the incremental way, in one batch."""
    projection = PostgresProjection(conn, schema=schema)
    projection.ensure_schema()
    projection.reset()
    projection.apply(item for item in read_stream(path) if isinstance(item, Positioned))
    return projection


def rebuilt(
    conn: psycopg.Connection[Any], schema: str, path: Path, workers: int = 1
) -> PostgresProjection:
    projection = PostgresProjection(conn, schema=schema)
    projection.rebuild(path, workers=workers)
    return projection


def stored(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table, with the history's keys replaced by what they stand for (each path
    numbers them in its own order)."""
    queries = {
        "projection_position": "SELECT * FROM {s}.projection_position",
        "sequences": "SELECT * FROM {s}.sequences",
        "enrollments": "SELECT * FROM {s}.enrollments",
        "contacts": "SELECT * FROM {s}.contacts",
        "catalog_events": "SELECT * FROM {s}.catalog_events",
        "history": """
            SELECT h.position, h.event_source, h.event_id, s.sequence_id, k.contact_id, t.type,
                   h.action, h.event, h.time
            FROM {s}.history h
            JOIN {s}.sequence_keys s ON s.key = h.sequence_key
            JOIN {s}.type_keys t ON t.key = h.type_key
            LEFT JOIN {s}.contact_keys k ON k.key = h.contact_key""",
        "hours": """
            SELECT s.sequence_id, t.type, c.hour, c.row_count FROM {s}.history_hours c
            JOIN {s}.sequence_keys s ON s.key = c.sequence_key
            JOIN {s}.type_keys t ON t.key = c.type_key""",
        "days": """
            SELECT s.sequence_id, t.type, c.day, c.row_count FROM {s}.history_days c
            JOIN {s}.sequence_keys s ON s.key = c.sequence_key
            JOIN {s}.type_keys t ON t.key = c.type_key""",
        "sequence_keys": "SELECT sequence_id FROM {s}.sequence_keys",
        "type_keys": "SELECT type FROM {s}.type_keys",
        "contact_keys": "SELECT contact_id FROM {s}.contact_keys",
    }
    return {
        table: sorted(
            conn.execute(sql.SQL(text).format(s=sql.Identifier(schema))).fetchall(), key=repr
        )
        for table, text in queries.items()
    }


def odd_stream(*, defined_again: bool = True) -> Stream:
    """The rich stream with what a file may also hold: an event delivered twice, one without
    an id, a contact fact from the CRM, text that looks like SQL wildcards, and a definition
    delivered again (which only the in-memory models and a single batch skip: across
    batches, PostgreSQL recognises only the events that made a history row)."""
    given = rich_stream()
    again = dict(given.events[4])
    given.events.append(again)
    given.add("step.executed", "2028-03-04T01:00:00Z", sequence_id="welcome", contact_id="c-100")
    given.events[-1]["id"] = None
    given.add(
        "contact.updated",
        "2028-03-04T02:00:00Z",
        source="crm",
        contact_id="c_100%",
        first_name="Per%cent",
        last_name="Under_score\\",
    )
    given.add(
        "enrollment.enrolled",
        "2028-03-04T03:00:00Z",
        sequence_id="welcome",
        contact_id="c_100%",
        via="manual",
        contact_phone="+1 (303) 555-0100",
    )
    if defined_again:
        given.events.append(dict(given.events[0]))
    return given


def written(stream: Stream, tmp_path: Path) -> Path:
    """The stream as a file, with a blank line, a line that is not JSON and one that is not
    an event."""
    return stream.write(
        tmp_path / "out.jsonl",
        extra_lines=((2, ""), (5, "oops"), (9, '{"type": "x", "data": {}}')),
    )


# --- a rebuild stores what applying stores ---------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("workers", [1, 2])
def test_a_bulk_rebuild_stores_what_applying_the_same_stream_stores(
    conn: psycopg.Connection[Any],
    pg_schema: str,
    other_schema: str,
    tmp_path: Path,
    workers: int,
) -> None:
    path = written(odd_stream(), tmp_path)
    reference = applied(conn, other_schema, path)

    projection = PostgresProjection(conn, schema=pg_schema)
    result = projection.rebuild(path, workers=workers)

    assert stored(conn, pg_schema) == stored(conn, other_schema)
    lines = list(read_stream(path))
    assert list(result.errors) == [item for item in lines if isinstance(item, LineError)]
    assert result.records == sum(isinstance(item, Positioned) for item in lines)
    assert result.applied == result.records - 2  # the event and the definition delivered again
    assert result.position == projection.position() == reference.position()
    assert projection.latest_time() == reference.latest_time()


@pytest.mark.postgres
@SLOW
@given(events=engine_streams())
def test_any_engine_stream_rebuilds_to_what_applying_it_stores(
    conn: psycopg.Connection[Any],
    pg_schema: str,
    other_schema: str,
    tmp_path_factory: pytest.TempPathFactory,
    events: list[dict[str, Any]],
) -> None:
    path = tmp_path_factory.mktemp("stream") / "out.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    applied(conn, other_schema, path)

    projection = rebuilt(conn, pg_schema, path)

    assert stored(conn, pg_schema) == stored(conn, other_schema)
    assert projection.sequence_rows() == in_memory(events).sequences.rows()


@pytest.mark.postgres
def test_after_a_rebuild_postgres_answers_as_the_in_memory_models(
    conn: psycopg.Connection[Any], pg_schema: str, tmp_path: Path
) -> None:
    events = odd_stream().events
    memory = in_memory(events)

    projection = rebuilt(conn, pg_schema, odd_stream().write(tmp_path / "out.jsonl"))

    assert projection.sequence_rows() == memory.sequences.rows()
    for query in [
        *QUERIES,
        HistoryQuery("welcome", search="%"),
        HistoryQuery("welcome", search="_"),
        HistoryQuery("welcome", search="c_1"),
        HistoryQuery("welcome", search="under_score\\"),
        HistoryQuery("welcome", search="303 555"),
        HistoryQuery("welcome", search="3035550100", kind="enrollment"),
    ]:
        assert projection.history(query) == memory.history.query(query), query
    for contact in ("c-100", "c-101", "c-7", "c-55", "c_100%", "c-404"):
        assert projection.contact(contact) == memory.contacts.contact(contact), contact


@pytest.mark.postgres
def test_without_pg_trgm_searches_answer_the_same(
    conn: psycopg.Connection[Any],
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("projections.rebuild.trigram_extension", lambda conn: None)
    events = odd_stream().events
    memory = in_memory(events)

    projection = rebuilt(conn, pg_schema, odd_stream().write(tmp_path / "out.jsonl"))

    trigram = conn.execute(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname LIKE %s",
        (pg_schema, "%trgm"),
    ).fetchone()
    assert trigram == (0,)
    for search in ("7205550142", "(720) 555-0143", "LENA park", "maya@", "c_1", "%"):
        query = HistoryQuery("welcome", search=search)
        assert projection.history(query) == memory.history.query(query), search


@pytest.mark.postgres
def test_applying_after_a_rebuild_goes_on_from_its_position(
    conn: psycopg.Connection[Any], pg_schema: str, tmp_path: Path
) -> None:
    events = odd_stream(defined_again=False).events
    head = Stream()
    head.events = events[:12]
    projection = rebuilt(conn, pg_schema, head.write(tmp_path / "head.jsonl"))
    everything = Stream()
    everything.events = events
    rest = [
        item
        for item in read_stream(everything.write(tmp_path / "all.jsonl"))
        if isinstance(item, Positioned)
    ]

    assert projection.apply(rest) == len(rest) - 12 - 1  # the event delivered twice

    memory = in_memory(events)
    assert projection.sequence_rows() == memory.sequences.rows()
    for query in QUERIES:
        assert projection.history(query) == memory.history.query(query), query
    assert projection.contact("c_100%") == memory.contacts.contact("c_100%")


@pytest.mark.postgres
def test_a_rebuild_replaces_the_read_models_and_nothing_else(
    conn: psycopg.Connection[Any], pg_schema: str, tmp_path: Path
) -> None:
    first = Stream()
    first.defined("old")
    first.enrolled("old", "c-1", "2028-03-02T00:00:00Z")
    projection = rebuilt(conn, pg_schema, first.write(tmp_path / "first.jsonl"))
    conn.execute(sql.SQL("CREATE TABLE {}.notes (text text)").format(sql.Identifier(pg_schema)))

    projection.rebuild(rich_stream().write(tmp_path / "second.jsonl"), workers=2)

    assert [row.id for row in projection.sequence_rows()] == ["nurture", "welcome"]
    assert projection.history(HistoryQuery("old")) is None
    notes = sql.SQL("SELECT count(*) FROM {}.notes").format(sql.Identifier(pg_schema))
    assert conn.execute(notes).fetchone() == (0,)
    staging = conn.execute(
        "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (staging_schema(pg_schema),)
    ).fetchone()
    assert staging == (0,)


def _fail_storing_the_state(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("projections.rebuild._State.store", fail)


def _fail_the_history_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "false")  # the second process exits 1 at once


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("break_it", "workers", "error", "message"),
    [
        (_fail_storing_the_state, 1, RuntimeError, "disk full"),
        (_fail_the_history_writer, 2, RebuildFailedError, "exit code 1"),
    ],
    ids=["state-store-fails", "history-writer-fails"],
)
def test_a_failed_rebuild_leaves_the_read_models_as_they_were(
    conn: psycopg.Connection[Any],
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    break_it: Callable[[pytest.MonkeyPatch], None],
    workers: int,
    error: type[Exception],
    message: str,
) -> None:
    path = rich_stream().write(tmp_path / "out.jsonl")
    projection = rebuilt(conn, pg_schema, path)
    before = stored(conn, pg_schema)
    break_it(monkeypatch)

    with pytest.raises(error, match=message):
        projection.rebuild(odd_stream().write(tmp_path / "other.jsonl"), workers=workers)

    assert stored(conn, pg_schema) == before
    monkeypatch.undo()
    projection.rebuild(path, workers=1)  # and the next rebuild clears what it left
    assert stored(conn, pg_schema) == before


@pytest.mark.postgres
def test_read_models_of_the_layout_before_keys_are_refused_until_rebuilt(
    conn: psycopg.Connection[Any], pg_schema: str, tmp_path: Path
) -> None:
    conn.execute(
        sql.SQL("CREATE TABLE {}.history (sequence_id text, contact_id text)").format(
            sql.Identifier(pg_schema)
        )
    )
    projection = PostgresProjection(conn, schema=pg_schema)

    with pytest.raises(OlderLayoutError, match="rebuild"):
        projection.ensure_schema()

    projection.rebuild(rich_stream().write(tmp_path / "out.jsonl"), workers=1)
    projection.ensure_schema()
    assert [row.id for row in projection.sequence_rows()] == ["nurture", "welcome"]


# --- totals and pages from the counters --------------------------------------------------------

# Minutes of a UTC day where some zone's day starts (UTC, Denver in and out of DST, St John's,
# Lord Howe, Kolkata, Kathmandu): events near them land in the partial hours of a window.
MIDNIGHTS = (0, 6 * 60, 7 * 60, 150, 210, 13 * 60, 13 * 60 + 30, 18 * 60 + 15, 18 * 60 + 30)
moments = st.builds(
    lambda day, minute, delta: DAY0 + timedelta(days=day, minutes=minute + delta),
    st.integers(-1, 5),
    st.sampled_from(MIDNIGHTS),
    st.integers(-40, 40),
)


@st.composite
def timed_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Enrollments, steps and messages of a few contacts at random minutes over five days."""
    given = Stream()
    given.defined("w", account_timezone=draw(st.sampled_from(ZONES)))
    kinds = st.sampled_from(["enrolled", "scheduled", "executed", "sms.send", "completed"])
    for n, (kind, moment) in enumerate(draw(st.lists(st.tuples(kinds, moments), max_size=60))):
        at = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        contact = f"c-{n % 4}"
        if kind == "enrolled":
            given.enrolled("w", contact, at, n=n, name=f"Name {n % 4}", phone=f"+1303555010{n % 4}")
        elif kind in ("scheduled", "executed"):
            given.step(kind, "w", contact, f"s{n % 3}", at, due_at=at)
        elif kind == "completed":
            given.completed("w", contact, at)
        else:
            given.scoped(kind, "w", contact, at, step_id="s1")
    return given.events


history_queries = st.builds(
    HistoryQuery,
    sequence_id=st.just("w"),
    search=st.sampled_from([None, None, "c-1", "name 2", "3035550103", "nobody"]),
    kind=st.sampled_from([None, None, *EVENT_KINDS, "step.executed"]),
    timeframe=st.sampled_from(TIMEFRAMES),
    now=moments,
    timezone=st.sampled_from([None, *ZONES]),
    limit=st.sampled_from([None, 0, 1, 5]),
    offset=st.integers(0, 8),
)


@pytest.mark.postgres
@settings(SLOW, max_examples=60)
@given(
    events=timed_streams(),
    queries=st.lists(history_queries, min_size=1, max_size=8),
    bulk=st.booleans(),
    batch_size=st.integers(1, 20),
)
def test_totals_and_pages_match_the_in_memory_report_in_every_zone(
    conn: psycopg.Connection[Any],
    pg_schema: str,
    tmp_path_factory: pytest.TempPathFactory,
    events: list[dict[str, Any]],
    queries: list[HistoryQuery],
    bulk: bool,
    batch_size: int,
) -> None:
    memory = in_memory(events)
    projection = PostgresProjection(conn, schema=pg_schema)
    if bulk:
        path = tmp_path_factory.mktemp("stream") / "out.jsonl"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        projection.rebuild(path, workers=1)
    else:
        projection.ensure_schema()
        projection.reset()
        records = [Positioned(n, OutputEvent.from_json(e)) for n, e in enumerate(events, 1)]
        for start in range(0, len(records), batch_size):
            projection.apply(records[start : start + batch_size])

    for query in queries:
        assert projection.history(query) == memory.history.query(query), query


@pytest.mark.postgres
@pytest.mark.parametrize("bulk", [True, False])
def test_every_timeframe_in_every_zone_counts_every_partial_hour(
    conn: psycopg.Connection[Any], pg_schema: str, tmp_path: Path, bulk: bool
) -> None:
    given = Stream()
    given.defined("w", account_timezone="Asia/Kolkata")
    for n in range(0, 4 * 24 * 60, 10):  # a row every ten minutes for four days
        at = (DAY0 + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
        if n % 30:
            given.step("scheduled", "w", f"c-{n % 7}", "s1", at, due_at=at)
        else:
            given.scoped("sms.send", "w", f"c-{n % 7}", at)
    memory = in_memory(given.events)
    path = given.write(tmp_path / "out.jsonl")
    projection = rebuilt(conn, pg_schema, path) if bulk else applied(conn, pg_schema, path)

    for zone in (None, *ZONES):
        for timeframe in TIMEFRAMES:
            for kind in (None, "trigger", "communication"):
                query = HistoryQuery(
                    "w",
                    kind=kind,
                    timeframe=timeframe,
                    timezone=zone,
                    now=DAY0 + timedelta(days=2, hours=5),
                    limit=3,
                    offset=10,
                )
                assert projection.history(query) == memory.history.query(query), query


# --- the window split ---------------------------------------------------------------------------

bounds = st.one_of(
    st.none(), st.integers(0, 4 * 24 * 60).map(lambda m: DAY0 + timedelta(minutes=m))
)


@settings(max_examples=300)
@given(start=bounds, end=bounds)
def test_days_hours_and_bits_cover_the_window_exactly_once(
    start: datetime | None, end: datetime | None
) -> None:
    if start is not None and end is not None and start >= end:
        start, end = end - timedelta(minutes=1), start + timedelta(minutes=1)
    days, hours, bits = (nonempty(spans) for spans in split_window(start, end))
    assert all(lo is None or lo.minute == lo.hour == 0 for lo, _ in days)
    assert all(lo is not None and hi is not None and lo.minute == 0 for lo, hi in hours)
    assert all(
        lo is not None and hi is not None and hi - lo < timedelta(hours=1) for lo, hi in bits
    )
    # Each minute of the five days is in the window iff exactly one span holds it.
    for minute in range(-60, 6 * 24 * 60, 7):
        moment = DAY0 + timedelta(minutes=minute)
        inside = (start is None or start <= moment) and (end is None or moment < end)
        holders = [
            (lo, hi)
            for lo, hi in [*days, *hours, *bits]
            if (lo is None or lo <= moment) and (hi is None or moment < hi)
        ]
        assert len(holders) == (1 if inside else 0), (moment, holders)
