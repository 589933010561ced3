"""A worker's snapshot of its engine (streams/snapshots.py): taken on a clean stop, used by
the next rebuild of the same partition groups instead of replaying the store, and passed
over whenever the store has moved on for them, or the code is another."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from aiokafka import TopicPartition  # type: ignore[import-untyped]

from schemas.envelope import parse_time
from schemas.validation import decode_stored
from streams import snapshots
from streams.engine_rebuild import Replayed, replay_store
from streams.store import BatchRecord, EngineStore, GroupProgress, InputRecord
from streams.worker import EngineWorker, WorkerSettings
from tests.engine.helpers import definitions, sequence
from tests.integration.history import write_history
from tests.integration.pipeline import (
    apply_definitions,
    exactly_replays,
    free_port,
    metric,
    produce_history,
    read_decided,
    read_topics,
    replay_expected,
    start_worker,
    stop,
    wait_for_log,
)

NAMES = ["p.contacts:0", "p.contacts:1"]
GROUPS = frozenset({0, 1})
KEY = snapshots.held_key("wall", 2, NAMES)


@pytest.fixture
async def worker(database_url: str, pg_schema: str) -> AsyncIterator[EngineWorker]:
    # The consumer is never started: the tests only rebuild from the store.
    made = EngineWorker(WorkerSettings("127.0.0.1:1", database_url, schema=pg_schema, relay=False))
    made.partition_count = 2
    try:
        yield made
    finally:
        made.store.close()


def _created(contact: str, partition: int, offset: int, time: str) -> InputRecord:
    raw = (
        b'{"specversion":"1.0","id":"' + contact.encode() + b'","source":"crm",'
        b'"type":"contact.created","time":"'
        + time.encode()
        + b'","subject":"'
        + contact.encode()
        + b'","data":{"contact_id":"'
        + contact.encode()
        + b'"}}'
    )
    return InputRecord("p.contacts", partition, offset, None, 0, raw)


def _given_a_snapshot_of_two_contacts(worker: EngineWorker) -> None:
    first = _created("a", 0, 0, "2027-07-06T10:00:00Z")
    second = _created("b", 1, 0, "2027-07-06T11:00:00Z")
    worker.store.write(BatchRecord(stored=[first.stored(), second.stored()]))
    rebuilt = worker._replay_store(NAMES, GROUPS)
    assert rebuilt.snapshot is None  # none yet: replayed
    _keep(worker, KEY, rebuilt)


def test_a_rebuild_takes_the_snapshot_when_nothing_was_recorded_since(
    worker: EngineWorker,
) -> None:
    _given_a_snapshot_of_two_contacts(worker)
    # when the same groups are rebuilt again
    rebuilt = worker._replay_store(NAMES, GROUPS)
    # then the engine is the snapshot's: nothing replayed, both contacts known
    assert rebuilt.snapshot is not None
    assert rebuilt.inputs == 0
    assert sorted(rebuilt.engine.contacts) == ["a", "b"]
    # and it decides with the worker's own partitions (its partition_of came back)
    assert rebuilt.engine._partition_of is not None
    assert rebuilt.engine._partition_of("a") == worker.partition_of("a")


def test_inputs_recorded_after_the_snapshot_are_replayed_on_top_of_it(
    worker: EngineWorker,
) -> None:
    _given_a_snapshot_of_two_contacts(worker)
    # when another worker records an input of these groups after it
    later = _created("c", 1, 1, "2027-07-06T12:00:00Z")
    worker.store.write(BatchRecord(stored=[later.stored()]))
    rebuilt = worker._replay_store(NAMES, GROUPS)
    # then the snapshot is taken and the later input alone replayed on top
    assert rebuilt.snapshot is not None
    assert rebuilt.inputs == 1
    assert sorted(rebuilt.engine.contacts) == ["a", "b", "c"]
    # as a replay of the whole store has it
    whole = replay_store(
        worker.store, NAMES, GROUPS, partition_of=worker.partition_of, event_clock=False
    )
    assert (whole.inputs, whole.last_record) == (3, rebuilt.last_record)
    assert whole.engine.contacts == rebuilt.engine.contacts
    assert whole.engine.now == rebuilt.engine.now


def test_a_record_after_the_snapshot_under_older_definitions_makes_it_replay_all(
    worker: EngineWorker,
) -> None:
    # given definitions (version 1) adopted before a snapshot of two contacts
    at = parse_time("2027-07-06T09:00:00Z")
    worker.store.write(BatchRecord(definition=(definitions(sequence()), [], at, "defs-1")))
    first = replace(_created("a", 0, 0, "2027-07-06T10:00:00Z"), definitions=1)
    second = replace(_created("b", 1, 0, "2027-07-06T11:00:00Z"), definitions=1)
    worker.store.write(BatchRecord(stored=[first.stored(), second.stored()]))
    rebuilt = worker._replay_store(NAMES, GROUPS)
    _keep(worker, KEY, rebuilt)
    # when a worker that had not adopted them yet records an input after it (version 0:
    # a replay of the whole store puts it before the snapshot's own inputs)
    late = _created("c", 0, 1, "2027-07-06T12:00:00Z")
    worker.store.write(BatchRecord(stored=[late.stored()]))
    again = worker._replay_store(NAMES, GROUPS)
    # then the whole store is replayed
    assert again.snapshot is None
    assert again.inputs == 3


def test_a_snapshot_of_other_groups_is_passed_over(worker: EngineWorker) -> None:
    _given_a_snapshot_of_two_contacts(worker)
    # when one of its groups alone is rebuilt
    alone = worker._replay_store(["p.contacts:0"], frozenset({0}))
    # then that group's inputs are replayed
    assert alone.snapshot is None
    assert sorted(alone.engine.contacts) == ["a"]


def test_a_snapshot_written_by_other_code_is_passed_over(
    worker: EngineWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    _given_a_snapshot_of_two_contacts(worker)
    # when the code that rebuilds is another release's
    monkeypatch.setattr(snapshots, "code_fingerprint", lambda: "another version")
    again = worker._replay_store(NAMES, GROUPS)
    # then the store is replayed
    assert again.snapshot is None
    assert again.inputs == 2


def test_a_snapshot_that_cannot_be_read_means_a_replay(worker: EngineWorker) -> None:
    _given_a_snapshot_of_two_contacts(worker)
    # when its bytes are damaged
    with worker.store.datastore.get_connection() as conn:
        schema = worker.store.datastore.schema
        conn.execute(f"UPDATE {schema}.dripstream_snapshots SET body = 'not a pickle'")
        conn.commit()
    again = worker._replay_store(NAMES, GROUPS)
    # then the store is replayed, not the rebuild failed
    assert again.snapshot is None
    assert again.inputs == 2


def test_keeping_a_snapshot_drops_those_no_worker_can_use(
    worker: EngineWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given snapshots of another release, of streams held a week ago, and of other streams
    # held yesterday
    monkeypatch.setattr(snapshots, "code_fingerprint", lambda: "another release")
    _keep(worker, "wall:2:p.contacts:0")
    monkeypatch.undo()
    _keep(worker, "wall:2:p.contacts:1")
    _keep(worker, "event:2:p.contacts:1")
    schema = worker.store.datastore.schema
    with worker.store.datastore.get_connection() as conn:
        conn.execute(
            f"UPDATE {schema}.dripstream_snapshots SET taken_at = now() - interval '8 days'"
            " WHERE held = 'wall:2:p.contacts:1'"
        )
        conn.execute(
            f"UPDATE {schema}.dripstream_snapshots SET taken_at = now() - interval '1 day'"
            " WHERE held = 'event:2:p.contacts:1'"
        )
        conn.commit()
    # when a worker keeps its own
    _keep(worker, KEY)
    # then the other release's and the week-old one are gone; yesterday's stays
    with worker.store.datastore.get_connection() as conn:
        rows = conn.execute(f"SELECT held FROM {schema}.dripstream_snapshots").fetchall()
    assert sorted(row["held"] for row in rows) == sorted([KEY, "event:2:p.contacts:1"])


def _keep(worker: EngineWorker, key: str, rebuilt: Replayed | None = None) -> None:
    """A snapshot of the engine `rebuilt` (default: the worker's own, covering nothing)."""
    snapshots.save(
        worker.store,
        key,
        rebuilt.engine if rebuilt else worker.engine,
        worker.partition_of,
        last_record=rebuilt.last_record if rebuilt else 0,
        applied=rebuilt.applied if rebuilt else 0,
        spanned=False,
        progress=dict.fromkeys(GROUPS, 0),  # its inputs were written without trackings
    )


async def test_no_snapshot_is_kept_over_a_record_another_worker_wrote_for_a_group(
    worker: EngineWorker, database_url: str, pg_schema: str
) -> None:
    # given a worker holding both groups, rebuilt from an empty store
    worker.assigned = {TopicPartition("p.contacts", 0), TopicPartition("p.contacts", 1)}
    rebuilt = worker._replay_store(NAMES, GROUPS)
    worker.engine, worker.writes.last_record = rebuilt.engine, rebuilt.last_record
    worker.stale = False
    # when the group's previous holder, writing still, records an input of group 0
    earlier = EngineStore(database_url, pg_schema)
    try:
        stray = _created("z", 0, 0, "2027-07-06T10:00:00Z")
        earlier.write(
            BatchRecord(
                stored=[stray.stored()],
                trackings={0: GroupProgress(0, 1)},
                positions={("p.contacts", 0): 0},
            )
        )
    finally:
        earlier.close()
    # and this worker then records one of group 1 (accepted: nobody else wrote group 1),
    # its last record now above the other's
    mine = _created("b", 1, 0, "2027-07-06T11:00:00Z")
    worker.engine.handle(decode_stored(mine.event), partition=1)
    worker._track(1, {"p.contacts": 0})
    worker.record.stored.append(mine.stored())
    await worker._submit(wait=True)
    assert not worker.stale
    # then it keeps no snapshot, which would cover the other's input unseen
    await worker._keep_snapshot()
    assert snapshots.find(worker.store, worker._held_key()) is None
    # and the rebuild its next write of group 0 will need replays both
    again = worker._replay_store(NAMES, GROUPS)
    assert sorted(again.engine.contacts) == ["b", "z"]


def test_definitions_changed_after_the_snapshot_are_adopted_on_taking_it(
    worker: EngineWorker,
) -> None:
    _given_a_snapshot_of_two_contacts(worker)
    # when a definition change is recorded after it (no input with it)
    document = definitions(sequence())
    at: datetime = parse_time("2027-07-06T12:30:00Z")
    worker.store.write(BatchRecord(definition=(document, [], at, "defs-after")))
    rebuilt = worker._replay_store(NAMES, GROUPS)
    # then the snapshot is taken, with the change adopted as a replay adopts it at the end
    assert rebuilt.snapshot is not None
    assert "seq" in rebuilt.engine.sequences
    assert rebuilt.applied > 0


# What the worker logs on stopping with a snapshot, and on starting from one.
KEPT = "kept the engine as a snapshot"
TAKEN = re.compile(r"took the engine from its snapshot")


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_worker_stopped_and_started_again_goes_on_from_its_snapshot_as_replay(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    definitions_file, history = write_history(tmp_path, events=4_000, contacts=800, seed=31)
    expected = replay_expected(tmp_path, definitions_file, history)
    first, second = _halves(history)
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    prefix = pipeline_prefix
    worker = start_worker(kafka_bootstrap, fresh_database_url, prefix, log_to=logs[0])
    try:
        # given a worker that decided the first half and stopped cleanly
        apply_definitions(kafka_bootstrap, prefix, definitions_file)
        produce_history(kafka_bootstrap, prefix, first)
        read_topics(kafka_bootstrap, prefix, ("decisions",), expect=1, quiet=5, limit=120)
        stop(worker)
        assert worker.returncode == 0
        assert KEPT in logs[0].read_text(errors="replace")
        # when it starts again and the second half comes
        port = free_port()
        worker = start_worker(
            kafka_bootstrap,
            fresh_database_url,
            prefix,
            "--metrics-port",
            str(port),
            log_to=logs[1],
        )
        wait_for_log(logs[1], TAKEN.pattern)
        assert metric(port, "dripstream_snapshots_taken_total") == 1
        produce_history(kafka_bootstrap, prefix, second)
        got = read_decided(kafka_bootstrap, prefix, expected)
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
    # then it decided exactly what an uninterrupted replay decides
    exactly_replays(got, expected)
    # and its start read the snapshot whole, with nothing stored after it to replay
    assert "and replayed 0 stored inputs recorded after it" in logs[1].read_text(errors="replace")


def _halves(history: Path) -> tuple[Path, Path]:
    """The history's lines in two files, in order."""
    lines = history.read_bytes().splitlines(keepends=True)
    first, second = history.with_name("first.jsonl"), history.with_name("second.jsonl")
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    second.write_bytes(b"".join(lines[len(lines) // 2 :]))
    return first, second


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_worker_killed_after_a_snapshot_goes_on_from_it_as_replay(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    definitions_file, history = write_history(tmp_path, events=4_000, contacts=800, seed=37)
    expected = replay_expected(tmp_path, definitions_file, history)
    first, second = _halves(history)
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    prefix = pipeline_prefix
    worker = start_worker(
        kafka_bootstrap, fresh_database_url, prefix, "--snapshot-every", "1", log_to=logs[0]
    )
    try:
        # given a worker keeping a snapshot every second while it decides the first half
        apply_definitions(kafka_bootstrap, prefix, definitions_file)
        produce_history(kafka_bootstrap, prefix, first)
        wait_for_log(logs[0], KEPT)
        # when it is killed, the second half comes, and it starts again
        stop(worker, kill=True)
        produce_history(kafka_bootstrap, prefix, second)
        worker = start_worker(kafka_bootstrap, fresh_database_url, prefix, log_to=logs[1])
        wait_for_log(logs[1], TAKEN.pattern)
        got = read_decided(kafka_bootstrap, prefix, expected)
        assert worker.poll() is None, "the worker died"
    finally:
        stop(worker)
    # then what it decided from the snapshot on is exactly an uninterrupted replay's
    exactly_replays(got, expected)
