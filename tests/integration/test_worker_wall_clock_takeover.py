"""On the wall clock, a worker that takes over another's partitions rebuilds them from the
store with its own; what it replays must fire only the timers the deciding worker fired
(streams/store.py `_tick_partitions`), or the other's steps due in between are counted as
fired by the rebuild, whose decisions are never published, and are lost."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import TopicPartition  # type: ignore[import-untyped]

from schemas.envelope import format_time, parse_time
from schemas.validation import decode_event
from streams import routing
from streams.ordering import Pending
from streams.store import BatchRecord
from streams.worker import EngineWorker, WorkerSettings
from tests.engine.helpers import definitions, sequence
from tests.integration.pipeline import (
    apply_definitions,
    produce_history,
    read_topics,
    start_worker,
    stop,
    wait_for_log,
)

pytestmark = [pytest.mark.postgres]

TOPIC = "p.contacts"
T0 = parse_time("2027-07-06T16:00:00Z")


def tagging_after(minutes: int) -> dict[str, Any]:
    """A sequence every new contact joins, whose one step tags it `minutes` later."""
    step = {
        "id": "s1",
        "type": "add_tag",
        "tag": "seen",
        "delay": {"kind": "default", "amount": minutes, "unit": "minutes"},
    }
    return sequence(triggers=[{"type": "contact_created"}], steps=[step])


TEN_MINUTES_ON = tagging_after(10)


def contact_on(partition: int, after: int = 0) -> str:
    """A contact id the worker routes to `partition` (of 2)."""
    n = after
    while routing.kafka_partition(f"c{n}", 2) != partition:
        n += 1
    return f"c{n}"


@pytest.fixture
async def workers(
    database_url: str, pg_schema: str
) -> AsyncIterator[Callable[[int], EngineWorker]]:
    # Consumers are never started: the workers decide and write as their loop would.
    made: list[EngineWorker] = []

    def holding(partition: int) -> EngineWorker:
        worker = EngineWorker(
            WorkerSettings("127.0.0.1:1", database_url, schema=pg_schema, relay=False)
        )
        worker.partition_count = 2  # read by the engine's partition_of as it routes
        worker.assigned = {TopicPartition(TOPIC, partition)}
        made.append(worker)
        return worker

    try:
        yield holding
    finally:
        for worker in made:
            worker.store.close()


def created(contact: str, offset: int, at: datetime) -> Pending:
    return fact("in", "contact.created", {"contact_id": contact}, offset, at)


def fact(tag: str, kind: str, data: dict[str, Any], offset: int, at: datetime) -> Pending:
    """A CRM fact about `data`'s contact, as read at `offset` of its partition."""
    contact = str(data["contact_id"])
    raw = orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"{tag}-{contact}",
            "source": "crm",
            "type": kind,
            "time": format_time(at),
            "subject": contact,
            "data": data,
        }
    )
    partition = routing.kafka_partition(contact, 2)
    return Pending(
        TOPIC, partition, offset, contact.encode(), raw, decode_event(raw, as_input=True)
    )


async def decide(worker: EngineWorker, item: Pending, at: datetime) -> None:
    worker.clock = lambda: at
    worker._decide(item)
    worker._track(item.partition, {item.topic: item.offset})
    await worker._submit(wait=True)
    assert not worker.stale


async def tick(worker: EngineWorker, at: datetime) -> None:
    worker.clock = lambda: at
    worker._fire_timers(finished=False)
    await worker._submit(wait=True)


def rebuild(worker: EngineWorker, groups: frozenset[int]) -> None:
    """As a worker does when given partitions: the engine and the positions of the store."""
    stored, _ = worker.store.progress()
    worker.positions = {key: at for key, at in stored.items() if key[1] in groups}
    worker.engine = worker._replay_store(worker._stream_names(), groups).engine


def timer_rows(worker: EngineWorker, contact: str) -> list[str]:
    schema = worker.settings.schema
    with worker.store.datastore.get_connection() as conn:
        rows = conn.execute(
            f"SELECT event_id, key FROM {schema}.dripstream_outbox ORDER BY id"
        ).fetchall()
    return [r["event_id"] for r in rows if r["key"] == contact and r["event_id"].startswith("t:")]


@pytest.mark.parametrize("by", ["a tick", "an input"])
async def test_a_takeover_fires_the_steps_the_dead_worker_left_due(
    workers: Callable[[int], EngineWorker], by: str
) -> None:
    # given A deciding partition 0 and B partition 1, each enrolling a contact whose step
    # is due ten minutes on
    a, b = workers(0), workers(1)
    a.store.write(BatchRecord(definition=(definitions(TEN_MINUTES_ON), [], T0, "defs-1")))
    for worker in (a, b):
        worker._sync_definitions(at_once=True)
    mine, theirs = contact_on(0), contact_on(1)
    await decide(a, created(mine, 0, T0), T0)
    await decide(b, created(theirs, 0, T0), T0)
    # when B dies before its step is due, and A's wall clock passes it: by a tick firing
    # A's own step, or by an input of A's decided after it
    later = T0 + timedelta(minutes=11)
    if by == "a tick":
        await tick(a, later)
    else:
        await decide(a, created(contact_on(0, after=int(mine[1:]) + 1), 1, later), later)
    assert timer_rows(a, theirs) == []  # B never fired it
    fired_for_mine = timer_rows(a, mine)
    assert fired_for_mine
    # and A is given B's partition, rebuilds both and goes on
    a.assigned = {TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)}
    rebuild(a, frozenset({0, 1}))
    await tick(a, later + timedelta(seconds=1))
    # then B's contact's step is decided and written, and A's is not decided again
    assert any(row.startswith(f"t:seq:{theirs}:1:0:") for row in timer_rows(a, theirs))
    assert timer_rows(a, mine) == fired_for_mine
    assert a.engine.timers_due(later + timedelta(seconds=1)) == 0


def marked_lost(contact: str, offset: int, at: datetime) -> Pending:
    data = {"contact_id": contact, "disposition": "lost"}
    return fact("lost", "contact.disposition_changed", data, offset, at)


async def enrolled_by(worker: EngineWorker, sequence: dict[str, Any]) -> str:
    """The worker holding partition 0 enrolls a contact there (at T0) in `sequence`."""
    worker.store.write(BatchRecord(definition=(definitions(sequence), [], T0, "defs-1")))
    worker._sync_definitions(at_once=True)
    contact = contact_on(0)
    await decide(worker, created(contact, 0, T0), T0)
    return contact


def taking_over(worker: EngineWorker) -> EngineWorker:
    """`worker`, given partition 0 while its holder has not heard of it yet (a rebalance
    the holder missed), rebuilt from the store."""
    rebuild(worker, frozenset({0}))
    worker._sync_definitions(at_once=True)
    return worker


def outbox_kinds(worker: EngineWorker, contact: str) -> list[str]:
    with worker.store.datastore.get_connection() as conn:
        rows = conn.execute(
            f"SELECT value FROM {worker.settings.schema}.dripstream_outbox WHERE key = %s"
            " ORDER BY id",
            (contact,),
        ).fetchall()
    return [orjson.loads(row["value"])["type"] for row in rows]


async def test_a_worker_that_lost_its_partition_unknowing_fires_none_of_its_timers(
    workers: Callable[[int], EngineWorker],
) -> None:
    # given A deciding partition 0, a contact enrolled whose step (a tag) is due ten
    # minutes on, in a sequence a "lost" disposition leaves
    a = workers(0)
    leaving = {"type": "contact_disposition", "dispositions": ["lost"], "action": "disenroll"}
    mine = await enrolled_by(
        a, {**TEN_MINUTES_ON, "triggers": [*TEN_MINUTES_ON["triggers"], leaving]}
    )
    # when B takes partition 0 over and decides the contact's "lost" disposition
    b = taking_over(workers(0))
    await decide(b, marked_lost(mine, 1, T0 + timedelta(minutes=5)), T0 + timedelta(minutes=5))
    # and A's wall clock passes the step's moment
    await tick(a, T0 + timedelta(minutes=11))
    # then A's tick is refused whole: the step is not run on what A knew, and A rebuilds
    assert a.stale
    assert timer_rows(a, mine) == []
    # and B, which knows the contact left, runs nothing either
    await tick(b, T0 + timedelta(minutes=11))
    assert not b.stale
    kinds = ["enrollment.enrolled", "step.scheduled", "enrollment.disenrolled"]
    assert outbox_kinds(b, mine) == kinds


async def test_a_worker_that_lost_its_partition_unknowing_writes_no_change_it_adopts(
    workers: Callable[[int], EngineWorker],
) -> None:
    # given A deciding partition 0, a contact enrolled whose step is due ten minutes on
    a = workers(0)
    mine = await enrolled_by(a, TEN_MINUTES_ON)
    # when B takes partition 0 over and decides an input there
    b = taking_over(workers(0))
    later = T0 + timedelta(minutes=1)
    await decide(b, created(contact_on(0, after=int(mine[1:]) + 1), 1, later), later)
    # and A adopts a change that moves its contact's step
    moved = T0 + timedelta(minutes=2)
    a.store.write(BatchRecord(definition=(definitions(tagging_after(1)), [], moved, "defs-2")))
    a.clock = lambda: moved
    a._sync_definitions(at_once=True)
    await a._submit(wait=True)
    # then A's re-planning is refused whole (the step is B's to plan now), and A rebuilds
    assert a.stale
    assert outbox_kinds(a, mine) == ["enrollment.enrolled", "step.scheduled"]


ONE_MINUTE_ON = {
    "account": {"timezone": "America/New_York", "lines": {"line-1": "+12125550000"}},
    "sequences": [tagging_after(1)],
}


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_worker_killed_before_its_steps_are_due_loses_none_of_them(
    kafka_bootstrap: str, pipeline_prefix: str, fresh_database_url: str, tmp_path: Path
) -> None:
    # given two wall-clock workers sharing the partitions, and 60 contacts enrolled in a
    # sequence whose step is due a minute on
    definitions = tmp_path / "definitions.yaml"
    definitions.write_text(yaml.safe_dump(ONE_MINUTE_ON))
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    # The other's partitions come over only after the steps are due: the survivor's clock
    # passes them first.
    wall = ("--clock", "wall", "--session-timeout", "90")
    a = start_worker(kafka_bootstrap, fresh_database_url, pipeline_prefix, *wall, log_to=logs[0])
    b = None
    try:
        wait_for_log(logs[0], "rebuilt the engine", limit=150)
        apply_definitions(kafka_bootstrap, pipeline_prefix, definitions)
        b = start_worker(
            kafka_bootstrap, fresh_database_url, pipeline_prefix, *wall, log_to=logs[1]
        )
        wait_for_log(logs[1], "rebuilt the engine", limit=150)
        wait_for_log(logs[0], "rebuilt the engine", 2, limit=150)
        now = format_time(datetime.now(UTC))
        contacts = [f"k{n}" for n in range(60)]
        history = tmp_path / "history.jsonl"
        history.write_bytes(
            b"".join(
                orjson.dumps(
                    {
                        "specversion": "1.0",
                        "id": f"in-{contact}",
                        "source": "crm",
                        "type": "contact.created",
                        "time": now,
                        "subject": contact,
                        "data": {"contact_id": contact},
                    }
                )
                + b"\n"
                for contact in contacts
            )
        )
        produce_history(kafka_bootstrap, pipeline_prefix, history)
        enrolled = read_topics(kafka_bootstrap, pipeline_prefix, ("decisions",), quiet=4)
        assert sum(e["type"] == "enrollment.enrolled" for e in enrolled) == len(contacts)
        # when one is killed, and the other takes its partitions over once its session lapses
        stop(b, kill=True)
        wait_for_log(logs[0], "rebuilt the engine", 3, limit=150)
        decided = read_topics(kafka_bootstrap, pipeline_prefix, ("decisions",), quiet=8)
    finally:
        stop(a)
        if b is not None:
            stop(b)
    # then every contact's step was executed, once
    executed = [e["data"]["contact_id"] for e in decided if e["type"] == "step.executed"]
    assert sorted(executed) == sorted(contacts)
