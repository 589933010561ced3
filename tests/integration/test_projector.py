"""`dripstream projections run` on the real broker and PostgreSQL: the read models follow the
output topics, a restart resumes where the stored offsets say, and SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]

from effects import outcomes
from projections import deployment
from projections.history import HistoryQuery
from projections.postgres import PostgresProjection
from projections.stream import Consumed
from schemas.envelope import parse_time
from schemas.registry import EVENT_TYPES
from streams.projector import ProjectorSettings, run_projector
from tests.engine.helpers import welcome_dir
from tests.integration.history import write_history
from tests.integration.pipeline import REPO, cli
from tests.projections.test_postgres_projection import in_memory

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.timeout(300)]


@pytest.fixture
def projection(database_url: str, pg_schema: str) -> Iterator[PostgresProjection]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        projection = PostgresProjection(conn, schema=pg_schema)
        projection.ensure_schema()
        yield projection


def replayed(tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "welcome.out.jsonl"
    scenario = welcome_dir()
    done = cli(
        "replay",
        "--sequences",
        str(scenario / "welcome.yaml"),
        "--events",
        str(scenario / "welcome.events.jsonl"),
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


async def publish(bootstrap: str, prefix: str, events: list[dict[str, Any]]) -> None:
    """As the relay does: each event on its type's topic, keyed by its subject."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            topic = prefix + EVENT_TYPES[event["type"]].topic
            key = (event.get("subject") or "").encode()
            await producer.send(topic, orjson.dumps(event), key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def project_until(
    settings: ProjectorSettings, projection: PostgresProjection, position: int
) -> int:
    """Runs the projector until the read models hold `position` events (or 60 s pass)."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_projector(settings, projection, stop))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not task.done():
        if await asyncio.to_thread(projection.position) >= position:
            break
        await asyncio.sleep(0.2)
    stop.set()
    return await task


async def test_the_read_models_follow_the_topics_and_resume_after_a_restart(
    kafka_bootstrap: str, pipeline_prefix: str, projection: PostgresProjection, tmp_path: Path
) -> None:
    events = replayed(tmp_path)
    # and what a provider answered to one of the texts, on `outcomes`
    sms = next(e for e in events if e["type"] == "sms.send")
    refused = outcomes.effect_failed(
        sms["data"]["effect_id"],
        {**sms["data"], "effect_type": "sms.send"},
        "the recipient unsubscribed",
        "21610",
        parse_time(sms["time"]),
    ).to_json()
    events.append(refused)
    first, rest = events[:-3], events[-3:]
    settings = ProjectorSettings(kafka_bootstrap, pipeline_prefix)
    # given the first outputs on the topics, when the projector runs
    await publish(kafka_bootstrap, pipeline_prefix, first)
    assert await project_until(settings, projection, len(first)) == len(first)
    memory = in_memory(first)
    assert projection.sequence_rows() == memory.sequences.rows()
    # when more arrive and the projector starts again
    await publish(kafka_bootstrap, pipeline_prefix, rest)
    assert await project_until(settings, projection, len(events)) == len(rest)
    # then the read models are those of the whole stream, nothing applied twice
    memory = in_memory(events)
    assert projection.sequence_rows() == memory.sequences.rows()
    got = projection.history(HistoryQuery("welcome"))
    want = memory.history.query(HistoryQuery("welcome"))
    assert got is not None
    assert want is not None
    assert got.total == want.total
    assert sorted(got.rows, key=repr) == sorted(want.rows, key=repr)
    assert "SMS failed: the recipient unsubscribed" in [row.action for row in got.rows]
    assert projection.position() == len(events)


def start_projector(
    bootstrap: str, prefix: str, database_url: str, schema: str, output: int
) -> subprocess.Popen[bytes]:
    """`dripstream projections run` in a process of its own; its output to `output`
    (`subprocess.PIPE` or `DEVNULL`), stderr with it."""
    return subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "projections", "run", "--schema", schema],
        cwd=REPO,
        env={
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DRIPSTREAM_TOPIC_PREFIX": prefix,
            "DATABASE_URL": database_url,
        },
        stdout=output,
        stderr=subprocess.STDOUT,
    )


def test_sigterm_stops_the_projector_cleanly(
    kafka_bootstrap: str, pipeline_prefix: str, database_url: str, pg_schema: str
) -> None:
    process = start_projector(
        kafka_bootstrap, pipeline_prefix, database_url, pg_schema, subprocess.PIPE
    )
    try:
        time.sleep(6)  # joined its group, polling
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()


async def test_the_projector_waits_out_postgresql_dropping_its_connection(
    kafka_bootstrap: str,
    pipeline_prefix: str,
    database_url: str,
    pg_schema: str,
    projection: PostgresProjection,
    tmp_path: Path,
) -> None:
    events = replayed(tmp_path)
    first, rest = events[: len(events) // 2], events[len(events) // 2 :]
    separator = "&" if "?" in database_url else "?"
    marked = f"{database_url}{separator}application_name=projector-dropped"
    log = tmp_path / "projector.log"
    with log.open("wb") as output:
        process = start_projector(
            kafka_bootstrap, pipeline_prefix, marked, pg_schema, output.fileno()
        )
    try:
        # given the first half applied
        await publish(kafka_bootstrap, pipeline_prefix, first)
        await _until(lambda: projection.position() >= len(first))
        # when PostgreSQL drops the projector's connection, and the rest is published
        with psycopg.connect(database_url, autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'projector-dropped'"
            ).fetchall()
        assert dropped
        await publish(kafka_bootstrap, pipeline_prefix, rest)
        # then the projector, still running, applies it on a new connection, nothing twice
        await _until(lambda: projection.position() >= len(events))
        assert process.poll() is None, log.read_text()[-3000:]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert projection.position() == len(events)
    assert projection.sequence_rows() == in_memory(events).sequences.rows()
    assert "lost PostgreSQL" in log.read_text()


async def _until(holds: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not await asyncio.to_thread(holds):
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.2)


def rebuilt_from_a_replay(tmp_path: Path, database_url: str, schema: str) -> None:
    """The read models in `schema` loaded by `projections rebuild` from a replay's output."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in replayed(tmp_path)))
    loaded = cli(
        "projections", "rebuild", "--history", str(path), "--schema", schema,
        "--database-url", database_url,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr


def test_read_models_loaded_from_a_file_are_not_mixed_with_the_topics(
    database_url: str, pg_schema: str, tmp_path: Path
) -> None:
    rebuilt_from_a_replay(tmp_path, database_url, pg_schema)
    refused = cli(
        "projections", "run", "--schema", pg_schema, "--database-url", database_url,
        "--bootstrap", "127.0.0.1:1",
    )  # fmt: skip
    assert refused.returncode == 2
    assert "loaded from a file" in refused.stderr
    assert "--reset" in refused.stderr


def test_read_models_of_another_prefix_are_not_mixed_with_these_topics(
    projection: PostgresProjection, database_url: str, pg_schema: str
) -> None:
    # given read models a projector of the prefix `other.` follows (a record that is no
    # output event still moves its topic's offset)
    projection.apply_consumed([Consumed("other.decisions", 0, 0, None)])
    # when a projector of the default prefix is started on the same schema
    refused = cli(
        "projections", "run", "--schema", pg_schema, "--database-url", database_url,
        "--bootstrap", "127.0.0.1:1", "--topic-prefix", "dripstream.",
    )  # fmt: skip
    # then it refuses, rather than count each deployment's enrollments in the other's pages
    assert refused.returncode == 2
    assert "follow other topics (other.decisions), not 'dripstream.'" in refused.stderr
    assert "--reset" in refused.stderr


def test_a_schema_another_prefixs_projector_took_before_reading_anything_is_refused(
    database_url: str, pg_schema: str, tmp_path: Path
) -> None:
    # given a projector of `e.` started on the schema while its topics were still empty
    # (nothing read: no offsets name its topics)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert deployment.claim(conn, pg_schema, "e.") == "e."
    # when a projector of `d.` is started on the same schema
    refused = cli(
        "projections", "run", "--schema", pg_schema, "--database-url", database_url,
        "--bootstrap", "127.0.0.1:1", "--topic-prefix", "d.",
    )  # fmt: skip
    # then it refuses, naming both, rather than mix the two deployments' rows as they come
    assert refused.returncode == 2
    assert f"schema {pg_schema!r} follow the topic prefix 'e.', not 'd.'" in refused.stderr
    assert "--reset" in refused.stderr
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert deployment.followed(conn, pg_schema) == "e."
        # a reset gives them to the prefix it rebuilds them from; a file's follow none
        assert deployment.claim(conn, pg_schema, "d.", take=True) == "d."
        assert deployment.claim(conn, pg_schema, "e.") == "d."
    rebuilt_from_a_replay(tmp_path, database_url, pg_schema)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert deployment.followed(conn, pg_schema) is None


@pytest.mark.parametrize("lookup_seconds", [0.0, 2.0])
async def test_a_reset_reads_the_topics_from_the_start_though_the_group_has_committed_offsets(
    kafka_bootstrap: str,
    pipeline_prefix: str,
    projection: PostgresProjection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lookup_seconds: float,
) -> None:
    # (`lookup_seconds`: the stored offsets take that long to read, as on a loaded
    # database; the fetcher must not read from the group's offsets meanwhile)
    stored_offsets = projection.offsets

    def slow_offsets() -> dict[tuple[str, int], int]:
        time.sleep(lookup_seconds)
        return stored_offsets()

    monkeypatch.setattr(projection, "offsets", slow_offsets)
    events = replayed(tmp_path)
    first, rest = events[:-3], events[-3:]
    settings = ProjectorSettings(kafka_bootstrap, pipeline_prefix)
    # (topics of several partitions each: the seeks of a start used to be awaited one
    # partition at a time, while the others were fetched from the group's offsets)
    made = cli(
        "topics", "create", "--bootstrap", kafka_bootstrap, "--topic-prefix", pipeline_prefix
    )
    assert made.returncode == 0, made.stderr
    # given a projector that read the first outputs (its group committed those offsets)
    await publish(kafka_bootstrap, pipeline_prefix, first)
    assert await project_until(settings, projection, len(first)) == len(first)
    # when the read models are emptied (`projections run --reset`) and more outputs come
    projection.reset()
    await publish(kafka_bootstrap, pipeline_prefix, rest)
    applied = await project_until(settings, projection, len(events))
    # then every output is read again from the start, not from the group's offsets
    assert applied == len(events)
    memory = in_memory(events)
    assert projection.sequence_rows() == memory.sequences.rows()
    assert projection.position() == len(events)


def test_projectors_sharing_the_topics_and_one_killed_build_the_same_read_models(
    kafka_bootstrap: str,
    pipeline_prefix: str,
    database_url: str,
    pg_schema: str,
    projection: PostgresProjection,
    tmp_path: Path,
) -> None:
    # Given the outputs of a history on the topics, when two projectors share them, the
    # first is killed mid-run (its partitions move, with a poll of its own perhaps half
    # done) and a third joins, then the read models are those of the whole stream.
    definitions, history = write_history(tmp_path, events=8_000, contacts=1_500, seed=5)
    out = tmp_path / "out.jsonl"
    done = cli(
        "replay", "--sequences", str(definitions), "--events", str(history), "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    events = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    asyncio.run(publish(kafka_bootstrap, pipeline_prefix, events))

    def start() -> subprocess.Popen[bytes]:
        return start_projector(
            kafka_bootstrap, pipeline_prefix, database_url, pg_schema, subprocess.DEVNULL
        )

    def until(position: int, limit: float = 120) -> int:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if (reached := projection.position()) >= position:
                return reached
            time.sleep(0.05)
        raise AssertionError(f"the read models reached {projection.position()}, not {position}")

    processes = [start(), start()]
    try:
        at_kill = until(len(events) // 3)
        processes[0].send_signal(signal.SIGKILL)
        processes[0].wait()
        processes.append(start())
        assert until(len(events)) == len(events)
        time.sleep(2)  # anything applied twice would now show in the position
        assert [p.poll() for p in processes[1:]] == [None, None], "a projector died"
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
    assert at_kill < len(events), "the kill came after all the work"
    assert projection.position() == len(events)
    memory = in_memory(events)
    assert projection.sequence_rows() == memory.sequences.rows()
    for sequence in sorted(row.id for row in memory.sequences.rows()):
        got = projection.history(HistoryQuery(sequence))
        want = memory.history.query(HistoryQuery(sequence))
        assert got is not None
        assert want is not None
        assert got.total == want.total, sequence
        assert sorted(got.rows, key=repr) == sorted(want.rows, key=repr), sequence


async def test_a_failed_lookup_of_the_stored_offsets_stops_the_projector_with_its_error(
    kafka_bootstrap: str,
    pipeline_prefix: str,
    projection: PostgresProjection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (aiokafka only logs what a rebalance listener raises: the partitions, paused for the
    # lookup, would stay paused and the projector would read nothing, for ever)
    def unreachable() -> dict[tuple[str, int], int]:
        raise psycopg.OperationalError("the server closed the connection")

    monkeypatch.setattr(projection, "offsets", unreachable)
    settings = ProjectorSettings(kafka_bootstrap, pipeline_prefix)
    with pytest.raises(psycopg.OperationalError, match="closed the connection"):
        await asyncio.wait_for(run_projector(settings, projection, asyncio.Event()), 60)


def test_two_projectors_making_one_new_schema_at_once_both_start(
    database_url: str, pg_schema: str
) -> None:
    # (pg_schema exists already: the read models go in a new one beside it, dropped with it)
    schema = f"{pg_schema}_new"

    def make() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            PostgresProjection(conn, schema=schema).ensure_schema()

    try:
        with ThreadPoolExecutor(4) as pool:
            for made in [pool.submit(make) for _ in range(4)]:
                made.result()  # none fails on PostgreSQL's catalog
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_a_rebuild_from_a_file_with_no_sequence_defined_leaves_the_read_models_alone(
    projection: PostgresProjection, database_url: str, pg_schema: str, tmp_path: Path
) -> None:
    # given read models of a replay's output
    rebuilt_from_a_replay(tmp_path, database_url, pg_schema)
    before = projection.sequence_rows()
    assert before
    # when a rebuild is given the replay's input instead (no decision in it)
    inputs = welcome_dir() / "welcome.events.jsonl"
    refused = cli(
        "projections", "rebuild", "--history", str(inputs), "--schema", pg_schema,
        "--database-url", database_url,
    )  # fmt: skip
    # then it says why, and the read models are as they were
    assert refused.returncode == 2
    assert "no sequence.defined in it" in refused.stderr
    assert projection.sequence_rows() == before
