"""The PostgreSQL read models: given output events, then the same answers as in memory, and
re-applying the same records changes nothing."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from ops.readmodel_cli import register
from projections.history import EVENT_KINDS, TIMEFRAMES, HistoryQuery
from projections.loading import ReadModels
from projections.pg_tables import trigram_extension
from projections.postgres import PostgresProjection
from projections.stream import OutputEvent, Positioned
from streams.projector import consumed
from tests.projections.helpers import Stream, a_passed_step_removed
from tests.projections.test_sequences_list import engine_streams

pytestmark = pytest.mark.postgres

T0 = "2028-03-02T22:41:00Z"
TABLES = ("sequences", "enrollments", "contacts", "history", "projection_position")


def positioned(events: list[dict[str, Any]]) -> list[Positioned]:
    return [Positioned(n, OutputEvent.from_json(e)) for n, e in enumerate(events, start=1)]


def in_memory(events: list[dict[str, Any]]) -> ReadModels:
    models = ReadModels()
    for event in events:
        for model in models.all():
            model.apply(event)
    return models


def apply_in_batches(
    projection: PostgresProjection, events: list[dict[str, Any]], size: int
) -> None:
    records = positioned(events)
    for start in range(0, len(records), size):
        projection.apply(records[start : start + size])


def snapshot(conn: psycopg.Connection[Any], schema: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: sorted(
            conn.execute(
                sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            ).fetchall(),
            key=repr,
        )
        for table in TABLES
    }


def rich_stream() -> Stream:
    given = Stream()
    given.defined(
        "welcome",
        name="Welcome",
        steps_count=4,
        account_timezone="America/Denver",
        intake_address="leads@in.example",
    )
    given.defined("nurture", name="Nurture", steps_count=2)
    given.defined("gone", name="Gone")
    given.enrolled(
        "welcome",
        "c-100",
        "2028-03-02T06:59:59Z",
        steps_total=4,
        via="contact_tagged",
        name="Maya Ortiz",
        phone="+17205550142",
        email="maya@example.com",
    )
    given.step("scheduled", "welcome", "c-100", "s1", "2028-03-02T06:59:59Z", due_at=T0)
    given.step("executed", "welcome", "c-100", "s1", "2028-03-02T07:00:00Z")
    given.scoped("sms.send", "welcome", "c-100", "2028-03-02T07:00:00Z", step_id="s1")
    # what the provider answered: a failure and an undelivered text make rows, a delivery none
    for kind, answer in (
        ("effect.failed", {"reason": "unreachable", "code": "21211"}),
        ("effect.status_changed", {"status": "undelivered", "provider": "twilio"}),
        ("effect.status_changed", {"status": "delivered", "provider": "twilio"}),
    ):
        given.scoped(
            kind,
            "welcome",
            "c-100",
            "2028-03-02T07:00:02Z",
            effect_id="fx:welcome:c-100:1:s1:1",
            effect_type="sms.send",
            **answer,
        )
    given.scoped(
        "dialer.key_pressed", "welcome", "c-100", "2028-03-02T07:00:03Z",
        effect_id="fx:welcome:c-100:1:s1:1", effect_type="call.dial", digit="2",
        action="callback", call_sid="CA1",
    )  # fmt: skip
    given.step(
        "deferred",
        "welcome",
        "c-100",
        "s2",
        "2028-03-02T07:00:00Z",
        reason="outside_hours",
        to="2028-03-03T15:30:00Z",
    )
    given.enrolled("welcome", "c-101", T0, steps_total=4, name="Ravi", phone="+17205550143")
    given.step("skipped", "welcome", "c-101", "s1", T0, reason="dnc")
    given.scoped("contact.tag_added", "welcome", "c-101", T0, tag="hot")
    given.scoped("contact.tag_added", "welcome", "c-101", T0, tag="crm", source="crm")
    given.disenrolled("welcome", "c-101", "2028-03-02T23:10:00Z")
    given.scoped("contact.created", "welcome", "c-7", T0, first_name="Lena", phone="+13035550199")
    given.add("lead.rejected", T0, to="leads@in.example", reason="no phone")
    given.enrolled("nurture", "c-100", "2028-03-03T10:00:00Z", steps_total=None)
    given.step("executed", "nurture", "c-100", "n1", "2028-03-03T10:00:00Z")
    given.add(
        "contact.updated", "2028-03-03T11:00:00Z", contact_id="c-7", last_name="Park", source="crm"
    )
    # A CRM whose clock runs a year ahead: its facts do not move the timeframes' clock.
    given.add("contact.updated", "2029-03-03T11:00:00Z", contact_id="c-7", state="CO", source="crm")
    # Events without enrollment ids: the pair's active enrollment, numbered ids.
    for kind, extra in (
        ("enrollment.enrolled", {"via": "manual"}),
        ("step.executed", {"step_id": "n1"}),
        ("enrollment.completed", {}),
        ("enrollment.enrolled", {"via": "manual"}),
        ("step.scheduled", {"step_id": "n1", "due_at": "2028-03-05T00:00:00Z"}),
    ):
        given.add(kind, "2028-03-03T12:00:00Z", sequence_id="nurture", contact_id="c-55", **extra)
    given.deleted("gone", "2028-03-04T00:00:00Z")
    given.defined(
        "welcome",
        "2028-03-04T00:00:00Z",
        name="Welcome v2",
        steps_count=3,  # one step fewer: remaining tasks follow the steps in force
        account_timezone="America/Denver",
        intake_address="leads@in.example",
    )
    return given


QUERIES = [
    HistoryQuery("welcome"),
    HistoryQuery("welcome", limit=3, offset=2),
    HistoryQuery("welcome", search="7205550142"),
    HistoryQuery("welcome", search="(720) 555-0143"),
    HistoryQuery("welcome", search="LENA park"),
    HistoryQuery("welcome", search="maya@"),
    HistoryQuery(
        "welcome", timezone="UTC", timeframe="today", now=datetime(2028, 3, 2, tzinfo=UTC)
    ),
    HistoryQuery("gone"),
    *[HistoryQuery("welcome", kind=kind) for kind in EVENT_KINDS],
    *[
        HistoryQuery("welcome", timeframe=t, now=datetime(2028, 3, 2, 20, tzinfo=UTC))
        for t in TIMEFRAMES
    ],
    *[HistoryQuery("welcome", timeframe=t) for t in TIMEFRAMES],
]


@pytest.mark.parametrize("batch_size", [1, 4, 1000])
def test_given_a_stream_then_postgres_answers_as_the_in_memory_models(
    projection: PostgresProjection, batch_size: int
) -> None:
    events = rich_stream().events
    memory = in_memory(events)

    apply_in_batches(projection, events, batch_size)

    assert projection.sequence_rows() == memory.sequences.rows()
    assert [r.id for r in projection.sequence_rows()] == ["nurture", "welcome"]
    for query in QUERIES:
        assert projection.history(query) == memory.history.query(query), query
    for contact in ("c-100", "c-101", "c-7", "c-55", "c-404"):
        assert projection.contact(contact) == memory.contacts.contact(contact), contact
    assert projection.history(HistoryQuery("nope")) is None
    assert projection.latest_time() == memory.history.latest_time
    # the last decision about contacts: the definitions of 2028-03-04 do not move it
    assert memory.history.latest_time == datetime(2028, 3, 3, 12, tzinfo=UTC)
    assert projection.position() == len(events)


def invalid_and_active() -> Stream:
    given = Stream()
    given.defined("welcome")
    given.defined(
        "broken",
        line=None,
        status="invalid",
        problems=[
            "step s1 (send_sms): needs the sequence's outbound_line",
            "step s2 (sms_ring_group): needs a ring_group",
        ],
    )
    return given


BROKEN_PROBLEMS = (
    "step s1 (send_sms): needs the sequence's outbound_line",
    "step s2 (sms_ring_group): needs a ring_group",
)


def test_an_invalid_sequences_problems_are_listed_as_in_memory(
    projection: PostgresProjection,
) -> None:
    events = invalid_and_active().events

    apply_in_batches(projection, events, 1)

    rows = projection.sequence_rows()
    assert rows == in_memory(events).sequences.rows()
    assert [(r.id, r.status, r.problems) for r in rows] == [
        ("broken", "invalid", BROKEN_PROBLEMS),
        ("welcome", "active", ()),
    ]


def test_remaining_tasks_count_the_steps_of_the_definition_in_force_as_in_memory(
    projection: PostgresProjection,
) -> None:
    events = a_passed_step_removed().events
    apply_in_batches(projection, events, 1)
    assert projection.sequence_rows() == in_memory(events).sequences.rows()
    assert [(r.contacts, r.remaining_tasks) for r in projection.sequence_rows()] == [(1, 2)]
    summary = projection.contact("c-1")
    assert summary == in_memory(events).contacts.contact("c-1")


def test_a_sequence_nobody_is_enrolled_in_has_no_remaining_tasks(
    projection: PostgresProjection,
) -> None:
    given = Stream()
    given.defined("idle", steps_count=2, step_ids=["s1", "s2"])
    apply_in_batches(projection, given.events, 1)
    assert [(r.contacts, r.remaining_tasks) for r in projection.sequence_rows()] == [(0, 0)]


def test_a_rebuild_keeps_an_invalid_sequences_problems(
    projection: PostgresProjection, tmp_path: Path
) -> None:
    path = invalid_and_active().write(tmp_path / "out.jsonl")

    projection.rebuild(path, workers=1)

    assert [(r.id, r.problems) for r in projection.sequence_rows()] == [
        ("broken", BROKEN_PROBLEMS),
        ("welcome", ()),
    ]


def test_reapplying_the_same_records_changes_nothing(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: str
) -> None:
    records = positioned(rich_stream().events)
    assert projection.apply(records) == len(records)
    before = snapshot(conn, pg_schema)

    again = projection.apply(records)
    in_parts = projection.apply(records[:5]) + projection.apply(records[5:])

    assert (again, in_parts) == (0, 0)
    assert snapshot(conn, pg_schema) == before


def test_a_redelivered_event_at_a_new_position_adds_no_row(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: str
) -> None:
    events = rich_stream().events
    projection.apply(positioned(events))
    rows = snapshot(conn, pg_schema)["history"]

    projection.apply([Positioned(len(events) + 1, OutputEvent.from_json(events[4]))])

    assert snapshot(conn, pg_schema)["history"] == rows
    assert projection.position() == len(events) + 1


class FailingAfterWrite(PostgresProjection):
    """Fails once the batch's rows are written, before the position moves."""

    def _store(self, *args: Any) -> None:
        super()._store(*args)
        raise RuntimeError("crash between the rows and the position")


def test_rows_and_position_commit_together(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: str
) -> None:
    records = positioned(rich_stream().events)
    projection.apply(records[:5])
    before = snapshot(conn, pg_schema)

    with pytest.raises(RuntimeError, match="crash"):
        FailingAfterWrite(conn, schema=pg_schema).apply(records[5:])

    assert snapshot(conn, pg_schema) == before
    assert projection.apply(records[5:]) == len(records) - 5


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(events=engine_streams(), batch_size=st.integers(1, 12))
def test_any_stream_in_any_batches_gives_the_in_memory_counters(
    projection: PostgresProjection, events: list[dict[str, Any]], batch_size: int
) -> None:
    projection.reset()
    memory = in_memory(events)

    apply_in_batches(projection, events, batch_size)

    assert projection.sequence_rows() == memory.sequences.rows()
    for sequence_id in ("a", "b"):
        query = HistoryQuery(sequence_id)
        assert projection.history(query) == memory.history.query(query)


# --- the command line on PostgreSQL ------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="dripstream")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.handler(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_rebuild_then_read_gives_what_the_file_gives(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    pg_schema: str,
    workers: str,
) -> None:
    path = rich_stream().write(tmp_path / "out.jsonl", extra_lines=((3, "oops"),))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    db = ("--database-url", database_url, "--schema", pg_schema)

    code, out, err = run(
        capsys, "projections", "rebuild", "--history", str(path), *db, "--workers", workers
    )

    assert code == 1  # the bad line is reported and the rest loads
    assert f"{path}:3: not JSON" in err
    assert "100%" in err
    assert "events applied" in out
    for argv in (
        ("sequences", "list", "--json"),
        ("sequences", "list"),
        ("history", "welcome", "--json", "--search", "7205550142"),
        ("history", "welcome", "--type", "trigger", "--timeframe", "last_7_days"),
        ("history", "welcome", "--type", "communication"),
        ("history", "welcome", "--limit", "2", "--offset", "1", "--timezone", "Asia/Tokyo"),
    ):
        from_file = run(capsys, *argv, "--history", str(path))
        monkeypatch.setenv("DATABASE_URL", database_url)
        from_db = run(capsys, *argv, "--schema", pg_schema)
        monkeypatch.delenv("DATABASE_URL")
        assert (from_db[0], from_db[1]) == (0, from_file[1]), argv


def test_reading_a_schema_never_rebuilt_exits_2(
    capsys: pytest.CaptureFixture[str], database_url: str, pg_schema: str
) -> None:
    code, _, err = run(
        capsys, "sequences", "list", "--database-url", database_url, "--schema", pg_schema
    )
    assert code == 2
    assert "projections rebuild" in err


def test_rebuild_resume_applies_only_the_new_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database_url: str, pg_schema: str
) -> None:
    given = rich_stream()
    path = given.write(tmp_path / "out.jsonl")
    db = ("--database-url", database_url, "--schema", pg_schema)
    assert run(capsys, "projections", "rebuild", "--history", str(path), *db)[0] == 0

    given.enrolled("nurture", "c-9", "2028-03-05T00:00:00Z")
    given.write(path)
    code, out, _ = run(capsys, "projections", "rebuild", "--history", str(path), *db, "--resume")

    assert code == 0
    assert "1 events applied" in out
    rows = orjson.loads(run(capsys, "sequences", "list", "--json", *db)[1])
    assert {r["id"]: r["contacts"] for r in rows} == {"nurture": 3, "welcome": 1}


@pytest.mark.parametrize(
    ("stored", "typed"),
    [
        ("Élodie Ångström", typed)
        for typed in ("Élodie Ångström", "ÉLODIE", "Ångström", "élodie ångström", "ÅNGSTRÖM")
    ]
    + [
        ("Élodie Ångström", "elodie angstrom"),
        ("E\u0301lodie", "Élodie"),  # stored decomposed (NFD), typed composed
        ("Élodie", "E\u0301lodie"),
        ("Hans Straße", "strasse"),
        ("\uff26\uff55\uff4c\uff4c Name", "full"),  # full-width letters
        ("José Núñez", "jose nunez"),
    ],
)
def test_a_search_for_a_name_with_accents_finds_it_as_in_memory(
    projection: PostgresProjection, stored: str, typed: str
) -> None:
    # Both sides fold alike, in Python (search_text): case, accents and compatibility forms
    # aside, whatever the database's collations.
    given = Stream()
    given.defined("welcome")
    given.enrolled("welcome", "c-1", "2028-03-02T10:00:00Z", name=stored)
    apply_in_batches(projection, given.events, 10)
    query = HistoryQuery("welcome", search=typed)
    got = projection.history(query)
    assert got is not None
    assert got.total == 1
    assert got == in_memory(given.events).history.query(query)


def test_the_older_layouts_search_indexes_give_way_to_folded_ones(
    conn: psycopg.Connection[Any], projection: PostgresProjection, pg_schema: str
) -> None:
    # given a schema with search indexes of the older layouts (over lower(name) as the
    # database's LC_CTYPE folds it, and over lower(name) per field), which no search uses
    trigram = trigram_extension(conn)
    assert trigram is not None
    ops = sql.SQL("{}.gin_trgm_ops").format(sql.Identifier(trigram))
    for older in ("contacts_name_trgm", "contacts_name_folded_trgm"):
        conn.execute(
            sql.SQL("CREATE INDEX {} ON {}.contacts USING gin (lower(name) {})").format(
                sql.Identifier(older), sql.Identifier(pg_schema), ops
            )
        )
    # when a projector opens the schema again
    PostgresProjection(conn, schema=pg_schema).ensure_schema()
    # then the old indexes are gone and the one over the folded fields is there
    names = {
        row[0]
        for row in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (pg_schema,)
        ).fetchall()
    }
    assert "contacts_name_trgm" not in names
    assert "contacts_name_folded_trgm" not in names
    assert "contacts_folded_trgm" in names


def a_redefined_and_a_recreated_sequence() -> Stream:
    given = Stream()
    given.defined("s", name="First", steps_count=4)
    given.defined("r", name="Recreated")
    given.deleted("r", "2028-03-02T00:00:00Z")
    given.defined("s", "2028-03-03T00:00:00Z", name="Second", steps_count=2)
    given.defined("r", "2028-03-03T00:00:00Z", name="Recreated again")
    given.enrolled("s", "c-1", "2028-03-04T00:00:00Z", steps_total=2)
    return given


def test_a_definition_or_deletion_delivered_again_later_changes_nothing(
    projection: PostgresProjection,
) -> None:
    # given a sequence redefined and one deleted and defined anew
    events = a_redefined_and_a_recreated_sequence().events
    projection.apply(positioned(events))
    before = projection.sequence_rows()
    # when the first definition and the deletion arrive again, at new positions (a relay
    # that published them twice)
    repeats = [events[0], events[2]]
    projection.apply(
        [Positioned(len(events) + n, OutputEvent.from_json(e)) for n, e in enumerate(repeats, 1)]
    )
    # then the list is as it was: as file mode, which skips a repeated (source, id)
    after = projection.sequence_rows()
    assert after == before
    assert [(row.id, row.name, row.steps) for row in after] == [
        ("r", "Recreated again", 3),
        ("s", "Second", 2),
    ]


def test_a_resume_after_a_bulk_rebuild_skips_its_definitions_delivered_again(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database_url: str, pg_schema: str
) -> None:
    given = a_redefined_and_a_recreated_sequence()
    path = given.write(tmp_path / "out.jsonl")
    db = ("--database-url", database_url, "--schema", pg_schema)
    assert run(capsys, "projections", "rebuild", "--history", str(path), *db)[0] == 0
    listed = run(capsys, "sequences", "list", "--json", *db)[1]

    given.events.extend([given.events[0], given.events[2]])
    given.write(path)
    code, out, _ = run(capsys, "projections", "rebuild", "--history", str(path), *db, "--resume")

    assert (code, "0 events applied" in out) == (0, True)
    assert run(capsys, "sequences", "list", "--json", *db)[1] == listed


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_rebuild_from_several_files_reads_them_all_as_the_read_commands_do(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    database_url: str,
    pg_schema: str,
    workers: str,
) -> None:
    # given a stream split over two files (say, a replay's output and then the outcomes),
    # the second without a final newline and with a bad second line
    events = rich_stream().events
    half = len(events) // 2
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events[:half]))
    lines = [orjson.dumps(e) for e in events[half:]]
    second.write_bytes(b"\n".join([lines[0], b"oops", *lines[1:]]))
    db = ("--database-url", database_url, "--schema", pg_schema)
    files = ("--history", str(first), "--history", str(second))
    # when both are loaded
    code, out, err = run(capsys, "projections", "rebuild", *files, *db, "--workers", workers)
    # then every event of both is in, the bad line named by its own file and line
    assert code == 1
    assert f"{second}:2: not JSON" in err
    assert f"{len(events)} events applied from {first}, {second}" in out
    for argv in (("sequences", "list", "--json"), ("history", "welcome", "--json")):
        assert run(capsys, *argv, *db)[1] == run(capsys, *argv, *files)[1], argv
    # and a resume with the same files finds nothing new
    code, out, _ = run(capsys, "projections", "rebuild", *files, *db, "--resume")
    assert "0 events applied" in out


def facts_going_backwards() -> tuple[Stream, list[dict[str, Any]]]:
    """A contact's facts in time order, and as the live projector may meet them: the
    newest first, then the older ones (each topic read on its own)."""
    given = Stream()
    given.defined("welcome")
    given.enrolled("welcome", "c-9", "2028-03-02T10:00:00Z", name="Maya Ortiz")
    given.add("contact.created", "2028-03-02T08:00:00Z", contact_id="c-9", phone="+17205550100")
    given.add("contact.updated", "2028-03-02T09:00:00Z", contact_id="c-9", phone="+17205550142")
    given.add("contact.updated", "2028-03-02T11:00:00Z", contact_id="c-9", last_name="Ortiz-Lee")
    in_time_order = sorted(given.events, key=lambda e: str(e["time"]))
    return given, in_time_order


def test_facts_arriving_with_times_going_backwards_give_the_cards_of_time_order(
    projection: PostgresProjection,
) -> None:
    given, in_time_order = facts_going_backwards()

    apply_in_batches(projection, given.events, 1)

    expected = in_memory(in_time_order).contacts.contact("c-9")
    assert expected is not None
    assert projection.contact("c-9") == expected
    # the phone of 09:00 is the latest, though the one of 08:00 arrived first
    query = HistoryQuery("welcome", search="7205550142")
    page = projection.history(query)
    assert page == in_memory(in_time_order).history.query(query)
    assert page is not None
    assert page.total == 1


def test_a_card_written_before_times_per_field_reads_its_one_time_for_each(
    conn: psycopg.Connection[Any], projection: PostgresProjection, pg_schema: str
) -> None:
    # given a card as the older layout wrote it: one time for every field
    projection.apply(positioned([Stream().defined("welcome")]))
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.contacts (contact_id, first_name, phone, seen_at)"
            " VALUES ('c-9', 'Maya', '+17205550142', '2028-03-02T10:00:00Z')"
        ).format(sql.Identifier(pg_schema))
    )
    given = Stream()
    given.add("contact.updated", "2028-03-02T09:00:00Z", contact_id="c-9", phone="+17205550100")
    given.add("contact.updated", "2028-03-02T11:00:00Z", contact_id="c-9", first_name="May")
    # when an older and a newer fact arrive
    for n, event in enumerate(given.events, start=2):
        projection.apply([Positioned(n, OutputEvent.from_json(event))])
    # then the older phone does not replace the card's, the newer name does
    summary = projection.contact("c-9")
    assert summary is not None
    assert (summary.phone, summary.name) == ("+17205550142", "May")


def test_a_rejected_lead_naming_its_sequence_is_filed_though_the_definition_comes_later(
    projection: PostgresProjection,
) -> None:
    # given the lead's rejection read before its sequence's definition (another partition)
    given = Stream()
    given.defined("welcome", intake_address="in@x.example")
    given.add(
        "lead.rejected",
        "2028-03-02T10:00:00Z",
        subject="intake:in@x.example",
        to="in@x.example",
        reason="no phone or e-mail in the lead",
        sequence_id="welcome",
    )
    arrived = [given.events[1], given.events[0]]
    apply_in_batches(projection, arrived, 1)
    # then its History row is there, as from the file
    query = HistoryQuery("welcome")
    page = projection.history(query)
    assert page is not None
    assert page.total == 1
    assert page == in_memory(given.events).history.query(query)


def same_time_facts() -> list[dict[str, Any]]:
    given = Stream()
    given.defined("welcome")
    at = "2028-03-02T10:00:00Z"
    given.enrolled("welcome", "c-9", at, name="Maya Ortiz", phone="+17205550100")
    given.add("contact.updated", at, source="crm", contact_id="c-9", phone="+17205550199")
    given.add("contact.updated", at, source="crm", contact_id="c-9", first_name="Maia")
    return given.events


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (0, 3, 2, 1), (0, 2, 3, 1, 2)])
def test_facts_of_one_time_give_one_card_whichever_poll_brings_them(
    projection: PostgresProjection, order: tuple[int, ...]
) -> None:
    events = same_time_facts()
    # one poll each, in this order (an index twice: the same fact delivered again)
    apply_in_batches(projection, [events[i] for i in order], 1)
    assert projection.contact("c-9") == in_memory(events).contacts.contact("c-9")


def test_cards_written_before_the_folded_column_are_found_after_the_schema_is_opened(
    conn: psycopg.Connection[Any], projection: PostgresProjection, pg_schema: str
) -> None:
    # given a card as an older version wrote it, with nothing in `folded`
    given = Stream()
    given.defined("welcome")
    given.enrolled("welcome", "c-1", "2028-03-02T10:00:00Z", name="José Núñez")
    apply_in_batches(projection, given.events, 10)
    conn.execute(sql.SQL("UPDATE {}.contacts SET folded = NULL").format(sql.Identifier(pg_schema)))
    # when a projector opens the schema again
    PostgresProjection(conn, schema=pg_schema).ensure_schema()
    # then a search finds it
    got = projection.history(HistoryQuery("welcome", search="jose"))
    assert got is not None
    assert got.total == 1


def test_a_nul_in_a_crm_fact_is_read_as_a_replacement_character_on_every_path(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    projection: PostgresProjection,
    database_url: str,
    pg_schema: str,
) -> None:
    # given a CRM's contact fact holding a NUL, as the contacts topic may carry it
    given = Stream()
    given.defined("welcome")
    given.enrolled("welcome", "c-1", "2028-03-02T10:00:00Z", name="Ana")
    given.add("contact.updated", "2028-03-02T11:00:00Z", source="crm", contact_id="c-1",
              first_name="A\x00na")  # fmt: skip
    path = given.write(tmp_path / "out.jsonl")
    lines = path.read_bytes().splitlines()
    assert b"\\u0000" in lines[-1]
    # when the live projector decodes and applies it, and a rebuild loads the file
    live = [consumed("dripstream.contacts", 0, n, line) for n, line in enumerate(lines)]
    projection.apply_consumed(live)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    db = ("--database-url", database_url, "--schema", f"{pg_schema}_bulk")
    code, _, err = run(capsys, "projections", "rebuild", "--history", str(path), *db)
    # then both hold it as U+FFFD, as the file's read models do
    assert code == 0, err
    summary = projection.contact("c-1")
    assert summary is not None
    assert summary.name == "A\ufffdna"
    from_file = run(capsys, "history", "welcome", "--json", "--history", str(path))
    from_db = run(capsys, "history", "welcome", "--json", *db)
    assert from_db[:2] == from_file[:2]
    assert "A\ufffdna" in from_file[1]


def same_moment_from_two_causes() -> list[dict[str, Any]]:
    """Two contacts tagged in one second: each cause's outputs numbered as the engine writes
    them (`<cause>/<n>`), the step, its text, the next step scheduled."""
    given = Stream()
    given.defined("w")
    for cause, contact in (("e-1@crm", "c-100"), ("e-2@crm", "c-101")):
        given.enrolled("w", contact, T0)["id"] = f"{cause}/1"
        given.step("executed", "w", contact, "s1", T0, event_id=f"{cause}/2", effect_id="fx")
        given.scoped("sms.send", "w", contact, T0, event_id=f"{cause}/3", step_id="s1", to="+1")
        given.step("scheduled", "w", contact, "s2", T0, event_id=f"{cause}/4", due_at=T0)
    return given.events


def test_rows_of_one_moment_page_alike_in_whatever_order_the_topics_were_read(
    projection: PostgresProjection,
) -> None:
    # given the outputs of two causes of one second, read as a projector may read the
    # decisions and effects topics' partitions: the texts first, the second cause first
    events = same_moment_from_two_causes()
    effects_first = sorted(events, key=lambda e: (e["type"] != "sms.send", e["id"] < "e-2"))
    apply_in_batches(projection, effects_first, 3)
    # then every page holds the rows a file in the engine's order gives, in its order
    memory = in_memory(events)
    for limit, offset in ((None, 0), (3, 0), (3, 3), (2, 5)):
        query = HistoryQuery("w", limit=limit, offset=offset)
        assert projection.history(query) == memory.history.query(query), (limit, offset)
    # and each cause's rows read newest-written first: the next step over the text over
    # the step that sent it
    page = memory.history.query(HistoryQuery("w", search="c-100"))
    assert page is not None
    assert [row.event for row in page.rows] == [
        "step.scheduled",
        "sms.send",
        "step.executed",
        "manual",  # the enrollment's row names how it came
    ]
