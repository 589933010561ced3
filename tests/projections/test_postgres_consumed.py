"""The read models fed from the output topics (`apply_consumed`): given records with their
topic, partition and offset, then the same answers as in memory, and a record read again
changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from ops import projector_cli
from projections import deployment
from projections.history import HistoryQuery
from projections.postgres import (
    PostgresProjection,
    ReadModelsFromFileError,
    ReadModelsTakenError,
)
from projections.stream import Consumed, OutputEvent, Positioned
from tests.projections.helpers import Stream
from tests.projections.test_history import at
from tests.projections.test_postgres_projection import QUERIES, in_memory, rich_stream, snapshot

pytestmark = pytest.mark.postgres


def on_topics(events: list[dict[str, Any]]) -> list[Consumed]:
    """The events as the relay would publish them: contact facts on `contacts`, the rest on
    `decisions`, two partitions each, offsets counted per partition."""
    offsets: dict[tuple[str, int], int] = {}
    records = []
    for event in events:
        topic = "p.contacts" if event["type"].startswith("contact.") else "p.decisions"
        partition = len(str(event.get("subject"))) % 2
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        records.append(Consumed(topic, partition, offset, OutputEvent.from_json(event)))
    return records


def test_records_from_the_topics_give_the_in_memory_answers(
    projection: PostgresProjection,
) -> None:
    events = rich_stream().events
    records = on_topics(events)
    # when they arrive in three polls
    for start in range(0, len(records), 7):
        projection.apply_consumed(records[start : start + 7])
    # then the same answers as the models of the file; rows of the same moment may come in
    # another order (the topics interleave them differently from the file), so pages of
    # them are not compared
    memory = in_memory(events)
    assert projection.sequence_rows() == memory.sequences.rows()
    for query in (q for q in QUERIES if q.limit is None):
        got, want = projection.history(query), memory.history.query(query)
        if want is None:
            assert got is None, query
            continue
        assert got is not None, query
        assert got.total == want.total, query
        assert sorted(got.rows, key=repr) == sorted(want.rows, key=repr), query
        assert [r.time for r in got.rows] == [r.time for r in want.rows], query
    assert projection.history(HistoryQuery("nope")) is None


def test_records_read_again_change_nothing(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: str
) -> None:
    records = on_topics(rich_stream().events)
    assert projection.apply_consumed(records) > 0
    before = snapshot(conn, pg_schema)
    # when a restart reads the last ten again
    assert projection.apply_consumed(records[-10:]) == 0
    # then nothing changed
    assert snapshot(conn, pg_schema) == before


def test_outcomes_published_again_at_new_offsets_change_nothing(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: str
) -> None:
    # given the read models of a stream whose providers' answers are on `outcomes`
    records = on_topics(rich_stream().events)
    projection.apply_consumed(records)
    before = snapshot(conn, pg_schema)
    # when an effects processor, restarted, publishes those answers again (byte for byte,
    # the same ids) further on in `outcomes`
    answers = [r for r in records if r.event.type.startswith(("effect.", "dialer."))]
    assert answers
    again = [Consumed("p.outcomes", 0, 100 + n, r.event) for n, r in enumerate(answers)]
    projection.apply_consumed(again)
    # then no row changed: only the count of records taken moved (positions may have gaps)
    after = snapshot(conn, pg_schema)
    changed = {table for table in before if before[table] != after[table]}
    assert changed <= {"projection_position"}
    [(name, _, latest)] = before["projection_position"]
    assert [(row[0], row[2]) for row in after["projection_position"]] == [(name, latest)]


def test_the_offsets_reached_are_stored_with_the_rows(projection: PostgresProjection) -> None:
    records = on_topics(rich_stream().events)
    projection.apply_consumed(records)
    expected: dict[tuple[str, int], int] = {}
    for record in records:
        where = (record.topic, record.partition)
        expected[where] = max(expected.get(where, 0), record.offset + 1)
    assert projection.offsets() == expected


def test_a_record_that_is_not_an_event_moves_the_offset_only(
    projection: PostgresProjection,
) -> None:
    junk = Consumed("p.decisions", 0, 0, None)
    assert projection.apply_consumed([junk]) == 0
    assert projection.offsets() == {("p.decisions", 0): 1}
    assert projection.sequence_rows() == []


def test_records_from_the_topics_are_refused_by_read_models_loaded_from_a_file(
    projection: PostgresProjection,
) -> None:
    # given read models loaded from a file (a position, no topic offsets)
    projection.apply([Positioned(1, OutputEvent.from_json(rich_stream().events[0]))])
    # when records from the topics arrive, then they are refused, not mixed in
    with pytest.raises(ReadModelsFromFileError, match=r"loaded from a\s+file"):
        projection.apply_consumed(on_topics(rich_stream().events))
    assert projection.offsets() == {}


def test_a_running_projector_stops_once_another_prefix_has_taken_its_schema(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: str
) -> None:
    # given a projector of `p.` that claimed the schema and applied a first poll
    assert deployment.claim(conn, pg_schema, "p.") == "p."
    projection.follows = "p."
    records = on_topics(rich_stream().events)
    projection.apply_consumed(records[:5])
    # when a projector of `q.` is started with --reset (the claim taken, then the tables
    # emptied) while the first still runs
    assert deployment.claim(conn, pg_schema, "q.", take=True) == "q."
    projection.reset()
    # then the first one's next poll is refused, and nothing of it is written
    with pytest.raises(ReadModelsTakenError, match=r"follow the topic prefix 'q\.' since a reset"):
        projection.apply_consumed(records[5:])
    assert projection.offsets() == {}
    assert projection.sequence_rows() == []


def test_a_running_projector_stops_once_a_file_has_replaced_its_schema(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: str
) -> None:
    # given a projector that claimed the schema
    assert deployment.claim(conn, pg_schema, "p.") == "p."
    projection.follows = "p."
    # when the claim is dropped, as a rebuild from a file drops it (before it has stored
    # anything for the projector to see)
    conn.execute(f'DROP TABLE "{pg_schema}".projection_deployment')
    # then the projector's next poll is refused
    with pytest.raises(ReadModelsFromFileError, match="replaced by a stream loaded"):
        projection.apply_consumed(on_topics(rich_stream().events))
    assert projection.offsets() == {}


def test_an_older_snapshot_read_in_a_later_poll_does_not_undo_a_rename(
    projection: PostgresProjection,
) -> None:
    given = Stream()
    given.defined("w")
    given.enrolled("w", "c-1", "2028-03-02T10:00:00Z", name="Maya Ortiz", phone="+17205550142")
    rename = given.add(
        "contact.updated", "2028-03-02T12:00:00Z", source="crm", contact_id="c-1",
        first_name="Mayana", last_name="Ortiz",
    )  # fmt: skip
    records = on_topics(given.events)
    renamed = [r for r in records if r.event is not None and r.event.time == at(rename["time"])]
    # when the rename comes in a poll before the (older) enrollment's
    projection.apply_consumed(renamed)
    projection.apply_consumed([r for r in records if r not in renamed])
    # then the card keeps the newer name
    summary = projection.contact("c-1")
    assert summary is not None
    assert summary.name == "Mayana Ortiz"


def test_a_late_inputs_disenrollment_ends_the_enrollment_it_follows_in_one_poll(
    projection: PostgresProjection,
) -> None:
    # given an enrollment at 10:05 and then, decided after it from a late opt-out timed
    # 10:01, its disenrollment: one partition, in that order
    given = Stream()
    given.defined("w")
    given.enrolled("w", "c-1", "2028-03-02T10:05:00Z")
    given.disenrolled("w", "c-1", "2028-03-02T10:01:00Z", reason="opted_out")
    # when one poll brings both
    projection.apply_consumed(on_topics(given.events))
    # then the contact is not counted as active (folded by time, the end came first)
    [row] = projection.sequence_rows()
    assert row.contacts == 0


def test_the_projector_on_a_new_connection_still_checks_its_claim(
    projection: PostgresProjection, database_url: str
) -> None:
    # given a projector of `p.` whose PostgreSQL connection was lost
    projection.follows = "p."
    opened: list[psycopg.Connection[Any]] = []
    # when it connects again
    again = asyncio.run(
        projector_cli._reconnected(projection, database_url, asyncio.Event(), opened)
    )
    try:
        # then the new connection's projection checks the same claim
        assert again is not None
        assert (again.schema, again.follows) == (projection.schema, "p.")
    finally:
        for conn in opened:
            conn.close()
