"""A sequence's definition and its contacts from the PostgreSQL read models: given what the
engine decided in a small scenario, then the same answers as the in-memory models, applied in
any batches or rebuilt from a file, and read models written before the definition was kept
still answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from psycopg import sql

from ops.api_read_models import FileReadModels, PostgresReadModels
from ops.http_api import make_app
from projections.loading import load_file
from projections.pg_tables import create_indexes, trigram_extension
from projections.postgres import PostgresProjection
from projections.sequence_contacts import SequenceContactsQuery
from projections.state import UnknownSequenceError
from projections.stream import OutputEvent, Positioned
from schemas.envelope import CloudEvent
from tests.ops.test_http_api import call
from tests.projections.drip_scenario import drip_outputs, without_definitions, write
from tests.projections.test_postgres_projection import apply_in_batches
from tests.projections.test_readmodel_cli import run
from tests.projections.test_sequence_views import contacts, show

pytestmark = pytest.mark.postgres

QUERIES = [
    SequenceContactsQuery("drip"),
    SequenceContactsQuery("drip", ended=True),
    SequenceContactsQuery("drip", ended=True, limit=1, offset=1),
    SequenceContactsQuery("drip", limit=1),
    SequenceContactsQuery("drip", offset=5),
    SequenceContactsQuery("drip", limit=0),
    SequenceContactsQuery("idle", ended=True),
]


def assert_answers_as_in_memory(
    projection: PostgresProjection, events: list[dict[str, Any]]
) -> None:
    for sequence_id in ("drip", "idle"):
        assert projection.sequence_detail(sequence_id) == show(events, sequence_id), sequence_id
    for query in QUERIES:
        assert projection.sequence_contacts(query) == contacts(events, query), query


@pytest.mark.parametrize("batch_size", [1, 5, 1000])
def test_given_a_stream_in_any_batches_then_postgres_answers_as_the_in_memory_models(
    projection: PostgresProjection, batch_size: int
) -> None:
    events = drip_outputs()

    apply_in_batches(projection, events, batch_size)

    assert_answers_as_in_memory(projection, events)
    detail = projection.sequence_detail("drip")
    assert detail.definition is not None
    assert [step["id"] for step in detail.definition["steps"]] == ["s1", "s2", "s3"]
    # jsonb keeps no key order: the answer is put back in the sequence file's
    assert list(detail.definition)[:3] == ["id", "name", "description"]
    assert [r.contact_id for r in projection.sequence_contacts(QUERIES[1]).rows] == [
        "c-2",
        "c-1",
        "c-3",
    ]


def test_a_rebuild_keeps_the_definitions_and_the_contacts(
    projection: PostgresProjection, tmp_path: Path
) -> None:
    events = drip_outputs()

    projection.rebuild(write(events, tmp_path / "out.jsonl"), workers=1)

    assert_answers_as_in_memory(projection, events)


def test_a_stream_without_definitions_shows_none_as_in_memory(
    projection: PostgresProjection,
) -> None:
    events = without_definitions(drip_outputs())

    apply_in_batches(projection, events, 7)

    assert projection.sequence_detail("drip").definition is None
    assert_answers_as_in_memory(projection, events)


@pytest.mark.parametrize(("sequence_id", "deleted"), [("gone", True), ("nope", False)])
def test_a_deleted_or_unknown_sequence_is_refused_as_in_memory(
    projection: PostgresProjection, sequence_id: str, deleted: bool
) -> None:
    apply_in_batches(projection, drip_outputs(), 1000)

    with pytest.raises(UnknownSequenceError) as refused:
        projection.sequence_detail(sequence_id)
    with pytest.raises(UnknownSequenceError):
        projection.sequence_contacts(SequenceContactsQuery(sequence_id, ended=True))

    assert refused.value.deleted is deleted


def test_read_models_written_before_the_definition_was_kept_still_answer_and_then_keep_it(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: str
) -> None:
    # Given read models of the layout before the definition column and the contacts' index
    older = without_definitions(drip_outputs())
    apply_in_batches(projection, older, 1000)
    schema = sql.Identifier(pg_schema)
    conn.execute(sql.SQL("ALTER TABLE {}.sequences DROP COLUMN definition").format(schema))
    conn.execute(sql.SQL("DROP INDEX {}.enrollments_sequence_page").format(schema))

    # when they are read before the projector has moved the tables on: no definition, no error
    assert projection.sequence_detail("drip") == show(older, "drip")
    assert projection.sequence_contacts(QUERIES[1]) == contacts(older, QUERIES[1])
    assert projection.contact("c-1") is not None
    listed = projection.sequence_rows()

    # then the projector's start adds the column and the index, keeping the rows, and a
    # definition published from then on is kept
    projection.ensure_schema()
    assert projection.sequence_rows() == listed
    assert "enrollments_sequence_page" in indexes(conn, pg_schema)
    redefined = [
        {**e, "id": f"applied-again-{n}"}
        for n, e in enumerate(drip_outputs())
        if e["type"] == "sequence.defined"
    ]
    projection.apply(
        [
            Positioned(len(older) + n, OutputEvent.from_json(e))
            for n, e in enumerate(redefined, start=1)
        ]
    )
    assert projection.sequence_detail("drip") == show(older + redefined, "drip")
    assert projection.sequence_detail("drip").definition is not None


@pytest.mark.parametrize("trigram", [True, False], ids=["with pg_trgm", "without pg_trgm"])
def test_the_contacts_page_index_of_an_earlier_release_gives_way_to_the_one_with_the_state(
    projection: PostgresProjection, conn: psycopg.Connection[Any], pg_schema: str, trigram: bool
) -> None:
    # given read models with the page index of an earlier release (without the state)
    schema = sql.Identifier(pg_schema)
    conn.execute(sql.SQL("DROP INDEX {}.enrollments_sequence_page").format(schema))
    conn.execute(
        sql.SQL(
            "CREATE INDEX enrollments_sequence_order ON {}.enrollments"
            ' (sequence_id, enrolled_at, contact_id COLLATE "C", enrollment_id COLLATE "C")'
        ).format(schema)
    )
    # when the projector opens them, on a database with or without pg_trgm
    create_indexes(conn, schema, trigram_extension(conn) if trigram else None)
    # then the new index replaces the old one, which would only slow every write
    assert {"enrollments_sequence_page"} <= indexes(conn, pg_schema)
    assert "enrollments_sequence_order" not in indexes(conn, pg_schema)


def indexes(conn: psycopg.Connection[Any], schema: str) -> set[str]:
    rows = conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,))
    return {str(row[0]) for row in rows.fetchall()}


# --- the command line on PostgreSQL ------------------------------------------------------------


def test_the_commands_print_from_postgresql_what_they_print_from_the_file(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database_url: str,
    pg_schema: str,
) -> None:
    path = write(drip_outputs(), tmp_path / "out.jsonl")
    db = ("--database-url", database_url, "--schema", pg_schema)
    assert run(capsys, "projections", "rebuild", "--history", str(path), *db)[0] == 0
    monkeypatch.delenv("DATABASE_URL", raising=False)

    for argv in (
        ("sequences", "show", "drip"),
        ("sequences", "show", "drip", "--json"),
        ("sequences", "show", "idle"),
        ("sequences", "contacts", "drip"),
        ("sequences", "contacts", "drip", "--all"),
        ("sequences", "contacts", "drip", "--json", "--all", "--limit", "2", "--offset", "1"),
    ):
        from_file = run(capsys, *argv, "--history", str(path))
        from_db = run(capsys, *argv, *db)
        assert from_db == from_file == (0, from_file[1], ""), argv

    for command, sequence_id, says in (
        ("show", "nope", "no such sequence in PostgreSQL"),
        ("contacts", "gone", "deleted in PostgreSQL"),
    ):
        code, _, err = run(capsys, "sequences", command, sequence_id, *db)
        assert code == 2
        assert f"unknown sequence {sequence_id!r}: {says}" in err


def test_the_commands_say_when_the_read_models_hold_no_definition(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, database_url: str, pg_schema: str
) -> None:
    path = write(without_definitions(drip_outputs()), tmp_path / "old.jsonl")
    db = ("--database-url", database_url, "--schema", pg_schema)
    assert run(capsys, "projections", "rebuild", "--history", str(path), *db)[0] == 0

    code, out, _ = run(capsys, "sequences", "show", "drip", *db)

    assert code == 0
    assert out.endswith(
        "The settings, steps and triggers are not in the read models: the sequence.defined"
        " they hold carries no `definition` (an engine from before it was published), or was"
        " read before they kept it (`dripstream projections run --reset` reads the topics"
        " again).\n"
    )


# --- the HTTP API on PostgreSQL ----------------------------------------------------------------


async def test_the_api_answers_from_postgresql_as_from_the_file(
    projection: PostgresProjection, tmp_path: Path, database_url: str, pg_schema: str
) -> None:
    events = drip_outputs()
    apply_in_batches(projection, events, 1000)
    models, _ = load_file(write(events, tmp_path / "out.jsonl"))
    requests = [
        ("/sequences/drip", "/sequences/{sequence_id}", {}, 200),
        ("/sequences/idle", "/sequences/{sequence_id}", {}, 200),
        ("/sequences/gone", "/sequences/{sequence_id}", {}, 404),
        ("/sequences/drip/contacts", "/sequences/{sequence_id}/contacts", {}, 200),
        ("/sequences/drip/contacts", "/sequences/{sequence_id}/contacts", {"all": "true"}, 200),
        (
            "/sequences/drip/contacts",
            "/sequences/{sequence_id}/contacts",
            {"all": "true", "limit": "1", "offset": "2"},
            200,
        ),
        ("/sequences/nope/contacts", "/sequences/{sequence_id}/contacts", {}, 404),
    ]

    answers: list[list[Any]] = []
    for read_models in (FileReadModels(models), PostgresReadModels(database_url, pg_schema)):
        answers.append([])
        async with TestClient(TestServer(make_app(_publish_nothing, read_models))) as client:
            for url, template, params, status in requests:
                answers[-1].append(await call(client, "get", url, template, status, params=params))

    from_file, from_database = answers
    assert from_database == from_file
    assert from_database[4]["total"] == 3


async def _publish_nothing(topic: str, event: CloudEvent) -> None:
    raise AssertionError("a read publishes nothing")


async def test_a_command_to_a_sequence_postgresql_knows_is_taken_and_to_another_is_404(
    projection: PostgresProjection, database_url: str, pg_schema: str
) -> None:
    apply_in_batches(projection, drip_outputs(), 1000)
    sent: list[CloudEvent] = []

    async def publish(topic: str, event: CloudEvent) -> None:
        sent.append(event)

    app = make_app(publish, PostgresReadModels(database_url, pg_schema))
    enrollments = "/sequences/{sequence_id}/enrollments"
    async with TestClient(TestServer(app)) as client:
        await call(
            client, "post", "/sequences/gone/enrollments", enrollments, 404, json={"tag": "x"}
        )
        await call(
            client, "post", "/sequences/drip/enrollments", enrollments, 202, json={"tag": "x"}
        )
    assert [(e.type, e.data["sequence_id"]) for e in sent] == [("enrollment.requested", "drip")]


def test_the_apis_read_model_sessions_never_compile_their_queries(
    projection: PostgresProjection, database_url: str, pg_schema: str
) -> None:
    # A page far down a large history is costed high enough for PostgreSQL's JIT, which
    # spent seconds compiling what an index range answers in a tenth of one.
    with PostgresReadModels(database_url, pg_schema)._projection() as opened:
        assert opened._conn.execute("SHOW jit").fetchone() == ("off",)
